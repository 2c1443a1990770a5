//! The async adapter over the `mem` transport (peers that appear later, no sockets) and TCP on
//! 127.0.0.1 (end-to-end back-pressure through the kernel's buffers).

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{poll, FutureExt, StreamExt};

use msgr_core::api::{Messenger, MessengerError};
use msgr_core::{EntityAddr, EntityName, EntityType, Message};
use msgr_mem::{MemNetwork, MemTransport};
use msgr_node::{Node, NodeConfig};
use msgr_tcp::{TcpOptions, TcpTransport};
use msgr_tokio::{AsyncMessenger, Event, Incoming, Options, Received};

/// Generous: only reached when something is broken (then the test fails saying what).
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

fn mem_addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 6800))
}

/// Node `i`'s entity address on the mem network (fixed nonce: known before it starts).
fn entity(i: u8) -> EntityAddr {
    EntityAddr::new(mem_addr(i), i.into())
}

fn config(i: u8, bind: SocketAddr) -> NodeConfig {
    let mut cfg = NodeConfig::new(EntityName::new(EntityType::OSD, i.into()), bind);
    cfg.nonce = Some(i.into());
    cfg.reconnect_initial = Duration::from_millis(10);
    cfg.reconnect_max = Duration::from_millis(50);
    cfg
}

fn mem_node(
    net: &Arc<MemNetwork>,
    i: u8,
    send_queue_bytes: u64,
    opts: Options,
) -> (AsyncMessenger, Incoming) {
    let mut cfg = config(i, mem_addr(i));
    cfg.send_queue_bytes = send_queue_bytes;
    let node = Node::new(cfg, vec![MemTransport::new(net.clone())]);
    AsyncMessenger::start(node, opts).expect("start a mem node")
}

fn msg(tid: u64, len: usize) -> Message {
    Message::new(1, vec![tid as u8; len]).with_tid(tid)
}

/// The next message on `incoming`, skipping connects, accepts and faults.
async fn next_message(incoming: &mut Incoming) -> Received {
    loop {
        match within("next message", incoming.next()).await {
            Some(Event::Message(m)) => return m,
            Some(Event::Reset { .. }) => panic!("unexpected reset"),
            Some(_) => {}
            None => panic!("stream ended"),
        }
    }
}

/// Messages ready on `incoming` now, without waiting (other events are skipped).
fn ready_messages(incoming: &mut Incoming) -> usize {
    let mut n = 0;
    while let Some(Some(ev)) = incoming.next().now_or_never() {
        n += matches!(ev, Event::Message(_)) as usize;
    }
    n
}

#[tokio::test]
async fn send_waits_for_queue_room_and_completes_when_the_peer_appears() {
    let net = MemNetwork::new();
    let (a, _a_in) = mem_node(&net, 1, 1000, Options::default());
    // Node 2 does not exist yet: the lossless session queues and keeps redialing.
    let conn = a.connect(EntityType::OSD, &entity(2)).unwrap();
    conn.send(msg(0, 1000))
        .await
        .expect("an empty queue takes any message");
    assert!(matches!(
        conn.try_send(msg(9, 10)),
        Err(MessengerError::QueueFull { .. })
    ));
    // Each waits in a task of its own, so only its own wake-up resumes it.
    let second = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(msg(1, 10)).await }
    });
    let connected = tokio::spawn({
        let conn = conn.clone();
        async move { conn.connected().await }
    });
    // Redials fail meanwhile; neither wait ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the queue is full");
    assert!(!connected.is_finished(), "no peer yet");

    let (b, mut b_in) = mem_node(&net, 2, 1 << 20, Options::default());
    within("send once the peer drained the queue", second)
        .await
        .unwrap()
        .expect("queued once written");
    within("handshake", connected)
        .await
        .unwrap()
        .expect("connected");
    assert!(conn.is_connected());
    for tid in 0..2 {
        let m = next_message(&mut b_in).await;
        assert_eq!(m.message().tid, tid, "in order");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn closed_connection_fails_waiting_and_later_sends() {
    let net = MemNetwork::new();
    let (a, mut a_in) = mem_node(&net, 1, 1000, Options::default());
    let conn = a.connect(EntityType::OSD, &entity(2)).unwrap();
    conn.send(msg(0, 1000)).await.unwrap();
    let timeout = Duration::from_millis(50);
    match conn.send_timeout(msg(1, 10), timeout).await {
        Err(MessengerError::SendTimeout(d)) => assert_eq!(d, timeout),
        other => panic!("expected SendTimeout, got {other:?}"),
    }
    let mut waiting = pin!(conn.send(msg(2, 10)));
    let mut connected = pin!(conn.connected());
    assert!(poll!(waiting.as_mut()).is_pending());
    assert!(poll!(connected.as_mut()).is_pending());

    conn.mark_down();
    let closed =
        |r: Result<(), MessengerError>| matches!(r, Err(MessengerError::ConnectionClosed { .. }));
    assert!(closed(within("waiting send", waiting).await));
    assert!(closed(within("connected", connected).await));
    assert!(closed(conn.send(msg(3, 10)).await));
    loop {
        match within("reset event", a_in.next())
            .await
            .expect("stream open")
        {
            Event::Reset {
                conn: c,
                undelivered,
            } => {
                assert_eq!(c.peer_addr(), entity(2));
                let tids: Vec<u64> = undelivered.iter().map(|m| m.tid).collect();
                assert_eq!(tids, [0], "the queued message comes back");
                break;
            }
            Event::Fault { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    a.shutdown().await;
    assert!(within("end of stream", a_in.next()).await.is_none());
}

#[tokio::test]
async fn stream_holds_throttle_budget_until_items_are_dropped() {
    let net = MemNetwork::new();
    let (a, _a_in) = mem_node(&net, 1, 1 << 20, Options::default());
    let (b, mut b_in) = mem_node(&net, 2, 1 << 20, Options::default().max_held_messages(4));
    let conn = a.connect(EntityType::OSD, &b.my_addr()).unwrap();
    for tid in 0..10 {
        conn.send(msg(tid, 100)).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(next_message(&mut b_in).await);
    }
    // The fifth message finds the throttle spent: b stops dispatching (and reading).
    within("throttle wait", async {
        while b.node().counters().connections.throttle_waits == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(ready_messages(&mut b_in), 0, "held back while 4 are held");

    let mut first = held.remove(0);
    first.release();
    first.release(); // idempotent
    let fifth = next_message(&mut b_in).await;
    assert_eq!(fifth.message().tid, 4);
    held.push(fifth);
    drop(first);
    assert_eq!(
        ready_messages(&mut b_in),
        0,
        "one released, one more admitted"
    );

    drop(held);
    let mut tids = Vec::new();
    for _ in 5..10 {
        tids.push(next_message(&mut b_in).await.into_message().tid);
    }
    assert_eq!(tids, [5, 6, 7, 8, 9]);
    a.shutdown().await;
    b.shutdown().await;
}

fn tcp_node(i: u8, send_queue_bytes: u64, opts: Options) -> (AsyncMessenger, Incoming) {
    let mut cfg = config(i, SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.send_queue_bytes = send_queue_bytes;
    // Small socket buffers, so that a few messages fill them.
    let tcp = TcpOptions {
        send_buffer: Some(64 << 10),
        recv_buffer: Some(64 << 10),
        ..TcpOptions::default()
    };
    AsyncMessenger::start(Node::new(cfg, vec![TcpTransport::new(tcp)]), opts)
        .expect("start a TCP node")
}

#[tokio::test]
async fn tcp_slow_consumer_stops_the_sender_until_it_lets_go() {
    const LEN: usize = 64 << 10;
    const COUNT: u64 = 64;
    let (a, _a_in) = tcp_node(1, LEN as u64, Options::default());
    let (b, mut b_in) = tcp_node(2, LEN as u64, Options::default().max_held_messages(1));
    let conn = a.connect(EntityType::OSD, &b.my_addr()).unwrap();
    within("handshake", conn.connected()).await.unwrap();

    let sent = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn({
        let (conn, sent) = (conn.clone(), sent.clone());
        async move {
            for tid in 0..COUNT {
                conn.send(msg(tid, LEN)).await?;
                sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, MessengerError>(())
        }
    });
    let first = next_message(&mut b_in).await;
    assert_eq!(first.message().tid, 0);
    // b holds its one message: it reads no more, the kernel's buffers fill, a's queue fills
    // and its sends wait. 4 MiB cannot fit in 64 KiB buffers, however long this takes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(
        stalled_at < COUNT as usize,
        "all {COUNT} sends completed while b held a message"
    );
    assert!(!sender.is_finished());

    drop(first);
    for tid in 1..COUNT {
        let m = next_message(&mut b_in).await;
        assert_eq!((m.message().tid, m.message().payload_len()), (tid, LEN));
    }
    within("sender", sender)
        .await
        .unwrap()
        .expect("every send queued");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_started_node_is_refused_with_a_reason() {
    let net = MemNetwork::new();
    let node = Node::new(config(7, mem_addr(7)), vec![MemTransport::new(net.clone())]);
    let mut own = msgr_core::Policy::stateful_server();
    own.throttle_messages = Some(7);
    node.set_policy(EntityType::CLIENT, own);
    let (m, _incoming) = AsyncMessenger::start(node.clone(), Options::default()).unwrap();
    match AsyncMessenger::start(node, Options::default()) {
        Err(MessengerError::Transport(why)) => assert!(why.contains("started already"), "{why}"),
        other => panic!("expected an error, got {other:?}"),
    }
    // Unthrottled policies got the adapter's bound; set ones are kept.
    assert_eq!(
        m.node().policy(EntityType::MON).throttle_messages,
        Some(1024)
    );
    m.shutdown().await;
}

#[tokio::test]
async fn a_link_fault_is_an_event_and_the_lossless_session_carries_on() {
    let net = MemNetwork::new();
    let (a, mut a_in) = mem_node(&net, 11, 1 << 20, Options::default());
    let (b, mut b_in) = mem_node(&net, 12, 1 << 20, Options::default());
    let conn = a.connect(EntityType::OSD, &b.my_addr()).unwrap();
    within("handshake", conn.connected()).await.unwrap();
    conn.send(msg(0, 10)).await.unwrap();
    assert_eq!(next_message(&mut b_in).await.message().tid, 0);

    assert!(a.node().inject_failure(&b.my_addr()), "a link to break");
    // The side that notices first reports the fault; when b redials before a's worker sees
    // the broken link, a's session simply moves to the new link (no fault on a's side).
    let fault = within("fault event", async {
        loop {
            let ev = tokio::select! {
                ev = a_in.next() => ev,
                ev = b_in.next() => ev,
            };
            match ev.expect("streams open") {
                Event::Fault { conn: c, .. } => return c.peer_addr(),
                Event::Connected(_) | Event::Accepted(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(
        fault == b.my_addr() || fault.nonce == a.my_addr().nonce,
        "{fault:?}"
    );
    conn.send(msg(1, 10)).await.unwrap();
    within("reconnect", conn.connected()).await.unwrap();
    assert_eq!(
        next_message(&mut b_in).await.message().tid,
        1,
        "nothing lost"
    );
    a.shutdown().await;
    b.shutdown().await;
}
