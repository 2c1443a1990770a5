//! [`TcpMessenger`]: start / stop, the connection map, and commands to worker threads.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger, MessengerCounters, MessengerError};
use msgr_core::node::counters::CounterPair;
use msgr_core::node::{Dispatchers, Loopback, MessengerCounterCells, Registry, Throttles};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::{Session, SessionConfig};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

use crate::config::TcpConfig;
use crate::conn::TcpConnection;
use crate::worker::Worker;

/// Work handed to a worker thread.
pub(crate) enum Cmd {
    /// An accepted socket to serve.
    Adopt(mio::net::TcpStream),
    /// Open a link for this connection (first connect or reconnect).
    Dial(Arc<TcpConnection>),
    /// Read, run the session, write, for the link `token` (if still generation `gen`).
    Drive { token: usize, gen: u64 },
    /// Close the link `token` (if still generation `gen`) without touching its session.
    Close { token: usize, gen: u64 },
    /// Run this connection's dispatch (events queued by another thread, throttle released).
    Dispatch(Arc<TcpConnection>),
    /// Deliver loopback messages.
    Loopback,
    /// Stop accepting, flush, fail what is left, exit.
    Shutdown,
}

pub(crate) struct WorkerHandle {
    cmds: Mutex<Vec<Cmd>>,
    pub waker: mio::Waker,
}

impl WorkerHandle {
    pub fn new(waker: mio::Waker) -> Self {
        WorkerHandle {
            cmds: Mutex::new(Vec::new()),
            waker,
        }
    }
    pub fn take(&self, into: &mut Vec<Cmd>) {
        std::mem::swap(&mut *self.cmds.lock(), into);
    }
}

thread_local! {
    /// (messenger id, worker index) of the worker running on this thread, if any: commands a
    /// worker sends to itself need no wake-up (it drains its queue before polling again).
    static CURRENT_WORKER: Cell<(u64, usize)> = const { Cell::new((u64::MAX, 0)) };
}

pub(crate) fn set_current_worker(messenger: u64, idx: usize) {
    CURRENT_WORKER.with(|c| c.set((messenger, idx)));
}

static NEXT_MESSENGER_ID: AtomicU64 = AtomicU64::new(0);

/// State shared by the messenger handle, its connections and its workers.
pub(crate) struct Shared {
    pub id: u64,
    pub cfg: TcpConfig,
    policies: RwLock<PolicySet>,
    pub dispatchers: Dispatchers,
    pub registry: Registry<Arc<TcpConnection>>,
    pub counters: Arc<MessengerCounterCells>,
    pub throttles: Throttles,
    pub session_cfg: OnceLock<Arc<SessionConfig>>,
    my_addr: RwLock<EntityAddr>,
    pub workers: OnceLock<Vec<WorkerHandle>>,
    pub loopback: OnceLock<Arc<Loopback>>,
    next_id: AtomicU64,
    started: AtomicBool,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
    pub fn my_addr(&self) -> EntityAddr {
        *self.my_addr.read()
    }
    pub fn policy_for(&self, t: EntityType) -> Policy {
        self.policies.read().get(t).clone()
    }
    pub fn session_cfg(&self) -> Arc<SessionConfig> {
        self.session_cfg.get().expect("started").clone()
    }

    /// Queue a command for worker `idx` and wake it (unless it is the calling thread, which
    /// drains its queue before it polls again).
    pub fn send(&self, idx: usize, cmd: Cmd) {
        let Some(workers) = self.workers.get() else {
            return;
        };
        let w = &workers[idx % workers.len()];
        let was_empty = {
            let mut q = w.cmds.lock();
            let e = q.is_empty();
            q.push(cmd);
            e
        };
        let on_it = CURRENT_WORKER.with(|c| c.get() == (self.id, idx % workers.len()));
        if was_empty && !on_it {
            if let Err(e) = w.waker.wake() {
                tracing::error!(error = %e, "cannot wake worker");
            }
        }
    }
}

/// A messenger speaking msgr1 over TCP. Cheap to clone (a handle). When the last handle is
/// dropped the messenger shuts down (as if `shutdown` was called).
#[derive(Clone)]
pub struct TcpMessenger {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Held only by [`TcpMessenger`] handles (workers and connections hold `Shared` itself), so
/// its drop means the application let go of the messenger.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        shutdown(&self.0);
    }
}

impl std::fmt::Debug for TcpMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpMessenger")
            .field("name", &self.shared.cfg.name)
            .field("addr", &self.shared.my_addr())
            .finish()
    }
}

fn random_u32() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 16) as u32
}

impl TcpMessenger {
    pub fn new(cfg: TcpConfig) -> Self {
        let nonce = cfg.nonce.unwrap_or_else(random_u32);
        let my_addr = EntityAddr {
            kind: 0,
            nonce,
            addr: Some(cfg.bind),
        };
        let policies = cfg.policies.clone();
        let shared = Arc::new(Shared {
            id: NEXT_MESSENGER_ID.fetch_add(1, Ordering::Relaxed),
            cfg,
            policies: RwLock::new(policies),
            dispatchers: Dispatchers::default(),
            registry: Registry::default(),
            counters: Arc::new(MessengerCounterCells::default()),
            throttles: Throttles::default(),
            session_cfg: OnceLock::new(),
            my_addr: RwLock::new(my_addr),
            workers: OnceLock::new(),
            loopback: OnceLock::new(),
            next_id: AtomicU64::new(1),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        TcpMessenger {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    pub fn config(&self) -> &TcpConfig {
        &self.shared.cfg
    }

    /// `connect_to` with the concrete type (for [`TcpConnection::send_message_timeout`]).
    /// Errors when `addr` is our own (loopback connections are not TCP connections).
    pub fn connect_tcp(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<Arc<TcpConnection>, MessengerError> {
        let s = &self.shared;
        if !s.started.load(Ordering::Acquire) {
            return Err(MessengerError::NotStarted);
        }
        if s.is_stopping() {
            return Err(MessengerError::ShutDown);
        }
        let Some(sock) = addr.addr else {
            return Err(MessengerError::Transport(format!(
                "cannot connect to {addr:?}: it has no IP address and port"
            )));
        };
        if *addr == s.my_addr() {
            return Err(MessengerError::Transport(
                "connect_tcp to our own address: use connect_to for loopback".into(),
            ));
        }
        let policy = s.policy_for(peer_type);
        let conn = {
            let mut reg = s.registry.lock();
            if let Some(c) = reg.get(addr) {
                if !c.is_closed() {
                    return Ok(c.clone());
                }
            }
            let session = Session::connect(
                s.session_cfg(),
                *addr,
                peer_type,
                policy.clone(),
                Instant::now(),
            );
            let conn = TcpConnection::new(s, session, *addr, peer_type, true);
            conn.init_throttle(peer_type, &policy);
            conn.core.inner.lock().reconnect_pending = true;
            reg.insert(*addr, conn.clone());
            conn
        };
        tracing::debug!(conn = conn.id, peer = %sock, "connecting");
        s.send(
            conn.home_worker(),
            crate::messenger::Cmd::Dial(conn.clone()),
        );
        Ok(conn)
    }
}

impl Messenger for TcpMessenger {
    fn my_name(&self) -> EntityName {
        self.shared.cfg.name
    }

    fn my_addr(&self) -> EntityAddr {
        self.shared.my_addr()
    }

    fn set_policy(&self, peer_type: EntityType, policy: Policy) {
        if self.shared.started.load(Ordering::Acquire) {
            tracing::warn!(
                ?peer_type,
                "set_policy after start applies to new connections only"
            );
        }
        self.shared.policies.write().set(peer_type, policy);
    }

    fn add_dispatcher(&self, dispatcher: Arc<dyn Dispatcher>) {
        self.shared.dispatchers.add(dispatcher);
    }

    fn start(&self) -> Result<(), MessengerError> {
        let s = &self.shared;
        if s.dispatchers.is_empty() {
            return Err(MessengerError::NoDispatcher);
        }
        if s.is_stopping() {
            return Err(MessengerError::ShutDown);
        }
        if s.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let fail = |e: MessengerError| {
            s.started.store(false, Ordering::Release);
            e
        };
        let bind_err = |source: std::io::Error| MessengerError::Bind {
            addr: s.cfg.bind.to_string(),
            source,
        };
        let listener = mio::net::TcpListener::bind(s.cfg.bind).map_err(|e| fail(bind_err(e)))?;
        let bound: SocketAddr = listener.local_addr().map_err(|e| fail(bind_err(e)))?;
        let my_addr = EntityAddr {
            addr: Some(bound),
            ..s.my_addr()
        };
        *s.my_addr.write() = my_addr;

        let mut scfg = SessionConfig::new(s.cfg.name, my_addr);
        scfg.limits = s.cfg.limits;
        scfg.policies = s.policies.read().clone();
        scfg.handshake_timeout = s.cfg.handshake_timeout;
        scfg.keepalive_interval = s.cfg.keepalive_interval;
        scfg.idle_timeout = s.cfg.idle_timeout;
        scfg.crc_data = s.cfg.crc_data;
        let _ = s.session_cfg.set(Arc::new(scfg));

        let n = s.cfg.workers.max(1);
        let mut workers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut listener = Some(listener);
        for idx in 0..n {
            let w = Worker::new(
                idx,
                s.clone(),
                if idx == 0 { listener.take() } else { None },
            )
            .map_err(|e| fail(MessengerError::Io(e)))?;
            handles.push(WorkerHandle::new(
                w.waker().map_err(|e| fail(MessengerError::Io(e)))?,
            ));
            workers.push(w);
        }
        if s.workers.set(handles).is_err() {
            return Err(fail(MessengerError::Transport("started twice".into())));
        }
        let lb_shared = Arc::downgrade(s);
        let lb = Loopback::new(
            s.cfg.name,
            my_addr,
            s.session_cfg().features_supported,
            CounterPair::new(s.counters.clone()),
            move || {
                if let Some(s) = lb_shared.upgrade() {
                    s.send(0, Cmd::Loopback);
                }
            },
        );
        let _ = s.loopback.set(lb);
        let mut threads = s.threads.lock();
        for w in workers {
            let name = format!("msgr-tcp-{}", w.idx());
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(move || w.run())
                .map_err(|e| fail(MessengerError::Io(e)))?;
            threads.push(t);
        }
        tracing::info!(addr = %bound, nonce = my_addr.nonce, workers = n, "messenger started");
        Ok(())
    }

    fn connect_to(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<ConnectionRef, MessengerError> {
        let s = &self.shared;
        if !s.started.load(Ordering::Acquire) {
            return Err(MessengerError::NotStarted);
        }
        if s.is_stopping() {
            return Err(MessengerError::ShutDown);
        }
        if *addr == s.my_addr() {
            let lb: ConnectionRef = s.loopback.get().expect("started").clone();
            return Ok(lb);
        }
        Ok(self.connect_tcp(peer_type, addr)?)
    }

    fn mark_down(&self, addr: &EntityAddr) {
        self.shared.registry.mark_down(addr);
    }

    fn mark_down_all(&self) {
        self.shared.registry.mark_down_all();
    }

    fn shutdown(&self) {
        shutdown(&self.shared);
    }

    fn counters(&self) -> MessengerCounters {
        self.shared.counters.snapshot()
    }
}

/// Stop accepting, let workers flush (up to `shutdown_flush`), fail what is left (reported to
/// the dispatcher), join the workers. Idempotent.
fn shutdown(s: &Arc<Shared>) {
    if !s.started.load(Ordering::Acquire) || s.stopping.swap(true, Ordering::AcqRel) {
        return;
    }
    let n = s.workers.get().map_or(0, |w| w.len());
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
    // Connections without a link (standby, waiting to reconnect) are failed here.
    for c in s.registry.take_all() {
        let _ = c.mark_down_now();
        c.run_dispatch();
    }
    if let Some(lb) = s.loopback.get() {
        lb.deliver_pending(&s.dispatchers);
        let _ = lb.take_pending();
    }
    tracing::info!("messenger shut down");
}
