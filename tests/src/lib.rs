//! Messenger scenarios after Ceph's `src/test/msgr/test_msgr.cc`, written against the public API
//! only and parameterised by the transport name (`"tcp"`, `"rdma"`): a test target calls each
//! scenario with its transport (see `tests/tcp.rs`), so every transport runs the same checks.
//!
//! Waits use generous deadlines only as a safety net (a hung transport fails instead of hanging
//! CI); no assertion is about how long anything took.

pub mod harness;
pub mod hostile;
pub mod scenarios;
pub mod stress;

pub use harness::{node, test_config, Node, Recorder};
