//! msgr1 over RDMA: the msgr-core session carried over reliable-connected queue pairs that
//! rdma_cm sets up, with registered buffer pools and credit-based flow control.
//!
//! Layers:
//! - [`verbs`]: the only `unsafe` code; a safe wrapper over libibverbs / librdmacm.
//! - [`credit`]: sans-IO flow control (who may post a send, when to return credits).
//! - [`link`]: one connection's QP as a byte stream (chunks over SEND/RECV with credits).
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
