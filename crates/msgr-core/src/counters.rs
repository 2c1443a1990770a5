//! Counters of connections and messengers: plain numbers that an application reads with
//! `counters()`, serializes (serde, e.g. to JSON) and sums over many connections or
//! messengers with `+=`.

use std::ops::AddAssign;

use serde::Serialize;

/// Counters of one connection (monotonic, since it was created).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionCounters {
    /// Messages received.
    pub messages_in: u64,
    /// Messages queued for sending.
    pub messages_out: u64,
    /// Bytes read from links (all wire bytes; payload bytes for local delivery).
    pub bytes_in: u64,
    /// Bytes written to links (all wire bytes; payload bytes for local delivery).
    pub bytes_out: u64,
    /// Link failures the session survived (lossless: it reconnects, or waits for the peer).
    pub faults: u64,
    /// Links that replaced a failed one (dialed again, or the peer's reconnect accepted).
    pub reconnects: u64,
    /// Messages pending (queued or unacknowledged) when a reconnected link we dialed came up:
    /// sent (again) on it.
    pub replayed: u64,
    /// Times a received message waited for its policy's throttle budget.
    pub throttle_waits: u64,
}

/// Counters of a whole messenger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessengerCounters {
    /// Sums over every connection the messenger ever had.
    pub connections: ConnectionCounters,
    /// Handshakes completed on links peers dialed.
    pub accepted: u64,
    /// Handshakes completed on links we dialed.
    pub connected: u64,
    /// Peers refused at accept by the application's accept hook.
    pub refused: u64,
    /// Links closed because of a protocol error (bad banner, bad CRC, oversized, stalled ...).
    pub protocol_errors: u64,
    /// Links closed because the handshake did not finish in time.
    pub handshake_timeouts: u64,
    /// Connections with a link up right now (gauge; `+=` sums it over messengers).
    pub open_connections: u64,
    /// Dials that fell back to a later transport of the node's list (the earlier one could not
    /// reach the peer).
    pub fallbacks: u64,
    /// Peers closed at once on arrival: the node held `max_connections` links, or the
    /// transport was out of file descriptors (see the log for which).
    pub shed: u64,
    /// Links that came up, by transport name ("tcp", "rdma", "mem"), dialed and accepted.
    pub links_by_transport: Vec<(&'static str, u64)>,
}

impl AddAssign<&ConnectionCounters> for ConnectionCounters {
    fn add_assign(&mut self, o: &ConnectionCounters) {
        // Destructured, so a new counter cannot be forgotten here.
        let ConnectionCounters {
            messages_in,
            messages_out,
            bytes_in,
            bytes_out,
            faults,
            reconnects,
            replayed,
            throttle_waits,
        } = o;
        self.messages_in += messages_in;
        self.messages_out += messages_out;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.faults += faults;
        self.reconnects += reconnects;
        self.replayed += replayed;
        self.throttle_waits += throttle_waits;
    }
}

impl AddAssign for ConnectionCounters {
    fn add_assign(&mut self, o: ConnectionCounters) {
        *self += &o;
    }
}

impl AddAssign<&MessengerCounters> for MessengerCounters {
    fn add_assign(&mut self, o: &MessengerCounters) {
        let MessengerCounters {
            connections,
            accepted,
            connected,
            refused,
            protocol_errors,
            handshake_timeouts,
            open_connections,
            fallbacks,
            shed,
            links_by_transport,
        } = o;
        self.connections += connections;
        self.accepted += accepted;
        self.connected += connected;
        self.refused += refused;
        self.protocol_errors += protocol_errors;
        self.handshake_timeouts += handshake_timeouts;
        self.open_connections += open_connections;
        self.fallbacks += fallbacks;
        self.shed += shed;
        for &(name, n) in links_by_transport {
            match self.links_by_transport.iter_mut().find(|(t, _)| *t == name) {
                Some((_, sum)) => *sum += n,
                None => self.links_by_transport.push((name, n)),
            }
        }
    }
}

impl AddAssign for MessengerCounters {
    fn add_assign(&mut self, o: MessengerCounters) {
        *self += &o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_assign_sums_every_counter_and_merges_transports() {
        let one = MessengerCounters {
            connections: ConnectionCounters {
                messages_in: 1,
                messages_out: 2,
                bytes_in: 3,
                bytes_out: 4,
                faults: 5,
                reconnects: 6,
                replayed: 7,
                throttle_waits: 8,
            },
            accepted: 9,
            connected: 10,
            refused: 11,
            protocol_errors: 12,
            handshake_timeouts: 13,
            open_connections: 14,
            fallbacks: 15,
            shed: 16,
            links_by_transport: vec![("tcp", 17)],
        };
        let mut sum = one.clone();
        sum += MessengerCounters {
            links_by_transport: vec![("rdma", 1), ("tcp", 2)],
            ..one.clone()
        };
        let c = &sum.connections;
        assert_eq!(
            [
                c.messages_in,
                c.messages_out,
                c.bytes_in,
                c.bytes_out,
                c.faults,
                c.reconnects,
                c.replayed,
                c.throttle_waits
            ],
            [2, 4, 6, 8, 10, 12, 14, 16]
        );
        assert_eq!(
            [
                sum.accepted,
                sum.connected,
                sum.refused,
                sum.protocol_errors,
                sum.handshake_timeouts,
                sum.open_connections,
                sum.fallbacks,
                sum.shed
            ],
            [18, 20, 22, 24, 26, 28, 30, 32]
        );
        assert_eq!(sum.links_by_transport, vec![("tcp", 19), ("rdma", 1)]);
    }

    #[test]
    fn serializes_with_field_names() {
        let c = MessengerCounters {
            accepted: 3,
            links_by_transport: vec![("tcp", 2)],
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert_eq!(v["accepted"], 3);
        assert_eq!(v["connections"]["bytes_in"], 0);
        assert_eq!(v["links_by_transport"][0][0], "tcp");
        assert_eq!(v["links_by_transport"][0][1], 2);
    }
}
