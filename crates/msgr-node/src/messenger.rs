//! [`Node`]: the one `Messenger` type, whatever transports carry it: start / stop, the
//! connection map, commands to workers.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use msgr_core::api::{
    ConnectionRef, Dispatcher, Messenger, MessengerCounters, MessengerError, TransportError,
};
use msgr_core::policy::Policy;
use msgr_core::protocol::Protocol;
use msgr_core::session_v2::V2Config;
use msgr_core::v2::{AddrKind, EntityAddrV2, EntityAddrVec};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

use crate::config::NodeConfig;
use crate::connection::NodeConnection;
use crate::driver::worker::{Worker, MAX_TRANSPORTS};
use crate::port::{set_current, Cmd, Port};
use crate::shared::Shared;
use crate::transport::Transport;

/// A messenger: one local entity, its listeners (one per transport), its sessions. Cheap to
/// clone (a handle). When the last handle is dropped the node shuts down (as if `shutdown`
/// was called).
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    /// Workers stepped by the application ([`NodeConfig::threads`] = false).
    manual: Manual,
    _owner: Arc<Owner>,
}

type Manual = Arc<Mutex<Vec<Worker>>>;

/// Held only by [`Node`] handles (workers and connections hold `Shared` itself), so its drop
/// means the application let go of the node.
struct Owner(Arc<Shared>, Manual);

impl Drop for Owner {
    fn drop(&mut self) {
        shutdown(&self.0, &self.1);
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.cfg.name)
            .field("addr", &self.shared.my_addr())
            .field("transports", &self.transports())
            .finish()
    }
}

impl Node {
    /// A stopped node that will reach peers over `transports`, in order of preference (the
    /// first that can reach a peer carries its connection).
    pub fn new(cfg: NodeConfig, transports: Vec<Arc<dyn Transport>>) -> Self {
        assert!(
            transports.len() <= MAX_TRANSPORTS,
            "at most {MAX_TRANSPORTS} transports per node"
        );
        let shared = Arc::new(Shared::new(cfg, transports));
        let manual = Manual::default();
        Node {
            _owner: Arc::new(Owner(shared.clone(), manual.clone())),
            shared,
            manual,
        }
    }

    /// The settings this node was made with.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.cfg
    }

    /// The names of the transports in use, in preference order: after `start`, those that
    /// could listen; before, those configured.
    pub fn transports(&self) -> Vec<&'static str> {
        match self.shared.transports.get() {
            Some(t) => t.iter().map(|t| t.name()).collect(),
            None => self.shared.configured.iter().map(|t| t.name()).collect(),
        }
    }

    /// `connect_to` with the concrete type (for [`NodeConnection::send_message_timeout`] and
    /// [`NodeConnection::transport`]), speaking [`NodeConfig::protocol`]. Errors when `addr`
    /// is our own (use `connect_to`).
    pub fn connect(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<Arc<NodeConnection>, MessengerError> {
        self.connect_with(peer_type, addr, self.shared.cfg.protocol)
    }

    /// [`Node::connect`] speaking `protocol` (a peer address written `v2:IP:PORT/NONCE` asks
    /// for msgr2). The connection to an address is made once: when one exists, it is returned
    /// whatever protocol it speaks.
    pub fn connect_with(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
        protocol: Protocol,
    ) -> Result<Arc<NodeConnection>, MessengerError> {
        let s = &self.shared;
        if !s.is_started() {
            return Err(MessengerError::NotStarted);
        }
        if s.is_stopping() {
            return Err(MessengerError::ShutDown);
        }
        if addr.addr.is_none() {
            return Err(MessengerError::BadPeerAddress {
                addr: addr.to_string(),
                reason: "it has no IP address and port",
            });
        }
        if *addr == s.my_addr() {
            return Err(MessengerError::BadPeerAddress {
                addr: addr.to_string(),
                reason: "it is our own address: use connect_to for loopback",
            });
        }
        let now = s.clock.now();
        let (conn, created) = s.dialing_conn(
            peer_type,
            addr,
            protocol,
            now,
            |c| c.is_closed(),
            |session, policy| {
                let conn = s.new_connection(session, *addr, peer_type, true);
                conn.init_throttle(peer_type, &policy);
                conn
            },
        )?;
        if created {
            tracing::debug!(conn = conn.id, peer = ?addr, "connecting");
            s.send(conn.home_worker(), Cmd::Dial(conn.clone()));
        }
        Ok(conn)
    }

    /// Every connection the node holds now, dialed and accepted (open, connecting or waiting
    /// to reconnect), in peer-address order; not the loopback connection to itself. For
    /// metrics and admin tools: read each one's `counters()`, `peer_addr()`, `transport()`.
    pub fn connections(&self) -> Vec<Arc<NodeConnection>> {
        self.shared.registry.all()
    }

    /// `start` succeeded (and `shutdown` may have followed).
    pub fn is_started(&self) -> bool {
        self.shared.is_started()
    }

    /// The policy applied to new connections with peers of `peer_type` (the configured one,
    /// or what `set_policy` set since).
    pub fn policy(&self, peer_type: EntityType) -> Policy {
        self.shared.policy_for(peer_type)
    }

    /// Break the link of the connection to `addr` now, as a network fault would (tests).
    /// False when there is no such connection or it has no link.
    pub fn inject_failure(&self, addr: &EntityAddr) -> bool {
        let Some(conn) = self.shared.registry.get(addr) else {
            return false;
        };
        let link = conn.core.inner.lock().link;
        match link {
            Some(l) => {
                self.shared.send(
                    l.worker,
                    Cmd::Fault {
                        token: l.token,
                        gen: l.gen,
                    },
                );
                true
            }
            None => false,
        }
    }

    /// Simulation (`threads` = false): run one non-blocking turn of every worker, in order.
    /// Returns the earliest deadline any worker waits for.
    pub fn step(&self) -> Option<Instant> {
        turn_manual(&self.shared, &mut self.manual.lock())
    }

    /// Simulation: true while a step would do work now (commands queued, links waiting to be
    /// driven).
    pub fn has_work(&self) -> bool {
        let queued = self
            .shared
            .ports
            .get()
            .is_some_and(|p| p.iter().any(|p| p.has_cmds()));
        queued || self.manual.lock().iter().any(|w| !w.ready.is_empty())
    }
}

impl Messenger for Node {
    fn my_name(&self) -> EntityName {
        self.shared.cfg.name
    }

    fn my_addr(&self) -> EntityAddr {
        self.shared.my_addr()
    }

    fn set_policy(&self, peer_type: EntityType, policy: Policy) {
        if self.shared.is_started() {
            tracing::warn!(
                ?peer_type,
                "set_policy after start applies to new connections only"
            );
        }
        self.shared.set_policy(peer_type, policy);
    }

    fn add_dispatcher(&self, dispatcher: Arc<dyn Dispatcher>) {
        self.shared.dispatchers.add(dispatcher);
    }

    fn start(&self) -> Result<(), MessengerError> {
        let s = &self.shared;
        if !s.begin_start()? {
            return Ok(());
        }
        start(s, &self.manual).map_err(|e| s.abort_start(e))
    }

    fn connect_to(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<ConnectionRef, MessengerError> {
        if let Some(lb) = self.shared.check_connect(addr)? {
            return Ok(lb);
        }
        Ok(self.connect(peer_type, addr)?)
    }

    fn mark_down(&self, addr: &EntityAddr) {
        self.shared.registry.mark_down(addr);
    }

    fn mark_down_all(&self) {
        self.shared.registry.mark_down_all();
    }

    fn shutdown(&self) {
        shutdown(&self.shared, &self.manual);
    }

    fn counters(&self) -> MessengerCounters {
        self.shared.counters.snapshot()
    }
}

/// Listen on every transport (the last in preference order first, see [`listen_all`]), fix
/// our address, create the workers and start them (or keep them for [`Node::step`]).
fn start(s: &Arc<Shared>, manual: &Manual) -> Result<(), MessengerError> {
    let (bound, transports) = listen_all(s)?;
    let _ = s.transports.set(transports);
    let cfg = &s.cfg;
    let my_addr = s.set_bound(bound, |scfg| {
        scfg.limits = cfg.limits;
        scfg.handshake_timeout = cfg.handshake_timeout;
        scfg.keepalive_interval = cfg.keepalive_interval;
        scfg.idle_timeout = cfg.idle_timeout;
        scfg.crc_data = cfg.crc_data;
    });
    s.set_protocols(cfg.accept_v1, cfg.accept_v2, |base| {
        // What IDENT frames announce: the addresses peers may dial us at, msgr2's first.
        let mut addrs = Vec::new();
        if cfg.accept_v2 {
            addrs.push(EntityAddrV2::new(AddrKind::MSGR2, bound, my_addr.nonce));
        }
        if cfg.accept_v1 {
            addrs.push(EntityAddrV2::new(AddrKind::LEGACY, bound, my_addr.nonce));
        }
        let mut v2 = V2Config::new(base, EntityAddrVec(addrs));
        v2.auth = cfg.msgr2.auth.clone();
        v2.entity_id = cfg.msgr2.entity_id.clone();
        v2.modes = cfg.msgr2.modes.clone();
        v2
    });
    let n = cfg.workers.max(1);
    let ports: Vec<Arc<Port>> = (0..n).map(|i| Arc::new(Port::new(s.id, i))).collect();
    if s.ports.set(ports).is_err() {
        // begin_start lets one caller through: a second one here raced it.
        return Err(MessengerError::AlreadyStarted);
    }
    let mut workers = Vec::with_capacity(n);
    for idx in 0..n {
        let w = Worker::new(idx, s.clone())?;
        s.ports.get().expect("set above")[idx].set_waker(w.waker()?);
        if idx == 0 {
            w.register_transports()?;
        }
        workers.push(w);
    }
    let lb_shared = Arc::downgrade(s);
    s.install_loopback(move || {
        if let Some(s) = lb_shared.upgrade() {
            s.send(0, Cmd::Loopback);
        }
    });
    if cfg.threads {
        let mut threads = s.threads.lock();
        for w in workers {
            let name = format!("msgr-{}", w.idx);
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(move || w.run())?;
            threads.push(t);
        }
    } else {
        *manual.lock() = workers;
    }
    tracing::info!(addr = %bound, nonce = my_addr.nonce, workers = n, transports = ?s.transports().iter().map(|t| t.name()).collect::<Vec<_>>(), "messenger started");
    Ok(())
}

/// Every transport listens on the same IP and port, so the node keeps one entity address
/// whatever carries a connection (RDMA's rdma_cm port space on RoCE and InfiniBand is apart
/// from the kernel's TCP ports). With port 0 the last transport in preference order picks the
/// port and the others take the same one. A transport that cannot listen (no RDMA device, say)
/// is left out with a warning; `start` fails only when none can.
fn listen_all(
    s: &Shared,
) -> Result<(std::net::SocketAddr, Vec<Arc<dyn Transport>>), MessengerError> {
    if s.configured.is_empty() {
        return Err(MessengerError::NoTransport {
            addr: s.cfg.bind.to_string(),
            errors: Vec::new(),
        });
    }
    let mut bind = s.cfg.bind;
    let mut ok = vec![false; s.configured.len()];
    let mut errors = Vec::new();
    for (i, t) in s.configured.iter().enumerate().rev() {
        match t.listen(bind) {
            Ok(bound) => {
                bind = bound;
                ok[i] = true;
            }
            Err(e) => errors.push((t.name(), e)),
        }
    }
    let transports: Vec<Arc<dyn Transport>> = s
        .configured
        .iter()
        .zip(&ok)
        .filter(|(_, ok)| **ok)
        .map(|(t, _)| t.clone())
        .collect();
    if transports.is_empty() {
        return Err(no_listener(s.cfg.bind.to_string(), errors));
    }
    for (name, e) in errors {
        tracing::warn!(
            transport = name,
            "{name} is not available, continuing without it: {e}"
        );
    }
    Ok((bind, transports))
}

/// `start`'s error when no transport could listen: the transport's own error when there was
/// one (an `io::Error` is a socket that cannot bind), each one's when there were several.
fn no_listener(addr: String, mut errors: Vec<(&'static str, TransportError)>) -> MessengerError {
    // Tried last to first: put them back in order of preference.
    errors.reverse();
    if errors.len() != 1 {
        return MessengerError::NoTransport { addr, errors };
    }
    let (transport, source) = errors.pop().expect("one error");
    match source.downcast::<std::io::Error>() {
        Ok(io) => MessengerError::Bind { addr, source: *io },
        Err(source) => MessengerError::Transport { transport, source },
    }
}

/// One non-blocking turn of each hand-stepped worker, in order, on this thread; a worker whose
/// shutdown is complete is finished and removed. Returns the earliest deadline any waits for.
fn turn_manual(s: &Shared, workers: &mut Vec<Worker>) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    workers.retain_mut(|w| {
        set_current(s.id, w.idx);
        let done = w.turn(false);
        set_current(u64::MAX, 0);
        if let Some(d) = w.next_deadline() {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
        if done {
            w.finish();
        }
        !done
    });
    next
}

/// Stop accepting, let workers flush (up to `shutdown_flush`), fail what is left (reported to
/// the dispatcher), join the workers. Idempotent.
fn shutdown(s: &Arc<Shared>, manual: &Manual) {
    if !s.begin_shutdown() {
        return;
    }
    let n = s.workers();
    for i in 0..n {
        s.send(i, Cmd::Shutdown);
    }
    let threads: Vec<_> = s.threads.lock().drain(..).collect();
    let me = std::thread::current().id();
    for t in threads {
        if t.thread().id() == me {
            // Called from a dispatcher on one of our workers: it exits after this callback.
            continue;
        }
        if t.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    if let Some(mut workers) = manual.try_lock() {
        // Stepped by hand: a few turns to flush, then fail what is left.
        for _ in 0..64 {
            if workers.is_empty() {
                break;
            }
            turn_manual(s, &mut workers);
        }
        for w in workers.iter_mut() {
            w.finish();
        }
        workers.clear();
    }
    s.finish_shutdown(|c| {
        let _ = c.mark_down_now();
        c.run_dispatch();
    });
    tracing::info!("messenger shut down");
}
