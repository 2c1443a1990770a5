//! The simulated world of one run: its nodes ([`Slot`]s), network, clock, plan and what was
//! sent; [`World::apply`] carries out the plan's actions. (The run loop: `run.rs`.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use msgr_core::api::Messenger;
use msgr_core::message::Message;
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_mem::{MemNetwork, MemTransport, SimConfig};
use msgr_node::{Clock, Node, NodeConfig, VirtualClock};

use crate::plan::{self, Action};
use crate::record::{Log, Recorder, Sent};
use crate::scenario::{addr_of, Rng, Scenario};

/// A node of the run, whether it runs now or not.
pub struct Slot {
    pub node: Option<Node>,
    /// Incarnation: restarts count up.
    pub inc: u32,
    pub nonce: u32,
    pub kind: EntityType,
    pub policy: Policy,
    pub bind: SocketAddr,
    /// This node's idea of every node's address (its "map").
    pub view: Vec<EntityAddr>,
}

/// Everything a run has (see the module docs).
pub struct World {
    pub scenario: Scenario,
    pub seed: u64,
    pub rng: Rng,
    pub clock: Arc<VirtualClock>,
    pub start: Instant,
    pub net: Arc<MemNetwork>,
    pub net_cfg: SimConfig,
    pub workers: usize,
    /// The driver's own fault injection (`NodeConfig::inject_failures`).
    pub inject_failures: u64,
    pub keepalive: Option<Duration>,
    pub reconnect_initial: Duration,
    pub slots: Vec<Slot>,
    pub log: Arc<Mutex<Log>>,
    pub plan: BTreeMap<(Duration, u64), Action>,
    pub plan_seq: u64,
    pub sent: BTreeMap<u64, Sent>,
    /// Server replies waiting for the client's connection (ClientServer), in order.
    pub held: Vec<(usize, usize, Message, u16)>,
    pub next_tid: u64,
    pub refused_sends: u64,
}

impl World {
    /// The world of `seed` in `scenario`, its nodes started.
    pub fn new(seed: u64, scenario: Scenario) -> World {
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

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.clock.now() - self.start
    }

    /// Plan `a` at `at` (after what is planned at the same time already).
    pub fn at(&mut self, at: Duration, a: Action) {
        self.plan_seq += 1;
        self.plan.insert((at, self.plan_seq), a);
    }

    /// Start (or restart) node `i` with its current nonce.
    pub fn start_node(&mut self, i: usize) {
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
    pub fn current_addr(&self, j: usize) -> EntityAddr {
        EntityAddr::new(self.slots[j].bind, self.slots[j].nonce)
    }

    /// The nodes running now.
    pub fn live_nodes(&self) -> Vec<Node> {
        self.slots.iter().filter_map(|s| s.node.clone()).collect()
    }

    /// Draw the plan from the seed (see [`plan::plan`]).
    pub fn make_plan(&mut self) {
        for (at, a) in plan::plan(&mut self.rng, self.scenario, self.slots.len()) {
            self.at(at, a);
        }
    }

    /// The next message from node `from` to node `to` (see [`plan::message`]).
    fn message(&mut self, from: usize, to: usize) -> (Message, u16) {
        let tid = self.next_tid;
        self.next_tid += 1;
        plan::message(&mut self.rng, tid, (from, self.slots[from].inc), to)
    }

    /// Record that `m` went from node `from` to node `to`.
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

    /// Carry out `a` now.
    pub fn apply(&mut self, a: Action) {
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
    pub fn send_held(&mut self) {
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
}
