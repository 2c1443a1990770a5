//! Functional scenarios (Ceph test_msgr.cc: SimpleTest, ConnectionRaceTest, StatefulTest,
//! StatelessTest, ClientStandbyTest, ReconnectTest, MessageTest with large payloads), plus
//! throttle back-pressure, send-queue limits, the accept hook and shutdown reporting.

use msgr::Messenger as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use msgr::{Config, EntityAddr, EntityType, MessengerError, Policy};

use crate::harness::{check_payload, node, numbered, pattern, transport_name, Node};

fn policy(cfg: &mut Config, peer: EntityType, p: Policy) {
    cfg.policies.set(peer, p);
}

/// Server echoes; the client (lossless) talks to it as an OSD.
fn pair(t: &str, server_policy: Policy, client_policy: Policy) -> (Node, Node) {
    let server = node(t, "osd.0", |c| policy(c, EntityType::CLIENT, server_policy)).echo();
    let client = node(t, "client.1", |c| policy(c, EntityType::OSD, client_policy));
    (server, client)
}

/// The client's connection to the server (an OSD).
fn connect(client: &Node, server: &Node) -> msgr::ConnectionRef {
    client
        .msgr
        .connect_to(EntityType::OSD, &server.addr())
        .unwrap()
}

/// Messages with tids `from..to`, sent in order, are all echoed back, in order, intact.
fn exchange(client: &Node, conn: &msgr::ConnectionRef, from: u64, to: u64) {
    let before = client.rec.message_count();
    for tid in from..to {
        let m = numbered(tid, 64 + tid as usize % 300, (tid as usize * 37) % 5000)
            .with_middle(pattern(tid + 1, tid as usize % 13));
        conn.send_message(m).expect("send");
    }
    let want = before + (to - from) as usize;
    client.rec.wait("echoes", |s| s.messages.len() >= want);
    let seen = client.rec.seen.lock();
    let got: Vec<_> = seen.messages[before..].iter().map(|(_, m)| m).collect();
    assert_eq!(got.len(), (to - from) as usize, "no duplicates");
    for (m, tid) in got.iter().zip(from..to) {
        assert_eq!(m.tid, tid, "in order, none lost");
        assert!(check_payload(m), "payload of {tid} intact");
        assert_eq!(m.middle, pattern(tid + 1, tid as usize % 13));
        assert_eq!(m.msg_type, 42);
    }
}

/// SimpleTest: a round trip; counters on both sides agree.
pub fn simple_round_trip(t: &str) {
    let (server, client) = pair(t, Policy::stateful_server(), Policy::lossless_client());
    let conn = connect(&client, &server);
    exchange(&client, &conn, 0, 20);
    client.rec.wait("connect callback", |s| s.connects >= 1);
    server.rec.wait("accept callback", |s| s.accepts >= 1);
    assert!(conn.is_connected());
    assert_eq!(conn.peer_addr(), server.addr());
    assert_eq!(conn.peer_type(), EntityType::OSD);
    let seen = client.rec.seen.lock();
    assert!(seen
        .messages
        .iter()
        .all(|(_, m)| m.src.kind == EntityType::OSD));
    drop(seen);
    let cc = conn.counters();
    assert_eq!((cc.messages_out, cc.messages_in), (20, 20));
    assert!(cc.bytes_out > 0 && cc.bytes_in > 0);
    let sc = server.msgr.counters();
    assert_eq!(sc.connections.messages_in, 20);
    assert_eq!(sc.accepted, 1);
    assert_eq!(client.msgr.counters().connected, 1);
    assert_eq!(sc.protocol_errors, 0);
    // One link, counted under the transport that carried it.
    let want = if t.ends_with("@v2") { "v2" } else { "v1" };
    assert_eq!(conn.protocol().as_str(), want);
    let t = transport_name(t);
    assert_eq!(sc.links_by_transport, vec![(t, 1)]);
    assert_eq!(conn.transport(), Some(t));
}

/// Local delivery: sending to our own address reaches our dispatcher without a socket.
pub fn loopback_delivery(t: &str) {
    let n = node(t, "osd.3", |_| {});
    let conn = n.msgr.connect_to(EntityType::OSD, &n.addr()).unwrap();
    for tid in 0..5 {
        conn.send_message(numbered(tid, 10, 100)).unwrap();
    }
    n.rec.wait("5 local messages", |s| s.messages.len() == 5);
    let msgs = n.rec.take_messages();
    for (i, (from, m)) in msgs.iter().enumerate() {
        assert_eq!(m.tid, i as u64);
        assert_eq!(*from, n.addr());
        assert_eq!(m.src, n.name());
        assert!(check_payload(m));
    }
    let c = n.msgr.counters();
    assert_eq!((c.accepted, c.connected), (0, 0), "no socket involved");
}

/// mark_down on the client: the session is reset, the old handle refuses sends, a new
/// connection works.
pub fn mark_down_and_reconnect(t: &str) {
    let (server, client) = pair(t, Policy::stateful_server(), Policy::lossless_client());
    let conn = connect(&client, &server);
    exchange(&client, &conn, 0, 5);
    client.msgr.mark_down(&server.addr());
    client.rec.wait("reset after mark_down", |s| s.resets >= 1);
    assert!(!conn.is_connected());
    assert!(matches!(
        conn.send_message(numbered(99, 1, 0)),
        Err(MessengerError::ConnectionClosed { .. })
    ));
    let conn2 = connect(&client, &server);
    assert_eq!(conn2.counters().messages_out, 0, "a fresh connection");
    exchange(&client, &conn2, 5, 10);
    // mark_down_all leaves nothing behind, again usable afterwards.
    client.msgr.mark_down_all();
    client.rec.wait("second reset", |s| s.resets >= 2);
    let conn3 = connect(&client, &server);
    exchange(&client, &conn3, 10, 12);
}

/// ConnectionRaceTest: two lossless peers dial each other at once and both send; every message
/// arrives once, in order, and each side ends with one working connection to the other.
pub fn racing_connects(t: &str) {
    for round in 0..3 {
        let a = node(t, "osd.1", |c| {
            policy(c, EntityType::OSD, Policy::lossless_peer())
        });
        let b = node(t, "osd.2", |c| {
            policy(c, EntityType::OSD, Policy::lossless_peer())
        });
        let (aa, ba) = (a.addr(), b.addr());
        let ma = a.msgr.clone();
        let mb = b.msgr.clone();
        let ta = std::thread::spawn(move || {
            let c = ma.connect_to(EntityType::OSD, &ba).unwrap();
            for tid in 0..50 {
                c.send_message(numbered(tid, 32, 64)).unwrap();
            }
        });
        let tb = std::thread::spawn(move || {
            let c = mb.connect_to(EntityType::OSD, &aa).unwrap();
            for tid in 0..50 {
                c.send_message(numbered(tid, 32, 64)).unwrap();
            }
        });
        ta.join().unwrap();
        tb.join().unwrap();
        for (who, n) in [("a", &a), ("b", &b)] {
            n.rec.wait("50 messages from the other side", |s| {
                s.messages.len() >= 50
            });
            let msgs = n.rec.take_messages();
            let tids: Vec<u64> = msgs.iter().map(|(_, m)| m.tid).collect();
            assert_eq!(tids, (0..50).collect::<Vec<_>>(), "round {round}, {who}");
            assert!(msgs.iter().all(|(_, m)| check_payload(m)));
        }
        // Both directions still work on whatever connection won.
        let c = a.msgr.connect_to(EntityType::OSD, &b.addr()).unwrap();
        c.send_message(numbered(1000, 8, 0)).unwrap();
        b.rec.wait("post-race message", |s| {
            s.messages.iter().any(|(_, m)| m.tid == 1000)
        });
    }
}

/// StatefulTest with resetcheck: the server drops its session; the lossless client reconnects,
/// learns the server lost the session (remote reset), and traffic continues.
pub fn stateful_server_resetcheck(t: &str) {
    let (server, client) = pair(t, Policy::stateful_server(), Policy::lossless_client());
    let conn = connect(&client, &server);
    exchange(&client, &conn, 0, 5);
    server.msgr.mark_down(&client.addr());
    server.rec.wait("server reset", |s| s.resets >= 1);
    client
        .rec
        .wait("client told of remote reset", |s| s.remote_resets >= 1);
    // The handle the client holds is still the connection to the server.
    client.rec.wait("reconnected", |_| conn.is_connected());
    exchange(&client, &conn, 5, 10);
    assert!(conn.counters().reconnects >= 1);
}

/// StatefulTest with messages in flight: the server drops the client's session as the first
/// message reaches its dispatcher (it does not echo). On reconnect the server answers
/// RESETSESSION and the client gets every message it had not seen acknowledged back through
/// `ms_handle_remote_reset_undelivered`, in order; the same connection then carries new
/// messages. How many the server acknowledged before its dispatcher ran depends on timing (the
/// session acknowledges what it read, as Ceph's does; under load the ACK may leave first): the
/// test asserts the rule, not a count (it waited for all five and hung when an ACK won).
pub fn remote_reset_reports_undelivered(t: &str) {
    let server = node(t, "osd.0", |c| {
        policy(c, EntityType::CLIENT, Policy::stateful_server())
    });
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = dropped.clone();
    *server.rec.on_message.lock() = Some(Box::new(move |conn, _m| {
        if !d.swap(true, Ordering::SeqCst) {
            conn.mark_down();
        }
    }));
    let client = node(t, "client.1", |c| {
        policy(c, EntityType::OSD, Policy::lossless_client())
    });
    let conn = connect(&client, &server);
    for tid in 0..5 {
        conn.send_message(numbered(tid, 32, 100)).unwrap();
    }
    client.rec.wait("remote reset", |s| s.remote_resets >= 1);
    assert!(dropped.load(Ordering::SeqCst));
    // Numbering restarted on the same connection: new messages get through and come back.
    // (Their echoes also mean the undelivered callback, queued before them, has run.)
    server.rec.echo.store(true, Ordering::Relaxed);
    exchange(&client, &conn, 10, 13);
    let seen = client.rec.seen.lock();
    assert_eq!(seen.remote_resets, 1);
    // What the server acknowledged before it dropped the session was delivered (its
    // dispatcher had message 0 at least, and may have acknowledged more in the same read);
    // the rest comes back, in order, intact: a suffix of 0..5.
    let tids: Vec<u64> = seen
        .remote_reset_undelivered
        .iter()
        .map(|m| m.tid)
        .collect();
    let first = tids.first().copied().unwrap_or(5);
    assert_eq!(tids, (first..5).collect::<Vec<_>>(), "a suffix, in order");
    assert!(seen.remote_reset_undelivered.iter().all(check_payload));
    // Nothing fell between the two: what the server read before its mark-down (acknowledged
    // or not) still reached its dispatcher, in order, as a prefix of 0..5, and every message
    // past that prefix came back. (This is what the old count got wrong: an early ACK covers
    // messages the dispatcher has not seen yet, and they are delivered, not lost.)
    let got: Vec<u64> = server
        .rec
        .seen
        .lock()
        .messages
        .iter()
        .map(|(_, m)| m.tid)
        .filter(|&t| t < 5)
        .collect();
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>(), "a prefix");
    assert!(
        first <= got.len() as u64,
        "messages {}..{first} were neither delivered nor reported undelivered",
        got.len()
    );
}

/// StatelessTest: a lossy client of a stateless server sees a reset when the server drops it,
/// and must connect again.
pub fn stateless_server(t: &str) {
    let (server, client) = pair(t, Policy::stateless_server(), Policy::lossy_client());
    let conn = connect(&client, &server);
    exchange(&client, &conn, 0, 5);
    server.msgr.mark_down(&client.addr());
    client.rec.wait("client reset", |s| s.resets >= 1);
    assert!(!conn.is_connected());
    assert!(conn.send_message(numbered(50, 1, 0)).is_err());
    let conn2 = connect(&client, &server);
    exchange(&client, &conn2, 5, 10);
    assert_eq!(
        conn2.counters().reconnects,
        0,
        "lossy sessions never reconnect"
    );
}

fn idle_client(t: &str, client_policy: Policy, server_policy: Policy) -> (Node, Node) {
    let server = node(t, "osd.0", |c| policy(c, EntityType::CLIENT, server_policy)).echo();
    let client = node(t, "client.1", |c| {
        policy(c, EntityType::OSD, client_policy);
        c.timeouts.idle = Some(std::time::Duration::from_millis(150));
    });
    (server, client)
}

/// ClientStandbyTest: an idle lossless client with standby drops its link and waits; the next
/// message brings the link back and arrives.
pub fn client_standby(t: &str) {
    let (server, client) = idle_client(
        t,
        Policy::lossless_peer_reuse(),
        Policy::lossless_peer_reuse(),
    );
    let conn = connect(&client, &server);
    exchange(&client, &conn, 0, 3);
    client.rec.wait("idle fault", |s| s.faults >= 1);
    client
        .rec
        .wait("link down in standby", |_| !conn.is_connected());
    assert_eq!(
        conn.counters().reconnects,
        0,
        "standby does not redial by itself"
    );
    exchange(&client, &conn, 3, 6);
    assert!(conn.counters().reconnects >= 1);
    assert_eq!(client.rec.seen.lock().resets, 0, "the session survived");
}

/// ReconnectTest: a lossless client whose link keeps failing (idle timeout) reconnects each
/// time; reconnects are counted and nothing is lost or duplicated.
pub fn reconnect_counts(t: &str) {
    let (server, client) = idle_client(t, Policy::lossless_client(), Policy::stateful_server());
    let conn = connect(&client, &server);
    for round in 0..3u64 {
        exchange(&client, &conn, round * 4, round * 4 + 4);
        let want = round + 1;
        client.rec.wait("another idle fault", |s| s.faults >= want);
    }
    client
        .rec
        .wait("reconnected", |_| conn.counters().reconnects >= 3);
    exchange(&client, &conn, 12, 16);
    let c = conn.counters();
    assert!(c.reconnects >= 3 && c.faults >= 3, "{c:?}");
    assert!(client.msgr.counters().connections.reconnects >= 3);
    assert!(server.msgr.counters().accepted >= 4);
}

/// MessageTest: front 1 MiB and data 16 MiB travel intact both ways.
pub fn large_messages(t: &str) {
    let (server, client) = pair(t, Policy::stateful_server(), Policy::lossless_client());
    let conn = connect(&client, &server);
    for tid in 0..2 {
        conn.send_message(numbered(tid, 1 << 20, 16 << 20)).unwrap();
    }
    client.rec.wait("2 large echoes", |s| s.messages.len() == 2);
    for (i, (_, m)) in client.rec.take_messages().iter().enumerate() {
        assert_eq!(m.tid, i as u64);
        assert_eq!((m.front.len(), m.data.len()), (1 << 20, 16 << 20));
        assert!(check_payload(m));
    }
}

/// A stream of large messages, many in flight: the TCP transport reads these in large bursts
/// into receive buffers it reuses once every message sliced from one is dropped. Every echo
/// must come back intact while messages from older buffers are still referenced (the server
/// holds its echoes until acknowledged; the client keeps every 7th message to the end).
pub fn streaming_large_messages(t: &str) {
    let (server, client) = pair(t, Policy::stateful_server(), Policy::lossless_client());
    client.rec.keep.store(false, Ordering::Relaxed);
    let kept = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let bad = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (kept, bad) = (kept.clone(), bad.clone());
        *client.rec.on_message.lock() = Some(Box::new(move |_conn, m| {
            if !check_payload(m) {
                bad.fetch_add(1, Ordering::Relaxed);
            }
            if m.tid % 7 == 0 {
                kept.lock().push(m.clone());
            }
        }));
    }
    let conn = connect(&client, &server);
    let total = 240u64;
    for tid in 0..total {
        // 40 to 140 KiB of data: frames straddle every read burst at different offsets.
        let data = (40 << 10) + (tid as usize * 4099) % (100 << 10);
        conn.send_message(numbered(tid, 100, data)).unwrap();
    }
    client
        .rec
        .wait("every echo", |s| s.messages.len() as u64 == total);
    assert_eq!(bad.load(Ordering::Relaxed), 0, "corrupted echoes");
    let order: Vec<u64> = client
        .rec
        .seen
        .lock()
        .messages
        .iter()
        .map(|(_, m)| m.tid)
        .collect();
    assert_eq!(order, (0..total).collect::<Vec<_>>());
    let kept = kept.lock();
    assert_eq!(kept.len() as u64, total.div_ceil(7));
    assert!(kept.iter().all(check_payload), "a kept message changed");
    assert_eq!(server.msgr.counters().protocol_errors, 0);
}

/// Back-pressure: with throttle_messages = 4 and a dispatcher that keeps its budget, the server
/// stops at 4 messages (reading is paused, counted), and gets the rest, in order, as budget
/// is released.
pub fn throttle_backpressure(t: &str) {
    let mut sp = Policy::stateful_server();
    sp.throttle_messages = Some(4);
    let (server, client) = pair(t, sp, Policy::lossless_client());
    server.rec.echo.store(false, Ordering::Relaxed);
    server.rec.defer.store(true, Ordering::Relaxed);
    let conn = connect(&client, &server);
    for tid in 0..64 {
        conn.send_message(numbered(tid, 100, 0)).unwrap();
    }
    server.rec.wait("4 messages", |s| s.messages.len() >= 4);
    server.rec.wait("reader paused", |_| {
        server.msgr.counters().connections.throttle_waits >= 1
    });
    assert_eq!(
        server.rec.message_count(),
        4,
        "nothing beyond the throttle is dispatched"
    );
    let mut released = 0;
    while released < 64 {
        server
            .rec
            .wait("more after release", |s| s.messages.len() > released);
        let (conn_in, n) = {
            let s = server.rec.seen.lock();
            (s.conns.values().next().cloned().unwrap(), s.messages.len())
        };
        for _ in released..n {
            conn_in.release(100);
        }
        released = n;
    }
    let tids: Vec<u64> = server
        .rec
        .take_messages()
        .iter()
        .map(|(_, m)| m.tid)
        .collect();
    assert_eq!(tids, (0..64).collect::<Vec<_>>());
}

/// A full send queue is refused with QueueFull (the documented behaviour), not dropped.
pub fn send_queue_limit(t: &str) {
    let client = node(t, "client.1", |c| {
        c.limits.send_queue_bytes = 64 << 10;
        policy(c, EntityType::OSD, Policy::lossless_client());
    });
    // Nobody listens there: messages stay queued while the client keeps retrying.
    let nowhere = EntityAddr::new("127.0.0.1:9".parse().unwrap(), 0);
    let conn = client.msgr.connect_to(EntityType::OSD, &nowhere).unwrap();
    conn.send_message(numbered(0, 60 << 10, 0)).unwrap();
    match conn.send_message(numbered(1, 60 << 10, 0)) {
        Err(MessengerError::QueueFull { limit, .. }) => assert_eq!(limit, 64 << 10),
        other => panic!("expected QueueFull, got {other:?}"),
    }
    // Shutdown reports what never left.
    client.msgr.shutdown();
    let s = client.rec.seen.lock();
    let tids: Vec<u64> = s.undelivered.iter().map(|m| m.tid).collect();
    assert_eq!(tids, vec![0]);
}

/// The accept hook refuses a peer type: counted, and the peer's session ends.
pub fn accept_hook_refuses(t: &str) {
    let (server, client) = pair(t, Policy::stateless_server(), Policy::lossy_client());
    server
        .rec
        .refuse_type
        .store(EntityType::CLIENT.0 as u64, Ordering::Relaxed);
    let conn = connect(&client, &server);
    // The refusal may already have closed the connection: then the send says so.
    match conn.send_message(numbered(0, 10, 0)) {
        Ok(()) | Err(MessengerError::ConnectionClosed { .. }) => {}
        Err(e) => panic!("unexpected send error {e}"),
    }
    client
        .rec
        .wait("refused client is reset", |s| s.resets >= 1);
    assert_eq!(server.rec.seen.lock().refused, 1);
    assert!(server.msgr.counters().refused >= 1);
    assert_eq!(server.rec.message_count(), 0);
}

/// Shutdown fails what is queued and reports it to the dispatcher; the messenger then refuses
/// work.
pub fn shutdown_reports_undelivered(t: &str) {
    let client = node(t, "client.1", |c| {
        policy(c, EntityType::OSD, Policy::lossless_client())
    });
    let nowhere = EntityAddr::new("127.0.0.1:9".parse().unwrap(), 0);
    let conn = client.msgr.connect_to(EntityType::OSD, &nowhere).unwrap();
    for tid in 0..3 {
        conn.send_message(numbered(tid, 10, 0)).unwrap();
    }
    client.msgr.shutdown();
    let tids: Vec<u64> = client
        .rec
        .seen
        .lock()
        .undelivered
        .iter()
        .map(|m| m.tid)
        .collect();
    assert_eq!(tids, vec![0, 1, 2]);
    assert!(matches!(
        client.msgr.connect_to(EntityType::OSD, &nowhere),
        Err(MessengerError::ShutDown)
    ));
    let _ = Arc::clone(&client.rec);
}

/// Keepalives flow on an idle link (KEEPALIVE2 out, its ack back) and keep the peer's idle
/// timer from dropping it.
pub fn keepalive_keeps_idle_link(t: &str) {
    let server = node(t, "osd.0", |c| {
        policy(c, EntityType::CLIENT, Policy::stateful_server());
        c.timeouts.idle = Some(std::time::Duration::from_secs(3));
    })
    .echo();
    let client = node(t, "client.1", |c| {
        policy(c, EntityType::OSD, Policy::lossless_client());
        c.timeouts.keepalive = Some(std::time::Duration::from_millis(20));
    });
    let conn = connect(&client, &server);
    exchange(&client, &conn, 0, 1);
    let (out0, in0) = (conn.counters().bytes_out, conn.counters().bytes_in);
    // Ten keepalives (9 bytes each) and their acks, with no message sent.
    client.rec.wait("keepalives and acks", |_| {
        let c = conn.counters();
        c.bytes_out >= out0 + 90 && c.bytes_in >= in0 + 90
    });
    assert_eq!(conn.counters().messages_out, 1);
    assert_eq!(server.rec.seen.lock().faults, 0, "the server kept the link");
    assert!(conn.is_connected());
    exchange(&client, &conn, 1, 2);
}
