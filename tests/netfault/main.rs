//! `netfault`: real network faults between real messenger processes, for `cargo xtask test`'s
//! netfault stage (run as root inside the Soft-RoCE VM, whose kernel has netem).
//!
//! - `netfault run [--quick] [--count N] [--size B] [--only a,b,...] [--dir D]`: builds three
//!   network namespaces on a bridge (`net.rs`), starts a node in each and runs the scenarios
//!   (`scenario.rs`): (a) 1% loss and 10 ms +- 5 ms delay with reordering; (b) a partition of
//!   one node longer than the keepalive and shorter than the idle timeout; (c) one longer than
//!   the idle timeout; (d) one node SIGKILLed and restarted with a new nonce, (d2) with the same
//!   nonce. Keepalive and idle timeouts are short (0.5 s, 6 s) so the stage takes minutes.
//!   40,000 payloads per stream (6 streams, 5 scenarios: 1.2 M sent, over 1 M delivered even where
//!   a node is killed; `--quick` 2,000).
//!   Each scenario prints its counts and fails on any message lost, duplicated, reordered or
//!   corrupted on a lossless session, or handed back wrongly on a reset one.
//! - `netfault node ...`: one daemon (`node.rs`); the driver starts them.

mod args;
mod net;
mod node;
mod scenario;
mod track;

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let r = match argv.split_first() {
        Some((cmd, rest)) if cmd == "node" => args::Args::parse(rest).and_then(|mut a| {
            let spec = node::NodeSpec::from_args(&mut a)?;
            a.finish()?;
            node::run(spec)
        }),
        Some((cmd, rest)) if cmd == "run" => args::Args::parse(rest).and_then(|mut a| {
            let quick = a.flag("quick");
            let spec = scenario::RunSpec {
                dir: a
                    .path("dir")
                    .unwrap_or_else(|_| PathBuf::from("/tmp/msgr-netfault")),
                count: a.num_or("count", if quick { 2_000 } else { 40_000 })?,
                size: a.num_or("size", 32)?,
                only: a
                    .opt_text("only")
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                deadline: Duration::from_secs(a.num_or("deadline-s", 600)?),
            };
            a.finish()?;
            scenario::run(&spec)
        }),
        _ => Err(
            "usage: netfault run [--quick] [--count N] [--size B] [--only a,b,c,d,d2] [--dir D] \
                  | netfault node --index I --count N --dir D ..."
                .into(),
        ),
    };
    if let Err(e) = r {
        eprintln!("netfault: {e}");
        std::process::exit(1);
    }
}
