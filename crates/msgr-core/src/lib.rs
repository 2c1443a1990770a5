//! # msgr-core
//!
//! Everything about Ceph's messenger protocols v1 ("msgr1") and v2.1 ("msgr2") and cephx that does not
//! touch a socket.
//!
//! Layers, one folder each:
//! - [`wire`]: byte-exact encoders and incremental decoders for every msgr1 structure (banner,
//!   legacy `entity_addr_t`, connect / connect-reply, tags, message header and footers, crc32c).
//!   No state beyond what one decoder needs to resume after a short read.
//! - [`session`]: the per-connection state machine, for both the connecting and the accepting side.
//!   It takes bytes, time and API calls in, and gives bytes, events and its next deadline out
//!   (quinn-proto style). TCP and RDMA transports are only drivers of it.
//! - [`v2`]: msgr2.1 wire structures (banner, frames in crc and AES-GCM secure mode, payloads).
//! - [`session_v2`]: the msgr2.1 session state machine, with the same driving contract.
//! - [`protocol`]: the one driving contract both sessions keep, and [`protocol::AnySession`],
//!   which holds either (or detects an accepted peer's protocol from its banner).
//! - [`auth`]: cephx (keyrings, CryptoAES, the monitor exchange) and auth method / mode numbers.
//! - [`api`]: the `Messenger`, `Connection` and `Dispatcher` traits, [`policy::Policy`] and
//!   errors that applications use and transports implement.
//!
//! Nothing here spawns a thread or opens a socket.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
mod counters;
mod error;
pub mod message;
mod outgoing;
mod shared_error;

pub mod policy;
pub mod protocol;
pub mod session;
pub mod session_v2;
pub mod v2;
pub mod wire;

pub use message::{DataCrc, Message, Priority};
pub use policy::Policy;
pub use wire::{EntityAddr, EntityName, EntityType};
