//! The netfault stage of `cargo xtask test`: real network faults between real messenger
//! processes. It builds the tests crate's `netfault` binary here and runs `netfault run` as
//! root inside the Soft-RoCE VM (`scripts/rdma-vm/run.sh`), whose Debian kernel has the netem
//! qdisc this machine's kernel may lack: three network namespaces on a bridge, netem loss /
//! delay / reordering, partitions, SIGKILL and restart (tests/netfault/main.rs lists them).

use std::path::PathBuf;
use std::process::Command;

use crate::stage::Outcome;
use crate::test::VM_RUNNER;
use crate::util::{self, cargo, run_status, run_tee};

/// What `netfault run` prints before its total (the stage's verdict quotes it).
const TOTAL_MARKER: &str = "NETFAULT TOTAL delivered ";

/// Runs the stage; `quick` runs the short version (`netfault run --quick`).
pub fn stage(quick: bool) -> Outcome {
    if !util::is_root() {
        return Outcome::Fail(
            "needs root (it creates network namespaces and netem qdiscs inside the Soft-RoCE \
             VM, which itself needs root): run `sudo cargo xtask test`"
                .into(),
        );
    }
    for tool in ["ip", "tc"] {
        if util::output_of(tool, &["-V"]).is_none() {
            return Outcome::Fail(format!(
                "`{tool}` is missing (Debian package iproute2): install it"
            ));
        }
    }
    // Release: the VM's CPU is emulated, and a debug build moves a fraction of the messages.
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "msgr-tests",
        "--bin",
        "netfault",
    ]);
    if let Err(e) = run_status(&mut build) {
        return Outcome::Fail(format!("building the netfault binary failed: {e}"));
    }
    let bin: PathBuf = util::target_dir().join("release").join("netfault");
    let mut cmd = Command::new(VM_RUNNER);
    if std::env::var_os("RXE_VM_TIMEOUT").is_none() {
        cmd.env("RXE_VM_TIMEOUT", if quick { "900" } else { "3000" });
    }
    cmd.arg(&bin).arg("run");
    if quick {
        cmd.arg("--quick");
    }
    match run_tee(&mut cmd) {
        Ok((ok, out)) => verdict(ok, &out),
        Err(e) => Outcome::Fail(e),
    }
}

fn verdict(ok: bool, out: &str) -> Outcome {
    let total = out
        .lines()
        .find_map(|l| l.strip_prefix(TOTAL_MARKER))
        .map(str::trim);
    let scenarios = |v: &str| {
        out.lines()
            .filter(|l| l.starts_with(&format!("[{v}] netfault")))
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (ok, total) {
        (true, Some(n)) => Outcome::Pass(format!(
            "{n} messages delivered, none lost, duplicated or reordered (scenarios {}; RDMA \
             between namespaces not run, see above)",
            scenarios("PASS")
        )),
        (false, Some(_)) => Outcome::Fail(format!(
            "scenario(s) {} failed (see above); passed: {}",
            scenarios("FAIL"),
            scenarios("PASS")
        )),
        (_, None) => Outcome::Fail(
            "netfault ended before its summary (VM failure? exit 125 is the VM's; \
             RXE_VM_DEBUG=1 shows the boot)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_names_scenarios_and_the_total() {
        let out = "[PASS] netfault a (3.0s)\n[FAIL] netfault d (9.0s): stuck\n\
                   NETFAULT TOTAL delivered 6000\n";
        let Outcome::Fail(f) = verdict(false, out) else {
            panic!("a failed scenario passed")
        };
        assert!(
            f.contains("scenario(s) d failed") && f.contains("passed: a"),
            "{f}"
        );
        let Outcome::Pass(p) = verdict(
            true,
            "[PASS] netfault a (1s)\nNETFAULT TOTAL delivered 12\n",
        ) else {
            panic!("a clean run failed")
        };
        assert!(p.starts_with("12 messages"), "{p}");
        assert!(matches!(verdict(true, "no summary"), Outcome::Fail(_)));
    }
}
