//! What both modes share: the config file with command-line overrides, the address format
//! `serve` prints and `ping --peer` takes, command-line value types, counters and connection
//! logging.

use std::path::PathBuf;

use msgr::{Config, ConnectionRef, EntityAddr, EntityType, MessengerCounters};

use crate::{AnyError, BIND_OVERRIDE};

/// `IP:PORT/NONCE` as printed by `serve` (`ping --peer` parses it with `EntityAddr`'s
/// `FromStr`, which also takes Ceph's `v1:` prefix).
pub(crate) fn format_addr(a: &EntityAddr) -> String {
    match a.addr {
        Some(s) => format!("{s}/{}", a.nonce),
        None => format!("-/{}", a.nonce),
    }
}

/// `--peer`: an address as `serve` prints it, with an optional `v1:` / `v2:` prefix naming
/// the protocol to speak (without one: the config's `[protocol] prefer`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub(crate) protocol: Option<msgr::Protocol>,
    pub(crate) addr: EntityAddr,
}

/// Parses `--peer`.
pub(crate) fn parse_peer(s: &str) -> Result<Peer, String> {
    let (protocol, addr) = msgr::parse_peer_addr(s).map_err(|e| e.to_string())?;
    Ok(Peer { protocol, addr })
}

/// `--peer-type`: the entity types a peer can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeerType {
    /// A monitor.
    Mon,
    /// A metadata server.
    Mds,
    /// An object storage daemon (`msgrd serve`'s usual name, osd.0).
    Osd,
    /// A client.
    Client,
    /// A manager.
    Mgr,
}

impl From<PeerType> for EntityType {
    fn from(t: PeerType) -> EntityType {
        match t {
            PeerType::Mon => EntityType::MON,
            PeerType::Mds => EntityType::MDS,
            PeerType::Osd => EntityType::OSD,
            PeerType::Client => EntityType::CLIENT,
            PeerType::Mgr => EntityType::MGR,
        }
    }
}

/// A count of at least 1 (`--count`, `--concurrency`, `--connections`): zero or a negative
/// number is an error, not silently raised to 1.
pub(crate) fn positive_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 && n <= i128::from(u64::MAX) => Ok(n as u64),
        Ok(n) => Err(format!("expected a whole number of at least 1, got {n}")),
        Err(_) => Err(format!(
            "expected a whole number of at least 1, got \"{s}\""
        )),
    }
}

pub(crate) fn print_counters(who: &str, c: &MessengerCounters) {
    let k = &c.connections;
    eprintln!(
        "{who} counters: messages in {} out {}, bytes in {} out {}, faults {}, reconnects {}, \
         replayed {}, throttle waits {}, accepted {}, connected {}, refused {}, protocol errors {}, \
         handshake timeouts {}, open connections {}, transport fallbacks {}, shed {}, links {:?}",
        k.messages_in,
        k.messages_out,
        k.bytes_in,
        k.bytes_out,
        k.faults,
        k.reconnects,
        k.replayed,
        k.throttle_waits,
        c.accepted,
        c.connected,
        c.refused,
        c.protocol_errors,
        c.handshake_timeouts,
        c.open_connections,
        c.fallbacks,
        c.shed,
        c.links_by_transport
    );
}

/// Logs connection life; shared by both modes.
pub(crate) fn log_event(what: &str, conn: &ConnectionRef) {
    tracing::info!(peer = %conn.peer_addr(), "{what}");
}

/// The file's configuration, with command-line overrides applied.
pub(crate) fn load_config(path: &PathBuf, no_crc_data: bool) -> Result<Config, AnyError> {
    let mut cfg = Config::from_file(path)?;
    if let Some(bind) = BIND_OVERRIDE.get().copied().flatten() {
        cfg.bind = bind;
    }
    if no_crc_data {
        cfg.protocol.crc_data = false;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crc_data_overrides_the_file() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/tcp.toml"
        ));
        assert!(load_config(&path, false).unwrap().protocol.crc_data);
        let cfg = load_config(&path, true).unwrap();
        assert!(!cfg.protocol.crc_data);
        assert!(!cfg.node_config().crc_data);
    }

    #[test]
    fn printed_addresses_parse_back() {
        let a: EntityAddr = "v1:127.0.0.1:6800/42".parse().unwrap();
        assert_eq!(format_addr(&a), "127.0.0.1:6800/42");
        assert_eq!(format_addr(&a).parse::<EntityAddr>().unwrap(), a);
    }

    #[test]
    fn counts_must_be_positive() {
        assert_eq!(positive_count("1"), Ok(1));
        assert_eq!(positive_count("10000"), Ok(10_000));
        for bad in ["0", "-3", "x", "", "1.5"] {
            let e = positive_count(bad).unwrap_err();
            assert!(
                e.starts_with("expected a whole number of at least 1"),
                "{e}"
            );
        }
        assert!(positive_count("-3").unwrap_err().ends_with("got -3"));
    }
}
