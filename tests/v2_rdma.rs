//! Every transport-independent scenario of `msgr_tests`, over RDMA, speaking msgr2 (see
//! `rdma.rs` for how to run it: `cargo xtask test --only rdma` runs it in the Soft-RoCE VM).

use msgr_tests::harness::require_rdma;

const T: &str = "rdma@v2";

msgr_tests::shared_scenarios!(
    ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM";
    T, require_rdma
);
