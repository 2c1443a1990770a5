//! What both modes share: the config file with command-line overrides, the address format
//! `serve` prints and `ping --peer` takes, counters and connection logging.

use std::net::SocketAddr;
use std::path::PathBuf;

use msgr::{Config, ConnectionRef, EntityAddr, MessengerCounters};

use crate::{AnyError, BIND_OVERRIDE};

/// `IP:PORT/NONCE` as printed by `serve`.
pub(crate) fn format_addr(a: &EntityAddr) -> String {
    match a.addr {
        Some(s) => format!("{s}/{}", a.nonce),
        None => format!("-/{}", a.nonce),
    }
}

pub(crate) fn parse_addr(s: &str) -> Result<EntityAddr, AnyError> {
    let s = s.strip_prefix("v1:").unwrap_or(s);
    let (sock, nonce) = match s.rsplit_once('/') {
        Some((a, n)) => (
            a,
            n.parse::<u32>()
                .map_err(|_| format!("--peer {s}: the nonce after '/' must be a number"))?,
        ),
        None => (s, 0),
    };
    let sock: SocketAddr = sock
        .parse()
        .map_err(|_| format!("--peer {s}: expected IP:PORT/NONCE, e.g. 127.0.0.1:6800/1234"))?;
    Ok(EntityAddr::new(sock, nonce))
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

/// Add one messenger's counters to a total.
// With msgr-core's `AddAssign` for the counter structs this becomes `*total += c`.
pub(crate) fn add_counters(total: &mut MessengerCounters, c: &MessengerCounters) {
    let (t, k) = (&mut total.connections, &c.connections);
    t.messages_in += k.messages_in;
    t.messages_out += k.messages_out;
    t.bytes_in += k.bytes_in;
    t.bytes_out += k.bytes_out;
    t.faults += k.faults;
    t.reconnects += k.reconnects;
    t.replayed += k.replayed;
    t.throttle_waits += k.throttle_waits;
    total.accepted += c.accepted;
    total.connected += c.connected;
    total.refused += c.refused;
    total.protocol_errors += c.protocol_errors;
    total.handshake_timeouts += c.handshake_timeouts;
    total.open_connections += c.open_connections;
    total.fallbacks += c.fallbacks;
    for (name, n) in &c.links_by_transport {
        match total.links_by_transport.iter_mut().find(|(x, _)| x == name) {
            Some((_, m)) => *m += n,
            None => total.links_by_transport.push((name, *n)),
        }
    }
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
    fn peer_addresses_parse() {
        let a = parse_addr("v1:127.0.0.1:6800/42").unwrap();
        assert_eq!(a.nonce, 42);
        assert_eq!(a.addr, Some("127.0.0.1:6800".parse().unwrap()));
        assert_eq!(parse_addr("127.0.0.1:1").unwrap().nonce, 0);
        assert!(parse_addr("localhost:1/2").is_err());
        assert_eq!(parse_addr(&format_addr(&a)).unwrap(), a);
    }
}
