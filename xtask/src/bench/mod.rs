//! `cargo xtask bench`: the bench matrix.
//!
//! Cells: transport {tcp, rdma} x message size x messages in flight (x connections with
//! `--full`), each one `msgrd serve` process and one `msgrd ping --json` client. Baselines
//! run in the same invocation on the same path: `tcp-baseline` (echo with the cell's shape,
//! and a one-way stream) for TCP on loopback; perftest's `ib_send_lat`, `ib_send_bw` and
//! `ib_write_bw` for RDMA, in the same VM boot as the RDMA cells when the host has no device.
//! Every cell is shown with its ratio to its baseline; the 64 B cell with 16 in flight also with
//! its ratio to ZeroMQ's PUSH/PULL (`zmq-baseline`, libzmq) on the same loopback.
//!
//! RDMA latency cells (1 in flight) run in two completion modes, each against perftest in the
//! same mode ([`Poll`]): event-driven msgrd (`poll_us = 0`) against `ib_send_lat -e`, and
//! busy-polling msgrd (`poll_us = --busy-poll-us`) against plain `ib_send_lat`. Comparing a
//! sleeping msgrd with a spinning perftest would mostly measure the wake-up.
//!
//! Memory rows (TCP): the peak RSS (VmHWM) of a `msgrd serve` holding [`IDLE_CONNECTIONS`] idle
//! sessions (opened by `msgr-idle`), and of one serving [`STRESS_CONNECTIONS`] connections under
//! the stress load (`msgrd ping`, 64 KiB messages, [`STRESS_IN_FLIGHT`] in flight on each).

pub mod chart;
pub mod machine;
pub mod pair;
pub mod rdma;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::util::{cargo, run_status, target_dir};
use machine::Machine;

pub const SIZES_FULL: [u64; 5] = [64, 4 << 10, 64 << 10, 1 << 20, 4 << 20];
pub const SIZES_QUICK: [u64; 3] = [64, 64 << 10, 1 << 20];
pub const IN_FLIGHT: [u64; 2] = [1, 16];
/// Sizes of the TCP one-way rows in `--quick` (`--full`: [`SIZES_FULL`]).
pub const ONE_WAY_SIZES_QUICK: [u64; 4] = [64, 4 << 10, 64 << 10, 1 << 20];
/// Connections of the one-way rows, and of the echo rows with [`CONNS_IN_FLIGHT`] in flight,
/// in both modes: many connections on two workers is the common daemon shape.
pub const CONNS: [u64; 2] = [1, 8];
pub const CONNS_IN_FLIGHT: u64 = 16;
/// Payload bytes a one-way client may queue per connection (its `--concurrency` is this over
/// the size, at least [`ONE_WAY_MIN_IN_FLIGHT`] messages): deep enough that the sender never
/// waits on a wake-up per message.
pub const ONE_WAY_QUEUE_BYTES: u64 = 4 << 20;
pub const ONE_WAY_MIN_IN_FLIGHT: u64 = 16;
/// Every TCP row but the memory rows runs at least this long: a short row measures start-up
/// and scheduler noise. Rows that finish sooner run again with proportionally more messages.
pub const MIN_WALL_S: f64 = 0.5;
/// The same for RDMA rows (perftest's included) in the Soft-RoCE VM, whose emulated CPU makes
/// short runs swing by a factor of two.
pub const MIN_WALL_S_VM: f64 = 2.0;
/// Reruns allowed to reach [`MIN_WALL_S`].
const CALIBRATE_TRIES: u32 = 4;
pub const TCP_CONFIG: &str = "config/tcp.toml";
pub const RDMA_CONFIG: &str = "config/rdma.toml";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Rows besides the plain `msgrd` cells and their tcp-baseline / perftest baselines.
pub const ZMQ_ECHO: &str = "zmq push/pull echo";
pub const ZMQ_STREAM: &str = "zmq push/pull stream";
/// msgrd streaming one way (`msgrd ping --one-way`: nothing comes back but msgr1 ACKs).
pub const ONE_WAY: &str = "msgrd one-way";
/// Sizes of the ZeroMQ stream rows (the one-way cells of these sizes are compared with them).
pub const ZMQ_STREAM_SIZES: [u64; 2] = [64, 4 << 10];
/// The same msgrd cells speaking msgr2 (crc mode): `msgrd ping --peer v2:ADDR`.
pub const MSGRD_V2: &str = "msgrd v2";
pub const ONE_WAY_V2: &str = "msgrd v2 one-way";
/// Sizes of the msgr2 rows (one connection; echo with [`CONNS_IN_FLIGHT`] in flight, and one
/// way): small messages show the per-frame cost, large ones the crc and copy cost.
pub const V2_SIZES: [u64; 2] = [64, 1 << 20];
/// RDMA streaming cells again without the data crc (`msgrd ping --no-crc-data`): perftest
/// checksums nothing in software, and under the VM's emulated CPU a software crc32c runs at
/// about 100 MB/s, so this row shows how much of the gap to `ib_send_bw` is the crc.
pub const MSGRD_NO_CRC: &str = "msgrd (crc off)";
pub const MSGRD_IDLE: &str = "msgrd idle";
pub const MSGRD_STRESS: &str = "msgrd stress";
/// The ZeroMQ comparison is made for this size and number in flight (the target).
pub const ZMQ_SIZE: u64 = 64;
pub const ZMQ_IN_FLIGHT: u64 = 16;
/// Idle sessions the memory row holds open, and how long once all are open.
pub const IDLE_CONNECTIONS: u64 = 1000;
const IDLE_HOLD_MS: u64 = 1000;
/// The stress load of the second memory row.
pub const STRESS_CONNECTIONS: u64 = 128;
pub const STRESS_IN_FLIGHT: u64 = 64;
pub const STRESS_SIZE: u64 = 64 << 10;
/// Default `poll_us` of the busy-poll RDMA cells: how long msgrd's reactor keeps polling its
/// CQs after activity. It must outlast the gap between two messages of a cell, or the reactor
/// sleeps between them and the row measures event mode against a spinning `ib_send_lat`: in the
/// Soft-RoCE VM (emulated CPU) a 64 B round trip through msgrd takes milliseconds, and with
/// `poll_us = 200` the busy-poll row measured about what the event row did.
pub const BUSY_POLL_US: u64 = 100_000;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Small subset (echo 64 B, 64 KiB, 1 MiB; one-way up to 1 MiB; fewer sizes with 8
    /// connections), a few minutes.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Also run every cell with 8 connections.
    #[arg(long)]
    full: bool,
    /// Write the result table into README.md between <!-- bench:start --> and <!-- bench:end -->.
    #[arg(long)]
    update_readme: bool,
    /// Transports to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "tcp,rdma")]
    transports: Vec<String>,
    /// msgrd's `poll_us` in the busy-poll RDMA latency rows (microseconds it keeps polling its
    /// CQs after activity). The default outlasts a round trip even in the emulated VM, so msgrd
    /// spins through the whole row as `ib_send_lat` does.
    #[arg(long, default_value_t = BUSY_POLL_US, value_parser = clap::value_parser!(u64).range(1..))]
    busy_poll_us: u64,
    /// Harness self-check: run tcp-baseline where msgrd would run.
    #[arg(long, hide = true)]
    self_test: bool,
}

/// Whether a row is a msgr measurement or the baseline it is compared with.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Cell,
    Baseline,
}

/// How an RDMA latency row waits for completions. msgrd and perftest rows of the same mode
/// are compared with each other only.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Poll {
    /// Sleep on the completion channel: msgrd with `poll_us = 0`, `ib_send_lat -e`.
    Event,
    /// Spin on the CQ: msgrd with `poll_us > 0` (`--busy-poll-us`), plain `ib_send_lat`.
    BusyPoll,
}

impl Poll {
    pub const ALL: [Poll; 2] = [Poll::Event, Poll::BusyPoll];

    pub fn name(self) -> &'static str {
        match self {
            Poll::Event => "event",
            Poll::BusyPoll => "busy-poll",
        }
    }
}

/// What to run for one row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub transport: String,
    /// `msgrd`, `tcp-baseline echo`, `tcp-baseline stream`, `ib_send_lat`, `ib_send_bw`, `ib_write_bw`.
    pub implementation: String,
    pub role: Role,
    pub size: u64,
    pub concurrency: u64,
    pub connections: u64,
    pub count: u64,
    /// RDMA latency rows: the completion mode. None: msgrd runs with the shipped config as it
    /// is, perftest in its default (polling) mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
    /// msgrd rows with a mode: the `poll_us` written into their config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_us: Option<u64>,
}

impl Spec {
    /// The implementation with its mode, as tables and charts show it: `msgrd (busy-poll)`,
    /// `ib_send_lat -e` (perftest's own flag for its event mode).
    pub fn name(&self) -> String {
        match (self.poll, self.role) {
            (None, _) => self.implementation.clone(),
            (Some(Poll::Event), Role::Baseline) => format!("{} -e", self.implementation),
            (Some(Poll::BusyPoll), Role::Baseline) => self.implementation.clone(),
            (Some(p), Role::Cell) => format!("{} ({})", self.implementation, p.name()),
        }
    }
}

/// One row of the result: the spec, where it ran, and what it measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    #[serde(flatten)]
    pub spec: Spec,
    /// `ok`, or `not available: <why>`.
    pub status: String,
    pub device: String,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub msgs_per_s: Option<f64>,
    pub gbytes_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub cpu_s_client: Option<f64>,
    pub cpu_s_server: Option<f64>,
    pub cpu_s_per_gb_client: Option<f64>,
    pub cpu_s_per_gb_server: Option<f64>,
    /// CPU seconds per million messages.
    #[serde(default)]
    pub cpu_s_per_mmsg_client: Option<f64>,
    #[serde(default)]
    pub cpu_s_per_mmsg_server: Option<f64>,
    /// 99.9th percentile round trip (msgrd echo rows).
    #[serde(default)]
    pub p999_us: Option<f64>,
    /// The baseline row this cell is compared with, and the ratios (cell / baseline).
    pub baseline: Option<String>,
    pub ratio_p50: Option<f64>,
    pub ratio_msgs_per_s: Option<f64>,
    /// Further message-rate comparisons (the ZeroMQ rows for the 64 B x16 cell).
    #[serde(default)]
    pub other_ratios: Vec<OtherRatio>,
    /// Server peak resident set (VmHWM) before the client started and after it ended, bytes.
    pub server_rss_start_bytes: Option<u64>,
    pub server_rss_peak_bytes: Option<u64>,
    /// Memory rows: (peak - start) / connections.
    pub server_bytes_per_connection: Option<f64>,
    pub config_file: Option<String>,
    pub config: Option<String>,
    pub machine: Machine,
    pub git_rev: String,
}

impl Cell {
    pub fn new(spec: Spec, device: &str, machine: &Machine) -> Cell {
        Cell {
            spec,
            status: "not run".into(),
            device: device.into(),
            p50_us: None,
            p99_us: None,
            msgs_per_s: None,
            gbytes_per_s: None,
            wall_s: None,
            cpu_s_client: None,
            cpu_s_server: None,
            cpu_s_per_gb_client: None,
            cpu_s_per_gb_server: None,
            cpu_s_per_mmsg_client: None,
            cpu_s_per_mmsg_server: None,
            p999_us: None,
            baseline: None,
            ratio_p50: None,
            ratio_msgs_per_s: None,
            other_ratios: Vec::new(),
            server_rss_start_bytes: None,
            server_rss_peak_bytes: None,
            server_bytes_per_connection: None,
            config_file: None,
            config: None,
            machine: machine.clone(),
            git_rev: String::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.status == "ok"
    }

    /// A short name for tables and references: `msgrd tcp 64B x16 c1`,
    /// `ib_send_lat -e rdma 64B x1 c1`.
    pub fn label(&self) -> String {
        let s = &self.spec;
        format!(
            "{} {} {} x{} c{}",
            s.name(),
            s.transport,
            report::size_label(s.size),
            s.concurrency,
            s.connections
        )
    }

    /// Whether this is one of the memory rows (judged by server RSS, not by a baseline).
    pub fn is_memory(&self) -> bool {
        self.spec.implementation == MSGRD_IDLE || self.spec.implementation == MSGRD_STRESS
    }

    /// Fills the measurements from a client's JSON line (msgrd / tcp-baseline schema).
    pub fn fill_from_client(&mut self, v: &serde_json::Value, cpu_s_server: Option<f64>) {
        let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
        self.p50_us = f("p50_us");
        self.p99_us = f("p99_us");
        self.p999_us = f("p999_us");
        self.msgs_per_s = f("msgs_per_s");
        self.gbytes_per_s = f("gbytes_per_s");
        self.wall_s = f("wall_s");
        self.cpu_s_client = f("cpu_s_client");
        self.cpu_s_server = cpu_s_server;
        if let Some(c) = v.get("count").and_then(|x| x.as_u64()) {
            self.spec.count = c;
        }
        let gb = self.spec.size as f64 * self.spec.count as f64 / 1e9;
        if gb > 0.0 {
            self.cpu_s_per_gb_client = self.cpu_s_client.map(|c| c / gb);
            self.cpu_s_per_gb_server = self.cpu_s_server.map(|c| c / gb);
        }
        let mmsg = self.spec.count as f64 / 1e6;
        if mmsg > 0.0 {
            self.cpu_s_per_mmsg_client = self.cpu_s_client.map(|c| c / mmsg);
            self.cpu_s_per_mmsg_server = self.cpu_s_server.map(|c| c / mmsg);
        }
        self.status = "ok".into();
    }
}

/// Messages per cell: enough bytes for a stable rate, capped so small messages do not run
/// long; a VM (emulated CPU, Soft-RoCE) gets a smaller budget.
pub fn count_for(size: u64, quick: bool, in_vm: bool) -> u64 {
    let (budget, min, max) = match (quick, in_vm) {
        (true, false) => (64u64 << 20, 16, 5_000),
        (false, false) => (512 << 20, 32, 40_000),
        (true, true) => (16 << 20, 8, 1_000),
        (false, true) => (64 << 20, 16, 4_000),
    };
    (budget / size.max(1)).clamp(min, max)
}

/// A message-rate comparison with a row other than the cell's own baseline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OtherRatio {
    pub baseline: String,
    /// cell msgs/s / baseline msgs/s.
    pub ratio_msgs_per_s: f64,
}

/// Messages of a ZeroMQ row: libzmq moves small messages far faster than one per round trip,
/// so these rows need many more than a msgrd cell for a stable rate.
fn zmq_count(implementation: &str, size: u64, quick: bool) -> u64 {
    match (implementation, quick) {
        (ZMQ_STREAM, _) => stream_count(size, quick),
        (_, true) => 100_000,
        (_, false) => 400_000,
    }
}

/// Messages of a one-way row (msgrd one-way, tcp-baseline stream, zmq stream) before
/// calibration to [`MIN_WALL_S`]: streams move small messages by the million.
fn stream_count(size: u64, quick: bool) -> u64 {
    let (budget, max) = if quick {
        (256u64 << 20, 2_000_000)
    } else {
        (1 << 30, 8_000_000)
    };
    (budget / size.max(1)).clamp(64, max)
}

/// `--concurrency` of a one-way cell: [`ONE_WAY_QUEUE_BYTES`] of its messages.
pub fn one_way_in_flight(size: u64) -> u64 {
    (ONE_WAY_QUEUE_BYTES / size.max(1)).max(ONE_WAY_MIN_IN_FLIGHT)
}

/// The rows to run for one transport.
/// `busy_poll_us`: msgrd's `poll_us` in the busy-poll RDMA latency cells.
pub fn plan(
    transport: &str,
    sizes: &[u64],
    conns: &[u64],
    quick: bool,
    in_vm: bool,
    busy_poll_us: u64,
) -> Vec<Spec> {
    let mut v = Vec::new();
    let spec = |implementation: &str, role, size, concurrency, connections| Spec {
        transport: transport.into(),
        implementation: implementation.into(),
        role,
        size,
        concurrency,
        connections,
        count: count_for(size, quick, in_vm),
        poll: None,
        poll_us: None,
    };
    for &size in sizes {
        for k in conn_counts(conns) {
            for &c in &IN_FLIGHT {
                // Many connections: every shape when asked for (--full), else the pipelined
                // TCP one, which is what a busy daemon sees.
                let pipelined_tcp = transport == "tcp" && c == CONNS_IN_FLIGHT;
                if !(conns.contains(&k) || pipelined_tcp) {
                    continue;
                }
                if transport == "rdma" && c == 1 {
                    // Latency: one cell per completion mode, each with its own baseline below.
                    for (p, us) in [(Poll::Event, 0), (Poll::BusyPoll, busy_poll_us)] {
                        v.push(Spec {
                            poll: Some(p),
                            poll_us: Some(us),
                            ..spec("msgrd", Role::Cell, size, c, k)
                        });
                    }
                    continue;
                }
                v.push(spec("msgrd", Role::Cell, size, c, k));
                if transport == "rdma" {
                    v.push(spec(MSGRD_NO_CRC, Role::Cell, size, c, k));
                }
                if transport == "tcp" {
                    // Same shape, back to back, so machine noise hits both alike.
                    v.push(spec("tcp-baseline echo", Role::Baseline, size, c, k));
                }
            }
        }
        if transport == "tcp" {
            if size == ZMQ_SIZE {
                let mut z = spec(ZMQ_ECHO, Role::Baseline, size, ZMQ_IN_FLIGHT, 1);
                z.count = zmq_count(ZMQ_ECHO, size, quick);
                v.push(z);
            }
        } else {
            for p in rdma::PERFTESTS {
                if p == rdma::LATENCY_PERFTEST {
                    for mode in Poll::ALL {
                        v.push(Spec {
                            poll: Some(mode),
                            ..spec(p, Role::Baseline, size, 1, 1)
                        });
                    }
                } else {
                    v.push(spec(p, Role::Baseline, size, 1, 1));
                }
            }
        }
    }
    if transport == "tcp" {
        // One way: msgrd against the buffered raw stream of the same shape, and the small
        // sizes against ZeroMQ PUSH/PULL (one connection).
        let sizes: &[u64] = if quick {
            &ONE_WAY_SIZES_QUICK
        } else {
            &SIZES_FULL
        };
        for &size in sizes {
            for k in CONNS {
                let count = stream_count(size, quick);
                v.push(Spec {
                    count,
                    ..spec(ONE_WAY, Role::Cell, size, one_way_in_flight(size), k)
                });
                v.push(Spec {
                    count,
                    ..spec("tcp-baseline stream", Role::Baseline, size, 1, k)
                });
            }
            if ZMQ_STREAM_SIZES.contains(&size) {
                let mut z = spec(ZMQ_STREAM, Role::Baseline, size, 1, 1);
                z.count = zmq_count(ZMQ_STREAM, size, quick);
                v.push(z);
            }
        }
    }
    if transport == "tcp" {
        // msgr2: the same shapes as their msgr1 rows, compared with the same baselines.
        for size in V2_SIZES {
            v.push(spec(MSGRD_V2, Role::Cell, size, CONNS_IN_FLIGHT, 1));
            v.push(Spec {
                count: stream_count(size, quick),
                ..spec(ONE_WAY_V2, Role::Cell, size, one_way_in_flight(size), 1)
            });
        }
        // Memory: idle sessions (a few seconds), then the stress load (512 MiB in flight; a few
        // seconds with two windows' worth of messages per connection, four in the full run).
        v.push(Spec {
            count: 0,
            ..spec(MSGRD_IDLE, Role::Cell, 0, 0, IDLE_CONNECTIONS)
        });
        let windows = if quick { 2 } else { 4 };
        v.push(Spec {
            count: windows * STRESS_CONNECTIONS * STRESS_IN_FLIGHT,
            ..spec(
                MSGRD_STRESS,
                Role::Cell,
                STRESS_SIZE,
                STRESS_IN_FLIGHT,
                STRESS_CONNECTIONS,
            )
        });
    }
    v
}

/// The connection counts of the echo rows: those asked for, and [`CONNS`] for the pipelined
/// TCP shape (filtered per row in [`plan`]).
fn conn_counts(conns: &[u64]) -> Vec<u64> {
    let mut v: Vec<u64> = conns.iter().chain(CONNS.iter()).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Binaries the bench runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bins {
    /// Err: why msgrd cannot run (its cells say so).
    pub msgrd: Result<PathBuf, String>,
    pub tcp_baseline: PathBuf,
    /// Err: why the ZeroMQ baseline / the idle-session client cannot run.
    pub zmq_baseline: Result<PathBuf, String>,
    pub msgr_idle: Result<PathBuf, String>,
    /// Harness self-check: tcp-baseline stands in for msgrd.
    pub self_test: bool,
}

/// The server and client commands of a msgrd or tcp-baseline row.
pub fn pair_for(spec: &Spec, bins: &Bins, config: &str) -> Result<pair::Pair, String> {
    let n = |x: u64| x.to_string();
    let baseline_args = |mode: &str| -> Vec<String> {
        let mut a = vec![
            bins.tcp_baseline.display().to_string(),
            "ping".into(),
            "--peer".into(),
            "{ADDR}".into(),
        ];
        a.extend(
            [
                "--size",
                &n(spec.size),
                "--count",
                &n(spec.count),
                "--concurrency",
                &n(spec.concurrency),
                "--connections",
                &n(spec.connections),
                "--mode",
                mode,
                "--json",
            ]
            .map(String::from),
        );
        a
    };
    let baseline_server = vec![bins.tcp_baseline.display().to_string(), "serve".into()];
    let zmq = |mode: &str| -> Result<(Vec<String>, Vec<String>), String> {
        let z = bins.zmq_baseline.clone()?.display().to_string();
        let mut client = vec![z.clone(), "ping".into(), "--peer".into(), "{ADDR}".into()];
        client.extend(
            [
                "--size",
                &n(spec.size),
                "--count",
                &n(spec.count),
                "--concurrency",
                &n(spec.concurrency),
                "--mode",
                mode,
                "--json",
            ]
            .map(String::from),
        );
        Ok((vec![z, "serve".into()], client))
    };
    let msgrd_server = || -> Result<(String, Vec<String>), String> {
        let msgrd = bins.msgrd.clone()?.display().to_string();
        if !Path::new(config).exists() {
            return Err(format!("{config} does not exist"));
        }
        let server = vec![
            msgrd.clone(),
            "serve".into(),
            "--config".into(),
            config.into(),
        ];
        Ok((msgrd, server))
    };
    let (server, client) = match spec.implementation.as_str() {
        "tcp-baseline echo" => (baseline_server, baseline_args("echo")),
        "tcp-baseline stream" => (baseline_server, baseline_args("stream")),
        ZMQ_ECHO => zmq("echo")?,
        ZMQ_STREAM => zmq("stream")?,
        "msgrd" | MSGRD_V2 if bins.self_test => (baseline_server, baseline_args("echo")),
        ONE_WAY | ONE_WAY_V2 if bins.self_test => (baseline_server, baseline_args("stream")),
        MSGRD_IDLE | MSGRD_STRESS if bins.self_test => {
            return Err("self-test: no msgrd to measure".into())
        }
        MSGRD_IDLE => {
            let (_, server) = msgrd_server()?;
            let idle = bins.msgr_idle.clone()?.display().to_string();
            let client = [
                idle.as_str(),
                "--peer",
                "{ADDR}",
                "--connections",
                &n(spec.connections),
                "--hold-ms",
                &n(IDLE_HOLD_MS),
                "--json",
            ]
            .map(String::from)
            .to_vec();
            (server, client)
        }
        "msgrd" | ONE_WAY | MSGRD_STRESS | MSGRD_V2 | ONE_WAY_V2 | MSGRD_NO_CRC => {
            let (msgrd, server) = msgrd_server()?;
            let mut client = vec![msgrd, "ping".into(), "--config".into(), config.into()];
            let v2 = matches!(spec.implementation.as_str(), MSGRD_V2 | ONE_WAY_V2);
            let peer = if v2 { "v2:{ADDR}" } else { "{ADDR}" };
            client.extend(
                [
                    "--peer",
                    peer,
                    "--size",
                    &n(spec.size),
                    "--count",
                    &n(spec.count),
                    "--concurrency",
                    &n(spec.concurrency),
                ]
                .map(String::from),
            );
            if spec.connections > 1 {
                client.extend(["--connections".to_string(), n(spec.connections)]);
            }
            let rdma_stream = spec.transport == "rdma" && spec.concurrency > 1;
            if matches!(spec.implementation.as_str(), ONE_WAY | ONE_WAY_V2)
                || (rdma_stream && matches!(spec.implementation.as_str(), "msgrd" | MSGRD_NO_CRC))
            {
                // Compared with a one-way baseline (tcp-baseline stream, ZeroMQ PUSH/PULL,
                // ib_send_bw): msgrd streams too, the server answering nothing but msgr1 ACKs.
                client.push("--one-way".into());
            }
            if spec.implementation == MSGRD_NO_CRC {
                // The receiver checks no data crc when the sender's footer says there is none.
                client.push("--no-crc-data".into());
            }
            client.push("--json".into());
            (server, client)
        }
        other => return Err(format!("no process pair for {other}")),
    };
    Ok(pair::Pair {
        server,
        client,
        ready_prefix: "LISTENING ".into(),
        settle: Duration::ZERO,
        client_timeout: CLIENT_TIMEOUT,
    })
}

/// A copy of `config` (written to `copy`) whose loopback `bind` is moved to `ip`, on port 0
/// unless `keep_port`; returns the path to use. Port 0 lets each cell's server take a free port
/// (a fixed one may be busy); msgrd prints the one it got. Unchanged config: its own path.
pub fn rebind_config(config: &str, ip: &str, keep_port: bool, copy: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(config) else {
        return config.to_string();
    };
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(
            |l| match l.trim_start().strip_prefix("bind = \"127.0.0.1:") {
                Some(rest) if !changed => {
                    changed = true;
                    let port = if keep_port {
                        rest.trim_end_matches(|c| c != '"').trim_end_matches('"')
                    } else {
                        "0"
                    };
                    format!("bind = \"{ip}:{port}\"")
                }
                _ => l.to_string(),
            },
        )
        .collect();
    if !changed {
        return config.to_string();
    }
    match std::fs::write(copy, lines.join("\n") + "\n") {
        Ok(()) => copy.display().to_string(),
        Err(_) => config.to_string(),
    }
}

/// A copy of `config` (written to `copy`) whose `[rdma]` table has `poll_us = {poll_us}`: the
/// key is replaced where it is, or added under the table header. Returns the copy's path.
/// Unlike [`rebind_config`] this fails rather than fall back to `config`: a busy-poll row that
/// silently ran event-driven would be compared with the wrong baseline.
pub fn with_poll_us(config: &str, poll_us: u64, copy: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {config} to set rdma.poll_us: {e}"))?;
    let key_line = format!("poll_us = {poll_us}");
    let mut table = String::new();
    let mut header_at = None;
    let mut replaced = false;
    let mut lines: Vec<String> = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix('[') {
            table = name.split(']').next().unwrap_or("").trim().to_string();
            if table == "rdma" {
                header_at = Some(lines.len());
            }
        } else if table == "rdma"
            && t.strip_prefix("poll_us")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            lines.push(key_line.clone());
            replaced = true;
            continue;
        }
        lines.push(l.to_string());
    }
    match (replaced, header_at) {
        (true, _) => {}
        (false, Some(i)) => lines.insert(i + 1, key_line),
        (false, None) => {
            return Err(format!(
                "{config} has no [rdma] table to set poll_us in; add one (see config/rdma.toml)"
            ))
        }
    }
    std::fs::write(copy, lines.join("\n") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
    Ok(copy.display().to_string())
}

/// Runs one msgrd / tcp-baseline row; a row that finished in under `min_wall` seconds
/// ([`MIN_WALL_S`], or [`MIN_WALL_S_VM`] in the VM) runs again with proportionally more
/// messages (memory rows run as planned).
pub fn run_pair_row(
    spec: &Spec,
    bins: &Bins,
    config: &str,
    device: &str,
    machine: &Machine,
    min_wall: f64,
) -> Cell {
    calibrated(
        spec,
        min_wall,
        |c| c.wall_s.filter(|_| c.ok() && !c.is_memory()),
        |s| run_pair_once(s, bins, config, device, machine),
    )
}

/// Runs a row with `run` until it lasts at least `min_wall` seconds by `wall` (None: as it
/// is), each rerun with proportionally more messages, at most [`CALIBRATE_TRIES`] runs.
pub fn calibrated(
    spec: &Spec,
    min_wall: f64,
    wall: impl Fn(&Cell) -> Option<f64>,
    mut run: impl FnMut(&Spec) -> Cell,
) -> Cell {
    let mut spec = spec.clone();
    for attempt in 1.. {
        let cell = run(&spec);
        match wall(&cell) {
            Some(w) if w < min_wall && attempt < CALIBRATE_TRIES => {
                spec.count = calibrated_count(cell.spec.count, w, min_wall);
            }
            _ => return cell,
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// The message count for a rerun of a row that took `wall` seconds with `count`: enough for
/// `min_wall` with a margin, at least twice and at most a hundred times as many.
pub fn calibrated_count(count: u64, wall: f64, min_wall: f64) -> u64 {
    let factor = (min_wall * 1.4 / wall.max(1e-6)).clamp(2.0, 100.0);
    (count.max(1) as f64 * factor).round() as u64
}

fn run_pair_once(spec: &Spec, bins: &Bins, config: &str, device: &str, machine: &Machine) -> Cell {
    let mut cell = Cell::new(spec.clone(), device, machine);
    let is_msgrd = spec.implementation.starts_with("msgrd");
    if is_msgrd && bins.self_test {
        cell.device = format!("{device} [self-test: tcp-baseline stands in for msgrd]");
    } else if is_msgrd {
        cell.config_file = Some(config.to_string());
        cell.config = std::fs::read_to_string(config).ok();
    }
    match pair_for(spec, bins, config).and_then(|p| pair::run(&p)) {
        Ok(m) => {
            cell.fill_from_client(&m.client, m.server.cpu_s);
            cell.fill_memory(m.server.hwm_before, m.server.hwm_after);
        }
        Err(e) => cell.status = format!("not available: {e}"),
    }
    cell
}

impl Cell {
    /// Records the server's peak RSS before and after the client; memory rows also get the
    /// growth per connection (the idle client's JSON has no count, so that comes from the spec).
    pub fn fill_memory(&mut self, before: Option<u64>, after: Option<u64>) {
        self.server_rss_start_bytes = before;
        self.server_rss_peak_bytes = after;
        if self.is_memory() && self.spec.connections > 0 {
            self.server_bytes_per_connection = before
                .zip(after)
                .map(|(b, a)| a.saturating_sub(b) as f64 / self.spec.connections as f64);
        }
    }
}

fn build(self_test: bool) -> Result<Bins, String> {
    println!("==> building release binaries");
    let release = target_dir().join("release");
    let bench_bins = ["tcp-baseline", "zmq-baseline", "msgr-idle"];
    let build_bins = |names: &[&str]| {
        let mut c = cargo();
        c.args(["build", "--release", "-p", "msgr-benches"]);
        for n in names {
            c.args(["--bin", n]);
        }
        run_status(&mut c)
    };
    // One cargo run for all three; if it fails, one each, so a baseline that does not build
    // costs only its own rows (tcp-baseline is needed by every TCP cell, so it is fatal).
    let (zmq_baseline, msgr_idle) = if build_bins(&bench_bins).is_ok() {
        (
            Ok(release.join("zmq-baseline")),
            Ok(release.join("msgr-idle")),
        )
    } else {
        build_bins(&["tcp-baseline"])
            .map_err(|e| format!("the tcp-baseline baseline does not build: {e}"))?;
        let one = |name: &str, why: &str| -> Result<PathBuf, String> {
            build_bins(&[name]).map_err(|e| format!("{name} does not build ({e}){why}"))?;
            Ok(release.join(name))
        };
        (
            one(
                "zmq-baseline",
                "; it compiles libzmq from source and needs a C++ compiler (g++)",
            ),
            one("msgr-idle", ""),
        )
    };
    let msgrd = if self_test {
        Err("self-test: tcp-baseline stands in for msgrd".to_string())
    } else {
        run_status(cargo().args(["build", "--release", "-p", "msgrd"]))
            .map_err(|e| format!("msgrd does not build ({e})"))
            .and_then(|()| {
                let p = release.join("msgrd");
                if p.exists() {
                    Ok(p)
                } else {
                    Err(format!(
                        "msgrd built but {} is missing (no binary target?)",
                        p.display()
                    ))
                }
            })
    };
    Ok(Bins {
        msgrd,
        tcp_baseline: release.join("tcp-baseline"),
        zmq_baseline,
        msgr_idle,
        self_test,
    })
}

pub fn run(a: BenchArgs) -> i32 {
    for t in &a.transports {
        if t != "tcp" && t != "rdma" {
            eprintln!("xtask bench: unknown transport `{t}` in --transports (use tcp, rdma)");
            return 2;
        }
    }
    // msgrd links the RDMA crate (rdma-sys needs verbs headers and libclang); the RDMA rows
    // need perftest and, without a device, the VM's tools.
    let mut groups = vec![&crate::packages::BUILD];
    if a.transports.iter().any(|t| t == "rdma") {
        groups.push(&crate::packages::RDMA_VM);
    }
    match crate::packages::ensure(&groups) {
        Ok(s) => println!("==> prerequisites: {s}"),
        Err(e) => {
            eprintln!("xtask bench: {e}");
            return 1;
        }
    }
    let bins = match build(a.self_test) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            return 1;
        }
    };
    let sizes: &[u64] = if a.quick { &SIZES_QUICK } else { &SIZES_FULL };
    let conns: &[u64] = if a.full { &CONNS } else { &[1] };
    let host = Machine::here("bare host");
    let git_rev = machine::git_revision();
    let started = machine::utc_now();
    let out_dir = target_dir().join("bench");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("xtask bench: cannot create {}: {e}", out_dir.display());
        return 1;
    }

    let mut tcp_specs = if a.transports.iter().any(|t| t == "tcp") {
        plan("tcp", sizes, conns, a.quick, false, a.busy_poll_us)
    } else {
        Vec::new()
    };
    if a.self_test {
        // Nothing stands in for msgrd's memory: those rows need the real server.
        tcp_specs.retain(|s| s.implementation != MSGRD_IDLE && s.implementation != MSGRD_STRESS);
    }
    let rdma_where = rdma::Where::detect();
    let rdma_specs = if a.transports.iter().any(|t| t == "rdma") {
        plan(
            "rdma",
            sizes,
            conns,
            a.quick,
            rdma_where.is_vm(),
            a.busy_poll_us,
        )
    } else {
        Vec::new()
    };
    println!(
        "==> bench matrix: {} TCP rows on loopback, {} RDMA rows {}",
        tcp_specs.len(),
        rdma_specs.len(),
        rdma_where.describe()
    );
    let steps = tcp_specs.len() as u64 + u64::from(!rdma_specs.is_empty());
    let pb = ProgressBar::new(steps);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
        )
        .expect("valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(200));

    let tcp_config = rebind_config(
        TCP_CONFIG,
        "127.0.0.1",
        false,
        &out_dir.join("tcp-bench.toml"),
    );
    let mut cells = Vec::new();
    for spec in &tcp_specs {
        pb.set_message(format!(
            "tcp: {} {} x{} c{}",
            spec.implementation,
            report::size_label(spec.size),
            spec.concurrency,
            spec.connections
        ));
        let cell = run_pair_row(
            spec,
            &bins,
            &tcp_config,
            "loopback 127.0.0.1",
            &host,
            MIN_WALL_S,
        );
        if !cell.ok() {
            pb.println(format!("  {}: {}", cell.label(), cell.status));
        }
        cells.push(cell);
        pb.inc(1);
    }
    if !rdma_specs.is_empty() {
        pb.set_message(format!(
            "rdma: {} rows {}",
            rdma_specs.len(),
            rdma_where.describe()
        ));
        let rows = rdma::run_outer(&rdma_specs, &bins, &rdma_where, &out_dir, &host);
        for c in rows.iter().filter(|c| !c.ok()) {
            pb.println(format!("  {}: {}", c.label(), c.status));
        }
        cells.extend(rows);
        pb.inc(1);
    }
    pb.finish_and_clear();

    for c in cells.iter_mut() {
        c.git_rev = git_rev.clone();
    }
    report::link_baselines(&mut cells);
    let table = report::table(&cells);
    println!("\n{table}");
    let meta = report::Meta {
        date: started,
        git_rev,
        machine: host.clone(),
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        rdma_device: rdma_where.describe(),
    };
    let mut code = 0;
    let json = out_dir.join("matrix.json");
    let svg = out_dir.join("matrix.svg");
    match report::write_json(&json, &meta, &cells) {
        Ok(()) => println!("wrote {}", json.display()),
        Err(e) => {
            eprintln!("xtask bench: cannot write {}: {e}", json.display());
            code = 1;
        }
    }
    match chart::write_svg(&svg, &cells) {
        Ok(()) => println!("wrote {}", svg.display()),
        Err(e) => {
            eprintln!("xtask bench: cannot write {}: {e}", svg.display());
            code = 1;
        }
    }
    if a.update_readme {
        match report::update_readme(Path::new("README.md"), &meta, &table) {
            Ok(()) => println!("updated README.md between the bench markers"),
            Err(e) => {
                eprintln!("xtask bench: {e}");
                code = 1;
            }
        }
    }
    let missing: Vec<&Cell> = cells.iter().filter(|c| !c.ok()).collect();
    if !missing.is_empty() {
        println!(
            "{} of {} rows not available ({} of them baselines); reasons in the table notes and matrix.json",
            missing.len(),
            cells.len(),
            missing.iter().filter(|c| c.spec.role == Role::Baseline).count()
        );
        code = 1;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_bind_is_moved_to_the_device_address() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("in.toml");
        std::fs::write(&cfg, "name = \"osd.0\"\nbind = \"127.0.0.1:6800\"\n").unwrap();
        let out = rebind_config(
            cfg.to_str().unwrap(),
            "10.0.2.15",
            true,
            &dir.join("a.toml"),
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("bind = \"10.0.2.15:6800\""), "{text}");
        assert!(text.contains("name = \"osd.0\""));
        let out = rebind_config(
            cfg.to_str().unwrap(),
            "127.0.0.1",
            false,
            &dir.join("b.toml"),
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("bind = \"127.0.0.1:0\""), "{text}");
        // Nothing to change: the file is used as it is.
        std::fs::write(&cfg, "name = \"osd.0\"\n").unwrap();
        let same = rebind_config(
            cfg.to_str().unwrap(),
            "127.0.0.1",
            false,
            &dir.join("c.toml"),
        );
        assert_eq!(same, cfg.to_str().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quick_plan_has_the_zmq_and_memory_rows() {
        let quick = plan("tcp", &SIZES_QUICK, &[1], true, false, BUSY_POLL_US);
        let find = |v: &[Spec], imp: &str| v.iter().filter(|s| s.implementation == imp).count();
        assert_eq!(find(&quick, ZMQ_ECHO), 1);
        assert_eq!(find(&quick, ZMQ_STREAM), 2);
        assert_eq!(find(&quick, MSGRD_IDLE), 1);
        assert_eq!(find(&quick, MSGRD_STRESS), 1);
        let z = quick.iter().find(|s| s.implementation == ZMQ_ECHO).unwrap();
        assert_eq!((z.size, z.concurrency, z.connections), (64, 16, 1));
        let idle = quick
            .iter()
            .find(|s| s.implementation == MSGRD_IDLE)
            .unwrap();
        assert_eq!(idle.connections, IDLE_CONNECTIONS);

        let full = plan("tcp", &SIZES_FULL, &[1, 8], false, false, BUSY_POLL_US);
        let st = full
            .iter()
            .find(|s| s.implementation == MSGRD_STRESS)
            .unwrap();
        assert_eq!(
            (st.size, st.concurrency, st.connections),
            (64 << 10, STRESS_IN_FLIGHT, STRESS_CONNECTIONS)
        );
        // More messages than one full window, or the load never reaches its depth.
        assert!(st.count > STRESS_CONNECTIONS * STRESS_IN_FLIGHT);
        // Neither the ZeroMQ nor the memory rows belong to RDMA.
        let rdma = plan("rdma", &SIZES_FULL, &[1], false, true, BUSY_POLL_US);
        assert!(rdma
            .iter()
            .all(|s| s.implementation.starts_with("msgrd") || s.implementation.starts_with("ib_")));
        // Each streaming cell also runs without the data crc; latency cells do not.
        let no_crc: Vec<u64> = rdma
            .iter()
            .filter(|s| s.implementation == MSGRD_NO_CRC)
            .map(|s| s.concurrency)
            .collect();
        assert_eq!(no_crc.len(), SIZES_FULL.len());
        assert!(no_crc.iter().all(|&c| c > 1));
    }

    #[test]
    fn quick_plan_streams_one_way_against_the_raw_stream_and_zmq_and_has_8_connections() {
        let quick = plan("tcp", &SIZES_QUICK, &[1], true, false, BUSY_POLL_US);
        let shapes = |imp: &str| -> Vec<(u64, u64)> {
            quick
                .iter()
                .filter(|s| s.implementation == imp)
                .map(|s| (s.size, s.connections))
                .collect()
        };
        let every: Vec<(u64, u64)> = ONE_WAY_SIZES_QUICK
            .iter()
            .flat_map(|&size| CONNS.map(|k| (size, k)))
            .collect();
        assert_eq!(shapes(ONE_WAY), every);
        assert_eq!(shapes("tcp-baseline stream"), every);
        assert_eq!(shapes(ZMQ_STREAM), [(64, 1), (4096, 1)]);
        // 8 connections in --quick: the pipelined echo rows, each with its baseline.
        for imp in ["msgrd", "tcp-baseline echo"] {
            let c8: Vec<(u64, u64)> = quick
                .iter()
                .filter(|s| s.implementation == imp && s.connections == 8)
                .map(|s| (s.size, s.concurrency))
                .collect();
            assert_eq!(c8, SIZES_QUICK.map(|size| (size, CONNS_IN_FLIGHT)), "{imp}");
        }
        // One-way clients queue about ONE_WAY_QUEUE_BYTES, never fewer than a few messages.
        let ow = |size: u64| {
            quick
                .iter()
                .find(|s| s.implementation == ONE_WAY && s.size == size)
                .unwrap()
                .concurrency
        };
        assert_eq!(ow(64) * 64, ONE_WAY_QUEUE_BYTES);
        assert_eq!(ow(1 << 20), ONE_WAY_MIN_IN_FLIGHT);
        // The full plan has every size one way, and 8 connections for every echo shape.
        let full = plan("tcp", &SIZES_FULL, &CONNS, false, false, BUSY_POLL_US);
        assert_eq!(
            full.iter()
                .filter(|s| s.implementation == ONE_WAY && s.connections == 1)
                .count(),
            SIZES_FULL.len()
        );
        assert!(full
            .iter()
            .any(|s| s.implementation == "msgrd" && s.concurrency == 1 && s.connections == 8));
        // RDMA keeps its shapes: no 8-connection rows unless asked for.
        let rdma = plan("rdma", &SIZES_QUICK, &[1], true, true, BUSY_POLL_US);
        assert!(rdma.iter().all(|s| s.connections == 1));
    }

    #[test]
    fn short_rows_rerun_with_enough_messages_for_the_minimum_time() {
        // 0.05 s: 14 times as many for 0.7 s.
        assert_eq!(calibrated_count(1000, 0.05, MIN_WALL_S), 14_000);
        // Nearly there: still at least double (the margin covers noise).
        assert_eq!(calibrated_count(1000, 0.45, MIN_WALL_S), 2000);
        // Far too short: at most a hundredfold per rerun.
        assert_eq!(calibrated_count(1000, 0.0, MIN_WALL_S), 100_000);
        assert_eq!(calibrated_count(0, 0.1, MIN_WALL_S), 7);
        // In the VM: 2 s with the margin.
        assert_eq!(calibrated_count(16, 0.7, MIN_WALL_S_VM), 64);
    }

    #[test]
    fn rdma_latency_rows_come_in_both_modes_each_with_its_perftest() {
        let v = plan("rdma", &SIZES_QUICK, &[1], true, true, BUSY_POLL_US);
        for size in SIZES_QUICK {
            let names: Vec<String> = v
                .iter()
                .filter(|s| s.size == size)
                .map(|s| format!("{} x{}", s.name(), s.concurrency))
                .collect();
            assert_eq!(
                names,
                [
                    "msgrd (event) x1",
                    "msgrd (busy-poll) x1",
                    "msgrd x16",
                    "msgrd (crc off) x16",
                    "ib_send_lat -e x1",
                    "ib_send_lat x1",
                    "ib_send_bw x1",
                    "ib_write_bw x1",
                ],
                "{size}"
            );
        }
        // The modes stay out of TCP.
        let tcp = plan("tcp", &SIZES_QUICK, &[1], true, false, BUSY_POLL_US);
        assert!(tcp.iter().all(|s| s.poll.is_none() && s.poll_us.is_none()));
        // msgrd's poll_us per mode; perftest has none.
        let poll_us = |name: &str| v.iter().find(|s| s.name() == name).unwrap().poll_us;
        assert_eq!(poll_us("msgrd (event)"), Some(0));
        assert_eq!(poll_us("msgrd (busy-poll)"), Some(BUSY_POLL_US));
        assert_eq!(poll_us("ib_send_lat"), None);
        assert_eq!(poll_us("msgrd"), None);
        let v = plan("rdma", &[64], &[1], true, true, 250);
        assert_eq!(v[1].poll_us, Some(250));
    }

    #[test]
    fn poll_us_is_set_in_the_rdma_table_of_a_copy() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-poll-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("in.toml");
        let original = "name = \"osd.0\"\n[other]\npoll_us = 7\n[rdma]\n# comment\ndevice = \"rxe0\"\npoll_us  = 0 # sleep\npoll_us_max = 3\n";
        std::fs::write(&cfg, original).unwrap();
        let copy = dir.join("busy.toml");
        let out = with_poll_us(cfg.to_str().unwrap(), 200, &copy).unwrap();
        assert_eq!(out, copy.display().to_string());
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            "name = \"osd.0\"\n[other]\npoll_us = 7\n[rdma]\n# comment\ndevice = \"rxe0\"\npoll_us = 200\npoll_us_max = 3\n"
        );
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);

        // No key yet: it goes under the header.
        std::fs::write(&cfg, "[rdma]\ndevice = \"rxe0\"\n[timeouts]\n").unwrap();
        with_poll_us(cfg.to_str().unwrap(), 50, &copy).unwrap();
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            "[rdma]\npoll_us = 50\ndevice = \"rxe0\"\n[timeouts]\n"
        );

        // Nowhere to put it, or nothing to read: an error that names the file.
        std::fs::write(&cfg, "[other]\npoll_us = 1\n").unwrap();
        let e = with_poll_us(cfg.to_str().unwrap(), 50, &copy).unwrap_err();
        assert!(e.contains("in.toml has no [rdma] table"), "{e}");
        let e = with_poll_us("/nonexistent/x.toml", 50, &copy).unwrap_err();
        assert!(e.contains("/nonexistent/x.toml"), "{e}");

        // The shipped RDMA config has the key in its [rdma] table: only that line changes.
        let shipped = crate::util::workspace_root().join(RDMA_CONFIG);
        let text = std::fs::read_to_string(&shipped).unwrap();
        with_poll_us(shipped.to_str().unwrap(), BUSY_POLL_US, &copy).unwrap();
        let busy = std::fs::read_to_string(&copy).unwrap();
        let changed: Vec<(&str, &str)> = text
            .lines()
            .zip(busy.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(text.lines().count(), busy.lines().count());
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].1, format!("poll_us = {BUSY_POLL_US}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn bins() -> Bins {
        Bins {
            msgrd: Ok("/bin/msgrd".into()),
            tcp_baseline: "/bin/tcp-baseline".into(),
            zmq_baseline: Err("no C++ compiler".into()),
            msgr_idle: Ok("/bin/msgr-idle".into()),
            self_test: false,
        }
    }

    #[test]
    fn memory_rows_run_msgrd_serve_with_the_idle_client_or_the_stress_ping() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("tcp.toml");
        std::fs::write(&cfg, "bind = \"127.0.0.1:0\"\n").unwrap();
        let cfg = cfg.to_str().unwrap();
        let specs = plan("tcp", &SIZES_FULL, &[1], false, false, BUSY_POLL_US);
        let get = |imp: &str| specs.iter().find(|s| s.implementation == imp).unwrap();

        let p = pair_for(get(MSGRD_IDLE), &bins(), cfg).unwrap();
        assert_eq!(p.server, ["/bin/msgrd", "serve", "--config", cfg]);
        assert_eq!(p.client[0], "/bin/msgr-idle");
        let c = p.client.join(" ");
        assert!(c.contains("--peer {ADDR} --connections 1000"), "{c}");

        let p = pair_for(get(MSGRD_STRESS), &bins(), cfg).unwrap();
        let c = p.client.join(" ");
        assert!(c.starts_with("/bin/msgrd ping --config"), "{c}");
        assert!(
            c.contains("--size 65536") && c.contains("--concurrency 64"),
            "{c}"
        );
        assert!(c.contains("--connections 128"), "{c}");

        // A baseline that did not build costs its own rows, with the reason.
        let err = pair_for(get(ZMQ_ECHO), &bins(), cfg).unwrap_err();
        assert_eq!(err, "no C++ compiler");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_rows_get_bytes_per_connection_and_other_rows_only_the_peaks() {
        let specs = plan("tcp", &SIZES_QUICK, &[1], true, false, BUSY_POLL_US);
        let idle = specs
            .iter()
            .find(|s| s.implementation == MSGRD_IDLE)
            .unwrap();
        let mut c = Cell::new(idle.clone(), "lo", &Machine::default());
        c.fill_memory(Some(10 << 20), Some((10 << 20) + 1000 * 4096));
        assert_eq!(c.server_bytes_per_connection, Some(4096.0));
        assert_eq!(c.server_rss_peak_bytes, Some((10 << 20) + 1000 * 4096));

        let mut c = Cell::new(specs[0].clone(), "lo", &Machine::default());
        c.fill_memory(Some(1), Some(2));
        assert_eq!(c.server_bytes_per_connection, None);
        assert_eq!(c.server_rss_start_bytes, Some(1));
        // The server had exited: nothing to say per connection.
        let mut c = Cell::new(idle.clone(), "lo", &Machine::default());
        c.fill_memory(Some(1), None);
        assert_eq!(c.server_bytes_per_connection, None);
    }
}
