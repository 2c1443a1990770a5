//! msgr1 over TCP on a mio reactor.
//!
//! [`TcpMessenger`] implements [`msgr_core::api::Messenger`]. It is a thin driver of
//! [`msgr_core::session::Session`]: a fixed set of worker threads (config `workers`), each with
//! its own `mio::Poll`, owns the sockets; sessions, policy, dispatch, throttles and counters come
//! from [`msgr_core::node`].
//!
//! Threads and ownership:
//! - worker 0 also owns the listener; accepted sockets are spread round-robin over the workers;
//!   outgoing connections go to worker `id % workers`. No thread per connection.
//! - a connection ([`conn::TcpConnection`], the `Connection` the application holds) owns its
//!   session under a mutex and is registered by peer address; the worker that owns its current
//!   socket ("link") does all I/O for it. Application threads queue messages into the session and
//!   wake that worker (at most one wake-up per batch).
//! - dispatcher callbacks run on worker threads, outside every lock.
//!
//! Back-pressure (documented behaviour):
//! - receiving: per-policy throttles ([`msgr_core::node::throttle`]); when one is full the worker
//!   stops reading from that peer until the application releases messages (on dispatcher return,
//!   or `Connection::release` when the dispatcher defers release).
//! - sending: each connection accepts at most `send_queue_bytes` of payload not yet written to the
//!   socket. `Connection::send_message` on a full queue returns
//!   [`msgr_core::api::MessengerError::QueueFull`] at once (nothing is queued; retry later);
//!   [`conn::TcpConnection::send_message_timeout`] instead waits up to a timeout for room. A
//!   message larger than the whole limit is accepted when the queue is empty.
//!
//! Faults: a lossless client re-dials with capped exponential backoff and the session replays
//! what the peer did not acknowledge; a lossy session reports `ms_handle_reset`. With
//! `inject_socket_failures = N` about one read or write in N shuts the socket down (tests).

mod config;
pub mod conn;
mod fault;
mod messenger;
mod timer;
mod worker;

pub use config::TcpConfig;
pub use conn::TcpConnection;
pub use messenger::TcpMessenger;
