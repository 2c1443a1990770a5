//! The `library` stage of `cargo xtask test`: msgr as a new user meets it.
//!
//! 1. The README's example is `crates/msgr/examples/echo.rs`, byte for byte.
//! 2. A fresh `cargo new` project with the README's dependency line and the README's example as
//!    its `main.rs` builds without the RDMA crates in its tree (so without RDMA headers or clang)
//!    and runs.
//! 3. Every example of the workspace's crates that needs no RDMA device runs and exits 0.
//! 4. `cargo doc --no-deps` is warning-free (`RUSTDOCFLAGS=-D warnings`).
//! 5. The publishable crates package (`cargo package --no-verify`).
//! 6. The declared MSRV (`rust-version`) is at least what every dependency declares; clippy's
//!    `incompatible_msrv` lint (the clippy stage) checks the code against it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::stage::Outcome;
use crate::util::{self, cargo, run_tee, run_tee_stderr};

/// What the README example prints when it worked.
const ECHO_OUTPUT: &str = "echoed: hello";
/// Crates that must not be in a TCP-only application's dependency tree.
const RDMA_CRATES: [&str; 2] = ["rdma-sys", "msgr-rdma"];
/// Examples that need a peer no test here provides (built, not run): a Ceph monitor's address.
const NEEDS_A_PEER: [&str; 1] = ["mon_ping"];
/// How long one example may run before it counts as hung.
const EXAMPLE_PATIENCE: Duration = Duration::from_secs(120);

/// One check: a summary when it passed, what went wrong and what to do when not.
type Step = fn() -> Result<String, String>;

pub fn run() -> Outcome {
    let mut done = Vec::new();
    let steps: [(&str, Step); 6] = [
        ("README example", readme_matches_example),
        ("fresh project", fresh_project),
        ("examples", run_examples),
        ("docs", docs),
        ("package", package),
        ("msrv", msrv),
    ];
    for (name, step) in steps {
        println!("    -- {name}");
        match step() {
            Ok(s) => done.push(s),
            Err(e) => return Outcome::Fail(format!("{name}: {e}")),
        }
    }
    Outcome::Pass(done.join("; "))
}

/// The README's ```rust block.
fn readme_example(readme: &str) -> Option<String> {
    let start = readme.find("```rust\n")? + "```rust\n".len();
    let len = readme[start..].find("```")?;
    Some(readme[start..start + len].to_string())
}

/// The README's `msgr = ...` dependency line.
fn readme_dependency(readme: &str) -> Option<String> {
    let start = readme.find("```toml\n")? + "```toml\n".len();
    let len = readme[start..].find("```")?;
    readme[start..start + len]
        .lines()
        .find(|l| l.starts_with("msgr = "))
        .map(str::to_string)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn readme_matches_example() -> Result<String, String> {
    let root = util::workspace_root();
    let readme = read(&root.join("README.md"))?;
    let example = read(&root.join("crates/msgr/examples/echo.rs"))?;
    let shown = readme_example(&readme).ok_or("README.md has no ```rust block")?;
    if shown != example {
        return Err(
            "README.md's example differs from crates/msgr/examples/echo.rs (the tested one): \
             copy the file into the README's ```rust block"
                .into(),
        );
    }
    let lines = example.lines().count();
    if lines >= 40 {
        return Err(format!(
            "the README example has {lines} lines; keep it under 40"
        ));
    }
    Ok(format!("README example = examples/echo.rs ({lines} lines)"))
}

/// `cargo new app`, the README's dependency line (its path pointed at this checkout), the
/// README's example as main.rs; no RDMA crate in the tree; it runs and prints the echo.
fn fresh_project() -> Result<String, String> {
    let root = util::workspace_root();
    let readme = read(&root.join("README.md"))?;
    let dep =
        readme_dependency(&readme).ok_or("README.md's ```toml block has no `msgr = ` line")?;
    let msgr_dir = root.join("crates/msgr");
    let dep = match (dep.find("path = \""), dep.find("\" }")) {
        (Some(a), Some(b)) if a < b => {
            format!("{}path = \"{}{}", &dep[..a], msgr_dir.display(), &dep[b..])
        }
        _ => {
            return Err(format!(
                "README dependency line `{dep}` has no `path = \"...\" }}`"
            ))
        }
    };
    // Outside the checkout: inside it, `cargo new` would join the project to our workspace.
    let dir = std::env::temp_dir().join(format!("msgr-first-contact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    util::run_status(
        cargo()
            .args(["new", "--quiet", "--vcs", "none", "app"])
            .current_dir(&dir),
    )?;
    let app = dir.join("app");
    let manifest = app.join("Cargo.toml");
    let mut toml = read(&manifest)?;
    toml = toml.replace("[dependencies]", &format!("[dependencies]\n{dep}"));
    let write = |p: &Path, s: &str| {
        std::fs::write(p, s).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write(&manifest, &toml)?;
    write(
        &app.join("src/main.rs"),
        &readme_example(&readme).unwrap_or_default(),
    )?;
    // The checkout's lock file pins the same dependency versions (no surprise upgrades here).
    let _ = std::fs::copy(root.join("Cargo.lock"), app.join("Cargo.lock"));
    let target = util::target_dir().join("first-contact-target");
    let tree = cargo()
        .args(["tree", "--edges", "normal,build", "--prefix", "none"])
        .current_dir(&app)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !tree.status.success() {
        return Err(format!(
            "cargo tree failed in {}: {}",
            app.display(),
            String::from_utf8_lossy(&tree.stderr).trim()
        ));
    }
    let tree = String::from_utf8_lossy(&tree.stdout);
    if let Some(c) = RDMA_CRATES
        .iter()
        .find(|c| tree.lines().any(|l| l.starts_with(&format!("{c} "))))
    {
        return Err(format!(
            "a TCP-only application depends on {c} (needs RDMA headers and clang to build): \
             keep it behind msgr's `rdma` feature"
        ));
    }
    let mut run = cargo();
    run.args(["run", "--quiet"])
        .current_dir(&app)
        .env("CARGO_TARGET_DIR", &target);
    let (ok, out) = run_tee(&mut run)?;
    let _ = std::fs::remove_dir_all(&dir);
    if !ok || !out.contains(ECHO_OUTPUT) {
        return Err(format!(
            "the README example, built as a fresh project in {}, did not print `{ECHO_OUTPUT}`",
            app.display()
        ));
    }
    Ok(format!(
        "fresh `cargo new` project with the README lines builds without {} and runs",
        RDMA_CRATES.join(" / ")
    ))
}

/// An example target of a workspace package.
struct Example {
    package: String,
    name: String,
}

/// Examples that need neither an RDMA device nor a feature that is off by default.
fn examples() -> Result<(Vec<Example>, Vec<String>), String> {
    let meta = metadata()?;
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let package = p["name"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            if !t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "example"))
            {
                continue;
            }
            let name = t["name"].as_str().unwrap_or_default();
            let features = t["required-features"].as_array().map_or(0, Vec::len);
            if package == "msgr-rdma"
                || name.contains("rdma")
                || features > 0
                || NEEDS_A_PEER.contains(&name)
            {
                skipped.push(format!("{package}/{name}"));
            } else {
                run.push(Example {
                    package: package.into(),
                    name: name.into(),
                });
            }
        }
    }
    Ok((run, skipped))
}

fn run_examples() -> Result<String, String> {
    let (list, skipped) = examples()?;
    // Built together first, so each run below only runs.
    util::run_status(cargo().args(["build", "--workspace", "--examples"]))?;
    for e in &list {
        let mut cmd = cargo();
        cmd.args(["run", "--quiet", "-p", &e.package, "--example", &e.name])
            .stdin(Stdio::null());
        println!("    $ {}", util::show(&cmd));
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot run cargo: {e}"))?;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if started.elapsed() > EXAMPLE_PATIENCE {
                let _ = child.kill();
                return Err(format!(
                    "example {}/{} still running after {EXAMPLE_PATIENCE:?} (hung?)",
                    e.package, e.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(format!(
                "example {}/{} failed ({status}); see its output above",
                e.package, e.name
            ));
        }
    }
    Ok(format!(
        "{} examples ran (built, not run: {}: they need an RDMA device or a monitor)",
        list.len(),
        skipped.join(", ")
    ))
}

fn docs() -> Result<String, String> {
    let mut cmd = cargo();
    cmd.args(["doc", "--no-deps", "--workspace", "--exclude", "xtask"])
        .env("RUSTDOCFLAGS", "-D warnings");
    match run_tee_stderr(&mut cmd)? {
        (true, _) => Ok("cargo doc warning-free".into()),
        (false, diag) => {
            let (n, first) = util::first_errors(&diag, 1);
            Err(format!(
                "cargo doc with -D warnings: {n} error(s), first: {}",
                first.first().map_or("see above", String::as_str)
            ))
        }
    }
}

/// Workspace packages that may be published (no `publish = false`).
fn publishable() -> Result<Vec<String>, String> {
    let meta = metadata()?;
    Ok(meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| !p["publish"].as_array().is_some_and(Vec::is_empty))
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect())
}

fn package() -> Result<String, String> {
    let crates = publishable()?;
    let mut cmd = cargo();
    cmd.args(["package", "--no-verify", "--allow-dirty"]);
    for c in &crates {
        cmd.args(["-p", c]);
    }
    util::run_status(&mut cmd)?;
    Ok(format!(
        "{} crates package ({})",
        crates.len(),
        crates.join(", ")
    ))
}

/// `1.88` -> (1, 88); missing parts are 0.
fn version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn msrv() -> Result<String, String> {
    let meta = metadata_with_deps()?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    let mut declared = None;
    let mut highest: Option<(String, String)> = None;
    for p in meta["packages"].as_array().into_iter().flatten() {
        let Some(rv) = p["rust_version"].as_str() else {
            if members.contains(&p["id"].as_str().unwrap_or_default()) {
                return Err(format!(
                    "package {} declares no rust-version: add `rust-version.workspace = true`",
                    p["name"].as_str().unwrap_or("?")
                ));
            }
            continue;
        };
        if members.contains(&p["id"].as_str().unwrap_or_default()) {
            declared = Some(rv.to_string());
        } else if highest
            .as_ref()
            .is_none_or(|(h, _)| version(rv) > version(h))
        {
            highest = Some((
                rv.to_string(),
                p["name"].as_str().unwrap_or("?").to_string(),
            ));
        }
    }
    let declared = declared.ok_or("no workspace package declares a rust-version")?;
    if let Some((h, name)) = highest {
        if version(&h) > version(&declared) {
            return Err(format!(
                "rust-version {declared} is below what dependency {name} needs ({h}): raise \
                 `rust-version` in the workspace Cargo.toml"
            ));
        }
    }
    Ok(format!("MSRV {declared} covers every dependency"))
}

fn metadata() -> Result<serde_json::Value, String> {
    metadata_of(&["--no-deps"])
}

fn metadata_with_deps() -> Result<serde_json::Value, String> {
    metadata_of(&[])
}

fn metadata_of(extra: &[&str]) -> Result<serde_json::Value, String> {
    let out = cargo()
        .args(["metadata", "--format-version", "1"])
        .args(extra)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cannot parse cargo metadata: {e}"))
}
