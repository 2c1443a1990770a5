//! msgr1 over RDMA: the msgr-core session carried over reliable-connected queue pairs that
//! rdma_cm sets up, with registered buffer pools and credit-based flow control.
//!
//! Layers (each a module):
//! - [`verbs`]: the only `unsafe` code; a safe wrapper over libibverbs / librdmacm (device list,
//!   protection domain, memory regions, completion channels and queues, RC queue pairs, rdma_cm
//!   ids and event channels), each resource freed once, children never outliving parents.
//! - [`credit`]: sans-IO flow control: a SEND is posted only when the peer has a receive for
//!   it (no RNR in normal operation); credits travel in the immediate data of every SEND, or in a
//!   zero-length credit-only SEND when the peer is running low.
//! - [`link`]: one connection's QP as an ordered byte stream: what the session writes is copied
//!   into registered send buffers (at most one peer receive buffer per SEND), received buffers
//!   are copied out and re-posted. Chunks of `read_threshold` bytes or more (message data
//!   sections) are not copied at all: the peer fetches them with one RDMA READ from where they
//!   lie (registered per send, or inside a [`RegisteredBuffer`] registered once) straight into
//!   the buffer its session decodes from.
//! - [`endpoint`]: rdma_cm connection management: listen, resolve address / route, connect,
//!   accept or reject (accept hook, reason in the reject private data), disconnect.
//! - [`messenger`] / [`conn`] / `reactor`: [`RdmaMessenger`], the `msgr_core::api::Messenger`
//!   over all of that, driving the same `msgr_core::session::Session` as the TCP transport and
//!   using `msgr_core::node` for the registry, accept resolution, dispatch and counters.
//!
//! Threads: `workers` reactor threads per messenger, each with one mio poll over its links'
//! completion channels and an optional busy-poll budget (`poll_us`); reactor 0 also owns the
//! rdma_cm event channel and hands each established QP to its owner (round-robin). Dispatcher
//! callbacks run on the reactor of the connection's link: a slow dispatcher stops receive
//! buffers from being re-posted, which runs the peer out of credits
//! (`RdmaCounters::credit_stalls`): that is the back-pressure. `send_message` never refuses for
//! size (messages wait in the session until credits allow).
//!
//! Faults: a QP error (completion with error, rdma_cm DISCONNECTED, peer process gone) is a link
//! failure for the session: lossless sessions reconnect with backoff and replay, lossy ones are
//! reset. `RdmaMessenger::inject_qp_error` forces a QP into the error state (tests).
#![deny(unsafe_code)]

pub mod conn;
pub mod credit;
pub mod endpoint;
pub mod error;
pub mod link;
pub mod messenger;
pub mod options;
mod reactor;
#[allow(unsafe_code)]
pub mod verbs;

pub use conn::RdmaConnection;
pub use error::RdmaError;
pub use messenger::{RdmaConfig, RdmaCounters, RdmaMessenger};
pub use options::RdmaOptions;
pub use verbs::RegisteredBuffer;
