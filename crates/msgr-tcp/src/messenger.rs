//! [`TcpMessenger`]: start / stop, the connection map, and commands to worker threads.

use std::cell::Cell;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger, MessengerCounters, MessengerError};
use msgr_core::node::NodeShared;
use msgr_core::policy::Policy;
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

/// State shared by the messenger handle, its connections and its workers: the
/// transport-neutral [`NodeShared`] (reached through `Deref`) plus the workers.
pub(crate) struct Shared {
    pub id: u64,
    pub cfg: TcpConfig,
    node: NodeShared<Arc<TcpConnection>>,
    pub workers: OnceLock<Vec<WorkerHandle>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

// The messenger's shared state is the node's plus the transport's own fields: the node's
// fields and methods read as the messenger's (`s.registry`, `s.next_id()`).
impl Deref for Shared {
    type Target = NodeShared<Arc<TcpConnection>>;
    fn deref(&self) -> &Self::Target {
        &self.node
    }
}

impl Shared {
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

impl TcpMessenger {
    pub fn new(cfg: TcpConfig) -> Self {
        let shared = Arc::new(Shared {
            id: NEXT_MESSENGER_ID.fetch_add(1, Ordering::Relaxed),
            node: NodeShared::new(cfg.name, cfg.bind, cfg.nonce, cfg.policies.clone()),
            cfg,
            workers: OnceLock::new(),
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
        if !s.is_started() {
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
        let (conn, created) = s.dialing_conn(
            peer_type,
            addr,
            Instant::now(),
            |c| c.is_closed(),
            |session, policy| {
                let conn = TcpConnection::new(s, session, *addr, peer_type, true);
                conn.init_throttle(peer_type, &policy);
                conn.core.inner.lock().reconnect_pending = true;
                conn
            },
        );
        if !created {
            return Ok(conn);
        }
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
        if self.shared.is_started() {
            tracing::warn!(
                ?peer_type,
                "set_policy after start applies to new connections only"
            );
        }
        self.shared.node.set_policy(peer_type, policy);
    }

    fn add_dispatcher(&self, dispatcher: Arc<dyn Dispatcher>) {
        self.shared.dispatchers.add(dispatcher);
    }

    fn start(&self) -> Result<(), MessengerError> {
        let s = &self.shared;
        if !s.begin_start()? {
            return Ok(());
        }
        let fail = |e: MessengerError| s.abort_start(e);
        let bind_err = |source: std::io::Error| MessengerError::Bind {
            addr: s.cfg.bind.to_string(),
            source,
        };
        let listener = mio::net::TcpListener::bind(s.cfg.bind).map_err(|e| fail(bind_err(e)))?;
        let bound: SocketAddr = listener.local_addr().map_err(|e| fail(bind_err(e)))?;
        let my_addr = s.set_bound(bound, |scfg| {
            scfg.limits = s.cfg.limits;
            scfg.handshake_timeout = s.cfg.handshake_timeout;
            scfg.keepalive_interval = s.cfg.keepalive_interval;
            scfg.idle_timeout = s.cfg.idle_timeout;
            scfg.crc_data = s.cfg.crc_data;
        });

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
        s.install_loopback(move || {
            if let Some(s) = lb_shared.upgrade() {
                s.send(0, Cmd::Loopback);
            }
        });
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
        if let Some(lb) = self.shared.check_connect(addr)? {
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
    if !s.begin_shutdown() {
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
    s.finish_shutdown(|c| {
        let _ = c.mark_down_now();
        c.run_dispatch();
    });
    tracing::info!("messenger shut down");
}
