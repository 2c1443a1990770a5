//! How the accepting side answers a connect, given any session it already has for that peer:
//! new session, replace the existing one (peer reconnected), RETRY_SESSION / RETRY_GLOBAL,
//! RESETSESSION, or WAIT (racing connects: the side with the lower address wins).
//!
//! The rules are Ceph's (`ProtocolV1::handle_connect_message_2`), applied in this order:
//! 1. No existing session: a peer that sends connect_seq > 0 remembers a session we lost, so
//!    it is told RESETSESSION; otherwise a new session.
//! 2. The peer's global_seq is older than one it already used with us: a stale attempt,
//!    RETRY_GLOBAL with the one we saw.
//! 3. The existing session is lossy: nothing to keep, replace it.
//! 4. connect_seq 0 while ours is > 0: the peer restarted and lost its session; replace, and
//!    (with resetcheck) drop our queues ([`AcceptDecision::ReplaceAfterPeerReset`]).
//! 5. connect_seq below ours: an old attempt, or our READY got lost; RETRY_SESSION with ours+1.
//! 6. connect_seq equal to ours:
//!    - ours is open or in standby: the peer must bump its connect_seq (RETRY_SESSION), except
//!      both at 0 with resetcheck, where replacing avoids a livelock;
//!    - otherwise both sides are connecting at once (a race): the connect from the lower
//!      address wins; also a `server` never waits. The loser is told WAIT.
//! 7. connect_seq above ours: a reconnect; replace, unless ours is 0 with resetcheck (we lost
//!    the session the peer remembers): RESETSESSION.

use crate::policy::Policy;
use crate::wire::{EntityAddr, EntityType};

use super::{Session, SessionState};

/// The peer's connect message, as the driver needs it to look up an existing session.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The address the peer announced.
    pub peer_addr: EntityAddr,
    /// The peer's entity type (`host_type`).
    pub peer_type: EntityType,
    /// The peer's `global_seq`.
    pub global_seq: u32,
    /// The peer's `connect_seq` (0: a new session).
    pub connect_seq: u32,
    /// The peer's supported feature bits.
    pub features: u64,
    /// The peer asked for a lossy session.
    pub lossy: bool,
}

/// The answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptDecision {
    /// No session with this peer: open a new one.
    New,
    /// Take over the existing session (its queues and sequence numbers).
    Replace,
    /// The peer restarted (connect_seq 0 against our non-zero one): take over the existing
    /// session, but the peer's numbering starts again (and with resetcheck our queued messages
    /// for its old incarnation are dropped and reported).
    ReplaceAfterPeerReset,
    /// Tell the peer to retry with this connect_seq.
    RetrySession {
        /// The connect_seq to retry with (the existing session's plus one).
        connect_seq: u32,
    },
    /// Tell the peer to retry with a global_seq above this one.
    RetryGlobal {
        /// The peer's last global_seq we saw.
        global_seq: u32,
    },
    /// Tell the peer its session is gone (it must reset its queues).
    ResetSession,
    /// Racing connect that we win: the peer must wait for ours.
    Wait,
    /// The application's accept hook refused this peer.
    Refuse,
}

/// What [`decide`] needs to know about an existing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExistingView {
    /// Its state.
    pub state: SessionState,
    /// Its connect_seq.
    pub connect_seq: u32,
    /// The global_seq of the peer's last connect.
    pub peer_global_seq: u32,
    /// Its policy is lossy.
    pub lossy: bool,
    /// Its policy is `server` (never reconnects on its own).
    pub server: bool,
}

impl ExistingView {
    /// The view of session `s`.
    pub fn of(s: &Session) -> Self {
        ExistingView {
            state: s.state(),
            connect_seq: s.connect_seq(),
            peer_global_seq: s.peer_global_seq(),
            lossy: s.policy().lossy,
            server: s.policy().server,
        }
    }
}

/// Decide how to answer `req`. `existing` is the session this messenger has for
/// `req.peer_addr` (the driver looks it up), `my_addr` our own address (for races), `policy`
/// the policy for the peer's type.
pub fn decide(
    existing: Option<&Session>,
    req: &ConnectRequest,
    my_addr: &EntityAddr,
    policy: &Policy,
) -> AcceptDecision {
    decide_view(existing.map(ExistingView::of), req, my_addr, policy)
}

/// [`decide`] on a plain description of the existing session (pure; the rules live here).
pub fn decide_view(
    existing: Option<ExistingView>,
    req: &ConnectRequest,
    my_addr: &EntityAddr,
    policy: &Policy,
) -> AcceptDecision {
    // A closed session is as good as none.
    let ex = match existing {
        Some(ex) if ex.state != SessionState::Closed => ex,
        _ if req.connect_seq > 0 => return AcceptDecision::ResetSession,
        _ => return AcceptDecision::New,
    };
    if req.global_seq < ex.peer_global_seq {
        return AcceptDecision::RetryGlobal {
            global_seq: ex.peer_global_seq,
        };
    }
    if ex.lossy {
        return AcceptDecision::Replace;
    }
    if req.connect_seq == 0 && ex.connect_seq > 0 {
        return AcceptDecision::ReplaceAfterPeerReset;
    }
    if req.connect_seq < ex.connect_seq {
        return AcceptDecision::RetrySession {
            connect_seq: ex.connect_seq + 1,
        };
    }
    if req.connect_seq == ex.connect_seq {
        if matches!(ex.state, SessionState::Open | SessionState::Standby) {
            if policy.resetcheck && ex.connect_seq == 0 {
                return AcceptDecision::Replace;
            }
            return AcceptDecision::RetrySession {
                connect_seq: ex.connect_seq + 1,
            };
        }
        return if req.peer_addr < *my_addr || ex.server {
            AcceptDecision::Replace
        } else {
            AcceptDecision::Wait
        };
    }
    if policy.resetcheck && ex.connect_seq == 0 {
        return AcceptDecision::ResetSession;
    }
    AcceptDecision::Replace
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use SessionState::*;

    fn addr(port: u16) -> EntityAddr {
        EntityAddr::new(SocketAddr::from(([127, 0, 0, 1], port)), 7)
    }

    fn req(gseq: u32, cseq: u32, port: u16) -> ConnectRequest {
        ConnectRequest {
            peer_addr: addr(port),
            peer_type: EntityType::OSD,
            global_seq: gseq,
            connect_seq: cseq,
            features: 0,
            lossy: false,
        }
    }

    fn ex(state: SessionState, cseq: u32, pgseq: u32) -> ExistingView {
        ExistingView {
            state,
            connect_seq: cseq,
            peer_global_seq: pgseq,
            lossy: false,
            server: false,
        }
    }

    #[test]
    fn decision_table() {
        use AcceptDecision::*;
        let me = addr(6800);
        let peer = Policy::lossless_peer();
        let lower = 6000; // peer address below ours: its connect wins races
        let higher = 7000;
        let lossy_ex = ExistingView {
            lossy: true,
            ..ex(Open, 3, 5)
        };
        let server_ex = ExistingView {
            server: true,
            ..ex(Connecting, 0, 0)
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Option<ExistingView>, ConnectRequest, Policy, AcceptDecision)> = vec![
            ("no session, fresh peer", None, req(1, 0, higher), peer.clone(), New),
            ("no session, peer remembers one", None, req(1, 2, higher), peer.clone(), ResetSession),
            ("closed session counts as none", Some(ex(Closed, 4, 9)), req(1, 0, higher), peer.clone(), New),
            ("stale global_seq", Some(ex(Open, 1, 10)), req(9, 2, higher), peer.clone(), RetryGlobal { global_seq: 10 }),
            ("lossy existing is replaced", Some(lossy_ex), req(6, 0, higher), peer.clone(), Replace),
            ("peer restarted", Some(ex(Open, 3, 5)), req(6, 0, higher), peer.clone(), ReplaceAfterPeerReset),
            ("old attempt", Some(ex(Standby, 3, 5)), req(6, 2, higher), peer.clone(), RetrySession { connect_seq: 4 }),
            ("equal cseq, ours open", Some(ex(Open, 3, 5)), req(6, 3, higher), peer.clone(), RetrySession { connect_seq: 4 }),
            ("equal cseq, ours standby", Some(ex(Standby, 2, 5)), req(6, 2, lower), peer.clone(), RetrySession { connect_seq: 3 }),
            ("both zero and open, resetcheck", Some(ex(Open, 0, 5)), req(6, 0, higher), peer.clone(), Replace),
            ("both zero and open, no resetcheck", Some(ex(Open, 0, 5)), req(6, 0, higher), Policy::stateless_server(), RetrySession { connect_seq: 1 }),
            ("race, peer lower wins", Some(ex(Connecting, 0, 0)), req(1, 0, lower), peer.clone(), Replace),
            ("race, we are lower: WAIT", Some(ex(Connecting, 0, 0)), req(1, 0, higher), peer.clone(), Wait),
            ("race, existing in wait", Some(ex(SessionState::Wait, 1, 0)), req(1, 1, lower), peer.clone(), Replace),
            ("race, existing faulted, we win", Some(ex(Faulted, 1, 0)), req(1, 1, higher), peer.clone(), Wait),
            ("race, existing is server never waits", Some(server_ex), req(1, 0, higher), peer.clone(), Replace),
            ("reconnect", Some(ex(Standby, 2, 5)), req(7, 3, higher), peer.clone(), Replace),
            ("reconnect while ours open", Some(ex(Open, 2, 5)), req(7, 5, lower), peer.clone(), Replace),
            ("we lost it, peer remembers", Some(ex(Connecting, 0, 0)), req(7, 3, higher), peer.clone(), ResetSession),
            ("we lost it, no resetcheck", Some(ex(Connecting, 0, 0)), req(7, 3, higher), Policy::stateless_server(), Replace),
        ];
        for (name, existing, r, policy, want) in table {
            assert_eq!(decide_view(existing, &r, &me, &policy), want, "{name}");
        }
    }
}
