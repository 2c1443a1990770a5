//! zmq-baseline: the ZeroMQ PUSH/PULL message rate the bench matrix compares msgr's small-message
//! rate with (libzmq 4.3, through the `zmq` crate, over TCP loopback).
//!
//!     zmq-baseline serve [--listen 127.0.0.1]
//!     zmq-baseline ping --peer PULL_ADDR,PUSH_ADDR --size BYTES --count N
//!                       [--concurrency C] [--mode echo|stream] [--json]
//!
//! `serve` binds a PULL socket and a PUSH socket on two free ports of `--listen` and prints
//! `LISTENING <pull addr>,<push addr>`. The client PUSHes to the first and PULLs from the second,
//! so each direction is a plain PUSH/PULL pipe:
//! - echo: the server PUSHes every message it PULLs straight back; the client keeps at most
//!   `--concurrency` messages unanswered (the same shape as a msgrd cell with that many in
//!   flight) and measures each round trip;
//! - stream: the client PUSHes `count` messages as fast as libzmq takes them (bounded only by
//!   its high-water marks, as ZeroMQ's own throughput test does); the server answers once, after
//!   the last one, so the clock stops when everything has arrived.
//!
//! Every run starts with a hello (mode and count) that the server answers, so both pipes are
//! connected before the clock starts. With `--json` the client prints one line with the fields of
//! `msgrd ping --json`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use msgr_benches::report::{percentile, self_cpu_seconds, RunResult};

/// First bytes of a hello message; a run message never starts a session.
const HELLO: &[u8; 4] = b"ZBL1";
/// The server's answer to a hello, and its answer after the last message of a stream.
const READY: &[u8] = b"R";
const STREAM_DONE: &[u8] = b"K";
/// Largest message the server accepts (the matrix tops out at 4 MiB).
const MAX_MSG: usize = 64 << 20;

#[derive(Parser)]
#[command(about = "libzmq PUSH/PULL baseline for the msgr bench matrix")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bind a PULL and a PUSH socket; prints `LISTENING <pull addr>,<push addr>` when ready.
    Serve {
        #[arg(long, default_value = "127.0.0.1")]
        listen: IpAddr,
    },
    /// Send messages to a `serve` process and report the rate (and round trips in echo mode).
    Ping {
        /// `<pull addr>,<push addr>` as `serve` printed it.
        #[arg(long)]
        peer: String,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Messages unanswered at most (echo mode).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, value_enum, default_value_t = ModeArg::Echo)]
        mode: ModeArg,
        /// Print one JSON line instead of a human summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Echo,
    Stream,
}

impl ModeArg {
    fn byte(self) -> u8 {
        match self {
            ModeArg::Echo => b'E',
            ModeArg::Stream => b'S',
        }
    }

    fn name(self) -> &'static str {
        match self {
            ModeArg::Echo => "echo",
            ModeArg::Stream => "stream",
        }
    }
}

type Res<T> = Result<T, String>;

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Serve { listen } => serve(listen),
        Cmd::Ping {
            peer,
            size,
            count,
            concurrency,
            mode,
            json,
        } => ping(&peer, size, count, concurrency.max(1), mode).map(|r| print_result(&r, json)),
    };
    if let Err(e) = res {
        eprintln!("zmq-baseline: {e}");
        std::process::exit(1);
    }
}

fn zerr(what: &str) -> impl Fn(zmq::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A socket of `kind` with no linger (a killed peer must not keep us waiting) and default
/// high-water marks (1000 messages), as a ZeroMQ user would have them.
fn socket(ctx: &zmq::Context, kind: zmq::SocketType) -> Res<zmq::Socket> {
    let s = ctx.socket(kind).map_err(zerr("cannot create a socket"))?;
    s.set_linger(0).map_err(zerr("ZMQ_LINGER"))?;
    Ok(s)
}

fn bound_endpoint(s: &zmq::Socket, ip: IpAddr) -> Res<String> {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let ep = format!("tcp://{host}:*");
    s.bind(&ep)
        .map_err(|e| format!("cannot bind {ep}: {e} (pick another --listen address)"))?;
    let got = s
        .get_last_endpoint()
        .map_err(zerr("ZMQ_LAST_ENDPOINT"))?
        .map_err(|_| "ZMQ_LAST_ENDPOINT is not UTF-8".to_string())?;
    Ok(got.trim_start_matches("tcp://").to_string())
}

fn serve(listen: IpAddr) -> Res<()> {
    let ctx = zmq::Context::new();
    let pull = socket(&ctx, zmq::PULL)?;
    let push = socket(&ctx, zmq::PUSH)?;
    let a = bound_endpoint(&pull, listen)?;
    let b = bound_endpoint(&push, listen)?;
    let mut out = io::stdout().lock();
    writeln!(out, "LISTENING {a},{b}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    let mut msg = zmq::Message::new();
    loop {
        // Anything but a hello between runs is a leftover of a client that died: dropped.
        pull.recv(&mut msg, 0).map_err(zerr("receive"))?;
        let Some((mode, count)) = parse_hello(&msg) else {
            continue;
        };
        push.send(READY, 0).map_err(zerr("send"))?;
        for _ in 0..count {
            pull.recv(&mut msg, 0).map_err(zerr("receive"))?;
            if msg.len() > MAX_MSG {
                return Err(format!(
                    "a {} byte message arrived, limit {MAX_MSG}",
                    msg.len()
                ));
            }
            if mode == ModeArg::Echo {
                // Sending the zmq::Message itself hands its buffer back without a copy.
                let m = std::mem::replace(&mut msg, zmq::Message::new());
                push.send(m, 0).map_err(zerr("send"))?;
            }
        }
        if mode == ModeArg::Stream {
            push.send(STREAM_DONE, 0).map_err(zerr("send"))?;
        }
    }
}

fn hello(mode: ModeArg, count: u64) -> Vec<u8> {
    let mut h = HELLO.to_vec();
    h.push(mode.byte());
    h.extend_from_slice(&count.to_le_bytes());
    h
}

fn parse_hello(m: &[u8]) -> Option<(ModeArg, u64)> {
    if m.len() != 13 || &m[..4] != HELLO {
        return None;
    }
    let mode = match m[4] {
        b'E' => ModeArg::Echo,
        b'S' => ModeArg::Stream,
        _ => return None,
    };
    Some((mode, u64::from_le_bytes(m[5..].try_into().ok()?)))
}

fn ping(peer: &str, size: usize, count: u64, window: usize, mode: ModeArg) -> Res<RunResult> {
    let (to, from) = peer.split_once(',').ok_or_else(|| {
        format!(
            "--peer {peer}: expected `<pull addr>,<push addr>` as `zmq-baseline serve` printed it"
        )
    })?;
    if size > MAX_MSG {
        return Err(format!("--size {size} is above the limit {MAX_MSG}"));
    }
    let ctx = zmq::Context::new();
    let push = socket(&ctx, zmq::PUSH)?;
    let pull = socket(&ctx, zmq::PULL)?;
    push.connect(&format!("tcp://{to}"))
        .map_err(|e| format!("cannot connect to {to}: {e}"))?;
    pull.connect(&format!("tcp://{from}"))
        .map_err(|e| format!("cannot connect to {from}: {e}"))?;
    push.send(hello(mode, count), 0).map_err(zerr("send"))?;
    let mut reply = zmq::Message::new();
    pull.recv(&mut reply, 0).map_err(zerr("receive"))?;
    if &reply[..] != READY {
        return Err("the server did not answer the hello (is it a zmq-baseline serve?)".into());
    }

    let payload = vec![0xA5u8; size];
    let cpu0 = self_cpu_seconds();
    let start = Instant::now();
    let mut lat = Vec::new();
    match mode {
        ModeArg::Stream => {
            for _ in 0..count {
                push.send(&payload[..], 0).map_err(zerr("send"))?;
            }
            pull.recv(&mut reply, 0).map_err(zerr("receive"))?;
            if &reply[..] != STREAM_DONE {
                return Err("unexpected answer at the end of the stream".into());
            }
        }
        ModeArg::Echo => {
            lat.reserve(count as usize);
            let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
            let mut sent = 0;
            while (lat.len() as u64) < count {
                while sent < count && in_flight.len() < window {
                    in_flight.push_back(Instant::now());
                    push.send(&payload[..], 0).map_err(zerr("send"))?;
                    sent += 1;
                }
                // Wait for one echo, then take every other one already here before refilling
                // the window, so the refill goes to libzmq's I/O thread as one batch.
                let mut flags = 0;
                loop {
                    match pull.recv(&mut reply, flags) {
                        Ok(()) => {}
                        Err(zmq::Error::EAGAIN) => break,
                        Err(e) => return Err(format!("receive: {e}")),
                    }
                    if reply.len() != size {
                        return Err("echo has a different length than the message".into());
                    }
                    let t0 = in_flight
                        .pop_front()
                        .ok_or("echo arrived for a message never sent")?;
                    lat.push(t0.elapsed());
                    flags = zmq::DONTWAIT;
                }
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = self_cpu_seconds() - cpu0;
    lat.sort_unstable();
    Ok(RunResult {
        transport: "zmq".into(),
        mode: mode.name().into(),
        size: size as u64,
        count,
        concurrency: if mode == ModeArg::Echo {
            window as u64
        } else {
            1
        },
        connections: 1,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        msgs_per_s: count as f64 / wall,
        gbytes_per_s: (count as f64 * size as f64) / wall / 1e9,
        cpu_s_client: cpu,
        wall_s: wall,
    })
}

fn print_result(r: &RunResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("serialisable"));
        return;
    }
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "zmq push/pull {} size={} count={} in-flight={}: p50 {} us, p99 {} us, {:.0} msg/s, \
         {:.3} GB/s, client cpu {:.2} s, wall {:.2} s",
        r.mode,
        r.size,
        r.count,
        r.concurrency,
        us(r.p50_us),
        us(r.p99_us),
        r.msgs_per_s,
        r.gbytes_per_s,
        r.cpu_s_client,
        r.wall_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_other_messages_are_not_hellos() {
        assert_eq!(
            parse_hello(&hello(ModeArg::Stream, 77)),
            Some((ModeArg::Stream, 77))
        );
        assert_eq!(
            parse_hello(&hello(ModeArg::Echo, 1)),
            Some((ModeArg::Echo, 1))
        );
        let mut h = hello(ModeArg::Echo, 1);
        h[4] = b'?';
        assert_eq!(parse_hello(&h), None);
        assert_eq!(parse_hello(&[0xA5; 13]), None);
        assert_eq!(parse_hello(&[0xA5; 64]), None);
    }
}
