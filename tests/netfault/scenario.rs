//! `netfault run`: the scenarios, each on a fresh run folder with three fresh nodes, and the
//! judge of their reports. All streams are lossless (`lossless_peer`); see `main.rs` for the
//! list and why the timeouts are short.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net;
use crate::node::write_file;

/// Keepalive and idle timeout of every node: a partition of PARTITION_SHORT is longer than the
/// first and shorter than the second, one of PARTITION_LONG is longer than both.
pub const KEEPALIVE_MS: u64 = 500;
pub const IDLE_MS: u64 = 6000;
const PARTITION_SHORT: Duration = Duration::from_secs(2);
const PARTITION_LONG: Duration = Duration::from_secs(12);
/// How long a killed node stays dead.
const DEAD: Duration = Duration::from_secs(1);
/// Netem on every node's sending side in the fault scenarios (the loss scenario has its own).
const BASE: &[&str] = &["delay", "5ms", "2ms"];
const LOSSY: &[&str] = &["delay", "10ms", "5ms", "loss", "1%"];
const NODES: u32 = 3;
/// The node the faults hit.
const VICTIM: u32 = 1;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Partition(Duration),
    Kill { same_nonce: bool },
}

struct Scenario {
    key: &'static str,
    what: &'static str,
    netem: &'static [&'static str],
    fault: Fault,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        key: "a",
        what: "1% loss, 10 ms +- 5 ms delay (reordering), whole run",
        netem: LOSSY,
        fault: Fault::None,
    },
    Scenario {
        key: "b",
        what: "node 1 partitioned 2 s mid-stream (> keepalive 0.5 s, < idle 6 s), healed",
        netem: BASE,
        fault: Fault::Partition(PARTITION_SHORT),
    },
    Scenario {
        key: "c",
        what: "node 1 partitioned 12 s mid-stream (> idle 6 s): fault, reconnect, replay",
        netem: BASE,
        fault: Fault::Partition(PARTITION_LONG),
    },
    Scenario {
        key: "d",
        what:
            "node 1 SIGKILLed mid-stream, restarted with a new nonce (peers learn it from the map)",
        netem: BASE,
        fault: Fault::Kill { same_nonce: false },
    },
    Scenario {
        key: "d2",
        what: "node 1 SIGKILLed mid-stream, restarted with the same nonce (remote reset)",
        netem: BASE,
        fault: Fault::Kill { same_nonce: true },
    },
];

/// Options of `netfault run`.
pub struct RunSpec {
    pub dir: PathBuf,
    pub count: u64,
    pub size: usize,
    pub only: Vec<String>,
    pub deadline: Duration,
}

/// One node's report: its `node` line and its `peer` lines, as key -> value maps.
#[derive(Default, Debug)]
struct Report {
    node: HashMap<String, String>,
    peers: HashMap<u32, HashMap<String, String>>,
}

impl Report {
    fn parse(text: &str) -> Report {
        let mut r = Report::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let kind = words.next().unwrap_or("");
            let kv: HashMap<String, String> = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match kind {
                "node" => r.node = kv,
                "peer" => {
                    if let Some(i) = kv.get("idx").and_then(|v| v.parse().ok()) {
                        r.peers.insert(i, kv);
                    }
                }
                _ => {}
            }
        }
        r
    }
    fn n(&self, key: &str) -> u64 {
        self.node.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
    fn p(&self, peer: u32, key: &str) -> Option<u64> {
        self.peers.get(&peer)?.get(key)?.parse().ok()
    }
}

/// Totals of one scenario, for the table.
#[derive(Default)]
struct Row {
    sent: u64,
    delivered: u64,
    replayed: u64,
    reconnects: u64,
    undelivered: u64,
    resets: u64,
    /// Faults by cause (`node::FAULT_CAUSES`), over the nodes.
    causes: [u64; 4],
    secs: f64,
}

/// Runs the selected scenarios; Err lists what failed.
pub fn run(spec: &RunSpec) -> Result<(), String> {
    net::preflight()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for sc in SCENARIOS
        .iter()
        .filter(|s| spec.only.is_empty() || spec.only.iter().any(|o| o == s.key))
    {
        println!(
            "==> netfault {}: {} ({} messages per stream, 6 streams)",
            sc.key, sc.what, spec.count
        );
        let dir = spec.dir.join(sc.key);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        net::build(NODES)?;
        let t0 = Instant::now();
        let r = run_one(sc, spec, &exe, &dir);
        let secs = t0.elapsed().as_secs_f64();
        net::teardown(NODES);
        match r {
            Ok(mut row) => {
                row.secs = secs;
                println!("[PASS] netfault {} ({secs:.1}s)", sc.key);
                rows.push((sc.key, row));
            }
            Err(e) => {
                println!("[FAIL] netfault {} ({secs:.1}s): {e}", sc.key);
                show_logs(&dir);
                failures.push(format!("{}: {e}", sc.key));
            }
        }
    }
    println!(
        "==> netfault e (the same over RDMA): not run: the VM's kernel (Debian 12, 6.1) creates \
         rxe's UDP socket in the initial network namespace only, so rxe on a veth inside a \
         namespace gets no RoCE packets (rdma_cm: RDMA_CM_EVENT_UNREACHABLE; ib_send_bw: \
         completion status 2); RDMA between namespaces needs kernel 6.10 or later, and rxe \
         devices in one namespace talk over loopback, past any netem"
    );
    print_table(&rows);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn spawn(
    exe: &Path,
    dir: &Path,
    spec: &RunSpec,
    i: u32,
    inc: u32,
    nonce: Option<u32>,
) -> Result<Child, String> {
    let log =
        std::fs::File::create(dir.join(format!("log.{i}.{inc}"))).map_err(|e| e.to_string())?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &net::ns(i)]).arg(exe).arg("node");
    let kv = [
        ("index", i.to_string()),
        ("inc", inc.to_string()),
        ("nodes", NODES.to_string()),
        ("count", spec.count.to_string()),
        ("size", spec.size.to_string()),
        ("keepalive-ms", KEEPALIVE_MS.to_string()),
        ("idle-ms", IDLE_MS.to_string()),
    ];
    for (k, v) in kv {
        c.arg(format!("--{k}")).arg(v);
    }
    c.arg("--dir").arg(dir);
    if let Some(n) = nonce {
        c.args(["--nonce", &n.to_string()]);
    }
    c.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    c.spawn().map_err(|e| format!("cannot start node {i}: {e}"))
}

/// Messages delivered so far, from the nodes' status files.
fn progress(dir: &Path) -> u64 {
    (0..NODES)
        .filter_map(|i| std::fs::read_to_string(dir.join(format!("status.{i}"))).ok())
        .map(|s| {
            let r = Report::parse(&s);
            (0..NODES).filter_map(|p| r.p(p, "delivered")).sum::<u64>()
        })
        .sum()
}

fn run_one(sc: &Scenario, spec: &RunSpec, exe: &Path, dir: &Path) -> Result<Row, String> {
    for i in 0..NODES {
        net::netem(i, sc.netem, false)?;
    }
    let same_nonce = matches!(sc.fault, Fault::Kill { same_nonce: true });
    let nonce = |i: u32| same_nonce.then_some(5000 + i);
    let mut children: Vec<Child> = Vec::new();
    let mut incs = vec![0u32; NODES as usize];
    for i in 0..NODES {
        children.push(spawn(exe, dir, spec, i, 0, nonce(i))?);
    }
    let result = drive(sc, spec, exe, dir, &mut children, &mut incs, nonce);
    // Whatever happened, no node outlives its scenario.
    let stop_by = Instant::now() + Duration::from_secs(30);
    for c in children.iter_mut() {
        while c.try_wait().ok().flatten().is_none() && Instant::now() < stop_by {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    result?;
    judge(sc, spec, dir, &incs)
}

fn drive(
    sc: &Scenario,
    spec: &RunSpec,
    exe: &Path,
    dir: &Path,
    children: &mut [Child],
    incs: &mut [u32],
    nonce: impl Fn(u32) -> Option<u32>,
) -> Result<(), String> {
    let total = spec.count * u64::from(NODES * (NODES - 1));
    let deadline = Instant::now() + spec.deadline;
    let mut fault_done = sc.fault == Fault::None;
    let mut last_print = Instant::now();
    loop {
        let done = (0..NODES).all(|i| dir.join(format!("done.{i}.{}", incs[i as usize])).exists());
        if done && fault_done {
            break;
        }
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(st)) = c.try_wait() {
                return Err(format!("node {i} exited early ({st}); its log is below"));
            }
        }
        let p = progress(dir);
        if Instant::now() >= deadline {
            return Err(format!(
                "not done after {:?}: {p} of {total} messages delivered (node logs below)",
                spec.deadline
            ));
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            println!("    {p} of {total} delivered");
            last_print = Instant::now();
        }
        if !fault_done && p >= total * 2 / 5 {
            fault_done = true;
            match sc.fault {
                Fault::None => {}
                Fault::Partition(hold) => {
                    println!("    partitioning node {VICTIM} for {hold:?} at {p} delivered");
                    net::netem(VICTIM, &["loss", "100%"], true)?;
                    std::thread::sleep(hold);
                    net::netem(VICTIM, sc.netem, false)?;
                    println!("    healed");
                }
                Fault::Kill { .. } => {
                    println!("    SIGKILL node {VICTIM} at {p} delivered");
                    let v = VICTIM as usize;
                    let _ = children[v].kill();
                    let _ = children[v].wait();
                    std::thread::sleep(DEAD);
                    incs[v] += 1;
                    children[v] = spawn(exe, dir, spec, VICTIM, incs[v], nonce(VICTIM))?;
                    println!("    node {VICTIM} restarted (incarnation {})", incs[v]);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    write_file(&dir.join("stop"), "stop\n")?;
    let by = Instant::now() + Duration::from_secs(60);
    for (i, c) in children.iter_mut().enumerate() {
        loop {
            match c.try_wait() {
                Ok(Some(st)) if st.success() => break,
                Ok(Some(st)) => return Err(format!("node {i} failed at stop ({st})")),
                _ if Instant::now() >= by => return Err(format!("node {i} did not stop in 60 s")),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

/// Checks the reports of the final incarnations; Err lists every violation.
fn judge(sc: &Scenario, spec: &RunSpec, dir: &Path, incs: &[u32]) -> Result<Row, String> {
    let mut reports = Vec::new();
    for i in 0..NODES {
        let path = dir.join(format!("report.{i}.{}", incs[i as usize]));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("no report {}: {e}", path.display()))?;
        reports.push(Report::parse(&text));
    }
    let killed = matches!(sc.fault, Fault::Kill { .. }).then_some(VICTIM);
    let mut errs = Vec::new();
    let mut row = Row::default();
    for r in 0..NODES {
        let rep = &reports[r as usize];
        row.replayed += rep.n("replayed");
        row.reconnects += rep.n("reconnects");
        for (c, name) in row.causes.iter_mut().zip(crate::node::FAULT_CAUSES) {
            *c += rep.n(&format!("fault_{name}"));
        }
        if rep.n("bad") > 0 {
            errs.push(format!(
                "node {r} got {} corrupt or foreign payloads",
                rep.n("bad")
            ));
        }
        for s in (0..NODES).filter(|&s| s != r) {
            let got = |k: &str| rep.p(s, k).unwrap_or(0);
            row.delivered += got("delivered");
            let pair = format!("{s}->{r}");
            for k in ["dup", "gaps", "stale"] {
                if got(k) > 0 {
                    errs.push(format!("{pair}: {k} {}", got(k)));
                }
            }
            let from_sender = &reports[s as usize];
            let first = rep.p(s, "first");
            if first.is_some() && got("next") != spec.count {
                errs.push(format!(
                    "{pair}: stream ended at {} of {}",
                    got("next"),
                    spec.count
                ));
            }
            if Some(r) == killed {
                // A restarted receiver gets the stream from where the sender's hand-back ended
                // (nothing at all if that was the last one).
                if let Some(last) = from_sender.p(r, "und_last") {
                    let want = (last + 1 < spec.count).then_some(last + 1);
                    if first != want {
                        errs.push(format!("{pair}: restarted receiver's stream starts at {first:?}, the sender handed back up to {last}"));
                    }
                }
            } else if Some(s) == killed {
                // The restarted sender's stream: its own numbering, from 0 to the end (what
                // the killed incarnation sent before died with it or arrived before).
                if first != Some(0) {
                    errs.push(format!(
                        "{pair}: restarted sender's stream starts at {first:?}"
                    ));
                }
            } else if first != Some(0) || got("delivered") != spec.count {
                errs.push(format!(
                    "{pair}: lossless stream not delivered exactly once from 0: first {first:?}, delivered {}",
                    got("delivered")
                ));
            }
            if Some(s) == killed && got("inc") != u64::from(incs[s as usize]) {
                errs.push(format!(
                    "{pair}: stream ends in incarnation {}, not the restarted one",
                    got("inc")
                ));
            }
            // What r handed back for s.
            let und = rep.p(s, "und").unwrap_or(0);
            let resets = rep.p(s, "resets").unwrap_or(0) + rep.p(s, "remote_resets").unwrap_or(0);
            row.undelivered += und;
            row.resets += resets;
            row.sent += rep.p(s, "sent").unwrap_or(0);
            if rep.p(s, "und_in_order") != Some(1) {
                errs.push(format!(
                    "{r}->{s}: undelivered messages not handed back in order"
                ));
            }
            match killed {
                Some(k) if k == s && incs[r as usize] == 0 => {
                    // No reset is right only if the old session never opened (a handshake
                    // still racing at the kill): then the restarted node got it all from 0.
                    let restarted_got = reports[s as usize].p(r, "first");
                    if resets == 0 && restarted_got != Some(0) {
                        errs.push(format!(
                            "{r}->{s}: node {r} never saw node {s}'s restart as a reset, and the \
                             restarted node's stream from it starts at {restarted_got:?}"
                        ));
                    }
                }
                Some(k) if k == s || k == r => {}
                _ => {
                    if und > 0 || resets > 0 {
                        errs.push(format!(
                            "{r}->{s}: lossless session reset ({resets} resets, {und} undelivered)"
                        ));
                    }
                }
            }
        }
    }
    if matches!(sc.fault, Fault::Partition(d) if d > Duration::from_millis(IDLE_MS))
        && row.reconnects == 0
    {
        errs.push("a partition longer than the idle timeout caused no reconnect".into());
    }
    if errs.is_empty() {
        Ok(row)
    } else {
        Err(errs.join("; "))
    }
}

fn print_table(rows: &[(&str, Row)]) {
    println!(
        "\n{:<9} {:>9} {:>9} {:>8} {:>10} {:>11} {:>7} {:>8} {:>8}  faults by cause",
        "scenario",
        "sent",
        "delivered",
        "replayed",
        "reconnects",
        "undelivered",
        "resets",
        "secs",
        "msgs/s"
    );
    let mut total = 0;
    for (k, r) in rows {
        total += r.delivered;
        println!(
            "{:<9} {:>9} {:>9} {:>8} {:>10} {:>11} {:>7} {:>8.1} {:>8.0}  {}",
            k,
            r.sent,
            r.delivered,
            r.replayed,
            r.reconnects,
            r.undelivered,
            r.resets,
            r.secs,
            r.delivered as f64 / r.secs.max(0.001),
            causes(&r.causes)
        );
    }
    println!("NETFAULT TOTAL delivered {total}");
}

fn show_logs(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("log.") || n.starts_with("status.")
            })
        })
        .collect();
    logs.sort();
    for l in logs {
        let text = std::fs::read_to_string(&l).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("    --- {} (last 15 lines)", l.display());
        for line in &lines[lines.len().saturating_sub(15)..] {
            println!("    {line}");
        }
    }
}

/// `idle 2, link 5` (causes with no fault left out; `-` for none).
fn causes(c: &[u64; 4]) -> String {
    let parts: Vec<String> = crate::node::FAULT_CAUSES
        .iter()
        .zip(c)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fault_causes_name_only_what_happened() {
        assert_eq!(super::causes(&[0, 0, 0, 0]), "-");
        assert_eq!(super::causes(&[2, 0, 5, 0]), "idle 2, link 5");
    }
}
