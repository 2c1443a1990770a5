//! tcp-baseline as the bench harness runs it: `serve` announces `LISTENING <addr>`, `ping --json`
//! prints one line with the fields the harness reads.

mod common;

use msgr_benches::report::RunResult;

const BIN: &str = env!("CARGO_BIN_EXE_tcp-baseline");

fn start_server() -> (common::Server, String) {
    common::start_server(BIN)
}

fn ping(addr: &str, args: &[&str]) -> RunResult {
    common::ping(BIN, addr, args)
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
    let out = std::process::Command::new(BIN)
        .args(["ping", "--peer", &addr, "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
}
