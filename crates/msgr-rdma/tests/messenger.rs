//! The messenger on real verbs: msgr-core sessions driven by the msgr-node driver over RDMA
//! links (`RdmaMessenger`, a node whose only transport is RDMA). Every test is ignored by a
//! plain `cargo test` and FAILS (never passes silently) when forced without an RDMA device: run
//! this binary inside the Soft-RoCE VM with `--include-ignored`:
//!
//!   cargo test -p msgr-rdma --test messenger --no-run   # prints the test binary path
//!   scripts/rdma-vm/run.sh target/debug/deps/messenger-<hash> --test-threads 1 --include-ignored
//!
//! Inside the VM, `$RDMA_IP` is the address of the netdev under `rxe0`; 127.0.0.1 does not
//! work over Soft-RoCE.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, pattern, rdma_ip, small_opts, wait_until, Collect};
use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::policy::Policy;
use msgr_core::wire::EntityType;
use msgr_rdma::{RdmaMessenger, RdmaOptions};
use parking_lot::Mutex;

/// Messenger `kind.num` on RDMA_IP (any port) with `opts`, dispatching to `d`.
fn node(kind: EntityType, num: i64, opts: RdmaOptions, d: Arc<dyn Dispatcher>) -> RdmaMessenger {
    let cfg = common::config(kind, num, SocketAddr::new(rdma_ip(), 0), opts);
    common::messenger(cfg, d)
}

/// Start both messengers and connect `client` to `server` (as an OSD).
fn start_and_connect(server: &RdmaMessenger, client: &RdmaMessenger) -> ConnectionRef {
    server.start().unwrap();
    client.start().unwrap();
    client
        .connect_to(EntityType::OSD, &server.my_addr())
        .unwrap()
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn messenger_request_reply() {
    let sd = Arc::new(Collect {
        echo: true,
        ..Default::default()
    });
    let cd = Arc::new(Collect::default());
    let server = node(EntityType::OSD, 0, small_opts(), sd.clone());
    let client = node(EntityType::CLIENT, 1, small_opts(), cd.clone());
    let conn = start_and_connect(&server, &client);
    for i in 0..200u64 {
        conn.send_message(Message::new(100, format!("req {i}")).with_tid(i))
            .unwrap();
    }
    cd.wait_for("200 replies", |c| c.msgs.lock().len() == 200);
    let got = cd.msgs.lock();
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.tid, i as u64);
        assert_eq!(m.msg_type, 101);
        assert_eq!(&m.front[..], format!("req {i}").as_bytes());
    }
    drop(got);
    assert!(conn.is_connected());
    let rc = client.rdma_counters();
    assert_eq!(rc.rnr_events, 0, "{rc:?}");
    assert_eq!(rc.completions_with_error, 0, "{rc:?}");
    assert!(client.counters().connections.messages_in >= 200);
    client.shutdown();
    server.shutdown();
}

/// Busy-polling workers (two each) leave their CQs unarmed while they spin and re-arm
/// them before they sleep: bursts separated by pauses longer than the busy window all get
/// through, so every sleeping worker was woken by its completion channel again.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn busy_polling_workers_sleep_and_wake_between_bursts() {
    let mk = |kind, num, d: Arc<Collect>| {
        let mut c = common::config(kind, num, SocketAddr::new(rdma_ip(), 0), small_opts());
        c.node.workers = 2;
        c.node.busy_poll = Duration::from_millis(3);
        common::messenger(c, d)
    };
    let sd = Arc::new(Collect {
        echo: true,
        ..Default::default()
    });
    let cd = Arc::new(Collect::default());
    let server = mk(EntityType::OSD, 0, sd.clone());
    let client = mk(EntityType::CLIENT, 1, cd.clone());
    let conn = start_and_connect(&server, &client);
    let mut sent = 0u64;
    for burst in 0..5 {
        for _ in 0..20 {
            conn.send_message(Message::new(100, format!("req {sent}")).with_tid(sent))
                .unwrap();
            sent += 1;
        }
        cd.wait_for("the burst's replies", |c| {
            c.msgs.lock().len() as u64 == sent
        });
        if burst < 4 {
            // well past the busy window: both workers go back to sleep
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let tids: Vec<u64> = cd.msgs.lock().iter().map(|m| m.tid).collect();
    assert_eq!(tids, (0..sent).collect::<Vec<_>>());
    assert_eq!(client.rdma_counters().completions_with_error, 0);
    client.shutdown();
    server.shutdown();
}

fn sixteen_mib_messages(opts: RdmaOptions) {
    let sd = Arc::new(Collect::default());
    let cd = Arc::new(Collect::default());
    let server = node(EntityType::OSD, 0, opts.clone(), sd.clone());
    let client = node(EntityType::CLIENT, 1, opts.clone(), cd.clone());
    let conn = start_and_connect(&server, &client);
    let sizes = [16 << 20, 1 << 20, 65536 + 3, 16 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        conn.send_message(
            Message::new(7, "big")
                .with_data(pattern(n, i as u8))
                .with_tid(i as u64),
        )
        .unwrap();
    }
    sd.wait_for("4 large messages", |s| s.msgs.lock().len() == sizes.len());
    for (i, m) in sd.msgs.lock().iter().enumerate() {
        assert_eq!(m.tid, i as u64);
        assert_eq!(m.data.len(), sizes[i]);
        assert!(
            m.data == pattern(sizes[i], i as u8),
            "message {i} corrupted"
        );
    }
    let rc = client.rdma_counters();
    assert_eq!(rc.rnr_events, 0, "{rc:?}");
    if opts.read_threshold == 0 {
        // copied: every chunk at most one (16 KiB) buffer
        let total: usize = sizes.iter().sum();
        assert!(rc.data_sends as usize >= total / (16 * 1024), "{rc:?}");
        assert_eq!(rc.read_requests, 0, "{rc:?}");
    } else {
        // read: each data section by one RDMA READ, none copied into the session's buffer
        let n = sizes.iter().filter(|&&n| n >= opts.read_threshold).count() as u64;
        assert_eq!(rc.read_requests, n, "{rc:?}");
        let sc = server.rdma_counters();
        assert_eq!(sc.reads, n, "{sc:?}");
        assert_eq!(sc.read_copies, 0, "{sc:?}");
        wait_until("READ dones", || client.rdma_counters().exposed_regions == 0);
    }
    client.shutdown();
    server.shutdown();
}

/// Data in a buffer from `register_buffer` is read by the peer where it lies: no
/// registration per message; the receiver gets the same bytes.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn registered_buffer_is_sent_without_a_registration_per_message() {
    let sd = Arc::new(Collect::default());
    let cd = Arc::new(Collect::default());
    let server = node(EntityType::OSD, 0, small_opts(), sd.clone());
    let client = node(EntityType::CLIENT, 1, small_opts(), cd.clone());
    let early = client.register_buffer(4096).err().expect("not started yet");
    assert!(early.to_string().contains("started messenger"), "{early}");
    server.start().unwrap();
    client.start().unwrap();
    let mut buf = client.register_buffer(3 << 20).expect("register");
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let data = buf.freeze();
    let conn = client
        .connect_to(EntityType::OSD, &server.my_addr())
        .unwrap();
    // three messages from slices of the one registration, one from ordinary memory
    let parts = [
        data.slice(0..1 << 20),
        data.slice(1 << 20..3 << 20),
        data.slice(100..100 + 70_000),
        pattern(1 << 20, 9),
    ];
    for (i, d) in parts.iter().enumerate() {
        conn.send_message(
            Message::new(7, "reg")
                .with_data(d.clone())
                .with_tid(i as u64),
        )
        .unwrap();
    }
    sd.wait_for("4 messages", |s| s.msgs.lock().len() == parts.len());
    for (i, m) in sd.msgs.lock().iter().enumerate() {
        assert_eq!(m.tid, i as u64);
        assert!(m.data == parts[i], "message {i} corrupted");
    }
    let rc = client.rdma_counters();
    assert_eq!(rc.read_requests, 4, "{rc:?}");
    assert_eq!(rc.read_registrations, 1, "only the ordinary one: {rc:?}");
    assert_eq!(server.rdma_counters().reads, 4);
    drop(parts);
    drop(data);
    client.shutdown();
    server.shutdown();
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn messenger_sixteen_mib_messages_by_rdma_read() {
    sixteen_mib_messages(small_opts());
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn messenger_sixteen_mib_messages_through_buffers() {
    sixteen_mib_messages(RdmaOptions {
        read_threshold: 0,
        ..small_opts()
    });
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn qp_error_mid_stream_lossless_replays_everything_once() {
    let sd = Arc::new(Collect::default());
    let cd = Arc::new(Collect::default());
    let server = node(EntityType::OSD, 0, small_opts(), sd.clone());
    let client = node(EntityType::OSD, 1, small_opts(), cd.clone());
    server.set_policy(EntityType::OSD, Policy::lossless_peer());
    client.set_policy(EntityType::OSD, Policy::lossless_peer());
    let conn = start_and_connect(&server, &client);
    let total = 2000u64;
    for i in 0..total {
        conn.send_message(Message::new(9, vec![i as u8; 3000]).with_tid(i))
            .unwrap();
        if i == 300 {
            sd.wait_for("some messages before the fault", |s| {
                !s.msgs.lock().is_empty()
            });
            assert!(client.inject_qp_error(&server.my_addr()));
        }
    }
    sd.wait_for("all messages after the fault", |s| {
        s.msgs.lock().len() as u64 >= total
    });
    let got = sd.msgs.lock();
    let tids: Vec<u64> = got.iter().map(|m| m.tid).collect();
    assert_eq!(
        tids,
        (0..total).collect::<Vec<_>>(),
        "lost, duplicated or reordered"
    );
    drop(got);
    assert!(conn.counters().faults >= 1, "{:?}", conn.counters());
    assert!(conn.counters().reconnects >= 1, "{:?}", conn.counters());
    let rc = client.rdma_counters();
    assert!(
        rc.completions_with_error >= 1,
        "the fault was not seen as completion errors: {rc:?}"
    );
    client.shutdown();
    server.shutdown();
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn qp_error_on_lossy_session_is_reported_as_reset() {
    let sd = Arc::new(Collect::default());
    let cd = Arc::new(Collect::default());
    let server = node(EntityType::OSD, 0, small_opts(), sd.clone());
    let client = node(EntityType::CLIENT, 1, small_opts(), cd.clone());
    client.set_policy(EntityType::OSD, Policy::lossy_client());
    server.set_policy(EntityType::CLIENT, Policy::stateless_server());
    let conn = start_and_connect(&server, &client);
    conn.send_message(Message::new(5, "hello")).unwrap();
    sd.wait_for("first message", |s| s.msgs.lock().len() == 1);
    assert!(client.inject_qp_error(&server.my_addr()));
    cd.wait_for("reset on the client", |c| *c.resets.lock() >= 1);
    assert!(
        conn.send_message(Message::new(5, "after")).is_err(),
        "lossy session must be gone"
    );
    client.shutdown();
    server.shutdown();
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn sixty_four_messenger_connections() {
    let sd = Arc::new(Collect {
        echo: true,
        ..Default::default()
    });
    let opts = RdmaOptions {
        buffer_size: 4096,
        send_buffers: 4,
        recv_buffers: 4,
        rnr_retry: 0,
        ..Default::default()
    };
    let server = node(EntityType::OSD, 0, opts.clone(), sd.clone());
    server.start().unwrap();
    let mut clients = Vec::new();
    for i in 0..64 {
        let cd = Arc::new(Collect::default());
        let c = node(EntityType::CLIENT, i + 1, opts.clone(), cd.clone());
        c.start().unwrap();
        let conn = c.connect_to(EntityType::OSD, &server.my_addr()).unwrap();
        conn.send_message(Message::new(1, format!("from {i}")))
            .unwrap();
        clients.push((c, cd));
    }
    for (i, (_, cd)) in clients.iter().enumerate() {
        cd.wait_for("echo", |c| c.msgs.lock().len() == 1);
        assert_eq!(&cd.msgs.lock()[0].front[..], format!("from {i}").as_bytes());
    }
    assert_eq!(server.rdma_counters().live_links, 64);
    for (c, _) in clients {
        c.shutdown();
    }
    server.shutdown();
}

const PEER_NONCE: u32 = 0x5eed;

/// The peer process of `peer_process_killed_mid_stream`: an echoing OSD on RDMA_IP:port.
fn run_peer_child(port: u16) -> ! {
    let bind = SocketAddr::new(rdma_ip(), port);
    let mut cfg = common::config(EntityType::OSD, 0, bind, small_opts());
    cfg.node.nonce = Some(PEER_NONCE);
    let echo = Arc::new(Collect {
        echo: true,
        ..Default::default()
    });
    let m = common::messenger(cfg, echo);
    // the server decides whether a session is lossy (msgr1 connect reply flag)
    m.set_policy(EntityType::CLIENT, Policy::stateless_server());
    m.set_policy(EntityType::MDS, Policy::stateful_server());
    m.start().expect("child messenger");
    println!("PEER-READY");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn spawn_peer(port: u16) -> std::process::Child {
    use std::io::BufRead;
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "peer_process_killed_mid_stream",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MSGR_RDMA_PEER_CHILD", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn peer process");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("PEER-READY") => break,
            Some(_) => continue,
            None => panic!("peer process exited before it was ready"),
        }
    }
    // keep draining its stdout so it never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn peer_process_killed_mid_stream() {
    if let Ok(port) = std::env::var("MSGR_RDMA_PEER_CHILD") {
        run_peer_child(port.parse().unwrap());
    }
    let ip = rdma_ip();
    let port = free_port(ip);
    let peer_addr = msgr_core::wire::EntityAddr {
        kind: 0,
        nonce: PEER_NONCE,
        addr: Some(SocketAddr::new(ip, port)),
    };
    let mut child = spawn_peer(port);

    let lossy_d = Arc::new(Collect::default());
    let lossy = node(EntityType::CLIENT, 1, small_opts(), lossy_d.clone());
    lossy.set_policy(EntityType::OSD, Policy::lossy_client());
    lossy.start().unwrap();
    let lossless_d = Arc::new(Collect::default());
    let lossless = node(EntityType::MDS, 2, small_opts(), lossless_d.clone());
    lossless.set_policy(EntityType::OSD, Policy::lossless_client());
    lossless.start().unwrap();

    let lc = lossy.connect_to(EntityType::OSD, &peer_addr).unwrap();
    let nc = lossless.connect_to(EntityType::OSD, &peer_addr).unwrap();
    for i in 0..50u64 {
        lc.send_message(Message::new(1, vec![1u8; 1000]).with_tid(i))
            .unwrap();
        nc.send_message(Message::new(1, vec![2u8; 1000]).with_tid(i))
            .unwrap();
    }
    lossy_d.wait_for("lossy echoes", |c| c.msgs.lock().len() == 50);
    lossless_d.wait_for("lossless echoes", |c| c.msgs.lock().len() == 50);

    // mid-stream: queue more, kill the peer while it flows
    let send = |range: std::ops::Range<u64>| {
        for i in range {
            let _ = lc.send_message(Message::new(1, vec![1u8; 1000]).with_tid(i));
            nc.send_message(Message::new(1, vec![2u8; 1000]).with_tid(i))
                .unwrap();
        }
    };
    send(50..60);
    child.kill().unwrap();
    child.wait().unwrap();
    send(60..400);
    lossy_d.wait_for("lossy reset", |c| *c.resets.lock() >= 1);
    assert!(
        lc.send_message(Message::new(1, "x")).is_err(),
        "a reset lossy connection must refuse sends"
    );
    lossless_d.wait_for("lossless fault", |c| !c.faults.lock().is_empty());
    assert_eq!(
        *lossless_d.resets.lock(),
        0,
        "a lossless session must survive the peer's death"
    );

    // the peer comes back at the same address: the lossless connection recovers by itself
    // The peer comes back at the same address with no memory of us: the lossless
    // connection reconnects by itself, and learns (RESETSESSION) that what it had queued is
    // gone: reported as a remote reset, never silently dropped.
    let mut child = spawn_peer(port);
    lossless_d.wait_for("remote reset from the restarted peer", |c| {
        *c.remote_resets.lock() >= 1
    });
    lossless_d.wait_for("reconnected", |_| nc.is_connected());
    nc.send_message(Message::new(1, "after restart").with_tid(9999))
        .unwrap();
    lossless_d.wait_for("echo after the restart", |c| {
        c.msgs.lock().iter().any(|m| m.tid == 9999)
    });
    assert!(nc.counters().faults >= 1, "{:?}", nc.counters());
    child.kill().unwrap();
    child.wait().unwrap();
    lossy.shutdown();
    lossless.shutdown();
}

/// Keeps throttle budget until the test releases it.
#[derive(Default)]
struct Deferring {
    inner: Collect,
    conn: Mutex<Option<ConnectionRef>>,
}
impl Dispatcher for Deferring {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        *self.conn.lock() = Some(conn.clone());
        self.inner.ms_dispatch(conn, msg);
    }
    fn defer_release(&self) -> bool {
        true
    }
}

/// A full policy throttle stops the reader; the receive buffers it holds run the sender out
/// of credits (back-pressure reaches the other host); releasing resumes, nothing is lost.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn throttle_holds_receive_buffers_and_stalls_the_sender() {
    let sd = Arc::new(Deferring::default());
    let cd = Arc::new(Collect::default());
    let server = node(EntityType::OSD, 0, small_opts(), sd.clone());
    let mut sp = Policy::stateful_server();
    sp.throttle_messages = Some(4);
    server.set_policy(EntityType::CLIENT, sp);
    let client = node(EntityType::CLIENT, 1, small_opts(), cd.clone());
    client.set_policy(EntityType::OSD, Policy::lossless_client());
    let conn = start_and_connect(&server, &client);
    for tid in 0..64u64 {
        conn.send_message(Message::new(1, vec![tid as u8; 20_000]).with_tid(tid))
            .unwrap();
    }
    sd.inner
        .wait_for("4 messages", |s| s.msgs.lock().len() >= 4);
    // paused reader -> receive buffers held -> the sender waits for credits
    sd.inner
        .wait_for("throttle wait, held buffers, sender out of credits", |_| {
            server.counters().connections.throttle_waits >= 1
                && server.rdma_counters().recv_buffers_held > 0
                && client.rdma_counters().links_waiting_for_credits == 1
        });
    assert_eq!(
        sd.inner.msgs.lock().len(),
        4,
        "nothing beyond the throttle is dispatched"
    );
    let mut released = 0;
    while released < 64 {
        sd.inner
            .wait_for("more after release", |s| s.msgs.lock().len() > released);
        let n = sd.inner.msgs.lock().len();
        let c = sd.conn.lock().clone().unwrap();
        for _ in released..n {
            c.release(20_000);
        }
        released = n;
    }
    let tids: Vec<u64> = sd.inner.msgs.lock().iter().map(|m| m.tid).collect();
    assert_eq!(tids, (0..64).collect::<Vec<_>>());
    let rc = client.rdma_counters();
    assert!(rc.credit_stalls >= 1, "{rc:?}");
    assert_eq!(rc.rnr_events, 0, "{rc:?}");
    client.shutdown();
    server.shutdown();
}

/// send_queue_bytes: a full queue is refused with QueueFull, and shutdown reports what
/// never left (nobody listens at the peer address).
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn send_queue_limit_and_loopback() {
    let cd = Arc::new(Collect::default());
    let ip = rdma_ip();
    let mut cfg = common::config(EntityType::CLIENT, 1, SocketAddr::new(ip, 0), small_opts());
    cfg.node.send_queue_bytes = 64 << 10;
    let m = common::messenger(cfg, cd.clone());
    m.set_policy(EntityType::OSD, Policy::lossless_client());
    m.start().unwrap();
    // loopback: our own address is delivered locally
    let me = m.connect_to(EntityType::CLIENT, &m.my_addr()).unwrap();
    me.send_message(Message::new(3, "to myself")).unwrap();
    cd.wait_for("loopback message", |c| c.msgs.lock().len() == 1);
    // a port nobody listens on
    let port = free_port(ip);
    let nowhere = msgr_core::wire::EntityAddr {
        kind: 0,
        nonce: 1,
        addr: Some(SocketAddr::new(ip, port)),
    };
    let conn = m.connect_to(EntityType::OSD, &nowhere).unwrap();
    conn.send_message(Message::new(1, vec![0u8; 60 << 10]).with_tid(0))
        .unwrap();
    match conn.send_message(Message::new(1, vec![0u8; 60 << 10]).with_tid(1)) {
        Err(msgr_core::api::MessengerError::QueueFull { limit, .. }) => {
            assert_eq!(limit, 64 << 10)
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    m.shutdown();
    assert!(
        *cd.resets.lock() >= 1,
        "shutdown must report the undelivered message"
    );
}

/// Random QP faults (about one drive of a link in 40 on each side): a lossless stream
/// still arrives complete, in order, once.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn injected_qp_failures_lossless_stream_survives() {
    let ip = rdma_ip();
    let mk = |num, d: Arc<Collect>| {
        let mut c = common::config(EntityType::OSD, num, SocketAddr::new(ip, 0), small_opts());
        c.node.inject_failures = 40;
        c.node.reconnect_initial = Duration::from_millis(5);
        let m = common::messenger(c, d);
        m.set_policy(EntityType::OSD, Policy::lossless_peer());
        m
    };
    let sd = Arc::new(Collect::default());
    let server = mk(0, sd.clone());
    let client = mk(1, Arc::new(Collect::default()));
    let conn = start_and_connect(&server, &client);
    // Batches until some fault has hit (injection is random: how many drives a batch
    // takes varies), at most 20 batches.
    let mut total = 0u64;
    let mut faults = 0;
    while faults == 0 && total < 6000 {
        for i in total..total + 300 {
            conn.send_message(Message::new(9, vec![i as u8; 2000]).with_tid(i))
                .unwrap();
        }
        total += 300;
        sd.wait_for("every message", |s| s.msgs.lock().len() as u64 >= total);
        faults = conn.counters().faults + server.counters().connections.faults;
    }
    let tids: Vec<u64> = sd.msgs.lock().iter().map(|m| m.tid).collect();
    assert_eq!(tids, (0..total).collect::<Vec<_>>());
    assert!(faults >= 1, "no fault was injected in {total} messages");
    client.shutdown();
    server.shutdown();
}
