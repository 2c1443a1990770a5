//! [`MemNetwork`]: the in-process "network" mem transports of one process share: listening
//! addresses, live links, and, in simulation mode, the bytes in flight.
//!
//! Two modes:
//! - direct ([`MemNetwork::new`], [`MemNetwork::global`]): a flush puts the bytes in the
//!   peer's queue and notifies the peer's worker at once;
//! - simulated ([`MemNetwork::simulated`]): a flush puts them in flight, to arrive after a
//!   seeded random delay on the network's clock (never overtaking earlier bytes of the same
//!   direction); [`MemNetwork::deliver_due`] hands over what is due. A seeded roll may drop a
//!   flush instead, which breaks the link (as a failed TCP connection would); partitions
//!   break links between two addresses and refuse dials between them until healed.
//!
//! Everything a simulated network decides comes from its seed and the order of calls, so
//! a single-threaded simulation replays exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use msgr_node::{Clock, DialError, Notify};

use crate::link::MemLink;
use crate::wire::{Carrier, Wire};

/// Ports handed out by `listen` on port 0.
const FIRST_LISTEN_PORT: u16 = 20000;
/// Ports naming the dialing end of a link (what the accepting side sees as its peer).
const FIRST_EPHEMERAL_PORT: u16 = 40000;

/// What a simulated network does to the bytes it carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimConfig {
    /// Seeds the delays and drops.
    pub seed: u64,
    /// Each flush arrives after a delay drawn from `min_delay..=max_delay`.
    pub min_delay: Duration,
    /// The longest delay (taken as `min_delay` when below it).
    pub max_delay: Duration,
    /// Drop about one flush in N, breaking its link (0: never).
    pub kill_one_in: u64,
}

/// What a network did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Links dialed.
    pub dials: u64,
    /// Dials refused (nobody listening, partitioned).
    pub refused: u64,
    /// Flushes (and ends of stream) delivered in simulation mode.
    pub delivered: u64,
    /// Bytes in those deliveries.
    pub bytes: u64,
    /// Links broken by the network (drops, partitions, [`MemNetwork::kill_between`]).
    pub kills: u64,
}

/// Bytes (or, `None`, the end of a stream) on their way to one side of a wire.
struct Segment {
    wire: Arc<Wire>,
    to: usize,
    data: Option<Bytes>,
}

struct Sim {
    clock: Clock,
    cfg: SimConfig,
    rng: u64,
    next_seq: u64,
    /// By arrival time, then send order.
    in_flight: BTreeMap<(Instant, u64), Segment>,
    /// The last arrival scheduled per (wire, receiving side): later bytes never overtake.
    last_at: BTreeMap<(u64, usize), Instant>,
}

impl Sim {
    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = (
            self.cfg.min_delay,
            self.cfg.max_delay.max(self.cfg.min_delay),
        );
        let span = (hi - lo).as_nanos() as u64;
        if span == 0 {
            return lo;
        }
        lo + Duration::from_nanos(self.next() % (span + 1))
    }
}

struct Net {
    listeners: BTreeMap<SocketAddr, Arc<Listener>>,
    next_listen_port: u16,
    next_ephemeral: u16,
    next_wire: u64,
    /// Live wires, for kills and partitions.
    wires: BTreeMap<u64, Weak<Wire>>,
    partitions: BTreeSet<(SocketAddr, SocketAddr)>,
    sim: Option<Sim>,
    stats: NetStats,
}

/// The in-process network (see the module docs). Shared by the [`crate::MemTransport`]s of
/// the nodes that must reach each other.
pub struct MemNetwork {
    st: Mutex<Net>,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.st.lock();
        f.debug_struct("MemNetwork")
            .field("listeners", &st.listeners.keys().collect::<Vec<_>>())
            .field("simulated", &st.sim.is_some())
            .field("stats", &st.stats)
            .finish()
    }
}

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Same port, and the same IP or one of them the wildcard: the two cannot both listen.
fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl MemNetwork {
    fn with(sim: Option<Sim>) -> Arc<Self> {
        Arc::new(MemNetwork {
            st: Mutex::new(Net {
                listeners: BTreeMap::new(),
                next_listen_port: FIRST_LISTEN_PORT,
                next_ephemeral: FIRST_EPHEMERAL_PORT,
                next_wire: 1,
                wires: BTreeMap::new(),
                partitions: BTreeSet::new(),
                sim,
                stats: NetStats::default(),
            }),
        })
    }

    /// A network that delivers flushed bytes at once.
    pub fn new() -> Arc<Self> {
        Self::with(None)
    }

    /// The process-wide network that a configuration naming the `mem` transport uses.
    pub fn global() -> Arc<Self> {
        static GLOBAL: OnceLock<Arc<MemNetwork>> = OnceLock::new();
        GLOBAL.get_or_init(MemNetwork::new).clone()
    }

    /// A network for simulations: bytes are in flight until [`MemNetwork::deliver_due`] (or
    /// [`MemNetwork::deliver_all`]) hands them over; delays are on `clock` (see [`SimConfig`]).
    pub fn simulated(clock: Clock, cfg: SimConfig) -> Arc<Self> {
        Self::with(Some(Sim {
            clock,
            rng: cfg.seed,
            cfg,
            next_seq: 0,
            in_flight: BTreeMap::new(),
            last_at: BTreeMap::new(),
        }))
    }

    /// Change what a simulated network does to later flushes (e.g. no more drops for a quiet
    /// end of a test). The random sequence goes on; no-op on a direct network.
    pub fn set_sim_config(&self, cfg: SimConfig) {
        if let Some(sim) = self.st.lock().sim.as_mut() {
            sim.cfg = cfg;
        }
    }

    /// The network's time: its simulation clock, or the system's.
    pub fn now(&self) -> Instant {
        match &self.st.lock().sim {
            Some(s) => s.clock.now(),
            None => Instant::now(),
        }
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.st.lock().stats.clone()
    }

    /// Listening addresses, in order.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.st.lock().listeners.keys().copied().collect()
    }

    /// Links whose ends may still exchange bytes.
    pub fn live_links(&self) -> usize {
        let st = self.st.lock();
        st.wires
            .values()
            .filter_map(Weak::upgrade)
            .filter(|w| !w.is_dead())
            .count()
    }

    /// Listen at `addr` (port 0: the next free port from 20000); Err if the address overlaps
    /// another listener's.
    pub(crate) fn listen(&self, addr: SocketAddr) -> Result<Arc<Listener>, String> {
        let mut st = self.st.lock();
        let mut addr = addr;
        if addr.port() == 0 {
            let mut tries = 0u32;
            loop {
                let port = st.next_listen_port;
                st.next_listen_port = st
                    .next_listen_port
                    .checked_add(1)
                    .unwrap_or(FIRST_LISTEN_PORT);
                let cand = SocketAddr::new(addr.ip(), port);
                if !st.listeners.keys().any(|l| overlaps(l, &cand)) {
                    addr = cand;
                    break;
                }
                tries += 1;
                if tries > u32::from(u16::MAX) {
                    return Err("no free port left in the mem network".into());
                }
            }
        } else if let Some(l) = st.listeners.keys().find(|l| overlaps(l, &addr)) {
            return Err(format!(
                "{addr} is already in use in this mem network (by the listener at {l}); \
                 give each node its own address"
            ));
        }
        let l = Arc::new(Listener {
            addr,
            st: Mutex::new(ListenerState {
                queue: VecDeque::new(),
                notify: None,
                open: true,
            }),
        });
        st.listeners.insert(addr, l.clone());
        Ok(l)
    }

    /// Stop listening (only if `l` still holds its address); refuse what waits for accept.
    pub(crate) fn unlisten(&self, l: &Arc<Listener>) {
        {
            let mut st = self.st.lock();
            if st.listeners.get(&l.addr).is_some_and(|x| Arc::ptr_eq(x, l)) {
                st.listeners.remove(&l.addr);
            }
        }
        let waiting = {
            let mut ls = l.st.lock();
            ls.open = false;
            ls.notify = None;
            std::mem::take(&mut ls.queue)
        };
        drop(waiting);
    }

    /// A new wire between the node addresses `ends` (dialer, listener), tracked for kills and
    /// partitions.
    pub(crate) fn new_wire(&self, ends: [Option<SocketAddr>; 2]) -> Arc<Wire> {
        let mut st = self.st.lock();
        let id = st.next_wire;
        st.next_wire += 1;
        if id.is_multiple_of(64) {
            st.wires.retain(|_, w| w.strong_count() > 0);
        }
        let w = Wire::new(id, ends);
        st.wires.insert(id, Arc::downgrade(&w));
        w
    }

    /// Connect `from` (the dialing node's listening address, if it listens) to the listener
    /// at `peer`: the accepting end goes to the listener's queue, the dialing end is returned.
    pub(crate) fn dial(
        self: &Arc<Self>,
        from: Option<SocketAddr>,
        peer: SocketAddr,
    ) -> Result<MemLink, DialError> {
        let (listener, seen_port) = {
            let mut st = self.st.lock();
            st.stats.dials += 1;
            let found = st.listeners.get(&peer).cloned().or_else(|| {
                st.listeners
                    .values()
                    .find(|l| l.addr.port() == peer.port() && l.addr.ip().is_unspecified())
                    .cloned()
            });
            let Some(listener) = found else {
                st.stats.refused += 1;
                return Err(DialError::unreachable(format!(
                    "no mem listener at {peer} (is that node started, with transport \"mem\", \
                     in this process and mem network?)"
                )));
            };
            if let Some(f) = from {
                if st.partitions.contains(&pair(f, listener.addr)) {
                    st.stats.refused += 1;
                    return Err(DialError::transient(format!(
                        "mem network partitioned between {f} and {peer}"
                    )));
                }
            }
            let port = st.next_ephemeral;
            st.next_ephemeral = st
                .next_ephemeral
                .checked_add(1)
                .unwrap_or(FIRST_EPHEMERAL_PORT);
            (listener, port)
        };
        let (ours, theirs) = MemLink::pair(self, from, Some(listener.addr));
        let ip = from.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |f| f.ip());
        if let Err(refused) = listener.offer(theirs, SocketAddr::new(ip, seen_port)) {
            drop(refused);
            self.st.lock().stats.refused += 1;
            return Err(DialError::unreachable(format!(
                "mem listener at {peer} is closed"
            )));
        }
        Ok(ours)
    }

    /// Hand over (simulation mode) every flush due at the network clock's time. Returns how
    /// many.
    pub fn deliver_due(&self) -> usize {
        let due = {
            let mut st = self.st.lock();
            let Some(sim) = st.sim.as_mut() else {
                return 0;
            };
            let now = sim.clock.now();
            let mut due = Vec::new();
            while let Some(e) = sim.in_flight.first_entry() {
                if e.key().0 > now {
                    break;
                }
                due.push(e.remove());
            }
            Self::note_delivered(&mut st, &due);
            due
        };
        Self::hand_over(due)
    }

    /// Hand over (simulation mode) up to `max` flushes in flight, in arrival order, whatever
    /// their time. Returns how many.
    pub fn deliver(&self, max: usize) -> usize {
        let due = {
            let mut st = self.st.lock();
            let Some(sim) = st.sim.as_mut() else {
                return 0;
            };
            let mut due = Vec::new();
            while due.len() < max {
                let Some((_, seg)) = sim.in_flight.pop_first() else {
                    break;
                };
                due.push(seg);
            }
            Self::note_delivered(&mut st, &due);
            due
        };
        Self::hand_over(due)
    }

    /// Hand over everything in flight (see [`MemNetwork::deliver`]).
    pub fn deliver_all(&self) -> usize {
        self.deliver(usize::MAX)
    }

    fn note_delivered(st: &mut Net, due: &[Segment]) {
        st.stats.delivered += due.len() as u64;
        st.stats.bytes += due
            .iter()
            .map(|s| s.data.as_ref().map_or(0, |d| d.len() as u64))
            .sum::<u64>();
        if let Some(sim) = st.sim.as_mut() {
            for s in due.iter().filter(|s| s.data.is_none()) {
                sim.last_at.remove(&(s.wire.id, s.to));
            }
        }
    }

    fn hand_over(due: Vec<Segment>) -> usize {
        let n = due.len();
        for s in due {
            s.wire.arrive(s.to, s.data);
        }
        n
    }

    /// When the next flush in flight arrives (simulation mode).
    pub fn next_delivery(&self) -> Option<Instant> {
        let st = self.st.lock();
        st.sim
            .as_ref()?
            .in_flight
            .first_key_value()
            .map(|(k, _)| k.0)
    }

    /// Flushes in flight (simulation mode).
    pub fn in_flight(&self) -> usize {
        self.st.lock().sim.as_ref().map_or(0, |s| s.in_flight.len())
    }

    /// Break every live link whose ends are the nodes at `a` and `b` (either way round).
    /// Returns how many broke.
    pub fn kill_between(&self, a: SocketAddr, b: SocketAddr) -> usize {
        self.kill_where(|e| e == [Some(a), Some(b)] || e == [Some(b), Some(a)])
    }

    /// Break every live link that has an end at `a`.
    pub fn kill_node(&self, a: SocketAddr) -> usize {
        self.kill_where(|e| e.contains(&Some(a)))
    }

    fn kill_where(&self, pick: impl Fn([Option<SocketAddr>; 2]) -> bool) -> usize {
        let wires: Vec<Arc<Wire>> = {
            let st = self.st.lock();
            st.wires
                .values()
                .filter_map(Weak::upgrade)
                .filter(|w| pick(w.ends))
                .collect()
        };
        let n = wires
            .iter()
            .filter(|w| w.break_link(None, "killed by the test"))
            .count();
        self.st.lock().stats.kills += n as u64;
        n
    }

    /// Cut the network between the nodes at `a` and `b`: their links break, and dials between
    /// them fail (transiently) until [`MemNetwork::heal`].
    pub fn partition(&self, a: SocketAddr, b: SocketAddr) {
        self.st.lock().partitions.insert(pair(a, b));
        self.kill_between(a, b);
    }

    /// End a [`MemNetwork::partition`] between `a` and `b` (either way round): dials between
    /// them work again (broken links stay broken).
    pub fn heal(&self, a: SocketAddr, b: SocketAddr) {
        self.st.lock().partitions.remove(&pair(a, b));
    }

    /// End every partition (see [`MemNetwork::heal`]).
    pub fn heal_all(&self) {
        self.st.lock().partitions.clear();
    }
}

impl Carrier for MemNetwork {
    /// Direct: the bytes arrive now. Simulated: a seeded roll may drop them (breaking the
    /// link); else they go in flight, due after a seeded delay, never before earlier bytes of
    /// the same direction.
    fn carry(&self, wire: &Arc<Wire>, from: usize, segs: &mut dyn Iterator<Item = Option<Bytes>>) {
        let to = 1 - from;
        let mut guard = self.st.lock();
        let st = &mut *guard;
        let Some(sim) = st.sim.as_mut() else {
            drop(guard);
            for s in segs {
                wire.arrive(to, s);
            }
            return;
        };
        let mut segs = segs.peekable();
        let data = segs.peek().is_some_and(Option::is_some);
        if data && sim.cfg.kill_one_in > 0 && sim.next().is_multiple_of(sim.cfg.kill_one_in) {
            // Dropped on the way: the link breaks (its ends are notified).
            st.stats.kills += 1;
            drop(guard);
            wire.break_link(None, "simulated drop");
            return;
        }
        let mut at = sim.clock.now() + sim.delay();
        if let Some(last) = sim.last_at.get(&(wire.id, to)) {
            at = at.max(*last);
        }
        sim.last_at.insert((wire.id, to), at);
        for data in segs {
            let seq = sim.next_seq;
            sim.next_seq += 1;
            let seg = Segment {
                wire: wire.clone(),
                to,
                data,
            };
            sim.in_flight.insert((at, seq), seg);
        }
    }
}

impl MemLink {
    /// The two ends of a new link between `a` and `b` (node addresses, for partitions and
    /// kills), outside any listener: for unit tests of code that takes a
    /// [`msgr_node::Link`].
    pub fn pair(
        net: &Arc<MemNetwork>,
        a: Option<SocketAddr>,
        b: Option<SocketAddr>,
    ) -> (MemLink, MemLink) {
        let wire = net.new_wire([a, b]);
        (
            MemLink::new(net.clone(), wire.clone(), 0),
            MemLink::new(net.clone(), wire, 1),
        )
    }
}

/// A listening address: links dialed to it wait here until its transport's `poll`.
pub(crate) struct Listener {
    /// The address it listens at (port 0 resolved).
    pub addr: SocketAddr,
    st: Mutex<ListenerState>,
}

struct ListenerState {
    queue: VecDeque<(MemLink, SocketAddr)>,
    notify: Option<Notify>,
    open: bool,
}

impl Listener {
    /// Queue an accepted link; Err (with it) when the listener is closed.
    #[allow(clippy::result_large_err)]
    fn offer(&self, link: MemLink, peer: SocketAddr) -> Result<(), MemLink> {
        let notify = {
            let mut st = self.st.lock();
            if !st.open {
                return Err(link);
            }
            st.queue.push_back((link, peer));
            st.notify.clone()
        };
        if let Some(n) = notify {
            n.notify();
        }
        Ok(())
    }

    /// Notify `notify` (the transport's worker) of links to accept, now if some wait already.
    pub fn set_notify(&self, notify: Notify) {
        let waiting = {
            let mut st = self.st.lock();
            st.notify = Some(notify.clone());
            !st.queue.is_empty()
        };
        if waiting {
            notify.notify();
        }
    }

    /// The links waiting for accept, with the address each peer dialed from.
    pub fn take(&self) -> VecDeque<(MemLink, SocketAddr)> {
        std::mem::take(&mut self.st.lock().queue)
    }
}
