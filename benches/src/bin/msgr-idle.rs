//! msgr-idle: opens many msgr1 sessions to a server and holds them idle, so the bench can read
//! what the server's memory costs per connection.
//!
//!     msgr-idle --peer IP:PORT/NONCE --connections N [--hold-ms MS] [--peer-type osd] [--json]
//!
//! Each connection is a blocking std socket driven by `msgr_core::session::Session` (the same
//! sans-IO code the transports use) as a lossy client `client.<i>`, until the handshake is done.
//! Then nothing more is sent or read: every session stays open and idle for `--hold-ms`, after
//! which the process exits (closing them all). The bench reads the server's peak RSS (VmHWM)
//! before and after. Connections are opened one after the other, so the server sees a plain
//! stream of accepts, not a burst (what is measured is memory, not accept speed).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use msgr_core::policy::Policy;
use msgr_core::session::{Session, SessionConfig, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use serde::Serialize;

/// How long one handshake may take before the run is declared failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Hold many idle msgr1 sessions open against a server (memory bench)")]
struct Cli {
    /// The server's address as `msgrd serve` prints it: IP:PORT/NONCE.
    #[arg(long)]
    peer: String,
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// How long to hold the sessions once all are open.
    #[arg(long, default_value_t = 1000)]
    hold_ms: u64,
    /// The server's entity type (mon, mds, osd, mgr, client).
    #[arg(long, default_value = "osd")]
    peer_type: String,
    /// Print one JSON line instead of a human summary.
    #[arg(long)]
    json: bool,
}

/// What the run did (the bench adds the server's memory to it).
#[derive(Serialize)]
struct IdleResult {
    transport: &'static str,
    mode: &'static str,
    connections: usize,
    /// Seconds to open every session (handshakes done).
    connect_s: f64,
    hold_s: f64,
}

fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(r) if cli.json => println!("{}", serde_json::to_string(&r).expect("serialisable")),
        Ok(r) => println!(
            "held {} idle msgr1 sessions for {:.1} s (opened in {:.2} s)",
            r.connections, r.hold_s, r.connect_s
        ),
        Err(e) => {
            eprintln!("msgr-idle: {e}");
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli) -> Result<IdleResult, String> {
    let peer = parse_peer(&cli.peer)?;
    let peer_type = entity_type(&cli.peer_type)?;
    let t0 = Instant::now();
    let mut held: Vec<(TcpStream, Session)> = Vec::with_capacity(cli.connections);
    for i in 0..cli.connections {
        let conn = open(peer, peer_type, i).map_err(|e| {
            let hint = if e.contains("Too many open files") {
                " (raise the open-file limit: `ulimit -n 4096`)"
            } else {
                ""
            };
            format!("connection {} of {}: {e}{hint}", i + 1, cli.connections)
        })?;
        held.push(conn);
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let hold = Duration::from_millis(cli.hold_ms);
    std::thread::sleep(hold);
    for (s, _) in &held {
        let _ = s.shutdown(Shutdown::Both);
    }
    Ok(IdleResult {
        transport: "tcp",
        mode: "idle",
        connections: held.len(),
        connect_s,
        hold_s: hold.as_secs_f64(),
    })
}

fn parse_peer(s: &str) -> Result<EntityAddr, String> {
    let (sock, nonce) = s
        .split_once('/')
        .ok_or_else(|| format!("--peer {s}: expected IP:PORT/NONCE as `msgrd serve` prints it"))?;
    let sock: SocketAddr = sock
        .parse()
        .map_err(|_| format!("--peer {s}: `{sock}` is not IP:PORT"))?;
    let nonce: u32 = nonce
        .parse()
        .map_err(|_| format!("--peer {s}: the nonce after '/' must be a number"))?;
    Ok(EntityAddr::new(sock, nonce))
}

fn entity_type(s: &str) -> Result<EntityType, String> {
    Ok(match s {
        "mon" => EntityType::MON,
        "mds" => EntityType::MDS,
        "osd" => EntityType::OSD,
        "mgr" => EntityType::MGR,
        "client" => EntityType::CLIENT,
        _ => {
            return Err(format!(
                "--peer-type {s}: expected one of mon, mds, osd, mgr, client"
            ))
        }
    })
}

/// Dials `peer` and runs the msgr1 handshake to the open state.
fn open(peer: EntityAddr, peer_type: EntityType, i: usize) -> Result<(TcpStream, Session), String> {
    let to = peer.addr.ok_or("the peer address has no IP")?;
    let mut s = TcpStream::connect(to).map_err(|e| format!("cannot connect to {to}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let local = s.local_addr().map_err(|e| e.to_string())?;
    let me = EntityName::new(EntityType::CLIENT, i as i64);
    // A distinct nonce per connection: each is its own client instance to the server.
    let cfg = Arc::new(SessionConfig::new(
        me,
        EntityAddr::new(local, 0x4d49_0000 ^ i as u32),
    ));
    let now = Instant::now();
    let mut sess = Session::connect(cfg, peer, peer_type, Policy::lossy_client(), now);
    sess.link_up(now);
    let deadline = now + HANDSHAKE_TIMEOUT;
    let mut inbuf = BytesMut::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        while sess.poll_transmit(&mut out) > 0 {}
        for b in out.drain(..) {
            s.write_all(&b).map_err(|e| format!("write: {e}"))?;
        }
        while let Some(ev) = sess.poll_event() {
            match ev {
                SessionEvent::Connected { .. } => return Ok((s, sess)),
                SessionEvent::Faulted { error, .. } | SessionEvent::Reset { error, .. } => {
                    return Err(format!("handshake failed: {error}"))
                }
                SessionEvent::CloseLink => return Err("the session closed its link".into()),
                _ => {}
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "handshake not done after {HANDSHAKE_TIMEOUT:?} (server stalled?)"
            ));
        }
        s.set_read_timeout(Some(deadline - now))
            .map_err(|e| e.to_string())?;
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection during the handshake".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        inbuf.extend_from_slice(&chunk[..n]);
        sess.handle_input(&mut inbuf, Instant::now())
            .map_err(|e| format!("handshake failed: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_parse_or_say_what_is_wrong() {
        let a = parse_peer("127.0.0.1:6800/42").unwrap();
        assert_eq!(a.nonce, 42);
        assert_eq!(a.addr, Some("127.0.0.1:6800".parse().unwrap()));
        assert!(parse_peer("127.0.0.1:6800")
            .unwrap_err()
            .contains("IP:PORT/NONCE"));
        assert!(parse_peer("x:1/2").unwrap_err().contains("not IP:PORT"));
        assert!(parse_peer("127.0.0.1:1/n").unwrap_err().contains("nonce"));
        assert!(entity_type("rgw").is_err());
        assert_eq!(entity_type("osd").unwrap(), EntityType::OSD);
    }
}
