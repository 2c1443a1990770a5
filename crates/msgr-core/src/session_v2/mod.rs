//! The per-connection msgr2.1 state machine (sans-IO), beside msgr1's [`crate::session`], with
//! the same driving contract:
//! 1. Create with [`SessionV2::connect`] (we dial) or [`SessionV2::accept`] (a peer dialed us).
//! 2. When a link is established call [`SessionV2::link_up`].
//! 3. Feed received bytes with [`SessionV2::handle_input`]; it consumes whole frames and leaves
//!    a partial one in the buffer.
//! 4. After every call drain [`SessionV2::poll_transmit`] (bytes to write, in order),
//!    [`SessionV2::poll_event`] (the same [`SessionEvent`]s msgr1 emits) and re-arm the timer
//!    with [`SessionV2::poll_timeout`]; call [`SessionV2::handle_timeout`] when it fires. When
//!    [`SessionV2::wants_reconnect`] is true, dial again and call `link_up`.
//! 5. When the link fails call [`SessionV2::link_down`]. When the session gives up a link it
//!    emits [`SessionEvent::CloseLink`]: write what `poll_transmit` handed out, then close.
//!
//! Handshake (both sides send banner and HELLO at once): banner, HELLO, AUTH_REQUEST /
//! AUTH_REPLY_MORE / AUTH_REQUEST_MORE / AUTH_DONE (or AUTH_BAD_METHOD), then from AUTH_DONE on
//! the chosen mode (crc or secure), AUTH_SIGNATURE both ways over the pre-auth bytes, then
//! CLIENT_IDENT / SERVER_IDENT for a new session or SESSION_RECONNECT / RECONNECT_OK (RETRY,
//! RETRY_GLOBAL, RESET, WAIT) to resume one. Open: MESSAGE, ACK, KEEPALIVE2(_ACK).
//!
//! Implemented: the client side with auth none or cephx (to a monitor) in crc or secure mode,
//! lossy and lossless, with the reconnect path; the server side with auth none and crc mode,
//! new sessions and reconnects resolved against the existing session by the driver
//! ([`SessionEvent::AcceptRequest`], then [`SessionV2::resolve_accept`], as msgr1 does).
//!
//! Module map: `config` (settings), `link` (framing in the current mode, pre-auth record),
//! `handshake` (both sides' handshake frames), `accept` (the server's answer to an IDENT),
//! `open` (messages, acks, keepalives, transmit); the out queue and sent list are
//! `crate::outgoing`, shared with msgr1.

mod accept;
mod config;
mod handshake;
mod link;
mod open;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use config::{V2Auth, V2Config, PACIFIC_FEATURES};

use crate::auth::cephx::{CephxError, CryptoKey};
use crate::message::Message;
use crate::outgoing::{OutQueue, SentList};
use crate::policy::Policy;
use crate::session::{SessionError, SessionEvent, SessionState};
use crate::v2::payload::IDENT_FLAG_LOSSY;
use crate::v2::{Banner, EntityAddrV2, EntityAddrVec, V2Error};
use crate::wire::{EntityAddr, EntityName, EntityType};
use link::Link;

/// Where the handshake or session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No link yet.
    Idle,
    /// Banner sent; waiting for the peer's banner, then its HELLO.
    Hello,
    /// Client: auth request sent, waiting for the server's answer. Server: waiting for one.
    Auth(AuthStep),
    /// Mode switched; waiting for the peer's AUTH_SIGNATURE.
    AuthSignature,
    /// Client: CLIENT_IDENT or SESSION_RECONNECT sent. Server: waiting for one.
    Ident,
    /// Messages flow.
    Open,
    /// Lossless, link lost: a client wants a new link; a server waits for the peer.
    Faulted,
    /// Lossless client with the standby policy, link lost with nothing to send: no new link
    /// until a message is queued.
    Standby,
    /// The server answered WAIT: a racing connection from it wins; retry later.
    Wait,
    /// Gone for good.
    Closed,
}

/// Client-side cephx progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthStep {
    /// AUTH_REQUEST sent (or, server: waiting for it).
    Requested,
    /// cephx: AUTH_REQUEST_MORE with the proof sent.
    Proved,
}

/// Deadlines the session keeps.
#[derive(Debug, Default)]
struct Deadlines {
    handshake: Option<Instant>,
    keepalive: Option<Instant>,
    idle: Option<Instant>,
    wait: Option<Instant>,
}

/// A msgr2 session. See the module documentation for the driving contract.
#[derive(Debug)]
pub struct SessionV2 {
    config: Arc<V2Config>,
    policy: Policy,
    server: bool,
    state: State,
    link: Option<Link>,
    /// Client: the address we dial. Server: the peer's socket address as seen.
    peer_addr: Option<EntityAddrV2>,
    peer_type: Option<EntityType>,
    peer_addrs: EntityAddrVec,
    peer_gid: i64,
    features: u64,
    global_id: u64,
    client_cookie: u64,
    server_cookie: u64,
    global_seq: u64,
    peer_global_seq: u64,
    connect_seq: u64,
    in_seq: u64,
    out_seq: u64,
    queue: OutQueue,
    sent: SentList,
    session_key: Option<CryptoKey>,
    /// The signature the peer must send: over what we sent before authentication finished.
    expected_signature: Option<[u8; 32]>,
    con_mode: u32,
    /// A keepalive to send, and the last one sent (for the round-trip time).
    keepalive: Option<(u32, u32)>,
    keepalive_sent: Option<((u32, u32), Instant)>,
    closing: bool,
    /// Server: the peer's IDENT, waiting for the driver's `resolve_accept`.
    pending: Option<accept::PendingIdent>,
    events: VecDeque<SessionEvent>,
    deadlines: Deadlines,
    born: Instant,
}

/// A msgr2 protocol failure as the session layer reports it.
fn wire_err(e: V2Error) -> SessionError {
    SessionError::Protocol(format!("msgr2: {e}"))
}

fn cephx_err(e: CephxError) -> SessionError {
    SessionError::Protocol(format!("cephx: {e}"))
}

impl SessionV2 {
    fn new(config: Arc<V2Config>, policy: Policy, server: bool, now: Instant) -> Self {
        SessionV2 {
            config,
            policy,
            server,
            state: State::Idle,
            link: None,
            peer_addr: None,
            peer_type: None,
            peer_addrs: EntityAddrVec::default(),
            peer_gid: -1,
            features: 0,
            global_id: 0,
            client_cookie: 0,
            server_cookie: 0,
            global_seq: 0,
            peer_global_seq: 0,
            connect_seq: 0,
            in_seq: 0,
            out_seq: 0,
            queue: OutQueue::default(),
            sent: SentList::default(),
            session_key: None,
            expected_signature: None,
            con_mode: 0,
            keepalive: None,
            keepalive_sent: None,
            closing: false,
            pending: None,
            events: VecDeque::new(),
            deadlines: Deadlines::default(),
            born: now,
        }
    }

    /// A session we initiate towards `peer_addr` (a `v2:` address; its nonce is checked
    /// against the server's SERVER_IDENT).
    pub fn connect(
        config: Arc<V2Config>,
        peer_addr: EntityAddrV2,
        peer_type: EntityType,
        policy: Policy,
        now: Instant,
    ) -> Self {
        let mut s = SessionV2::new(config, policy, false, now);
        s.peer_addr = Some(peer_addr);
        s.peer_type = Some(peer_type);
        s
    }

    /// A session for a link a peer dialed from `socket_peer`. The policy is the messenger's
    /// default until the peer's HELLO names its type.
    pub fn accept(config: Arc<V2Config>, socket_peer: std::net::SocketAddr, now: Instant) -> Self {
        let policy = config.base.policies.get(EntityType(0)).clone();
        let mut s = SessionV2::new(config, policy, true, now);
        s.peer_addr = Some(EntityAddrV2::new(
            crate::v2::AddrKind::MSGR2,
            socket_peer,
            0,
        ));
        s
    }

    /// A fresh link is established: (re)start the handshake.
    pub fn link_up(&mut self, now: Instant) {
        if self.link.is_some() {
            self.fault(
                SessionError::LinkFailed("replaced by a new link".into()),
                now,
                true,
            );
        }
        if self.state == State::Closed || (self.server && self.state != State::Idle) {
            // A server session serves one link; a closed one serves none.
            self.events.push_back(SessionEvent::CloseLink);
            return;
        }
        let mut link = Link::new(now);
        let mut banner = BytesMut::new();
        Banner::default().encode(&mut banner);
        link.send_raw(&banner);
        self.link = Some(link);
        self.state = State::Hello;
        self.session_key = None;
        self.expected_signature = None;
        self.deadlines = Deadlines {
            handshake: Some(now + self.config.base.handshake_timeout),
            ..Deadlines::default()
        };
    }

    /// The link failed (read or write error, EOF).
    pub fn link_down(&mut self, error: SessionError, now: Instant) {
        if self.link.is_some() {
            self.fault(error, now, false);
        }
    }

    /// Feeds received bytes; complete frames are consumed from `buf`.
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            buf.clear();
            return Ok(());
        };
        link.last_rx = now;
        loop {
            match self.input_step(buf, now) {
                Ok(true) if self.link.is_some() => continue,
                Ok(_) => return Ok(()),
                Err(e) => {
                    if matches!(e, SessionError::AuthFailed(_)) {
                        // Redialing with the same credentials would fail the same way.
                        self.end(e.clone());
                    } else {
                        self.fault(e.clone(), now, true);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// One banner or frame; false when more bytes are needed.
    fn input_step(&mut self, buf: &mut BytesMut, now: Instant) -> Result<bool, SessionError> {
        let limits = self.config.frame_limits;
        let link = self.link.as_mut().expect("checked by the caller");
        if !link.banner_done {
            let Some((peer, used)) = Banner::decode(buf).map_err(wire_err)? else {
                return Ok(false);
            };
            link.record_received(&buf.split_to(used));
            Banner::default().check_peer(&peer).map_err(wire_err)?;
            link.banner_done = true;
            self.send_hello();
            return Ok(true);
        }
        let Some(frame) = link.next_frame(buf, &limits).map_err(wire_err)? else {
            return Ok(false);
        };
        match self.state {
            State::Open => self.open_frame(frame, now)?,
            _ => self.handshake_frame(frame, now)?,
        }
        Ok(true)
    }

    /// Bytes to write, in order. Returns how many chunks were appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let before = out.len();
        if self.state == State::Open {
            self.write_open();
        }
        if let Some(link) = self.link.as_mut() {
            if !link.out.is_empty() {
                out.push(link.out.split().freeze());
            }
        }
        if self.closing && self.queue.is_empty() && self.link.is_some() {
            self.end(SessionError::Closed);
        }
        out.len() - before
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Every pending event, appended to `out` in order; into an empty `out` the whole queue
    /// is handed over without moving an event (see `ProtocolSession::poll_events`).
    pub fn poll_events(&mut self, out: &mut VecDeque<SessionEvent>) {
        crate::session::hand_over(&mut self.events, out);
    }

    /// When [`SessionV2::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let d = &self.deadlines;
        [d.handshake, d.keepalive, d.idle, d.wait]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: handshake and idle timeouts, keepalives, the end of a WAIT.
    pub fn handle_timeout(&mut self, now: Instant) {
        let base = self.config.base.clone();
        if self.deadlines.handshake.is_some_and(|t| t <= now) {
            self.deadlines.handshake = None;
            if !matches!(self.state, State::Open | State::Closed | State::Faulted) {
                self.fault(
                    SessionError::HandshakeTimeout(base.handshake_timeout),
                    now,
                    true,
                );
                return;
            }
        }
        if self.deadlines.idle.is_some_and(|t| t <= now) {
            self.deadlines.idle = None;
            if let (Some(idle), Some(link)) = (base.idle_timeout, self.link.as_ref()) {
                if link.last_rx + idle <= now {
                    self.fault(SessionError::IdleTimeout(idle), now, true);
                    return;
                }
                self.deadlines.idle = Some(link.last_rx + idle);
            }
        }
        if self.deadlines.keepalive.is_some_and(|t| t <= now) {
            self.deadlines.keepalive = base.keepalive_interval.map(|i| now + i);
            self.send_keepalive(now);
        }
        if self.deadlines.wait.is_some_and(|t| t <= now) {
            self.deadlines.wait = None;
            if self.state == State::Wait {
                self.state = State::Faulted;
            }
        }
    }

    /// Queues a message (sent when open; kept across reconnects of a lossless session).
    pub fn send_message(&mut self, msg: Message) {
        if self.state != State::Closed {
            self.queue.push(msg);
            if self.state == State::Standby {
                self.state = State::Faulted;
            }
        }
    }

    /// Asks for a KEEPALIVE2 on the open link.
    pub fn send_keepalive(&mut self, now: Instant) {
        let t = now.duration_since(self.born);
        self.keepalive = Some((t.as_secs() as u32, t.subsec_nanos()));
    }

    /// Ends the session at once; unsent and unacknowledged messages come back in `Reset`.
    pub fn mark_down(&mut self) {
        self.end(SessionError::MarkedDown);
    }

    /// Sends what is queued, then ends the session.
    pub fn close(&mut self) {
        if self.link.is_some() && self.state == State::Open {
            self.closing = true;
        } else {
            self.end(SessionError::Closed);
        }
    }

    /// Public state, as msgr1 names them.
    pub fn state(&self) -> SessionState {
        match self.state {
            State::Idle => SessionState::Idle,
            State::Open => SessionState::Open,
            State::Faulted if self.server => SessionState::Standby,
            State::Faulted => SessionState::Faulted,
            State::Standby => SessionState::Standby,
            State::Wait => SessionState::Wait,
            State::Closed => SessionState::Closed,
            _ if self.server => SessionState::Accepting,
            _ => SessionState::Connecting,
        }
    }

    /// A lossless client whose link failed wants a new one (backoff is the driver's).
    pub fn wants_reconnect(&self) -> bool {
        !self.server && self.state == State::Faulted && self.link.is_none()
    }

    /// The peer's name once identified (number -1 until then).
    pub fn peer_name(&self) -> Option<EntityName> {
        self.peer_type.map(|t| EntityName::new(t, self.peer_gid))
    }

    /// The addresses the peer announced in its IDENT frame.
    pub fn peer_addrs(&self) -> &EntityAddrVec {
        &self.peer_addrs
    }

    /// Negotiated Ceph features (0 before the first open).
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The global id the server assigned in AUTH_DONE (client side).
    pub fn global_id(&self) -> u64 {
        self.global_id
    }

    /// The connection mode in use (`MODE_CRC` or `MODE_SECURE`), 0 before AUTH_DONE.
    pub fn con_mode(&self) -> u32 {
        self.con_mode
    }

    /// Highest message seq received.
    pub fn in_seq(&self) -> u64 {
        self.in_seq
    }

    /// Highest message seq assigned to a sent message.
    pub fn out_seq(&self) -> u64 {
        self.out_seq
    }

    /// Messages queued or sent but not acknowledged.
    pub fn pending_messages(&self) -> usize {
        self.queue.len() + self.sent.len()
    }

    /// A client whose link is up but has not read the peer's banner yet (the moment a msgr1
    /// peer gives itself away).
    pub(crate) fn awaiting_banner(&self) -> bool {
        !self.server && self.link.as_ref().is_some_and(|l| !l.banner_done)
    }

    /// Everything queued or sent but unacknowledged, unnumbered, for a msgr1 session to carry
    /// instead (see `protocol`); the session is closed without events.
    pub(crate) fn take_for_fallback(&mut self) -> Vec<Message> {
        let mut all = self.queue.take_undelivered(&mut self.sent);
        for m in &mut all {
            m.seq = 0;
        }
        self.link = None;
        self.state = State::Closed;
        self.deadlines = Deadlines::default();
        all
    }

    /// The dialed peer, its type and the v1 settings (for a msgr1 session to take over).
    pub(crate) fn fallback_target(
        &self,
    ) -> Option<(EntityAddr, EntityType, Arc<crate::session::SessionConfig>)> {
        Some((
            self.peer_addr_legacy(),
            self.peer_type?,
            self.config.base.clone(),
        ))
    }

    /// The flags our CLIENT_IDENT / SERVER_IDENT carry: lossy or not, per our policy.
    fn ident_flags(&self) -> u64 {
        if self.policy.lossy {
            IDENT_FLAG_LOSSY
        } else {
            0
        }
    }

    /// The session has a link (handshaking or open).
    pub fn has_link(&self) -> bool {
        self.link.is_some()
    }

    /// While a frame is being received: the bytes the receive buffer must hold (from its
    /// start) to complete it; 0 otherwise. A driver may read that much in one go (the session
    /// works the same whatever the read sizes).
    pub fn input_wanted(&self) -> usize {
        self.link.as_ref().map_or(0, |l| l.wanted)
    }

    /// The policy in force (a server takes the one for the peer's type from its HELLO).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The peer's address in the form msgr1's events carry.
    fn peer_addr_legacy(&self) -> EntityAddr {
        match self.peer_addr.and_then(|a| a.addr.map(|s| (s, a.nonce))) {
            Some((s, nonce)) => EntityAddr::new(s, nonce),
            None => EntityAddr::blank(),
        }
    }

    /// The link is lost: per policy, end the session or keep it for a new link.
    /// `ours`: the session gives the link up (the driver must close it).
    fn fault(&mut self, error: SessionError, _now: Instant, ours: bool) {
        if self.link.take().is_none() && !ours {
            return;
        }
        if ours {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.deadlines = Deadlines::default();
        if self.policy.lossy || self.closing || self.state == State::Closed {
            self.end(error);
            return;
        }
        self.queue.requeue_unacked(&mut self.sent);
        let standby = !self.server
            && self.policy.standby
            && self.queue.is_empty()
            && self.keepalive.is_none();
        let will_reconnect = !self.server && !standby;
        self.state = if self.state == State::Wait {
            State::Wait
        } else if standby {
            State::Standby
        } else {
            State::Faulted
        };
        self.events.push_back(SessionEvent::Faulted {
            error,
            will_reconnect,
        });
    }

    /// The session is over: report what was never delivered.
    fn end(&mut self, error: SessionError) {
        if self.state == State::Closed {
            return;
        }
        if self.link.take().is_some() {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.state = State::Closed;
        self.deadlines = Deadlines::default();
        let undelivered = self.queue.take_undelivered(&mut self.sent);
        self.events
            .push_back(SessionEvent::Reset { error, undelivered });
    }

    /// The link is open now: emit the event and start the timers.
    fn opened(&mut self, now: Instant) {
        self.state = State::Open;
        let base = &self.config.base;
        self.deadlines = Deadlines {
            keepalive: base.keepalive_interval.map(|i| now + i),
            idle: base.idle_timeout.map(|i| now + i),
            ..Deadlines::default()
        };
        let peer_addr = self.peer_addr_legacy();
        let peer_name = EntityName::new(self.peer_type.unwrap_or(EntityType(0)), self.peer_gid);
        let features = self.features;
        self.events.push_back(if self.server {
            SessionEvent::Accepted {
                peer_addr,
                peer_name,
                features,
            }
        } else {
            SessionEvent::Connected {
                peer_addr,
                peer_name,
                features,
            }
        });
    }

    /// How long a WAIT lasts before the client dials again.
    fn wait_retry(&self) -> Duration {
        self.config.base.wait_retry
    }
}
