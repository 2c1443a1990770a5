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
/// Enough of msgr1's banner to tell a msgr1 peer.
const V1_BANNER_START: &[u8] = b"ceph v0";

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
    /// that are no Ceph banner.
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
        // A detector exists only where both protocols are accepted.
        let found = match b {
            b'0' => Protocol::V1,
            b'2' => Protocol::V2,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::EntityAddrVec;

    fn configs(accept_v1: bool, accept_v2: bool) -> Configs {
        let me = EntityAddr::new("127.0.0.1:6800".parse().unwrap(), 7);
        let v1 = Arc::new(SessionConfig::new(EntityName::new(EntityType::OSD, 0), me));
        let v2 = Arc::new(V2Config::new(v1.clone(), EntityAddrVec::default()));
        Configs {
            v1,
            v2: Some(v2),
            accept_v1,
            accept_v2,
        }
    }

    fn accepted(accept_v1: bool, accept_v2: bool) -> (AnySession, Instant) {
        let now = Instant::now();
        let mut s = AnySession::accept(
            &configs(accept_v1, accept_v2),
            "127.0.0.1:5000".parse().unwrap(),
            now,
        );
        s.link_up(now);
        (s, now)
    }

    fn out(s: &mut AnySession) -> Vec<u8> {
        let mut chunks = Vec::new();
        s.poll_transmit(&mut chunks);
        chunks.concat()
    }

    #[test]
    fn the_banner_picks_the_protocol_and_nothing_is_sent_before_it() {
        for (banner, protocol, reply) in [
            (&b"ceph v027"[..], Protocol::V1, &b"ceph v027"[..]),
            (&b"ceph v2\n"[..], Protocol::V2, &b"ceph v2\n"[..]),
        ] {
            let (mut s, now) = accepted(true, true);
            assert!(matches!(s, AnySession::Detect(_)));
            assert_eq!(s.state(), SessionState::Accepting);
            // Byte by byte: undecided until the protocol byte, and silent.
            let mut buf = BytesMut::new();
            for b in &banner[..6] {
                buf.extend_from_slice(&[*b]);
                s.handle_input(&mut buf, now).unwrap();
                assert!(matches!(s, AnySession::Detect(_)));
                assert!(out(&mut s).is_empty());
            }
            buf.extend_from_slice(&banner[6..]);
            s.handle_input(&mut buf, now).unwrap();
            assert_eq!(s.protocol(), protocol);
            assert!(
                out(&mut s).starts_with(reply),
                "{protocol} answers its banner"
            );
        }
    }

    #[test]
    fn garbage_or_an_unaccepted_protocol_is_refused_with_the_reason() {
        for (accept_v1, accept_v2, input, says) in [
            (
                true,
                true,
                &b"GET / HTTP/1.1\r\n"[..],
                "no Ceph messenger banner",
            ),
            (true, true, &b"ceph v9"[..], "unknown protocol version"),
            (false, true, &b"ceph v027"[..], "msgr2 session"),
        ] {
            let (mut s, now) = accepted(accept_v1, accept_v2);
            let mut buf = BytesMut::from(input);
            let r = s.handle_input(&mut buf, now);
            let e = match r {
                Err(e) => e.to_string(),
                // A msgr2-only node has a msgr2 session: it fails on the msgr1 banner itself.
                Ok(()) => {
                    let mut ev = Vec::new();
                    while let Some(e) = s.poll_event() {
                        ev.push(format!("{e:?}"));
                    }
                    ev.join(" ")
                }
            };
            if accept_v1 {
                assert!(e.contains(says), "{e}");
                let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
                assert!(matches!(events[0], SessionEvent::CloseLink), "{events:?}");
                assert!(
                    matches!(events[1], SessionEvent::Reset { .. }),
                    "{events:?}"
                );
                assert_eq!(s.state(), SessionState::Closed);
            } else {
                assert_eq!(s.protocol(), Protocol::V2);
                assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn a_stalled_peer_times_out_before_its_banner() {
        let (mut s, now) = accepted(true, true);
        let t = s.poll_timeout().expect("the handshake timer runs");
        s.handle_timeout(t);
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(
            matches!(
                &events[1],
                SessionEvent::Reset {
                    error: SessionError::HandshakeTimeout(_),
                    ..
                }
            ),
            "{events:?}"
        );
        let _ = now;
    }

    #[test]
    fn peer_prefixes_parse() {
        let (p, a) = parse_peer_addr("v2:10.0.0.1:3300/0").unwrap();
        assert_eq!((p, a.port()), (Some(Protocol::V2), 3300));
        let (p, _) = parse_peer_addr("10.0.0.1:6789/0").unwrap();
        assert_eq!(p, None);
        let e = parse_peer_addr("v2:nowhere").unwrap_err();
        assert_eq!(e.got, "v2:nowhere");
        assert_eq!("msgr2".parse::<Protocol>(), Ok(Protocol::V2));
        assert!("v3".parse::<Protocol>().is_err());
    }
}
