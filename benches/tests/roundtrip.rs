//! tcp-baseline as the bench harness runs it: `serve` announces `LISTENING <addr>`, `ping --json`
//! prints one line with the fields the harness reads.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use msgr_benches::report::RunResult;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcp-baseline"))
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tcp-baseline serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("first line is not LISTENING: {line:?}"))
        .to_string();
    (Server(child), addr)
}

fn ping(addr: &str, args: &[&str]) -> RunResult {
    let out = Command::new(env!("CARGO_BIN_EXE_tcp-baseline"))
        .args(["ping", "--peer", addr, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn echo_and_stream_report_what_they_did() {
    let (_server, addr) = start_server();

    let r = ping(&addr, &["--size", "100", "--count", "50"]);
    assert_eq!((r.mode.as_str(), r.size, r.count), ("echo", 100, 50));
    assert_eq!((r.concurrency, r.connections), (1, 1));
    let (p50, p99) = (r.p50_us.unwrap(), r.p99_us.unwrap());
    assert!(p50 > 0.0 && p99 >= p50);
    assert!(r.msgs_per_s > 0.0 && r.wall_s > 0.0);
    let expect_gb = r.msgs_per_s * 100.0 / 1e9;
    assert!((r.gbytes_per_s - expect_gb).abs() <= expect_gb * 1e-9);

    // Pipelined over several connections: the count is split, every message comes back.
    let r = ping(
        &addr,
        &[
            "--size",
            "3000",
            "--count",
            "101",
            "--concurrency",
            "4",
            "--connections",
            "3",
        ],
    );
    assert_eq!((r.count, r.concurrency, r.connections), (101, 4, 3));
    assert!(r.p50_us.is_some());

    // A stream has no round trips to report.
    let r = ping(
        &addr,
        &["--size", "70000", "--count", "20", "--mode", "stream"],
    );
    assert_eq!(r.mode, "stream");
    assert_eq!((r.p50_us, r.p99_us), (None, None));
    assert!(r.gbytes_per_s > 0.0);
}

#[test]
fn unreachable_peer_is_an_error_that_names_it() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tcp-baseline"))
        .args(["ping", "--peer", &addr, "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
}
