//! Deterministic simulation of whole nodes: the real node driver (`msgr_node::Node`, its
//! workers, timers, dial / accept / reconnect, dispatch) over `mem` links, on one thread, in
//! virtual time. Everything random comes from one seed; a seed replays exactly.
//!
//! Each run: 2 or 3 nodes (1 or 2 workers each, fixed nonces and seeds, `threads = false`, one
//! shared `VirtualClock`) on a simulated `MemNetwork` (seeded delays, drops that kill links).
//! A plan drawn from the seed sends messages at random times and injects faults: link kills
//! (`Node::inject_failure`, network kills), partitions, node restarts (shutdown, then a new
//! `Node` at the same address with a new or the same nonce) and `mark_down`. The loop steps
//! every node until none has work, then moves the clock to the earliest deadline (node
//! timers, network deliveries, the plan).
//!
//! Checked after each run, from what a recording dispatcher saw:
//! - every message delivered at most once, to the node it was sent to, intact;
//! - per sender and receiver (instances) and priority, in send order; for lossless policies
//!   also in sequence order (which restarts only after a remote reset);
//! - every message delivered or reported to its sender (reset, remote reset), none reported
//!   twice, none reported as never sent (seq 0) and delivered;
//! - lossless policies without restarts or mark-downs (`Lossless`, `Race`, `ClientServer`):
//!   no session reset, and nothing left unacknowledged at the end; messages come back only
//!   through a remote reset, which msgr1 (as Ceph) reports when a handshake's READY was lost
//!   to a link failure (the peer then reconnects with connect_seq 0: a "peer reset").
//!
//! `SIM_SEED=n cargo test -p msgr-mem --test sim` replays seed n in every scenario (twice,
//! checking the two runs are identical); `SIM_SEEDS=n` (or `MSGR_SIM_SEEDS`) sets how many
//! seeds each scenario runs; `SIM_REPLAY=1` runs every seed twice and compares;
//! `SIM_VERBOSE=1` prints what each seed did;
//! `SIM_TRACE=1` prints what the dispatchers see, `RUST_LOG=debug` the driver's own logs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::{Message, Priority};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::SessionError;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_mem::{run_until_idle, MemNetwork, MemTransport, SimConfig};
use msgr_node::{Clock, Node, NodeConfig, VirtualClock};

/// What a run is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// Lossless peers sending to each other at random times, links failing under them.
    Lossless,
    /// Lossless peers that all send at t=0: simultaneous connects.
    Race,
    /// A lossless client and a stateful server (which answers on the client's connection).
    ClientServer,
    /// A lossy client sending to a stateless server.
    Lossy,
    /// Lossless peers, one or two of which restart (new or same nonce).
    Restart,
    /// Lossless peers that mark each other down.
    MarkDown,
}

impl Scenario {
    /// Lossless policies and no restarts or mark-downs: no session may be reset here. (The peer
    /// may still look reset: msgr1 takes a reconnect with connect_seq 0 to a session that sent
    /// READY as a peer reset, as Ceph does, so a handshake reply lost to a link failure drops
    /// the queue of that session, reported as a remote reset.)
    fn lossless(self) -> bool {
        matches!(
            self,
            Scenario::Lossless | Scenario::Race | Scenario::ClientServer
        )
    }
    fn test_name(self) -> &'static str {
        match self {
            Scenario::Lossless => "lossless_random_faults",
            Scenario::Race => "lossless_simultaneous_connects",
            Scenario::ClientServer => "lossless_client_and_stateful_server",
            Scenario::Lossy => "lossy_reports_every_undelivered_message",
            Scenario::Restart => "restarts_report_or_deliver_everything",
            Scenario::MarkDown => "mark_down_reports_or_delivers_everything",
        }
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.next() as usize % v.len()]
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// A node instance: its index and incarnation (restarts count up).
type Inst = (usize, u32);

/// How a message came back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    Reset,
    RemoteReset,
}

struct Delivery {
    tid: u64,
    seq: u64,
    from: Inst,
    to: Inst,
    /// Remote resets seen so far (sequence numbers restart after one).
    epoch: u64,
}

/// What the dispatchers of all nodes saw, in order.
struct Log {
    clock: Arc<VirtualClock>,
    start: Instant,
    trace: bool,
    deliveries: Vec<Delivery>,
    /// tid -> (seq, how), the first report.
    reported: BTreeMap<u64, (u64, Report)>,
    errors: Vec<String>,
    /// Resets / remote resets / faults seen (before the final shutdown).
    resets: u64,
    remote_resets: u64,
    faults: u64,
    connects: u64,
    accepts: u64,
    /// Set for the final shutdown: messages reported from then on are counted apart.
    final_shutdown: bool,
    reported_at_end: u64,
    /// (server, client node) -> the connection the client opened (ClientServer).
    client_conns: BTreeMap<(usize, usize), ConnectionRef>,
    /// FNV-1a over everything above, in order, with virtual times.
    hash: u64,
}

impl Log {
    fn mix(&mut self, words: &[u64]) {
        let t = (self.clock.now() - self.start).as_nanos() as u64;
        for w in std::iter::once(t).chain(words.iter().copied()) {
            for b in w.to_le_bytes() {
                self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    fn say(&self, me: Inst, what: std::fmt::Arguments<'_>) {
        if self.trace {
            let t = (self.clock.now() - self.start).as_micros();
            eprintln!("{t:>9}us n{}.{} {what}", me.0, me.1);
        }
    }
}

/// The message body: sender node and incarnation, receiver node; the data section is all
/// `tid % 251`.
fn body(from: Inst, to: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&(from.0 as u32).to_le_bytes());
    v.extend_from_slice(&from.1.to_le_bytes());
    v.extend_from_slice(&(to as u32).to_le_bytes());
    v
}

fn parse(front: &[u8]) -> Option<(Inst, usize)> {
    let w = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(front.get(i..i + 4)?.try_into().ok()?))
    };
    Some(((w(0)? as usize, w(4)?), w(8)? as usize))
}

/// The dispatcher of one node instance: records into the shared log.
struct Recorder {
    me: Inst,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    fn report(&self, how: Report, undelivered: Vec<Message>) {
        let mut log = self.log.lock();
        for m in undelivered {
            log.say(
                self.me,
                format_args!("{how:?}: tid {} seq {}", m.tid, m.seq),
            );
            log.mix(&[2, how as u64, m.tid, m.seq]);
            if log.final_shutdown {
                log.reported_at_end += 1;
            }
            if log.reported.insert(m.tid, (m.seq, how)).is_some() {
                let e = format!("tid {} reported twice (by {:?})", m.tid, self.me);
                log.errors.push(e);
            }
        }
    }
}

impl Dispatcher for Recorder {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        let mut log = self.log.lock();
        log.say(
            self.me,
            format_args!("got tid {} seq {} from {:?}", msg.tid, msg.seq, msg.src),
        );
        log.mix(&[1, msg.tid, msg.seq, self.me.0 as u64, u64::from(self.me.1)]);
        let Some((from, to)) = parse(&msg.front) else {
            log.errors.push(format!("tid {}: front mangled", msg.tid));
            return;
        };
        if to != self.me.0 || msg.src.num != from.0 as i64 {
            let e = format!(
                "tid {} for node {to} from {from:?} reached {:?} (src {:?})",
                msg.tid, self.me, msg.src
            );
            log.errors.push(e);
        }
        // (Slice comparisons: fast in debug builds too.)
        let pattern = [(msg.tid % 251) as u8; 4096];
        if !msg.data.chunks(4096).all(|c| c == &pattern[..c.len()]) {
            log.errors.push(format!("tid {}: data corrupted", msg.tid));
        }
        let epoch = log.remote_resets;
        log.deliveries.push(Delivery {
            tid: msg.tid,
            seq: msg.seq,
            from,
            to: self.me,
            epoch,
        });
        if let Some(peer) = node_of(&conn.peer_addr()) {
            log.client_conns
                .entry((self.me.0, peer))
                .or_insert_with(|| conn.clone());
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        let mut log = self.log.lock();
        log.say(
            self.me,
            format_args!("connected {:?} {:?}", conn.peer_addr(), conn.peer_name()),
        );
        log.connects += 1;
        log.mix(&[3]);
    }
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        let mut log = self.log.lock();
        log.say(
            self.me,
            format_args!("accepted {:?} {:?}", conn.peer_addr(), conn.peer_name()),
        );
        log.accepts += 1;
        log.mix(&[4]);
        // (msgr1 names only the peer's type in its connect: its number comes with messages.)
        if let Some(peer) = node_of(&conn.peer_addr()) {
            log.client_conns.insert((self.me.0, peer), conn.clone());
        }
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        {
            let mut log = self.log.lock();
            log.say(
                self.me,
                format_args!(
                    "reset {:?}: {} undelivered",
                    conn.peer_addr(),
                    undelivered.len()
                ),
            );
            if !log.final_shutdown {
                log.resets += 1;
            }
            log.mix(&[5, undelivered.len() as u64]);
        }
        self.report(Report::Reset, undelivered);
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        let mut log = self.log.lock();
        log.say(self.me, format_args!("remote reset {:?}", conn.peer_addr()));
        log.remote_resets += 1;
        log.mix(&[6]);
    }
    fn ms_handle_remote_reset_undelivered(&self, _conn: &ConnectionRef, undelivered: Vec<Message>) {
        self.report(Report::RemoteReset, undelivered);
    }
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        let mut log = self.log.lock();
        log.say(self.me, format_args!("fault: {error}"));
        log.faults += 1;
        log.mix(&[7]);
    }
}

/// Something the plan does at a virtual time.
#[derive(Clone, Copy, Debug)]
enum Action {
    Send {
        from: usize,
        to: usize,
    },
    /// `Node::inject_failure` on `node`'s link to `peer`.
    Fault {
        node: usize,
        peer: usize,
    },
    /// The network breaks the links between two nodes.
    NetKill {
        a: usize,
        b: usize,
    },
    Partition {
        a: usize,
        b: usize,
        for_: Duration,
    },
    Heal {
        a: usize,
        b: usize,
    },
    /// Shut `node` down; it comes back after `down`, with the same nonce or a new one.
    Restart {
        node: usize,
        down: Duration,
        same_nonce: bool,
    },
    Start {
        node: usize,
        same_nonce: bool,
    },
    /// `observer` learns `of`'s new address: marks the old one down, sends to the new.
    MapUpdate {
        observer: usize,
        of: usize,
    },
    MarkDown {
        node: usize,
        peer: usize,
    },
    MarkDownAll {
        node: usize,
    },
}

struct Slot {
    node: Option<Node>,
    inc: u32,
    nonce: u32,
    kind: EntityType,
    policy: Policy,
    bind: SocketAddr,
    /// This node's idea of every node's address (its "map").
    view: Vec<EntityAddr>,
}

struct Sent {
    from: Inst,
    to: Inst,
    prio: u16,
}

struct World {
    scenario: Scenario,
    seed: u64,
    rng: Rng,
    clock: Arc<VirtualClock>,
    start: Instant,
    net: Arc<MemNetwork>,
    net_cfg: SimConfig,
    workers: usize,
    /// The driver's own fault injection (`NodeConfig::inject_failures`).
    inject_failures: u64,
    keepalive: Option<Duration>,
    reconnect_initial: Duration,
    slots: Vec<Slot>,
    log: Arc<Mutex<Log>>,
    plan: BTreeMap<(Duration, u64), Action>,
    plan_seq: u64,
    sent: BTreeMap<u64, Sent>,
    /// Server replies waiting for the client's connection (ClientServer), in order.
    held: Vec<(usize, usize, Message, u16)>,
    next_tid: u64,
    refused_sends: u64,
}

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 6800))
}

/// The node index of an address [`addr_of`] made.
fn node_of(a: &EntityAddr) -> Option<usize> {
    match a.ip()? {
        std::net::IpAddr::V4(ip) => Some(usize::from(ip.octets()[3]).checked_sub(1)?),
        std::net::IpAddr::V6(_) => None,
    }
}

impl World {
    fn new(seed: u64, scenario: Scenario) -> World {
        let mut rng = Rng(seed ^ 0x5EED_0000_0000_0000);
        let clock = VirtualClock::new();
        let start = clock.now();
        let net_cfg = SimConfig {
            seed: rng.next(),
            min_delay: Duration::from_micros(rng.pick(&[0, 0, 50])),
            // Always some jitter: with none, both ends of a reconnect race act in lockstep,
            // and msgr1's accept can then answer RETRY_SESSION back and forth forever (each
            // side bumps connect_seq just past the other's) without time passing.
            max_delay: Duration::from_micros(rng.pick(&[100, 1000, 5000, 20_000])),
            kill_one_in: rng.pick(&[0, 300, 100, 30]),
        };
        let net = MemNetwork::simulated(Clock::Virtual(clock.clone()), net_cfg.clone());
        let n = match scenario {
            Scenario::Lossy | Scenario::ClientServer => 2,
            _ => 2 + (seed % 2) as usize,
        };
        let slots = (0..n)
            .map(|i| {
                let (kind, policy) = match scenario {
                    Scenario::Lossy if i == 0 => (EntityType::CLIENT, Policy::lossy_client()),
                    Scenario::Lossy => (EntityType::OSD, Policy::stateless_server()),
                    Scenario::ClientServer if i == 0 => {
                        (EntityType::CLIENT, Policy::lossless_client())
                    }
                    Scenario::ClientServer => (EntityType::OSD, Policy::stateful_server()),
                    _ => (EntityType::OSD, Policy::lossless_peer()),
                };
                Slot {
                    node: None,
                    inc: 0,
                    nonce: 1000 + 100 * i as u32,
                    kind,
                    policy,
                    bind: addr_of(i),
                    view: Vec::new(),
                }
            })
            .collect();
        let log = Log {
            clock: clock.clone(),
            start,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            deliveries: Vec::new(),
            reported: BTreeMap::new(),
            errors: Vec::new(),
            resets: 0,
            remote_resets: 0,
            faults: 0,
            connects: 0,
            accepts: 0,
            final_shutdown: false,
            reported_at_end: 0,
            client_conns: BTreeMap::new(),
            hash: 0xcbf2_9ce4_8422_2325,
        };
        let workers = 1 + rng.range(0, 2) as usize;
        let keepalive = rng.pick(&[
            None,
            Some(Duration::from_millis(300)),
            Some(Duration::from_secs(2)),
        ]);
        let reconnect_initial = rng.ms(1, 50);
        let inject_failures = rng.pick(&[0, 0, 0, 400, 100]);
        let mut w = World {
            scenario,
            seed,
            rng,
            clock,
            start,
            net,
            net_cfg,
            workers,
            inject_failures,
            keepalive,
            reconnect_initial,
            slots,
            log: Arc::new(Mutex::new(log)),
            plan: BTreeMap::new(),
            plan_seq: 0,
            sent: BTreeMap::new(),
            held: Vec::new(),
            next_tid: 1,
            refused_sends: 0,
        };
        if w.log.lock().trace {
            eprintln!(
                "{scenario:?} seed {seed}: {n} nodes, {} workers, {:?}, keepalive {:?}, \
                 reconnect {:?}, inject_failures {}",
                w.workers, w.net_cfg, w.keepalive, w.reconnect_initial, w.inject_failures
            );
        }
        for i in 0..n {
            w.start_node(i);
        }
        w
    }

    fn now(&self) -> Duration {
        self.clock.now() - self.start
    }

    fn at(&mut self, at: Duration, a: Action) {
        self.plan_seq += 1;
        self.plan.insert((at, self.plan_seq), a);
    }

    /// Start (or restart) node `i` with its current nonce.
    fn start_node(&mut self, i: usize) {
        let s = &self.slots[i];
        let mut cfg = NodeConfig::new(EntityName::new(s.kind, i as i64), s.bind);
        cfg.nonce = Some(s.nonce);
        cfg.workers = self.workers;
        cfg.policies = PolicySet::new(s.policy.clone());
        cfg.handshake_timeout = Duration::from_secs(2);
        cfg.keepalive_interval = self.keepalive;
        cfg.idle_timeout = self.keepalive.map(|k| k * 10);
        cfg.reconnect_initial = self.reconnect_initial;
        cfg.reconnect_max = Duration::from_millis(500);
        cfg.seed = Some(self.seed ^ ((i as u64 + 1) << 32) ^ u64::from(s.inc));
        cfg.inject_failures = self.inject_failures;
        cfg.threads = false;
        cfg.clock = Clock::Virtual(self.clock.clone());
        let node = Node::new(cfg, vec![MemTransport::new(self.net.clone())]);
        node.add_dispatcher(Arc::new(Recorder {
            me: (i, s.inc),
            log: self.log.clone(),
        }));
        node.start().expect("node starts");
        assert_eq!(node.my_addr(), self.current_addr(i));
        self.slots[i].node = Some(node);
        // It knows everyone's current address; the others know its address already (first
        // start, or the same nonce) or learn it through a map update.
        self.slots[i].view = (0..self.slots.len())
            .map(|j| self.current_addr(j))
            .collect();
    }

    /// Node `j`'s address as it is now (whether or not it runs).
    fn current_addr(&self, j: usize) -> EntityAddr {
        EntityAddr::new(self.slots[j].bind, self.slots[j].nonce)
    }

    fn live_nodes(&self) -> Vec<Node> {
        self.slots.iter().filter_map(|s| s.node.clone()).collect()
    }

    fn make_plan(&mut self) {
        let n = self.slots.len();
        let sc = self.scenario;
        let per_pair = self.rng.range(5, 40);
        for from in 0..n {
            for to in 0..n {
                if from == to || (sc == Scenario::Lossy && from != 0) {
                    continue;
                }
                for k in 0..per_pair {
                    let at = match sc {
                        Scenario::Race if k == 0 => Duration::ZERO,
                        _ => self.rng.ms(0, 1000),
                    };
                    self.at(at, Action::Send { from, to });
                }
            }
        }
        let pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
            .collect();
        for _ in 0..self.rng.range(0, 5) {
            let (node, peer) = self.rng.pick(&pairs);
            let at = self.rng.ms(0, 1200);
            self.at(at, Action::Fault { node, peer });
        }
        for _ in 0..self.rng.range(0, 3) {
            let (a, b) = self.rng.pick(&pairs);
            let at = self.rng.ms(0, 1200);
            self.at(at, Action::NetKill { a, b });
        }
        if sc != Scenario::Lossy && self.rng.one_in(4) {
            let (a, b) = self.rng.pick(&pairs);
            let at = self.rng.ms(0, 1000);
            let for_ = self.rng.ms(10, 500);
            self.at(at, Action::Partition { a, b, for_ });
        }
        match sc {
            Scenario::Restart => {
                for _ in 0..self.rng.range(1, 3) {
                    let node = self.rng.range(0, n as u64) as usize;
                    let at = self.rng.ms(50, 1000);
                    let down = self.rng.ms(0, 300);
                    let same_nonce = self.rng.one_in(2);
                    self.at(
                        at,
                        Action::Restart {
                            node,
                            down,
                            same_nonce,
                        },
                    );
                }
            }
            Scenario::MarkDown => {
                for _ in 0..self.rng.range(1, 5) {
                    let (node, peer) = self.rng.pick(&pairs);
                    let at = self.rng.ms(0, 1100);
                    self.at(at, Action::MarkDown { node, peer });
                }
                if self.rng.one_in(4) {
                    let node = self.rng.range(0, n as u64) as usize;
                    let at = self.rng.ms(0, 1100);
                    self.at(at, Action::MarkDownAll { node });
                }
            }
            _ => {}
        }
    }

    fn message(&mut self, from: usize, to: usize) -> (Message, u16) {
        let tid = self.next_tid;
        self.next_tid += 1;
        let prio = self.rng.pick(&[64u16, 127, 127, 196, 255]);
        let len = match self.rng.range(0, 1000) {
            0..=2 => self.rng.range(1 << 20, 4 << 20),
            3..=40 => self.rng.range(4096, 65536),
            _ => self.rng.range(0, 512),
        } as usize;
        let mut m = Message::new(100, body((from, self.slots[from].inc), to))
            .with_priority(Priority(prio))
            .with_tid(tid);
        if len > 0 {
            m = m.with_data(Bytes::from(vec![(tid % 251) as u8; len]));
        }
        (m, prio)
    }

    fn note_sent(&mut self, m: &Message, from: usize, to: usize, prio: u16) {
        if self.log.lock().trace {
            let (t, tid) = (self.now().as_micros(), m.tid);
            eprintln!(
                "{t:>9}us n{from}.{} sent tid {tid} to n{to}",
                self.slots[from].inc
            );
        }
        let s = Sent {
            from: (from, self.slots[from].inc),
            to: (to, self.slots[to].inc),
            prio,
        };
        self.sent.insert(m.tid, s);
    }

    fn apply(&mut self, a: Action) {
        if self.log.lock().trace {
            eprintln!("{:>9}us plan: {a:?}", self.now().as_micros());
        }
        match a {
            Action::Send { from, to } => {
                let Some(node) = self.slots[from].node.clone() else {
                    return;
                };
                let (m, prio) = self.message(from, to);
                if self.scenario == Scenario::ClientServer && from != 0 {
                    self.held.push((from, to, m, prio));
                    self.send_held();
                    return;
                }
                let peer = self.slots[from].view[to];
                let kind = self.slots[to].kind;
                let (tid, mc) = (m.tid, m.clone());
                match node.send_to(m, kind, &peer) {
                    Ok(()) => self.note_sent(&mc, from, to, prio),
                    Err(e) => {
                        self.refused_sends += 1;
                        if self.scenario.lossless() {
                            let err = format!("send of tid {tid} refused: {e}");
                            self.log.lock().errors.push(err);
                        }
                    }
                }
            }
            Action::Fault { node, peer } => {
                if let Some(n) = &self.slots[node].node {
                    n.inject_failure(&self.slots[node].view[peer]);
                }
            }
            Action::NetKill { a, b } => {
                self.net.kill_between(addr_of(a), addr_of(b));
            }
            Action::Partition { a, b, for_ } => {
                self.net.partition(addr_of(a), addr_of(b));
                let at = self.now() + for_;
                self.at(at, Action::Heal { a, b });
            }
            Action::Heal { a, b } => self.net.heal(addr_of(a), addr_of(b)),
            Action::Restart {
                node,
                down,
                same_nonce,
            } => {
                let Some(n) = self.slots[node].node.take() else {
                    return;
                };
                n.shutdown();
                drop(n);
                let at = self.now() + down;
                self.at(at, Action::Start { node, same_nonce });
            }
            Action::Start { node, same_nonce } => {
                let s = &mut self.slots[node];
                s.inc += 1;
                if !same_nonce {
                    s.nonce += 1;
                }
                self.start_node(node);
                if !same_nonce {
                    for observer in (0..self.slots.len()).filter(|&o| o != node) {
                        let at = self.now() + self.rng.ms(0, 200);
                        self.at(at, Action::MapUpdate { observer, of: node });
                    }
                }
            }
            Action::MapUpdate { observer, of } => {
                let new = self.current_addr(of);
                let old = std::mem::replace(&mut self.slots[observer].view[of], new);
                if let Some(n) = &self.slots[observer].node {
                    if old != new {
                        n.mark_down(&old);
                    }
                }
            }
            Action::MarkDownAll { node } => {
                if let Some(n) = &self.slots[node].node {
                    n.mark_down_all();
                }
            }
            Action::MarkDown { node, peer } => {
                if let Some(n) = &self.slots[node].node {
                    n.mark_down(&self.slots[node].view[peer]);
                }
            }
        }
    }

    /// ClientServer: the server sends on the connection the client opened, in order.
    fn send_held(&mut self) {
        let mut keep = Vec::new();
        for (from, to, m, prio) in std::mem::take(&mut self.held) {
            if keep
                .iter()
                .any(|h: &(usize, usize, Message, u16)| (h.0, h.1) == (from, to))
            {
                keep.push((from, to, m, prio));
                continue;
            }
            let conn = self.log.lock().client_conns.get(&(from, to)).cloned();
            let Some(conn) = conn else {
                keep.push((from, to, m, prio));
                continue;
            };
            let mc = m.clone();
            match conn.send_message(m) {
                Ok(()) => self.note_sent(&mc, from, to, prio),
                Err(e) => {
                    let err = format!("server send of tid {} refused: {e}", mc.tid);
                    self.log.lock().errors.push(err);
                }
            }
        }
        self.held = keep;
    }

    /// Every message accounted for: delivered (or, where sessions may reset, reported).
    fn settled(&self) -> bool {
        let log = self.log.lock();
        let delivered: BTreeSet<u64> = log.deliveries.iter().map(|d| d.tid).collect();
        self.sent
            .keys()
            .all(|t| delivered.contains(t) || log.reported.contains_key(t))
    }

    /// Run the plan, then a quiet second (no more network drops), then check.
    fn run(&mut self) -> Result<String, String> {
        self.make_plan();
        let limit = Duration::from_secs(60);
        let mut quiet_until: Option<Duration> = None;
        let mut rounds = 0u64;
        loop {
            let now = self.now();
            while let Some(e) = self.plan.first_entry() {
                if e.key().0 > now {
                    break;
                }
                let a = e.remove();
                self.apply(a);
            }
            if !self.held.is_empty() {
                self.send_held();
            }
            let next = run_until_idle(&self.live_nodes(), &self.net);
            rounds += 1;
            if !self.log.lock().errors.is_empty() {
                break;
            }
            let now = self.now();
            if quiet_until.is_none()
                && self.plan.is_empty()
                && self.held.is_empty()
                && self.settled()
            {
                // Late duplicates or replays would show up now.
                self.net.set_sim_config(SimConfig {
                    kill_one_in: 0,
                    ..self.net_cfg.clone()
                });
                self.net.heal_all();
                quiet_until = Some(now + Duration::from_secs(1));
            }
            if quiet_until.is_some_and(|q| now >= q) {
                break;
            }
            if now > limit {
                self.check()?;
                let log = self.log.lock();
                return Err(format!(
                    "did not settle within {limit:?}: {} sent, {} delivered, {} reported, {} held",
                    self.sent.len(),
                    log.deliveries.len(),
                    log.reported.len(),
                    self.held.len()
                ));
            }
            let mut t = next.map(|t| t - self.start);
            for c in [self.plan.first_key_value().map(|(k, _)| k.0), quiet_until] {
                t = match (t, c) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            match t {
                Some(t) => self.clock.advance_to(self.start + t.max(now)),
                None if !self.held.is_empty() => self.clock.advance(Duration::from_millis(10)),
                None => {
                    self.check()?;
                    return Err("stuck: nothing left to do, not settled".into());
                }
            }
        }
        self.check()?;
        // The end: shut every node down; lossless sessions must have nothing left to report.
        self.log.lock().final_shutdown = true;
        for s in &mut self.slots {
            if let Some(n) = s.node.take() {
                n.shutdown();
            }
        }
        let mut log = self.log.lock();
        log.client_conns.clear();
        // (The driver's own fault injection may break a link just before the end.)
        if self.scenario.lossless() && self.inject_failures == 0 && log.reported_at_end > 0 {
            return Err(format!(
                "{} messages still unacknowledged at the end",
                log.reported_at_end
            ));
        }
        let st = self.net.stats();
        Ok(format!(
            "{} msgs ({} delivered, {} reported, {} refused), {} connects, {} accepts, {} faults, \
             {} resets, {} remote resets, {} net kills, {} dials, {} rounds, {:?} virtual, \
             trace {:016x}",
            self.sent.len(),
            log.deliveries.len(),
            log.reported.len(),
            self.refused_sends,
            log.connects,
            log.accepts,
            log.faults,
            log.resets,
            log.remote_resets,
            st.kills,
            st.dials,
            rounds,
            self.now(),
            log.hash
        ))
    }

    fn check(&self) -> Result<(), String> {
        let log = self.log.lock();
        if let Some(e) = log.errors.first() {
            return Err(e.clone());
        }
        let mut seen = BTreeSet::new();
        // (from, to, prio) -> last tid; (from, to) -> last seq.
        let mut last_tid: BTreeMap<(Inst, Inst, u16), u64> = BTreeMap::new();
        let mut last_seq: BTreeMap<(Inst, Inst), (u64, u64)> = BTreeMap::new();
        for d in &log.deliveries {
            let Some(s) = self.sent.get(&d.tid) else {
                return Err(format!("tid {} delivered but never sent", d.tid));
            };
            if !seen.insert(d.tid) {
                return Err(format!("tid {} delivered twice", d.tid));
            }
            if s.from != d.from || s.to.0 != d.to.0 || d.to.1 < s.to.1 {
                return Err(format!(
                    "tid {} from {:?} to {:?} delivered from {:?} to {:?}",
                    d.tid, s.from, s.to, d.from, d.to
                ));
            }
            if let Some(prev) = last_tid.insert((d.from, d.to, s.prio), d.tid) {
                if prev > d.tid {
                    return Err(format!(
                        "{:?}->{:?} priority {}: tid {} after tid {}",
                        d.from, d.to, s.prio, d.tid, prev
                    ));
                }
            }
            if let Some((prev, epoch)) = last_seq.insert((d.from, d.to), (d.seq, d.epoch)) {
                if self.scenario.lossless() && prev >= d.seq && epoch == d.epoch {
                    return Err(format!(
                        "{:?}->{:?}: seq {} (tid {}) after seq {prev}",
                        d.from, d.to, d.seq, d.tid
                    ));
                }
            }
        }
        if self.scenario.lossless() && log.resets > 0 {
            return Err(format!("lossless run saw {} session resets", log.resets));
        }
        for (tid, s) in &self.sent {
            match (seen.contains(tid), log.reported.get(tid)) {
                (false, None) => {
                    return Err(format!(
                        "tid {tid} {:?}->{:?} neither delivered nor reported",
                        s.from, s.to
                    ))
                }
                (true, Some((0, how))) => {
                    return Err(format!(
                        "tid {tid} delivered but reported ({how:?}) as never sent"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn run(seed: u64, scenario: Scenario) -> Result<String, String> {
    let mut w = World::new(seed, scenario);
    let r = w.run();
    // Break the log -> connection -> node cycle, whatever happened.
    w.log.lock().client_conns.clear();
    for s in &mut w.slots {
        if let Some(n) = s.node.take() {
            n.shutdown();
        }
    }
    r
}

fn env_u64(names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| {
        std::env::var(n).ok().map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{n} must be a number, not {v:?}"))
        })
    })
}

/// Run `count` seeds from `first` (SIM_SEEDS overrides the count; SIM_SEED runs that one
/// seed, twice, and compares), naming the seed of a failure and how to replay it.
fn run_seeds(scenario: Scenario, first: u64, count: u64) {
    if std::env::var_os("RUST_LOG").is_some() {
        // The driver's and sessions' own logs, e.g. RUST_LOG=debug with SIM_SEED.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let one = env_u64(&["SIM_SEED"]);
    let seeds: Vec<u64> = match one {
        Some(s) => vec![s],
        None => {
            let n = env_u64(&["SIM_SEEDS", "MSGR_SIM_SEEDS"]).unwrap_or(count);
            (first..first + n).collect()
        }
    };
    // SIM_REPLAY=1: run every seed twice and compare (SIM_SEED always does).
    let replay_all = one.is_some() || std::env::var_os("SIM_REPLAY").is_some();
    let t0 = Instant::now();
    for &seed in &seeds {
        let replay = format!(
            "replay: SIM_SEED={seed} cargo test -p msgr-mem --test sim -- {} (SIM_TRACE=1 to see it)",
            scenario.test_name()
        );
        let res = std::panic::catch_unwind(|| run(seed, scenario));
        match res {
            Ok(Ok(summary)) => {
                if one.is_some() || std::env::var_os("SIM_VERBOSE").is_some() {
                    eprintln!("{scenario:?} seed {seed}: {summary}");
                }
                if replay_all {
                    let again = run(seed, scenario);
                    if again.as_ref() != Ok(&summary) {
                        panic!(
                            "{scenario:?} seed {seed} did not replay exactly:\n  {summary}\n  {again:?}\n{replay}"
                        );
                    }
                }
            }
            Ok(Err(e)) => panic!("{scenario:?} seed {seed} failed: {e}\n{replay}"),
            Err(_) => panic!("{scenario:?} seed {seed} panicked (see above)\n{replay}"),
        }
    }
    eprintln!(
        "{scenario:?}: {} seeds in {:.2?}",
        seeds.len(),
        t0.elapsed()
    );
}

#[test]
fn lossless_random_faults() {
    run_seeds(Scenario::Lossless, 1, 400);
}

#[test]
fn lossless_simultaneous_connects() {
    run_seeds(Scenario::Race, 10_001, 400);
}

#[test]
fn lossless_client_and_stateful_server() {
    run_seeds(Scenario::ClientServer, 30_001, 400);
}

#[test]
fn lossy_reports_every_undelivered_message() {
    run_seeds(Scenario::Lossy, 20_001, 600);
}

#[test]
fn restarts_report_or_deliver_everything() {
    run_seeds(Scenario::Restart, 40_001, 400);
}

#[test]
fn mark_down_reports_or_delivers_everything() {
    run_seeds(Scenario::MarkDown, 50_001, 400);
}

/// The same seed twice gives the same run, event for event (the trace hash covers every
/// dispatcher callback with its virtual time).
#[test]
fn seeds_replay_exactly() {
    let scenarios = [
        (Scenario::Lossless, 7),
        (Scenario::Race, 10_007),
        (Scenario::ClientServer, 30_007),
        (Scenario::Lossy, 20_007),
        (Scenario::Restart, 40_007),
        (Scenario::MarkDown, 50_007),
    ];
    for (scenario, first) in scenarios {
        for seed in first..first + 8 {
            let a = run(seed, scenario);
            let b = run(seed, scenario);
            assert_eq!(a, b, "{scenario:?} seed {seed} did not replay exactly");
        }
    }
}
