//! `netfault node`: one daemon of the netfault stage. It runs a lossless messenger, sends
//! `count` numbered payloads to every other node, checks what it receives (`track.rs`), and
//! writes its report when the driver says stop.
//!
//! Files in the shared run folder (the namespaces share the file system):
//! - `addr.N`: node N's `IP:PORT/NONCE`, written once it listens. It is the cluster's map: a node
//!   that sees a peer's address change (a restart with a new nonce) marks the old one down, as
//!   a Ceph daemon does on a new osdmap, and the old session's queue comes back undelivered.
//! - `status.N`: the report so far, for the driver to time its faults (and show on a failure).
//! - `done.N.INC`: this incarnation has sent everything and received every stream to its end.
//! - `stop`: written by the driver; then `report.N.INC` and exit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use msgr::{ConnectionRef, Dispatcher, EntityAddr, EntityType, Message, Messenger, MessengerError};
use msgr_core::session::SessionError;
use parking_lot::Mutex;

use crate::args::Args;
use crate::track::{self, Stream, Undelivered};

/// How often the map, the progress file and the stop file are looked at.
const TICK: Duration = Duration::from_millis(50);

/// The address node `i` binds to: 10.77.0.(i+1) inside the stage's namespaces.
pub fn node_ip(i: u32) -> IpAddr {
    IpAddr::from([10, 77, 0, i as u8 + 1])
}

/// Node `i`'s index from an address of the stage's subnet.
fn index_of(a: &EntityAddr) -> Option<u32> {
    match a.addr?.ip() {
        IpAddr::V4(v4) if v4.octets()[..3] == [10, 77, 0] => Some(u32::from(v4.octets()[3]) - 1),
        _ => None,
    }
}

/// What one node does; see the module docs.
pub struct NodeSpec {
    pub index: u32,
    pub inc: u32,
    pub nodes: u32,
    pub count: u64,
    pub size: usize,
    pub dir: PathBuf,
    pub transport: String,
    pub port: u16,
    pub nonce: Option<u32>,
    pub keepalive_ms: u64,
    pub idle_ms: u64,
    pub rdma_device: Option<String>,
}

impl NodeSpec {
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        Ok(NodeSpec {
            index: a.num("index")?,
            inc: a.num_or("inc", 0)?,
            nodes: a.num_or("nodes", 3)?,
            count: a.num("count")?,
            size: a.num_or("size", 32)?,
            dir: a.path("dir")?,
            transport: a.text_or("transport", "tcp"),
            port: a.num_or("port", 6800)?,
            nonce: a.opt_num("nonce")?,
            keepalive_ms: a.num_or("keepalive-ms", 500)?,
            idle_ms: a.num_or("idle-ms", 5000)?,
            rdma_device: a.opt_text("rdma-device"),
        })
    }

    fn config(&self) -> Result<msgr::Config, String> {
        let bind = SocketAddr::new(node_ip(self.index), self.port);
        let nonce = self
            .nonce
            .map(|n| format!("nonce = {n}\n"))
            .unwrap_or_default();
        let rdma = match &self.rdma_device {
            Some(d) => format!(
                "[rdma]\ndevice = \"{d}\"\nbuffer_size = 16384\nsend_buffers = 16\nrecv_buffers = 16\n"
            ),
            None => String::new(),
        };
        let text = format!(
            "name = \"osd.{}\"\ntransports = [\"{}\"]\nbind = \"{bind}\"\n{nonce}workers = 1\n\
             [policy.default]\npreset = \"lossless_peer\"\n\
             [limits]\nsend_queue_bytes = 16384\n\
             [timeouts]\nhandshake_ms = 30000\nkeepalive_ms = {}\nidle_ms = {}\n\
             reconnect_initial_ms = 50\nreconnect_max_ms = 1000\nshutdown_flush_ms = 2000\n{rdma}",
            self.index, self.transport, self.keepalive_ms, self.idle_ms
        );
        msgr::Config::from_toml_str(&text, &format!("<netfault node {}>", self.index))
            .map_err(|e| e.to_string())
    }
}

/// What the dispatcher records.
struct Tracker {
    streams: Mutex<HashMap<u32, Stream>>,
    undelivered: Mutex<HashMap<u32, Undelivered>>,
    resets: Mutex<HashMap<u32, (u64, u64)>>,
    bad: AtomicU64,
    /// Faults by cause ([`FAULT_CAUSES`]), to tell a timeout from a broken link in the table.
    fault_causes: [AtomicU64; 4],
}

/// How the report names the causes of faults, in [`fault_cause`]'s order.
pub const FAULT_CAUSES: [&str; 4] = ["idle", "handshake", "link", "other"];

/// Index into [`FAULT_CAUSES`].
fn fault_cause(e: &SessionError) -> usize {
    match e {
        SessionError::IdleTimeout(_) => 0,
        SessionError::HandshakeTimeout(_) => 1,
        SessionError::LinkFailed(_) | SessionError::Transport { .. } => 2,
        _ => 3,
    }
}

impl Tracker {
    fn peer(conn: &ConnectionRef) -> u32 {
        index_of(&conn.peer_addr()).unwrap_or(u32::MAX)
    }
    fn hand_back(&self, conn: &ConnectionRef, msgs: &[Message]) {
        self.undelivered
            .lock()
            .entry(Self::peer(conn))
            .or_default()
            .handed_back(msgs);
    }
}

impl Dispatcher for Tracker {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        if let Some((sender, inc, _count)) = track::parse_fin(&msg) {
            self.streams.lock().entry(sender).or_default().finished(inc);
            return;
        }
        match track::parse(&msg) {
            // (msgr1's handshake does not carry the peer's number: the payload names the sender.)
            Some((sender, inc, seq)) if index_of(&conn.peer_addr()) == Some(sender) => {
                self.streams
                    .lock()
                    .entry(sender)
                    .or_default()
                    .receive(inc, seq);
            }
            _ => {
                self.bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        self.resets.lock().entry(Self::peer(conn)).or_default().0 += 1;
        self.hand_back(conn, &undelivered);
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        self.resets.lock().entry(Self::peer(conn)).or_default().1 += 1;
    }
    fn ms_handle_remote_reset_undelivered(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        self.hand_back(conn, &undelivered);
    }
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        self.fault_causes[fault_cause(error)].fetch_add(1, Ordering::Relaxed);
    }
}

/// The peers' addresses as the map files say; one lock per peer, held around each send so a
/// map change never races a send to the old address.
type Map = Arc<Vec<Mutex<Option<EntityAddr>>>>;

fn read_addr(dir: &Path, i: u32) -> Option<EntityAddr> {
    let s = std::fs::read_to_string(dir.join(format!("addr.{i}"))).ok()?;
    let (sock, nonce) = s.trim().rsplit_once('/')?;
    Some(EntityAddr::new(sock.parse().ok()?, nonce.parse().ok()?))
}

/// Writes `text` to `path` atomically (readers never see half a file).
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    // Each file has one writer; its temporary name must not collide with another file's.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs the node until the driver writes `stop`.
pub fn run(spec: NodeSpec) -> Result<(), String> {
    msgr_tests::harness::init_logging();
    let cfg = spec.config()?;
    let node = msgr::from_config(&cfg).map_err(|e| e.to_string())?;
    let tracker = Arc::new(Tracker {
        streams: Mutex::new(HashMap::new()),
        undelivered: Mutex::new(HashMap::new()),
        resets: Mutex::new(HashMap::new()),
        bad: AtomicU64::new(0),
        fault_causes: Default::default(),
    });
    node.add_dispatcher(tracker.clone());
    node.start().map_err(|e| e.to_string())?;
    let me = node.my_addr();
    let sock = me.addr.ok_or("the node has no address after start")?;
    write_file(
        &spec.dir.join(format!("addr.{}", spec.index)),
        &format!("{sock}/{}\n", me.nonce),
    )?;
    eprintln!(
        "netfault node {} inc {} listening on {sock}/{}",
        spec.index, spec.inc, me.nonce
    );

    let map: Map = Arc::new((0..spec.nodes).map(|_| Mutex::new(None)).collect());
    let peers: Vec<u32> = (0..spec.nodes).filter(|&p| p != spec.index).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..spec.nodes).map(|_| AtomicU64::new(0)).collect());
    let mut senders = Vec::new();
    for &p in &peers {
        let (node, map, stop, sent) = (node.clone(), map.clone(), stop.clone(), sent.clone());
        let (me, inc, count, size) = (spec.index, spec.inc, spec.count, spec.size);
        senders.push(std::thread::spawn(move || {
            send_all(
                &node,
                &map[p as usize],
                p,
                me,
                inc,
                count,
                size,
                &stop,
                &sent[p as usize],
            )
        }));
    }

    let done_file = spec.dir.join(format!("done.{}.{}", spec.index, spec.inc));
    let mut done = false;
    loop {
        refresh_map(&node, &spec.dir, &map, &peers);
        let status = report(&spec, &node, &tracker, &peers, &sent);
        write_file(&spec.dir.join(format!("status.{}", spec.index)), &status)?;
        if !done {
            let all_sent = peers
                .iter()
                .all(|&p| sent[p as usize].load(Ordering::Relaxed) >= spec.count);
            let streams = tracker.streams.lock();
            // A restarted node cannot know where a stream was: the sender's marker ends it.
            let all_in = peers.iter().all(|p| {
                streams
                    .get(p)
                    .is_some_and(|s| s.fin && (s.next >= spec.count || spec.inc > 0))
            });
            drop(streams);
            if all_sent && all_in {
                write_file(&done_file, "done\n")?;
                done = true;
            }
        }
        if spec.dir.join("stop").exists() {
            break;
        }
        std::thread::sleep(TICK);
    }
    stop.store(true, Ordering::Relaxed);
    for h in senders {
        let _ = h.join();
    }
    let report = report(&spec, &node, &tracker, &peers, &sent);
    write_file(
        &spec.dir.join(format!("report.{}.{}", spec.index, spec.inc)),
        &report,
    )?;
    node.shutdown();
    Ok(())
}

/// Sends payloads 0..count to peer `p`, waiting for room when the send queue is full and for
/// a new connection when the old one was marked down; then the end marker now and then.
#[allow(clippy::too_many_arguments)]
fn send_all(
    node: &msgr::Node,
    addr: &Mutex<Option<EntityAddr>>,
    p: u32,
    me: u32,
    inc: u32,
    count: u64,
    size: usize,
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    let mut seq = 0;
    let mut fins = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // After the last payload, the end marker every 10 ticks until the driver stops us.
        let msg = if seq < count {
            track::payload(me, inc, seq, size)
        } else {
            fins += 1;
            if fins % 10 != 1 {
                std::thread::sleep(TICK);
                continue;
            }
            track::fin(me, inc, count)
        };
        let g = addr.lock();
        let Some(a) = *g else {
            drop(g);
            std::thread::sleep(TICK);
            continue;
        };
        let r = node
            .connect_to(EntityType::OSD, &a)
            .and_then(|c| c.send_message(msg));
        drop(g);
        if seq >= count {
            continue;
        }
        match r {
            Ok(()) => {
                seq += 1;
                sent.store(seq, Ordering::Relaxed);
            }
            Err(MessengerError::QueueFull { .. }) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                eprintln!("netfault node {me}: send {seq} to node {p}: {e}; retrying");
                std::thread::sleep(TICK);
            }
        }
    }
}

/// Reads the peers' address files; a changed address marks the old one down.
fn refresh_map(node: &msgr::Node, dir: &Path, map: &Map, peers: &[u32]) {
    for &p in peers {
        let Some(new) = read_addr(dir, p) else {
            continue;
        };
        let mut g = map[p as usize].lock();
        if *g != Some(new) {
            eprintln!("netfault: node {p} is at {new}");
            if let Some(old) = g.replace(new) {
                eprintln!("netfault: node {p} moved from {old} to {new}: marking the old one down");
                node.mark_down(&old);
            }
        }
    }
}

fn report(
    spec: &NodeSpec,
    node: &msgr::Node,
    t: &Tracker,
    peers: &[u32],
    sent: &[AtomicU64],
) -> String {
    let c = node.counters();
    let k = &c.connections;
    let mut out = format!(
        "node index={} inc={} reconnects={} replayed={} faults={} bad={} messages_in={} messages_out={}",
        spec.index,
        spec.inc,
        k.reconnects,
        k.replayed,
        k.faults,
        t.bad.load(Ordering::Relaxed),
        k.messages_in,
        k.messages_out
    );
    for (name, n) in FAULT_CAUSES.iter().zip(&t.fault_causes) {
        out += &format!(" fault_{name}={}", n.load(Ordering::Relaxed));
    }
    out.push('\n');
    let streams = t.streams.lock();
    let und = t.undelivered.lock();
    let resets = t.resets.lock();
    for &p in peers {
        let s = streams.get(&p).cloned().unwrap_or_default();
        let u = und.get(&p).cloned().unwrap_or_default();
        let (r, rr) = resets.get(&p).copied().unwrap_or_default();
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        out += &format!(
            "peer idx={p} sent={} inc={} first={} next={} delivered={} dup={} gaps={} stale={} \
             und={} und_first={} und_last={} und_in_order={} resets={r} remote_resets={rr}\n",
            sent[p as usize].load(Ordering::Relaxed),
            s.inc,
            opt(s.first),
            s.next,
            s.delivered,
            s.duplicated,
            s.gaps,
            s.stale,
            u.count,
            opt(u.first),
            opt(u.last),
            u8::from(u.in_order),
        );
    }
    out
}
