//! One driving contract for every protocol's session state machine, so a node driver runs
//! msgr1 and msgr2 sessions (and learns which one an accepted peer speaks) without
//! protocol-specific code.
//!
//! - [`ProtocolSession`]: the contract (the numbered steps at the top of [`crate::session`]),
//!   implemented by [`Session`] (msgr1) and [`SessionV2`] (msgr2.1).
//! - [`AnySession`]: what a driver holds: one of them, or, on an accepted link that may carry
//!   either, a detector that reads the peer's banner (`ceph v027` or `ceph v2\n`; clients of both
//!   protocols write theirs first) and then becomes the right one.
//! - [`Protocol`]: which one; peers' addresses say it as `v1:` / `v2:` prefixes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::message::Message;
use crate::policy::Policy;
use crate::session::{
    accept, AcceptDecision, ConnectRequest, Session, SessionConfig, SessionError, SessionEvent,
    SessionState,
};
use crate::session_v2::{SessionV2, V2Config};
use crate::v2::{AddrKind, EntityAddrV2};
use crate::wire::{EntityAddr, EntityName, EntityType};

/// A messenger protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Ceph's messenger v1 (`ceph v027`), what every Ceph release speaks on port 6789.
    #[default]
    V1,
    /// Ceph's messenger v2.1 (`ceph v2`), Nautilus and later, port 3300 by convention.
    V2,
}

impl Protocol {
    /// `"v1"` or `"v2"`, as address prefixes and config files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }

    /// Splits a `v1:` / `v2:` prefix off a peer address: the protocol it names (None without a
    /// prefix) and the rest.
    pub fn split_prefix(addr: &str) -> (Option<Protocol>, &str) {
        if let Some(rest) = addr.strip_prefix("v2:") {
            (Some(Protocol::V2), rest)
        } else if let Some(rest) = addr.strip_prefix("v1:") {
            (Some(Protocol::V1), rest)
        } else {
            (None, addr)
        }
    }
}

/// A peer address as command lines and config files write it: `v2:IP:PORT/NONCE` or
/// `v1:IP:PORT/NONCE` (the protocol to speak), or `IP:PORT/NONCE` (None: the messenger's
/// preference).
pub fn parse_peer_addr(
    s: &str,
) -> Result<(Option<Protocol>, EntityAddr), crate::wire::ParseEntityError> {
    let (protocol, rest) = Protocol::split_prefix(s);
    let addr = rest.parse::<EntityAddr>().map_err(|mut e| {
        e.got = s.to_string();
        e
    })?;
    Ok((protocol, addr))
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "msgr1" => Ok(Protocol::V1),
            "v2" | "msgr2" => Ok(Protocol::V2),
            _ => Err(format!(
                "unknown protocol \"{s}\": expected \"v1\" or \"v2\""
            )),
        }
    }
}

/// The driving contract every protocol's session keeps (see [`crate::session`]'s module docs
/// for the order of calls). Accept resolution is protocol-specific and lives on
/// [`AnySession::resolve_accept`].
pub trait ProtocolSession {
    /// Which protocol this is.
    fn protocol(&self) -> Protocol;
    /// A fresh link is established: (re)start the handshake.
    fn link_up(&mut self, now: Instant);
    /// The link failed (read or write error, EOF).
    fn link_down(&mut self, error: SessionError, now: Instant);
    /// Feed received bytes; complete frames are consumed from `buf`.
    fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError>;
    /// Bytes the receive buffer must hold to finish the message body in progress (0: none).
    fn input_wanted(&self) -> usize;
    /// Append chunks to write, in order; returns how many.
    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize;
    /// The next event for the owner.
    fn poll_event(&mut self) -> Option<SessionEvent>;
    /// When [`ProtocolSession::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The session wants a new link (dial with backoff, then `link_up`).
    fn wants_reconnect(&self) -> bool;
    /// Queue a message.
    fn send_message(&mut self, msg: Message);
    /// Ask for a keepalive on the open link.
    fn send_keepalive(&mut self, now: Instant);
    /// End the session at once (undelivered messages come back in `Reset`).
    fn mark_down(&mut self);
    /// Send what is queued, then end.
    fn close(&mut self);
    /// The public state.
    fn state(&self) -> SessionState;
    /// The session has a link (handshaking or open).
    fn has_link(&self) -> bool;
    /// Messages queued or sent but not acknowledged.
    fn pending_messages(&self) -> usize;
    /// The policy in force.
    fn policy(&self) -> &Policy;
    /// Negotiated feature bits (0 before the first open).
    fn features(&self) -> u64;
    /// The peer's name, once known.
    fn peer_name(&self) -> Option<EntityName>;
}

/// Forwards the contract to the inherent methods of the same names.
macro_rules! forward_contract {
    ($t:ty, $proto:expr) => {
        impl ProtocolSession for $t {
            fn protocol(&self) -> Protocol {
                $proto
            }
            fn link_up(&mut self, now: Instant) {
                <$t>::link_up(self, now)
            }
            fn link_down(&mut self, error: SessionError, now: Instant) {
                <$t>::link_down(self, error, now)
            }
            fn handle_input(
                &mut self,
                buf: &mut BytesMut,
                now: Instant,
            ) -> Result<(), SessionError> {
                <$t>::handle_input(self, buf, now)
            }
            fn input_wanted(&self) -> usize {
                <$t>::input_wanted(self)
            }
            fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
                <$t>::poll_transmit(self, out)
            }
            fn poll_event(&mut self) -> Option<SessionEvent> {
                <$t>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn wants_reconnect(&self) -> bool {
                <$t>::wants_reconnect(self)
            }
            fn send_message(&mut self, msg: Message) {
                <$t>::send_message(self, msg)
            }
            fn send_keepalive(&mut self, now: Instant) {
                <$t>::send_keepalive(self, now)
            }
            fn mark_down(&mut self) {
                <$t>::mark_down(self)
            }
            fn close(&mut self) {
                <$t>::close(self)
            }
            fn state(&self) -> SessionState {
                <$t>::state(self)
            }
            fn has_link(&self) -> bool {
                <$t>::has_link(self)
            }
            fn pending_messages(&self) -> usize {
                <$t>::pending_messages(self)
            }
            fn policy(&self) -> &Policy {
                <$t>::policy(self)
            }
            fn features(&self) -> u64 {
                <$t>::features(self)
            }
            fn peer_name(&self) -> Option<EntityName> {
                <$t>::peer_name(self)
            }
        }
    };
}

forward_contract!(Session, Protocol::V1);
forward_contract!(SessionV2, Protocol::V2);

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

impl Configs {
    fn accepts_v2(&self) -> bool {
        self.accept_v2 && self.v2.is_some()
    }
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

/// Reads the first bytes of an accepted link to learn the protocol.
#[derive(Debug)]
pub struct Detect {
    configs: Configs,
    socket_peer: SocketAddr,
    policy: Policy,
    linked: bool,
    closed: bool,
    deadline: Option<Instant>,
    events: std::collections::VecDeque<SessionEvent>,
}

/// What both banners start with; the next byte tells them apart (`0` of `v027`, `2` of `v2\n`).
const BANNER_PREFIX: &[u8] = b"ceph v";

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
            (Some(_), true) => AnySession::Detect(Box::new(Detect {
                configs: configs.clone(),
                socket_peer,
                policy: configs.v1.policies.get(EntityType(0)).clone(),
                linked: false,
                closed: false,
                deadline: None,
                events: Default::default(),
            })),
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

impl Detect {
    /// The protocol the banner in `buf` names, once enough of it is there; an error for bytes
    /// that are no Ceph banner or name a protocol this messenger does not accept.
    fn detect(&mut self, buf: &BytesMut) -> Result<Option<Protocol>, SessionError> {
        let n = buf.len().min(BANNER_PREFIX.len());
        if buf[..n] != BANNER_PREFIX[..n] {
            let e = SessionError::Protocol(format!(
                "the peer at {} sent {:?}, which is no Ceph messenger banner: not a Ceph peer?",
                self.socket_peer,
                String::from_utf8_lossy(&buf[..buf.len().min(16)])
            ));
            self.end(e.clone());
            return Err(e);
        }
        let Some(&b) = buf.get(BANNER_PREFIX.len()) else {
            return Ok(None);
        };
        let found = match b {
            b'0' if self.configs.accept_v1 => Protocol::V1,
            b'2' if self.configs.accepts_v2() => Protocol::V2,
            b'0' | b'2' => {
                let (got, want) = if b == b'0' {
                    ("v1", "v2")
                } else {
                    ("v2", "v1")
                };
                let e = SessionError::Protocol(format!(
                    "the peer at {} speaks msgr {got}, this messenger accepts only {want}: \
                     enable {got} in its config or point the peer at a {want} address",
                    self.socket_peer
                ));
                self.end(e.clone());
                return Err(e);
            }
            _ => {
                let e = SessionError::Protocol(format!(
                    "the peer at {} sent a Ceph banner of an unknown protocol version",
                    self.socket_peer
                ));
                self.end(e.clone());
                return Err(e);
            }
        };
        Ok(Some(found))
    }

    /// The session for `protocol`, with the link up (it was up while detecting).
    fn become_session(&mut self, protocol: Protocol, now: Instant) -> AnySession {
        let mut s = match (protocol, &self.configs.v2) {
            (Protocol::V2, Some(v2)) => AnySession::V2(Box::new(SessionV2::accept(
                v2.clone(),
                self.socket_peer,
                now,
            ))),
            _ => AnySession::V1(Box::new(Session::accept(
                self.configs.v1.clone(),
                self.socket_peer,
                now,
            ))),
        };
        if self.linked {
            s.link_up(now);
        }
        s
    }

    fn end(&mut self, error: SessionError) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.deadline = None;
        if std::mem::take(&mut self.linked) {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.events.push_back(SessionEvent::Reset {
            error,
            undelivered: Vec::new(),
        });
    }
}

/// Before the banner: no peer, nothing to send; only the handshake timeout runs.
impl ProtocolSession for Detect {
    fn protocol(&self) -> Protocol {
        Protocol::V1
    }
    fn link_up(&mut self, now: Instant) {
        if self.closed || self.linked {
            self.events.push_back(SessionEvent::CloseLink);
            return;
        }
        self.linked = true;
        self.deadline = Some(now + self.configs.v1.handshake_timeout);
    }
    fn link_down(&mut self, error: SessionError, _now: Instant) {
        if self.linked {
            self.linked = false;
            self.end(error);
        }
    }
    fn handle_input(&mut self, _buf: &mut BytesMut, _now: Instant) -> Result<(), SessionError> {
        // AnySession::handle_input detects; a Detect on its own never gets here.
        Ok(())
    }
    fn input_wanted(&self) -> usize {
        0
    }
    fn poll_transmit(&mut self, _out: &mut Vec<Bytes>) -> usize {
        0
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.end(SessionError::HandshakeTimeout(
                self.configs.v1.handshake_timeout,
            ));
        }
    }
    fn wants_reconnect(&self) -> bool {
        false
    }
    fn send_message(&mut self, _msg: Message) {}
    fn send_keepalive(&mut self, _now: Instant) {}
    fn mark_down(&mut self) {
        self.end(SessionError::MarkedDown);
    }
    fn close(&mut self) {
        self.end(SessionError::Closed);
    }
    fn state(&self) -> SessionState {
        if self.closed {
            SessionState::Closed
        } else {
            SessionState::Accepting
        }
    }
    fn has_link(&self) -> bool {
        self.linked
    }
    fn pending_messages(&self) -> usize {
        0
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }
    fn features(&self) -> u64 {
        0
    }
    fn peer_name(&self) -> Option<EntityName> {
        None
    }
}
