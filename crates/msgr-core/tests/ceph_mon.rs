//! Interop: a `Session` driven over a plain blocking `TcpStream` against a real Ceph monitor
//! (Pacific, Debian's `ceph-mon`), started by `scripts/ceph-mon/start.sh` (or
//! `../shared/ceph-mon/start.sh` when the repo's copy is missing) on 127.0.0.1, v1 only.
//!
//! `MSGR_CEPH_MON_ADDR=IP:PORT` uses an already running monitor instead. Plain `cargo test` ignores
//! these tests (they need Debian's ceph-mon); `cargo xtask test` runs them with
//! `--include-ignored`, and if no monitor can be started they fail, saying why.
//!
//! Scenarios, each on its own connection: handshake as a lossy client (protocol 15),
//! KEEPALIVE2 answered with the stamp echoed, MAuth (auth none) answered by MAuthReply with
//! result 0, MMonGetVersion answered by MMonGetVersionReply, and a message with a bad header
//! CRC makes the monitor drop the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use msgr_core::message::Message;
use msgr_core::policy::Policy;
use msgr_core::session::{
    GlobalSeq, Session, SessionConfig, SessionError, SessionEvent, SessionState,
};
use msgr_core::wire::features::{self, has_feature};
use msgr_core::wire::frame;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

mod mon;
use mon::{mauth_front, CEPH_MSG_MON_GET_VERSION_REPLY};

const CEPH_MSG_AUTH: u16 = 17;
const CEPH_MSG_AUTH_REPLY: u16 = 18;

/// How long any single exchange may take before the test gives up (a failure, not a timing).
const PATIENCE: Duration = Duration::from_secs(15);

/// The monitor's msgr1 address (started once per test binary).
fn monitor() -> SocketAddr {
    static MON: OnceLock<SocketAddr> = OnceLock::new();
    *MON.get_or_init(find_or_start_monitor)
}

/// From MSGR_CEPH_MON_ADDR, or a monitor we start.
fn find_or_start_monitor() -> SocketAddr {
    if let Ok(a) = std::env::var("MSGR_CEPH_MON_ADDR") {
        return a
            .parse()
            .unwrap_or_else(|e| panic!("MSGR_CEPH_MON_ADDR={a:?} is not IP:PORT: {e}"));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = [
        root.join("scripts/ceph-mon/start.sh"),
        root.join("../shared/ceph-mon/start.sh"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| {
        panic!(
            "no ceph-mon start script: expected scripts/ceph-mon/start.sh in the repo \
             (or ../shared/ceph-mon/start.sh); set MSGR_CEPH_MON_ADDR to use a running monitor"
        )
    });
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../ceph-mon-test");
    // A free port unless one is asked for: a monitor already running in `dir` is reused by the
    // script (with its own port); another checkout's monitor on a fixed port must not clash.
    let port = std::env::var("MSGR_CEPH_MON_PORT").unwrap_or_else(|_| {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
        probe
            .local_addr()
            .expect("probe address")
            .port()
            .to_string()
    });
    let out = Command::new("bash")
        .arg(&script)
        .env("CEPH_MON_DIR", &dir)
        .env("V1_PORT", &port)
        .env("V2_PORT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "could not start a Ceph monitor with {} ({}):\n{}\n{}\nIs ceph-mon installed \
             (apt-get install ceph-mon ceph-common) and port {port} free? \
             Set MSGR_CEPH_MON_PORT to use another port.",
            script.display(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // ADDRS=[v1:127.0.0.1:16790]
    let addrs = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ADDRS="))
        .unwrap_or_else(|| panic!("start script printed no ADDRS= line:\n{stdout}"));
    let v1 = addrs
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .find_map(|a| a.strip_prefix("v1:"))
        .unwrap_or_else(|| panic!("no v1 address in ADDRS={addrs}"));
    v1.parse()
        .unwrap_or_else(|e| panic!("bad v1 address {v1:?} in ADDRS={addrs}: {e}"))
}

/// A session on a blocking socket, driven by hand.
struct Client {
    s: Session,
    sock: TcpStream,
    inbox: BytesMut,
    born: Instant,
    events: Vec<SessionEvent>,
    eof: bool,
}

impl Client {
    fn connect(mon: SocketAddr) -> Client {
        let born = Instant::now();
        let nonce = std::process::id() ^ (born.elapsed().subsec_nanos() | 1);
        let mut cfg = SessionConfig::new(
            EntityName::new(EntityType::CLIENT, -1),
            EntityAddr::blank().with_nonce(nonce),
        );
        cfg.features_supported = features::DEFAULT_SUPPORTED;
        Client::with_session(mon, Arc::new(cfg), Policy::lossy_client(), born)
    }

    fn with_session(
        mon: SocketAddr,
        cfg: Arc<SessionConfig>,
        policy: Policy,
        born: Instant,
    ) -> Client {
        // Monitors use nonce 0 (NOTES.md).
        let s = Session::connect(cfg, EntityAddr::new(mon, 0), EntityType::MON, policy, born);
        let mut c = Client {
            s,
            sock: Client::dial(mon),
            inbox: BytesMut::with_capacity(64 << 10),
            born,
            events: Vec::new(),
            eof: false,
        };
        c.s.link_up(born);
        c
    }

    fn dial(mon: SocketAddr) -> TcpStream {
        let sock = TcpStream::connect_timeout(&mon, PATIENCE)
            .unwrap_or_else(|e| panic!("cannot connect to the monitor at {mon}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        sock
    }

    /// Drop the socket under the session and give it a fresh one (a lossless reconnect).
    fn relink(&mut self, mon: SocketAddr) {
        self.s.link_down(
            SessionError::LinkFailed("test closed the socket".into()),
            Instant::now(),
        );
        assert!(
            self.s.wants_reconnect(),
            "a lossless session wants a new link"
        );
        self.sock = Client::dial(mon);
        self.inbox.clear();
        self.s.link_up(Instant::now());
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        while self.s.poll_transmit(&mut out) > 0 {}
        for chunk in out {
            self.sock.write_all(&chunk).expect("write to monitor");
        }
    }

    /// Drive until `pick` takes an event (returned), or fail after PATIENCE.
    fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&SessionEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            self.flush();
            while let Some(e) = self.s.poll_event() {
                let hit = pick(&e);
                self.events.push(e);
                if let Some(v) = hit {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {what} from the monitor within {PATIENCE:?}; session {:?}; events {:?}",
                self.s,
                self.events
            );
            match self.sock.read(&mut buf) {
                Ok(0) => panic!(
                    "monitor closed the connection while we waited for {what}; events {:?}",
                    self.events
                ),
                Ok(n) => {
                    self.inbox.extend_from_slice(&buf[..n]);
                    if let Err(e) = self.s.handle_input(&mut self.inbox, Instant::now()) {
                        panic!("session error while waiting for {what}: {e}");
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read error while waiting for {what}: {e}"),
            }
        }
    }

    fn handshake(&mut self) -> u64 {
        self.until("connect reply", |e| match e {
            SessionEvent::Connected { features, .. } => Some(*features),
            _ => None,
        })
    }

    fn message(&mut self, msg_type: u16) -> Message {
        self.until(&format!("message type {msg_type}"), |e| match e {
            SessionEvent::Message(m) if m.msg_type == msg_type => Some(m.clone()),
            _ => None,
        })
    }

    /// Read until the monitor drops the link (EOF or reset).
    fn expect_drop(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = vec![0u8; 64 << 10];
        while Instant::now() < deadline {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.eof = true;
                    return;
                }
                Err(e) => panic!("unexpected read error: {e}"),
            }
        }
        panic!("the monitor kept the connection open for {PATIENCE:?} after a bad header crc");
    }
}

#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn mauth_front_matches_the_ceph_cli_capture() {
    // Front of the MAuth the real `ceph` command sent (frame 13 of the capture): it offered
    // only auth none.
    let want = "0000000000000000ffff0000000000000000000000001e0000000101000000010000000800\
                00000500000061646d696e000000000000000000000000";
    let got: String = mauth_front(&[1])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, want);
}

/// MAuthReply front: protocol u32, result i32, global_id u64, result_bl, result_msg.
fn parse_mauth_reply(front: &[u8]) -> (u32, i32, u64) {
    let mut b = front;
    assert!(
        b.len() >= 16,
        "MAuthReply front too short: {} bytes",
        b.len()
    );
    (b.get_u32_le(), b.get_i32_le(), b.get_u64_le())
}

#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn real_monitor() {
    let mon = monitor();

    // 1. Handshake as a client: lossy, protocol 15, features negotiated.
    let mut c = Client::connect(mon);
    let feats = c.handshake();
    assert_eq!(c.s.state(), SessionState::Open);
    assert!(
        c.s.policy().lossy,
        "the monitor makes client sessions lossy"
    );
    for (name, mask) in [
        ("MSG_AUTH", features::CEPH_FEATUREMASK_MSG_AUTH),
        (
            "MSGR_KEEPALIVE2",
            features::CEPH_FEATUREMASK_MSGR_KEEPALIVE2,
        ),
        ("RECONNECT_SEQ", features::CEPH_FEATUREMASK_RECONNECT_SEQ),
    ] {
        assert!(
            has_feature(feats, mask),
            "{name} not negotiated: {feats:#x}"
        );
    }
    assert!(
        c.events
            .iter()
            .any(|e| matches!(e, SessionEvent::LearnedAddr(a) if a.ip().is_some())),
        "the monitor tells us our address"
    );

    // 2. KEEPALIVE2: the ack echoes our stamp (seconds / nanoseconds since the session began).
    c.s.send_keepalive(c.born + Duration::from_millis(2_250));
    let stamp = c.until("KEEPALIVE2_ACK", |e| match e {
        SessionEvent::KeepaliveAck { stamp, .. } => Some(*stamp),
        _ => None,
    });
    assert_eq!(stamp, (2, 250_000_000));

    // 3. MAuth with auth none -> MAuthReply result 0 and a global id.
    c.s.send_message(Message::new(CEPH_MSG_AUTH, mauth_front(&[1, 2])));
    let reply = c.message(CEPH_MSG_AUTH_REPLY);
    let (protocol, result, global_id) = parse_mauth_reply(&reply.front);
    assert_eq!((protocol, result), (1, 0), "auth none accepted");
    assert!(global_id > 0);
    assert_eq!(reply.src.kind, EntityType::MON);

    // 4. MMonGetVersion("osdmap") -> MMonGetVersionReply with our handle.
    let handle = 0x5eed_u64;
    c.s.send_message(mon::get_version(handle));
    let reply = c.message(CEPH_MSG_MON_GET_VERSION_REPLY);
    let mut b = &reply.front[..];
    assert!(
        b.len() >= 16,
        "short MMonGetVersionReply: {} bytes",
        b.len()
    );
    assert_eq!(b.get_u64_le(), handle, "reply carries our handle");
    let version = b.get_u64_le();
    assert!(
        version >= 1,
        "a new cluster has osdmap epoch >= 1, got {version}"
    );
    c.s.mark_down();

    // 5. A message whose header crc is wrong: the monitor drops the connection.
    let mut c = Client::connect(mon);
    c.handshake();
    let mut raw = BytesMut::new();
    let msg = Message::new(CEPH_MSG_AUTH, mauth_front(&[1]));
    frame::encode_message_into(
        &msg,
        1,
        EntityName::new(EntityType::CLIENT, -1),
        true,
        &mut raw,
    );
    // tag (1) + header: its crc is the header's last 4 bytes.
    raw[1 + 49] ^= 0x5a;
    c.sock.write_all(&raw).expect("write");
    c.expect_drop();
    assert!(c.eof);
}

/// Once its first election is done, a monitor requires SERVER_LUMINOUS from mon peers (it
/// answers FEATURES without it); before that it does not. Advertise it so the test does not
/// depend on how long the monitor has been up.
const MON_PEER_FEATURES: u64 =
    features::DEFAULT_SUPPORTED | features::CEPH_FEATUREMASK_SERVER_LUMINOUS;

/// As a peer monitor (host_type 1, protocol 13, auth-none authorizer) the session is lossless:
/// after the link drops, the reconnect (connect_seq bumped) replaces the monitor's session with a
/// SEQ exchange; a second session object with a stale global_seq gets RETRY_GLOBAL and then
/// replaces it as a restarted peer.
#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn real_monitor_lossless_peer() {
    let mon = monitor();
    let born = Instant::now();
    let nonce = std::process::id().wrapping_mul(7919) | 1;
    let me = EntityAddr::blank().with_nonce(nonce);
    let mut cfg = SessionConfig::new(EntityName::new(EntityType::MON, 1), me);
    cfg.features_supported = MON_PEER_FEATURES;
    let cfg = Arc::new(cfg);

    let mut c = Client::with_session(mon, cfg.clone(), Policy::lossless_peer(), born);
    c.handshake();
    assert!(!c.s.policy().lossy, "mon-to-mon sessions are lossless");
    assert_eq!(c.s.connect_seq(), 1);

    // Reconnect on a new socket: the monitor recognises the session (connect_seq 2 > 1).
    c.relink(mon);
    c.events.clear();
    c.handshake();
    assert_eq!(c.s.connect_seq(), 3, "bumped on fault, then +1 by the open");
    c.s.send_keepalive(c.born + Duration::from_secs(1));
    let stamp = c.until("KEEPALIVE2_ACK", |e| match e {
        SessionEvent::KeepaliveAck { stamp, .. } => Some(*stamp),
        _ => None,
    });
    assert_eq!(stamp, (1, 0));
    let seen_gseq = cfg.global_seq.next(0);

    // A new session object for the same address, with a fresh global_seq counter starting
    // below what the monitor saw: RETRY_GLOBAL, then a peer-reset replace.
    let mut cfg2 = SessionConfig::new(EntityName::new(EntityType::MON, 1), me);
    cfg2.features_supported = MON_PEER_FEATURES;
    cfg2.global_seq = Arc::new(GlobalSeq::default());
    let cfg2 = Arc::new(cfg2);
    let mut c2 = Client::with_session(mon, cfg2.clone(), Policy::lossless_peer(), Instant::now());
    c2.handshake();
    assert!(
        cfg2.global_seq.next(0) > seen_gseq,
        "RETRY_GLOBAL raised our global_seq above the monitor's ({seen_gseq})"
    );
    assert_eq!(c2.s.connect_seq(), 1);
    c2.s.mark_down();
    c.s.mark_down();
}
