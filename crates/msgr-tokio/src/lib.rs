//! # msgr-tokio
//!
//! msgr for tokio applications. The messenger API (`msgr_core::api`) is callbacks on the
//! node's worker threads; this crate turns it into futures and a stream:
//!
//! - [`AsyncConnection::send`] waits while the connection's send queue is full instead of
//!   failing with `QueueFull` (closed connections still fail; [`AsyncConnection::send_timeout`]
//!   bounds the wait);
//! - [`AsyncConnection::connected`] resolves once the handshake is done;
//! - [`Incoming`] is a `futures_core::Stream` of [`Event`]s: messages ([`Received`], holding
//!   their throttle budget until dropped, so a slow consumer stops the node's readers),
//!   connects, accepts, faults, resets and remote resets.
//!
//! The node's workers stay plain threads; the futures are woken by them through
//! `Connection::poll_send` / `Connection::poll_connected` (msgr-core), so any executor works
//! for those, while [`AsyncConnection::send_timeout`] and [`AsyncMessenger::shutdown`] need
//! tokio.
//!
//! ```
//! use std::net::SocketAddr;
//! use msgr_core::{EntityName, EntityType, Message};
//! use msgr_mem::{MemNetwork, MemTransport};
//! use msgr_node::{Node, NodeConfig};
//! use msgr_tokio::{AsyncMessenger, Event, Options};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let net = MemNetwork::new();
//! let node = |i: u8| {
//!     let name = EntityName::new(EntityType::OSD, i.into());
//!     let cfg = NodeConfig::new(name, SocketAddr::from(([10, 0, 0, i], 6800)));
//!     AsyncMessenger::start(Node::new(cfg, vec![MemTransport::new(net.clone())]), Options::default())
//! };
//! let (a, _) = node(1)?;
//! let (b, mut b_in) = node(2)?;
//!
//! let conn = a.connect(EntityType::OSD, &b.my_addr())?;
//! conn.send(Message::new(42, "hello")).await?; // waits while the send queue is full
//! conn.connected().await?;
//! loop {
//!     match b_in.recv().await.expect("b is running") {
//!         Event::Message(m) => {
//!             assert_eq!(&m.message().front[..], b"hello");
//!             break; // `m` dropped: its throttle budget goes back
//!         }
//!         other => println!("b: {other:?}"),
//!     }
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok::<(), msgr_core::api::MessengerError>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

mod connection;
mod incoming;
mod messenger;

pub use connection::AsyncConnection;
pub use incoming::{Event, Incoming, Received};
pub use messenger::{AsyncMessenger, Options};
