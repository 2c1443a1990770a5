//! msgr1 over RDMA, as a transport plug-in of the msgr node driver (`msgr-node`): the
//! msgr-core session carried over reliable-connected queue pairs that rdma_cm sets up, with
//! registered buffer pools, credit-based flow control and large payloads fetched by RDMA READ.
//!
//! ```text
//!   Node (msgr-node): workers, sessions, dial / accept / reconnect / fallback, dispatch
//!     │  Transport / Link traits
//!   RdmaTransport (transport) ── Endpoint (endpoint): rdma_cm listen / connect / accept
//!   RdmaLink (rdma_link) ─────── link::Link: one QP as an ordered byte stream
//!                                  credit: flow control      verbs: the only `unsafe` code
//! ```
//!
//! Layers (each a module):
//! - `verbs`: the only `unsafe` code; a safe wrapper over libibverbs / librdmacm (device list,
//!   protection domain, memory regions, completion channels and queues, RC queue pairs, rdma_cm
//!   ids and event channels), each resource freed once, children never outliving parents.
//! - `credit`: sans-IO flow control: a SEND is posted only when the peer has a receive for
//!   it (no RNR in normal operation); credits travel in the immediate data of every SEND, or in a
//!   zero-length credit-only SEND when the peer is running low.
//! - `link`: one connection's QP as an ordered byte stream: what the session writes is copied
//!   into registered send buffers (at most one peer receive buffer per SEND), received buffers
//!   are copied out and re-posted. Chunks of `read_threshold` bytes or more (message data
//!   sections) are not copied at all: the peer fetches them with one RDMA READ from where they
//!   lie (registered per send, or inside a [`RegisteredBuffer`] registered once) straight into
//!   the buffer its session decodes from.
//! - `endpoint`: rdma_cm connection management: listen, resolve address / route, connect,
//!   accept or reject (reason in the reject private data), disconnect.
//! - [`RdmaTransport`] / [`RdmaLink`]: the two `msgr_node` traits over those: the transport
//!   owns the endpoint (its event channel polled by the node's worker 0) and turns
//!   established connections into links; each link's completion channel is polled by the
//!   worker that owns it, which drives the session as it drives a TCP socket.
//! - [`RdmaMessenger`]: a node with RDMA as its only transport, plus [`RdmaCounters`],
//!   registered buffers and QP fault injection. A node may as well list RDMA with other
//!   transports (`Node::new(cfg, vec![rdma, tcp])`): a peer RDMA cannot reach (no device on
//!   the route, nobody listening over rdma_cm) is dialed over the next one.
//!
//! Back-pressure: a connection paused by its throttle stops consuming its link's receive
//! buffers, so they are not re-posted and the peer runs out of credits
//! (`RdmaCounters::credit_stalls`); `send_message` never refuses for size (messages wait in
//! the session until credits allow).
//!
//! Faults: a QP error (completion with error, rdma_cm DISCONNECTED, peer process gone) is a
//! link failure for the session: lossless sessions reconnect with backoff and replay, lossy
//! ones are reset. `RdmaMessenger::inject_qp_error` forces a QP into the error state (tests).
//!
//! `verbs`, `credit`, `link` and `endpoint` are internals: public (and hidden from the docs)
//! only so that this crate's integration tests and examples can drive a link without a node.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod counters;
// Internal: public only for this crate's integration tests (tests/, examples/).
#[doc(hidden)]
pub mod credit;
// Internal: public only for this crate's integration tests (tests/, examples/).
#[doc(hidden)]
pub mod endpoint;
pub mod error;
// Internal: public only for this crate's integration tests (tests/, examples/).
#[doc(hidden)]
pub mod link;
mod messenger;
pub mod options;
mod rdma_link;
mod transport;
// Internal: public only for this crate's integration tests (tests/, examples/) and msgr's
// unit tests (`list_devices`, to skip where a device exists).
#[allow(unsafe_code)]
#[doc(hidden)]
pub mod verbs;

pub use counters::RdmaCounters;
pub use error::RdmaError;
pub use messenger::{RdmaConfig, RdmaMessenger};
pub use options::RdmaOptions;
pub use rdma_link::RdmaLink;
pub use transport::RdmaTransport;
pub use verbs::RegisteredBuffer;
