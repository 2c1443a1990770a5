//! A real Ceph monitor for interop tests (Debian's `ceph-mon`, started by
//! `scripts/ceph-mon/start.sh` on free ports under the test's target folder, stopped when
//! dropped). Shared by msgr-core's sans-IO interop tests and the msgr facade's node-level ones
//! (which include this file by path).

#![allow(dead_code)] // each including test uses part of it

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::{BufMut, Bytes, BytesMut};

/// `CEPH_ENTITY_TYPE_CLIENT`.
const CEPH_ENTITY_TYPE_CLIENT: u32 = 8;

/// A monitor this test started; stopped when dropped.
pub struct Mon {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    /// Its msgr1 address (`v1:`), nonce 0.
    pub v1: SocketAddr,
    /// Its msgr2 address (`v2:`), nonce 0.
    pub v2: SocketAddr,
    /// The cluster's fsid, as MonMap encodes it.
    pub fsid: [u8; 16],
}

/// `scripts/ceph-mon/<name>` of the checkout (found above the including crate's folder).
fn script(name: &str) -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let s = dir.join("scripts/ceph-mon").join(name);
        if s.exists() {
            return s;
        }
        assert!(
            dir.pop(),
            "no scripts/ceph-mon/{name} above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

/// A port free now and not handed to another monitor of this test process: the tests of one
/// binary run in parallel, and a port the kernel gives out twice would let one test's
/// `start.sh` take another test's monitor for its own (seen once as a connection reset in the
/// starved repeat, when that other test restarted its monitor).
fn free_port() -> String {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
        let port = probe.local_addr().expect("probe address").port();
        if !given.contains(&port) {
            given.push(port);
            return port.to_string();
        }
    }
}

impl Mon {
    /// A one-monitor cluster with `auth` ("none" or "cephx") listening on a v1 and a v2 port,
    /// its state in `<target tmp>/<label>-<auth>`.
    pub fn start(label: &str, auth: &str) -> Mon {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{label}-{auth}"));
        let _ = std::fs::remove_dir_all(&dir); // a stale cluster from an aborted run
        let env = vec![
            ("CEPH_MON_DIR", dir.display().to_string()),
            ("V1_PORT", free_port()),
            ("V2_PORT", free_port()),
            ("AUTH", auth.to_string()),
        ];
        let unset: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let mut mon = Mon {
            dir,
            env,
            v1: unset,
            v2: unset,
            fsid: [0; 16],
        };
        mon.run_start();
        let fsid = std::fs::read_to_string(mon.dir.join("fsid")).expect("fsid file");
        let hex: String = fsid.trim().chars().filter(|c| *c != '-').collect();
        for (i, b) in mon.fsid.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("uuid hex");
        }
        mon
    }

    fn run_start(&mut self) {
        let out = Command::new("bash")
            .arg(script("start.sh"))
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .output()
            .expect("run start.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "could not start a Ceph monitor ({}):\n{stdout}\n{}\nIs ceph-mon installed?",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let addrs = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ADDRS="))
            .expect("ADDRS= line");
        let find = |prefix: &str| -> SocketAddr {
            addrs
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .find_map(|a| a.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix} address in ADDRS={addrs}"))
                .parse()
                .expect("socket address")
        };
        self.v1 = find("v1:");
        self.v2 = find("v2:");
    }

    /// Stop the monitor (its store stays for `restart`).
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script("stop.sh"))
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .output();
    }

    /// Stop and start again on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        self.run_start();
    }

    /// The cluster's keyring (`[client.admin]` with its key; cephx clusters).
    pub fn keyring(&self) -> PathBuf {
        self.dir.join("keyring")
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// MAuth front (Ceph `MAuth::encode_payload`): paxos header (version u64, deprecated session
/// mon i16 -1, its tid u64), protocol u32 0 (negotiating), auth_payload as a bufferlist (u32
/// length, then: u8 struct_v 1, the offered methods as u32 count and u32s, EntityName as u32
/// type and string id, u64 global_id), monmap_epoch u32. Matches the `ceph` CLI's MAuth in
/// shared/ceph-mon/captures/ceph-cli-v1.pcapng except that we also offer cephx.
pub fn mauth_front(methods: &[u32]) -> Bytes {
    let mut payload = BytesMut::new();
    payload.put_u8(1);
    payload.put_u32_le(methods.len() as u32);
    for m in methods {
        payload.put_u32_le(*m);
    }
    payload.put_u32_le(CEPH_ENTITY_TYPE_CLIENT);
    payload.put_u32_le(5);
    payload.put_slice(b"admin");
    payload.put_u64_le(0);
    let mut b = BytesMut::new();
    b.put_u64_le(0);
    b.put_i16_le(-1);
    b.put_u64_le(0);
    b.put_u32_le(0);
    b.put_u32_le(payload.len() as u32);
    b.put_slice(&payload);
    b.put_u32_le(0);
    b.freeze()
}

/// `CEPH_MSG_MON_MAP`.
pub const CEPH_MSG_MON_MAP: u16 = 4;
/// `CEPH_MSG_MON_SUBSCRIBE`.
pub const CEPH_MSG_MON_SUBSCRIBE: u16 = 15;
/// `CEPH_MSG_MON_GET_VERSION`.
pub const CEPH_MSG_MON_GET_VERSION: u16 = 19;
/// `CEPH_MSG_MON_GET_VERSION_REPLY`.
pub const CEPH_MSG_MON_GET_VERSION_REPLY: u16 = 20;

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_u32_le(s.len() as u32);
    b.put_slice(s.as_bytes());
}

/// MMonGetVersion("osdmap") carrying `handle`.
pub fn get_version(handle: u64) -> msgr_core::Message {
    let mut front = BytesMut::new();
    front.put_u64_le(handle);
    put_string(&mut front, "osdmap");
    msgr_core::Message::new(CEPH_MSG_MON_GET_VERSION, front.freeze())
}

/// Checks an MMonGetVersionReply: long enough, our `handle`, from a monitor.
pub fn check_version_reply(reply: &msgr_core::Message, handle: u64) {
    assert!(reply.front.len() >= 16, "short MMonGetVersionReply");
    assert_eq!(
        reply.front[..8],
        handle.to_le_bytes(),
        "reply carries our handle"
    );
    assert_eq!(reply.src.kind, msgr_core::EntityType::MON);
}

/// MMonSubscribe v3 for the monmap: map<string, {le64 start, u8 flags}>, hostname.
pub fn subscribe_monmap() -> msgr_core::Message {
    let mut front = BytesMut::new();
    front.put_u32_le(1);
    put_string(&mut front, "monmap");
    front.put_u64_le(0);
    front.put_u8(0);
    put_string(&mut front, "");
    let mut sub = msgr_core::Message::new(CEPH_MSG_MON_SUBSCRIBE, front.freeze());
    sub.version = 3;
    sub
}
