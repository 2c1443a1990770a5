//! [`AsyncMessenger`]: a started node with its [`Incoming`] stream.

use std::sync::Arc;

use msgr_core::api::{Messenger, MessengerError};
use msgr_core::{EntityAddr, EntityType, Message};
use msgr_node::Node;

use crate::incoming::{Feed, Incoming};
use crate::AsyncConnection;

/// Peer types whose policies get a message throttle (the `EntityType` constants).
const PEER_TYPES: [EntityType; 6] = [
    EntityType::MON,
    EntityType::MDS,
    EntityType::OSD,
    EntityType::CLIENT,
    EntityType::MGR,
    EntityType::AUTH,
];

/// How [`AsyncMessenger::start`] sets a node up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Received messages the application may hold (not yet dropped or released) per peer
    /// type, for policies that set no `throttle_messages` of their own; the node stops
    /// reading from those peers beyond it. Default 1024.
    pub max_held_messages: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_held_messages: 1024,
        }
    }
}

impl Options {
    /// Set [`Options::max_held_messages`] (at least 1).
    pub fn max_held_messages(mut self, n: u64) -> Self {
        self.max_held_messages = n.max(1);
        self
    }
}

/// A node driven from async code: connections whose sends and handshakes can be awaited,
/// and what it receives as a stream. Cheap to clone (a handle on the node).
///
/// Call [`AsyncMessenger::shutdown`] before the last handle goes: dropping the last handle on
/// the node shuts it down on the dropping thread, blocking it (up to `shutdown_flush`) while
/// the workers finish.
#[derive(Clone, Debug)]
pub struct AsyncMessenger {
    node: Node,
    feed: Arc<FeedHandle>,
}

/// Keeps the feed reachable from every handle (to end the stream on shutdown).
struct FeedHandle(Arc<Feed>);

impl std::fmt::Debug for FeedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Feed")
    }
}

impl AsyncMessenger {
    /// Start `node` (built but not started, with no dispatcher of its own: the adapter's must
    /// be the first, it receives the messages) and return it with its incoming stream.
    ///
    /// Every peer type's policy without a `throttle_messages` gets
    /// [`Options::max_held_messages`], so that the stream's back-pressure has a bound; limits
    /// the configuration sets are kept.
    pub fn start(node: Node, opts: Options) -> Result<(AsyncMessenger, Incoming), MessengerError> {
        if node.is_started() {
            return Err(MessengerError::Transport(
                "msgr-tokio: this node was started already; hand AsyncMessenger::start a node \
                 that is not (its dispatcher, which feeds the stream, must be the first)"
                    .into(),
            ));
        }
        for t in PEER_TYPES {
            let mut policy = node.policy(t);
            if policy.throttle_messages.is_none() {
                policy.throttle_messages = Some(opts.max_held_messages.max(1));
                node.set_policy(t, policy);
            }
        }
        let (feed, incoming) = Feed::new();
        node.add_dispatcher(feed.clone());
        node.start()?;
        let feed = Arc::new(FeedHandle(feed));
        Ok((AsyncMessenger { node, feed }, incoming))
    }

    /// The node (counters, policies, fault injection ...).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The address peers reach us at.
    pub fn my_addr(&self) -> EntityAddr {
        self.node.my_addr()
    }

    /// The connection to `addr` (created and dialed on first use; our own address gives the
    /// loopback connection). Await [`AsyncConnection::connected`] for the handshake.
    pub fn connect(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<AsyncConnection, MessengerError> {
        Ok(AsyncConnection::new(self.node.connect_to(peer_type, addr)?))
    }

    /// Send `msg` to `addr`, connecting if needed; waits for send-queue room like
    /// [`AsyncConnection::send`].
    pub async fn send_to(
        &self,
        msg: Message,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<(), MessengerError> {
        self.connect(peer_type, addr)?.send(msg).await
    }

    /// Shut the node down (flush what is queued for up to `shutdown_flush`, report the rest
    /// as [`crate::Event::Reset`]) on a blocking thread, then end the [`Incoming`] stream
    /// after the events left. Needs a tokio runtime.
    pub async fn shutdown(&self) {
        let node = self.node.clone();
        if tokio::task::spawn_blocking(move || node.shutdown())
            .await
            .is_err()
        {
            // The node's own threads log a panic; the stream still ends.
            self.node.shutdown();
        }
        self.feed.0.close();
    }
}
