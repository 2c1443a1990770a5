//! `cargo xtask`: the project's two entry points.
//!
//! - `cargo xtask test [--quick]`: installs what is missing (Debian), then runs every stage CI
//!   runs: fmt, clippy, unit + integration tests, interop against a real Ceph monitor, and the
//!   RDMA suite inside a Soft-RoCE VM. Each stage ends with a one-line verdict and its wall time.
//!   `--repeat N [--starve]` runs the host test stages N times (under CPU starvation).
//! - `cargo xtask bench [--quick|--full] [--update-readme]`: the TCP-vs-RDMA bench matrix with
//!   raw-TCP and perftest baselines; a table, `target/bench/matrix.json` and `matrix.svg`.
//!
//! `bench-rdma` is internal: the half of the bench that runs where the RDMA device is (inside
//! the VM when the host has none).

mod bench;
mod library;
mod netfault;
mod packages;
mod repeat;
mod stage;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "msgr project tasks: test, bench"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every check CI runs (installs missing Debian packages when run as root).
    Test(test::TestArgs),
    /// Run the bench matrix (transports x sizes x in-flight) against the baselines.
    Bench(bench::BenchArgs),
    /// Internal: run the RDMA half of the bench where the device is; writes JSON.
    #[command(hide = true)]
    BenchRdma(bench::rdma::InnerArgs),
}

fn main() {
    let cli = Cli::parse();
    let root = util::workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!(
            "xtask: cannot enter the workspace root {}: {e}",
            root.display()
        );
        std::process::exit(2);
    }
    let code = match cli.cmd {
        Cmd::Test(a) => test::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::BenchRdma(a) => bench::rdma::run_inner(a),
    };
    std::process::exit(code);
}
