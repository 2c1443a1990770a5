//! Small helpers for running tools and finding things in the workspace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root: the parent of this crate's manifest folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return if d.is_absolute() {
            d
        } else {
            workspace_root().join(d)
        };
    }
    workspace_root().join("target")
}

/// The `cargo` that runs us (so a pinned toolchain stays pinned).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// How a command looks in a log line.
pub fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s += &format!("{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    // The toolchain's cargo is a long path; what a reader would type is `cargo`.
    let program = cmd.get_program();
    if std::env::var_os("CARGO").is_some_and(|c| c == program) {
        s += "cargo";
    } else {
        s += &program.to_string_lossy();
    }
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s += &format!(" '{a}'");
        } else {
            s += &format!(" {a}");
        }
    }
    s
}

/// Runs `cmd` with inherited stdio; Err says what ran and how it ended.
pub fn run_status(cmd: &mut Command) -> Result<(), String> {
    println!("    $ {}", show(cmd));
    let st = cmd
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({st})", show(cmd)))
    }
}

/// Runs `cmd`, echoing its stdout line by line as it comes (stderr inherited), and returns
/// the exit success and the captured stdout.
pub fn run_tee(cmd: &mut Command) -> Result<(bool, String), String> {
    tee(cmd, Stream::Stdout)
}

/// Runs `cmd`, echoing its stderr line by line as it comes (stdout inherited), and returns
/// the exit success and the captured stderr (where cargo puts compiler diagnostics).
pub fn run_tee_stderr(cmd: &mut Command) -> Result<(bool, String), String> {
    tee(cmd, Stream::Stderr)
}

#[derive(Clone, Copy, PartialEq)]
enum Stream {
    Stdout,
    Stderr,
}

fn tee(cmd: &mut Command, stream: Stream) -> Result<(bool, String), String> {
    println!("    $ {}", show(cmd));
    match stream {
        Stream::Stdout => cmd.stdout(Stdio::piped()),
        Stream::Stderr => cmd.stderr(Stdio::piped()),
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    let pipe: Box<dyn std::io::Read> = match stream {
        Stream::Stdout => Box::new(child.stdout.take().expect("piped")),
        Stream::Stderr => Box::new(child.stderr.take().expect("piped")),
    };
    let mut captured = String::new();
    for line in BufReader::new(pipe).lines() {
        let line = line.map_err(|e| format!("reading output of `{}`: {e}", show(cmd)))?;
        match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        }
        captured.push_str(&line);
        captured.push('\n');
    }
    let st = child
        .wait()
        .map_err(|e| format!("waiting for `{}`: {e}", show(cmd)))?;
    Ok((st.success(), captured))
}

/// The first compiler errors in cargo's human output: `message (path:line:col)`.
pub fn first_errors(diagnostics: &str, max: usize) -> (usize, Vec<String>) {
    let mut found = Vec::new();
    let mut total = 0;
    let mut pending: Option<&str> = None;
    for line in diagnostics.lines() {
        if let Some(msg) = line.strip_prefix("error: ").or_else(|| {
            line.strip_prefix("error[")
                .and_then(|r| r.split_once("]: ").map(|(_, m)| m))
        }) {
            // cargo's own summary lines ("could not compile ...") carry no location.
            pending = Some(msg);
            continue;
        }
        if let (Some(msg), Some(loc)) = (pending, line.trim_start().strip_prefix("--> ")) {
            total += 1;
            if found.len() < max {
                found.push(format!("{msg} ({loc})"));
            }
            pending = None;
        }
    }
    (total, found)
}

/// Output of a quick query command, trimmed; None if it cannot run or fails.
pub fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn is_root() -> bool {
    output_of("id", &["-u"]).as_deref() == Some("0")
}

/// The first address of RDMA device `dev`'s netdev (port 1): IPv4, or a global IPv6 address.
pub fn device_ip(dev: &str, v6: bool) -> Option<String> {
    let ndev = std::fs::read_to_string(format!(
        "/sys/class/infiniband/{dev}/ports/1/gid_attrs/ndevs/0"
    ))
    .ok()?;
    let family = if v6 { "-6" } else { "-4" };
    let mut args = vec![family, "-o", "addr", "show", "dev", ndev.trim()];
    if v6 {
        args.extend(["scope", "global"]);
    }
    let out = output_of("ip", &args)?;
    let key = if v6 { "inet6" } else { "inet" };
    let addr = out.split_whitespace().skip_while(|w| *w != key).nth(1)?;
    Some(addr.split('/').next()?.to_string())
}

/// The first RDMA device of this machine (from sysfs), if the kernel has one.
pub fn host_rdma_device() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/infiniband")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Totals of libtest's `test result:` lines in some output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub binaries: u64,
}

impl TestCounts {
    pub fn parse(output: &str) -> TestCounts {
        let mut c = TestCounts::default();
        for line in output.lines() {
            let Some(rest) = line.trim().strip_prefix("test result: ") else {
                continue;
            };
            c.binaries += 1;
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match label {
                    "passed" => c.passed += n,
                    "failed" => c.failed += n,
                    "ignored" => c.ignored += n,
                    _ => {}
                }
            }
        }
        c
    }

    /// Like [`TestCounts::parse`], for output where each test binary's run starts with a line
    /// beginning with `marker`: only the last `test result:` of each run counts, so a test
    /// that re-runs its own binary as a child (and prints the child's output) is not counted
    /// twice.
    pub fn parse_runs(output: &str, marker: &str) -> TestCounts {
        let mut total = TestCounts::default();
        let mut last: Option<&str> = None;
        let mut add = |l: Option<&str>| {
            if let Some(l) = l {
                let c = TestCounts::parse(l);
                total.passed += c.passed;
                total.failed += c.failed;
                total.ignored += c.ignored;
                total.binaries += c.binaries;
            }
        };
        for line in output.lines() {
            if line.starts_with(marker) {
                add(last.take());
            } else if line.trim_start().starts_with("test result: ") {
                last = Some(line);
            }
        }
        add(last);
        total
    }

    /// Names of the tests libtest reported as failed (`test NAME ... FAILED`).
    pub fn failing(output: &str) -> Vec<String> {
        output
            .lines()
            .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
            .map(str::to_string)
            .collect()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} ignored in {} test binaries",
            self.passed, self.failed, self.ignored, self.binaries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_errors_with_their_locations() {
        let d = "warning: unused\n  --> a.rs:1:1\n\
                 error: manual implementation of `.is_multiple_of()`\n  --> crates/x/src/f.rs:28:9\n   |\n\
                 error[E0425]: cannot find function `g`\n   --> y.rs:5:3\n\
                 error: could not compile `x` (lib) due to 2 previous errors\n";
        let (n, first) = first_errors(d, 1);
        assert_eq!(n, 2);
        assert_eq!(
            first,
            ["manual implementation of `.is_multiple_of()` (crates/x/src/f.rs:28:9)"]
        );
    }

    #[test]
    fn counts_sum_over_binaries() {
        let out = "running 3 tests\n\
            test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
            test result: FAILED. 10 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.00s\n";
        let c = TestCounts::parse(out);
        assert_eq!(
            c,
            TestCounts {
                passed: 13,
                failed: 2,
                ignored: 1,
                binaries: 2
            }
        );
        assert_eq!(TestCounts::parse("nothing here"), TestCounts::default());
        let runs = "==> bin1\ntest result: ok. 1 passed; 0 failed; 0 ignored\n\
            test result: ok. 5 passed; 0 failed; 2 ignored\n==> bin2\n\
            test result: FAILED. 3 passed; 1 failed; 0 ignored\n";
        let c = TestCounts::parse_runs(runs, "==> ");
        assert_eq!((c.passed, c.failed, c.ignored, c.binaries), (8, 1, 2, 2));
        let out = "test a::b ... ok\ntest a::c ... FAILED\ntest d ... FAILED\n";
        assert_eq!(TestCounts::failing(out), ["a::c", "d"]);
    }
}
