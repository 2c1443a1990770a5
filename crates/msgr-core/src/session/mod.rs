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
//!    order, suited to a vectored write), [`Session::poll_event`] (connected, message, reset, ...),
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
//! `queue` (out queue and sent list), `accept` (how to answer a connect), `timers`, `config`.

pub mod accept;
mod config;
mod handshake;
mod queue;
mod timers;

pub use accept::{AcceptDecision, ConnectRequest, ExistingView};
pub use config::{
    proto, protocol_version, Authorizer, GlobalSeq, NoneAuthorizer, SessionConfig, CEPH_AUTH_NONE,
};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;
use crate::policy::Policy;
use crate::wire::features::{
    has_feature, CEPH_FEATUREMASK_MSGR_KEEPALIVE2, CEPH_FEATUREMASK_MSG_AUTH,
};
use crate::wire::frame::{self, Frame, FrameDecoder};
use crate::wire::{EntityAddr, EntityName, EntityType, WireError};

use handshake::{ClientStep, ServerStep};
use queue::{OutQueue, SentList};
use timers::{Timer, Timers};

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
    /// The peer broke a handshake rule (what it did is in the text).
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    /// The accept hook refused the peer.
    #[error("connection from {0} refused by the accept hook")]
    Refused(String),
    /// The session was closed locally with [`Session::close`].
    #[error("session closed locally")]
    Closed,
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
    /// The peer acknowledged our KEEPALIVE2 (stamp echoed). `rtt` is the time since we sent the
    /// keepalive carrying that stamp (None if the stamp is not one of ours).
    KeepaliveAck {
        stamp: (u32, u32),
        rtt: Option<Duration>,
    },
    /// The link failed. `will_reconnect`: a lossless client will want a new link (see
    /// [`Session::wants_reconnect`]); otherwise it waits for the peer or ends.
    Faulted {
        error: SessionError,
        will_reconnect: bool,
    },
    /// The session is gone (lossy fault, mark_down, close, refused). Messages never sent or never
    /// acknowledged are handed back so the owner can report them.
    Reset {
        error: SessionError,
        undelivered: Vec<Message>,
    },
    /// The peer lost its session state (RESETSESSION, or resetcheck found connect_seq 0): our
    /// side's queues were reset too; `undelivered` are the messages dropped with them.
    RemoteReset { undelivered: Vec<Message> },
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

    /// Consume received bytes. Complete frames are taken out of `buf`; a partial frame stays.
    /// An error means the link must be closed (the session already faulted itself and emitted
    /// [`SessionEvent::CloseLink`]).
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            // Bytes of a link we gave up: nobody reads them.
            buf.clear();
            return Ok(());
        };
        link.last_rx = now;
        loop {
            let step = match &self.state {
                State::Connecting(_) => self.client_input(buf, now),
                State::Accepting(_) => self.server_input(buf, now),
                State::Open => self.open_input(buf, now),
                _ => {
                    buf.clear();
                    Ok(false)
                }
            };
            match step {
                Ok(true) if self.link.is_some() => continue,
                Ok(_) => return Ok(()),
                Err(e) => {
                    self.fault(e.clone(), now, true);
                    return Err(e);
                }
            }
        }
    }

    /// Append the chunks to write, in order. Returns the number of chunks appended; call again
    /// until it returns 0 (one call hands out at most `transmit_batch_bytes` of payload).
    pub fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let before = out.len();
        let open = matches!(self.state, State::Open);
        let Some(link) = self.link.as_mut() else {
            return 0;
        };
        if open {
            if let Some((sec, nsec)) = self.keepalive.take() {
                if has_feature(self.features, CEPH_FEATUREMASK_MSGR_KEEPALIVE2) {
                    frame::encode_keepalive2(sec, nsec, &mut link.ctrl);
                } else {
                    frame::encode_keepalive(&mut link.ctrl);
                }
            }
        }
        if !link.ctrl.is_empty() {
            out.push(link.ctrl.split().freeze());
        }
        if !open {
            return out.len() - before;
        }
        let msg_auth = has_feature(self.features, CEPH_FEATUREMASK_MSG_AUTH);
        let mut budget = self.config.transmit_batch_bytes;
        let mut wrote_msgs = false;
        while budget > 0 {
            let Some(mut m) = self.queue.pop() else { break };
            if m.seq == 0 {
                self.out_seq += 1;
                m.seq = self.out_seq;
            }
            m.src = self.config.my_name;
            let crc_data = self.config.crc_data;
            frame::encode_message_crc(&m, m.seq, self.config.my_name, msg_auth, crc_data, out);
            budget = budget.saturating_sub(m.payload_len().max(1));
            self.sent.push(m);
            wrote_msgs = true;
        }
        if self.policy.lossy {
            self.sent.cap(self.config.lossy_unacked_limit);
        }
        // One ACK covers everything received so far. It rides along with our own messages, or
        // goes when enough piled up or the deferred-ack deadline passed.
        let link = self.link.as_mut().expect("checked above");
        if link.unacked_in > 0
            && (wrote_msgs
                || link.ack_due
                || link.unacked_in >= self.config.ack_every
                || self.config.ack_delay.is_zero())
        {
            let mut b = BytesMut::with_capacity(9);
            frame::encode_ack(self.in_seq, &mut b);
            out.push(b.freeze());
            link.unacked_in = 0;
            link.ack_due = false;
            self.timers.stop(Timer::Ack);
        }
        if self.closing && self.queue.is_empty() {
            let mut b = BytesMut::with_capacity(1);
            frame::encode_close(&mut b);
            out.push(b.freeze());
            self.terminate(SessionError::Closed, true);
        }
        out.len() - before
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next instant at which `handle_timeout` must be called (keepalive, handshake timeout,
    /// idle timeout, deferred ACK, end of a WAIT).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for t in self.timers.expired(now) {
            match t {
                Timer::Handshake => {
                    if matches!(self.state, State::Connecting(_) | State::Accepting(_)) {
                        let d = self.config.handshake_timeout;
                        self.fault(SessionError::HandshakeTimeout(d), now, true);
                    }
                }
                Timer::Idle => {
                    let (Some(idle), Some(link)) = (self.config.idle_timeout, self.link.as_ref())
                    else {
                        continue;
                    };
                    if !matches!(self.state, State::Open) {
                        continue;
                    }
                    let deadline = link.last_rx + idle;
                    if deadline <= now {
                        self.fault(SessionError::IdleTimeout(idle), now, true);
                    } else {
                        self.timers.set(Timer::Idle, deadline);
                    }
                }
                Timer::Keepalive => {
                    if let (State::Open, Some(every)) =
                        (&self.state, self.config.keepalive_interval)
                    {
                        self.keepalive = Some(self.stamp(now));
                        self.timers.set(Timer::Keepalive, now + every);
                    }
                }
                Timer::Ack => {
                    if let Some(link) = self.link.as_mut() {
                        link.ack_due = link.unacked_in > 0;
                    }
                }
                Timer::WaitRetry => {
                    if matches!(self.state, State::Wait) {
                        self.state = State::Faulted;
                        self.events.push_back(SessionEvent::Faulted {
                            error: SessionError::LinkFailed(format!(
                                "peer won the connect race but did not connect within {:?}",
                                self.config.wait_retry
                            )),
                            will_reconnect: true,
                        });
                    }
                }
            }
        }
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

    pub fn connect_seq(&self) -> u32 {
        self.connect_seq
    }

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

    /// Open-state input: one frame per call. Returns whether a frame was consumed.
    fn open_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<bool, SessionError> {
        let link = self.link.as_mut().expect("open implies a link");
        let Some(f) = link.decoder.decode(buf)? else {
            return Ok(false);
        };
        match f {
            Frame::Msg(m) => {
                if m.seq <= self.in_seq {
                    // A replay of something we already delivered: the peer did not see our ACK.
                    self.duplicates_dropped += 1;
                    return Ok(true);
                }
                self.in_seq = m.seq;
                self.peer_num = m.src.num;
                link.unacked_in += 1;
                if !self.config.ack_delay.is_zero() {
                    self.timers
                        .set_if_later_unset(Timer::Ack, now + self.config.ack_delay);
                }
                self.events.push_back(SessionEvent::Message(m));
            }
            Frame::Ack(seq) => {
                self.sent.trim(seq);
            }
            Frame::Keepalive => {}
            Frame::Keepalive2 { sec, nsec } => {
                frame::encode_keepalive2_ack(sec, nsec, &mut link.ctrl);
            }
            Frame::Keepalive2Ack { sec, nsec } => {
                let sent_at = self.born + Duration::new(sec.into(), nsec.min(999_999_999));
                let rtt = now.checked_duration_since(sent_at);
                self.events.push_back(SessionEvent::KeepaliveAck {
                    stamp: (sec, nsec),
                    rtt,
                });
            }
            Frame::Close => {
                self.terminate(SessionError::PeerClosed, true);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Common part of reaching the open state, both sides.
    fn become_open(&mut self, now: Instant) {
        let msg_auth = has_feature(self.features, CEPH_FEATUREMASK_MSG_AUTH);
        if let Some(link) = self.link.as_mut() {
            link.decoder.set_msg_auth(msg_auth);
            link.last_rx = now;
        }
        self.once_ready = true;
        self.state = State::Open;
        self.timers.stop(Timer::Handshake);
        if let Some(idle) = self.config.idle_timeout {
            self.timers.set(Timer::Idle, now + idle);
        }
        if let Some(every) = self.config.keepalive_interval {
            self.timers.set(Timer::Keepalive, now + every);
        }
    }

    /// Drop the current link after a failure (Ceph `fault`). `ours`: the session decided it (so
    /// the driver is told to close the link). Does nothing without a link.
    fn fault(&mut self, error: SessionError, now: Instant, ours: bool) {
        if self.link.is_none() {
            return;
        }
        let client_early = matches!(self.state, State::Connecting(ClientStep::Banner));
        if self.policy.lossy && !client_early {
            self.terminate(error, ours);
            return;
        }
        self.link = None;
        self.timers.clear();
        if ours {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.queue.requeue_front(self.sent.take().into_iter());
        let was = std::mem::replace(&mut self.state, State::Faulted);
        if !self.once_ready && self.queue.is_empty() && matches!(was, State::Accepting(_)) {
            // A half-accepted peer with nothing for it: forget it.
            self.state = State::Closed;
            self.events.push_back(SessionEvent::Reset {
                error,
                undelivered: Vec::new(),
            });
            return;
        }
        if self.policy.standby && self.queue.is_empty() && self.keepalive.is_none() {
            self.state = State::Standby;
        } else if matches!(was, State::Connecting(_)) {
            // Still trying to connect: try again (same connect_seq).
            self.state = State::Faulted;
        } else if self.policy.server {
            self.state = State::Standby;
        } else {
            // Lost an open (or accepted) link: reconnect as the connecting side.
            self.connect_seq += 1;
            self.state = State::Faulted;
        }
        let _ = now;
        self.events.push_back(SessionEvent::Faulted {
            error,
            will_reconnect: self.wants_reconnect(),
        });
    }

    /// End the session: report everything not acknowledged.
    fn terminate(&mut self, error: SessionError, ours: bool) {
        if self.link.take().is_some() && ours {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.timers.clear();
        self.state = State::Closed;
        self.closing = false;
        self.keepalive = None;
        let undelivered = self.take_undelivered();
        self.events
            .push_back(SessionEvent::Reset { error, undelivered });
    }

    /// Sent-but-unacked (seq order) then queued messages, emptying both.
    fn take_undelivered(&mut self) -> Vec<Message> {
        let mut v: Vec<Message> = self.sent.take().into();
        v.extend(self.queue.drain_all());
        v
    }

    /// The peer lost our shared session (Ceph `session_reset`): numbering restarts, our queues
    /// are dropped and reported. If no message was ever numbered on this session there is
    /// nothing the peer could have lost: the queue is kept and nobody is told (Ceph drops it).
    fn session_reset(&mut self) {
        self.connect_seq = 0;
        if self.in_seq == 0 && self.out_seq == 0 {
            return;
        }
        let undelivered = self.take_undelivered();
        self.in_seq = 0;
        self.out_seq = 0;
        self.connect_seq = 0;
        self.once_ready = false;
        if let Some(link) = self.link.as_mut() {
            link.unacked_in = 0;
        }
        self.events
            .push_back(SessionEvent::RemoteReset { undelivered });
    }

    fn ctrl(&mut self) -> &mut BytesMut {
        &mut self.link.as_mut().expect("handshake runs on a link").ctrl
    }

    fn put_u64(&mut self, v: u64) {
        self.ctrl().put_u64_le(v);
    }
}

#[cfg(test)]
mod tests;
