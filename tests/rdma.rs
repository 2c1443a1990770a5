//! Every transport-independent scenario of `msgr_tests`, over RDMA.
//!
//! Needs an RDMA device: plain `cargo test` lists these tests as ignored (the reason says how
//! to run them); run with `--include-ignored` and no device, each FAILS saying it did not run. Run it inside the Soft-RoCE VM (`cargo xtask test --only rdma` does all of this):
//!
//!   cargo test -p msgr-tests --test rdma --no-run   # prints the binary path
//!   scripts/rdma-vm/run.sh target/debug/deps/rdma-<hash> --test-threads 1 --include-ignored
//!
//! Nodes bind to `$RDMA_IP` (see `msgr_tests::harness::bind_ip`): rdma_cm cannot use 127.0.0.1
//! over Soft-RoCE.
//!
//! Not listed, because they are about TCP: `hostile::*` (raw TCP sockets speaking garbage to a
//! TCP listener; an RDMA listener is reached only through rdma_cm).
//!
//! The stress runs are sized down (`stress_small*`): the full ones (128 connections, ~2 GiB
//! echoed) take minutes in the VM, which is usually software-emulated (no KVM). Their
//! failure-injection variant goes through `[fault] inject_socket_failures`, which the RDMA
//! transport maps to QP failures (a QP forced into the error state).

const T: &str = "rdma";

use msgr_tests::harness::require_rdma;

msgr_tests::shared_scenarios!(
    ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM";
    T, require_rdma
);

use msgr_tests::stress::{stress, StressSpec};

/// 16 connections (4 clients x 4 servers), 32 in flight each, messages up to 1 MiB.
fn small(inject: u64) -> StressSpec {
    StressSpec {
        servers: 4,
        clients: 4,
        in_flight: 32,
        per_conn: 100,
        max_size: 1 << 20,
        inject,
    }
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn stress_small() {
    require_rdma();
    stress(T, small(0));
}

/// Lossless sessions over QPs that fail now and then (one drive in 100): everything arrives
/// once, in order.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn stress_small_qp_failures() {
    require_rdma();
    stress(T, small(100));
}

/// `["rdma", "tcp"]` reaches a TCP-only node over TCP and an RDMA node over RDMA.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn fallback_picks_the_transport_per_peer() {
    require_rdma();
    msgr_tests::fallback::picks_the_transport_per_peer();
}

/// 100k numbered messages, lossless, QP errors injected, then the server's RDMA listener
/// removed mid-stream: the stream finishes over TCP with nothing lost, duplicated or reordered.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn fallback_lossless_stream_survives_losing_rdma() {
    require_rdma();
    msgr_tests::fallback::lossless_stream_survives_losing_rdma(100_000);
}
