//! The node driver: worker threads (or hand-stepped workers), each with one poller over the
//! links it owns and the transports' sources (worker 0), a timer heap, a fault injector and a
//! command queue.
//!
//! - [`worker`]: the event loop ([`worker::Worker::turn`]), commands, timers, shutdown.
//! - [`drive`]: one step of one link: read into the session, run it, write its output.
//! - [`links`]: adopting links, dialing (with fallback between transports), transport
//!   events, accept resolution, closing.
//! - [`timer`], [`fault`]: the timer heap and the fault injector.

pub(crate) mod drive;
pub(crate) mod fault;
pub(crate) mod links;
pub(crate) mod timer;
pub(crate) mod worker;
