//! The RDMA layers below the node on real verbs: rdma_cm endpoints (listen, connect, reject,
//! errors) and links (the QP byte stream: credits, copies, RDMA READ rendezvous, faults).
//! Tests that need an RDMA device are ignored by a plain `cargo test` and FAIL (never pass
//! silently) when forced with `--include-ignored` and there is none: run this
//! binary inside the Soft-RoCE VM:
//!
//!   cargo test -p msgr-rdma --test rdma --no-run   # prints the test binary path
//!   scripts/rdma-vm/run.sh target/debug/deps/rdma-<hash> --test-threads 1 --include-ignored
//!
//! (`scripts/rdma-vm/run.sh` or `../shared/rdma-vm/run.sh`). Inside the VM, `$RDMA_IP` is the
//! address of the netdev under `rxe0`; 127.0.0.1 does not work over Soft-RoCE.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use common::{free_port, has_device, pattern, rdma_ip, HANG};
use msgr_rdma::endpoint::{Endpoint, EndpointEvent};
use msgr_rdma::link::{Hello, Link};
use msgr_rdma::{RdmaError, RdmaOptions};

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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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

fn s_take(side: &mut Side, token: u64) -> Bytes {
    side.inbox.get_mut(&token).unwrap().split().freeze()
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
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
