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
//! 4. After every call, drain: [`Session::poll_transmit`] until it returns 0 (chunks to write, in
//!    order, suited to a vectored write), [`Session::poll_event`] (connected, message, reset, ...;
//!    or [`Session::poll_events`] for all of them at once),
//!    and re-arm the timer with [`Session::poll_timeout`]; call [`Session::handle_timeout`] when
//!    it fires. Check [`Session::wants_reconnect`] too: when true, dial the peer again (with the
//!    driver's backoff) and call `link_up` on the new link.
//! 5. When the link fails (read error, EOF, QP error) call [`Session::link_down`]; the session
//!    decides per policy whether it wants a new link ([`Session::wants_reconnect`]) or is gone.
//!    When the *session* gives up its link (protocol error, timeout, WAIT, CLOSE, mark_down,
//!    replaced) it emits [`SessionEvent::CloseLink`]: write what `poll_transmit` already handed
//!    out, then close the link; calling `link_down` afterwards is harmless (ignored).
//! 6. On the accepting side, once the peer's connect message is read, the session emits
//!    [`SessionEvent::AcceptRequest`] and waits; the driver looks up any existing session for that
//!    peer address, calls [`accept::decide`] and then [`Session::resolve_accept`] — this is where
//!    racing connects are resolved. On `New` / `Replace*` the accepting session becomes the one
//!    registered for that peer address; a replaced one emits [`SessionEvent::Replaced`] and must
//!    be dropped by the driver.
//!
//! Module map: `handshake` (banner, addresses, connect / reply, SEQ exchange, both sides),
//! `accept` (how to answer a connect), `timers`, `config`,
//! `events` (events, errors, public state), `input` (receive path), `transmit` (transmit path),
//! `lifecycle` (timer expiry, open, fault, end, peer reset). The out queue and sent list are
//! `crate::outgoing`, shared with msgr2.

pub mod accept;
mod config;
mod events;
mod handshake;
mod input;
mod lifecycle;
mod timers;
mod transmit;

pub use accept::{AcceptDecision, ConnectRequest, ExistingView};
pub use config::{
    proto, protocol_version, Authorizer, GlobalSeq, NoneAuthorizer, SessionConfig, CEPH_AUTH_NONE,
};
pub(crate) use events::hand_over;
pub use events::{SessionError, SessionEvent, SessionState};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::message::Message;
use crate::policy::Policy;
use crate::wire::frame::FrameDecoder;
use crate::wire::{EntityAddr, EntityName, EntityType};

use crate::outgoing::{OutQueue, SentList};
use handshake::{ClientStep, ServerStep};
use timers::{Timer, Timers};

/// The state with the handshake sub-steps (the public [`SessionState`] hides them).
#[derive(Debug, Clone)]
enum State {
    /// Created by `connect`, no link yet.
    Idle,
    /// Our link, handshake in progress.
    Connecting(ClientStep),
    /// Peer's link, handshake in progress (or waiting for `link_up` / `resolve_accept`).
    Accepting(ServerStep),
    /// Messages flow.
    Open,
    /// No link, nothing to send; a reconnect happens when there is (client) or when the peer
    /// comes back (server).
    Standby,
    /// No link; we want one (driver dials with backoff).
    Faulted,
    /// No link; the peer won a connect race and will connect to us. After `wait_retry` we dial
    /// anyway.
    Wait,
    /// Gone.
    Closed,
}

/// Everything that lives only as long as one link.
#[derive(Debug)]
struct Link {
    /// Small frames and handshake bytes, in order, not yet handed to `poll_transmit`.
    ctrl: BytesMut,
    decoder: FrameDecoder,
    /// Messages received since our last ACK.
    unacked_in: u32,
    /// The ACK may not wait any longer (deferred-ack timer fired).
    ack_due: bool,
    last_rx: Instant,
}

/// See the module documentation for the driving contract.
pub struct Session {
    config: Arc<SessionConfig>,
    policy: Policy,
    state: State,
    link: Option<Link>,
    /// Dialed address, or the one the peer announced in its banner (IP taken from the socket if
    /// it sent a blank one).
    peer_addr: Option<EntityAddr>,
    peer_type: Option<EntityType>,
    /// The peer's entity number, from the last message it sent (-1 until then).
    peer_num: i64,
    /// Remote socket address of an accepted link.
    socket_peer: Option<std::net::SocketAddr>,
    /// Our address (the configured one, with a learned IP).
    my_addr: EntityAddr,
    /// Negotiated features (0 before the first open).
    features: u64,
    connect_seq: u32,
    /// Our global_seq for the current connect attempt.
    global_seq: u32,
    peer_global_seq: u32,
    /// Highest seq received and delivered.
    in_seq: u64,
    /// Highest seq assigned to an outgoing message.
    out_seq: u64,
    queue: OutQueue,
    sent: SentList,
    /// The session opened at least once (Ceph `once_ready`).
    once_ready: bool,
    /// A keepalive is wanted; the stamp is that of the request.
    keepalive: Option<(u32, u32)>,
    /// `close()` was called: send CLOSE after the queue, then end.
    closing: bool,
    events: VecDeque<SessionEvent>,
    timers: Timers,
    /// Origin of keepalive stamps (stamps are offsets from it).
    born: Instant,
    /// Received messages dropped as duplicates (seq <= in_seq), for tests and counters.
    duplicates_dropped: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("peer_addr", &self.peer_addr)
            .field("peer_type", &self.peer_type)
            .field("connect_seq", &self.connect_seq)
            .field("in_seq", &self.in_seq)
            .field("out_seq", &self.out_seq)
            .field("queued", &self.queue.len())
            .field("sent", &self.sent.len())
            .finish()
    }
}

impl Session {
    fn new(config: Arc<SessionConfig>, policy: Policy, state: State, now: Instant) -> Self {
        let my_addr = config.my_addr;
        Session {
            config,
            policy,
            state,
            link: None,
            peer_addr: None,
            peer_type: None,
            peer_num: -1,
            socket_peer: None,
            my_addr,
            features: 0,
            connect_seq: 0,
            global_seq: 0,
            peer_global_seq: 0,
            in_seq: 0,
            out_seq: 0,
            queue: OutQueue::default(),
            sent: SentList::default(),
            once_ready: false,
            keepalive: None,
            closing: false,
            events: VecDeque::new(),
            timers: Timers::default(),
            born: now,
            duplicates_dropped: 0,
        }
    }

    /// A session we initiate towards `peer_addr` (its nonce is verified against the banner).
    pub fn connect(
        config: Arc<SessionConfig>,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        policy: Policy,
        now: Instant,
    ) -> Self {
        let mut s = Session::new(config, policy, State::Idle, now);
        s.peer_addr = Some(peer_addr);
        s.peer_type = Some(peer_type);
        s
    }

    /// A session for a link a peer dialed; `socket_peer` is the remote socket address as seen.
    /// The policy is the messenger's default until the peer's connect names its type.
    pub fn accept(
        config: Arc<SessionConfig>,
        socket_peer: std::net::SocketAddr,
        now: Instant,
    ) -> Self {
        let policy = config.policies.get(EntityType(0)).clone();
        let mut s = Session::new(config, policy, State::Accepting(ServerStep::AwaitLink), now);
        s.socket_peer = Some(socket_peer);
        s
    }

    /// A session that takes over from a msgr2 attempt the peer answered with a msgr1 banner:
    /// `queued` (unnumbered) wait for the first msgr1 link. It starts faulted, asking the
    /// driver to close the current link and dial again (`CloseLink`, then `Faulted` with
    /// `reason`, `will_reconnect`).
    pub(crate) fn after_fallback(
        config: Arc<SessionConfig>,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        policy: Policy,
        queued: Vec<Message>,
        reason: SessionError,
        now: Instant,
    ) -> Self {
        let mut s = Session::connect(config, peer_addr, peer_type, policy, now);
        for m in queued {
            s.queue.push(m);
        }
        s.state = State::Faulted;
        s.events.push_back(SessionEvent::CloseLink);
        s.events.push_back(SessionEvent::Faulted {
            error: reason,
            will_reconnect: true,
        });
        s
    }

    /// A fresh link is established: (re)start the handshake (queues the banner etc.). On a
    /// session made by `accept` the first link is the peer's; on any other it is one we dialed.
    pub fn link_up(&mut self, now: Instant) {
        if self.link.is_some() {
            // A second link while one is up: the old one is dead to us.
            self.fault(
                SessionError::LinkFailed("replaced by a new link".into()),
                now,
                true,
            );
        }
        let server = matches!(self.state, State::Accepting(ServerStep::AwaitLink));
        if matches!(self.state, State::Closed) || (!server && self.peer_addr.is_none()) {
            // Nothing to talk about on this link.
            self.events.push_back(SessionEvent::CloseLink);
            return;
        }
        self.link = Some(Link {
            ctrl: BytesMut::new(),
            decoder: FrameDecoder::new(self.config.limits, true),
            unacked_in: 0,
            ack_due: false,
            last_rx: now,
        });
        self.timers.clear();
        self.timers
            .set(Timer::Handshake, now + self.config.handshake_timeout);
        if server {
            self.start_server_handshake();
        } else {
            self.start_client_handshake();
        }
    }

    /// The link failed (EOF, I/O error, QP error). Moves sent-but-unacked messages back to the
    /// front of the queue (lossless) or resets the session (lossy), and emits events. Ignored
    /// when the session has no link (e.g. it already closed it itself).
    pub fn link_down(&mut self, error: SessionError, now: Instant) {
        self.fault(error, now, false);
    }

    /// The next event for the driver (in order), if any; call after every input.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Every pending event, appended to `out` in order; into an empty `out` the whole queue
    /// is handed over without moving an event (see `ProtocolSession::poll_events`).
    pub fn poll_events(&mut self, out: &mut VecDeque<SessionEvent>) {
        events::hand_over(&mut self.events, out);
    }

    /// The next instant at which `handle_timeout` must be called (keepalive, handshake timeout,
    /// idle timeout, deferred ACK, end of a WAIT).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Queue a message (ordered by priority, FIFO within one priority). A client in standby
    /// wants a link again. On a closed session the message cannot go anywhere: it is handed
    /// back in a `Reset { error: Closed, undelivered: [msg] }` event, so nothing vanishes
    /// silently (use [`Session::try_send_message`] to get it back directly).
    pub fn send_message(&mut self, msg: Message) {
        if let Err(msg) = self.try_send_message(msg) {
            self.events.push_back(SessionEvent::Reset {
                error: SessionError::Closed,
                undelivered: vec![msg],
            });
        }
    }

    /// [`Session::send_message`], but a closed session returns the message.
    // The message comes back by value: no allocation on a path that only reports.
    #[allow(clippy::result_large_err)]
    pub fn try_send_message(&mut self, mut msg: Message) -> Result<(), Message> {
        if matches!(self.state, State::Closed) {
            return Err(msg);
        }
        // The seq is ours to assign when the message is first written.
        msg.seq = 0;
        self.queue.push(msg);
        self.wake_from_standby();
        Ok(())
    }

    /// Queue a KEEPALIVE2 stamped with `now`.
    pub fn send_keepalive(&mut self, now: Instant) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.keepalive = Some(self.stamp(now));
        self.wake_from_standby();
    }

    /// Drop the session now: nothing more is sent; emits `Reset` with undelivered messages.
    pub fn mark_down(&mut self) {
        if !matches!(self.state, State::Closed) {
            self.terminate(SessionError::MarkedDown, true);
        }
    }

    /// Send CLOSE after what is queued, then end (an open session); any other ends at once.
    pub fn close(&mut self) {
        match self.state {
            State::Open => self.closing = true,
            State::Closed => {}
            _ => self.terminate(SessionError::Closed, true),
        }
    }

    /// Accepting side: answer the peer's connect. `existing` is the session this messenger already
    /// has for the same peer address, if any (its queues move into `self` on `Replace`). Ignored
    /// unless this session emitted `AcceptRequest` and waits for the answer.
    pub fn resolve_accept(
        &mut self,
        decision: AcceptDecision,
        existing: Option<&mut Session>,
        now: Instant,
    ) {
        self.server_resolve(decision, existing, now);
    }

    /// The session's state, as Ceph names it.
    pub fn state(&self) -> SessionState {
        match self.state {
            State::Idle => SessionState::Idle,
            State::Connecting(_) => SessionState::Connecting,
            State::Accepting(_) => SessionState::Accepting,
            State::Open => SessionState::Open,
            State::Standby => SessionState::Standby,
            State::Faulted => SessionState::Faulted,
            State::Wait => SessionState::Wait,
            State::Closed => SessionState::Closed,
        }
    }

    /// The session wants a new link to the peer (lossless, not a server, after a fault or with
    /// something to send after standby). A `connect` session in `Idle` wants its first link too.
    pub fn wants_reconnect(&self) -> bool {
        matches!(self.state, State::Faulted | State::Idle) && self.link.is_none()
    }

    /// The peer's address (dialed, or learned in the handshake).
    pub fn peer_addr(&self) -> Option<EntityAddr> {
        self.peer_addr
    }

    /// The peer's entity type (dialed, or learned in the handshake).
    pub fn peer_type(&self) -> Option<EntityType> {
        self.peer_type
    }

    /// The peer's name: its type, and its number once a message from it arrived (-1 before).
    pub fn peer_name(&self) -> Option<EntityName> {
        self.peer_type.map(|t| EntityName::new(t, self.peer_num))
    }

    /// Messages queued or sent but not acknowledged.
    pub fn pending_messages(&self) -> usize {
        self.queue.len() + self.sent.len()
    }

    /// Negotiated feature bits (0 before the first open).
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The policy in force (the accepting side takes the one for the peer's type; a client takes
    /// `lossy` from the server's reply).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The session's connect_seq: links opened within this session (Ceph's `connect_seq`).
    pub fn connect_seq(&self) -> u32 {
        self.connect_seq
    }

    /// The peer's global_seq: from its last connect (accepting side) or connect reply.
    pub fn peer_global_seq(&self) -> u32 {
        self.peer_global_seq
    }

    /// Highest sequence number received from the peer.
    pub fn in_seq(&self) -> u64 {
        self.in_seq
    }

    /// Highest sequence number given to one of our messages.
    pub fn out_seq(&self) -> u64 {
        self.out_seq
    }

    /// Our address as this session knows it (configured, with a learned IP).
    pub fn my_addr(&self) -> EntityAddr {
        self.my_addr
    }

    /// The session has a link (handshaking or open).
    pub fn has_link(&self) -> bool {
        self.link.is_some()
    }

    /// While a message body is being received: the bytes the receive buffer must hold (from its
    /// start) to complete it; 0 otherwise. A driver may read that much in one go (the session
    /// works the same whatever the read sizes).
    pub fn input_wanted(&self) -> usize {
        match (&self.state, &self.link) {
            (State::Open, Some(link)) => link.decoder.body_len_wanted(),
            _ => 0,
        }
    }

    /// Received messages dropped because their seq was not above `in_seq` (replays the peer
    /// did not know we had).
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates_dropped
    }

    // ---- internals -------------------------------------------------------------------------

    /// Keepalive stamp for `now`: seconds and nanoseconds since the session was created.
    fn stamp(&self, now: Instant) -> (u32, u32) {
        let d = now.saturating_duration_since(self.born);
        (d.as_secs() as u32, d.subsec_nanos())
    }

    fn wake_from_standby(&mut self) {
        if matches!(self.state, State::Standby) && !self.policy.server {
            self.state = State::Faulted;
        }
    }
}

#[cfg(test)]
mod tests;
