//! tcp-baseline: the raw-TCP floor the bench matrix compares msgr's TCP transport with.
//!
//!     tcp-baseline serve [--listen 127.0.0.1:0]
//!     tcp-baseline ping --peer ADDR --size BYTES --count N [--concurrency C]
//!                       [--connections K] [--mode echo|stream] [--json]
//!
//! `serve` prints `LISTENING <addr>` once it accepts connections, then serves each one on its
//! own thread until killed (reads and writes buffered, echoes flushed as soon as no more input
//! is waiting). `ping` splits `count` messages over `connections` connections:
//! in echo mode each keeps up to `concurrency` messages in flight (1 = plain ping-pong on one
//! thread) and measures every round trip; in stream mode it sends everything and waits for
//! the server's final byte, writing through a `BufWriter` (many small frames per system
//! call, as a raw sender would). With `--json` it prints one line with the fields of
//! `msgrd ping --json`.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use msgr_benches::proto::{self, Hello, Mode};
use msgr_benches::report::{percentile, self_cpu_seconds, RunResult};

/// Client read buffer: many small echoes per read system call when pipelined.
const IO_BUF: usize = 256 << 10;

#[derive(Parser)]
#[command(about = "Raw blocking-socket TCP baseline for the msgr bench matrix")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Accept connections and echo / drain them; prints `LISTENING <addr>` when ready.
    Serve {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Send messages to a `serve` process and report latency and throughput.
    Ping {
        #[arg(long)]
        peer: SocketAddr,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Messages in flight per connection (echo mode).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = ModeArg::Echo)]
        mode: ModeArg,
        /// Print one JSON line instead of a human summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Echo,
    Stream,
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Serve { listen } => serve(listen),
        Cmd::Ping {
            peer,
            size,
            count,
            concurrency,
            connections,
            mode,
            json,
        } => {
            let mode = match mode {
                ModeArg::Echo => Mode::Echo,
                ModeArg::Stream => Mode::Stream,
            };
            ping(peer, size, count, concurrency, connections, mode).map(|r| print_result(&r, json))
        }
    };
    if let Err(e) = res {
        eprintln!("tcp-baseline: {e}");
        std::process::exit(1);
    }
}

fn serve(listen: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {listen}: {e} (pick another --listen address)"),
        )
    })?;
    let mut out = io::stdout().lock();
    writeln!(out, "LISTENING {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    for conn in listener.incoming() {
        let s = conn?;
        s.set_nodelay(true)?;
        thread::spawn(move || {
            if let Err(e) = proto::serve_conn(&s, &s) {
                eprintln!(
                    "tcp-baseline serve: connection from {:?}: {e}",
                    s.peer_addr()
                );
            }
        });
    }
    Ok(())
}

fn ping(
    peer: SocketAddr,
    size: usize,
    count: u64,
    concurrency: usize,
    connections: usize,
    mode: Mode,
) -> io::Result<RunResult> {
    if size > proto::MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--size {size} is above the limit {}", proto::MAX_FRAME),
        ));
    }
    let connections = connections.max(1);
    let concurrency = concurrency.max(1);
    let cpu0 = self_cpu_seconds();
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            // Spread the count evenly; the first `count % connections` get one more.
            let n = count / connections as u64 + u64::from((i as u64) < count % connections as u64);
            thread::spawn(move || run_conn(peer, mode, size, n, concurrency))
        })
        .collect();
    // Streams record no round trips: no room for them either (a calibrated 64 B stream
    // carries tens of millions of messages).
    let rtts = if mode == Mode::Echo {
        count as usize
    } else {
        0
    };
    let mut lat = Vec::with_capacity(rtts);
    for w in workers {
        lat.extend(w.join().expect("connection thread panicked")?);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = self_cpu_seconds() - cpu0;
    lat.sort_unstable();
    Ok(RunResult {
        transport: "tcp-baseline".into(),
        mode: mode.name().into(),
        size: size as u64,
        count,
        concurrency: concurrency as u64,
        connections: connections as u64,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        msgs_per_s: count as f64 / wall,
        gbytes_per_s: (count as f64 * size as f64) / wall / 1e9,
        cpu_s_client: cpu,
        wall_s: wall,
    })
}

/// One connection's share of the run; returns its round-trip times (empty in stream mode).
fn run_conn(
    peer: SocketAddr,
    mode: Mode,
    size: usize,
    count: u64,
    window: usize,
) -> io::Result<Vec<Duration>> {
    let mut s = TcpStream::connect(peer)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {peer}: {e}")))?;
    s.set_nodelay(true)?;
    s.write_all(&Hello { mode, count }.encode())?;
    let frame = proto::frame(size, 0xA5);
    match mode {
        Mode::Stream => {
            // Buffered, as any competent raw sender would write small frames: one `write`
            // system call per IO_BUF bytes, not one per message (a large frame goes straight
            // through, uncopied).
            let mut w = BufWriter::with_capacity(IO_BUF, &s);
            for _ in 0..count {
                w.write_all(&frame)?;
            }
            w.flush()?;
            drop(w);
            let mut done = [0u8; 1];
            s.read_exact(&mut done)?;
            if done[0] != proto::STREAM_DONE {
                return Err(bad_reply("unexpected stream acknowledgement"));
            }
            Ok(Vec::new())
        }
        Mode::Echo if window == 1 => {
            let mut lat = Vec::with_capacity(count as usize);
            let mut buf = Vec::with_capacity(frame.len());
            let mut rd = BufReader::with_capacity(IO_BUF, &s);
            for _ in 0..count {
                let t0 = Instant::now();
                (&s).write_all(&frame)?;
                expect_echo(&mut rd, &mut buf, frame.len())?;
                lat.push(t0.elapsed());
            }
            Ok(lat)
        }
        Mode::Echo => pipelined(s, frame, count, window),
    }
}

/// Echo with up to `window` messages in flight: this thread writes, a second one reads the
/// echoes. Each send first queues its start time in a channel of capacity `window`; the reader
/// takes one out per echo, so a full channel is exactly "window messages unanswered".
/// Messages that fit the window together are written with one system call.
fn pipelined(
    mut s: TcpStream,
    frame: Vec<u8>,
    count: u64,
    window: usize,
) -> io::Result<Vec<Duration>> {
    let (tx, rx) = sync_channel::<Instant>(window);
    let mut rs = BufReader::with_capacity(IO_BUF, s.try_clone()?);
    let flen = frame.len();
    let reader = thread::spawn(move || -> io::Result<Vec<Duration>> {
        let mut lat = Vec::with_capacity(count as usize);
        let mut buf = Vec::with_capacity(flen);
        for _ in 0..count {
            expect_echo(&mut rs, &mut buf, flen)?;
            let t0 = rx
                .recv()
                .map_err(|_| bad_reply("echo arrived for a message never sent"))?;
            lat.push(t0.elapsed());
        }
        Ok(lat)
    });
    // Whatever the window allows right now goes out in one write (small frames only: a big one
    // is written as it is rather than copied).
    let mut batch = Vec::with_capacity(IO_BUF.max(frame.len()));
    let mut sent = 0;
    while sent < count {
        if tx.send(Instant::now()).is_err() {
            break; // the reader failed; its error is reported below
        }
        sent += 1;
        let out: &[u8] = if frame.len() >= IO_BUF {
            &frame
        } else {
            batch.clear();
            batch.extend_from_slice(&frame);
            while sent < count && batch.len() + frame.len() <= IO_BUF {
                match tx.try_send(Instant::now()) {
                    Ok(()) => {
                        batch.extend_from_slice(&frame);
                        sent += 1;
                    }
                    Err(_) => break, // window full (or reader gone: seen on the next send)
                }
            }
            &batch
        };
        if let Err(e) = s.write_all(out) {
            let _ = s.shutdown(std::net::Shutdown::Both);
            let _ = reader.join();
            return Err(e);
        }
    }
    drop(tx);
    reader.join().expect("reader thread panicked")
}

fn expect_echo(s: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    if !proto::read_frame(s, buf)? {
        return Err(bad_reply("server closed the connection"));
    }
    if buf.len() != len {
        return Err(bad_reply("echo has a different length than the message"));
    }
    Ok(())
}

fn bad_reply(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn print_result(r: &RunResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("serialisable"));
        return;
    }
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "{} {} size={} count={} concurrency={} connections={}: p50 {} us, p99 {} us, \
         {:.0} msg/s, {:.3} GB/s, client cpu {:.2} s, wall {:.2} s",
        r.transport,
        r.mode,
        r.size,
        r.count,
        r.concurrency,
        r.connections,
        us(r.p50_us),
        us(r.p99_us),
        r.msgs_per_s,
        r.gbytes_per_s,
        r.cpu_s_client,
        r.wall_s
    );
}
