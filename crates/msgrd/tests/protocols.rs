//! `msgrd serve` answers msgr1 and msgr2 on its one port; `msgrd ping --peer v2:ADDR` speaks
//! msgr2 (echo and one-way) and `--peer v1:ADDR` (or no prefix) msgr1, and says which in its
//! JSON line.

use std::process::Command;

mod common;
use common::{expect_line, serve, Server};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tcp.toml");

/// `msgrd serve` on a free port, and the address it prints.
fn serve_here() -> (Server, String) {
    let args = ["--config", CONFIG, "--bind", "127.0.0.1:0"];
    let (server, mut lines) = serve(&args.map(std::ffi::OsStr::new));
    let addr = expect_line(&mut lines, "LISTENING ");
    (server, addr)
}

/// `msgrd ping --json` with `extra` arguments; the parsed JSON line.
fn ping(peer: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_msgrd"))
        .args(["ping", "--config", CONFIG, "--peer", peer, "--json"])
        .args(["--count", "2000", "--concurrency", "16"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("msgrd runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ping {peer} {extra:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn one_port_serves_msgr1_and_msgr2_pings() {
    let (_server, addr) = serve_here();
    for (peer, protocol) in [
        (addr.clone(), "v1"),
        (format!("v1:{addr}"), "v1"),
        (format!("v2:{addr}"), "v2"),
    ] {
        for extra in [&[][..], &["--one-way"][..], &["--size", "100000"][..]] {
            let j = ping(&peer, extra);
            assert_eq!(j["protocol"], protocol, "{peer} {extra:?}: {j}");
            assert_eq!(j["count"], 2000, "{peer} {extra:?}: {j}");
            assert_eq!(j["transport"], "tcp");
        }
    }
}

#[test]
fn a_v2_peer_address_that_does_not_parse_says_the_form() {
    let out = Command::new(env!("CARGO_BIN_EXE_msgrd"))
        .args(["ping", "--config", CONFIG, "--peer", "v2:nowhere"])
        .output()
        .expect("msgrd runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("IP:PORT/NONCE") && err.contains("v2:nowhere"),
        "{err}"
    );
}
