//! Interop with the real Ceph command line (librados, Debian's ceph-common): `ceph status`
//! pointed at `msgrd serve` (a monitor-typed entity, auth none) over msgr2 (crc mode) and msgr1.
//! The CLI's `--debug-ms 20` log must show the handshake completing, our echoes of its own
//! messages received and decoded (it logs them as "unhandled": an echo server is no monitor),
//! and no frame, crc or decode error. `cargo xtask test` runs it in its interop stage.

use std::process::Command;

mod common;
use common::{expect_line, serve, Server};

/// `msgrd serve` as `mon.0` (nonce 0, as monitors use) on a free port; its IP:PORT.
fn serve_as_monitor() -> (Server, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let config = dir.join("ceph-cli-mon.toml");
    std::fs::write(
        &config,
        "name = \"mon.0\"\ntransport = \"tcp\"\nbind = \"127.0.0.1:0\"\nnonce = 0\n\
         [policy.client]\npreset = \"stateful_server\"\n",
    )
    .expect("write the config");
    let (server, mut lines) = serve(&["--config".as_ref(), config.as_os_str()]);
    let listening = expect_line(&mut lines, "LISTENING ");
    let addr = listening
        .strip_suffix("/0")
        .unwrap_or_else(|| panic!("expected IP:PORT/0 (nonce 0), got {listening:?}"))
        .to_string();
    (server, addr)
}

/// `ceph status` against `mon` (an address with its v1: / v2: prefix); its debug log.
fn ceph_status(mon: &str) -> String {
    let out = Command::new("ceph")
        .args(["--no-mon-config", "-c", "/dev/null", "-m", mon])
        .args(["--auth-client-required", "none", "--auth-supported", "none"])
        .args(["--connect-timeout", "3", "--debug-ms", "20"])
        .args(["--log-to-stderr=true", "--log-file=/dev/null", "status"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `ceph` ({e}): install ceph-common (cargo xtask test does)")
        });
    // It gives up (an echo server never sends a monmap): the exit status says nothing here.
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    log
}

/// Lines of `log` that report a broken frame, checksum, signature or decode.
fn errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "bad crc",
                "crc mismatch",
                "fault",
                "decode",
                "corrupt",
                "bad tag",
                "signature check",
            ]
            .iter()
            .any(|e| l.contains(e))
                && !l.contains("decode_features")
        })
        .collect()
}

#[test]
#[ignore = "needs the ceph command line (ceph-common): `cargo xtask test` runs it"]
fn ceph_cli_talks_msgr2_crc_and_msgr1_to_msgrd() {
    let (_server, addr) = serve_as_monitor();

    let log = ceph_status(&format!("v2:{addr}"));
    assert!(
        log.contains("handle_server_ident"),
        "no SERVER_IDENT handled:\n{log}"
    );
    assert!(
        log.contains("s=READY") && log.contains(" crc "),
        "the session never became ready in crc mode:\n{log}"
    );
    assert!(
        log.contains("unhandled message") && log.contains("from mon.0 v2:"),
        "our echo did not reach the CLI's dispatcher:\n{log}"
    );
    assert_eq!(
        errors(&log),
        Vec::<&str>::new(),
        "errors in the CLI's msgr2 log"
    );

    let log = ceph_status(&format!("v1:{addr}"));
    assert!(
        log.contains("<== mon.0 v1:") && log.contains("auth(proto 0"),
        "the echoed MAuth did not reach the CLI over msgr1:\n{log}"
    );
    assert_eq!(
        errors(&log),
        Vec::<&str>::new(),
        "errors in the CLI's msgr1 log"
    );
}
