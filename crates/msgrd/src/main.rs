//! msgrd: run a msgr node from a TOML file.
//!
//!     msgrd serve --config FILE [--no-crc-data] [--metrics IP:PORT]
//!     msgrd ping  --config FILE --peer [v2:]ADDR [--size BYTES] [--count N] [--concurrency N]
//!                 [--connections N] [--peer-type TYPE] [--json] [--no-crc-data] [--one-way]
//!     msgrd --version | --help
//!
//! `--no-crc-data` overrides the file's `[protocol] crc_data` (Ceph `ms_crc_data`) with false:
//! sent messages carry no data crc (FLAG_NOCRC).
//!
//! `serve` is an echo server: every message it receives goes back on the same connection with
//! the same type, priority, tid, front, middle and data. Once bound it prints
//! `LISTENING IP:PORT/NONCE` on stdout (the address `ping --peer` takes); it runs until SIGINT
//! or SIGTERM, then shuts down and prints its counters on stderr. With `--metrics IP:PORT` it
//! also serves its counters live at `http://IP:PORT/metrics` (Prometheus / OpenMetrics text:
//! the messenger's totals and one series per connection, labelled by peer and transport) and
//! prints `METRICS IP:PORT` once that port is bound (port 0: any free port).
//!
//! `ping` opens `--connections` connections (one client messenger each, bound to the config's
//! IP with an ephemeral port) and splits `--count` messages over them. Echo (the default)
//! keeps `--concurrency` in flight on each: the next message is sent from the dispatcher as
//! each echo arrives. `--one-way` streams: the server answers nothing but msgr1 ACKs, then
//! reports its count on an end marker. It prints round-trip latency percentiles (an HDR
//! histogram; none when streaming), throughput and the client's CPU time from `getrusage`
//! (with `--json`: one line with transport, size, count, concurrency, connections, p50_us,
//! p99_us, p999_us, max_us, msgs_per_s, gbytes_per_s, cpu_s_client, wall_s, one_way), and its
//! counters on stderr. Logs go to stderr (`RUST_LOG` filters them; default `info`).

mod client;
mod common;
mod measure;
mod metrics;
mod ping;
mod proto;
mod serve;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use common::{parse_peer, positive_count, Peer, PeerType};
use ping::{ping, PingArgs};
use serve::serve;

#[derive(Parser)]
#[command(
    name = "msgrd",
    version,
    about = "Run a msgr node from a TOML config: echo server or ping client"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Listen on this IP:PORT instead of the file's `bind` (ping: its clients use the IP with
    /// port 0). E.g. `--bind $RDMA_IP:6800` inside the Soft-RoCE VM, where rdma_cm cannot use
    /// 127.0.0.1.
    #[arg(long, global = true, value_name = "IP:PORT")]
    bind: Option<SocketAddr>,
}

/// `--bind`, set once in `main` before any config is loaded.
static BIND_OVERRIDE: std::sync::OnceLock<Option<SocketAddr>> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Cmd {
    /// Echo every message back; print `LISTENING <addr>` once bound.
    Serve {
        /// The node's TOML config (see config/tcp.toml for every key).
        #[arg(long)]
        config: PathBuf,
        /// Send messages without a data crc (sets `[protocol] crc_data = false`).
        #[arg(long)]
        no_crc_data: bool,
        /// Serve the counters live over HTTP at IP:PORT/metrics, in the Prometheus text format
        /// (port 0: any free port; the bound one is printed as `METRICS IP:PORT`).
        #[arg(long, value_name = "IP:PORT")]
        metrics: Option<SocketAddr>,
    },
    /// Send messages to a server and report latency and throughput.
    Ping {
        /// The clients' TOML config (its IP is used, with ephemeral ports).
        #[arg(long)]
        config: PathBuf,
        /// The server's address as `serve` prints it: IP:PORT/NONCE (without /NONCE the nonce
        /// is 0). A `v2:` prefix speaks msgr2, `v1:` msgr1; without one, the config's
        /// `[protocol] prefer` (default v1).
        #[arg(long, value_name = "[v1:|v2:]IP:PORT/NONCE", value_parser = parse_peer)]
        peer: Peer,
        /// Payload bytes per message (in the front section up to 4 KiB, in data above).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages in total, over all connections (at least 1).
        #[arg(long, default_value_t = 10_000, value_parser = positive_count, allow_hyphen_values = true)]
        count: u64,
        /// Messages in flight per connection (at least 1).
        #[arg(long, default_value_t = 1, value_parser = positive_count, allow_hyphen_values = true)]
        concurrency: u64,
        /// Connections, each from its own client messenger (at least 1).
        #[arg(long, default_value_t = 1, value_parser = positive_count, allow_hyphen_values = true)]
        connections: u64,
        /// The server's entity type.
        #[arg(long, value_enum, default_value_t = PeerType::Osd)]
        peer_type: PeerType,
        /// Print one JSON line instead of a human summary.
        #[arg(long)]
        json: bool,
        /// Send messages without a data crc (sets `[protocol] crc_data = false`).
        #[arg(long)]
        no_crc_data: bool,
        /// Stream one way (as a raw socket stream or perftest's `ib_send_bw`): the server
        /// answers nothing but msgr1 ACKs, then reports its count; `--concurrency` messages
        /// may wait in each connection's send queue. Without it the server echoes each message.
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
            metrics,
        } => serve(&config, no_crc_data, metrics),
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
            count,
            concurrency,
            connections,
            peer_type: peer_type.into(),
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
