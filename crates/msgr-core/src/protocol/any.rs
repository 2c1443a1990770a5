//! [`AnySession`]: a session of either protocol (or a banner detector), created from the
//! node's [`Configs`]; and the msgr2-to-msgr1 fallback of a dial.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::detect::{Detect, V1_BANNER_START};
use super::{Protocol, ProtocolSession};
use crate::message::Message;
use crate::policy::Policy;
use crate::session::{
    accept, AcceptDecision, ConnectRequest, Session, SessionConfig, SessionError, SessionEvent,
    SessionState,
};
use crate::session_v2::{SessionV2, V2Config};
use crate::v2::{AddrKind, EntityAddrV2};
use crate::wire::{EntityAddr, EntityName, EntityType};

/// What a node needs to create sessions of either protocol.
#[derive(Clone, Debug)]
pub struct Configs {
    /// msgr1 settings (also the base of msgr2's).
    pub v1: Arc<SessionConfig>,
    /// msgr2 settings; None: this node does not speak msgr2 (neither dials nor accepts it).
    pub v2: Option<Arc<V2Config>>,
    /// Accept msgr1 peers (accepted links detect the protocol when both are accepted).
    pub accept_v1: bool,
    /// Accept msgr2 peers (needs `v2`).
    pub accept_v2: bool,
}

/// A session of either protocol, or an accepted link still reading the peer's banner. See the
/// module docs.
#[derive(Debug)]
pub enum AnySession {
    /// msgr1.
    V1(Box<Session>),
    /// msgr2.1.
    V2(Box<SessionV2>),
    /// An accepted link whose protocol the peer's banner will tell.
    Detect(Box<Detect>),
}

/// A msgr2 dial answered by a msgr1-only peer: a msgr1 session takes the queued messages and
/// asks for a new link (this one already carried our msgr2 banner), as Ceph picks msgr1 for a
/// peer without a v2 address.
fn fall_back_to_v1(v2: &mut SessionV2, now: Instant) -> Option<Session> {
    let (addr, peer_type, v1_config) = v2.fallback_target()?;
    let policy = v2.policy().clone();
    let queued = v2.take_for_fallback();
    tracing::info!(peer = %addr, "the peer speaks only msgr1: dialing it again with msgr1");
    let reason = SessionError::LinkFailed(format!(
        "{addr} answered our msgr2 banner with msgr1's: it speaks only msgr1; dialing it again \
         with msgr1 (write the address as v1:... to skip the msgr2 attempt)"
    ));
    Some(Session::after_fallback(
        v1_config, addr, peer_type, policy, queued, reason, now,
    ))
}

impl AnySession {
    /// A session we dial with `protocol` (msgr2 needs `configs.v2`).
    pub fn connect(
        configs: &Configs,
        protocol: Protocol,
        peer: EntityAddr,
        peer_type: EntityType,
        policy: Policy,
        now: Instant,
    ) -> Result<Self, SessionError> {
        match (protocol, &configs.v2) {
            (Protocol::V1, _) => Ok(AnySession::V1(Box::new(Session::connect(
                configs.v1.clone(),
                peer,
                peer_type,
                policy,
                now,
            )))),
            (Protocol::V2, Some(v2)) => {
                let sock = peer.addr.ok_or_else(|| {
                    SessionError::LinkFailed("the peer address has no IP and port".into())
                })?;
                let addr = EntityAddrV2::new(AddrKind::MSGR2, sock, peer.nonce);
                Ok(AnySession::V2(Box::new(SessionV2::connect(
                    v2.clone(),
                    addr,
                    peer_type,
                    policy,
                    now,
                ))))
            }
            (Protocol::V2, None) => Err(SessionError::Protocol(
                "msgr2 is not enabled on this messenger: enable it in its config".into(),
            )),
        }
    }

    /// A session for a link a peer dialed from `socket_peer`: msgr1 or msgr2 directly when only
    /// one is accepted (msgr1 when none is), else a detector.
    pub fn accept(configs: &Configs, socket_peer: SocketAddr, now: Instant) -> Self {
        let v2 = configs.v2.as_ref().filter(|_| configs.accept_v2);
        match (v2, configs.accept_v1) {
            (Some(v2), false) => {
                AnySession::V2(Box::new(SessionV2::accept(v2.clone(), socket_peer, now)))
            }
            (None, _) => AnySession::V1(Box::new(Session::accept(
                configs.v1.clone(),
                socket_peer,
                now,
            ))),
            (Some(_), true) => AnySession::Detect(Box::new(Detect::new(configs, socket_peer))),
        }
    }

    fn contract(&self) -> &dyn ProtocolSession {
        match self {
            AnySession::V1(s) => &**s,
            AnySession::V2(s) => &**s,
            AnySession::Detect(d) => &**d,
        }
    }

    fn contract_mut(&mut self) -> &mut dyn ProtocolSession {
        match self {
            AnySession::V1(s) => &mut **s,
            AnySession::V2(s) => &mut **s,
            AnySession::Detect(d) => &mut **d,
        }
    }

    /// The msgr1 session, if this is one (tests and tools reach its details through it).
    pub fn as_v1(&self) -> Option<&Session> {
        match self {
            AnySession::V1(s) => Some(s),
            _ => None,
        }
    }

    /// The msgr2 session, if this is one.
    pub fn as_v2(&self) -> Option<&SessionV2> {
        match self {
            AnySession::V2(s) => Some(s),
            _ => None,
        }
    }

    /// Accepting side: answer the peer's connect (the session emitted
    /// [`SessionEvent::AcceptRequest`]) given the `existing` session registered for the same
    /// peer address, by the rules of this session's protocol (msgr1: [`accept::decide`];
    /// msgr2: [`SessionV2::resolve_accept`]). An existing session of the other protocol is
    /// not this peer's session: it is left alone. Returns the decision applied.
    pub fn resolve_accept(
        &mut self,
        hook_allows: bool,
        req: &ConnectRequest,
        existing: Option<&mut AnySession>,
        my_addr: &EntityAddr,
        policy: &Policy,
        now: Instant,
    ) -> AcceptDecision {
        match self {
            AnySession::V1(new) => {
                let existing = existing.and_then(|e| match e {
                    AnySession::V1(s) => Some(&mut **s),
                    _ => None,
                });
                let decision = if hook_allows {
                    accept::decide(existing.as_deref(), req, my_addr, policy)
                } else {
                    AcceptDecision::Refuse
                };
                new.resolve_accept(decision.clone(), existing, now);
                decision
            }
            AnySession::V2(new) => {
                let existing = existing.and_then(|e| match e {
                    AnySession::V2(s) => Some(&mut **s),
                    _ => None,
                });
                new.resolve_accept(hook_allows, existing, my_addr, now)
            }
            AnySession::Detect(_) => AcceptDecision::Refuse,
        }
    }
}

impl ProtocolSession for AnySession {
    fn protocol(&self) -> Protocol {
        self.contract().protocol()
    }
    fn link_up(&mut self, now: Instant) {
        self.contract_mut().link_up(now)
    }
    fn link_down(&mut self, error: SessionError, now: Instant) {
        self.contract_mut().link_down(error, now)
    }
    fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        if let AnySession::V2(s) = self {
            if s.awaiting_banner() && buf.starts_with(V1_BANNER_START) {
                if let Some(v1) = fall_back_to_v1(s, now) {
                    buf.clear();
                    *self = AnySession::V1(Box::new(v1));
                    return Ok(());
                }
            }
        }
        if let AnySession::Detect(d) = self {
            let Some(found) = d.detect(buf)? else {
                return Ok(());
            };
            *self = d.become_session(found, now);
        }
        self.contract_mut().handle_input(buf, now)
    }
    fn input_wanted(&self) -> usize {
        self.contract().input_wanted()
    }
    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        self.contract_mut().poll_transmit(out)
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.contract_mut().poll_event()
    }
    fn poll_events(&mut self, out: &mut VecDeque<SessionEvent>) {
        self.contract_mut().poll_events(out)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.contract().poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.contract_mut().handle_timeout(now)
    }
    fn wants_reconnect(&self) -> bool {
        self.contract().wants_reconnect()
    }
    fn send_message(&mut self, msg: Message) {
        self.contract_mut().send_message(msg)
    }
    fn send_keepalive(&mut self, now: Instant) {
        self.contract_mut().send_keepalive(now)
    }
    fn mark_down(&mut self) {
        self.contract_mut().mark_down()
    }
    fn close(&mut self) {
        self.contract_mut().close()
    }
    fn state(&self) -> SessionState {
        self.contract().state()
    }
    fn has_link(&self) -> bool {
        self.contract().has_link()
    }
    fn pending_messages(&self) -> usize {
        self.contract().pending_messages()
    }
    fn policy(&self) -> &Policy {
        self.contract().policy()
    }
    fn features(&self) -> u64 {
        self.contract().features()
    }
    fn peer_name(&self) -> Option<EntityName> {
        self.contract().peer_name()
    }
}
