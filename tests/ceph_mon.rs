//! Interop through the node: a messenger built by `msgr::from_config` from TOML talks to a real
//! Ceph monitor (Debian's ceph-mon, started by `scripts/ceph-mon/start.sh`) over msgr1 and
//! msgr2, with auth none and with cephx (crc and secure modes), and keeps a lossless session
//! across a monitor restart (the node redials by itself).
//!
//! Each exchange: MMonGetVersion answered with our handle, and MMonSubscribe("monmap") answered
//! by an MMonMap whose fsid is the cluster's. Needs ceph-mon: `cargo xtask test` runs these in
//! its interop stage.

#[path = "../crates/msgr-core/tests/mon/mod.rs"]
mod mon;

use std::sync::Arc;

use mon::{Mon, CEPH_MSG_MON_GET_VERSION_REPLY, CEPH_MSG_MON_MAP};
use msgr::{Config, ConnectionRef, EntityAddr, EntityType, Message, Messenger, Protocol};
use msgr_tests::Recorder;

const CEPH_MSG_AUTH: u16 = 17;
const CEPH_MSG_AUTH_REPLY: u16 = 18;

const NEEDS_MON: &str =
    "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it";

/// A started client messenger from `protocol_section` (the `[protocol]` table's lines).
fn client(protocol_section: &str) -> (msgr::Node, Arc<Recorder>) {
    msgr_tests::harness::init_logging();
    let text = format!(
        "name = \"client\"\ntransport = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [timeouts]\nhandshake_ms = 10000\nreconnect_initial_ms = 50\nreconnect_max_ms = 500\n\
         [policy.mon]\npreset = \"lossless_client\"\n\
         [protocol]\n{protocol_section}\n"
    );
    let cfg = Config::from_toml_str(&text, "<ceph_mon test>").expect("valid config");
    let m = msgr::from_config(&cfg).expect("messenger");
    let rec = Arc::new(Recorder::default());
    m.add_dispatcher(rec.clone());
    m.start().expect("start");
    (m, rec)
}

/// The first message of `msg_type` received (waits for it).
fn received(rec: &Recorder, what: &str, msg_type: u16) -> Message {
    rec.wait(what, |s| {
        s.messages.iter().any(|(_, m)| m.msg_type == msg_type)
    });
    let mut seen = rec.seen.lock();
    let i = seen
        .messages
        .iter()
        .position(|(_, m)| m.msg_type == msg_type)
        .expect("waited for it");
    seen.messages.remove(i).1
}

/// MMonGetVersion and MMonSubscribe -> MMonMap with the cluster's fsid, on `conn`.
fn exercise(conn: &ConnectionRef, rec: &Recorder, mon: &Mon, handle: u64) {
    conn.send_message(mon::get_version(handle)).expect("queued");
    let reply = received(rec, "MMonGetVersionReply", CEPH_MSG_MON_GET_VERSION_REPLY);
    mon::check_version_reply(&reply, handle);
    conn.send_message(mon::subscribe_monmap()).expect("queued");
    let map = received(rec, "MMonMap", CEPH_MSG_MON_MAP);
    // front: le32 length of the encoded monmap, then the monmap: for peers with the MONENC
    // feature ENCODE_START (u8, u8, le32) and the fsid; for older feature sets (our msgr1
    // default) a le16 version and the fsid.
    assert!(map.front.len() >= 26, "short MMonMap");
    let at = [10, 6]
        .into_iter()
        .find(|&i| map.front[i..i + 16] == mon.fsid);
    assert!(
        at.is_some(),
        "MonMap fsid is not the cluster's {:02x?}: front starts {:02x?}",
        mon.fsid,
        &map.front[..26]
    );
}

/// cephx over msgr1: MAuth rounds until the session key (or the error).
fn mauth_cephx(
    conn: &ConnectionRef,
    rec: &Recorder,
    key: msgr_core::auth::cephx::CryptoKey,
) -> Result<(u64, msgr_core::auth::cephx::CryptoKey), msgr_core::auth::cephx::CephxError> {
    use msgr_core::auth::cephx::mon_v1::{MonAuthStep, MonAuthV1};
    let mut auth = MonAuthV1::new(key, EntityType::CLIENT, "admin");
    conn.send_message(auth.start()).expect("queued");
    loop {
        let reply = received(rec, "MAuthReply", CEPH_MSG_AUTH_REPLY);
        match auth.handle_reply(&reply)? {
            MonAuthStep::Send(m) => conn.send_message(m).expect("queued"),
            MonAuthStep::Done {
                global_id,
                session_key,
            } => return Ok((global_id, session_key)),
        }
    }
}

/// The monitor's address for `protocol` (monitors use nonce 0), as a config would write it.
fn mon_addr(mon: &Mon, protocol: Protocol) -> (Option<Protocol>, EntityAddr) {
    let sock = match protocol {
        Protocol::V1 => mon.v1,
        Protocol::V2 => mon.v2,
    };
    msgr::parse_peer_addr(&format!("{protocol}:{sock}/0")).expect("address parses")
}

#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn v1_and_v2_with_auth_none_then_v2_survives_a_monitor_restart() {
    let _ = NEEDS_MON;
    let mut mon = Mon::start("ceph-mon-node", "none");
    for protocol in [Protocol::V1, Protocol::V2] {
        let (m, rec) = client(&format!("prefer = \"{protocol}\""));
        let (said, addr) = mon_addr(&mon, protocol);
        assert_eq!(said, Some(protocol));
        let conn = m.connect_to(EntityType::MON, &addr).expect("connect");
        if protocol == Protocol::V1 {
            // msgr1 clients authenticate with MAuth messages (msgr2 does it in the handshake).
            conn.send_message(Message::new(CEPH_MSG_AUTH, mon::mauth_front(&[1])))
                .expect("queued");
            let reply = received(&rec, "MAuthReply", CEPH_MSG_AUTH_REPLY);
            assert_eq!(
                reply.front[..8],
                [1, 0, 0, 0, 0, 0, 0, 0],
                "auth none, result 0"
            );
        }
        exercise(&conn, &rec, &mon, 0x5eed);
        assert_eq!(conn.protocol(), protocol);
        assert_eq!(conn.transport(), Some("tcp"));
        m.shutdown();
    }

    // A lossless msgr2 session: the monitor restarts under it; the node dials again by itself
    // (the monitor lost the session, so a new one starts) and the same connection carries on.
    let (m, rec) = client("prefer = \"v2\"");
    let (_, addr) = mon_addr(&mon, Protocol::V2);
    let conn = m.connect_to(EntityType::MON, &addr).expect("connect");
    exercise(&conn, &rec, &mon, 1);
    mon.restart();
    rec.wait("the restart seen as a fault", |s| s.faults >= 1);
    exercise(&conn, &rec, &mon, 2);
    assert!(conn.counters().reconnects >= 1, "{:?}", conn.counters());
    assert_eq!(conn.protocol(), Protocol::V2);
    m.shutdown();
}

#[test]
#[ignore = "needs a Ceph monitor (Debian's ceph-mon): `cargo xtask test` starts one and runs it"]
fn cephx_v2_from_a_keyring_in_crc_and_secure_mode_and_v1_with_mauth() {
    let mon = Mon::start("ceph-mon-node", "cephx");
    let keyring = mon.keyring().display().to_string();
    for mode in ["crc", "secure"] {
        let (m, rec) = client(&format!(
            "prefer = \"v2\"\nauth = \"cephx\"\nauth_name = \"client.admin\"\n\
             keyring = \"{keyring}\"\nmodes = [\"{mode}\"]"
        ));
        let (_, addr) = mon_addr(&mon, Protocol::V2);
        let conn = m.connect_to(EntityType::MON, &addr).expect("connect");
        exercise(&conn, &rec, &mon, 7);
        assert_eq!(conn.protocol(), Protocol::V2);
        m.shutdown();
    }
    // msgr1 + cephx: the MAuth exchange (msgr_core::auth::cephx::mon_v1) over the node's
    // session, then the same requests; with a wrong key the exchange fails naming it.
    let key = *msgr_core::auth::cephx::Keyring::load(&mon.keyring())
        .unwrap()
        .get("client.admin")
        .unwrap();
    let (_, addr) = mon_addr(&mon, Protocol::V1);
    let (m, rec) = client("prefer = \"v1\"");
    let conn = m.connect_to(EntityType::MON, &addr).expect("connect");
    let (global_id, _) = mauth_cephx(&conn, &rec, key).expect("cephx over msgr1");
    assert!(global_id > 0);
    exercise(&conn, &rec, &mon, 9);
    assert_eq!(conn.protocol(), Protocol::V1);
    m.shutdown();
    let mut wrong = key;
    wrong.secret[0] ^= 1;
    let (m, rec) = client("prefer = \"v1\"");
    let conn = m.connect_to(EntityType::MON, &addr).expect("connect");
    let e = mauth_cephx(&conn, &rec, wrong).unwrap_err().to_string();
    assert!(e.contains("does not match the monitor's"), "{e}");
    m.shutdown();

    // No cephx: the monitor refuses auth none. The session ends, saying what the monitor
    // allows, rather than redialing with the same credentials.
    let (m, rec) = client("prefer = \"v2\"");
    let (_, addr) = mon_addr(&mon, Protocol::V2);
    let conn = m.connect_to(EntityType::MON, &addr).expect("connect");
    rec.wait("the session ends", |s| s.resets >= 1);
    let text = rec.seen.lock().errors.join("; ");
    assert!(
        text.contains("authentication failed") && text.contains("allows methods [2]"),
        "{text}"
    );
    assert_eq!(conn.counters().reconnects, 0, "no retry storm");
    m.shutdown();
}
