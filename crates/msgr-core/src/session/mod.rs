//! The per-connection msgr1 state machine (sans-IO), for both the connecting and the accepting side.
//!
//! A [`Session`] is the state two entities share about each other: out queue, sent-but-unacked
//! list, sequence numbers, connect_seq / global_seq. It outlives the byte stream ("link") it runs
//! on: under a lossless policy a failed link is replaced and unacknowledged messages are replayed.
//!
//! Driving contract (the same for TCP and RDMA):
//! 1. Create with [`Session::connect`] (we dial) or [`Session::accept`] (a peer dialed us).
//! 2. When a link (socket / queue pair) is established call [`Session::link_up`].
//! 3. Feed every received byte with [`Session::handle_input`]; it consumes complete frames from the
//!    buffer and leaves a partial one there for the next call.
//! 4. After every call, drain: [`Session::poll_transmit`] (chunks to write, in order, suited to a
//!    vectored write), [`Session::poll_event`] (connected, message, reset, ...), and re-arm the
//!    timer with [`Session::poll_timeout`]; call [`Session::handle_timeout`] when it fires.
//! 5. When the link fails (read error, EOF, QP error) call [`Session::link_down`]; the session
//!    decides per policy whether it wants a new link ([`Session::wants_reconnect`]) or is gone.
//! 6. On the accepting side, once the peer's connect message is read, the session emits
//!    [`SessionEvent::AcceptRequest`] and waits; the driver looks up any existing session for that
//!    peer address and calls [`Session::resolve_accept`] (see [`accept`]) — this is where racing
//!    connects are resolved.
//!
//! TODO(session helper): implement; the signatures below are the contract with the transports.

pub mod accept;
mod config;

pub use accept::{AcceptDecision, ConnectRequest};
pub use config::{Authorizer, GlobalSeq, NoneAuthorizer, SessionConfig};

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::message::Message;
use crate::policy::Policy;
use crate::wire::{EntityAddr, EntityName, EntityType, WireError};

/// Why a session's link failed or a session ended. One enum for the session layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("protocol error from peer: {0}")]
    Wire(#[from] WireError),
    #[error("peer {peer} does not support required features {missing:#x}")]
    MissingFeatures { peer: String, missing: u64 },
    #[error("peer speaks protocol version {theirs}, we need {ours}")]
    BadProtocolVersion { theirs: u32, ours: u32 },
    #[error("peer rejected our authorizer")]
    BadAuthorizer,
    #[error("peer claims address {claimed} but we dialed {dialed}")]
    AddressMismatch { claimed: String, dialed: String },
    #[error("handshake did not complete within {0:?}: peer stalled")]
    HandshakeTimeout(std::time::Duration),
    #[error("nothing received for {0:?}: peer is gone or stalled")]
    IdleTimeout(std::time::Duration),
    #[error("link failed: {0}")]
    LinkFailed(String),
    #[error("session was marked down locally")]
    MarkedDown,
    #[error("peer closed the session")]
    PeerClosed,
    #[error("session replaced by a newer connection from the same peer")]
    Replaced,
}

/// What the session tells its driver / owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// Handshake finished on our outgoing link; messages flow.
    Connected {
        peer_addr: EntityAddr,
        peer_name: EntityName,
        features: u64,
    },
    /// Handshake finished on a link the peer dialed.
    Accepted {
        peer_addr: EntityAddr,
        peer_name: EntityName,
        features: u64,
    },
    /// Accepting side: the peer's connect message arrived; call [`Session::resolve_accept`].
    AcceptRequest(ConnectRequest),
    /// A message for the application, in order, exactly once.
    Message(Message),
    /// The peer acknowledged our KEEPALIVE2 (stamp echoed).
    KeepaliveAck { stamp: (u32, u32) },
    /// The link failed. `will_reconnect`: a lossless client will want a new link (see
    /// [`Session::wants_reconnect`]); otherwise it waits for the peer or ends.
    Faulted {
        error: SessionError,
        will_reconnect: bool,
    },
    /// The session is gone (lossy fault, mark_down, close, replaced). Messages never sent or never
    /// acknowledged are handed back so the owner can report them.
    Reset {
        error: SessionError,
        undelivered: Vec<Message>,
    },
    /// The peer lost its session state (RESETSESSION, or resetcheck found connect_seq 0): our
    /// side's queues were reset too.
    RemoteReset,
}

/// Named states of a session, as Ceph names them. `Debug` shows which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// No link yet (connect side before `link_up`).
    Idle,
    /// We dialed: banner / addresses / connect sent, waiting for the reply.
    Connecting,
    /// Peer dialed: reading banner / addresses / connect; may be waiting for `resolve_accept`.
    Accepting,
    /// Handshake done, messages flow.
    Open,
    /// Lossless, link lost, nothing to send: wait until there is something to send or the peer
    /// reconnects.
    Standby,
    /// Link lost; a lossless client wants a new link (backoff is the driver's).
    Faulted,
    /// Server told us WAIT: the peer's own connect will replace ours.
    Wait,
    /// Gone for good.
    Closed,
}

/// See the module documentation for the driving contract.
pub struct Session {
    _todo: (),
}

impl Session {
    /// A session we initiate towards `peer_addr` (its nonce is verified against the banner).
    pub fn connect(
        config: Arc<SessionConfig>,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        policy: Policy,
        now: Instant,
    ) -> Self {
        let _ = (config, peer_addr, peer_type, policy, now);
        todo!()
    }

    /// A session for a link a peer dialed; `socket_peer` is the remote socket address as seen.
    pub fn accept(
        config: Arc<SessionConfig>,
        socket_peer: std::net::SocketAddr,
        now: Instant,
    ) -> Self {
        let _ = (config, socket_peer, now);
        todo!()
    }

    /// A fresh link is established: (re)start the handshake (queues the banner etc.).
    pub fn link_up(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// The link failed (EOF, I/O error, QP error). Moves sent-but-unacked messages back to the
    /// front of the queue (lossless) or resets the session (lossy), and emits events.
    pub fn link_down(&mut self, error: SessionError, now: Instant) {
        let _ = (error, now);
        todo!()
    }

    /// Consume received bytes. Complete frames are taken out of `buf`; a partial frame stays.
    /// An error means the link must be closed (the session already called `link_down` on itself).
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        let _ = (buf, now);
        todo!()
    }

    /// Append the chunks to write, in order. Returns the number of chunks appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let _ = out;
        todo!()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        todo!()
    }

    /// The next instant at which `handle_timeout` must be called (keepalive, handshake timeout,
    /// idle timeout, deferred ACK).
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Queue a message (ordered by priority, FIFO within one priority).
    pub fn send_message(&mut self, msg: Message) {
        let _ = msg;
        todo!()
    }

    /// Queue a KEEPALIVE2 stamped with `now`.
    pub fn send_keepalive(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Drop the session now: nothing more is sent; emits `Reset` with undelivered messages.
    pub fn mark_down(&mut self) {
        todo!()
    }

    /// Send CLOSE after what is queued, then end.
    pub fn close(&mut self) {
        todo!()
    }

    /// Accepting side: answer the peer's connect. `existing` is the session this messenger already
    /// has for the same peer address, if any (its queues move into `self` on `Replace`).
    pub fn resolve_accept(
        &mut self,
        decision: AcceptDecision,
        existing: Option<&mut Session>,
        now: Instant,
    ) {
        let _ = (decision, existing, now);
        todo!()
    }

    pub fn state(&self) -> SessionState {
        todo!()
    }

    /// A lossless client in `Faulted` state wants a new link to the peer.
    pub fn wants_reconnect(&self) -> bool {
        todo!()
    }

    /// The peer's address (dialed, or learned in the handshake).
    pub fn peer_addr(&self) -> Option<EntityAddr> {
        todo!()
    }

    pub fn peer_type(&self) -> Option<EntityType> {
        todo!()
    }

    /// Messages queued or sent but not acknowledged.
    pub fn pending_messages(&self) -> usize {
        todo!()
    }
}
