//! The RDMA half of the bench. It runs where the device is: on the host if the kernel has one
//! (`/sys/class/infiniband`), otherwise this same xtask binary is started inside the Soft-RoCE
//! VM (`scripts/rdma-vm/run.sh`, one boot for all rows) as `xtask bench-rdma --plan FILE`, and
//! writes its rows to a folder shared read-write with the host.
//!
//! Baselines are perftest's `ib_send_lat`, `ib_send_bw` and `ib_write_bw` over rdma_cm (`-R`)
//! on the same device, so msgr's RDMA numbers are compared with the device's own floor in the
//! same boot (Soft-RoCE under an emulated CPU is slow and noisy; only ratios mean anything).
//! Latency rows come in both completion modes ([`Poll`]): msgrd runs with a copy of
//! `config/rdma.toml` whose `poll_us` is set for the mode (written next to the rows), and
//! `ib_send_lat` gets `-e` in event mode.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::machine::Machine;
use super::pair::{self, Pair};
use super::{
    calibrated, rebind_config, run_pair_row, with_poll_us, Bins, Cell, Poll, Spec, MIN_WALL_S,
    MIN_WALL_S_VM, RDMA_CONFIG,
};
use crate::test::VM_RUNNER;
use crate::util::host_rdma_device;

pub const PERFTESTS: [&str; 3] = [LATENCY_PERFTEST, "ib_send_bw", "ib_write_bw"];
/// The baseline of the latency rows, run once per [`Poll`] mode.
pub const LATENCY_PERFTEST: &str = "ib_send_lat";
/// First rdma_cm port for perftest; each run takes the next one.
const PERFTEST_PORT: u16 = 18_515;

/// Where the RDMA rows run.
pub enum Where {
    Host(String),
    Vm,
}

impl Where {
    pub fn detect() -> Where {
        host_rdma_device().map_or(Where::Vm, Where::Host)
    }

    pub fn is_vm(&self) -> bool {
        matches!(self, Where::Vm)
    }

    pub fn describe(&self) -> String {
        match self {
            Where::Host(d) => format!("on the host's RDMA device {d}"),
            Where::Vm => "on rxe0 (Soft-RoCE) inside a qemu VM, one boot".into(),
        }
    }
}

/// What the inner run is asked to do.
#[derive(Serialize, Deserialize)]
struct Plan {
    specs: Vec<Spec>,
    bins: Bins,
    in_vm: bool,
    out: PathBuf,
}

/// Runs the RDMA rows where the device is and returns them; when that fails, every row says why.
pub fn run_outer(
    specs: &[Spec],
    bins: &Bins,
    at: &Where,
    out_dir: &Path,
    host: &Machine,
) -> Vec<Cell> {
    let plan_path = out_dir.join("rdma-plan.json");
    let rows_path = out_dir.join("rdma-rows.json");
    let _ = std::fs::remove_file(&rows_path);
    let all_failed = |why: String| -> Vec<Cell> {
        specs
            .iter()
            .map(|s| {
                let mut c = Cell::new(s.clone(), "none", host);
                c.status = format!("not available: {why}");
                c
            })
            .collect()
    };
    let plan = Plan {
        specs: specs.to_vec(),
        bins: bins.clone(),
        in_vm: at.is_vm(),
        out: rows_path.clone(),
    };
    let text = serde_json::to_string_pretty(&plan).expect("serialisable");
    if let Err(e) = std::fs::write(&plan_path, text) {
        return all_failed(format!("cannot write {}: {e}", plan_path.display()));
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return all_failed(format!("cannot find the xtask binary: {e}")),
    };
    let mut cmd = match at {
        Where::Host(_) => Command::new(&exe),
        Where::Vm => {
            let mut c = Command::new(VM_RUNNER);
            c.arg(&exe).env("RXE_VM_RW", out_dir);
            c
        }
    };
    cmd.arg("bench-rdma").arg("--plan").arg(&plan_path);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return all_failed(format!("cannot start {}: {e}", crate::util::show(&cmd))),
    };
    match std::fs::read_to_string(&rows_path) {
        Ok(t) => match serde_json::from_str::<Vec<Cell>>(&t) {
            Ok(rows) => rows,
            Err(e) => all_failed(format!("unreadable {}: {e}", rows_path.display())),
        },
        Err(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(4).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            all_failed(format!(
                "the RDMA run produced no rows ({}, exit {}): {}",
                if at.is_vm() { "Soft-RoCE VM" } else { "host" },
                out.status.code().map_or("signal".into(), |c| c.to_string()),
                tail.join(" | ")
            ))
        }
    }
}

#[derive(clap::Args)]
pub struct InnerArgs {
    /// Plan written by `cargo xtask bench`.
    #[arg(long)]
    plan: PathBuf,
}

/// Inside the VM (or on the host with a device): run every row of the plan, write them out.
pub fn run_inner(a: InnerArgs) -> i32 {
    let plan: Plan = match std::fs::read_to_string(&a.plan)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench-rdma: cannot read plan {}: {e}", a.plan.display());
            return 2;
        }
    };
    let dev = std::env::var("RDMA_DEV").ok().or_else(host_rdma_device);
    let machine = Machine::here(if plan.in_vm {
        "Soft-RoCE (rdma_rxe) in a qemu VM, emulated CPU"
    } else {
        "bare host"
    });
    let device = match &dev {
        Some(d) if plan.in_vm => format!("{d} (Soft-RoCE VM)"),
        Some(d) => d.clone(),
        None => "none".into(),
    };
    let ip = std::env::var("RDMA_IP").ok().or_else(|| {
        dev.as_deref()
            .and_then(|d| crate::util::device_ip(d, false))
    });
    // rdma_cm cannot use 127.0.0.1 over Soft-RoCE: msgrd binds to the device's address.
    let config = match (ip.as_deref(), plan.out.parent()) {
        (Some(ip), Some(dir)) => {
            rebind_config(RDMA_CONFIG, ip, true, &dir.join("rdma-device.toml"))
        }
        _ => RDMA_CONFIG.to_string(),
    };
    // The latency rows' configs: the one above with `poll_us` set for the row's mode, written
    // next to the rows (the files stay for a look afterwards). One that cannot be written costs
    // only its own rows.
    let dir = plan.out.parent().unwrap_or(Path::new("."));
    let config_for = |spec: &Spec| match spec.poll_us {
        None => Ok(config.clone()),
        Some(us) => {
            let mode = spec.poll.map_or("poll", Poll::name);
            with_poll_us(&config, us, &dir.join(format!("rdma-{mode}.toml")))
        }
    };
    let mut rows = Vec::new();
    let mut port = PERFTEST_PORT;
    let min_wall = if plan.in_vm {
        MIN_WALL_S_VM
    } else {
        MIN_WALL_S
    };
    for (i, spec) in plan.specs.iter().enumerate() {
        eprintln!(
            "[bench-rdma] {}/{} {} {}",
            i + 1,
            plan.specs.len(),
            spec.implementation,
            spec.size
        );
        let row = if PERFTESTS.contains(&spec.implementation.as_str()) {
            perftest_row(
                spec,
                dev.as_deref(),
                ip.as_deref(),
                &mut port,
                &device,
                &machine,
                min_wall,
            )
        } else {
            match config_for(spec) {
                Ok(c) => run_pair_row(spec, &plan.bins, &c, &device, &machine, min_wall),
                Err(e) => {
                    let mut cell = Cell::new(spec.clone(), &device, &machine);
                    cell.status = format!("not available: {e}");
                    cell
                }
            }
        };
        rows.push(row);
    }
    let text = serde_json::to_string(&rows).expect("serialisable");
    if let Err(e) = std::fs::write(&plan.out, text) {
        eprintln!("bench-rdma: cannot write {}: {e}", plan.out.display());
        return 1;
    }
    0
}

/// One perftest row; like the msgrd rows it runs again with proportionally more iterations
/// while it took under `min_wall` seconds (estimated as iterations / rate), each run on a
/// port of its own (the next after `port`).
fn perftest_row(
    spec: &Spec,
    dev: Option<&str>,
    ip: Option<&str>,
    port: &mut u16,
    device: &str,
    m: &Machine,
    min_wall: f64,
) -> Cell {
    calibrated(
        spec,
        min_wall,
        |c| {
            c.msgs_per_s
                .filter(|&r| r > 0.0 && c.ok())
                .map(|r| c.spec.count as f64 / r)
        },
        |s| {
            *port += 1;
            perftest_once(s, dev, ip, *port, device, m)
        },
    )
}

fn perftest_once(
    spec: &Spec,
    dev: Option<&str>,
    ip: Option<&str>,
    port: u16,
    device: &str,
    m: &Machine,
) -> Cell {
    let mut cell = Cell::new(spec.clone(), device, m);
    let (Some(dev), Some(ip)) = (dev, ip) else {
        cell.status = "not available: no RDMA device / address (set RDMA_DEV and RDMA_IP)".into();
        return cell;
    };
    let tool = spec.implementation.as_str();
    let lat = tool.ends_with("_lat");
    let iters = spec.count.max(5);
    let args = perftest_args(spec, dev, port);
    // perftest writes through stdio: line-buffer it so the "waiting" line arrives at once.
    let server: Vec<String> = ["stdbuf", "-oL"]
        .iter()
        .map(|s| s.to_string())
        .chain(args.iter().cloned())
        .collect();
    let mut client = args.clone();
    client.push(ip.into());
    let p = Pair {
        server,
        client,
        ready_prefix: "* Waiting for client".into(),
        // The banner comes just before the server listens: give it a moment.
        settle: Duration::from_millis(300),
        client_timeout: Duration::from_secs(300),
    };
    // A connect that still raced the listen is refused: retry it.
    let mut last = String::new();
    for _attempt in 0..3 {
        match pair::run_raw(&p).and_then(|(out, _)| parse_perftest(&out, spec.size, lat)) {
            Ok(r) => {
                cell.p50_us = r.p50_us;
                cell.p99_us = r.p99_us;
                cell.msgs_per_s = Some(r.msgs_per_s);
                cell.gbytes_per_s = Some(r.msgs_per_s * spec.size as f64 / 1e9);
                cell.spec.count = iters;
                cell.status = "ok".into();
                return cell;
            }
            Err(e) => last = e,
        }
    }
    cell.status = format!("not available: {tool}: {last}");
    cell
}

/// perftest's arguments for one row (the client adds the server's address): over rdma_cm
/// (`-R`), CPU frequency warnings off (`-F`); `-e` (sleep on the completion channel) for the
/// event-mode latency row.
fn perftest_args(spec: &Spec, dev: &str, port: u16) -> Vec<String> {
    let tool = spec.implementation.as_str();
    let iters = spec.count.max(5);
    let mut args: Vec<String> = vec![
        tool.into(),
        "-R".into(),
        "-F".into(),
        "-d".into(),
        dev.into(),
        "-s".into(),
        spec.size.to_string(),
        "-n".into(),
        iters.to_string(),
        "-p".into(),
        port.to_string(),
    ];
    if !tool.ends_with("_lat") {
        // perftest wants at least as many iterations as its send queue depth.
        args.extend(["-t".into(), iters.min(128).to_string()]);
    }
    if spec.poll == Some(Poll::Event) {
        args.push("-e".into());
    }
    args
}

#[derive(Debug, PartialEq)]
struct PerftestResult {
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    msgs_per_s: f64,
}

/// Reads perftest's result line: the row whose first column is the message size.
/// `_lat`: bytes, iterations, t_min, t_max, t_typical, t_avg, t_stdev, 99%, 99.9% (one-way
/// microseconds; doubled here into round trips). `_bw`: bytes, iterations, BW peak,
/// BW average (MiB/s: perftest's MB is 2^20 bytes), MsgRate (Mpps).
fn parse_perftest(out: &str, size: u64, lat: bool) -> Result<PerftestResult, String> {
    let row = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| {
            w.len() >= 5
                && w[0].parse::<u64>().ok() == Some(size)
                && w[1..].iter().all(|x| x.parse::<f64>().is_ok())
        })
        .ok_or_else(|| {
            let tail: Vec<&str> = out.lines().rev().take(3).collect();
            format!(
                "no result line for {size} bytes in its output ({})",
                tail.join(" | ")
            )
        })?;
    let f = |i: usize| row.get(i).and_then(|x| x.parse::<f64>().ok());
    if lat {
        let typical = f(4).ok_or("short latency row")?;
        let p99 = f(7);
        Ok(PerftestResult {
            p50_us: Some(2.0 * typical),
            p99_us: p99.map(|v| 2.0 * v),
            msgs_per_s: 1e6 / (2.0 * typical),
        })
    } else {
        // Both columns give the rate, each rounded to a fixed number of decimals (MsgRate to
        // 1e-6 Mpps, which is nothing for large messages): take the more precise one.
        let mib_s = f(3).ok_or("short bandwidth row")?;
        let mpps = f(4).ok_or("short bandwidth row")?;
        let from_bw = mib_s * 1_048_576.0 / size as f64;
        let msgs_per_s = if 0.000_001 / mpps.max(1e-12) < 0.01 / mib_s.max(1e-12) {
            mpps * 1e6
        } else {
            from_bw
        };
        Ok(PerftestResult {
            p50_us: None,
            p99_us: None,
            msgs_per_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_row_is_doubled_into_round_trips() {
        let out = " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] \n\
                    64       1000          10.01          80.20        12.50              13.00          2.00            30.00                  79.00\n";
        let r = parse_perftest(out, 64, true).unwrap();
        assert_eq!(r.p50_us, Some(25.0));
        assert_eq!(r.p99_us, Some(60.0));
        assert_eq!(r.msgs_per_s, 40_000.0);
    }

    #[test]
    fn only_the_event_mode_latency_row_gets_perftest_event_flag() {
        let v = crate::bench::plan("rdma", &[64], &[1], true, true, 200);
        let args: Vec<(String, Vec<String>)> = v
            .iter()
            .filter(|s| PERFTESTS.contains(&s.implementation.as_str()))
            .map(|s| (s.name(), perftest_args(s, "rxe0", 1)))
            .collect();
        assert_eq!(args.len(), 4);
        for (name, a) in &args {
            assert_eq!(
                a.contains(&"-e".to_string()),
                name == "ib_send_lat -e",
                "{a:?}"
            );
            assert_eq!(a[0], name.split(' ').next().unwrap());
        }
        let bw = &args.iter().find(|(n, _)| n == "ib_send_bw").unwrap().1;
        assert!(bw.join(" ").contains("-t "), "{bw:?}");
    }

    #[test]
    fn bandwidth_row_gives_the_message_rate() {
        let out =
            " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]\n\
                    65536      500              40.10              38.50                0.000616\n";
        let r = parse_perftest(out, 65536, false).unwrap();
        assert_eq!(r.p50_us, None);
        assert!((r.msgs_per_s - 616.0).abs() < 1e-6);
        assert!(parse_perftest(out, 64, false).is_err());
        // Large messages: MsgRate rounds to almost nothing, BW average (MiB/s) is used.
        let big = " 1048576    16               6.34               6.05   \t\t   0.000006\n";
        let r = parse_perftest(big, 1_048_576, false).unwrap();
        assert!((r.msgs_per_s - 6.05).abs() < 1e-9);
    }
}
