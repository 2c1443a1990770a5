//! `cargo xtask test`: every check CI runs, in order, each with a verdict.
//!
//! Stages: prerequisites (system packages, rustfmt / clippy), fmt, clippy, tests
//! (`cargo test --workspace` minus the targets of the interop and rdma stages), library (a new
//! user's first contact: README example, fresh project, examples, docs, packaging, MSRV; see
//! `library.rs`), interop (against a real Ceph: msgr-core's `ceph_mon` and `ceph_mon_v2`
//! sessions and msgr-tests' `ceph_mon_node` messengers against monitors they start through
//! scripts/ceph-mon/start.sh, and msgrd's `ceph_cli`: the `ceph` command line against
//! `msgrd serve` over msgr2 and msgr1),
//! rdma (msgr-rdma's integration tests and any `rdma` / `*_rdma` test target, built here and run
//! on the host's RDMA device or inside the Soft-RoCE VM), netfault (real network faults between
//! messenger processes in namespaces inside the VM: `netfault.rs`).
//!
//! Tests that need a device or a monitor are `#[ignore = "needs ..."]`, so a plain `cargo test`
//! passes anywhere; every stage here runs its tests with `--include-ignored`, so nothing is
//! skipped on this path, and a test that cannot find what it needs fails saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::packages::{self, Group};
use crate::stage::{Outcome, Stages};
use crate::util::{self, cargo, host_rdma_device, run_status, run_tee, TestCounts};

/// Simulation seeds per scenario under `--quick`, and the variables the tests read it from.
const QUICK_SIM_SEEDS: &str = "32";
const SIM_SEEDS_VARS: [&str; 2] = ["SIM_SEEDS", "MSGR_SIM_SEEDS"];
/// msgr-core's test against a real Ceph monitor.
const INTEROP_TARGET: &str = "ceph_mon";
/// The msgr2 interop tests (monitors with auth none and cephx; `#[ignore]`d without this stage).
const INTEROP_V2_TARGET: &str = "ceph_mon_v2";
/// The node-level interop tests (a messenger from TOML, msgr1 and msgr2) in msgr-tests.
const INTEROP_NODE_TARGET: &str = "ceph_mon_node";
/// The real `ceph` command line against `msgrd serve` (msgrd's test).
const INTEROP_CLI_TARGET: &str = "ceph_cli";
/// What the RDMA stage's runner prints before each test binary.
const RUN_MARKER: &str = "==> running ";
/// The project's own Soft-RoCE VM runner.
pub const VM_RUNNER: &str = "scripts/rdma-vm/run.sh";

#[derive(clap::Args)]
pub struct TestArgs {
    /// Shorter local loop: SIM_SEEDS=32 (unless set), no RDMA stage, the short netfault run.
    #[arg(long)]
    quick: bool,
    /// Run only these stages (comma-separated: fmt, clippy, tests, library, interop, rdma,
    /// netfault); the others
    /// are listed as skipped. Prerequisites always run.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run the host test stages (tests, interop; or those of --only) this many times in a row,
    /// stopping at the first failure (see xtask/src/repeat.rs).
    #[arg(long, value_name = "N")]
    repeat: Option<u32>,
    /// With --repeat: pin every round to one CPU next to a busy competitor (CPU starvation).
    #[arg(long, requires = "repeat")]
    starve: bool,
}

const STAGES: [&str; 7] = [
    "fmt", "clippy", "tests", "library", "interop", "rdma", "netfault",
];

pub fn run(a: TestArgs) -> i32 {
    let mut st = Stages::default();
    let mut groups: Vec<&Group> = vec![&packages::BUILD, &packages::CEPH];
    if mentions_tshark() {
        groups.push(&packages::TSHARK);
    }
    // The netfault stage boots the VM even under --quick (its short version).
    groups.push(&packages::RDMA_VM);
    if let Some(bad) = a.only.iter().find(|s| !STAGES.contains(&s.as_str())) {
        eprintln!(
            "xtask test: unknown stage `{bad}` in --only (stages: {})",
            STAGES.join(", ")
        );
        return 2;
    }
    if let Some(rounds) = a.repeat {
        return crate::repeat::run(&crate::repeat::Repeat {
            rounds,
            starve: a.starve,
            quick: a.quick,
            only: a.only.clone(),
        });
    }
    let wanted = |name: &str| a.only.is_empty() || a.only.iter().any(|s| s == name);
    if !a.only.is_empty() && !wanted("rdma") && !wanted("netfault") {
        groups.retain(|g| !std::ptr::eq(*g, &packages::RDMA_VM));
    }
    if !st.run("prerequisites", || prerequisites(&groups)) {
        for s in STAGES {
            st.not_reached(s, "the prerequisites are missing (see above)");
        }
        return st.finish();
    }
    let mut stage = |name: &str, f: &dyn Fn() -> Outcome| {
        if wanted(name) {
            st.run(name, f);
        } else {
            st.run(name, || Outcome::Skip("not selected by --only".into()));
        }
    };
    stage("fmt", &fmt);
    stage("clippy", &clippy);
    stage("tests", &|| unit_and_integration(a.quick));
    stage("library", &crate::library::run);
    stage("interop", &interop);
    if a.quick {
        stage("rdma", &|| {
            Outcome::Skip("skipped by --quick; `cargo xtask test` runs the RDMA suite".into())
        });
    } else {
        stage("rdma", &rdma);
    }
    stage("netfault", &|| crate::netfault::stage(a.quick));
    st.finish()
}

fn clippy() -> Outcome {
    let r = util::run_tee_stderr(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]));
    match r {
        Ok((true, _)) => Outcome::Pass("no warnings".into()),
        Ok((false, diag)) => {
            let (n, first) = util::first_errors(&diag, 1);
            match first.first() {
                Some(e) => Outcome::Fail(format!(
                    "{n} error(s) with -D warnings, first: {e}; see above"
                )),
                None => Outcome::Fail("cargo clippy failed (see above)".into()),
            }
        }
        Err(e) => Outcome::Fail(e),
    }
}

fn fmt() -> Outcome {
    match run_tee(cargo().args(["fmt", "--all", "--", "--check"])) {
        Ok((true, _)) => Outcome::Pass("formatted".into()),
        Ok((false, out)) => {
            let mut files: Vec<&str> = out
                .lines()
                .filter_map(|l| l.strip_prefix("Diff in "))
                .map(|l| l.rsplit_once(':').map_or(l, |(f, _)| f))
                .map(|f| f.rsplit_once(':').map_or(f, |(f, _)| f))
                .collect();
            files.dedup();
            let root = util::workspace_root();
            let root = root.to_string_lossy();
            let shown: Vec<&str> = files
                .iter()
                .map(|f| {
                    f.strip_prefix(root.as_ref())
                        .map_or(*f, |f| f.trim_start_matches('/'))
                })
                .collect();
            Outcome::Fail(format!(
                "{} file(s) not formatted ({}); run `cargo fmt --all`",
                shown.len(),
                shown.join(", ")
            ))
        }
        Err(e) => Outcome::Fail(e),
    }
}

fn prerequisites(groups: &[&Group]) -> Outcome {
    let pk = match packages::ensure(groups) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(e),
    };
    // rustfmt and clippy are rustup components; a minimal profile lacks them.
    let have = |sub: &str| {
        cargo()
            .args([sub, "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("fmt") || !have("clippy") {
        println!("    rustfmt or clippy missing: adding the rustup components");
        if let Err(e) =
            run_status(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
        {
            return Outcome::Fail(format!(
                "{e}; install rustfmt and clippy for this toolchain (rustup component add rustfmt clippy)"
            ));
        }
    }
    Outcome::Pass(format!("{pk}; rustfmt and clippy present"))
}

/// Everything except what later stages run: unit tests of every crate (msgr-rdma's
/// included: they need no device), doc tests, and every integration test that needs neither a
/// Ceph monitor nor an RDMA device.
fn unit_and_integration(quick: bool) -> Outcome {
    let targets = match test_targets() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let mut cmd = cargo();
    // --no-fail-fast: one failing binary must not hide the verdicts of the others.
    cmd.args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--lib",
        "--bins",
        "--examples",
    ]);
    for t in targets
        .iter()
        .filter(|t| !t.needs_rdma() && !t.is_interop())
    {
        cmd.args(["--test", &t.name]);
    }
    // Tests ignored by a plain `cargo test` because they are slow run here; the ones that need
    // a device or a monitor live in the targets of the later stages.
    cmd.args(["--", "--include-ignored"]);
    let mut doc = cargo();
    doc.args(["test", "--no-fail-fast", "--workspace", "--doc"]);
    if quick {
        for c in [&mut cmd, &mut doc] {
            for var in SIM_SEEDS_VARS {
                if std::env::var_os(var).is_none() {
                    c.env(var, QUICK_SIM_SEEDS);
                }
            }
        }
    }
    let mut out = String::new();
    let mut ok = true;
    for c in [&mut cmd, &mut doc] {
        match run_tee(c) {
            Ok((o, text)) => {
                ok &= o;
                out += &text;
            }
            Err(e) => return Outcome::Fail(e),
        }
    }
    tests_outcome(Ok((ok, out)), "")
}

/// Turns a test run into a verdict: it passes only if it ran at least one test and none failed.
fn tests_outcome(r: Result<(bool, String), String>, where_: &str) -> Outcome {
    counted_outcome(r, where_, TestCounts::parse)
}

fn counted_outcome(
    r: Result<(bool, String), String>,
    where_: &str,
    count: impl Fn(&str) -> TestCounts,
) -> Outcome {
    let (ok, out) = match r {
        Ok(x) => x,
        Err(e) => return Outcome::Fail(e),
    };
    let c = count(&out);
    let failing = TestCounts::failing(&out);
    let where_ = &if failing.is_empty() {
        where_.to_string()
    } else {
        let more = failing.len().saturating_sub(5);
        let mut names = failing.into_iter().take(5).collect::<Vec<_>>().join(", ");
        if more > 0 {
            names += &format!(" and {more} more");
        }
        format!("{where_}; failing: {names}")
    };
    if ok && c.failed == 0 && c.passed > 0 {
        Outcome::Pass(format!("{}{where_}", c.summary()))
    } else if c.binaries == 0 {
        Outcome::Fail("no test ran (build failure? see above)".into())
    } else if c.passed == 0 && c.failed == 0 {
        Outcome::Fail(format!("{}: zero tests ran{where_}", c.summary()))
    } else {
        Outcome::Fail(format!("{}{where_}", c.summary()))
    }
}

fn interop() -> Outcome {
    let start = Path::new("scripts/ceph-mon/start.sh");
    if !start.exists() {
        return Outcome::Fail(format!("{} is missing", start.display()));
    }
    match test_targets().map(|t| t.iter().any(|t| t.is_interop())) {
        Ok(true) => {}
        Ok(false) => {
            return Outcome::Fail(
                "msgr-core has no `ceph_mon` integration test yet (crates/msgr-core/tests/ceph_mon.rs); \
                 nothing checked against a real monitor"
                    .into(),
            )
        }
        Err(e) => return Outcome::Fail(e),
    }
    let outcome = tests_outcome(
        run_tee(cargo().args([
            "test",
            "--no-fail-fast",
            "-p",
            "msgr-core",
            "-p",
            "msgr-tests",
            "-p",
            "msgrd",
            "--test",
            INTEROP_TARGET,
            "--test",
            INTEROP_V2_TARGET,
            "--test",
            INTEROP_NODE_TARGET,
            "--test",
            INTEROP_CLI_TARGET,
            "--",
            "--include-ignored",
        ])),
        " against a real ceph-mon",
    );
    // The test leaves its monitor running for quick reruns; the stage does not.
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = Command::new("bash")
        .arg("scripts/ceph-mon/stop.sh")
        .env("CEPH_MON_DIR", Path::new(&target).join("ceph-mon-test"))
        .status();
    outcome
}

/// An integration-test target of a workspace package.
#[derive(Clone, Debug)]
pub struct TestTarget {
    pub package: String,
    pub name: String,
}

impl TestTarget {
    /// Needs an RDMA device: every integration test of msgr-rdma, and any other package's
    /// test target named `rdma` or `*_rdma` (the transport-parameterised suite run over RDMA).
    fn needs_rdma(&self) -> bool {
        self.package == "msgr-rdma" || self.name == "rdma" || self.name.ends_with("_rdma")
    }

    /// Talks to a real Ceph monitor: the interop stage runs it on its own.
    fn is_interop(&self) -> bool {
        (self.package == "msgr-core"
            && [INTEROP_TARGET, INTEROP_V2_TARGET].contains(&self.name.as_str()))
            || (self.package == "msgr-tests" && self.name == INTEROP_NODE_TARGET)
            || (self.package == "msgrd" && self.name == INTEROP_CLI_TARGET)
    }
}

/// Every integration-test target in the workspace, from `cargo metadata`.
fn test_targets() -> Result<Vec<TestTarget>, String> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cannot parse cargo metadata: {e}"))?;
    let mut targets = Vec::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"))
            {
                targets.push(TestTarget {
                    package: p["name"].as_str().unwrap_or_default().to_string(),
                    name: t["name"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    Ok(targets)
}

/// A test executable cargo built.
pub struct TestBinary {
    pub name: String,
    pub path: PathBuf,
}

/// Builds one integration-test executable without running it.
fn build_test_binary(t: &TestTarget) -> Result<Vec<TestBinary>, String> {
    let package = &t.package;
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        package,
        "--test",
        &t.name,
        "--no-run",
        "--message-format=json",
    ])
    .stderr(Stdio::inherit());
    println!("    $ {}", util::show(&cmd));
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building {package}'s test `{}` failed (see above)",
            t.name
        ));
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        if let Some(exe) = v["executable"].as_str() {
            bins.push(TestBinary {
                name: v["target"]["name"].as_str().unwrap_or("?").to_string(),
                path: PathBuf::from(exe),
            });
        }
    }
    Ok(bins)
}

/// How many tests a libtest binary holds (listing runs nothing, so it works without a device).
fn count_tests(bin: &TestBinary) -> Result<usize, String> {
    let out = Command::new(&bin.path)
        .args(["--list", "--format", "terse"])
        .output()
        .map_err(|e| format!("cannot list tests of {}: {e}", bin.path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --list failed: {}",
            bin.path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(": test"))
        .count())
}

fn rdma() -> Outcome {
    let targets = match test_targets() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let mut bins = Vec::new();
    for t in targets.iter().filter(|t| t.needs_rdma()) {
        match build_test_binary(t) {
            Ok(b) => bins.extend(b),
            Err(e) => return Outcome::Fail(e),
        }
    }
    if bins.is_empty() {
        return Outcome::Fail(
            "no RDMA tests found: msgr-rdma has no integration test target (crates/msgr-rdma/tests/) \
             and no other package has a test target named `rdma` or `*_rdma`"
                .into(),
        );
    }
    let mut total = 0;
    let mut with_tests = Vec::new();
    for b in bins.iter() {
        match count_tests(b) {
            Ok(0) => {}
            Ok(n) => {
                println!("    {}: {n} tests", b.name);
                total += n;
                with_tests.push(b);
            }
            Err(e) => return Outcome::Fail(e),
        }
    }
    if total == 0 {
        return Outcome::Fail(format!(
            "no RDMA tests found: the RDMA test binaries ({}) hold 0 tests",
            bins.iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // The user-facing RDMA examples run there too (they exit non-zero on failure).
    let examples = match build_rdma_examples() {
        Ok(e) => e,
        Err(e) => return Outcome::Fail(e),
    };
    // One shell loop runs them all, so the VM boots once; each binary one test at a time
    // (they share the single rxe0 device and its port space).
    let script = r#"rc=0; for b in "$@"; do case "$b" in
        */examples/*) echo "==> example $b"; "$b" || { echo "example $b FAILED"; rc=1; } ;;
        *) echo "==> running $b"; "$b" --test-threads 1 --include-ignored || rc=1 ;;
        esac; done; exit $rc"#;
    let device = host_rdma_device();
    let where_ = match &device {
        Some(dev) => format!(" on the host's RDMA device {dev}"),
        None => " on rxe0 inside the Soft-RoCE VM".to_string(),
    };
    let command = || {
        let mut c = match &device {
            Some(dev) => {
                // The tests take the addresses from the environment (the VM runner sets them);
                // on a host device they default to the device netdev's own addresses.
                // NO_RDMA_IP6 (an address on a netdev without RDMA) cannot be guessed: the IPv6
                // error tests say they did not run without it.
                let mut c = Command::new("bash");
                c.env("RDMA_DEV", dev);
                for (var, v6) in [("RDMA_IP", false), ("RDMA_IP6", true)] {
                    if std::env::var_os(var).is_none() {
                        if let Some(ip) = crate::util::device_ip(dev, v6) {
                            c.env(var, ip);
                        }
                    }
                }
                c
            }
            None => {
                let mut c = Command::new(VM_RUNNER);
                // The suite takes 2-5 minutes under emulation; a boot that hangs should not
                // cost the runner's 15-minute default.
                if std::env::var_os("RXE_VM_TIMEOUT").is_none() {
                    c.env("RXE_VM_TIMEOUT", "600");
                }
                c.arg("bash");
                c
            }
        };
        c.args(["-c", script, "rdma-tests"]);
        c.args(with_tests.iter().map(|b| &b.path));
        c.args(&examples);
        c
    };
    // The guest's shell echoes the marker before the first binary: without it the VM never ran
    // the command (a boot that hung under software emulation), which is worth one more boot.
    let never_started = |r: &Result<(bool, String), String>| matches!(r, Ok((false, out)) if !out.contains("==> running"));
    let mut r = run_tee(&mut command());
    if device.is_none() && never_started(&r) {
        println!("    the VM never ran the tests (boot failure); booting it once more");
        r = run_tee(&mut command());
    }
    if let Ok((false, out)) = &r {
        if TestCounts::parse_runs(out, RUN_MARKER).binaries == 0 {
            return Outcome::Fail(format!(
                "the RDMA test run ended before any test binary reported{where_} \
                 (VM failure? its console tail is above; RXE_VM_DEBUG=1 shows the boot)"
            ));
        }
    }
    counted_outcome(r, &where_, |o| TestCounts::parse_runs(o, RUN_MARKER))
}

/// The msgr facade's RDMA examples (`required-features = ["rdma"]`), built; their paths.
fn build_rdma_examples() -> Result<Vec<PathBuf>, String> {
    const EXAMPLES: [&str; 1] = ["rdma_echo"];
    let mut cmd = cargo();
    cmd.args(["build", "-p", "msgr", "--features", "rdma"]);
    for e in EXAMPLES {
        cmd.args(["--example", e]);
    }
    run_status(&mut cmd)?;
    Ok(EXAMPLES
        .iter()
        .map(|e| util::target_dir().join("debug/examples").join(e))
        .collect())
}

/// Whether any test or source file mentions tshark (then it must be installed).
fn mentions_tshark() -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        rd.filter_map(|e| e.ok()).any(|e| {
            let p = e.path();
            if p.is_dir() {
                depth < 6 && walk(&p, depth + 1)
            } else {
                p.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&p).is_ok_and(|s| s.contains("tshark"))
            }
        })
    }
    walk(Path::new("crates"), 0) || walk(Path::new("tests"), 0)
}
