//! Tests on real verbs. Those that need an RDMA device FAIL (never pass silently) when there is
//! none: run this binary inside the Soft-RoCE VM:
//!
//!   cargo test -p msgr-rdma --no-run   # prints the test binary path
//!   scripts/rdma-vm/run.sh target/debug/deps/rdma-<hash> --test-threads 1
//!
//! (`scripts/rdma-vm/run.sh` or `../shared/rdma-vm/run.sh`). Inside the VM, `$RDMA_IP` is the
//! address of the netdev under `rxe0`; 127.0.0.1 does not work over Soft-RoCE.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use common::{has_device, HANG};
use msgr_rdma::endpoint::{Endpoint, EndpointEvent};
use msgr_rdma::link::{Hello, Link};
use msgr_rdma::{RdmaError, RdmaOptions};

const HOW_TO_RUN: &str = "Run the test binary inside the Soft-RoCE VM: \
     `cargo test -p msgr-rdma --no-run` then \
     `scripts/rdma-vm/run.sh target/debug/deps/rdma-<hash> --test-threads 1` \
     (or ../shared/rdma-vm/run.sh)";

/// The address to use on the RDMA device, or a panic that says how to run the test.
fn rdma_ip() -> std::net::IpAddr {
    common::from_env(
        "RDMA_IP",
        "IP address of the netdev under the RDMA device",
        HOW_TO_RUN,
    )
}

fn test_opts() -> RdmaOptions {
    RdmaOptions {
        buffer_size: 4096,
        send_buffers: 8,
        recv_buffers: 8,
        // Any receiver-not-ready would fail the QP at once: flow control must prevent them.
        rnr_retry: 0,
        ..Default::default()
    }
}

/// One side: an endpoint and its established links, driven by busy polling.
struct Side {
    ep: Endpoint,
    links: HashMap<u64, Link>,
    inbox: HashMap<u64, BytesMut>,
    failed: Vec<(u64, RdmaError)>,
    refused: Vec<String>,
    disconnected: Vec<u64>,
    accept: bool,
    /// Read at most this many bytes per link per pump (slow reader).
    read_budget: usize,
    /// Consume the inbox after each pump (into `received`), as a decoder would: keeps the
    /// inbox small, so READ payloads are spliced in rather than appended.
    drain: bool,
    received: HashMap<u64, Vec<u8>>,
}

impl Side {
    fn new(opts: RdmaOptions) -> Side {
        Side {
            ep: Endpoint::new(opts.clone(), Hello::from_options(&opts)).expect("endpoint"),
            links: HashMap::new(),
            inbox: HashMap::new(),
            failed: Vec::new(),
            refused: Vec::new(),
            disconnected: Vec::new(),
            accept: true,
            read_budget: usize::MAX,
            drain: false,
            received: HashMap::new(),
        }
    }

    fn pump(&mut self) {
        let mut evs = Vec::new();
        let accept = self.accept;
        self.ep
            .process(&mut |_peer, _hello| accept, &mut evs)
            .expect("cm events");
        for ev in evs {
            match ev {
                EndpointEvent::Established { token, link, .. } => {
                    self.links.insert(token, *link);
                    self.inbox.insert(token, BytesMut::new());
                }
                EndpointEvent::ConnectFailed { token, error } => self.failed.push((token, error)),
                EndpointEvent::Disconnected { token } => self.disconnected.push(token),
                EndpointEvent::Refused { reason, .. } => self.refused.push(reason),
            }
        }
        for (t, link) in self.links.iter_mut() {
            if link.failure().is_some() {
                continue;
            }
            let _ = link.on_readable();
            let inbox = self.inbox.get_mut(t).unwrap();
            let _ = link.read_into(inbox, self.read_budget);
            if self.drain {
                self.received
                    .entry(*t)
                    .or_default()
                    .extend_from_slice(inbox);
                // a fresh buffer: nothing keeps the old one (and a READ's pooled buffer) alive
                *inbox = BytesMut::new();
            }
            let _ = link.flush();
        }
    }

    fn send(&mut self, token: u64, data: Bytes) {
        let link = self.links.get_mut(&token).expect("link");
        link.queue(data);
        link.flush().expect("flush");
    }
}

fn pump_until(sides: &mut [&mut Side], what: &str, mut done: impl FnMut(&mut [&mut Side]) -> bool) {
    let start = Instant::now();
    while !done(sides) {
        for s in sides.iter_mut() {
            s.pump();
        }
        assert!(
            start.elapsed() < HANG,
            "hang guard: still waiting for {what}"
        );
    }
}

/// Server listening on RDMA_IP (ephemeral port) and a client connected to it, both with
/// `opts`: (server, client, server's token, client's token).
fn pair(opts: RdmaOptions) -> (Side, Side, u64, u64) {
    pair_with(opts.clone(), opts)
}

/// `pair` with different options on each side.
fn pair_with(server_opts: RdmaOptions, client_opts: RdmaOptions) -> (Side, Side, u64, u64) {
    let ip = rdma_ip();
    let mut server = Side::new(server_opts);
    let addr = server.ep.listen(SocketAddr::new(ip, 0)).expect("listen");
    let mut client = Side::new(client_opts);
    let ct = client.ep.connect(addr).expect("connect");
    pump_until(&mut [&mut server, &mut client], "connection", |s| {
        assert!(
            s[1].failed.is_empty(),
            "connect failed: {}",
            s[1].failed[0].1
        );
        !s[0].links.is_empty() && s[1].links.contains_key(&ct)
    });
    let st = *server.links.keys().next().unwrap();
    (server, client, st, ct)
}

#[test]
fn no_device_error_says_what_to_do() {
    let opts = RdmaOptions::default();
    if has_device() {
        // With a device present, asking for a missing one must give the same kind of error.
        let o = RdmaOptions {
            device: Some("nosuchdev9".into()),
            ..opts
        };
        let err = Endpoint::new(o.clone(), Hello::from_options(&o))
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(matches!(err, RdmaError::NoDevice { .. }), "{text}");
        assert!(text.contains("nosuchdev9"), "{text}");
    } else {
        let err = Endpoint::new(opts.clone(), Hello::from_options(&opts))
            .err()
            .expect("no device here");
        let text = err.to_string();
        assert!(matches!(err, RdmaError::NoDevice { .. }), "{text}");
        assert!(text.starts_with("no RDMA device found"), "{text}");
        assert!(
            text.contains("rdma link add rxe0 type rxe netdev"),
            "{text}"
        );
        assert!(text.contains("transport = \"tcp\""), "{text}");
    }
}

#[test]
fn loopback_address_is_refused_with_a_hint() {
    if !has_device() {
        // Endpoint::new needs a device; the check itself is pure, exercise what we can.
        rdma_ip();
    }
    let opts = test_opts();
    let mut ep = Endpoint::new(opts.clone(), Hello::from_options(&opts)).unwrap();
    let e = ep
        .listen("127.0.0.1:0".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not on an RDMA device") && e.contains("loopback"),
        "{e}"
    );
}

#[test]
fn gid_of_the_address_is_what_rdma_cm_uses() {
    let ip = rdma_ip();
    let opts = test_opts();
    let mut side = Side::new(opts);
    let addr = side.ep.listen(SocketAddr::new(ip, 0)).unwrap();
    side.ep.connect(addr).unwrap();
    pump_until(&mut [&mut side], "self connection", |s| {
        s[0].links.len() == 2
    });
    let link = side.links.values().next().unwrap();
    let sgid = link.id().sgid().expect("bound id has a GID");
    // RoCE v2 over IPv4: the GID is the IPv4-mapped IPv6 address of the netdev
    if let std::net::IpAddr::V4(v4) = ip {
        assert_eq!(
            &sgid[10..12],
            &[0xff, 0xff],
            "{}",
            msgr_rdma::link::fmt_gid(&sgid)
        );
        assert_eq!(
            &sgid[12..],
            &v4.octets(),
            "{}",
            msgr_rdma::link::fmt_gid(&sgid)
        );
    }
    // and it is in the port's GID table
    let found = (0..16u8).any(|i| link.id().query_gid(i).ok() == Some(sgid));
    assert!(
        found,
        "GID {} not in the table",
        msgr_rdma::link::fmt_gid(&sgid)
    );
}

#[test]
fn ping_pong_over_verbs() {
    let (mut server, mut client, st, ct) = pair(test_opts());
    for i in 0..500u32 {
        let msg = Bytes::from(format!("ping {i:05}"));
        client.send(ct, msg.clone());
        pump_until(&mut [&mut server, &mut client], "ping", |s| {
            s[0].inbox[&st].len() >= msg.len()
        });
        let got = s_take(&mut server, st);
        assert_eq!(got, msg);
        server.send(st, got);
        pump_until(&mut [&mut server, &mut client], "pong", |s| {
            s[1].inbox[&ct].len() >= msg.len()
        });
        assert_eq!(s_take(&mut client, ct), msg);
    }
    let c = &client.links[&ct].counters;
    assert_eq!(c.wc_errors, 0);
    assert_eq!(c.rnr_errors, 0);
    assert_eq!(c.data_sends, 500);
}

/// A port nobody listens on at `ip`: bind a listener to learn a free port, then drop it.
fn free_port(ip: std::net::IpAddr) -> u16 {
    let mut tmp = Side::new(test_opts());
    tmp.ep.listen(SocketAddr::new(ip, 0)).unwrap().port()
}

fn s_take(side: &mut Side, token: u64) -> Bytes {
    side.inbox.get_mut(&token).unwrap().split().freeze()
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn sixteen_mib_through_small_buffers_with_a_slow_reader() {
    let opts = RdmaOptions {
        recv_buffers: 4,
        // everything through the buffers (the READ path has its own tests)
        read_threshold: 0,
        ..test_opts()
    };
    let (mut server, mut client, st, ct) = pair(opts);
    server.read_budget = 1500; // less than one buffer per pump: credits run out
    let data = pattern(16 << 20, 7);
    // queue in uneven pieces, as a session would
    let mut off = 0;
    let mut k = 1;
    while off < data.len() {
        let n = (k * 7919) % 300_000 + 1;
        let end = (off + n).min(data.len());
        client.send(ct, data.slice(off..end));
        off = end;
        k += 1;
    }
    pump_until(&mut [&mut server, &mut client], "16 MiB", |s| {
        s[0].inbox[&st].len() >= 16 << 20
    });
    assert_eq!(server.inbox[&st].len(), data.len());
    assert!(server.inbox[&st][..] == data[..], "stream corrupted");
    let c = &client.links[&ct].counters;
    assert!(
        c.credit_stalls > 0,
        "the slow reader never ran the sender out of credits: {c:?}"
    );
    assert_eq!(c.rnr_errors, 0, "{c:?}");
    assert_eq!(c.wc_errors, 0, "{c:?}");
    assert_eq!(server.links[&st].counters.wc_errors, 0);
    assert_eq!(c.bytes_out, 16 << 20);
    // every chunk respected the peer's buffer size: at least len / buffer_size sends
    assert!(c.data_sends >= (16 << 20) / 4096, "{c:?}");
}

/// Chunks at or above the threshold go by RDMA READ, the rest through buffers; the stream
/// arrives whole and in order; READ payloads are spliced into a drained inbox (no copy);
/// every exposed payload is released by the peer's READ done; pre-registered memory needs no
/// registration per send.
#[test]
fn large_chunks_go_by_rdma_read_in_stream_order() {
    let opts = RdmaOptions {
        read_threshold: 8192,
        ..test_opts()
    };
    let (mut server, mut client, st, ct) = pair(opts);
    server.drain = true;
    let device = client.links[&ct].device();
    let mut reg = msgr_rdma::RegisteredBuffer::new(&device, 300_000).expect("register");
    for (i, b) in reg.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(5);
    }
    let reg = reg.freeze();
    let sizes = [
        100usize,
        8192,
        3,
        100_000,
        8191,
        1 << 20,
        1,
        20_000,
        5000,
        65_536,
        2,
    ];
    let mut expected = Vec::new();
    let mut large = 0;
    let mut from_reg = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let chunk = if i % 3 == 1 && n <= reg.len() {
            from_reg += (n >= 8192) as u64;
            reg.slice(i..i + n)
        } else {
            pattern(n, i as u8)
        };
        large += (n >= 8192) as u64;
        expected.extend_from_slice(&chunk);
        client.send(ct, chunk);
    }
    let total = expected.len();
    pump_until(&mut [&mut server, &mut client], "the stream", |s| {
        s[0].received.get(&st).map_or(0, |r| r.len()) >= total
    });
    assert!(
        server.received[&st] == expected,
        "stream corrupted or reordered"
    );
    pump_until(&mut [&mut server, &mut client], "READ dones", |s| {
        s[1].links[&ct].exposed_regions() == 0
    });
    let c = &client.links[&ct].counters;
    let sc = &server.links[&st].counters;
    assert_eq!(c.read_requests, large, "{c:?}");
    assert_eq!(c.read_registrations, large - from_reg, "{c:?}");
    assert_eq!(c.read_fallbacks, 0, "{c:?}");
    assert_eq!(sc.reads, large, "{sc:?}");
    assert_eq!(
        sc.read_copies, 0,
        "payloads were copied, not spliced: {sc:?}"
    );
    assert_eq!(c.bytes_out, total as u64, "{c:?}");
    assert_eq!(sc.bytes_in, total as u64, "{sc:?}");
    assert_eq!(c.wc_errors + sc.wc_errors + c.rnr_errors, 0, "{c:?} {sc:?}");
}

/// One large message after the other, each consumed before the next: the READ destination
/// is registered once and reused, not registered per message.
#[test]
fn read_destinations_are_reused_once_consumed() {
    let opts = RdmaOptions {
        read_threshold: 8192,
        ..test_opts()
    };
    let (mut server, mut client, st, ct) = pair(opts);
    server.drain = true;
    let mut expected = Vec::new();
    for i in 0..12u8 {
        let chunk = pattern(50_000 - usize::from(i) * 1000, i);
        expected.extend_from_slice(&chunk);
        client.send(ct, chunk);
        let want = expected.len();
        pump_until(&mut [&mut server, &mut client], "the chunk", |s| {
            s[0].received.get(&st).map_or(0, |r| r.len()) >= want
        });
    }
    assert!(server.received[&st] == expected, "stream corrupted");
    let sc = &server.links[&st].counters;
    assert_eq!(sc.reads, 12, "{sc:?}");
    assert!(
        sc.read_buffers_registered <= 2,
        "READ destinations were not reused: {sc:?}"
    );
}

/// A receiver that does not consume (so sends no READ dones) cannot make the sender keep more
/// than `max_exposed` bytes registered for it; once it consumes, the rest follows, in order.
#[test]
fn exposed_payloads_are_bounded_until_the_reader_catches_up() {
    let opts = RdmaOptions {
        read_threshold: 8192,
        max_exposed: 1 << 20,
        ..test_opts()
    };
    let (mut server, mut client, st, ct) = pair(opts);
    server.read_budget = 0;
    let mut expected = Vec::new();
    for i in 0..8u8 {
        let chunk = pattern(300_000, i);
        expected.extend_from_slice(&chunk);
        client.send(ct, chunk);
    }
    pump_until(
        &mut [&mut server, &mut client],
        "the sender to stall",
        |s| s[1].links[&ct].is_stalled(),
    );
    for _ in 0..50 {
        server.pump();
        client.pump();
    }
    let c = &client.links[&ct];
    assert_eq!(c.exposed_regions(), 3, "{:?}", c.counters);
    assert!(c.exposed_bytes() <= 1 << 20);
    server.read_budget = usize::MAX;
    server.drain = true;
    pump_until(&mut [&mut server, &mut client], "the stream", |s| {
        s[0].received.get(&st).map_or(0, |r| r.len()) >= expected.len()
    });
    assert!(
        server.received[&st] == expected,
        "stream corrupted or reordered"
    );
    pump_until(&mut [&mut server, &mut client], "READ dones", |s| {
        s[1].links[&ct].exposed_regions() == 0
    });
    assert_eq!(client.links[&ct].counters.read_requests, 8);
}

/// A READ request longer than the receiver's limit fails the link with a message saying so
/// (no allocation of the asked size).
#[test]
fn read_request_over_the_limit_fails_the_link() {
    let (mut server, mut client, st, ct) = pair_with(
        RdmaOptions {
            max_read: 10_000,
            ..test_opts()
        },
        RdmaOptions {
            read_threshold: 8192,
            ..test_opts()
        },
    );
    client.send(ct, pattern(20_000, 1));
    pump_until(&mut [&mut server, &mut client], "the link failure", |s| {
        s[0].links[&st].failure().is_some()
    });
    let why = &server.links[&st].failure().unwrap().0;
    assert!(
        why.contains("RDMA READ 20000 bytes") && why.contains("10000"),
        "{why}"
    );
    assert_eq!(server.links[&st].counters.reads, 0);
}

#[test]
fn accept_hook_refusal_reaches_the_client() {
    let ip = rdma_ip();
    let mut server = Side::new(test_opts());
    server.accept = false;
    let addr = server.ep.listen(SocketAddr::new(ip, 0)).unwrap();
    let mut client = Side::new(test_opts());
    client.ep.connect(addr).unwrap();
    pump_until(&mut [&mut server, &mut client], "refusal", |s| {
        !s[1].failed.is_empty()
    });
    let text = client.failed[0].1.to_string();
    assert!(
        matches!(client.failed[0].1, RdmaError::Refused { .. }),
        "{text}"
    );
    assert!(text.contains("accept hook refused"), "{text}");
    assert_eq!(server.refused.len(), 1);
    assert!(server.links.is_empty());
}

#[test]
fn connect_without_listener_is_refused() {
    let ip = rdma_ip();
    let mut client = Side::new(test_opts());
    let port = free_port(ip);
    client.ep.connect(SocketAddr::new(ip, port)).unwrap();
    pump_until(&mut [&mut client], "reject", |s| !s[0].failed.is_empty());
    let text = client.failed[0].1.to_string();
    assert!(
        matches!(
            client.failed[0].1,
            RdmaError::Refused { .. } | RdmaError::Unreachable { .. }
        ),
        "{text}"
    );
    assert!(text.contains("refused") || text.contains("reach"), "{text}");
}

#[test]
fn qp_forced_to_error_is_seen_by_both_sides() {
    let (mut server, mut client, st, ct) = pair(test_opts());
    client.send(ct, Bytes::from_static(b"before"));
    pump_until(&mut [&mut server, &mut client], "first bytes", |s| {
        s[0].inbox[&st].len() == 6
    });
    client.links.get_mut(&ct).unwrap().force_error().unwrap();
    client.send(ct, Bytes::from_static(b"after the fault"));
    pump_until(&mut [&mut server, &mut client], "local failure", |s| {
        s[1].links[&ct].failure().is_some()
    });
    // the faulted side disconnects; the peer learns it through rdma_cm
    client.links.get_mut(&ct).unwrap().disconnect();
    pump_until(&mut [&mut server, &mut client], "peer notices", |s| {
        s[0].disconnected.contains(&st) || s[0].links[&st].failure().is_some()
    });
    assert_eq!(&server.inbox[&st][..], b"before");
}

#[test]
fn sixty_four_connections_at_once() {
    let ip = rdma_ip();
    let opts = RdmaOptions {
        buffer_size: 1024,
        send_buffers: 4,
        recv_buffers: 4,
        ..test_opts()
    };
    let mut server = Side::new(opts.clone());
    let addr = server.ep.listen(SocketAddr::new(ip, 0)).unwrap();
    let mut client = Side::new(opts);
    let tokens: Vec<u64> = (0..64).map(|_| client.ep.connect(addr).unwrap()).collect();
    pump_until(&mut [&mut server, &mut client], "64 connections", |s| {
        assert!(
            s[1].failed.is_empty(),
            "connect failed: {}",
            s[1].failed[0].1
        );
        s[1].links.len() == 64 && s[0].links.len() == 64
    });
    for (i, t) in tokens.iter().enumerate() {
        client.send(*t, Bytes::from(format!("conn {i:02} hello")));
    }
    pump_until(&mut [&mut server, &mut client], "64 messages", |s| {
        s[0].inbox.values().all(|b| b.len() == 13)
    });
    let mut seen: Vec<String> = server
        .inbox
        .values()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    seen.sort();
    let want: Vec<String> = (0..64).map(|i| format!("conn {i:02} hello")).collect();
    assert_eq!(seen, want);
}

/// Registration beyond `ulimit -l` (without CAP_IPC_LOCK) must give the memlock error. The
/// check runs in a child process (this test binary again) that lost CAP_IPC_LOCK and got a
/// 64 KiB limit through `setpriv` and `prlimit`.
#[test]
fn memlock_too_low_names_ulimit_and_size() {
    if std::env::var_os("MSGR_RDMA_MEMLOCK_CHILD").is_some() {
        let ip = rdma_ip();
        let opts = RdmaOptions {
            buffer_size: 1 << 20,
            send_buffers: 4,
            recv_buffers: 4,
            ..test_opts()
        };
        let mut side = Side::new(opts);
        let addr = side.ep.listen(SocketAddr::new(ip, 0)).unwrap();
        side.ep.connect(addr).unwrap();
        pump_until(&mut [&mut side], "registration failure", |s| {
            !s[0].failed.is_empty()
        });
        println!("MEMLOCK-ERROR: {}", side.failed[0].1);
        return;
    }
    rdma_ip();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--bounding-set=-ipc_lock",
            "--inh-caps=-ipc_lock",
            "prlimit",
            "--memlock=65536:65536",
        ])
        .arg(&exe)
        .args([
            "memlock_too_low_names_ulimit_and_size",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MSGR_RDMA_MEMLOCK_CHILD", "1")
        .output()
        .expect("run setpriv / prlimit (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("MEMLOCK-ERROR: ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("no error line from the child:\n{stdout}\n{stderr}"));
    assert!(line.contains("ulimit -l"), "{line}");
    assert!(line.contains("65536 bytes"), "{line}");
    assert!(line.contains("4194304"), "needed size missing: {line}");
}

// ---------------------------------------------------------------------------------------------
// The messenger (msgr-core sessions over RDMA links)

mod messenger {
    use super::*;
    use common::{small_opts, wait_until, Collect};
    use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
    use msgr_core::message::Message;
    use msgr_core::policy::Policy;
    use msgr_core::wire::EntityType;
    use msgr_rdma::RdmaMessenger;
    use parking_lot::Mutex;
    use std::sync::Arc;
    use std::time::Duration;

    /// Messenger `kind.num` on RDMA_IP (any port) with `opts`, dispatching to `d`.
    fn node(
        kind: EntityType,
        num: i64,
        opts: RdmaOptions,
        d: Arc<dyn Dispatcher>,
    ) -> RdmaMessenger {
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

    /// Busy-polling reactors (two each) leave their CQs unarmed while they spin and re-arm
    /// them before they sleep: bursts separated by pauses longer than the busy window all get
    /// through, so every sleeping reactor was woken by its completion channel again.
    #[test]
    fn busy_polling_reactors_sleep_and_wake_between_bursts() {
        let opts = RdmaOptions {
            poll_us: 3000,
            ..small_opts()
        };
        let mk = |kind, num, d: Arc<Collect>| {
            let mut c = common::config(kind, num, SocketAddr::new(rdma_ip(), 0), opts.clone());
            c.workers = 2;
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
                // well past the busy window: both reactors go back to sleep
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
    fn messenger_sixteen_mib_messages_by_rdma_read() {
        sixteen_mib_messages(small_opts());
    }

    #[test]
    fn messenger_sixteen_mib_messages_through_buffers() {
        sixteen_mib_messages(RdmaOptions {
            read_threshold: 0,
            ..small_opts()
        });
    }

    #[test]
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
        cfg.nonce = Some(PEER_NONCE);
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
                "messenger::peer_process_killed_mid_stream",
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
    fn send_queue_limit_and_loopback() {
        let cd = Arc::new(Collect::default());
        let ip = rdma_ip();
        let mut cfg = common::config(EntityType::CLIENT, 1, SocketAddr::new(ip, 0), small_opts());
        cfg.send_queue_bytes = 64 << 10;
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

    /// Random QP faults (about one reactor step in 40 on each side): a lossless stream still
    /// arrives complete, in order, once.
    #[test]
    fn injected_qp_failures_lossless_stream_survives() {
        let ip = rdma_ip();
        let mk = |num, d: Arc<Collect>| {
            let mut c = common::config(EntityType::OSD, num, SocketAddr::new(ip, 0), small_opts());
            c.inject_qp_failures = 40;
            c.reconnect_initial = Duration::from_millis(5);
            let m = common::messenger(c, d);
            m.set_policy(EntityType::OSD, Policy::lossless_peer());
            m
        };
        let sd = Arc::new(Collect::default());
        let server = mk(0, sd.clone());
        let client = mk(1, Arc::new(Collect::default()));
        let conn = start_and_connect(&server, &client);
        // Batches until some fault has hit (injection is random: how many reactor steps a
        // batch takes varies), at most 20 batches.
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
}
