//! Building nodes and watching what their dispatchers see.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use msgr::{
    Config, ConnectionRef, Dispatcher, EntityAddr, EntityName, EntityType, Message, Messenger,
};
use msgr_core::session::SessionError;

/// Safety-net deadline for every wait (never asserted on; a hang becomes a failure).
pub const WAIT: Duration = Duration::from_secs(60);

/// The IP test nodes bind to: `$MSGR_TEST_BIND_IP`, else for RDMA `$RDMA_IP` (the address of
/// the netdev under the RDMA device, set inside the Soft-RoCE VM; 127.0.0.1 does not work over
/// rdma_cm), else 127.0.0.1.
pub fn bind_ip(transport: &str) -> std::net::IpAddr {
    let from = |var: &str| {
        let v = std::env::var(var).ok()?;
        Some(
            v.parse()
                .unwrap_or_else(|_| panic!("{var}={v:?} is not an IP address")),
        )
    };
    from("MSGR_TEST_BIND_IP")
        .or_else(|| (transport == "rdma").then(|| from("RDMA_IP")).flatten())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// A configuration for tests: `transport`, an ephemeral port on [`bind_ip`], quick reconnects,
/// no keepalive, a short handshake timeout. One worker for TCP; two reactors for RDMA, so
/// links are handed from the rdma_cm reactor to another and sessions move between reactors
/// on reconnects.
///
/// `transport` may list several, comma-separated, in order of preference (`"rdma,tcp"`), and
/// end in `@v2` to make msgr2 the protocol nodes dial with (`"tcp@v2"`; default msgr1).
pub fn test_config(transport: &str, name: &str) -> Config {
    let (transport, protocol) = transport.split_once('@').unwrap_or((transport, "v1"));
    let list: Vec<&str> = transport.split(',').map(str::trim).collect();
    let rdma = list.contains(&"rdma");
    let bind = std::net::SocketAddr::new(bind_ip(if rdma { "rdma" } else { list[0] }), 0);
    let workers = if rdma { 2 } else { 1 };
    let transports = list
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "name = \"{name}\"\ntransports = [{transports}]\nbind = \"{bind}\"\nworkers = {workers}\n\
         [timeouts]\nhandshake_ms = 5000\nkeepalive_ms = 0\nidle_ms = 0\n\
         reconnect_initial_ms = 5\nreconnect_max_ms = 100\nshutdown_flush_ms = 1000\n\
         [protocol]\nprefer = \"{protocol}\"\n"
    );
    let mut cfg =
        Config::from_toml_str(&text, &format!("<test {name}>")).expect("test config is valid");
    if cfg.uses(msgr::Transport::Rdma) {
        // Small registered pools: the stress scenario's 256 connection ends must fit the
        // Soft-RoCE VM's memory, and messages then span many buffers (more paths exercised).
        cfg.rdma.buffer_size = 16 << 10;
        cfg.rdma.send_buffers = 8;
        cfg.rdma.recv_buffers = 8;
        if let Ok(dev) = std::env::var("RDMA_DEV") {
            cfg.rdma.device = dev;
        }
    }
    cfg
}

/// The transport of a [`test_config`] spec without its `@v2` suffix (`"tcp@v2"` -> `"tcp"`),
/// as `Connection::transport` and the counters name it.
pub fn transport_name(spec: &str) -> &str {
    spec.split_once('@').map_or(spec, |(t, _)| t)
}

/// Panics (the test fails) unless an RDMA device and the address to use on it are present
/// (the guard of the RDMA test targets).
pub fn require_rdma() {
    if !has_rdma_device() {
        panic!(
            "this test needs an RDMA device and none is present (/sys/class/infiniband is empty \
             or missing). It did NOT run. Run the binary inside the Soft-RoCE VM: \
             `cargo xtask test --only rdma` (or build the test binary with `cargo test -p msgr-tests \
             --no-run` and run it with `scripts/rdma-vm/run.sh BINARY --test-threads 1 \
             --include-ignored`)"
        );
    }
    if std::env::var_os("MSGR_TEST_BIND_IP").is_none() && std::env::var_os("RDMA_IP").is_none() {
        panic!(
            "an RDMA device exists but neither RDMA_IP nor MSGR_TEST_BIND_IP is set, so the test \
             did NOT run: export RDMA_IP=<IP of the netdev under the device> (see `rdma link show`)"
        );
    }
}

/// Whether this machine has an RDMA device (`/sys/class/infiniband` lists one).
pub fn has_rdma_device() -> bool {
    std::fs::read_dir("/sys/class/infiniband")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Make tracing output visible with RUST_LOG (once per process).
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    });
}

/// What a dispatcher saw, by connection peer address.
#[derive(Default)]
pub struct Seen {
    pub messages: Vec<(EntityAddr, Message)>,
    pub connects: u64,
    pub accepts: u64,
    pub resets: u64,
    pub remote_resets: u64,
    /// Messages handed back by `ms_handle_remote_reset_undelivered`.
    pub remote_reset_undelivered: Vec<Message>,
    pub faults: u64,
    /// The errors of faults and resets, as text, in order.
    pub errors: Vec<String>,
    pub undelivered: Vec<Message>,
    pub refused: u64,
    pub last_conn: Option<ConnectionRef>,
    pub conns: HashMap<EntityAddr, ConnectionRef>,
}

/// A dispatcher that records everything, optionally echoes messages back, and lets tests wait
/// for a condition.
pub struct Recorder {
    pub seen: Mutex<Seen>,
    cv: Condvar,
    pub echo: AtomicBool,
    /// Keep throttle budget until the test releases it.
    pub defer: AtomicBool,
    /// Accept hook: refuse peers of this type (0 = none).
    pub refuse_type: AtomicU64,
    /// Store messages (turn off for big stress runs that check in `on_message`).
    pub keep: AtomicBool,
    #[allow(clippy::type_complexity)]
    pub on_message: Mutex<Option<Box<dyn Fn(&ConnectionRef, &Message) + Send + Sync>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            seen: Mutex::new(Seen::default()),
            cv: Condvar::new(),
            echo: AtomicBool::new(false),
            defer: AtomicBool::new(false),
            refuse_type: AtomicU64::new(0),
            keep: AtomicBool::new(true),
            on_message: Mutex::new(None),
        }
    }
}

impl Recorder {
    fn update(&self, f: impl FnOnce(&mut Seen)) {
        let mut s = self.seen.lock();
        f(&mut s);
        drop(s);
        self.cv.notify_all();
    }

    /// Wait until `pred` holds; panics with `what` if the safety net runs out. Re-checks on
    /// every dispatcher callback and every few milliseconds (predicates may look at counters
    /// or connections, which change without a callback).
    pub fn wait(&self, what: &str, pred: impl FnMut(&Seen) -> bool) {
        self.wait_or(what, pred, String::new);
    }

    /// [`Recorder::wait`], and on giving up `detail` says where things stand.
    pub fn wait_or(
        &self,
        what: &str,
        mut pred: impl FnMut(&Seen) -> bool,
        detail: impl FnOnce() -> String,
    ) {
        let deadline = Instant::now() + WAIT;
        let mut s = self.seen.lock();
        while !pred(&s) {
            if Instant::now() >= deadline {
                drop(s);
                panic!("gave up waiting for: {what}\n{}", detail());
            }
            let _ = self.cv.wait_for(&mut s, Duration::from_millis(5));
        }
    }

    pub fn message_count(&self) -> usize {
        self.seen.lock().messages.len()
    }

    pub fn take_messages(&self) -> Vec<(EntityAddr, Message)> {
        std::mem::take(&mut self.seen.lock().messages)
    }
}

impl Dispatcher for Recorder {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        if let Some(f) = self.on_message.lock().as_ref() {
            f(conn, &msg);
        }
        if self.echo.load(Ordering::Relaxed) {
            let mut reply = Message::new(msg.msg_type, msg.front.clone())
                .with_middle(msg.middle.clone())
                .with_data(msg.data.clone())
                .with_priority(msg.priority)
                .with_tid(msg.tid);
            reply.version = msg.version;
            reply.compat_version = msg.compat_version;
            // A closed connection cannot echo; the sender's check will notice the gap.
            let _ = conn.send_message(reply);
        }
        let keep = self.keep.load(Ordering::Relaxed);
        let addr = conn.peer_addr();
        self.update(|s| {
            s.conns.entry(addr).or_insert_with(|| conn.clone());
            if keep {
                s.messages.push((addr, msg));
            } else {
                s.messages.push((
                    addr,
                    Message {
                        front: bytes::Bytes::new(),
                        middle: bytes::Bytes::new(),
                        data: bytes::Bytes::new(),
                        ..msg
                    },
                ));
            }
        });
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        self.update(|s| {
            s.connects += 1;
            s.last_conn = Some(conn.clone());
        });
    }
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        let addr = conn.peer_addr();
        self.update(|s| {
            s.accepts += 1;
            s.last_conn = Some(conn.clone());
            s.conns.insert(addr, conn.clone());
        });
    }
    fn ms_handle_reset(&self, _conn: &ConnectionRef, undelivered: Vec<Message>) {
        self.update(|s| {
            s.resets += 1;
            s.undelivered.extend(undelivered);
        });
    }
    fn ms_handle_remote_reset(&self, _conn: &ConnectionRef) {
        self.update(|s| s.remote_resets += 1);
    }
    fn ms_handle_remote_reset_undelivered(&self, _conn: &ConnectionRef, undelivered: Vec<Message>) {
        self.update(|s| s.remote_reset_undelivered.extend(undelivered));
    }
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        self.update(|s| {
            s.faults += 1;
            s.errors.push(error.to_string());
        });
    }
    fn defer_release(&self) -> bool {
        self.defer.load(Ordering::Relaxed)
    }
    fn ms_verify_accept(&self, _peer_addr: &EntityAddr, peer_type: EntityType) -> bool {
        let refuse = self.refuse_type.load(Ordering::Relaxed);
        if refuse != 0 && refuse == peer_type.0 as u64 {
            self.update(|s| s.refused += 1);
            return false;
        }
        true
    }
}

/// A started messenger and its recorder; shut down on drop.
pub struct Node {
    pub msgr: msgr::Node,
    pub rec: Arc<Recorder>,
}

impl Node {
    pub fn addr(&self) -> EntityAddr {
        self.msgr.my_addr()
    }
    pub fn name(&self) -> EntityName {
        self.msgr.my_name()
    }
    pub fn echo(self) -> Self {
        self.rec.echo.store(true, Ordering::Relaxed);
        self
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.msgr.shutdown();
    }
}

/// Build and start a node from `test_config(transport, name)` after `tweak`.
pub fn node(transport: &str, name: &str, tweak: impl FnOnce(&mut Config)) -> Node {
    init_logging();
    let mut cfg = test_config(transport, name);
    tweak(&mut cfg);
    let msgr = msgr::from_config(&cfg).expect("transport available");
    let rec = Arc::new(Recorder::default());
    msgr.add_dispatcher(rec.clone());
    msgr.start().expect("messenger starts");
    Node { msgr, rec }
}

/// A message whose payload says who sent it and which one it is (checked by `check_payload`).
pub fn numbered(tid: u64, front_len: usize, data_len: usize) -> Message {
    Message::new(42, pattern(tid, front_len))
        .with_data(pattern(tid ^ 0xdead_beef, data_len))
        .with_tid(tid)
}

/// Deterministic bytes for `seed`.
pub fn pattern(seed: u64, len: usize) -> bytes::Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&b[..n]);
    }
    v.into()
}

/// The payload matches what `numbered(m.tid, ..)` produced.
pub fn check_payload(m: &Message) -> bool {
    m.front == pattern(m.tid, m.front.len()) && m.data == pattern(m.tid ^ 0xdead_beef, m.data.len())
}
