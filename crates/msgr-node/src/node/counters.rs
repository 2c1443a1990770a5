//! Atomic counters behind [`ConnectionCounters`] and [`MessengerCounters`].
//!
//! A transport keeps one [`ConnCounterCells`] per connection and one [`MessengerCounterCells`]
//! per messenger; the `add_*` helpers bump both at once so the messenger totals always equal the
//! sum over every connection it ever had.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use msgr_core::api::{ConnectionCounters, MessengerCounters};
use msgr_core::session::SessionError;
use msgr_core::wire::WireError;

/// Per-connection counters.
#[derive(Debug, Default)]
pub struct ConnCounterCells {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub faults: AtomicU64,
    pub reconnects: AtomicU64,
    pub replayed: AtomicU64,
    pub throttle_waits: AtomicU64,
}

impl ConnCounterCells {
    pub fn snapshot(&self) -> ConnectionCounters {
        ConnectionCounters {
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            faults: self.faults.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            throttle_waits: self.throttle_waits.load(Relaxed),
        }
    }
}

/// Messenger-wide counters; `conns` aggregates every connection's counters.
#[derive(Debug, Default)]
pub struct MessengerCounterCells {
    pub conns: ConnCounterCells,
    pub accepted: AtomicU64,
    pub connected: AtomicU64,
    pub refused: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub open_connections: AtomicU64,
    pub fallbacks: AtomicU64,
    pub shed: AtomicU64,
    /// Links up by transport (a lock, but taken once per link, not per message).
    links_by_transport: parking_lot::Mutex<Vec<(&'static str, u64)>>,
}

impl MessengerCounterCells {
    pub fn snapshot(&self) -> MessengerCounters {
        MessengerCounters {
            connections: self.conns.snapshot(),
            accepted: self.accepted.load(Relaxed),
            connected: self.connected.load(Relaxed),
            refused: self.refused.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            shed: self.shed.load(Relaxed),
            links_by_transport: self.links_by_transport.lock().clone(),
        }
    }

    /// A link of `transport` came up.
    pub fn count_link(&self, transport: &'static str) {
        let mut l = self.links_by_transport.lock();
        match l.iter_mut().find(|(t, _)| *t == transport) {
            Some((_, n)) => *n += 1,
            None => l.push((transport, 1)),
        }
    }

    /// Count a link failure by its cause (see [`ErrorClass`]).
    pub fn count_error(&self, error: &SessionError) {
        match ErrorClass::of(error) {
            ErrorClass::Protocol => self.protocol_errors.fetch_add(1, Relaxed),
            ErrorClass::HandshakeTimeout => self.handshake_timeouts.fetch_add(1, Relaxed),
            ErrorClass::Other => 0,
        };
    }
}

/// One connection's counters plus its messenger's totals: every `add_*` bumps both.
#[derive(Debug, Clone)]
pub struct CounterPair {
    pub conn: Arc<ConnCounterCells>,
    pub total: Arc<MessengerCounterCells>,
}

macro_rules! pair_adders {
    ($($fn:ident => $field:ident),* $(,)?) => {
        impl CounterPair {
            $(
                pub fn $fn(&self, n: u64) {
                    self.conn.$field.fetch_add(n, Relaxed);
                    self.total.conns.$field.fetch_add(n, Relaxed);
                }
            )*
        }
    };
}

pair_adders! {
    add_messages_in => messages_in,
    add_messages_out => messages_out,
    add_bytes_in => bytes_in,
    add_bytes_out => bytes_out,
    add_faults => faults,
    add_reconnects => reconnects,
    add_replayed => replayed,
    add_throttle_waits => throttle_waits,
}

impl CounterPair {
    pub fn new(total: Arc<MessengerCounterCells>) -> Self {
        CounterPair {
            conn: Arc::new(ConnCounterCells::default()),
            total,
        }
    }
}

/// How a link failure is counted in [`MessengerCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The peer sent bytes that break the protocol (bad banner, bad CRC, oversized, bad
    /// features, bad authorizer ...): `protocol_errors`.
    Protocol,
    /// The peer did not finish the handshake in time: `handshake_timeouts`.
    HandshakeTimeout,
    /// Ordinary link loss, local mark-down, replacement: not an error of the peer.
    Other,
}

impl ErrorClass {
    /// The class of a session error.
    pub fn of(error: &SessionError) -> Self {
        match error {
            SessionError::Wire(WireError::Short { .. }) => ErrorClass::Other,
            SessionError::Wire(_)
            | SessionError::MissingFeatures { .. }
            | SessionError::BadProtocolVersion { .. }
            | SessionError::BadAuthorizer
            | SessionError::AuthFailed(_)
            | SessionError::AddressMismatch { .. }
            | SessionError::Protocol(_) => ErrorClass::Protocol,
            SessionError::HandshakeTimeout(_) => ErrorClass::HandshakeTimeout,
            _ => ErrorClass::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_bumps_connection_and_total() {
        let total = Arc::new(MessengerCounterCells::default());
        let a = CounterPair::new(total.clone());
        let b = CounterPair::new(total.clone());
        a.add_messages_in(2);
        b.add_messages_in(3);
        b.add_bytes_out(10);
        assert_eq!(a.conn.snapshot().messages_in, 2);
        assert_eq!(b.conn.snapshot().bytes_out, 10);
        let t = total.snapshot();
        assert_eq!(t.connections.messages_in, 5);
        assert_eq!(t.connections.bytes_out, 10);
    }

    #[test]
    fn errors_are_classified() {
        let total = MessengerCounterCells::default();
        total.count_error(&SessionError::Wire(WireError::BadBanner(
            b"GET / HTTP".to_vec(),
        )));
        total.count_error(&SessionError::HandshakeTimeout(
            std::time::Duration::from_secs(1),
        ));
        total.count_error(&SessionError::PeerClosed);
        let t = total.snapshot();
        assert_eq!((t.protocol_errors, t.handshake_timeouts), (1, 1));
    }
}
