//! An echo server and its client in one process, over TCP on 127.0.0.1, written with
//! msgr-tokio: the server answers each message on the connection it came on; the client
//! awaits its handshake, sends, reads the echoes as a stream, then times sequential round
//! trips.
//!
//!     cargo run -p msgr-tokio --example async_echo [--release]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use msgr_core::api::Messenger;
use msgr_core::{EntityName, EntityType, Message, Policy};
use msgr_node::{Node, NodeConfig};
use msgr_tcp::{TcpOptions, TcpTransport};
use msgr_tokio::{AsyncMessenger, Event, Incoming, Options, Received};

const ROUND_TRIPS: u32 = 1000;

/// A node on a free port of 127.0.0.1, started by the adapter; `policy` for its peers of
/// `peer_type` (as Ceph pairs them: a lossless client, a server that never redials).
fn start(
    name: EntityName,
    peer_type: EntityType,
    policy: Policy,
) -> Result<(AsyncMessenger, Incoming), Box<dyn std::error::Error>> {
    let cfg = NodeConfig::new(name, SocketAddr::from(([127, 0, 0, 1], 0)));
    let node = Node::new(cfg, vec![TcpTransport::new(TcpOptions::default())]);
    node.set_policy(peer_type, policy);
    Ok(AsyncMessenger::start(node, Options::default())?)
}

/// The next message, printing the other events.
async fn next_message(who: &str, incoming: &mut Incoming) -> Option<Received> {
    loop {
        match incoming.recv().await? {
            Event::Message(m) => return Some(m),
            Event::Connected(c) => println!("{who}: connected to {}", c.peer_addr()),
            Event::Accepted(c) => println!("{who}: accepted {}", c.peer_addr()),
            Event::Reset { undelivered, .. } => {
                println!("{who}: session reset, {} unacknowledged", undelivered.len())
            }
            Event::Fault { error, .. } => println!("{who}: link fault: {error}"),
            other => println!("{who}: {other:?}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let osd = EntityName::new(EntityType::OSD, 0);
    let (server, mut server_in) = start(osd, EntityType::CLIENT, Policy::stateful_server())?;
    let me = EntityName::new(EntityType::CLIENT, 1);
    let (client, mut client_in) = start(me, EntityType::OSD, Policy::lossless_client())?;
    println!("server: listening on {}", server.my_addr());

    let echo = tokio::spawn(async move {
        let mut answered = 0u64;
        while let Some(m) = next_message("server", &mut server_in).await {
            let conn = m.connection().clone();
            let msg = m.into_message(); // throttle budget back; the payload is kept
            let reply = Message::new(msg.msg_type, msg.front).with_tid(msg.tid);
            if conn.send(reply).await.is_err() {
                break;
            }
            answered += 1;
        }
        answered
    });

    let conn = client.connect(EntityType::OSD, &server.my_addr())?;
    tokio::time::timeout(Duration::from_secs(10), conn.connected()).await??;
    println!(
        "client: handshake done over {}",
        conn.inner().transport().unwrap_or("?")
    );
    for tid in 0..5 {
        conn.send(Message::new(1, format!("hello #{tid}")).with_tid(tid))
            .await?;
    }
    for _ in 0..5 {
        let m = next_message("client", &mut client_in)
            .await
            .ok_or("client stream ended")?;
        let text = String::from_utf8_lossy(&m.message().front).into_owned();
        println!("client: echo tid {} {text:?}", m.message().tid);
    }

    let t0 = Instant::now();
    for tid in 0..ROUND_TRIPS {
        conn.send(Message::new(2, vec![0u8; 64]).with_tid(tid.into()))
            .await?;
        let m = next_message("client", &mut client_in)
            .await
            .ok_or("client stream ended")?;
        assert_eq!(m.message().tid, u64::from(tid), "echoes come back in order");
    }
    let per = t0.elapsed() / ROUND_TRIPS;
    println!("client: {ROUND_TRIPS} sequential round trips of 64 B, {per:?} each");

    client.shutdown().await;
    server.shutdown().await;
    let answered = echo.await?;
    println!("server: answered {answered} messages; both shut down");
    Ok(())
}
