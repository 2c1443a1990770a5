//! [`RdmaMessenger`]: start / stop, the connection map, commands to the reactor thread.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger, MessengerCounters, MessengerError};
use msgr_core::node::NodeShared;
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::wire::{DecodeLimits, EntityAddr, EntityName, EntityType};

use crate::conn::RdmaConnection;
use crate::endpoint::Endpoint;
use crate::link::Hello;
use crate::options::RdmaOptions;
use crate::reactor::Reactor;
use crate::verbs::RegisteredBuffer;
use crate::RdmaError;

/// Everything an [`RdmaMessenger`] needs; [`RdmaConfig::new`] gives working defaults.
#[derive(Clone, Debug)]
pub struct RdmaConfig {
    pub name: EntityName,
    /// Address to listen on: an IP of the netdev under the RDMA device (port 0 = any free).
    pub bind: SocketAddr,
    /// Our nonce; None: a random one.
    pub nonce: Option<u32>,
    pub policies: PolicySet,
    pub limits: DecodeLimits,
    pub handshake_timeout: Duration,
    pub keepalive_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Payload bytes a connection accepts before `send_message` returns `QueueFull`.
    pub send_queue_bytes: u64,
    /// Force a link's QP into the error state on about one in N reactor steps of that link
    /// (0: never). The RDMA counterpart of TCP's `inject_socket_failures`; for tests.
    pub inject_qp_failures: u64,
    /// Checksum the data section of sent messages (Ceph `ms_crc_data`); see
    /// `SessionConfig::crc_data`.
    pub crc_data: bool,
    /// The `[rdma]` settings.
    pub rdma: RdmaOptions,
    /// Reactor threads (at least 1). Each owns a share of the links (queue pairs and their
    /// completion channels, assigned round-robin as they are established) and runs their
    /// dispatcher callbacks; the first also runs connection management (rdma_cm).
    pub workers: usize,
}

impl RdmaConfig {
    pub fn new(name: EntityName, bind: SocketAddr) -> Self {
        RdmaConfig {
            name,
            bind,
            nonce: None,
            policies: PolicySet::default(),
            limits: DecodeLimits::default(),
            handshake_timeout: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(900)),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(15),
            send_queue_bytes: 256 << 20,
            inject_qp_failures: 0,
            crc_data: true,
            rdma: RdmaOptions::default(),
            workers: 1,
        }
    }
}

/// Work for a reactor thread. [`Shared::send`] routes each to the reactor that owns what it
/// is about: a link's token decides its owner; connection management is reactor 0's.
pub(crate) enum Cmd {
    Dial(Arc<RdmaConnection>),
    Drive(u64),
    Close(u64),
    Dispatch(Arc<RdmaConnection>),
    /// A link reactor 0 established (it runs rdma_cm), for its owner to run.
    Adopt {
        token: u64,
        link: Box<crate::link::Link>,
        conn: Arc<RdmaConnection>,
        outgoing: bool,
    },
    /// rdma_cm reported DISCONNECTED for the link.
    Disconnected(u64),
    /// Deliver loopback messages.
    Loopback,
    /// Fault injection: move the link's QP to the error state.
    FaultQp(u64),
    Shutdown,
}

/// The way into one reactor thread: its command queue, its waker, its counters.
#[derive(Default)]
pub(crate) struct ReactorPort {
    cmds: Mutex<Vec<Cmd>>,
    pub waker: OnceLock<mio::Waker>,
    pub counters: Mutex<RdmaCounters>,
}

/// RDMA-specific counters of a messenger (sums over its links, live and past).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdmaCounters {
    /// Send buffers posted and not completed / free, over live links.
    pub send_buffers_in_use: u64,
    pub send_buffers_free: u64,
    /// Receive buffers holding data not consumed yet, over live links.
    pub recv_buffers_held: u64,
    /// Times a link had data waiting and no credit (sends waiting for credits).
    pub credit_stalls: u64,
    /// Links waiting for credits right now.
    pub links_waiting_for_credits: u64,
    pub credit_messages: u64,
    pub completions_with_error: u64,
    pub rnr_events: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub data_sends: u64,
    pub data_recvs: u64,
    pub live_links: u64,
    /// Large payloads sent as READ requests; of those, how many needed a registration of
    /// their own (the others lay in a `RegisteredBuffer`), and how many were copied through
    /// send buffers instead because registration failed.
    pub read_requests: u64,
    pub read_registrations: u64,
    pub read_fallbacks: u64,
    /// RDMA READs this side completed, and their bytes.
    pub reads: u64,
    pub read_bytes: u64,
    /// READ payloads copied into the session's buffer instead of spliced in.
    pub read_copies: u64,
    /// READ destinations registered; the other READs reused a pooled registration.
    pub read_buffers_registered: u64,
    /// Payloads exposed for the peer's READ and not released yet, over live links.
    pub exposed_regions: u64,
}

impl RdmaCounters {
    /// Add `o`'s counts to these.
    pub fn add(&mut self, o: &RdmaCounters) {
        let RdmaCounters {
            send_buffers_in_use,
            send_buffers_free,
            recv_buffers_held,
            credit_stalls,
            links_waiting_for_credits,
            credit_messages,
            completions_with_error,
            rnr_events,
            bytes_out,
            bytes_in,
            data_sends,
            data_recvs,
            live_links,
            read_requests,
            read_registrations,
            read_fallbacks,
            reads,
            read_bytes,
            read_copies,
            read_buffers_registered,
            exposed_regions,
        } = o;
        self.send_buffers_in_use += send_buffers_in_use;
        self.send_buffers_free += send_buffers_free;
        self.recv_buffers_held += recv_buffers_held;
        self.credit_stalls += credit_stalls;
        self.links_waiting_for_credits += links_waiting_for_credits;
        self.credit_messages += credit_messages;
        self.completions_with_error += completions_with_error;
        self.rnr_events += rnr_events;
        self.bytes_out += bytes_out;
        self.bytes_in += bytes_in;
        self.data_sends += data_sends;
        self.data_recvs += data_recvs;
        self.live_links += live_links;
        self.read_requests += read_requests;
        self.read_registrations += read_registrations;
        self.read_fallbacks += read_fallbacks;
        self.reads += reads;
        self.read_bytes += read_bytes;
        self.read_copies += read_copies;
        self.read_buffers_registered += read_buffers_registered;
        self.exposed_regions += exposed_regions;
    }
}

thread_local! {
    /// Address of the `Shared` whose reactor runs on this thread (0: none), and its index.
    static REACTOR_OF_THREAD: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// State shared by the messenger handle, its connections and its reactors: the
/// transport-neutral [`NodeShared`] (reached through `Deref`) plus the reactor ports.
pub(crate) struct Shared {
    pub cfg: RdmaConfig,
    node: NodeShared<Arc<RdmaConnection>>,
    pub ports: Vec<ReactorPort>,
    /// The device the messenger is bound to, for `register_buffer`.
    bound_device: OnceLock<Arc<crate::verbs::Device>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

// The messenger's shared state is the node's plus the transport's own fields: the node's
// fields and methods read as the messenger's (`s.registry`, `s.next_id()`).
impl Deref for Shared {
    type Target = NodeShared<Arc<RdmaConnection>>;
    fn deref(&self) -> &Self::Target {
        &self.node
    }
}

impl Shared {
    /// The reactor that owns link `token`.
    pub fn owner(&self, token: u64) -> usize {
        (token % self.ports.len() as u64) as usize
    }

    /// Queue `cmd` for the reactor it concerns; `Shutdown` goes to all.
    pub fn send(&self, cmd: Cmd) {
        let to = match &cmd {
            Cmd::Drive(t)
            | Cmd::Close(t)
            | Cmd::Disconnected(t)
            | Cmd::FaultQp(t)
            | Cmd::Adopt { token: t, .. } => self.owner(*t),
            Cmd::Dial(_) | Cmd::Dispatch(_) | Cmd::Loopback => 0,
            Cmd::Shutdown => {
                for i in 1..self.ports.len() {
                    self.send_to(i, Cmd::Shutdown);
                }
                0
            }
        };
        self.send_to(to, cmd);
    }

    fn send_to(&self, i: usize, cmd: Cmd) {
        let port = &self.ports[i];
        let was_empty = {
            let mut q = port.cmds.lock();
            let e = q.is_empty();
            q.push(cmd);
            e
        };
        // A reactor drains its queue before it polls again: no wake-up for itself.
        let me = (self as *const Shared as usize, i);
        let on_reactor = REACTOR_OF_THREAD.with(|r| r.get() == me);
        if was_empty && !on_reactor {
            if let Some(w) = port.waker.get() {
                let _ = w.wake();
            }
        }
    }
    pub fn has_cmds(&self, i: usize) -> bool {
        !self.ports[i].cmds.lock().is_empty()
    }
    /// Mark the calling thread as this messenger's reactor `i`.
    pub fn enter_reactor(&self, i: usize) {
        REACTOR_OF_THREAD.with(|r| r.set((self as *const Shared as usize, i)));
    }
    pub fn take_cmds(&self, i: usize, into: &mut Vec<Cmd>) {
        std::mem::swap(&mut *self.ports[i].cmds.lock(), into);
    }
}

/// A messenger speaking msgr1 over RDMA (rdma_cm + RC queue pairs). Cheap to clone.
///
/// `workers` reactor threads: the first owns the rdma_cm event channel; established queue
/// pairs are spread over all of them, each running its links' sessions and dispatcher
/// callbacks (a slow dispatcher stops receives from being re-posted, which runs the peer out
/// of credits: that is the back-pressure).
#[derive(Clone)]
pub struct RdmaMessenger {
    shared: Arc<Shared>,
}

impl RdmaMessenger {
    pub fn new(cfg: RdmaConfig) -> Self {
        let workers = cfg.workers.max(1);
        RdmaMessenger {
            shared: Arc::new(Shared {
                node: NodeShared::new(cfg.name, cfg.bind, cfg.nonce, cfg.policies.clone()),
                cfg,
                ports: (0..workers).map(|_| ReactorPort::default()).collect(),
                bound_device: OnceLock::new(),
                threads: Mutex::new(Vec::new()),
            }),
        }
    }

    /// RDMA-level counters (buffers, credits, completion errors, RNR).
    /// `len` zeroed bytes registered once with the messenger's device, for zero-copy sends:
    /// fill it, `freeze()` it into `Bytes` and use that (or slices of it) as message data.
    /// Payloads of at least `read_threshold` bytes inside it are read by the peer straight
    /// from it, with no registration per message (`RdmaCounters::read_registrations` does not
    /// grow). Needs a started messenger bound to an RDMA device's address.
    pub fn register_buffer(&self, len: usize) -> Result<RegisteredBuffer, RdmaError> {
        let device = self.shared.bound_device.get().ok_or_else(|| RdmaError::NoDevice {
            detail: format!(
                "register_buffer needs a started messenger bound to an RDMA device's IP address (bind is {}); start it first, and bind to the IP of the device's netdev rather than a wildcard",
                self.shared.cfg.bind
            ),
        })?;
        RegisteredBuffer::new(device, len)
    }

    /// Sums over the reactors (each publishes its links' counters as it runs).
    pub fn rdma_counters(&self) -> RdmaCounters {
        let mut sum = RdmaCounters::default();
        for p in &self.shared.ports {
            sum.add(&p.counters.lock());
        }
        sum
    }

    /// Fault injection: force the queue pair of the connection to `addr` into the error state.
    /// A lossless session reconnects and replays; a lossy one is reset.
    pub fn inject_qp_error(&self, addr: &EntityAddr) -> bool {
        match self.shared.registry.get(addr) {
            Some(c) => {
                let link = c.core.inner.lock().link;
                match link {
                    Some(t) => {
                        self.shared.send(Cmd::FaultQp(t));
                        true
                    }
                    None => false,
                }
            }
            None => false,
        }
    }

    fn connect_rdma(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
    ) -> Result<Arc<RdmaConnection>, MessengerError> {
        let s = &self.shared;
        let Some(_) = addr.addr else {
            return Err(MessengerError::Transport(format!(
                "cannot connect to {addr:?}: it has no IP address and port"
            )));
        };
        let (conn, created) = s.dialing_conn(
            peer_type,
            addr,
            Instant::now(),
            |c| c.is_closed(),
            |session, policy| {
                let conn = RdmaConnection::new(s, session, *addr, peer_type, true);
                conn.init_throttle(peer_type, &policy);
                conn.core.inner.lock().reconnect_pending = true;
                conn
            },
        );
        if created {
            s.send(Cmd::Dial(conn.clone()));
        }
        Ok(conn)
    }
}

impl Messenger for RdmaMessenger {
    fn my_name(&self) -> EntityName {
        self.shared.cfg.name
    }
    fn my_addr(&self) -> EntityAddr {
        self.shared.my_addr()
    }
    fn set_policy(&self, peer_type: EntityType, policy: Policy) {
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
        let tr = |e: crate::RdmaError| MessengerError::Transport(e.to_string());
        let hello = Hello {
            entity_type: s.cfg.name.kind.0,
            nonce: s.my_addr().nonce,
            ..Hello::from_options(&s.cfg.rdma)
        };
        let mut opts = s.cfg.rdma.clone();
        // A READ carries one data section: never more than the decoder would accept.
        opts.max_read = s.cfg.limits.max_data as usize;
        let mut ep = Endpoint::new(opts, hello).map_err(|e| fail(tr(e)))?;
        let bound = ep.listen(s.cfg.bind).map_err(|e| fail(tr(e)))?;
        if let Some(d) = ep.bound_device() {
            let _ = s.bound_device.set(d);
        }
        let my_addr = s.set_bound(bound, |scfg| {
            scfg.limits = s.cfg.limits;
            scfg.handshake_timeout = s.cfg.handshake_timeout;
            scfg.keepalive_interval = s.cfg.keepalive_interval;
            scfg.idle_timeout = s.cfg.idle_timeout;
            scfg.crc_data = s.cfg.crc_data;
        });
        let lb_shared = Arc::downgrade(s);
        s.install_loopback(move || {
            if let Some(s) = lb_shared.upgrade() {
                s.send(Cmd::Loopback);
            }
        });
        // Reactor 0 runs rdma_cm (the endpoint); the others only links.
        let mut ep = Some(ep);
        for i in 0..s.ports.len() {
            let reactor =
                Reactor::new(s.clone(), i, ep.take()).map_err(|e| fail(MessengerError::Io(e)))?;
            let t = std::thread::Builder::new()
                .name(format!("msgr-rdma-{i}"))
                .spawn(move || reactor.run())
                .map_err(|e| fail(MessengerError::Io(e)))?;
            s.threads.lock().push(t);
        }
        tracing::info!(target: "msgr_rdma", addr = %bound, nonce = my_addr.nonce, "RDMA messenger started");
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
        Ok(self.connect_rdma(peer_type, addr)?)
    }

    fn mark_down(&self, addr: &EntityAddr) {
        self.shared.registry.mark_down(addr);
    }

    fn mark_down_all(&self) {
        self.shared.registry.mark_down_all();
    }

    fn shutdown(&self) {
        let s = &self.shared;
        if !s.begin_shutdown() {
            return;
        }
        s.send(Cmd::Shutdown);
        for t in std::mem::take(&mut *s.threads.lock()) {
            if t.join().is_err() {
                tracing::error!(target: "msgr_rdma", "a reactor thread panicked");
            }
        }
        s.finish_shutdown(|c| {
            let _ = c.mark_down_now();
            c.run_dispatch();
        });
    }

    fn counters(&self) -> MessengerCounters {
        self.shared.counters.snapshot()
    }
}
