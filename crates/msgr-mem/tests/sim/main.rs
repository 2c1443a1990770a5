//! Deterministic simulation of whole nodes: the real node driver (`msgr_node::Node`, its
//! workers, timers, dial / accept / reconnect, dispatch) over `mem` links, on one thread, in
//! virtual time. Everything random comes from one seed; a seed replays exactly.
//!
//! Each run: 2 or 3 nodes (1 or 2 workers each, fixed nonces and seeds, `threads = false`, one
//! shared `VirtualClock`) on a simulated `MemNetwork` (seeded delays, drops that kill links).
//! A plan drawn from the seed sends messages at random times and injects faults: link kills
//! (`Node::inject_failure`, network kills), partitions, node restarts (shutdown, then a new
//! `Node` at the same address with a new or the same nonce) and `mark_down`. The loop steps
//! every node until none has work, then moves the clock to the earliest deadline (node
//! timers, network deliveries, the plan).
//!
//! Checked after each run, from what a recording dispatcher saw:
//! - every message delivered at most once, to the node it was sent to, intact;
//! - per sender and receiver (instances) and priority, in send order; for lossless policies
//!   also in sequence order (which restarts only after a remote reset);
//! - every message delivered or reported to its sender (reset, remote reset), none reported
//!   twice, none reported as never sent (seq 0) and delivered;
//! - lossless policies without restarts or mark-downs (`Lossless`, `Race`, `ClientServer`):
//!   no session reset, and nothing left unacknowledged at the end; messages come back only
//!   through a remote reset, which msgr1 (as Ceph) reports when a handshake's READY was lost
//!   to a link failure (the peer then reconnects with connect_seq 0: a "peer reset").
//!
//! `SIM_SEED=n cargo test -p msgr-mem --test sim` replays seed n in every scenario (twice,
//! checking the two runs are identical); `SIM_SEEDS=n` (or `MSGR_SIM_SEEDS`) sets how many
//! seeds each scenario runs; `SIM_REPLAY=1` runs every seed twice and compares;
//! `SIM_VERBOSE=1` prints what each seed did;
//! `SIM_TRACE=1` prints what the dispatchers see, `RUST_LOG=debug` the driver's own logs.
//!
//! Modules, from the bottom: `scenario` (scenarios, the seeded random numbers, addresses,
//! message bodies), `record` (the recording dispatcher and the checks), `plan` (what a run
//! does, drawn from the seed), `world` (a run's nodes and network, carrying out the plan),
//! `run` (the run loop); here: the seeds and the tests.

mod plan;
mod record;
mod run;
mod scenario;
mod world;

use std::time::Instant;

use crate::run::run;
use crate::scenario::Scenario;

/// The first of the environment variables `names` that is set, as a number.
fn env_u64(names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| {
        std::env::var(n).ok().map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{n} must be a number, not {v:?}"))
        })
    })
}

/// Run `count` seeds from `first` (SIM_SEEDS overrides the count; SIM_SEED runs that one
/// seed, twice, and compares), naming the seed of a failure and how to replay it.
fn run_seeds(scenario: Scenario, first: u64, count: u64) {
    if std::env::var_os("RUST_LOG").is_some() {
        // The driver's and sessions' own logs, e.g. RUST_LOG=debug with SIM_SEED.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let one = env_u64(&["SIM_SEED"]);
    let seeds: Vec<u64> = match one {
        Some(s) => vec![s],
        None => {
            let n = env_u64(&["SIM_SEEDS", "MSGR_SIM_SEEDS"]).unwrap_or(count);
            (first..first + n).collect()
        }
    };
    // SIM_REPLAY=1: run every seed twice and compare (SIM_SEED always does).
    let replay_all = one.is_some() || std::env::var_os("SIM_REPLAY").is_some();
    let t0 = Instant::now();
    for &seed in &seeds {
        let replay = format!(
            "replay: SIM_SEED={seed} cargo test -p msgr-mem --test sim -- {} (SIM_TRACE=1 to see it)",
            scenario.test_name()
        );
        let res = std::panic::catch_unwind(|| run(seed, scenario));
        match res {
            Ok(Ok(summary)) => {
                if one.is_some() || std::env::var_os("SIM_VERBOSE").is_some() {
                    eprintln!("{scenario:?} seed {seed}: {summary}");
                }
                if replay_all {
                    let again = run(seed, scenario);
                    if again.as_ref() != Ok(&summary) {
                        panic!(
                            "{scenario:?} seed {seed} did not replay exactly:\n  {summary}\n  {again:?}\n{replay}"
                        );
                    }
                }
            }
            Ok(Err(e)) => panic!("{scenario:?} seed {seed} failed: {e}\n{replay}"),
            Err(_) => panic!("{scenario:?} seed {seed} panicked (see above)\n{replay}"),
        }
    }
    eprintln!(
        "{scenario:?}: {} seeds in {:.2?}",
        seeds.len(),
        t0.elapsed()
    );
}

#[test]
fn lossless_random_faults() {
    run_seeds(Scenario::Lossless, 1, 400);
}

#[test]
fn lossless_simultaneous_connects() {
    run_seeds(Scenario::Race, 10_001, 400);
}

#[test]
fn lossless_client_and_stateful_server() {
    run_seeds(Scenario::ClientServer, 30_001, 400);
}

#[test]
fn lossy_reports_every_undelivered_message() {
    run_seeds(Scenario::Lossy, 20_001, 600);
}

#[test]
fn restarts_report_or_deliver_everything() {
    run_seeds(Scenario::Restart, 40_001, 400);
}

#[test]
fn mark_down_reports_or_delivers_everything() {
    run_seeds(Scenario::MarkDown, 50_001, 400);
}

/// The same seed twice gives the same run, event for event (the trace hash covers every
/// dispatcher callback with its virtual time).
#[test]
fn seeds_replay_exactly() {
    let scenarios = [
        (Scenario::Lossless, 7),
        (Scenario::Race, 10_007),
        (Scenario::ClientServer, 30_007),
        (Scenario::Lossy, 20_007),
        (Scenario::Restart, 40_007),
        (Scenario::MarkDown, 50_007),
    ];
    for (scenario, first) in scenarios {
        for seed in first..first + 8 {
            let a = run(seed, scenario);
            let b = run(seed, scenario);
            assert_eq!(a, b, "{scenario:?} seed {seed} did not replay exactly");
        }
    }
}
