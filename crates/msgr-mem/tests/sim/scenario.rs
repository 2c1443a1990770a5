//! The vocabulary of a run: what it is about ([`Scenario`]), its random numbers ([`Rng`]),
//! node instances and their addresses, and the message body that names sender and receiver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use msgr_core::wire::EntityAddr;

/// What a run is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Lossless peers sending to each other at random times, links failing under them.
    Lossless,
    /// Lossless peers that all send at t=0: simultaneous connects.
    Race,
    /// A lossless client and a stateful server (which answers on the client's connection).
    ClientServer,
    /// A lossy client sending to a stateless server.
    Lossy,
    /// Lossless peers, one or two of which restart (new or same nonce).
    Restart,
    /// Lossless peers that mark each other down.
    MarkDown,
}

impl Scenario {
    /// Lossless policies and no restarts or mark-downs: no session may be reset here. (The peer
    /// may still look reset: msgr1 takes a reconnect with connect_seq 0 to a session that sent
    /// READY as a peer reset, as Ceph does, so a handshake reply lost to a link failure drops
    /// the queue of that session, reported as a remote reset.)
    pub fn lossless(self) -> bool {
        matches!(
            self,
            Scenario::Lossless | Scenario::Race | Scenario::ClientServer
        )
    }
    /// The test that runs this scenario (for the replay hint).
    pub fn test_name(self) -> &'static str {
        match self {
            Scenario::Lossless => "lossless_random_faults",
            Scenario::Race => "lossless_simultaneous_connects",
            Scenario::ClientServer => "lossless_client_and_stateful_server",
            Scenario::Lossy => "lossy_reports_every_undelivered_message",
            Scenario::Restart => "restarts_report_or_deliver_everything",
            Scenario::MarkDown => "mark_down_reports_or_delivers_everything",
        }
    }
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    /// One of `v`.
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.next() as usize % v.len()]
    }
    /// True about once in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    /// In `lo..hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// A node instance: its index and incarnation (restarts count up).
pub type Inst = (usize, u32);

/// Where node `i` listens.
pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 6800))
}

/// The node index of an address [`addr_of`] made.
pub fn node_of(a: &EntityAddr) -> Option<usize> {
    match a.ip()? {
        IpAddr::V4(ip) => Some(usize::from(ip.octets()[3]).checked_sub(1)?),
        IpAddr::V6(_) => None,
    }
}

/// The message body: sender node and incarnation, receiver node; the data section is all
/// `tid % 251`.
pub fn body(from: Inst, to: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&(from.0 as u32).to_le_bytes());
    v.extend_from_slice(&from.1.to_le_bytes());
    v.extend_from_slice(&(to as u32).to_le_bytes());
    v
}

/// Sender instance and receiver node from a front [`body`] made.
pub fn parse(front: &[u8]) -> Option<(Inst, usize)> {
    let w = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(front.get(i..i + 4)?.try_into().ok()?))
    };
    Some(((w(0)? as usize, w(4)?), w(8)? as usize))
}
