//! msgrd: run a msgr node from a TOML file.
//!
//!     msgrd serve --config FILE [--no-crc-data]
//!     msgrd ping  --config FILE --peer ADDR [--size BYTES] [--count N] [--concurrency N]
//!                 [--connections N] [--peer-type TYPE] [--json] [--no-crc-data]
//!
//! `--no-crc-data` overrides the file's `[protocol] crc_data` (Ceph `ms_crc_data`) with false:
//! sent messages carry no data crc (FLAG_NOCRC).
//!
//! `serve` is an echo server: every message it receives goes back on the same connection with
//! the same type, priority, tid, front, middle and data. Once bound it prints
//! `LISTENING IP:PORT/NONCE` on stdout (the address `ping --peer` takes); it runs until SIGINT
//! or SIGTERM, then shuts down and prints its counters on stderr.
//!
//! `ping` opens `--connections` connections (one client messenger each, bound to the config's
//! IP with an ephemeral port), splits `--count` messages over them and keeps `--concurrency`
//! in flight on each: the next message is sent from the dispatcher as each echo arrives. It
//! prints round-trip latency percentiles and throughput (with `--json`: one line with
//! transport, size, count, concurrency, connections, p50_us, p99_us, max_us, msgs_per_s,
//! gbytes_per_s, cpu_s_client, wall_s), and its counters on stderr. Logs go to stderr
//! (`RUST_LOG` filters them; default `info`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use parking_lot::{Condvar, Mutex};

use msgr::{
    Config, ConnectionRef, Dispatcher, EntityAddr, EntityName, EntityType, ErrorClass, Message,
    Messenger, MessengerCounters,
};
use msgr_core::session::SessionError;

#[derive(Parser)]
#[command(
    name = "msgrd",
    about = "Run a msgr node from a TOML config: echo server or ping client"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Listen on this IP:PORT instead of the file's `bind` (ping: its clients use the IP with
    /// port 0). E.g. `--bind $RDMA_IP:6800` inside the Soft-RoCE VM, where rdma_cm cannot use
    /// 127.0.0.1.
    #[arg(long, global = true)]
    bind: Option<SocketAddr>,
}

/// `--bind`, set once in `main` before any config is loaded.
static BIND_OVERRIDE: std::sync::OnceLock<Option<SocketAddr>> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Cmd {
    /// Echo every message back; print `LISTENING <addr>` once bound.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Send messages without a data crc (sets `[protocol] crc_data = false`).
        #[arg(long)]
        no_crc_data: bool,
    },
    /// Send messages to a server and report latency and throughput.
    Ping {
        #[arg(long)]
        config: PathBuf,
        /// The server's address as `serve` prints it: IP:PORT/NONCE (a `v1:` prefix is fine;
        /// without /NONCE the nonce is 0).
        #[arg(long)]
        peer: String,
        /// Payload bytes per message (in the front section up to 4 KiB, in data above).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages in total, over all connections.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 1)]
        concurrency: u64,
        /// Connections (each from its own client messenger).
        #[arg(long, default_value_t = 1)]
        connections: u64,
        /// The server's entity type (mon, mds, osd, client, mgr).
        #[arg(long, default_value = "osd")]
        peer_type: String,
        /// Print one JSON line instead of a human summary.
        #[arg(long)]
        json: bool,
        /// Send messages without a data crc (sets `[protocol] crc_data = false`).
        #[arg(long)]
        no_crc_data: bool,
        /// Streaming: the payload travels one way only; the server acknowledges each message
        /// with an empty one (as perftest's `ib_send_bw` / a raw one-way stream measure).
        /// Without it the server echoes the whole payload back.
        #[arg(long)]
        one_way: bool,
    },
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let cli = Cli::parse();
    let _ = BIND_OVERRIDE.set(cli.bind);
    let result = match cli.cmd {
        Cmd::Serve {
            config,
            no_crc_data,
        } => serve(&config, no_crc_data),
        Cmd::Ping {
            config,
            peer,
            size,
            count,
            concurrency,
            connections,
            peer_type,
            json,
            no_crc_data,
            one_way,
        } => ping(PingArgs {
            config,
            peer,
            size,
            count: count.max(1),
            concurrency: concurrency.max(1),
            connections: connections.max(1),
            peer_type,
            json,
            no_crc_data,
            one_way,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msgrd: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

/// `IP:PORT/NONCE` as printed by `serve`.
fn format_addr(a: &EntityAddr) -> String {
    match a.addr {
        Some(s) => format!("{s}/{}", a.nonce),
        None => format!("-/{}", a.nonce),
    }
}

fn parse_addr(s: &str) -> Result<EntityAddr, AnyError> {
    let s = s.strip_prefix("v1:").unwrap_or(s);
    let (sock, nonce) = match s.rsplit_once('/') {
        Some((a, n)) => (
            a,
            n.parse::<u32>()
                .map_err(|_| format!("--peer {s}: the nonce after '/' must be a number"))?,
        ),
        None => (s, 0),
    };
    let sock: SocketAddr = sock
        .parse()
        .map_err(|_| format!("--peer {s}: expected IP:PORT/NONCE, e.g. 127.0.0.1:6800/1234"))?;
    Ok(EntityAddr::new(sock, nonce))
}

fn print_counters(who: &str, c: &MessengerCounters) {
    let k = &c.connections;
    eprintln!(
        "{who} counters: messages in {} out {}, bytes in {} out {}, faults {}, reconnects {}, \
         replayed {}, throttle waits {}, accepted {}, connected {}, refused {}, protocol errors {}, \
         handshake timeouts {}, open connections {}, transport fallbacks {}",
        k.messages_in,
        k.messages_out,
        k.bytes_in,
        k.bytes_out,
        k.faults,
        k.reconnects,
        k.replayed,
        k.throttle_waits,
        c.accepted,
        c.connected,
        c.refused,
        c.protocol_errors,
        c.handshake_timeouts,
        c.open_connections,
        c.fallbacks
    );
}

/// Logs connection life; shared by both modes.
fn log_event(what: &str, conn: &ConnectionRef) {
    tracing::info!(peer = %conn.peer_addr(), "{what}");
}

// ---- serve ---------------------------------------------------------------------------------

struct Echo;

/// Message type of a ping that wants the whole payload echoed.
const MSG_ECHO: u16 = 1;
/// Message type of a one-way ping: the reply is an empty message with the same type and tid.
const MSG_ONE_WAY: u16 = 2;

impl Dispatcher for Echo {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        let reply = if msg.msg_type == MSG_ONE_WAY {
            Message::new(MSG_ONE_WAY, Bytes::new()).with_tid(msg.tid)
        } else {
            Message {
                seq: 0,
                src: EntityName::default(),
                ..msg
            }
        };
        if let Err(e) = conn.send_message(reply) {
            tracing::warn!(peer = %conn.peer_addr(), error = %e, "cannot echo");
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        log_event("connected", conn);
    }
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        log_event("accepted", conn);
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        tracing::info!(peer = %conn.peer_addr(), undelivered = undelivered.len(), "session reset");
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        log_event("peer reset the session", conn);
    }
    fn ms_handle_remote_reset_undelivered(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        // An echo server has nothing to resend: the peer that reset will not wait for them.
        tracing::info!(peer = %conn.peer_addr(), dropped = undelivered.len(), "echoes dropped by the peer's reset");
    }
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        tracing::info!(peer = %conn.peer_addr(), %error, "link fault");
    }
}

/// The file's configuration, with command-line overrides applied.
fn load_config(path: &PathBuf, no_crc_data: bool) -> Result<Config, AnyError> {
    let mut cfg = Config::from_file(path)?;
    if let Some(bind) = BIND_OVERRIDE.get().copied().flatten() {
        cfg.bind = bind;
    }
    if no_crc_data {
        cfg.protocol.crc_data = false;
    }
    Ok(cfg)
}

fn serve(path: &PathBuf, no_crc_data: bool) -> Result<(), AnyError> {
    let cfg = load_config(path, no_crc_data)?;
    let m = msgr::from_config(&cfg)?;
    m.add_dispatcher(Arc::new(Echo));
    m.start()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTENING {}", format_addr(&m.my_addr()))?;
        out.flush()?;
    }
    tracing::info!(name = %m.my_name(), addr = %m.my_addr(), transports = ?m.transports(), crc_data = cfg.protocol.crc_data, "serving (echo)");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("signal received: shutting down");
    m.shutdown();
    print_counters("serve", &m.counters());
    Ok(())
}

// ---- ping ----------------------------------------------------------------------------------

struct PingArgs {
    config: PathBuf,
    peer: String,
    size: usize,
    count: u64,
    concurrency: u64,
    connections: u64,
    peer_type: String,
    json: bool,
    no_crc_data: bool,
    one_way: bool,
}

/// One connection's closed loop: the next message leaves when an echo arrives.
struct Driver {
    state: Mutex<DriverState>,
    done: Condvar,
    front: Bytes,
    data: Bytes,
    msg_type: u16,
}

struct DriverState {
    total: u64,
    sent: u64,
    received: u64,
    sent_at: VecDeque<Instant>,
    latencies_ns: Vec<u64>,
    errors: u64,
    fatal: Option<String>,
}

impl Driver {
    fn message(&self, tid: u64) -> Message {
        Message::new(self.msg_type, self.front.clone())
            .with_data(self.data.clone())
            .with_tid(tid)
    }

    /// Queue up to `n` more messages (bounded by the total) on `conn`.
    fn send_more(&self, conn: &ConnectionRef, n: u64) {
        for _ in 0..n {
            let tid = {
                let mut s = self.state.lock();
                if s.sent >= s.total {
                    return;
                }
                s.sent += 1;
                s.sent_at.push_back(Instant::now());
                s.sent
            };
            if let Err(e) = conn.send_message(self.message(tid)) {
                tracing::error!(error = %e, "send failed");
                self.state.lock().errors += 1;
                self.done.notify_all();
                return;
            }
        }
    }

    fn wait_done(&self) -> Result<(), AnyError> {
        let mut s = self.state.lock();
        while s.received < s.total {
            if let Some(why) = &s.fatal {
                return Err(format!("cannot talk to the peer: {why}").into());
            }
            if s.errors > 0 {
                return Err("sending failed (see the log above)".into());
            }
            if self
                .done
                .wait_for(&mut s, Duration::from_secs(120))
                .timed_out()
            {
                return Err(format!(
                    "no echo for 120 s ({} of {} received): is the server running?",
                    s.received, s.total
                )
                .into());
            }
        }
        Ok(())
    }
}

impl Dispatcher for Driver {
    fn ms_dispatch(&self, conn: &ConnectionRef, _msg: Message) {
        let more = {
            let mut s = self.state.lock();
            if let Some(t) = s.sent_at.pop_front() {
                s.latencies_ns.push(t.elapsed().as_nanos() as u64);
            }
            s.received += 1;
            if s.received >= s.total {
                self.done.notify_all();
            }
            s.sent < s.total
        };
        if more {
            self.send_more(conn, 1);
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        log_event("connected", conn);
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        tracing::warn!(peer = %conn.peer_addr(), undelivered = undelivered.len(), "session reset");
        self.state.lock().errors += 1;
        self.done.notify_all();
    }
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        tracing::info!(peer = %conn.peer_addr(), %error, "link fault");
        // A peer that is not the one we asked for (wrong nonce, not msgr1 ...) will not
        // become it by retrying: stop with the reason.
        if ErrorClass::of(error) == ErrorClass::Protocol {
            let hint = if matches!(error, SessionError::AddressMismatch { .. }) {
                " (give --peer exactly as `msgrd serve` printed it: IP:PORT/NONCE)"
            } else {
                ""
            };
            self.state.lock().fatal = Some(format!("{error}{hint}"));
            self.done.notify_all();
        }
    }
}

fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is 3rd, utime 14th, stime 15th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e3
}

/// What `ping` measured: one JSON line (`--json`, for the bench) or one human line.
#[derive(serde::Serialize)]
struct PingSummary {
    transport: &'static str,
    size: usize,
    count: u64,
    concurrency: u64,
    connections: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    msgs_per_s: f64,
    gbytes_per_s: f64,
    cpu_s_client: f64,
    wall_s: f64,
    one_way: bool,
}

impl std::fmt::Display for PingSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} size={} count={} concurrency={} connections={}: p50 {:.1} us, p99 {:.1} us, \
             max {:.1} us; {:.0} msg/s, {:.3} GB/s; client CPU {:.2} s over {:.3} s",
            self.transport,
            if self.one_way { " one-way" } else { "" },
            self.size,
            self.count,
            self.concurrency,
            self.connections,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.msgs_per_s,
            self.gbytes_per_s,
            self.cpu_s_client,
            self.wall_s
        )
    }
}

fn ping(a: PingArgs) -> Result<(), AnyError> {
    let base = load_config(&a.config, a.no_crc_data)?;
    let peer = parse_addr(&a.peer)?;
    let peer_type = match msgr::config_entity_type(&a.peer_type) {
        Some(t) => t,
        None => {
            return Err(format!(
                "--peer-type {}: expected one of mon, mds, osd, client, mgr",
                a.peer_type
            )
            .into())
        }
    };
    let payload = Bytes::from(vec![0x5au8; a.size]);
    let (front, data) = if a.size <= 4096 {
        (payload, Bytes::new())
    } else {
        (Bytes::new(), payload)
    };
    let mut nodes: Vec<(msgr::Node, Arc<Driver>, ConnectionRef)> = Vec::new();
    for i in 0..a.connections {
        let mut cfg = base.clone();
        // Clients listen on an ephemeral port of the configured IP (the server has the port).
        cfg.bind = SocketAddr::new(cfg.bind.ip(), 0);
        cfg.nonce = None;
        cfg.name = EntityName::new(EntityType::CLIENT, i as i64);
        let share = a.count / a.connections + u64::from(i < a.count % a.connections);
        let driver = Arc::new(Driver {
            state: Mutex::new(DriverState {
                total: 1,
                sent: 0,
                received: 0,
                sent_at: VecDeque::new(),
                latencies_ns: Vec::new(),
                errors: 0,
                fatal: None,
            }),
            done: Condvar::new(),
            front: front.clone(),
            data: data.clone(),
            msg_type: if a.one_way { MSG_ONE_WAY } else { MSG_ECHO },
        });
        let m = msgr::from_config(&cfg)?;
        m.add_dispatcher(driver.clone());
        m.start()?;
        let conn = m.connect_to(peer_type, &peer)?;
        // Warm-up: one round trip opens the session before the clock starts.
        driver.send_more(&conn, 1);
        driver.wait_done()?;
        {
            let mut s = driver.state.lock();
            *s = DriverState {
                total: share,
                sent: 0,
                received: 0,
                sent_at: VecDeque::with_capacity(a.concurrency as usize),
                latencies_ns: Vec::with_capacity(share as usize),
                errors: 0,
                fatal: None,
            };
        }
        nodes.push((m, driver, conn));
    }

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for (_, d, c) in &nodes {
        d.send_more(c, a.concurrency);
    }
    let mut waited = Ok(());
    for (_, d, _) in &nodes {
        if let Err(e) = d.wait_done() {
            waited = Err(e);
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;

    // The transport that carried the connections (the first listed that could reach the peer).
    let carried_by = nodes
        .first()
        .and_then(|(_, _, c)| c.transport())
        .unwrap_or("none");
    let mut lat: Vec<u64> = Vec::with_capacity(a.count as usize);
    let mut total = MessengerCounters::default();
    for (m, d, _) in &nodes {
        lat.extend_from_slice(&d.state.lock().latencies_ns);
        m.shutdown();
        let c = m.counters();
        total.connections.messages_in += c.connections.messages_in;
        total.connections.messages_out += c.connections.messages_out;
        total.connections.bytes_in += c.connections.bytes_in;
        total.connections.bytes_out += c.connections.bytes_out;
        total.connections.faults += c.connections.faults;
        total.connections.reconnects += c.connections.reconnects;
        total.connections.replayed += c.connections.replayed;
        total.connected += c.connected;
        total.protocol_errors += c.protocol_errors;
        total.fallbacks += c.fallbacks;
    }
    print_counters("ping", &total);
    waited?;
    lat.sort_unstable();
    let count = lat.len() as u64;
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let max = lat.last().map_or(0.0, |v| *v as f64 / 1e3);
    let summary = PingSummary {
        transport: carried_by,
        size: a.size,
        count,
        concurrency: a.concurrency,
        connections: a.connections,
        p50_us: p50,
        p99_us: p99,
        max_us: max,
        msgs_per_s: count as f64 / wall,
        gbytes_per_s: (count as f64 * a.size as f64) / wall / 1e9,
        cpu_s_client: cpu,
        wall_s: wall,
        one_way: a.one_way,
    };
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crc_data_overrides_the_file() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/tcp.toml"
        ));
        assert!(load_config(&path, false).unwrap().protocol.crc_data);
        let cfg = load_config(&path, true).unwrap();
        assert!(!cfg.protocol.crc_data);
        assert!(!cfg.node_config().crc_data);
    }

    #[test]
    fn peer_addresses_parse() {
        let a = parse_addr("v1:127.0.0.1:6800/42").unwrap();
        assert_eq!(a.nonce, 42);
        assert_eq!(a.addr, Some("127.0.0.1:6800".parse().unwrap()));
        assert_eq!(parse_addr("127.0.0.1:1").unwrap().nonce, 0);
        assert!(parse_addr("localhost:1/2").is_err());
        assert_eq!(parse_addr(&format_addr(&a)).unwrap(), a);
    }
}
