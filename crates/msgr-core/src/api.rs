//! The application-facing API, implemented by the node driver (`msgr-node`) whatever the
//! transports.
//!
//! An application builds a messenger (usually from a TOML file through the `msgr` facade),
//! registers a [`Dispatcher`], starts it, and sends messages to entity addresses or on
//! [`Connection`]s. Incoming messages, connects, accepts and resets come back through the
//! dispatcher, called from the transport's worker threads: a dispatcher must not block for long.

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::message::Message;
use crate::policy::Policy;
use crate::session::SessionError;
use crate::wire::{EntityAddr, EntityName, EntityType};

pub use crate::counters::{ConnectionCounters, MessengerCounters};
pub use crate::error::{MessengerError, TransportError};
pub use crate::shared_error::SharedError;

/// A connection handle, cheap to clone.
pub type ConnectionRef = Arc<dyn Connection>;

/// One peer, as the application sees it.
pub trait Connection: Send + Sync {
    /// The peer's address (the one dialed, or the one it announced).
    fn peer_addr(&self) -> EntityAddr;
    /// The peer's entity type (OSD, MON ...).
    fn peer_type(&self) -> EntityType;
    /// Known once the handshake finished.
    fn peer_name(&self) -> Option<EntityName>;
    /// Feature bits negotiated with the peer (0 before the handshake).
    fn features(&self) -> u64;
    /// Queue a message. Errors if the connection is closed or the send queue is full (see the
    /// transport's docs for the exact back-pressure behaviour).
    fn send_message(&self, msg: Message) -> Result<(), MessengerError>;
    /// Queue a keepalive (msgr1 KEEPALIVE2; the peer answers with an ack).
    fn send_keepalive(&self) -> Result<(), MessengerError>;
    /// Handshake finished and the link is up.
    fn is_connected(&self) -> bool;
    /// Drop the session now; queued messages are reported as undelivered.
    fn mark_down(&self);
    /// This connection's counters, since it was created.
    fn counters(&self) -> ConnectionCounters;
    /// Hand a received message's throttle budget back (messages are released automatically when
    /// the dispatcher returns, unless the dispatcher keeps them with `Dispatcher::defer_release`).
    fn release(&self, msg_len: usize) {
        let _ = msg_len;
    }
    /// The transport carrying this connection now, or the last one that did ("tcp", "rdma",
    /// "mem"; "local" for a messenger's connection to itself); None before a first link.
    fn transport(&self) -> Option<&'static str> {
        None
    }
    /// The messenger protocol this connection speaks (`V1` for a messenger's connection to
    /// itself, which has no wire); on an accepted link, once the peer's banner said it.
    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::V1
    }
    /// Async send: queue `msg.take()` if it fits in the send queue now (`Ready(Ok)`), fail on a
    /// closed connection (`Ready(Err)`), or leave `msg` in place and wake `cx` once queued bytes
    /// were written or the connection closed (`Pending`). Default: `send_message` at once.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        msg: &mut Option<Message>,
    ) -> Poll<Result<(), MessengerError>> {
        let _ = cx;
        Poll::Ready(msg.take().map_or(Ok(()), |m| self.send_message(m)))
    }
    /// Async handshake wait: `Ready(Ok)` once connected, `Ready(Err)` once closed, else wake
    /// `cx` when either happens. Default: ready (connections that are always connected).
    fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<Result<(), MessengerError>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

/// Callbacks from a messenger to the application. All have defaults except `ms_dispatch`.
pub trait Dispatcher: Send + Sync {
    /// A message arrived, in order, once.
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message);
    /// Our outgoing connection finished its handshake.
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        let _ = conn;
    }
    /// A peer's connection finished its handshake.
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        let _ = conn;
    }
    /// The session is gone (lossy fault, mark_down, shutdown); `undelivered` never reached the peer
    /// for sure.
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        let _ = (conn, undelivered);
    }
    /// The peer lost its session state with us (it restarted, or dropped our session). Our side
    /// of the session was reset too: message numbering restarts on the same connection, and
    /// what was queued or sent but not acknowledged is dropped; those messages follow in
    /// [`Dispatcher::ms_handle_remote_reset_undelivered`].
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        let _ = conn;
    }
    /// Called right after [`Dispatcher::ms_handle_remote_reset`] when the reset dropped
    /// messages: `undelivered` (sent-but-unacknowledged in sequence order, then never-sent in
    /// queue order) will not be sent again; the peer may or may not have received the ones
    /// already sent. Resend what still matters on `conn`. Default: ignore them, as Ceph does.
    fn ms_handle_remote_reset_undelivered(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        let _ = (conn, undelivered);
    }
    /// A link failed (`error` says why): a lossless session will reconnect and replay; when the
    /// failure ends the session (a lossy one, or one retrying cannot fix, such as refused
    /// credentials) `ms_handle_reset` follows.
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        let _ = (conn, error);
    }
    /// Return true to keep each dispatched message's throttle budget after `ms_dispatch` returns;
    /// the application then hands it back with `Connection::release(msg.payload_len())`.
    fn defer_release(&self) -> bool {
        false
    }
    /// Accept hook: return false to refuse this peer before its session is created.
    fn ms_verify_accept(&self, peer_addr: &EntityAddr, peer_type: EntityType) -> bool {
        let _ = (peer_addr, peer_type);
        true
    }
}

/// A messenger: one local entity, its listener, its sessions.
pub trait Messenger: Send + Sync {
    /// Our entity name (type and number).
    fn my_name(&self) -> EntityName;
    /// The address peers use to reach us (bound port and nonce filled in).
    fn my_addr(&self) -> EntityAddr;
    /// Set before start; the default comes from config.
    fn set_policy(&self, peer_type: EntityType, policy: Policy);
    /// Register the application's callbacks (before `start`).
    fn add_dispatcher(&self, dispatcher: Arc<dyn Dispatcher>);
    /// Start workers and the listener.
    fn start(&self) -> Result<(), MessengerError>;
    /// The connection to `addr` (created on first use; local delivery when `addr` is ours).
    fn connect_to(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<ConnectionRef, MessengerError>;
    /// Send to an address, creating the connection if needed.
    fn send_to(
        &self,
        msg: Message,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<(), MessengerError> {
        self.connect_to(peer_type, addr)?.send_message(msg)
    }
    /// Drop the session with `addr` now (see [`Connection::mark_down`]).
    fn mark_down(&self, addr: &EntityAddr);
    /// Drop every session now.
    fn mark_down_all(&self);
    /// Stop accepting, flush or fail queued messages (reported to the dispatcher), join workers.
    fn shutdown(&self);
    /// The messenger's counters, since it was created.
    fn counters(&self) -> MessengerCounters;
}
