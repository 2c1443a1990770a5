//! Several transports in one node: per-peer choice and fallback from RDMA to TCP.
//!
//! Needs an RDMA device (run by `tests/fallback_rdma.rs` inside the Soft-RoCE VM), except
//! [`no_device_falls_back_to_tcp`], which needs a machine *without* one.

use msgr::Connection as _;
use msgr::Messenger as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use msgr::{EntityType, Policy};

use crate::harness::{bind_ip, check_payload, node, numbered, test_config, Node, Recorder};

/// Nodes for these scenarios all bind the RDMA netdev's address, so an RDMA dial reaches the
/// host even where the peer does not listen over RDMA (rdma_cm then gets a reject).
fn on_rdma_ip(c: &mut msgr::Config) {
    c.bind = std::net::SocketAddr::new(bind_ip("rdma"), 0);
}

/// A node with `["rdma", "tcp"]` reaches a TCP-only node over TCP and an RDMA node over RDMA;
/// the fallback is counted.
pub fn picks_the_transport_per_peer() {
    let both = node("rdma,tcp", "client.1", on_rdma_ip);
    let tcp_only = node("tcp", "osd.1", on_rdma_ip).echo();
    let rdma_only = node("rdma", "osd.2", on_rdma_ip).echo();
    let round_trip = |peer: &Node, tid: u64| {
        let conn = both.msgr.connect(EntityType::OSD, &peer.addr()).unwrap();
        let before = both.rec.message_count();
        conn.send_message(numbered(tid, 100, 1000)).unwrap();
        both.rec.wait("echo", |s| s.messages.len() > before);
        conn
    };
    let over_tcp = round_trip(&tcp_only, 1);
    assert_eq!(over_tcp.transport(), Some("tcp"));
    let over_rdma = round_trip(&rdma_only, 2);
    assert_eq!(over_rdma.transport(), Some("rdma"));
    let c = both.msgr.counters();
    assert!(
        c.fallbacks >= 1,
        "the TCP-only peer was reached by falling back: {c:?}"
    );
}

/// What the server saw of the stream: the next tid expected, and anything out of line.
#[derive(Default)]
struct StreamCheck {
    next: AtomicU64,
    bad: Mutex<Vec<String>>,
}

/// A lossless stream of `total` numbered, checksummed messages from an `["rdma", "tcp"]` client
/// to an `["rdma", "tcp"]` server: QP errors are injected twice while it runs over RDMA, then
/// the server's RDMA listener is removed and the link broken once more: the client reconnects
/// over TCP and the session replays. Every message arrives once, in order, intact.
pub fn lossless_stream_survives_losing_rdma(total: u64) {
    crate::harness::init_logging();
    let mut scfg = test_config("rdma,tcp", "osd.0");
    on_rdma_ip(&mut scfg);
    scfg.policies
        .set(EntityType::CLIENT, Policy::stateful_server());
    let built = msgr::build(&scfg).expect("server builds");
    let server = built.node.clone();
    let rdma = built
        .rdma
        .clone()
        .expect("the server has an RDMA transport");
    let rec = Arc::new(Recorder::default());
    rec.keep.store(false, Ordering::Relaxed);
    let check = Arc::new(StreamCheck::default());
    let ch = check.clone();
    *rec.on_message.lock() = Some(Box::new(move |_, m| {
        let want = ch.next.load(Ordering::Relaxed);
        if m.tid != want || !check_payload(m) {
            ch.bad.lock().push(format!(
                "got tid {} (intact: {}), expected {want}",
                m.tid,
                check_payload(m)
            ));
        }
        ch.next.store(m.tid + 1, Ordering::Relaxed);
    }));
    server.add_dispatcher(rec.clone());
    server.start().expect("server starts");
    assert_eq!(server.transports(), vec!["rdma", "tcp"]);

    let client = node("rdma,tcp", "client.1", |c| {
        on_rdma_ip(c);
        c.policies.set(EntityType::OSD, Policy::lossless_client());
    });
    let conn = client
        .msgr
        .connect(EntityType::OSD, &server.my_addr())
        .unwrap();
    let server_addr = server.my_addr();
    let received = || check.next.load(Ordering::Relaxed);
    let wait_for = |n: u64| {
        rec.wait(&format!("{n} messages at the server"), |_| received() >= n);
    };
    // Send in slices so faults land mid-stream, with messages in flight.
    let slice = total / 10;
    let mut sent = 0;
    let mut send_to = |n: u64| {
        while sent < n {
            let m = numbered(sent, 16 + (sent as usize % 200), 0);
            conn.send_message_timeout(m, std::time::Duration::from_secs(60))
                .expect("send");
            sent += 1;
        }
    };
    send_to(2 * slice);
    wait_for(slice);
    assert_eq!(
        conn.transport(),
        Some("rdma"),
        "RDMA first while the server has it"
    );
    assert!(
        client.msgr.inject_failure(&server_addr),
        "QP error injected"
    );
    send_to(4 * slice);
    wait_for(3 * slice);
    assert!(
        client.msgr.inject_failure(&server_addr),
        "QP error injected"
    );
    send_to(6 * slice);
    wait_for(5 * slice);
    // The server stops listening over RDMA; the current link breaks: the reconnect can only
    // go over TCP.
    msgr_node::Transport::stop(&*rdma);
    assert!(
        client.msgr.inject_failure(&server_addr),
        "QP error injected"
    );
    send_to(total);
    wait_for(total);
    let bad = check.bad.lock().clone();
    assert!(bad.is_empty(), "lost, duplicated or reordered: {bad:?}");
    assert_eq!(received(), total);
    assert_eq!(conn.transport(), Some("tcp"), "finished over TCP");
    let cc = conn.counters();
    assert!(cc.reconnects >= 3, "{cc:?}");
    let c = client.msgr.counters();
    assert!(c.fallbacks >= 1, "{c:?}");
    eprintln!(
        "fallback stream: {total} messages, 0 lost / duplicated / reordered; client reconnects {}, \
         replayed {}, fallbacks {}",
        cc.reconnects, cc.replayed, c.fallbacks
    );
    server.shutdown();
}

/// On a machine without an RDMA device, `["rdma", "tcp"]` nodes start over TCP alone and talk.
pub fn no_device_falls_back_to_tcp() {
    let server = node("rdma,tcp", "osd.0", |_| {}).echo();
    let client = node("rdma,tcp", "client.1", |_| {});
    assert_eq!(server.msgr.transports(), vec!["tcp"]);
    let conn = client
        .msgr
        .connect(EntityType::OSD, &server.addr())
        .unwrap();
    conn.send_message(numbered(7, 10, 10)).unwrap();
    client.rec.wait("echo", |s| !s.messages.is_empty());
    assert_eq!(conn.transport(), Some("tcp"));
}
