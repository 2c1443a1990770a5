//! msgr over TCP: a transport plug-in for the msgr node driver (`msgr-node`), on mio sockets.
//!
//! [`TcpTransport`] listens and dials; each connection's socket is a [`TcpLink`], an ordered
//! byte stream the node's workers drive (register with the worker's poller, read into the
//! session's buffer, write the session's output with vectored writes). Everything else (the
//! sessions, timers, reconnects, dispatch, counters) is the node's.
//!
//! ```no_run
//! use std::sync::Arc;
//! use msgr_core::api::Messenger;
//! use msgr_core::{EntityName, EntityType};
//! use msgr_node::{Node, NodeConfig};
//! use msgr_tcp::{TcpOptions, TcpTransport};
//!
//! let cfg = NodeConfig::new(EntityName::new(EntityType::OSD, 0), "127.0.0.1:0".parse()?);
//! let node = Node::new(cfg, vec![TcpTransport::new(TcpOptions::default())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Descriptors: a connection holds one (its socket). Out of descriptors, the listener still
//! answers: it accepts new peers on a spare descriptor and closes them at once (counted as
//! `MessengerCounters::shed`), so they never hang in the backlog; open sessions are untouched.
//!
//! Receive path: reads land in zeroed spare space right after the unconsumed bytes (joined
//! without a copy) while traffic is small; large bursts and large message bodies are read
//! through std's `read_to_end` into uninitialised capacity (no zeroing), straight into the
//! buffer the session slices messages from, and those buffers are recycled once every message
//! sliced from them is dropped (see the crate's `read` module).
#![deny(missing_docs)]

mod link;
mod options;
mod read;
mod reserve;
mod transport;

pub use link::TcpLink;
pub use options::TcpOptions;
pub use transport::TcpTransport;
