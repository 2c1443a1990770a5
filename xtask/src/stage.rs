//! Stages of `cargo xtask test`: each runs, then prints one verdict line with its wall time.
//! A stage that cannot run is a failure with the reason, never a silent pass; a stage left out
//! on purpose (`--quick`) says so on its own line.

use std::time::Instant;

pub enum Outcome {
    Pass(String),
    Fail(String),
    /// Deliberately not run (e.g. `--quick`); the text says why and how to run it.
    Skip(String),
}

struct Row {
    name: String,
    verdict: &'static str,
    detail: String,
    secs: f64,
}

#[derive(Default)]
pub struct Stages {
    rows: Vec<Row>,
    started: Option<Instant>,
}

impl Stages {
    /// Runs one stage and prints its verdict.
    pub fn run(&mut self, name: &str, f: impl FnOnce() -> Outcome) -> bool {
        self.started.get_or_insert_with(Instant::now);
        println!("\n==> {name}");
        let t0 = Instant::now();
        let outcome = f();
        let secs = t0.elapsed().as_secs_f64();
        let (verdict, detail, ok) = match outcome {
            Outcome::Pass(d) => ("PASS", d, true),
            Outcome::Fail(d) => ("FAIL", d, false),
            Outcome::Skip(d) => ("SKIP", d, true),
        };
        println!("[{verdict}] {name} ({}): {detail}", fmt_secs(secs));
        self.rows.push(Row {
            name: name.to_string(),
            verdict,
            detail,
            secs,
        });
        ok
    }

    /// Records a stage that was not reached because an earlier one it needs failed.
    pub fn not_reached(&mut self, name: &str, because: &str) {
        println!("[FAIL] {name}: not run, {because}");
        self.rows.push(Row {
            name: name.to_string(),
            verdict: "FAIL",
            detail: format!("not run, {because}"),
            secs: 0.0,
        });
    }

    /// Prints the summary and returns the process exit code.
    pub fn finish(&self) -> i32 {
        let total = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let w = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        println!("\n==> summary ({} total)", fmt_secs(total));
        for r in &self.rows {
            println!(
                "  [{}] {:<w$}  {:>8}  {}",
                r.verdict,
                r.name,
                fmt_secs(r.secs),
                r.detail
            );
        }
        let failed = self.rows.iter().filter(|r| r.verdict == "FAIL").count();
        let skipped = self.rows.iter().filter(|r| r.verdict == "SKIP").count();
        if failed > 0 {
            println!("{failed} stage(s) FAILED");
            1
        } else {
            if skipped > 0 {
                println!("all stages that ran passed; {skipped} skipped on purpose (see above)");
            } else {
                println!("all stages passed");
            }
            0
        }
    }
}

pub fn fmt_secs(s: f64) -> String {
    if s >= 60.0 {
        format!("{}m{:02.0}s", (s / 60.0) as u64, s % 60.0)
    } else {
        format!("{s:.1}s")
    }
}
