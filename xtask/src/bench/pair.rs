//! One measurement: start a server process, wait until it says it listens, run a client
//! process against it, collect the client's JSON line and the server's CPU time.
//!
//! The shape is the same for msgrd and for tcp-baseline: the server prints `LISTENING <addr>`
//! on stdout when ready; the client's last stdout line is one JSON object (see
//! [`msgr_benches::report::RunResult`]); `{ADDR}` in the client's arguments is replaced by the
//! address the server announced.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use msgr_benches::report::{proc_cpu_seconds, proc_status_bytes};

/// How long a server may take to announce its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A server command and a client command that together measure one cell.
#[derive(Clone, Debug)]
pub struct Pair {
    pub server: Vec<String>,
    pub client: Vec<String>,
    /// What the server prints when it is ready (a prefix; the rest of the line is its address).
    pub ready_prefix: String,
    /// Pause between the ready line and starting the client (for servers that announce
    /// themselves a moment before they listen).
    pub settle: Duration,
    /// Upper bound for the client run.
    pub client_timeout: Duration,
}

/// What one pair run measured.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The client's JSON object.
    pub client: serde_json::Value,
    pub server: ServerStats,
}

/// The server process's side of a run (each None when the server had exited by then).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerStats {
    /// CPU seconds (user + system) spent while the client ran.
    pub cpu_s: Option<f64>,
    /// Peak resident set (VmHWM) when the client started: the server's own start-up cost.
    pub hwm_before: Option<u64>,
    /// Peak resident set after the client ended: the high-water mark of the whole run.
    pub hwm_after: Option<u64>,
}

/// A child that is killed when dropped, and the last lines of its stderr.
struct Guard {
    child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guard {
    fn tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap();
        let s: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        s.join(" | ")
    }
}

/// Keeps the last few lines of a stream, so a failure can say what the program said.
fn collect_tail(r: impl Read + Send + 'static, keep: usize) -> Arc<Mutex<VecDeque<String>>> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let t = tail.clone();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut t = t.lock().unwrap();
            if t.len() == keep {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
    tail
}

fn spawn(argv: &[String], what: &str) -> Result<Guard, String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what} `{}`: {e}", argv.join(" ")))?;
    let stderr_tail = collect_tail(child.stderr.take().expect("piped"), 6);
    Ok(Guard { child, stderr_tail })
}

/// Waits for a line starting with `prefix` on the child's stdout and returns the rest of it;
/// later output is drained in the background so the server never blocks on a full pipe.
fn wait_ready(g: &mut Guard, prefix: &str, what: &str) -> Result<String, String> {
    let out = g.child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let wanted = prefix.to_string();
    let prefix = prefix.to_string();
    thread::spawn(move || {
        let mut lines = BufReader::new(out).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if let Some(rest) = line.trim().strip_prefix(prefix.as_str()) {
                let _ = tx.send(rest.trim().to_string());
                break;
            }
        }
        drop(tx);
        for _ in lines {}
    });
    match rx.recv_timeout(LISTEN_TIMEOUT) {
        Ok(addr) => Ok(addr),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Give its stderr reader a moment to catch the last words.
            thread::sleep(Duration::from_millis(100));
            let status = g
                .child
                .try_wait()
                .ok()
                .flatten()
                .map_or("still running".to_string(), |s| s.to_string());
            Err(format!(
                "{what} ended without printing `{wanted}ADDR` ({status}): {}",
                g.tail()
            ))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "{what} did not announce its address within {}s: {}",
            LISTEN_TIMEOUT.as_secs(),
            g.tail()
        )),
    }
}

/// Runs a client to completion with a deadline; returns its stdout.
pub fn run_client(argv: &[String], timeout: Duration, what: &str) -> Result<String, String> {
    let mut g = spawn(argv, what)?;
    let mut out = g.child.stdout.take().expect("piped");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        match g.child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if t0.elapsed() > timeout => {
                return Err(format!(
                    "{what} still running after {}s, killed: {}",
                    timeout.as_secs(),
                    g.tail()
                ))
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    let stdout = reader.join().unwrap_or_default();
    if !status.success() {
        thread::sleep(Duration::from_millis(50));
        return Err(format!("{what} failed ({status}): {}", g.tail()));
    }
    Ok(stdout)
}

/// The last non-empty line of `stdout`, parsed as a JSON object.
pub fn last_json_line(stdout: &str, what: &str) -> Result<serde_json::Value, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{what} printed nothing on stdout (expected one JSON line)"))?;
    let v: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("{what} printed `{line}`, not JSON: {e}"))?;
    if !v.is_object() {
        return Err(format!("{what} printed `{line}`, not a JSON object"));
    }
    Ok(v)
}

/// Runs one server + client pair; returns the client's stdout and what the server spent while
/// the client ran (None when the server had exited by then, as perftest servers do).
pub fn run_raw(p: &Pair) -> Result<(String, ServerStats), String> {
    let mut server = spawn(&p.server, "server")?;
    let addr = wait_ready(&mut server, &p.ready_prefix, "server")?;
    thread::sleep(p.settle);
    let pid = server.child.id().to_string();
    let cpu0 = proc_cpu_seconds(&pid).ok();
    let hwm_before = proc_status_bytes(&pid, "VmHWM").ok();
    let client: Vec<String> = p
        .client
        .iter()
        .map(|a| a.replace("{ADDR}", &addr))
        .collect();
    let stdout = run_client(&client, p.client_timeout, "client")
        .map_err(|e| format!("{e} [server: {}]", server.tail()))?;
    let exited = server.child.try_wait().ok().flatten().is_some();
    let (cpu1, hwm_after) = if exited {
        (None, None)
    } else {
        (
            proc_cpu_seconds(&pid).ok(),
            proc_status_bytes(&pid, "VmHWM").ok(),
        )
    };
    let stats = ServerStats {
        cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        hwm_before,
        hwm_after,
    };
    Ok((stdout, stats))
}

/// Runs one server + client pair whose client prints a JSON line.
pub fn run(p: &Pair) -> Result<Measured, String> {
    let (stdout, server) = run_raw(p)?;
    Ok(Measured {
        client: last_json_line(&stdout, "client")?,
        server,
    })
}
