//! What a session reports to its driver: events, errors, and its public state.

use std::collections::VecDeque;
use std::time::Duration;

use crate::message::Message;
use crate::shared_error::SharedError;
use crate::wire::{EntityAddr, EntityName, WireError};

use super::accept::ConnectRequest;

/// Why a session's link failed or a session ended. One enum for the session layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer's bytes do not decode (bad banner, CRC, tag, size ...; see [`WireError`]).
    #[error("protocol error from peer: {0}")]
    Wire(#[from] WireError),
    /// The peer lacks features we require, or requires features we lack (reply tag FEATURES):
    /// upgrade the older side, or require fewer features (policy / `features_required`).
    #[error("peer {peer} does not support required features {missing:#x}")]
    MissingFeatures {
        /// The peer's address, as text.
        peer: String,
        /// The feature bits (`CEPH_FEATURE_*`) missing on one side.
        missing: u64,
    },
    /// The peer refused our protocol version (reply tag BADPROTOVER, `CEPH_*_PROTOCOL`): the
    /// two sides' entity types or versions do not match; check the peer's type.
    #[error("peer speaks protocol version {theirs}, we need {ours}")]
    BadProtocolVersion {
        /// The protocol version the peer sent.
        theirs: u32,
        /// The one we use for this pair of entity types.
        ours: u32,
    },
    /// The peer refused our authorizer (reply tag BADAUTHORIZER): it expects another auth
    /// method or other credentials.
    #[error("peer rejected our authorizer")]
    BadAuthorizer,
    /// The peer announced another address (or nonce: another process) than the one dialed:
    /// the peer restarted or the address is stale; look its address up again.
    #[error("peer claims address {claimed} but we dialed {dialed}")]
    AddressMismatch {
        /// The address the peer announced.
        claimed: String,
        /// The address we dialed.
        dialed: String,
    },
    /// The handshake did not finish within the configured timeout (the duration): the peer is
    /// overloaded or does not speak msgr1; a lossless session retries.
    #[error("handshake did not complete within {0:?}: peer stalled")]
    HandshakeTimeout(std::time::Duration),
    /// Nothing came from the peer for the idle timeout (the duration): a lossless session
    /// reconnects; raise the idle timeout for peers that stay quiet longer.
    #[error("nothing received for {0:?}: peer is gone or stalled")]
    IdleTimeout(std::time::Duration),
    /// The transport reported the link failed (the text says why).
    #[error("link failed: {0}")]
    LinkFailed(String),
    /// `mark_down` dropped the session.
    #[error("session was marked down locally")]
    MarkedDown,
    /// The peer sent CLOSE.
    #[error("peer closed the session")]
    PeerClosed,
    /// The peer's newer connection took over this session.
    #[error("session replaced by a newer connection from the same peer")]
    Replaced,
    /// The peer broke a handshake rule (what it did is in the text).
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    /// Authentication failed (wrong key, unknown entity, a method or mode the peer does not
    /// allow; the text says which). Retrying cannot help until the configuration changes, so
    /// the session ends instead of reconnecting.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The accept hook refused the peer.
    #[error("connection from {0} refused by the accept hook")]
    Refused(String),
    /// The session was closed locally with [`Session::close`](super::Session::close).
    #[error("session closed locally")]
    Closed,
    /// The transport could not make the link (e.g. RDMA: a link's buffers over the
    /// locked-memory limit); `source` downcasts to the transport's own error type.
    #[error("link failed: connect over {transport}: {message}")]
    Transport {
        /// The transport's name ("tcp", "rdma", "mem").
        transport: &'static str,
        /// What went wrong, naming the peer.
        message: String,
        /// The transport's error.
        source: SharedError,
    },
}

/// What the session tells its driver / owner.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Handshake finished on our outgoing link; messages flow.
    Connected {
        /// The peer's address.
        peer_addr: EntityAddr,
        /// The peer's entity name.
        peer_name: EntityName,
        /// Feature bits both sides support.
        features: u64,
    },
    /// Handshake finished on a link the peer dialed.
    Accepted {
        /// The peer's address.
        peer_addr: EntityAddr,
        /// The peer's entity name.
        peer_name: EntityName,
        /// Feature bits both sides support.
        features: u64,
    },
    /// Accepting side: the peer's connect message arrived; call
    /// [`Session::resolve_accept`](super::Session::resolve_accept).
    AcceptRequest(ConnectRequest),
    /// A message for the application, in order, exactly once.
    Message(Message),
    /// The peer acknowledged our KEEPALIVE2 (stamp echoed). `rtt` is the time since we sent the
    /// keepalive carrying that stamp (None if the stamp is not one of ours).
    KeepaliveAck {
        /// The echoed stamp: seconds and nanoseconds since the session was made.
        stamp: (u32, u32),
        /// Round-trip time.
        rtt: Option<Duration>,
    },
    /// The link failed. `will_reconnect`: a lossless client will want a new link (see
    /// [`Session::wants_reconnect`](super::Session::wants_reconnect)); otherwise it waits for
    /// the peer or ends.
    Faulted {
        /// Why the link failed.
        error: SessionError,
        /// The session wants a new link.
        will_reconnect: bool,
    },
    /// The session is gone (lossy fault, mark_down, close, refused). Messages never sent or never
    /// acknowledged are handed back so the owner can report them.
    Reset {
        /// Why the session ended.
        error: SessionError,
        /// Unacknowledged, then never-sent messages.
        undelivered: Vec<Message>,
    },
    /// The peer lost its session state (RESETSESSION, or resetcheck found connect_seq 0): our
    /// side's queues were reset too; `undelivered` are the messages dropped with them.
    RemoteReset {
        /// Unacknowledged, then never-sent messages.
        undelivered: Vec<Message>,
    },
    /// The session gives up its current link: write what `poll_transmit` returned, then close
    /// it. Do not call `link_down` for it (harmless if done).
    CloseLink,
    /// Accepting side replaced this session (its queues moved to the new one): drop it without
    /// telling the application; the new session continues the conversation.
    Replaced,
    /// The peer told us our address (our configured IP was blank): the messenger may adopt it.
    LearnedAddr(EntityAddr),
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

/// A session's pending events appended to `out` in order, emptying `pending`: into an empty
/// `out` the whole queue is handed over without moving an event (both protocols'
/// `poll_events`).
pub(crate) fn hand_over(pending: &mut VecDeque<SessionEvent>, out: &mut VecDeque<SessionEvent>) {
    if out.is_empty() {
        std::mem::swap(out, pending);
    } else {
        out.append(pending);
    }
}
