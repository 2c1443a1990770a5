//! # msgr-node
//!
//! The node driver of msgr: everything a messenger does around its sessions, once, for every
//! transport. A [`Node`] is the one [`msgr_core::api::Messenger`]; transports plug in through
//! the [`Transport`] / [`Link`] traits ([`transport`]).
//!
//! ```text
//!   application ── Messenger / Connection / Dispatcher (msgr-core api)
//!        │
//!   Node (this crate): workers, timers, dial / accept / reconnect / fallback, dispatch,
//!        │              throttles, counters, fault injection, shutdown
//!        │   Session (msgr-core, sans-IO): bytes + time in, bytes + events + deadlines out
//!        │
//!   Transport + Link: tcp (msgr-tcp, mio sockets) | rdma (msgr-rdma, verbs + rdma_cm)
//!                     | mem (msgr-mem, in-process)
//! ```
//!
//! Threads and ownership:
//! - `workers` threads, each with its own `mio::Poll`; worker 0 also polls the transports'
//!   sources (listeners, connection managers). Accepted links are spread round-robin over the
//!   workers; a connection's own dials go to worker `id % workers`. No thread per connection.
//! - a connection ([`NodeConnection`]) owns its session under a mutex and is registered by peer
//!   address; the worker that owns its current link does all I/O for it. Application threads
//!   queue messages into the session and wake that worker (one wake-up per batch).
//! - dispatcher callbacks run on worker threads, outside every lock.
//! - with [`NodeConfig::threads`] = false no thread runs: [`Node::step`] turns every worker
//!   once, on the caller's thread, with the time of [`NodeConfig::clock`] (deterministic
//!   simulation; see msgr-mem).
//!
//! Several transports: the node listens on each (same IP and port), and dials a peer with the
//! first that can reach it; a transport that cannot ([`DialError::unreachable`]) hands over to
//! the next, logged once per connection and counted (`MessengerCounters::fallbacks`). A
//! lossless session whose link fails reconnects the same way and replays.
//!
//! Back-pressure: receiving, per-policy throttles (the worker stops reading from a peer whose
//! messages wait for budget); sending, `send_queue_bytes` per connection
//! (`MessengerError::QueueFull`, or [`NodeConnection::send_message_timeout`] to wait; async
//! code awaits room through `Connection::poll_send`, which wakes its task when queued bytes are
//! written, as `poll_connected` does when the handshake ends: see the msgr-tokio crate).
#![deny(missing_docs)]

mod clock;
mod config;
mod connection;
mod driver;
mod messenger;
mod node;
mod port;
mod shared;
pub mod transport;
mod wait;

pub use clock::{Clock, VirtualClock};
pub use config::{Msgr2Config, NodeConfig};
pub use connection::NodeConnection;
pub use messenger::Node;
/// A transport's own error, boxed (see [`Transport::listen`]).
pub use msgr_core::api::TransportError;
pub use node::counters::ErrorClass;
pub use transport::{
    DialError, DialId, Dialing, Link, Notify, ReadEnd, Ready, Registration, Transport,
    TransportEvent,
};
