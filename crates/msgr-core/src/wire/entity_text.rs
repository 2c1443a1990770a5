//! The text forms of entity types, names and addresses, as Ceph prints them: one parser each
//! ([`FromStr`]), used by command lines, config files and tests alike.
//!
//! - [`EntityType`]: `mon`, `mds`, `osd`, `client`, `mgr`.
//! - [`EntityName`]: `osd.3`, `client.4121`; `client` or `client.?` for "number not assigned".
//! - [`EntityAddr`]: `v1:127.0.0.1:6800/1234`, `[::1]:6800/7` (the `v1:` prefix is optional;
//!   without `/NONCE` the nonce is 0); `v1:-/0` is the blank address.

use std::net::SocketAddr;
use std::str::FromStr;

use super::{EntityAddr, EntityName, EntityType};

/// A string that is not an entity type, name or address; the message says the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{expected}, got \"{got}\"")]
pub struct ParseEntityError {
    /// What was given.
    pub got: String,
    /// The form that was expected, with an example.
    pub expected: &'static str,
}

/// The types a messenger can have, by their Ceph names.
const TYPES: [(&str, EntityType); 5] = [
    ("mon", EntityType::MON),
    ("mds", EntityType::MDS),
    ("osd", EntityType::OSD),
    ("client", EntityType::CLIENT),
    ("mgr", EntityType::MGR),
];

impl EntityType {
    /// The names [`EntityType::from_str`] takes: `mon`, `mds`, `osd`, `client`, `mgr`.
    pub const NAMES: [&'static str; 5] = ["mon", "mds", "osd", "client", "mgr"];
}

const TYPE_FORM: &str = "expected an entity type: one of mon, mds, osd, client, mgr";
const NAME_FORM: &str =
    "expected an entity name TYPE.NUMBER or TYPE (e.g. osd.0, client), with TYPE one of mon, mds, osd, client, mgr";
const ADDR_FORM: &str =
    "expected an entity address IP:PORT/NONCE (e.g. 127.0.0.1:6800/1234 or v1:[::1]:6800/7; without /NONCE the nonce is 0)";

fn error(got: &str, expected: &'static str) -> ParseEntityError {
    ParseEntityError {
        got: got.to_string(),
        expected,
    }
}

impl FromStr for EntityType {
    type Err = ParseEntityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TYPES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| error(s, TYPE_FORM))
    }
}

impl FromStr for EntityName {
    type Err = ParseEntityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, num) = match s.split_once('.') {
            Some((t, "?")) => (t, -1),
            Some((t, n)) => (
                t,
                n.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| error(s, NAME_FORM))?,
            ),
            None => (s, -1),
        };
        let kind = t.parse().map_err(|_| error(s, NAME_FORM))?;
        Ok(EntityName::new(kind, num))
    }
}

impl FromStr for EntityAddr {
    type Err = ParseEntityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.strip_prefix("v1:").unwrap_or(s);
        let (sock, nonce) = match body.rsplit_once('/') {
            Some((a, n)) => (a, n.parse::<u32>().map_err(|_| error(s, ADDR_FORM))?),
            None => (body, 0),
        };
        if sock == "-" {
            return Ok(EntityAddr::blank().with_nonce(nonce));
        }
        let sock: SocketAddr = sock.parse().map_err(|_| error(s, ADDR_FORM))?;
        Ok(EntityAddr::new(sock, nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_round_trip() {
        let osd3: EntityName = "osd.3".parse().unwrap();
        assert_eq!(osd3, EntityName::new(EntityType::OSD, 3));
        for s in ["osd.3", "client.?", "mgr.4121", "mon.0"] {
            assert_eq!(s.parse::<EntityName>().unwrap().to_string(), s);
        }
        assert_eq!(
            "client".parse::<EntityName>().unwrap(),
            EntityName::new(EntityType::CLIENT, -1)
        );
        for bad in ["osd.x", "disk.0", "osd.-1", "", "osd."] {
            let e = bad.parse::<EntityName>().unwrap_err();
            assert_eq!(e.got, bad);
            assert!(e.to_string().contains("TYPE.NUMBER"), "{e}");
        }
    }

    #[test]
    fn types_parse_and_name_the_choices() {
        for n in EntityType::NAMES {
            assert_eq!(n.parse::<EntityType>().unwrap().name(), n);
        }
        let e = "rgw".parse::<EntityType>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected an entity type: one of mon, mds, osd, client, mgr, got \"rgw\""
        );
    }

    #[test]
    fn addresses_parse_with_or_without_prefix_and_nonce() {
        let a: EntityAddr = "v1:127.0.0.1:6800/42".parse().unwrap();
        assert_eq!(a, EntityAddr::new("127.0.0.1:6800".parse().unwrap(), 42));
        assert_eq!("127.0.0.1:6800/42".parse::<EntityAddr>().unwrap(), a);
        assert_eq!("127.0.0.1:1".parse::<EntityAddr>().unwrap().nonce, 0);
        for s in ["v1:[::1]:6789/7", "v1:-/0", "v1:10.1.2.3:6800/9"] {
            assert_eq!(s.parse::<EntityAddr>().unwrap().to_string(), s);
        }
        for bad in [
            "localhost:1/2",
            "127.0.0.1:6800/x",
            "127.0.0.1",
            "v2:1.2.3.4:5/6",
        ] {
            let e = bad.parse::<EntityAddr>().unwrap_err();
            assert!(e.to_string().contains("IP:PORT/NONCE"), "{e}");
            assert_eq!(e.got, bad);
        }
    }
}
