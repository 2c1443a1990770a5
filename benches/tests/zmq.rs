//! zmq-baseline as the bench harness runs it: `serve` announces both endpoints, `ping --json`
//! prints one line with the fields the harness reads, and one server serves run after run.

mod common;

use msgr_benches::report::RunResult;

const BIN: &str = env!("CARGO_BIN_EXE_zmq-baseline");

fn ping(peer: &str, args: &[&str]) -> RunResult {
    common::ping(BIN, peer, args)
}

#[test]
fn echo_with_a_window_and_stream_report_what_they_did() {
    let (_server, peer) = common::start_server(BIN);
    assert_eq!(peer.split(',').count(), 2, "{peer}");

    let r = ping(
        &peer,
        &["--size", "64", "--count", "300", "--concurrency", "4"],
    );
    assert_eq!((r.transport.as_str(), r.mode.as_str()), ("zmq", "echo"));
    assert_eq!((r.size, r.count, r.concurrency), (64, 300, 4));
    let (p50, p99) = (r.p50_us.unwrap(), r.p99_us.unwrap());
    assert!(p50 > 0.0 && p99 >= p50);
    assert!(r.msgs_per_s > 0.0);

    // The same server takes the next run: a stream, which has no round trips.
    let r = ping(
        &peer,
        &["--size", "1000", "--count", "2000", "--mode", "stream"],
    );
    assert_eq!((r.mode.as_str(), r.count), ("stream", 2000));
    assert_eq!((r.p50_us, r.p99_us), (None, None));
    let expect_gb = r.msgs_per_s * 1000.0 / 1e9;
    assert!((r.gbytes_per_s - expect_gb).abs() <= expect_gb * 1e-9);
}

#[test]
fn a_malformed_peer_is_an_error_that_says_what_is_expected() {
    let out = std::process::Command::new(BIN)
        .args(["ping", "--peer", "127.0.0.1:1", "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("<pull addr>,<push addr>"), "{err}");
}
