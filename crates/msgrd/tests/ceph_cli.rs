//! Interop with the real Ceph command line (librados, Debian's ceph-common): `ceph status`
//! pointed at `msgrd serve` (a monitor-typed entity, auth none) over msgr2 (crc mode) and msgr1.
//! The CLI's `--debug-ms 20` log must show the handshake completing, our echoes of its own
//! messages received and decoded (it logs them as "unhandled": an echo server is no monitor),
//! and no frame, crc or decode error. `cargo xtask test` runs it in its interop stage.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_msgrd"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("msgrd runs");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let server = Server(child);
    let line = lines.next().expect("a line").expect("utf-8");
    let addr = line
        .strip_prefix("LISTENING ")
        .and_then(|a| a.strip_suffix("/0"))
        .unwrap_or_else(|| panic!("expected LISTENING IP:PORT/0, got {line:?}"))
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
