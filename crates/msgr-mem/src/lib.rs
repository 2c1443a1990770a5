//! # msgr-mem
//!
//! The `mem` transport of the msgr node driver: links between nodes of one process, with no
//! socket and no thread of their own, and a network that a test can control.
//!
//! - [`MemNetwork`]: who listens where, the live links, and (simulation mode) the bytes in
//!   flight with seeded delays, drops (link kills) and partitions.
//! - [`MemTransport`]: a [`msgr_node::Transport`] over a network; give one to each node
//!   (`Node::new(cfg, vec![MemTransport::new(net.clone())])`). A configuration naming the
//!   transport `mem` uses [`MemNetwork::global`].
//! - [`MemLink`]: one end of a link, a [`msgr_node::Link`]: each direction a byte queue under
//!   a mutex; a flush moves the bytes to the peer (or in flight) and wakes the peer's worker
//!   through its [`msgr_node::Notify`].
//!
//! Deterministic simulation: nodes configured with `threads = false` and a
//! [`msgr_node::Clock::Virtual`] clock over a [`MemNetwork::simulated`] network on the same
//! clock run on the caller's thread only; [`run_until_idle`] and [`run_for`] step them and
//! the network and move virtual time. Same seed, same calls: same run. See
//! `examples/sim_two_nodes.rs` and `tests/sim/` (its `main.rs` lists the modules).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
//! use msgr_core::wire::{EntityName, EntityType};
//! use msgr_core::Message;
//! use msgr_mem::{run_for, MemNetwork, MemTransport, SimConfig};
//! use msgr_node::{Clock, Node, NodeConfig, VirtualClock};
//!
//! struct Count(AtomicUsize);
//! impl Dispatcher for Count {
//!     fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let clock = VirtualClock::new();
//! let sim = SimConfig { seed: 1, max_delay: Duration::from_millis(2), ..SimConfig::default() };
//! let net = MemNetwork::simulated(Clock::Virtual(clock.clone()), sim);
//! let node = |i: u8| {
//!     let bind = SocketAddr::from(([10, 0, 0, i], 6800));
//!     let mut cfg = NodeConfig::new(EntityName::new(EntityType::OSD, i.into()), bind);
//!     (cfg.nonce, cfg.seed, cfg.threads) = (Some(i.into()), Some(i.into()), false);
//!     cfg.clock = Clock::Virtual(clock.clone());
//!     let n = Node::new(cfg, vec![MemTransport::new(net.clone())]);
//!     let d = Arc::new(Count(AtomicUsize::new(0)));
//!     n.add_dispatcher(d.clone());
//!     n.start().unwrap();
//!     (n, d)
//! };
//! let ((a, _), (b, got)) = (node(1), node(2));
//! for tid in 0..10 {
//!     a.send_to(Message::new(1, "hi").with_tid(tid), EntityType::OSD, &b.my_addr()).unwrap();
//! }
//! run_for(&[a.clone(), b.clone()], &net, &clock, Duration::from_secs(1));
//! assert_eq!(got.0.load(Ordering::Relaxed), 10);
//! ```

#![deny(missing_docs)]

mod link;
mod network;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use msgr_node::{Node, VirtualClock};

pub use link::{MemLink, READ_BUDGET};
pub use network::{MemNetwork, NetStats, SimConfig};
pub use transport::MemTransport;

/// Rounds at one instant after which [`run_until_idle`] gives up (something keeps making work
/// without time passing).
pub const MAX_ROUNDS: usize = 100_000;

/// Step every node (nodes configured with `threads = false`) and hand over what the network
/// has due, until nothing is left to do at the current time. Returns the next instant
/// something is due: a node's timer or a delivery (None: nothing, ever, without new input).
///
/// Panics after [`MAX_ROUNDS`] busy rounds (a livelock).
pub fn run_until_idle(nodes: &[Node], net: &MemNetwork) -> Option<Instant> {
    for _ in 0..MAX_ROUNDS {
        let mut next: Option<Instant> = None;
        for n in nodes {
            if let Some(d) = n.step() {
                next = Some(next.map_or(d, |x| x.min(d)));
            }
        }
        net.deliver_due();
        let now = net.now();
        let due = next.is_some_and(|d| d <= now) || net.next_delivery().is_some_and(|d| d <= now);
        if !due && !nodes.iter().any(Node::has_work) {
            return match (next, net.next_delivery()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    panic!("nodes still busy after {MAX_ROUNDS} rounds without time passing (livelock?)");
}

/// Run `nodes` and `net` for `d` of virtual time on `clock` (the clock of the nodes and the
/// network): [`run_until_idle`], move the clock to the next instant something is due, again,
/// until `d` has passed.
pub fn run_for(nodes: &[Node], net: &MemNetwork, clock: &VirtualClock, d: Duration) {
    let end = clock.now() + d;
    loop {
        match run_until_idle(nodes, net) {
            Some(t) if t <= end => clock.advance_to(t),
            _ => {
                clock.advance_to(end);
                run_until_idle(nodes, net);
                return;
            }
        }
    }
}
