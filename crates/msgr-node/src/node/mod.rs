//! The node's bookkeeping that needs no I/O and no thread: what the driver (`crate::driver`)
//! uses around its [`msgr_core::session::Session`]s, each piece unit-tested on its own:
//!
//! - [`registry`]: sessions keyed by peer address, and [`registry::resolve_accept`], which asks the
//!   accept hook and [`msgr_core::session::accept::decide`] how to answer a peer's connect, then
//!   applies the answer with [`msgr_core::protocol::AnySession::resolve_accept`] (msgr2 has its own
//!   rules).
//! - [`attach`]: the registry step of accept resolution ([`attach_accepted`]): which connection
//!   owns an accepted link.
//! - [`dispatch`]: the registered [`msgr_core::api::Dispatcher`]s, and how each
//!   [`msgr_core::session::SessionEvent`] maps to a dispatcher callback.
//! - [`inbox`]: a connection's ordered event queue and the throttled loop that hands it to the
//!   dispatchers.
//! - [`local`]: loopback delivery when the destination is our own address (no socket involved).
//! - [`throttle`]: per-policy throttles on received messages and bytes not yet released by the
//!   application (Ceph's policy throttlers), with wake-up callbacks for paused readers.
//! - [`conn`]: one connection's session, link bookkeeping, inbox, throttle and send-queue
//!   accounting ([`conn::ConnCore`]); the driver adds how a link is driven.
//! - [`counters`]: atomic counters per connection and per messenger, readable through the API.
//! - [`admission`]: links held against `max_connections`.
//! - [`backoff`]: capped exponential reconnect delay.
//! - [`shared`]: a messenger's transport-neutral state ([`NodeShared`]: policies, registry,
//!   addresses, started / stopping) and the common steps of `start`, `connect_to`, `shutdown`.
//!
//! Nothing here opens a socket, spawns a thread or sleeps; callbacks are run on the caller's
//! thread.

pub mod admission;
pub mod attach;
pub mod backoff;
pub mod conn;
pub mod counters;
pub mod dispatch;
pub mod inbox;
pub mod local;
pub mod registry;
pub mod shared;
pub mod throttle;

pub use attach::{attach_accepted, Accepting, Attached};
pub use backoff::Backoff;
pub use conn::Followup;
pub use counters::MessengerCounterCells;
pub use dispatch::Dispatchers;
pub use inbox::Inbox;
pub use local::Loopback;
pub use registry::Registry;
pub use shared::NodeShared;
pub use throttle::{PolicyThrottle, Throttles};
