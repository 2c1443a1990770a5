//! Server side: answering a peer's CLIENT_IDENT or SESSION_RECONNECT against the session this
//! messenger already has for that peer (Ceph `ProtocolV2::handle_client_ident`,
//! `handle_reconnect` and `handle_existing_connection`).
//!
//! The session reads the frame, emits [`SessionEvent::AcceptRequest`] and waits; the driver
//! finds the existing session for the peer's address and calls
//! [`SessionV2::resolve_accept`], which decides and applies the answer. The rules, in order:
//!
//! CLIENT_IDENT (the peer starts a new session):
//! 1. no existing session (or a closed one): a new session (SERVER_IDENT);
//! 2. the existing one saw a newer global_seq from the peer: RETRY_GLOBAL;
//! 3. the existing session is lossy: it ends, the new one replaces it;
//! 4. the existing session was established with another client cookie: the peer restarted;
//!    its old session is reset (our queue for it is reported) and the new one replaces it;
//! 5. we are dialing the peer ourselves (connect race): the lower address's dial wins: if the
//!    peer's address is below ours (or we are its server) its connection takes ours over,
//!    else we answer WAIT and nudge our own dial with a keepalive;
//! 6. otherwise the new link takes the existing session over.
//!
//! SESSION_RECONNECT (the peer resumes a session):
//! 1. no existing session, or a lossy one, or other cookies: RESET (the peer starts afresh);
//! 2. an older global_seq than the existing session saw: RETRY_GLOBAL;
//! 3. an older connect_seq: RETRY with ours;
//! 4. a connect race (as rule 5 above): the lower address wins, else WAIT;
//! 5. otherwise the new link takes the session over: RECONNECT_OK with the last message we
//!    received; unacknowledged messages the peer already has are dropped, the rest replayed.

use std::time::Instant;

use super::{SessionV2, State};
use crate::session::{AcceptDecision, ConnectRequest, SessionError, SessionEvent};
use crate::v2::payload::{ClientIdent, Control, ServerIdent, SessionReconnect, IDENT_FLAG_LOSSY};
use crate::v2::AddrKind;
use crate::wire::{EntityAddr, EntityType};

/// A peer's IDENT waiting for the driver's answer.
#[derive(Clone, Debug)]
pub(super) enum PendingIdent {
    New(ClientIdent),
    Reconnect(SessionReconnect),
}

impl SessionV2 {
    /// Server: the peer's CLIENT_IDENT or SESSION_RECONNECT arrived; ask the driver.
    pub(super) fn request_accept(&mut self, pending: PendingIdent) {
        let (addrs, global_seq, lossy, features) = match &pending {
            PendingIdent::New(ci) => (
                &ci.addrs,
                ci.global_seq,
                ci.flags & IDENT_FLAG_LOSSY != 0,
                ci.supported_features,
            ),
            PendingIdent::Reconnect(sr) => (&sr.addrs, sr.global_seq, false, self.features),
        };
        if let Some(a) = addrs.of_kind(AddrKind::MSGR2).or(addrs.0.first()) {
            // Keep the IP we saw; take the nonce (and port, if any) the client claims.
            let seen = self.peer_addr.and_then(|p| p.addr);
            let ip = match (a.addr, seen) {
                (Some(c), Some(s)) if c.ip().is_unspecified() => {
                    Some(std::net::SocketAddr::new(s.ip(), c.port()))
                }
                (c, s) => c.or(s),
            };
            self.peer_addr = Some(super::EntityAddrV2 { addr: ip, ..*a });
        }
        self.peer_addrs = addrs.clone();
        let connect_seq = match &pending {
            PendingIdent::New(_) => 0,
            PendingIdent::Reconnect(sr) => sr.connect_seq as u32,
        };
        let req = ConnectRequest {
            peer_addr: self.peer_addr_legacy(),
            peer_type: self.peer_type.unwrap_or(EntityType(0)),
            global_seq: global_seq as u32,
            connect_seq,
            features,
            lossy,
        };
        self.pending = Some(pending);
        self.events.push_back(SessionEvent::AcceptRequest(req));
    }

    /// Answer the peer's IDENT (after [`SessionEvent::AcceptRequest`]) given the `existing`
    /// session this messenger has for the same peer address, by the rules in the module docs.
    /// `hook_allows` false refuses the peer. `my_addr` decides connect races. Returns the
    /// decision applied; does nothing (returning `Refuse`) unless an IDENT is waiting.
    pub fn resolve_accept(
        &mut self,
        hook_allows: bool,
        existing: Option<&mut SessionV2>,
        my_addr: &EntityAddr,
        now: Instant,
    ) -> AcceptDecision {
        let Some(pending) = self.pending.take() else {
            return AcceptDecision::Refuse;
        };
        if self.link.is_none() {
            return AcceptDecision::Refuse;
        }
        let existing = existing.filter(|e| e.state != State::Closed);
        let peer = self.peer_addr_legacy();
        let decision = if !hook_allows {
            AcceptDecision::Refuse
        } else {
            match &pending {
                PendingIdent::New(ci) => decide_new(existing.as_deref(), ci, &peer, my_addr),
                PendingIdent::Reconnect(sr) => {
                    decide_reconnect(existing.as_deref(), sr, &peer, my_addr)
                }
            }
        };
        self.apply(&decision, pending, existing, now);
        decision
    }

    fn apply(
        &mut self,
        decision: &AcceptDecision,
        pending: PendingIdent,
        existing: Option<&mut SessionV2>,
        now: Instant,
    ) {
        match (decision, pending) {
            (AcceptDecision::New, PendingIdent::New(ci)) => self.open_new(&ci, now),
            (AcceptDecision::Replace, PendingIdent::New(ci)) => {
                self.take_over(existing, TakeOver::Fresh);
                self.open_new(&ci, now);
            }
            (AcceptDecision::ReplaceAfterPeerReset, PendingIdent::New(ci)) => {
                self.take_over(existing, TakeOver::PeerReset);
                self.open_new(&ci, now);
            }
            (AcceptDecision::Replace, PendingIdent::Reconnect(sr)) => {
                self.take_over(existing, TakeOver::Resume);
                self.peer_global_seq = sr.global_seq;
                self.connect_seq = sr.connect_seq + 1;
                // The peer has everything up to msg_seq; replay the rest.
                self.queue.discard_replayed_up_to(sr.msg_seq);
                let ok = Control::SessionReconnectOk {
                    msg_seq: self.in_seq,
                };
                self.link_mut().send_control(&ok);
                self.opened(now);
            }
            (AcceptDecision::RetryGlobal { global_seq }, _) => {
                let c = Control::SessionRetryGlobal {
                    global_seq: (*global_seq).into(),
                };
                self.link_mut().send_control(&c);
            }
            (AcceptDecision::RetrySession { connect_seq }, _) => {
                let c = Control::SessionRetry {
                    connect_seq: (*connect_seq).into(),
                };
                self.link_mut().send_control(&c);
            }
            (AcceptDecision::ResetSession, _) => {
                self.link_mut()
                    .send_control(&Control::SessionReset { full: true });
            }
            (AcceptDecision::Wait, _) => {
                if let Some(ex) = existing {
                    // Make sure our own dial goes through even with nothing to send.
                    ex.send_keepalive(now);
                }
                self.link_mut().send_control(&Control::Wait);
            }
            _ => {
                let who = self.peer_addr_legacy().to_string();
                self.end(SessionError::Refused(who));
            }
        }
    }

    /// Take the existing session's queue (Ceph `reuse_connection`); the existing one ends
    /// without a reset (the driver drops it). A lossy one has nothing worth keeping: it is
    /// reset and reported. See [`TakeOver`] for what else moves.
    fn take_over(&mut self, existing: Option<&mut SessionV2>, how: TakeOver) {
        let Some(ex) = existing else { return };
        if ex.policy.lossy {
            ex.end(SessionError::Replaced);
            return;
        }
        if ex.link.take().is_some() {
            ex.events.push_back(SessionEvent::CloseLink);
        }
        ex.queue.requeue_unacked(&mut ex.sent);
        let mut queue = std::mem::take(&mut ex.queue);
        match how {
            TakeOver::PeerReset => {
                let undelivered = queue.drain_all();
                self.events
                    .push_back(SessionEvent::RemoteReset { undelivered });
            }
            TakeOver::Fresh => {}
            TakeOver::Resume => {
                self.in_seq = ex.in_seq;
                self.out_seq = ex.out_seq;
                self.connect_seq = ex.connect_seq;
                self.server_cookie = ex.server_cookie;
                self.client_cookie = ex.client_cookie;
                self.features = ex.features;
                self.peer_gid = ex.peer_gid;
            }
        }
        std::mem::swap(&mut self.queue, &mut queue);
        // Anything queued on the new session meanwhile goes after the old queue.
        for m in queue.drain_all() {
            self.queue.push(m);
        }
        ex.state = State::Closed;
        ex.deadlines = Default::default();
        ex.events.push_back(SessionEvent::Replaced);
    }

    /// Send SERVER_IDENT for a new session (or one taken over from a connect race) and open.
    fn open_new(&mut self, ci: &ClientIdent, now: Instant) {
        self.features = ci.supported_features & self.config.features_supported;
        self.peer_gid = ci.gid;
        self.peer_global_seq = ci.global_seq;
        self.client_cookie = ci.cookie;
        if self.policy.lossy {
            self.server_cookie = 0;
        } else if self.server_cookie == 0 {
            self.server_cookie = rand::random::<u64>() | 1;
        }
        if self.in_seq == 0 && self.out_seq == 0 {
            // A session numbered afresh: messages taken over from a race get new seqs.
            self.queue.forget_seqs();
        }
        let base = self.config.base.clone();
        self.global_seq = base.global_seq.next(0).into();
        let si = Control::ServerIdent(ServerIdent {
            addrs: self.config.my_addrs.clone(),
            gid: base.my_name.num,
            global_seq: self.global_seq,
            supported_features: self.config.features_supported,
            required_features: self.config.features_required,
            flags: self.ident_flags(),
            cookie: self.server_cookie,
        });
        self.link_mut().send_control(&si);
        self.opened(now);
    }
}

/// What a new link takes from the session it replaces besides the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TakeOver {
    /// The peer starts a new session (CLIENT_IDENT): numbering starts again at 1.
    Fresh,
    /// The peer restarted: what we queued for it is reported undelivered.
    PeerReset,
    /// The peer resumes the session (SESSION_RECONNECT): numbering and cookies carry on.
    Resume,
}

/// The existing session is dialing the peer and not open yet.
fn racing(ex: &SessionV2) -> bool {
    !ex.server && !matches!(ex.state, State::Open | State::Closed)
}

/// Connect race: the peer's connection wins when its address is lower than ours or it is our
/// server; else it waits for ours.
fn race(ex: &SessionV2, peer: &EntityAddr, my_addr: &EntityAddr) -> AcceptDecision {
    if peer < my_addr || ex.policy.server {
        AcceptDecision::Replace
    } else {
        AcceptDecision::Wait
    }
}

fn decide_new(
    existing: Option<&SessionV2>,
    ci: &ClientIdent,
    peer: &EntityAddr,
    my_addr: &EntityAddr,
) -> AcceptDecision {
    let Some(ex) = existing else {
        return AcceptDecision::New;
    };
    if ex.peer_global_seq > ci.global_seq {
        return AcceptDecision::RetryGlobal {
            global_seq: ex.peer_global_seq as u32,
        };
    }
    if ex.policy.lossy {
        return AcceptDecision::Replace;
    }
    if ex.server_cookie != 0 && ex.client_cookie != 0 && ex.client_cookie != ci.cookie {
        return AcceptDecision::ReplaceAfterPeerReset;
    }
    if racing(ex) {
        return race(ex, peer, my_addr);
    }
    AcceptDecision::Replace
}

fn decide_reconnect(
    existing: Option<&SessionV2>,
    sr: &SessionReconnect,
    peer: &EntityAddr,
    my_addr: &EntityAddr,
) -> AcceptDecision {
    let Some(ex) = existing else {
        return AcceptDecision::ResetSession;
    };
    if ex.policy.lossy
        || ex.server_cookie == 0
        || ex.server_cookie != sr.server_cookie
        || ex.client_cookie != sr.client_cookie
    {
        return AcceptDecision::ResetSession;
    }
    if sr.global_seq < ex.peer_global_seq {
        return AcceptDecision::RetryGlobal {
            global_seq: ex.peer_global_seq as u32,
        };
    }
    if sr.connect_seq < ex.connect_seq {
        return AcceptDecision::RetrySession {
            connect_seq: ex.connect_seq as u32,
        };
    }
    if racing(ex) {
        return race(ex, peer, my_addr);
    }
    AcceptDecision::Replace
}
