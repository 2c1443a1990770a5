//! Ping a Ceph monitor over msgr1 with the sans-IO session on a blocking socket: handshake as a
//! client, then KEEPALIVE2 round trips. Shows the whole driving contract in a few lines.
//!
//! ```text
//! cargo run -p msgr-core --example mon_ping -- 127.0.0.1:16789 [count]
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use msgr_core::policy::Policy;
use msgr_core::session::{Session, SessionConfig, SessionEvent};
use msgr_core::wire::features::feature_names;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(mon) = args.next().and_then(|a| a.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: mon_ping MONITOR_IP:PORT [count]   (the monitor's msgr1 address)");
        std::process::exit(2);
    };
    let count: u32 = args.next().and_then(|c| c.parse().ok()).unwrap_or(3);
    if let Err(e) = run(mon, count) {
        eprintln!("mon_ping: {e}");
        std::process::exit(1);
    }
}

fn run(mon: SocketAddr, count: u32) -> Result<(), String> {
    let now = Instant::now();
    let cfg = SessionConfig::new(
        EntityName::new(EntityType::CLIENT, -1),
        EntityAddr::blank().with_nonce(std::process::id()),
    );
    // Monitors announce nonce 0.
    let peer = EntityAddr::new(mon, 0);
    let mut s = Session::connect(
        Arc::new(cfg),
        peer,
        EntityType::MON,
        Policy::lossy_client(),
        now,
    );
    let mut sock = TcpStream::connect_timeout(&mon, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {mon}: {e} (is the monitor running?)"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    // Small frames (keepalives) must not wait for Nagle.
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    s.link_up(now);

    let mut inbox = BytesMut::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut pings_left = count;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // Drain: bytes out, events, timers.
        let mut out = Vec::new();
        while s.poll_transmit(&mut out) > 0 {}
        for chunk in out {
            sock.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
        }
        let mut had_events = false;
        while let Some(ev) = s.poll_event() {
            had_events = true;
            match ev {
                SessionEvent::Connected { features, .. } => {
                    println!(
                        "connected to {peer}; features {}",
                        feature_names(features).join(",")
                    );
                    s.send_keepalive(Instant::now());
                }
                SessionEvent::LearnedAddr(a) => println!("the monitor sees us as {a}"),
                SessionEvent::KeepaliveAck { stamp, rtt } => {
                    println!("keepalive ack, stamp {stamp:?}, rtt {rtt:?}");
                    pings_left = pings_left.saturating_sub(1);
                    if pings_left == 0 {
                        s.close();
                    } else {
                        s.send_keepalive(Instant::now());
                    }
                }
                SessionEvent::Reset { error, .. } => {
                    println!("session ended: {error}");
                    return Ok(());
                }
                SessionEvent::CloseLink => return Ok(()),
                other => println!("{other:?}"),
            }
        }
        if had_events {
            // Events may have queued bytes (a keepalive): write them before blocking on a read.
            continue;
        }
        if s.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            s.handle_timeout(Instant::now());
        }
        match sock.read(&mut buf) {
            Ok(0) => return Err("the monitor closed the connection".into()),
            Ok(n) => {
                inbox.extend_from_slice(&buf[..n]);
                s.handle_input(&mut inbox, Instant::now())
                    .map_err(|e| e.to_string())?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Err("no answer from the monitor within 10 s".into())
}
