//! Deterministic simulation of msgr1 sessions: a few endpoints, each a tiny in-memory messenger
//! (a table peer address -> session, accept resolution through `accept::decide`), connected by
//! in-memory links that deliver bytes in random chunk sizes and are cut at random points. Time
//! is fake (a base `Instant` plus offsets). Everything random comes from one seed.
//!
//! `SIM_SEED=n cargo test -p msgr-core --test sim` replays one seed (every scenario);
//! `SIM_SEEDS=n` sets how many seeds each scenario runs (default in the test functions).
//!
//! Checked after each run:
//! - lossless: every message received exactly once, per sender in seq order, and messages of
//!   one priority in send order; no session reset;
//! - lossy: every message is delivered or reported undelivered to its sender; none is delivered
//!   or reported twice; a message reported as never written (seq 0) was never delivered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use msgr_core::message::{Message, Priority};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::{accept, Session, SessionConfig, SessionError, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

/// What a run is about.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// Lossless peers, both (all) sides sending at random times.
    Lossless,
    /// Lossless peers that all start sending at t=0: simultaneous connects.
    Race,
    /// A lossy client sending to a lossy (stateless) server.
    Lossy,
    /// A lossless client and a stateful server (never dials, standby when idle), both sending;
    /// the server only on a session the client opened.
    ClientServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SessId {
    node: usize,
    idx: usize,
}

struct SessRec {
    s: Session,
    link: Option<usize>,
    /// When to dial, once the session wants a link.
    dial_at: Option<Instant>,
}

struct Node {
    addr: EntityAddr,
    config: Arc<SessionConfig>,
    /// Slab of sessions (None = dropped).
    sessions: Vec<Option<SessRec>>,
    /// The messenger's table: peer address -> session.
    by_peer: HashMap<EntityAddr, usize>,
}

/// One direction of a link: bytes written and not yet delivered, the receiver's buffer.
#[derive(Default)]
struct Pipe {
    in_flight: BytesMut,
    inbox: BytesMut,
}

struct Link {
    ends: [SessId; 2],
    pipes: [Pipe; 2],
    /// The side that closed it: its remaining bytes are still delivered, then the other side
    /// sees EOF.
    closed_by: Option<usize>,
}

/// A message's identity in the test: (sender node, tid). Tids grow per sender in send order.
type Key = (usize, u64);

struct Sim {
    rng: StdRng,
    now: Instant,
    start: Instant,
    scenario: Scenario,
    nodes: Vec<Node>,
    links: Vec<Option<Link>>,
    drop_prob: f64,
    /// Per (sender, receiver): sent tids with their priority, in send order.
    sent: BTreeMap<(usize, usize), Vec<(u64, u16)>>,
    /// Per (sender, receiver): received (tid, seq) in delivery order.
    received: BTreeMap<(usize, usize), Vec<(u64, u64)>>,
    /// Reported undelivered: key -> seq it had.
    reported: HashMap<Key, u64>,
    errors: Vec<String>,
    next_tid: Vec<u64>,
    total_sent: usize,
    cuts: u64,
    replaced: u64,
}

fn node_addr(i: usize) -> EntityAddr {
    EntityAddr::new(
        SocketAddr::from(([127, 0, 0, 1], 6800 + i as u16)),
        1000 + i as u32,
    )
}

fn node_of(addr: &EntityAddr) -> usize {
    (addr.port() - 6800) as usize
}

impl Sim {
    fn new(seed: u64, scenario: Scenario, n_nodes: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let drop_prob = [0.0, 0.002, 0.01, 0.03][rng.gen_range(0..4)];
        let nodes = (0..n_nodes)
            .map(|i| {
                let (kind, policies) = match scenario {
                    Scenario::Lossless | Scenario::Race => {
                        (EntityType::OSD, PolicySet::new(Policy::lossless_peer()))
                    }
                    Scenario::Lossy if i == 0 => {
                        (EntityType::CLIENT, PolicySet::new(Policy::lossy_client()))
                    }
                    Scenario::Lossy => {
                        (EntityType::OSD, PolicySet::new(Policy::stateless_server()))
                    }
                    Scenario::ClientServer if i == 0 => (
                        EntityType::CLIENT,
                        PolicySet::new(Policy::lossless_client()),
                    ),
                    Scenario::ClientServer => {
                        (EntityType::OSD, PolicySet::new(Policy::stateful_server()))
                    }
                };
                let mut c = SessionConfig::new(EntityName::new(kind, i as i64), node_addr(i));
                c.policies = policies;
                c.handshake_timeout = Duration::from_secs(2);
                c.wait_retry = Duration::from_millis(300);
                c.ack_delay = Duration::from_millis(rng.gen_range(0..3));
                c.ack_every = rng.gen_range(1..16);
                c.transmit_batch_bytes = 256 << 10;
                Node {
                    addr: node_addr(i),
                    config: Arc::new(c),
                    sessions: Vec::new(),
                    by_peer: HashMap::new(),
                }
            })
            .collect();
        let now = Instant::now();
        Sim {
            rng,
            now,
            start: now,
            scenario,
            nodes,
            links: Vec::new(),
            drop_prob,
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            reported: HashMap::new(),
            errors: Vec::new(),
            next_tid: vec![1; n_nodes],
            total_sent: 0,
            cuts: 0,
            replaced: 0,
        }
    }

    fn sess(&mut self, id: SessId) -> Option<&mut SessRec> {
        self.nodes[id.node].sessions.get_mut(id.idx)?.as_mut()
    }

    fn add_session(&mut self, node: usize, s: Session) -> usize {
        let n = &mut self.nodes[node];
        n.sessions.push(Some(SessRec {
            s,
            link: None,
            dial_at: None,
        }));
        n.sessions.len() - 1
    }

    /// The application sends `msg` to node `to`. A server has no way to reach a peer that has
    /// no session with it: the message comes back (the caller retries later).
    #[allow(clippy::result_large_err)] // the message itself comes back, as the session API does
    fn app_send(&mut self, from: usize, to: usize, msg: Message) -> Result<(), Message> {
        let peer = node_addr(to);
        let idx = match self.nodes[from].by_peer.get(&peer) {
            Some(&i) => i,
            None if self.nodes[from]
                .config
                .policies
                .get(EntityType::CLIENT)
                .server =>
            {
                return Err(msg);
            }
            None => {
                let n = &self.nodes[from];
                let policy = n.config.policies.get(EntityType::OSD).clone();
                let s = Session::connect(n.config.clone(), peer, EntityType::OSD, policy, self.now);
                let i = self.add_session(from, s);
                self.nodes[from].by_peer.insert(peer, i);
                i
            }
        };
        let rec = self
            .sess(SessId { node: from, idx })
            .expect("registered session");
        if let Err(m) = rec.s.try_send_message(msg) {
            // Closed under us (its Reset not handled yet): undeliverable, reported now.
            self.reported.insert((from, m.tid), m.seq);
        }
        Ok(())
    }

    fn random_message(&mut self, from: usize, to: usize) -> Message {
        let tid = self.next_tid[from];
        self.next_tid[from] += 1;
        let prio = [64u16, 127, 127, 196, 255][self.rng.gen_range(0..5)];
        let len = match self.rng.gen_range(0..1000) {
            0..=2 => self.rng.gen_range(1 << 20..=4 << 20),
            3..=40 => self.rng.gen_range(4096..65536),
            _ => self.rng.gen_range(0..512),
        };
        let mut front = vec![0u8; len.min(64)];
        self.rng.fill(&mut front[..]);
        let mut m = Message::new(100, front)
            .with_priority(Priority(prio))
            .with_tid(tid);
        if len > 64 {
            m = m.with_data(Bytes::from(vec![(tid % 251) as u8; len - 64]));
        }
        self.sent.entry((from, to)).or_default().push((tid, prio));
        self.total_sent += 1;
        m
    }

    /// Open a link from session `id` to its peer node: a fresh accepting session there.
    fn dial(&mut self, id: SessId) {
        let Some(peer) = self.sess(id).and_then(|r| r.s.peer_addr()) else {
            return;
        };
        let to = node_of(&peer);
        let socket_peer = SocketAddr::from(([127, 0, 0, 1], 40000 + id.node as u16));
        let acc = Session::accept(self.nodes[to].config.clone(), socket_peer, self.now);
        let aidx = self.add_session(to, acc);
        let lid = self.links.len();
        let far = SessId {
            node: to,
            idx: aidx,
        };
        self.links.push(Some(Link {
            ends: [id, far],
            pipes: Default::default(),
            closed_by: None,
        }));
        let now = self.now;
        for end in [id, far] {
            let r = self.sess(end).unwrap();
            r.link = Some(lid);
            r.dial_at = None;
            r.s.link_up(now);
        }
    }

    /// The link failed under both ends (a cut): both see an error.
    fn cut(&mut self, lid: usize, why: &str) {
        let Some(link) = self.links[lid].take() else {
            return;
        };
        let now = self.now;
        for end in link.ends {
            if let Some(r) = self.sess(end) {
                if r.link == Some(lid) {
                    r.link = None;
                    r.s.link_down(SessionError::LinkFailed(why.into()), now);
                }
            }
        }
    }

    /// Session `id` closed its link: deliver what it wrote, then EOF to the other side.
    fn close_link_from(&mut self, id: SessId) {
        let Some(lid) = self.sess(id).and_then(|r| r.link.take()) else {
            return;
        };
        if let Some(link) = self.links[lid].as_mut() {
            let side = if link.ends[0] == id { 0 } else { 1 };
            link.closed_by = Some(side);
            // Nothing more reaches the side that closed.
            link.pipes[1 - side] = Pipe::default();
        }
    }

    /// Drain one session: transmit into its link, handle its events.
    fn drain(&mut self, id: SessId) {
        let now = self.now;
        let mut out = Vec::new();
        let Some(rec) = self.sess(id) else { return };
        while rec.s.poll_transmit(&mut out) > 0 {}
        let link = rec.link;
        let mut events = Vec::new();
        while let Some(e) = rec.s.poll_event() {
            events.push(e);
        }
        if let Some(lid) = link {
            if let Some(l) = self.links[lid].as_mut() {
                let side = if l.ends[0] == id { 0 } else { 1 };
                if l.closed_by.is_none() {
                    for c in &out {
                        l.pipes[side].in_flight.extend_from_slice(c);
                    }
                }
            }
        }
        for e in events {
            self.on_event(id, e, now);
        }
        let backoff = Duration::from_millis(self.rng.gen_range(0..40));
        if let Some(rec) = self.sess(id) {
            if rec.s.wants_reconnect() && rec.link.is_none() && rec.dial_at.is_none() {
                rec.dial_at = Some(now + backoff);
            }
        }
    }

    fn on_event(&mut self, id: SessId, e: SessionEvent, now: Instant) {
        if std::env::var("SIM_TRACE").is_ok() {
            let t = now.duration_since(self.start).as_millis();
            match &e {
                SessionEvent::Message(m) => eprintln!("{t} {id:?} msg tid {} seq {}", m.tid, m.seq),
                SessionEvent::Reset { error, undelivered } => eprintln!(
                    "{t} {id:?} reset {error}: {:?}",
                    undelivered
                        .iter()
                        .map(|m| (m.tid, m.seq))
                        .collect::<Vec<_>>()
                ),
                other => eprintln!("{t} {id:?} {other:?}"),
            }
        }
        match e {
            SessionEvent::Message(m) => {
                let from = m.src.num as usize;
                self.received
                    .entry((from, id.node))
                    .or_default()
                    .push((m.tid, m.seq));
                let want_len = self.message_len_check(&m);
                if let Err(err) = want_len {
                    self.errors.push(err);
                }
            }
            SessionEvent::AcceptRequest(req) => {
                let node = &mut self.nodes[id.node];
                let my = node.addr;
                let policy = node.config.policies.get(req.peer_type).clone();
                let ex_idx = node.by_peer.get(&req.peer_addr).copied();
                // Take the existing session out of the slab to borrow both at once.
                let mut existing = ex_idx.and_then(|i| node.sessions[i].take());
                let d = accept::decide(existing.as_ref().map(|r| &r.s), &req, &my, &policy);
                let rec = node.sessions[id.idx].as_mut().expect("accepting session");
                rec.s
                    .resolve_accept(d.clone(), existing.as_mut().map(|r| &mut r.s), now);
                if let (Some(i), Some(ex)) = (ex_idx, existing) {
                    node.sessions[i] = Some(ex);
                }
                if matches!(
                    d,
                    accept::AcceptDecision::New
                        | accept::AcceptDecision::Replace
                        | accept::AcceptDecision::ReplaceAfterPeerReset
                ) {
                    node.by_peer.insert(req.peer_addr, id.idx);
                }
                if let Some(i) = ex_idx {
                    self.drain(SessId {
                        node: id.node,
                        idx: i,
                    });
                }
                self.drain(id);
            }
            SessionEvent::CloseLink => self.close_link_from(id),
            SessionEvent::Replaced => {
                self.replaced += 1;
                self.nodes[id.node].sessions[id.idx] = None;
            }
            SessionEvent::Reset { error, undelivered } => {
                let registered = self.nodes[id.node].by_peer.values().any(|&i| i == id.idx);
                if self.scenario != Scenario::Lossy && (registered || !undelivered.is_empty()) {
                    self.errors.push(format!(
                        "lossless session reset: {error} ({} undelivered)",
                        undelivered.len()
                    ));
                }
                for m in undelivered {
                    if self.reported.insert((id.node, m.tid), m.seq).is_some() {
                        self.errors.push(format!("tid {} reported twice", m.tid));
                    }
                }
                let node = &mut self.nodes[id.node];
                node.by_peer.retain(|_, i| *i != id.idx);
                if let Some(rec) = node.sessions[id.idx].take() {
                    if let Some(lid) = rec.link {
                        // It emitted CloseLink first if it had a link; make sure.
                        if let Some(l) = self.links[lid].as_mut() {
                            if l.closed_by.is_none() {
                                let side = if l.ends[0] == id { 0 } else { 1 };
                                l.closed_by = Some(side);
                            }
                        }
                    }
                }
            }
            SessionEvent::RemoteReset { undelivered } => {
                if self.scenario != Scenario::Lossy {
                    self.errors.push(format!(
                        "remote reset in a lossless run ({} dropped)",
                        undelivered.len()
                    ));
                }
                for m in undelivered {
                    self.reported.insert((id.node, m.tid), m.seq);
                }
            }
            SessionEvent::Connected { .. }
            | SessionEvent::Accepted { .. }
            | SessionEvent::KeepaliveAck { .. }
            | SessionEvent::Faulted { .. }
            | SessionEvent::LearnedAddr(_) => {}
        }
    }

    /// Payload integrity: data bytes are all `tid % 251`.
    fn message_len_check(&self, m: &Message) -> Result<(), String> {
        let b = (m.tid % 251) as u8;
        if m.data.iter().any(|&x| x != b) {
            return Err(format!("tid {} data corrupted", m.tid));
        }
        Ok(())
    }

    /// Move a random chunk along every link direction; cut links at random.
    fn move_bytes(&mut self) {
        let now = self.now;
        for lid in 0..self.links.len() {
            if self.links[lid].is_none() {
                continue;
            }
            if self.drop_prob > 0.0 && self.rng.gen_bool(self.drop_prob) {
                if std::env::var("SIM_TRACE").is_ok() {
                    eprintln!("cut link {lid}");
                }
                self.cuts += 1;
                let ends = self.links[lid].as_ref().map(|l| l.ends);
                self.cut(lid, "simulated cut");
                for end in ends.into_iter().flatten() {
                    self.drain(end);
                }
                continue;
            }
            for side in 0..2 {
                let chunk_max = match self.rng.gen_range(0..10) {
                    0 => 1,
                    1..=3 => 64,
                    4..=7 => 4096,
                    _ => 512 << 10,
                };
                let Some(link) = self.links[lid].as_mut() else {
                    break;
                };
                let pipe = &mut link.pipes[side];
                let n = pipe.in_flight.len().min(self.rng.gen_range(1..=chunk_max));
                if n == 0 {
                    if link.closed_by == Some(side) {
                        // All written bytes delivered: the other side sees EOF.
                        let other = link.ends[1 - side];
                        self.links[lid] = None;
                        if let Some(r) = self.sess(other) {
                            if r.link == Some(lid) {
                                r.link = None;
                                r.s.link_down(SessionError::LinkFailed("EOF".into()), now);
                            }
                        }
                        self.drain(other);
                        break;
                    }
                    continue;
                }
                let chunk = pipe.in_flight.split_to(n);
                pipe.inbox.extend_from_slice(&chunk);
                let to = link.ends[1 - side];
                let mut inbox = std::mem::take(&mut pipe.inbox);
                let mut failed = false;
                if let Some(r) = self.sess(to) {
                    if r.link == Some(lid) {
                        failed = r.s.handle_input(&mut inbox, now).is_err();
                    }
                }
                if let Some(link) = self.links[lid].as_mut() {
                    link.pipes[side].inbox = inbox;
                }
                let _ = failed;
                self.drain(to);
            }
        }
    }

    fn all_ids(&self) -> Vec<SessId> {
        let mut v = Vec::new();
        for (node, n) in self.nodes.iter().enumerate() {
            for (idx, s) in n.sessions.iter().enumerate() {
                if s.is_some() {
                    v.push(SessId { node, idx });
                }
            }
        }
        v
    }

    fn tick(&mut self) {
        let now = self.now;
        for id in self.all_ids() {
            let Some(rec) = self.sess(id) else { continue };
            if rec.s.poll_timeout().is_some_and(|t| t <= now) {
                rec.s.handle_timeout(now);
            }
            if rec.dial_at.is_some_and(|t| t <= now) {
                rec.dial_at = None;
                if rec.s.wants_reconnect() && rec.link.is_none() {
                    self.dial(id);
                }
            }
            self.drain(id);
        }
        self.move_bytes();
        self.now += Duration::from_millis(1);
    }

    fn delivered_count(&self) -> usize {
        self.received.values().map(Vec::len).sum()
    }

    fn settled(&self) -> bool {
        match self.scenario {
            Scenario::Lossless | Scenario::Race | Scenario::ClientServer => {
                self.delivered_count() >= self.total_sent
            }
            Scenario::Lossy => {
                let delivered: HashSet<Key> = self
                    .received
                    .iter()
                    .flat_map(|(&(from, _), v)| v.iter().map(move |&(t, _)| (from, t)))
                    .collect();
                let reported: HashSet<Key> = self.reported.keys().copied().collect();
                delivered.union(&reported).count() >= self.total_sent
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        for (&(from, to), sent) in &self.sent {
            let got = self.received.get(&(from, to)).cloned().unwrap_or_default();
            let mut seen = HashSet::new();
            for (tid, _) in &got {
                if !seen.insert(*tid) {
                    return Err(format!("{from}->{to}: tid {tid} delivered twice"));
                }
            }
            // Per sender, seqs strictly increase (one session numbering per pair).
            if self.scenario != Scenario::Lossy && got.windows(2).any(|w| w[0].1 >= w[1].1) {
                return Err(format!("{from}->{to}: seq order broken: {got:?}"));
            }
            // Within one priority, send order.
            let prio: HashMap<u64, u16> = sent.iter().copied().collect();
            let mut last: HashMap<u16, u64> = HashMap::new();
            for (tid, _) in &got {
                let p = prio[tid];
                if last.get(&p).is_some_and(|&l| l > *tid) {
                    return Err(format!(
                        "{from}->{to}: priority {p} order broken at tid {tid}"
                    ));
                }
                last.insert(p, *tid);
            }
            match self.scenario {
                Scenario::Lossless | Scenario::Race | Scenario::ClientServer => {
                    if got.len() != sent.len() {
                        let missing: Vec<u64> = sent
                            .iter()
                            .map(|s| s.0)
                            .filter(|t| !seen.contains(t))
                            .collect();
                        return Err(format!(
                            "{from}->{to}: {} of {} delivered, missing {missing:?}",
                            got.len(),
                            sent.len()
                        ));
                    }
                }
                Scenario::Lossy => {
                    for (tid, _) in sent {
                        let delivered = seen.contains(tid);
                        match (delivered, self.reported.get(&(from, *tid))) {
                            (false, None) => {
                                return Err(format!("{from}->{to}: tid {tid} lost without report"))
                            }
                            (true, Some(0)) => {
                                return Err(format!(
                                "{from}->{to}: tid {tid} delivered but reported as never written"
                            ))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn run(seed: u64, scenario: Scenario) -> Result<String, String> {
    let n_nodes = match scenario {
        Scenario::Lossy | Scenario::ClientServer => 2,
        _ => 2 + (seed % 2) as usize,
    };
    let mut sim = Sim::new(seed, scenario, n_nodes);
    let per_pair = sim.rng.gen_range(5..40);
    // Send plan: (time offset ms, from, to).
    let mut plan: Vec<(u64, usize, usize)> = Vec::new();
    for from in 0..n_nodes {
        for to in 0..n_nodes {
            if from == to || (scenario == Scenario::Lossy && from != 0) {
                continue;
            }
            for k in 0..per_pair {
                let at = match scenario {
                    Scenario::Race if k == 0 => 0,
                    _ => sim.rng.gen_range(0..1000),
                };
                plan.push((at, from, to));
            }
        }
    }
    plan.sort_by_key(|p| p.0);
    let start = sim.now;
    let mut next = 0;
    let max_ticks = 40_000;
    let mut quiet_after = None;
    let mut held: Vec<(usize, usize, Message)> = Vec::new();
    for t in 0..max_ticks {
        // A server's messages wait (in the application, in order) until the client has opened
        // a session.
        for (from, to, m) in std::mem::take(&mut held) {
            let earlier_held = held.iter().any(|h| (h.0, h.1) == (from, to));
            if earlier_held {
                held.push((from, to, m));
            } else if let Err(m) = sim.app_send(from, to, m) {
                held.push((from, to, m));
            }
        }
        while next < plan.len() && start + Duration::from_millis(plan[next].0) <= sim.now {
            let (_, from, to) = plan[next];
            let m = sim.random_message(from, to);
            if held.iter().any(|h| (h.0, h.1) == (from, to)) {
                held.push((from, to, m));
            } else if let Err(m) = sim.app_send(from, to, m) {
                held.push((from, to, m));
            }
            next += 1;
        }
        sim.tick();
        if next == plan.len() && held.is_empty() && quiet_after.is_none() && sim.settled() {
            // Keep going a little without cuts: late duplicates would show up here.
            sim.drop_prob = 0.0;
            quiet_after = Some(t + 300);
        }
        if quiet_after.is_some_and(|q| t >= q) {
            break;
        }
        if !sim.errors.is_empty() {
            break;
        }
    }
    sim.check()?;
    if quiet_after.is_none() {
        return Err(format!(
            "did not settle within {max_ticks} ticks: {} of {} delivered, {} reported",
            sim.delivered_count(),
            sim.total_sent,
            sim.reported.len()
        ));
    }
    if scenario != Scenario::Lossy {
        // Everything delivered and the quiet period let the ACKs through: nothing may still
        // wait for replay.
        for id in sim.all_ids() {
            let pending = sim.sess(id).map_or(0, |r| r.s.pending_messages());
            if pending != 0 {
                return Err(format!(
                    "{id:?} still holds {pending} unacknowledged messages"
                ));
            }
        }
    }
    Ok(format!(
        "{} msgs, {} cuts, {} replaced",
        sim.total_sent, sim.cuts, sim.replaced
    ))
}

/// Run `count` seeds from `first` (or the one in SIM_SEED), printing the seed of a failure.
fn run_seeds(scenario: Scenario, first: u64, count: u64) {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(count);
            (first..first + n).collect()
        }
    };
    let mut stats = (0u64, 0u64);
    for seed in seeds {
        let res = std::panic::catch_unwind(|| run(seed, scenario));
        match res {
            Ok(Ok(summary)) => {
                stats.0 += 1;
                if std::env::var("SIM_SEED").is_ok() {
                    eprintln!("seed {seed}: {summary}");
                }
            }
            Ok(Err(e)) => panic!(
                "{scenario:?} seed {seed} failed: {e}\nreplay: SIM_SEED={seed} cargo test -p msgr-core --test sim"
            ),
            Err(_) => panic!(
                "{scenario:?} seed {seed} panicked (see above)\nreplay: SIM_SEED={seed} cargo test -p msgr-core --test sim"
            ),
        }
        stats.1 += 1;
    }
    assert_eq!(stats.0, stats.1);
}

#[test]
fn lossless_random_cuts() {
    run_seeds(Scenario::Lossless, 1, 150);
}

#[test]
fn lossless_simultaneous_connects() {
    run_seeds(Scenario::Race, 10_001, 100);
}

#[test]
fn lossless_client_and_stateful_server() {
    run_seeds(Scenario::ClientServer, 30_001, 100);
}

#[test]
fn lossy_reports_every_undelivered_message() {
    run_seeds(Scenario::Lossy, 20_001, 100);
}
