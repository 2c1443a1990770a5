//! A client and a server [`Session`] on one simulated link, driven by a script of bytes: the
//! session fuzzers' interpreter (shared by `tests/session_fuzz.rs`, the bounded CI run, and
//! `fuzz/fuzz_targets/session.rs`, the libFuzzer target, which includes this file by path).
//!
//! Script: byte 0 picks the policies, the limits and the ack delay; then one operation per
//! byte (`op % OPS`) with its arguments in the following bytes: deliver bytes in flight either
//! way, run both sides until quiet, inject arbitrary bytes into either side's input, corrupt a
//! byte in flight, advance time (timers fire), send messages, keepalives, mark down, close,
//! cut the link, reconnect, restart either side. After every step the invariants are checked
//! (see [`World::check`]); a broken one panics with what and where.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::{accept, AcceptDecision, Session, SessionConfig, SessionError};
use msgr_core::session::{SessionEvent, SessionState};
use msgr_core::wire::{DecodeLimits, EntityAddr, EntityName, EntityType};
use msgr_core::{Message, Priority};

/// Operations of a script (see the module docs); an op byte is taken modulo this.
pub const OPS: u8 = 15;
pub const OP_DELIVER_AB: u8 = 0;
pub const OP_DELIVER_BA: u8 = 1;
pub const OP_EXCHANGE: u8 = 2;
pub const OP_INJECT_A: u8 = 3;
pub const OP_INJECT_B: u8 = 4;
pub const OP_CORRUPT: u8 = 5;
pub const OP_TIME: u8 = 6;
pub const OP_SEND_A: u8 = 7;
pub const OP_SEND_B: u8 = 8;
pub const OP_KEEPALIVE: u8 = 9;
pub const OP_MARK_DOWN: u8 = 10;
pub const OP_CUT: u8 = 11;
pub const OP_RECONNECT: u8 = 12;
pub const OP_RESTART: u8 = 13;
pub const OP_CLOSE: u8 = 14;

/// The (client, server) policy pairs byte 0 chooses from.
const POLICIES: [(Policy, Policy); 5] = [
    (Policy::lossy_client(), Policy::stateless_server()),
    (Policy::lossless_client(), Policy::stateful_server()),
    (Policy::lossless_peer(), Policy::lossless_peer()),
    (Policy::lossless_peer_reuse(), Policy::lossless_peer_reuse()),
    (Policy::lossy_client(), Policy::stateful_server()),
];

/// Small limits so the limit paths are reachable (byte 0 bit 3 picks the defaults instead).
const SMALL: DecodeLimits = DecodeLimits {
    max_front: 4096,
    max_middle: 512,
    max_data: 16384,
    max_message: 20000,
};

/// The server's address: the monitor's in the golden captures, so captured bytes pass the
/// address checks when injected.
fn server_addr() -> EntityAddr {
    EntityAddr::new(SocketAddr::from(([127, 0, 0, 1], 16789)), 0)
}

/// One session and what its driver keeps for it.
struct Side {
    s: Session,
    inbox: BytesMut,
    /// Seq of the last message it delivered since its last reset (0: none).
    last_delivered: u64,
    last_in_seq: u64,
    last_out_seq: u64,
    /// The server accepted this session's connect (it is the registered one).
    registered: bool,
}

impl Side {
    fn new(s: Session) -> Self {
        Side {
            s,
            inbox: BytesMut::new(),
            last_delivered: 0,
            last_in_seq: 0,
            last_out_seq: 0,
            registered: false,
        }
    }
}

/// Which end of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Client,
    Server,
}

/// Both sessions, the bytes in flight, and what the applications sent and received.
pub struct World {
    now: Instant,
    limits: DecodeLimits,
    client_cfg: Arc<SessionConfig>,
    server_cfg: Arc<SessionConfig>,
    client_policy: Policy,
    a: Side,
    /// The server's session on the current link (accepting, or registered once resolved).
    b: Side,
    /// The server's registered session from an earlier link, if any (what `decide` sees).
    b_existing: Option<Side>,
    a2b: BytesMut,
    b2a: BytesMut,
    /// A side asked to close the link (CloseLink): cut it once its output is flushed.
    cut_pending: bool,
    /// Arbitrary bytes reached a session: messages may be forged, so only the checks that hold
    /// for any input apply from then on.
    tainted: bool,
    /// Something may legitimately lose messages: mark down, close, restart, a reset, or a
    /// message sent on a server session not (yet) registered. Until then a lossless pair
    /// loses nothing (checked at the end of a run, see [`World::finish`]).
    disturbed: bool,
    next_tid: u64,
    /// Payload length of every message each side's application sent, by tid.
    sent: [HashMap<u64, usize>; 2],
    /// What each side's messages may take on the wire, all of them once (see `check`); kept
    /// as they are sent, not summed per step (long scripts send thousands).
    sent_bound: [usize; 2],
    /// Tids each side delivered.
    delivered: [HashSet<u64>; 2],
    /// Output bytes of the current step, per side (bounded, see `check`).
    out_now: [usize; 2],
    pub stats: Stats,
}

/// What a run reached, so a bounded run can check that its scripts exercise the sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: u64,
    /// Handshakes finished (client `Connected`).
    pub opened: u64,
    /// Messages delivered (client and server).
    pub delivered: u64,
    /// Input that a session refused (protocol errors, limits).
    pub input_errors: u64,
    /// Sessions reset (lossy faults, mark-down, peer resets).
    pub resets: u64,
    /// Accepting sessions that took over a registered one.
    pub replaced: u64,
    /// Messages checked to be delivered by undisturbed lossless pairs at the end of a run.
    pub lossless_checked: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.steps += o.steps;
        self.opened += o.opened;
        self.delivered += o.delivered;
        self.input_errors += o.input_errors;
        self.resets += o.resets;
        self.replaced += o.replaced;
        self.lossless_checked += o.lossless_checked;
    }
}

fn idx(e: End) -> usize {
    match e {
        End::Client => 0,
        End::Server => 1,
    }
}

impl World {
    /// A client session towards a server that will accept it, no link yet; `cfg` is byte 0
    /// of a script.
    pub fn new(cfg: u8) -> World {
        let (client_policy, server_policy) = POLICIES[cfg as usize % POLICIES.len()].clone();
        let limits = if cfg & 8 != 0 {
            DecodeLimits::default()
        } else {
            SMALL
        };
        let make = |name: EntityName, addr: EntityAddr, policy: Policy| {
            let mut c = SessionConfig::new(name, addr);
            c.policies = PolicySet::new(policy);
            c.limits = limits;
            c.keepalive_interval = Some(Duration::from_secs(10));
            c.idle_timeout = Some(Duration::from_secs(60));
            c.ack_delay = if cfg & 16 != 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(1)
            };
            c.crc_data = cfg & 32 == 0;
            Arc::new(c)
        };
        let client_addr = EntityAddr::new(SocketAddr::from(([127, 0, 0, 1], 0)), 2593631742);
        let client_cfg = make(
            EntityName::new(EntityType::CLIENT, -1),
            client_addr,
            client_policy.clone(),
        );
        let server_cfg = make(
            EntityName::new(EntityType::MON, 0),
            server_addr(),
            server_policy,
        );
        let now = Instant::now();
        let a = Session::connect(
            client_cfg.clone(),
            server_addr(),
            EntityType::MON,
            client_policy.clone(),
            now,
        );
        let b = Session::accept(server_cfg.clone(), peer_socket(), now);
        World {
            now,
            limits,
            client_cfg,
            server_cfg,
            client_policy,
            a: Side::new(a),
            b: Side::new(b),
            b_existing: None,
            a2b: BytesMut::new(),
            b2a: BytesMut::new(),
            cut_pending: false,
            tainted: false,
            disturbed: false,
            next_tid: 1,
            sent: [HashMap::new(), HashMap::new()],
            sent_bound: [0, 0],
            delivered: [HashSet::new(), HashSet::new()],
            out_now: [0, 0],
            stats: Stats::default(),
        }
    }

    /// Run a whole script: byte 0 configures, the rest are operations.
    pub fn run(script: &[u8]) -> Stats {
        let Some((&cfg, mut ops)) = script.split_first() else {
            return Stats::default();
        };
        let mut w = World::new(cfg);
        while let Some((&op, rest)) = ops.split_first() {
            ops = w.step(op, rest);
        }
        // Whatever is left in flight, delivered.
        w.step(OP_EXCHANGE, &[]);
        w.finish();
        w.stats
    }

    /// Apply one operation (its arguments from `args`); returns the unused rest of `args`.
    pub fn step<'a>(&mut self, op: u8, args: &'a [u8]) -> &'a [u8] {
        let mut args = Args(args);
        self.out_now = [0, 0];
        match op % OPS {
            OP_DELIVER_AB => {
                let n = usize::from(args.byte()) * 16 + 1;
                self.deliver(End::Server, n);
            }
            OP_DELIVER_BA => {
                let n = usize::from(args.byte()) * 16 + 1;
                self.deliver(End::Client, n);
            }
            OP_EXCHANGE => self.exchange(),
            OP_INJECT_A | OP_INJECT_B => {
                let n = usize::from(args.u16());
                let bytes = args.take(n);
                let end = if op % OPS == OP_INJECT_A {
                    End::Client
                } else {
                    End::Server
                };
                self.tainted = true;
                self.input(end, bytes);
            }
            OP_CORRUPT => {
                let at = usize::from(args.u16());
                let xor = args.byte();
                let wire = if at & 1 == 0 {
                    &mut self.a2b
                } else {
                    &mut self.b2a
                };
                if !wire.is_empty() && xor != 0 {
                    let i = (at >> 1) % wire.len();
                    wire[i] ^= xor;
                    self.tainted = true;
                }
            }
            OP_TIME => {
                // 0 to about 11 minutes, mostly short steps.
                let b = u64::from(args.byte());
                self.now += Duration::from_millis(b * b * 10);
                let now = self.now;
                let existing = self.b_existing.as_mut().map(|e| &mut e.s);
                for s in [&mut self.a.s, &mut self.b.s].into_iter().chain(existing) {
                    if s.poll_timeout().is_some_and(|t| t <= now) {
                        s.handle_timeout(now);
                    }
                }
            }
            OP_SEND_A | OP_SEND_B => {
                let len = usize::from(args.byte()) * 13;
                let prio = args.byte();
                let end = if op % OPS == OP_SEND_A {
                    End::Client
                } else {
                    End::Server
                };
                self.send(end, len, prio);
            }
            OP_KEEPALIVE => {
                let now = self.now;
                self.side(args.end()).s.send_keepalive(now);
            }
            OP_MARK_DOWN => {
                self.disturbed = true;
                self.side(args.end()).s.mark_down()
            }
            OP_CLOSE => {
                self.disturbed = true;
                self.side(args.end()).s.close()
            }
            OP_CUT => self.cut("fuzz: link cut"),
            OP_RECONNECT => self.reconnect(),
            OP_RESTART => {
                self.disturbed = true;
                self.restart(args.end())
            }
            _ => unreachable!(),
        }
        self.settle();
        self.check();
        self.stats.steps += 1;
        args.0
    }

    fn side(&mut self, e: End) -> &mut Side {
        match e {
            End::Client => &mut self.a,
            End::Server => &mut self.b,
        }
    }

    /// A message from `end`'s application: the tid names it, the payload repeats the tid.
    fn send(&mut self, end: End, len: usize, prio: u8) {
        let tid = self.next_tid;
        self.next_tid += 1;
        let payload = payload(tid, len);
        let msg = Message::new(42, payload)
            .with_tid(tid)
            .with_priority(Priority(u16::from(prio % 4) * 64));
        // The server's application sends on the registered session (the one on the current
        // link once accepted, else the one from an earlier link); with none it has no
        // connection to send on.
        match (end, self.b.registered, self.b_existing.as_mut()) {
            (End::Server, false, Some(ex)) => ex.s.send_message(msg),
            (End::Server, false, None) => return,
            _ => self.side(end).s.send_message(msg),
        }
        self.sent[idx(end)].insert(tid, len);
        // Payload, header, footer and tag, generously.
        self.sent_bound[idx(end)] += len + 192;
    }

    /// Move up to `n` bytes in flight towards `to`.
    fn deliver(&mut self, to: End, n: usize) {
        let wire = match to {
            End::Server => &mut self.a2b,
            End::Client => &mut self.b2a,
        };
        let n = n.min(wire.len());
        if n == 0 {
            return;
        }
        let bytes = wire.split_to(n);
        self.input(to, &bytes);
    }

    /// `bytes` arrive at `to`'s session (from the link, or injected).
    fn input(&mut self, to: End, bytes: &[u8]) {
        let side = self.side(to);
        if !side.s.has_link() || bytes.is_empty() {
            return;
        }
        side.inbox.extend_from_slice(bytes);
        self.pump(to);
    }

    /// Hand `to`'s receive buffer to its session.
    fn pump(&mut self, to: End) {
        let now = self.now;
        let limits = self.limits;
        let side = self.side(to);
        if !side.s.has_link() || side.inbox.is_empty() {
            return;
        }
        match side.s.handle_input(&mut side.inbox, now) {
            Ok(()) => {
                // What stays buffered is at most one partial frame or handshake piece (an
                // accepting session stops reading once the connect is in, until it is
                // resolved: the driver holds what came after it).
                let bound = limits.max_frame_len(true) as usize + 8192;
                assert!(
                    side.inbox.len() <= bound || side.s.state() == SessionState::Accepting,
                    "{to:?}: {} bytes left in the receive buffer (bound {bound}), state {:?}",
                    side.inbox.len(),
                    side.s.state()
                );
            }
            Err(e) => {
                // An error closes the link (the driver then cuts it).
                assert!(
                    !side.s.has_link(),
                    "{to:?}: input error {e} left the link up"
                );
                side.inbox.clear();
                self.stats.input_errors += 1;
                self.cut_pending = true;
            }
        }
    }

    /// Move everything both ways until nothing moves.
    fn exchange(&mut self) {
        for _ in 0..64 {
            self.settle();
            if self.a2b.is_empty() && self.b2a.is_empty() {
                break;
            }
            let (ab, ba) = (self.a2b.len(), self.b2a.len());
            self.deliver(End::Server, ab);
            self.deliver(End::Client, ba);
        }
    }

    /// Drain both sides: transmit into the wire, handle events, resolve accepts, cut the link
    /// when a side closed it; until quiet.
    fn settle(&mut self) {
        for _ in 0..64 {
            let mut busy = false;
            busy |= self.transmit(End::Client);
            busy |= self.transmit(End::Server);
            busy |= self.events(End::Client);
            busy |= self.events(End::Server);
            busy |= self.existing_events();
            if self.cut_pending {
                self.cut("closed by a session");
                busy = true;
            }
            if !busy {
                return;
            }
        }
    }

    fn transmit(&mut self, end: End) -> bool {
        let mut out: Vec<Bytes> = Vec::new();
        let side = self.side(end);
        let linked = side.s.has_link();
        while side.s.poll_transmit(&mut out) > 0 {}
        let n: usize = out.iter().map(|c| c.len()).sum();
        if n == 0 {
            return false;
        }
        assert!(
            linked,
            "{end:?}: {n} bytes to send without a link (state {:?})",
            side.s.state()
        );
        self.out_now[idx(end)] += n;
        let wire = match end {
            End::Client => &mut self.a2b,
            End::Server => &mut self.b2a,
        };
        for c in out {
            wire.extend_from_slice(&c);
        }
        true
    }

    /// Handle `end`'s events; true if there were any.
    fn events(&mut self, end: End) -> bool {
        let mut any = false;
        while let Some(ev) = self.side(end).s.poll_event() {
            any = true;
            match ev {
                SessionEvent::AcceptRequest(req) => {
                    assert_eq!(end, End::Server, "a client got a connect request");
                    let my = self.b.s.my_addr();
                    let pol = self.b.s.policy().clone();
                    let existing = self.b_existing.as_mut().map(|e| &mut e.s);
                    let d = accept::decide(existing.as_deref(), &req, &my, &pol);
                    let registered = matches!(
                        d,
                        AcceptDecision::New
                            | AcceptDecision::Replace
                            | AcceptDecision::ReplaceAfterPeerReset
                    );
                    self.b.s.resolve_accept(d, existing, self.now);
                    // Bytes that came after the connect are read now.
                    self.pump(End::Server);
                    if registered {
                        if self.b_existing.is_some() {
                            self.stats.replaced += 1;
                        }
                        self.b.registered = true;
                        // The new session took over; the old one says Replaced (or is done).
                        if let Some(mut ex) = self.b_existing.take() {
                            while let Some(e) = ex.s.poll_event() {
                                if !matches!(e, SessionEvent::Replaced) {
                                    self.other_event(End::Server, e, true);
                                }
                            }
                        }
                    }
                }
                SessionEvent::CloseLink => self.cut_pending = true,
                SessionEvent::Replaced => {
                    assert_eq!(end, End::Server, "a client session was replaced");
                }
                e => self.other_event(end, e, false),
            }
        }
        any
    }

    fn existing_events(&mut self) -> bool {
        let Some(ex) = self.b_existing.as_mut() else {
            return false;
        };
        let mut evs = Vec::new();
        while let Some(e) = ex.s.poll_event() {
            evs.push(e);
        }
        let any = !evs.is_empty();
        for e in evs {
            match e {
                SessionEvent::Replaced => self.b_existing = None,
                // The registered session has no link: nothing to close.
                SessionEvent::CloseLink => {}
                e => self.other_event(End::Server, e, true),
            }
        }
        any
    }

    /// Messages and resets: the delivery invariants.
    fn other_event(&mut self, end: End, e: SessionEvent, existing: bool) {
        let tainted = self.tainted;
        match &e {
            SessionEvent::Message(_) => self.stats.delivered += 1,
            SessionEvent::Connected { .. } => self.stats.opened += 1,
            SessionEvent::Reset { .. } | SessionEvent::RemoteReset { .. } => {
                self.stats.resets += 1;
                // An accepting session that never got registered ends unseen by the
                // application, with nothing of its own.
                let temporary = end == End::Server && !existing && !self.b.registered;
                self.disturbed |= !temporary;
            }
            _ => {}
        }
        let side = if existing {
            match self.b_existing.as_mut() {
                Some(s) => s,
                None => return,
            }
        } else {
            self.side(end)
        };
        match e {
            SessionEvent::Message(m) => {
                assert!(
                    m.seq > side.last_delivered,
                    "{end:?}: delivered seq {} after seq {}",
                    m.seq,
                    side.last_delivered
                );
                side.last_delivered = m.seq;
                if !tainted {
                    let from = 1 - idx(end);
                    let len = self.sent[from].get(&m.tid).copied();
                    assert_eq!(
                        len,
                        Some(m.front.len()),
                        "{end:?}: delivered tid {} that the peer never sent (or not so)",
                        m.tid
                    );
                    assert!(is_payload(m.tid, &m.front), "payload of {}", m.tid);
                    assert!(
                        self.delivered[idx(end)].insert(m.tid),
                        "{end:?}: tid {} delivered twice",
                        m.tid
                    );
                }
            }
            SessionEvent::Reset { .. } | SessionEvent::RemoteReset { .. } => {
                side.last_delivered = 0;
                side.last_in_seq = 0;
                side.last_out_seq = 0;
            }
            _ => {}
        }
    }

    /// The link breaks: both sides see it fail; the server keeps its registered session.
    fn cut(&mut self, why: &str) {
        self.cut_pending = false;
        self.a2b.clear();
        self.b2a.clear();
        let now = self.now;
        for end in [End::Client, End::Server] {
            let side = self.side(end);
            side.inbox.clear();
            if side.s.has_link() {
                side.s.link_down(SessionError::LinkFailed(why.into()), now);
            }
        }
        self.server_new_link();
    }

    /// The server's session of the link just cut: kept as the registered one if it was
    /// accepted and is not closed; a fresh accepting session waits for the next link.
    fn server_new_link(&mut self) {
        // Events of the cut link first (faults, resets).
        self.events(End::Server);
        let fresh = Side::new(Session::accept(
            self.server_cfg.clone(),
            peer_socket(),
            self.now,
        ));
        let old = std::mem::replace(&mut self.b, fresh);
        if old.registered && old.s.state() != SessionState::Closed {
            self.b_existing = Some(old);
        }
    }

    /// A new link if the client wants one (or a first link).
    fn reconnect(&mut self) {
        if self.a.s.has_link() {
            return;
        }
        if self.a.s.state() == SessionState::Closed {
            // A closed client session is gone: the application makes a new one.
            self.restart(End::Client);
        }
        if !self.a.s.wants_reconnect() {
            return;
        }
        self.cut("replaced by a new link");
        self.a.s.link_up(self.now);
        self.b.s.link_up(self.now);
    }

    /// `end` restarts: a brand new session, nothing remembered.
    fn restart(&mut self, end: End) {
        match end {
            End::Client => {
                let s = Session::connect(
                    self.client_cfg.clone(),
                    server_addr(),
                    EntityType::MON,
                    self.client_policy.clone(),
                    self.now,
                );
                self.a = Side::new(s);
            }
            End::Server => {
                self.b = Side::new(Session::accept(
                    self.server_cfg.clone(),
                    peer_socket(),
                    self.now,
                ));
                self.b_existing = None;
            }
        }
        // The other side's link died with the restarted process.
        self.cut("peer restarted");
    }

    /// End of a run: a lossless client and server left undisturbed (see `disturbed`) lose
    /// nothing. Reconnect and exchange until both sides have nothing pending (the client pokes
    /// the server with a message when only the server has something to send: a server does
    /// not dial), then every message sent must have been delivered. (Lossless peers are left
    /// out: there the server side dials too, which this world does not model.)
    fn finish(&mut self) {
        let server = self.b.s.policy();
        if self.tainted || self.client_policy.lossy || server.lossy || !server.server {
            return;
        }
        for round in 0..64u8 {
            if self.disturbed {
                return;
            }
            let server_pending = self.b.s.pending_messages()
                + self
                    .b_existing
                    .as_ref()
                    .map_or(0, |e| e.s.pending_messages());
            if self.a.s.pending_messages() == 0 && server_pending == 0 {
                break;
            }
            if server_pending > 0 && self.a.s.pending_messages() == 0 {
                self.step(OP_SEND_A, &[1, 0]);
            }
            self.step(OP_RECONNECT, &[]);
            self.step(OP_EXCHANGE, &[]);
            // Deferred ACKs and handshake retries.
            self.step(OP_TIME, &[if round % 8 == 7 { 60 } else { 1 }]);
            self.step(OP_EXCHANGE, &[]);
        }
        if self.disturbed {
            return;
        }
        self.stats.lossless_checked += (self.sent[0].len() + self.sent[1].len()) as u64;
        for (from, to) in [(0, 1), (1, 0)] {
            let lost: Vec<u64> = self.sent[from]
                .keys()
                .filter(|t| !self.delivered[to].contains(t))
                .copied()
                .collect();
            assert!(
                lost.is_empty(),
                "lossless sessions lost {} of {} messages sent by {}: tids {:?} (client {:?}, \
                 server {:?})",
                lost.len(),
                self.sent[from].len(),
                if from == 0 {
                    "the client"
                } else {
                    "the server"
                },
                &lost[..lost.len().min(10)],
                self.a.s,
                self.b.s
            );
        }
    }

    /// The invariants after every step.
    fn check(&mut self) {
        let sent_total = self.sent_bound;
        for end in [End::Client, End::Server] {
            let i = idx(end);
            let side = self.side(end);
            // Sequence numbers only move forward (a reset starts them again).
            assert!(
                side.s.in_seq() >= side.last_in_seq,
                "{end:?}: in_seq went back from {} to {}",
                side.last_in_seq,
                side.s.in_seq()
            );
            assert!(
                side.s.out_seq() >= side.last_out_seq,
                "{end:?}: out_seq went back from {} to {}",
                side.last_out_seq,
                side.s.out_seq()
            );
            side.last_in_seq = side.s.in_seq();
            side.last_out_seq = side.s.out_seq();
            // Memory: nothing queued that the application did not send, no output beyond
            // what it sent plus the protocol's own frames.
            let pending = side.s.pending_messages();
            let sent = self.sent[i].len();
            assert!(
                pending <= sent,
                "{end:?}: {pending} messages pending, {sent} ever sent"
            );
            let out = self.out_now[i];
            assert!(
                out <= sent_total[i] + (64 << 10),
                "{end:?}: {out} bytes sent in one step for {sent} messages"
            );
        }
        // Nothing in flight on a link neither side has.
        if !self.a.s.has_link() && !self.b.s.has_link() {
            assert!(
                self.a2b.is_empty() && self.b2a.is_empty(),
                "bytes on a dead link"
            );
        }
    }
}

fn peer_socket() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 34650))
}

/// A message body: its tid, repeated.
fn payload(tid: u64, len: usize) -> Bytes {
    let mut v = tid.to_le_bytes().repeat(len / 8 + 1);
    v.truncate(len);
    v.into()
}

/// `front` is a body [`payload`] made for `tid`.
fn is_payload(tid: u64, front: &[u8]) -> bool {
    let pat = tid.to_le_bytes();
    front.chunks(8).all(|c| c == &pat[..c.len()])
}

/// Arguments of an operation, read from the script (zeros once it ends).
struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn end(&mut self) -> End {
        if self.byte() & 1 == 0 {
            End::Client
        } else {
            End::Server
        }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// Script builders, for seeds and the bounded run.
pub mod script {
    use super::*;

    /// `op` with raw argument bytes.
    pub fn op(out: &mut Vec<u8>, op: u8, args: &[u8]) {
        out.push(op);
        out.extend_from_slice(args);
    }

    /// Inject `bytes` into a side, in pieces of at most 64 KiB.
    pub fn inject(out: &mut Vec<u8>, server: bool, bytes: &[u8]) {
        for piece in bytes.chunks(u16::MAX as usize) {
            out.push(if server { OP_INJECT_B } else { OP_INJECT_A });
            out.extend_from_slice(&(piece.len() as u16).to_le_bytes());
            out.extend_from_slice(piece);
        }
    }
}
