//! `cargo xtask test --repeat N [--starve]`: the host test stages (tests, interop) N times in a
//! row, stopping at the first failure, to catch tests that fail only under load.
//!
//! Each round re-runs this xtask as a child (`test --only tests,interop`), so a round is exactly
//! what `cargo xtask test` runs. `--starve` pins each round to CPU 0 next to a busy-looping
//! competitor pinned there too (taskset): every test thread then gets a fraction of one core
//! and waits behind a process that never sleeps, which is where timing races show. The build
//! happens once, first, unpinned (a build under starvation would take most of the time).
//! On a failure it prints the round, the failing tests and any replay hint (`SIM_SEED=...`).

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::stage::fmt_secs;
use crate::util::{cargo, run_status, run_tee, TestCounts};

/// The CPU the starved rounds and their competitor share.
const STARVE_CPU: &str = "0";

/// What to repeat and how.
pub struct Repeat {
    pub rounds: u32,
    pub starve: bool,
    pub quick: bool,
    /// Stages from `--only`, else the host test stages.
    pub only: Vec<String>,
}

/// Runs the rounds; returns the process exit code (0: every round passed).
pub fn run(r: &Repeat) -> i32 {
    let stages = if r.only.is_empty() {
        "tests,interop".to_string()
    } else {
        r.only.join(",")
    };
    if r.starve && crate::util::output_of("taskset", &["-V"]).is_none() {
        eprintln!(
            "xtask test --starve: `taskset` is missing (Debian package util-linux); \
             install it or leave out --starve"
        );
        return 2;
    }
    println!("==> building the tests once, unpinned");
    if let Err(e) = run_status(cargo().args([
        "test",
        "--workspace",
        "--no-run",
        "--lib",
        "--bins",
        "--examples",
        "--tests",
    ])) {
        eprintln!("xtask test --repeat: the build failed: {e}");
        return 1;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xtask test --repeat: cannot find this program to re-run it: {e}");
            return 2;
        }
    };
    let competitor = if r.starve {
        match start_competitor() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("xtask test --starve: {e}");
                return 2;
            }
        }
    } else {
        None
    };
    let how = if r.starve {
        format!("pinned to CPU {STARVE_CPU} next to a busy loop")
    } else {
        "unpinned".to_string()
    };
    let t0 = Instant::now();
    let mut code = 0;
    for round in 1..=r.rounds {
        println!("\n==> round {round}/{} of stages {stages}, {how}", r.rounds);
        let mut cmd = if r.starve {
            let mut c = Command::new("taskset");
            c.args(["-c", STARVE_CPU]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["test", "--only", &stages]);
        if r.quick {
            cmd.arg("--quick");
        }
        let started = Instant::now();
        match run_tee(&mut cmd) {
            Ok((true, _)) => println!(
                "[PASS] round {round}/{} ({})",
                r.rounds,
                fmt_secs(started.elapsed().as_secs_f64())
            ),
            Ok((false, out)) => {
                println!(
                    "[FAIL] round {round}/{} ({}): {}",
                    r.rounds,
                    fmt_secs(started.elapsed().as_secs_f64()),
                    failure_summary(&out)
                );
                code = 1;
                break;
            }
            Err(e) => {
                println!("[FAIL] round {round}/{}: {e}", r.rounds);
                code = 1;
                break;
            }
        }
    }
    if let Some(mut c) = competitor {
        let _ = c.kill();
        let _ = c.wait();
    }
    let total = fmt_secs(t0.elapsed().as_secs_f64());
    if code == 0 {
        println!(
            "\n==> {} consecutive round(s) passed, {how} ({total})",
            r.rounds
        );
    } else {
        println!("\n==> stopped at the first failing round, {how} ({total})");
    }
    code
}

/// A process that never sleeps, on the starved CPU. Killed by the caller through its handle.
fn start_competitor() -> Result<Child, String> {
    Command::new("taskset")
        .args(["-c", STARVE_CPU, "sh", "-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the busy competitor on CPU {STARVE_CPU}: {e}"))
}

/// The failing tests and the replay hints in a round's output.
fn failure_summary(out: &str) -> String {
    let mut parts = Vec::new();
    let failing = TestCounts::failing(out);
    if !failing.is_empty() {
        parts.push(format!("failing: {}", failing.join(", ")));
    }
    let mut hints: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("SIM_SEED="))
        .map(str::trim)
        .collect();
    hints.dedup();
    if !hints.is_empty() {
        parts.push(format!("replay: {}", hints.join(" | ")));
    }
    let stages: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("[FAIL]"))
        .map(str::trim)
        .collect();
    if !stages.is_empty() {
        parts.push(stages.join(" | "));
    }
    if parts.is_empty() {
        "see the output above".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::failure_summary;

    #[test]
    fn a_failure_names_the_test_and_its_seed() {
        let out = "test sim::lossless ... FAILED\n\
                   replay: SIM_SEED=77 cargo test -p msgr-mem --test sim -- lossless\n\
                   [FAIL] tests (3.0s): 1 failed\n";
        let s = failure_summary(out);
        assert!(s.contains("failing: sim::lossless"), "{s}");
        assert!(s.contains("SIM_SEED=77"), "{s}");
        assert!(s.contains("[FAIL] tests"), "{s}");
        assert_eq!(failure_summary("nothing"), "see the output above");
    }
}
