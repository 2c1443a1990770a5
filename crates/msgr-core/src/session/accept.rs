//! How the accepting side answers a connect, given any session it already has for that peer:
//! new session, replace the existing one (peer reconnected), RETRY_SESSION / RETRY_GLOBAL,
//! RESETSESSION, or WAIT (racing connects: the side with the lower address yields).
//!
//! TODO(session helper): implement `decide`.

use crate::wire::{EntityAddr, EntityType};

/// The peer's connect message, as the driver needs it to look up an existing session.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub peer_addr: EntityAddr,
    pub peer_type: EntityType,
    pub global_seq: u32,
    pub connect_seq: u32,
    pub features: u64,
    pub lossy: bool,
}

/// The answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptDecision {
    /// No session with this peer: open a new one.
    New,
    /// Take over the existing session (its queues and sequence numbers).
    Replace,
    /// Tell the peer to retry with this connect_seq.
    RetrySession { connect_seq: u32 },
    /// Tell the peer to retry with a global_seq above this one.
    RetryGlobal { global_seq: u32 },
    /// Tell the peer its session is gone (it must reset its queues).
    ResetSession,
    /// Racing connect that we win: the peer must wait for ours.
    Wait,
    /// The application's accept hook refused this peer.
    Refuse,
}
