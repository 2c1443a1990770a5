//! Interop: the msgr2 client session ([`SessionV2`]) over a blocking `TcpStream` against real
//! Ceph monitors (Pacific, Debian's `ceph-mon`), one with auth none and one with cephx, each
//! started by `scripts/ceph-mon/start.sh` on free ports under the test's target folder and
//! stopped at the end.
//!
//! Each case: handshake, KEEPALIVE2 answered with its stamp, MMonGetVersion answered, and
//! MMonSubscribe("monmap") answered by an MMonMap whose fsid is the cluster's. Cases: crc + auth
//! none; crc + cephx; secure + cephx; a wrong cephx key fails naming the cause; after a monitor
//! restart a lossless client faults, dials again and continues on a new session (monitors serve
//! clients lossy: there is no session to resume).
//!
//! Needs ceph-mon: `cargo xtask test` runs these in its interop stage.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use msgr_core::auth::cephx::{CryptoKey, Keyring};
use msgr_core::auth::{MODE_CRC, MODE_SECURE};
use msgr_core::policy::Policy;
use msgr_core::session::{SessionConfig, SessionError, SessionEvent, SessionState};
use msgr_core::session_v2::{SessionV2, V2Auth, V2Config};
use msgr_core::v2::{AddrKind, EntityAddrV2, EntityAddrVec};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_core::Message;

/// How long one exchange may take before the test gives up (a failure, not a timing).
const PATIENCE: Duration = Duration::from_secs(15);

mod mon;
use mon::{Mon, CEPH_MSG_MON_GET_VERSION_REPLY, CEPH_MSG_MON_MAP};

fn admin_key(mon: &Mon) -> CryptoKey {
    *Keyring::load(&mon.keyring())
        .unwrap()
        .get("client.admin")
        .unwrap()
}

/// The monitor's msgr2 address as an entity address (monitors use nonce 0).
fn mon_addr(mon: &Mon) -> EntityAddrV2 {
    EntityAddrV2::new(AddrKind::MSGR2, mon.v2, 0)
}

/// A session on a blocking socket, driven by hand.
struct Client {
    s: SessionV2,
    sock: TcpStream,
    inbox: BytesMut,
    events: Vec<SessionEvent>,
}

fn dial(addr: SocketAddr) -> TcpStream {
    let sock = TcpStream::connect_timeout(&addr, PATIENCE)
        .unwrap_or_else(|e| panic!("cannot connect to the monitor at {addr}: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    sock
}

impl Client {
    fn connect(mon: &Mon, auth: V2Auth, mode: u32, policy: Policy) -> Client {
        let now = Instant::now();
        let me = EntityName::new(EntityType::CLIENT, -1);
        let blank: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let nonce = std::process::id() | 1;
        let base = SessionConfig::new(me, EntityAddr::new(blank, nonce));
        let my_addrs = EntityAddrVec(vec![EntityAddrV2::new(AddrKind::ANY, blank, nonce)]);
        let mut cfg = V2Config::new(Arc::new(base), my_addrs);
        cfg.auth = auth;
        cfg.modes = vec![mode];
        let mut s = SessionV2::connect(Arc::new(cfg), mon_addr(mon), EntityType::MON, policy, now);
        s.link_up(now);
        Client {
            s,
            sock: dial(mon.v2),
            inbox: BytesMut::new(),
            events: Vec::new(),
        }
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        while self.s.poll_transmit(&mut out) > 0 {}
        for chunk in out {
            // A write to a dead monitor shows up as a read error next.
            let _ = self.sock.write_all(&chunk);
        }
    }

    /// Drives until `pick` takes an event, or fails after PATIENCE. Session errors end up as
    /// events (Reset / Faulted), which `pick` may take.
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
            if self.s.state() == SessionState::Closed {
                panic!("session closed while waiting for {what}: {:?}", self.events);
            }
            match self.sock.read(&mut buf) {
                Ok(0) => self.s.link_down(SessionError::PeerClosed, Instant::now()),
                Ok(n) => {
                    self.inbox.extend_from_slice(&buf[..n]);
                    let _ = self.s.handle_input(&mut self.inbox, Instant::now());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => self
                    .s
                    .link_down(SessionError::LinkFailed(e.to_string()), Instant::now()),
            }
        }
    }

    fn message(&mut self, msg_type: u16) -> Message {
        self.until(&format!("message type {msg_type}"), |e| match e {
            SessionEvent::Message(m) if m.msg_type == msg_type => Some(m.clone()),
            _ => None,
        })
    }

    /// Connects, retrying while a fresh monitor closes connections before it has formed its
    /// quorum (its log says "haven't formed initial quorum, EBUSY"), as Ceph clients do.
    fn open(mon: &Mon, auth: V2Auth, mode: u32, policy: Policy) -> Client {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut c = Client::connect(mon, auth.clone(), mode, policy.clone());
            match c.handshake() {
                Ok(()) => return c,
                Err(e) if Instant::now() < deadline && e == SessionError::PeerClosed => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("handshake failed: {e}; events {:?}", c.events),
            }
        }
    }

    /// Gives a lossless session new links until one opens (the restarted monitor may still be
    /// forming its quorum).
    fn reopen(&mut self, mon: &Mon) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(
                self.s.wants_reconnect(),
                "a lossless session wants a new link"
            );
            self.sock = dial(mon.v2);
            self.inbox.clear();
            self.s.link_up(Instant::now());
            match self.handshake() {
                Ok(()) => return,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("reconnect failed: {e}; events {:?}", self.events),
            }
        }
    }

    /// Drives the handshake to SERVER_IDENT; the error if the link or session ends first.
    fn handshake(&mut self) -> Result<(), SessionError> {
        self.until("SERVER_IDENT", |e| match e {
            SessionEvent::Connected { .. } => Some(Ok(())),
            SessionEvent::Reset { error, .. } | SessionEvent::Faulted { error, .. } => {
                Some(Err(error.clone()))
            }
            _ => None,
        })
    }
}

/// Handshake, keepalive, MMonGetVersion, MMonSubscribe -> MMonMap with the cluster's fsid.
fn exercise(c: &mut Client, mon: &Mon) {
    assert!(c.s.global_id() > 0, "the monitor assigned a global id");

    c.s.send_keepalive(Instant::now());
    c.until("KEEPALIVE2_ACK", |e| match e {
        SessionEvent::KeepaliveAck { rtt, .. } => Some(rtt.expect("our own stamp")),
        _ => None,
    });

    let handle = 0x5eed_u64;
    c.s.send_message(mon::get_version(handle));
    let reply = c.message(CEPH_MSG_MON_GET_VERSION_REPLY);
    mon::check_version_reply(&reply, handle);
    c.s.send_message(mon::subscribe_monmap());
    let map = c.message(CEPH_MSG_MON_MAP);
    // front: le32 length of the encoded monmap, then ENCODE_START (u8, u8, le32), then the fsid.
    assert!(map.front.len() >= 26, "short MMonMap");
    assert_eq!(map.front[10..26], mon.fsid, "MonMap fsid is the cluster's");
}

#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn v2_crc_auth_none_and_reconnect_after_monitor_restart() {
    let mut mon = Mon::start("ceph-mon-v2", "none");
    let mut c = Client::open(&mon, V2Auth::None, MODE_CRC, Policy::lossy_client());
    exercise(&mut c, &mon);
    assert_eq!(c.s.con_mode(), MODE_CRC);

    // A lossless client: the monitor restarts under it; it dials again and carries on.
    let mut c = Client::open(&mon, V2Auth::None, MODE_CRC, Policy::lossless_client());
    exercise(&mut c, &mon);
    mon.restart();
    let will_reconnect = c.until("fault after the restart", |e| match e {
        SessionEvent::Faulted { will_reconnect, .. } => Some(*will_reconnect),
        _ => None,
    });
    assert!(will_reconnect);
    c.reopen(&mon);
    exercise(&mut c, &mon);
}

#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn v2_cephx_crc_and_secure() {
    let mon = Mon::start("ceph-mon-v2", "cephx");
    for mode in [MODE_CRC, MODE_SECURE] {
        let auth = V2Auth::Cephx {
            key: admin_key(&mon),
        };
        let mut c = Client::open(&mon, auth, mode, Policy::lossy_client());
        exercise(&mut c, &mon);
        assert_eq!(c.s.con_mode(), mode);
    }
    // A wrong key: the monitor refuses (or the reply does not open); the error names the key.
    let mut wrong = admin_key(&mon);
    wrong.secret[0] ^= 1;
    let mut c = Client::connect(
        &mon,
        V2Auth::Cephx { key: wrong },
        MODE_SECURE,
        Policy::lossy_client(),
    );
    let text = c.until("refusal", |e| match e {
        SessionEvent::Reset { error, .. } => Some(error.to_string()),
        SessionEvent::Connected { .. } => panic!("a wrong key was accepted"),
        _ => None,
    });
    assert!(text.contains("refused our cephx credentials"), "{text}");
}
