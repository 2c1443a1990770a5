//! [`AsyncConnection`]: a connection whose sends and handshake can be awaited.

use std::future::poll_fn;
use std::time::Duration;

use msgr_core::api::{ConnectionRef, MessengerError};
use msgr_core::{EntityAddr, Message};

/// A connection handle for async code, cheap to clone. It wraps the messenger's
/// [`ConnectionRef`]; [`AsyncConnection::inner`] reaches everything else it offers.
#[derive(Clone)]
pub struct AsyncConnection(ConnectionRef);

impl std::fmt::Debug for AsyncConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnection")
            .field("peer", &self.0.peer_addr())
            .field("connected", &self.0.is_connected())
            .finish()
    }
}

impl AsyncConnection {
    /// Wrap a connection of any messenger (those of `msgr-node` wait for room and for the
    /// handshake; others answer at once, see `Connection::poll_send`).
    pub fn new(conn: ConnectionRef) -> Self {
        AsyncConnection(conn)
    }

    /// The wrapped connection (counters, keepalives, transport name ...).
    pub fn inner(&self) -> &ConnectionRef {
        &self.0
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> EntityAddr {
        self.0.peer_addr()
    }

    /// Queue `msg`, waiting while the connection's send queue is full (`send_queue_bytes`)
    /// instead of failing with `QueueFull`. Fails with `ConnectionClosed` (or `ShutDown`) when
    /// the connection is or becomes closed while waiting. The wait has no limit of its own: a
    /// lossless session without a link keeps its queue until it reconnects, so bound it with
    /// [`AsyncConnection::send_timeout`] or `tokio::time::timeout`.
    ///
    /// Cancel-safe: when the future is dropped before it completes, `msg` was not queued.
    pub async fn send(&self, msg: Message) -> Result<(), MessengerError> {
        let mut msg = Some(msg);
        poll_fn(|cx| self.0.poll_send(cx, &mut msg)).await
    }

    /// [`AsyncConnection::send`] that gives up after `timeout` with `SendTimeout` (the message
    /// is then not queued).
    pub async fn send_timeout(
        &self,
        msg: Message,
        timeout: Duration,
    ) -> Result<(), MessengerError> {
        match tokio::time::timeout(timeout, self.send(msg)).await {
            Ok(r) => r,
            Err(_) => Err(MessengerError::SendTimeout(timeout)),
        }
    }

    /// Queue `msg` now or fail (`QueueFull` when the send queue is full); never waits.
    pub fn try_send(&self, msg: Message) -> Result<(), MessengerError> {
        self.0.send_message(msg)
    }

    /// Wait until the handshake with the peer is done (at once if it is). Fails when the
    /// connection is or becomes closed. A lossless connection retries a peer that does not
    /// answer for ever: bound the wait with `tokio::time::timeout`.
    pub async fn connected(&self) -> Result<(), MessengerError> {
        poll_fn(|cx| self.0.poll_connected(cx)).await
    }

    /// Handshake done and the link up, now.
    pub fn is_connected(&self) -> bool {
        self.0.is_connected()
    }

    /// Drop the session now: waiting sends fail, queued messages come back in
    /// [`crate::Event::Reset`].
    pub fn mark_down(&self) {
        self.0.mark_down();
    }
}
