//! msgr-idle against a real msgr TCP messenger: every connection completes the msgr1 handshake
//! (the server counts the accepts), and a wrong nonce is refused with a message saying which
//! connection failed.

use std::process::Command;

use msgr::{Config, ConnectionRef, Dispatcher, EntityName, EntityType, Message, Messenger};

/// The sessions stay idle: a message arriving would be a bug worth seeing.
struct NoMessages;

impl Dispatcher for NoMessages {
    fn ms_dispatch(&self, _conn: &ConnectionRef, msg: Message) {
        panic!("msgr-idle sent a message: {msg:?}");
    }
}

fn server() -> (msgr::Node, String) {
    let mut cfg = Config::default_tcp(EntityName::new(EntityType::OSD, 0));
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.workers = 1;
    let m = msgr::from_config(&cfg).expect("build messenger");
    m.add_dispatcher(std::sync::Arc::new(NoMessages));
    m.start().expect("start messenger");
    let a = m.my_addr();
    let peer = format!("{}/{}", a.addr.expect("bound address"), a.nonce);
    (m, peer)
}

fn idle(peer: &str, connections: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_msgr-idle"))
        .args(["--peer", peer, "--connections", connections])
        .args(["--hold-ms", "50", "--json"])
        .output()
        .unwrap()
}

#[test]
fn every_idle_session_completes_the_handshake() {
    let (m, peer) = server();
    let out = idle(&peer, "5");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connections"], 5);
    assert_eq!(v["mode"], "idle");
    assert!(v["connect_s"].as_f64().unwrap() > 0.0);
    // The client saw each handshake finish, so the server has accepted each one by now.
    assert_eq!(m.counters().accepted, 5);
    m.shutdown();
}

#[test]
fn a_wrong_nonce_is_a_failed_handshake_that_names_the_connection() {
    let (m, peer) = server();
    let (sock, nonce) = peer.split_once('/').unwrap();
    let wrong = format!("{sock}/{}", nonce.parse::<u32>().unwrap().wrapping_add(1));
    let out = idle(&wrong, "3");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection 1 of 3"), "{err}");
    m.shutdown();
}
