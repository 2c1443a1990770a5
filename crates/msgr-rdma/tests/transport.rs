//! The transport plug-in on real verbs, without a node: [`RdmaTransport`] listens, dials and
//! reports what rdma_cm did as `msgr_node::TransportEvent`s; [`msgr_rdma::RdmaLink`] carries a
//! byte stream through the `msgr_node::Link` trait as a worker drives it (by busy polling
//! here: registering needs a worker's poller). Also: rdma_cm's port space beside the kernel's
//! TCP ports (a node listens on one IP and port over both transports).
//!
//! Tests that need an RDMA device FAIL (never pass silently) when there is none: run this
//! binary inside the Soft-RoCE VM:
//!
//!   cargo test -p msgr-rdma --test transport --no-run   # prints the test binary path
//!   scripts/rdma-vm/run.sh target/debug/deps/transport-<hash> --test-threads 1 --include-ignored

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{free_port, has_device, pattern, rdma_ip, small_opts, wait_until, Collect, HANG};
use msgr_core::api::{Messenger, MessengerError};
use msgr_core::wire::{EntityName, EntityType};
use msgr_node::{DialError, Dialing, Link, ReadEnd, Transport, TransportEvent};
use msgr_rdma::{RdmaConfig, RdmaOptions, RdmaTransport};

/// What transports reported, in order, tagged with the index of the transport.
#[derive(Default)]
struct Seen {
    accepted: Vec<(usize, Box<dyn Link>, SocketAddr)>,
    dialed: Vec<(usize, u64, Box<dyn Link>)>,
    failed: Vec<(usize, u64, DialError)>,
}

impl Seen {
    /// Poll every transport (as worker 0 does when their event channels are readable).
    fn poll(&mut self, ts: &[&RdmaTransport]) {
        for (i, t) in ts.iter().enumerate() {
            let mut out = Vec::new();
            t.poll(true, &mut out);
            for ev in out {
                match ev {
                    TransportEvent::Accepted { link, peer } => self.accepted.push((i, link, peer)),
                    TransportEvent::Dialed { dial, link } => self.dialed.push((i, dial, link)),
                    TransportEvent::DialFailed { dial, error } => {
                        self.failed.push((i, dial, error))
                    }
                    _ => {}
                }
            }
        }
    }

    fn until(&mut self, ts: &[&RdmaTransport], what: &str, mut done: impl FnMut(&Seen) -> bool) {
        wait_until(what, || {
            self.poll(ts);
            done(self)
        });
    }
}

/// A listening transport on RDMA_IP (any port).
fn listening(opts: RdmaOptions) -> (Arc<RdmaTransport>, SocketAddr) {
    let t = RdmaTransport::new(opts);
    let addr = t.listen(SocketAddr::new(rdma_ip(), 0)).expect("listen");
    (t, addr)
}

/// Drive `link` as a busy-polling worker does: poll, append what it reads to `got` (taking it
/// out of the read buffer, as a decoder would), reading again while it says `Again`, and
/// flush only when it says something is queued (so credits and READ dones must show there).
fn pump(link: &mut dyn Link, buf: &mut BytesMut, got: &mut Vec<u8>) {
    link.poll();
    loop {
        let (_, end) = link.read(buf, 0);
        got.extend_from_slice(&buf.split());
        match end {
            ReadEnd::Again => continue,
            ReadEnd::Failed(e) => panic!("read failed: {e}"),
            _ => break,
        }
    }
    if link.queued() > 0 {
        link.flush().expect("flush");
    }
}

/// Dial, accept, then a stream both ways through the `Link` trait: copied chunks worth more
/// SENDs than the receiver has buffers (it has no output of its own, yet must return
/// credits), and a payload large enough to go by RDMA READ; counters over live links; a close
/// reaches the peer as rdma_cm DISCONNECTED, which its link reports as its failure.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn dialed_and_accepted_links_carry_a_stream_and_see_the_disconnect() {
    let (server, saddr) = listening(small_opts());
    let (client, _) = listening(small_opts());
    assert!(matches!(client.dial(saddr, 7), Ok(Dialing::Pending)));
    let mut seen = Seen::default();
    seen.until(&[&server, &client], "dialed and accepted", |s| {
        assert!(s.failed.is_empty(), "dial failed: {}", s.failed[0].2);
        !s.accepted.is_empty() && !s.dialed.is_empty()
    });
    let (ti, mut sl, peer) = seen.accepted.pop().unwrap();
    let (ci, dial, mut cl) = seen.dialed.pop().unwrap();
    assert_eq!(
        (ti, ci, dial),
        (0, 1, 7),
        "accepted by the server, dialed by the client"
    );
    assert_eq!(peer.ip(), saddr.ip());
    assert_eq!((sl.transport(), cl.transport()), ("rdma", "rdma"));
    assert!(sl.polls_itself() && cl.polls_itself());

    // client -> server: 240 kB copied through 16 KiB buffers (8 of them at the server), one
    // payload of 200 kB (above read_threshold, so read), more copied chunks
    let copied = |seed| pattern(60_000, seed);
    let chunks = [
        Bytes::from_static(b"head"),
        copied(1),
        copied(2),
        pattern(200_000, 3),
        copied(4),
        copied(5),
        Bytes::from_static(b"tail"),
    ];
    let expected: Vec<u8> = chunks.concat();
    let mut flushed = 0;
    for c in chunks {
        cl.queue(c);
    }
    assert_eq!(cl.queued(), expected.len());
    let (mut sbuf, mut cbuf) = (BytesMut::new(), BytesMut::new());
    let (mut sgot, mut cgot) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while sgot.len() < expected.len() || cl.queued() > 0 {
        if cl.queued() > 0 {
            flushed += cl.flush().expect("client flush");
        }
        cl.poll();
        pump(sl.as_mut(), &mut sbuf, &mut sgot);
        assert!(start.elapsed() < HANG, "hang guard: the stream");
    }
    assert!(sgot == expected, "stream corrupted or reordered");
    assert_eq!(
        flushed,
        expected.len(),
        "flush reports the bytes that left the queue"
    );
    // server -> client on the same link
    sl.queue(Bytes::from_static(b"reply"));
    flushed = sl.flush().unwrap();
    assert_eq!(flushed, 5);
    wait_until("the reply", || {
        pump(cl.as_mut(), &mut cbuf, &mut cgot);
        pump(sl.as_mut(), &mut sbuf, &mut sgot);
        cgot.len() >= 5
    });
    assert_eq!(&cgot[..], b"reply");
    wait_until("READ done at the client", || {
        pump(cl.as_mut(), &mut cbuf, &mut cgot);
        pump(sl.as_mut(), &mut sbuf, &mut sgot);
        client.counters().exposed_regions == 0
    });
    let (cc, sc) = (client.counters(), server.counters());
    assert_eq!((cc.live_links, sc.live_links), (1, 1), "{cc:?} {sc:?}");
    assert_eq!(cc.read_requests, 1, "{cc:?}");
    assert_eq!(sc.reads, 1, "{sc:?}");
    assert_eq!(
        sc.read_copies, 0,
        "the payload was copied, not spliced: {sc:?}"
    );
    assert_eq!(cc.bytes_out, expected.len() as u64, "{cc:?}");
    assert_eq!(sc.bytes_in, expected.len() as u64, "{sc:?}");
    assert_eq!(cc.completions_with_error + sc.completions_with_error, 0);
    assert!(
        cc.credit_stalls > 0,
        "the server never ran the client out of credits: {cc:?}"
    );
    assert!(sl.failure().is_none() && cl.failure().is_none());

    // the client closes: its QP lingers, its counters move to the past
    let linger = cl.close();
    assert!(
        linger >= Duration::from_secs(1),
        "QPs must outlive the disconnect: {linger:?}"
    );
    let cc = client.counters();
    assert_eq!(cc.live_links, 0, "{cc:?}");
    assert_eq!(
        cc.bytes_out,
        expected.len() as u64,
        "totals survive the link: {cc:?}"
    );
    // the server learns it from rdma_cm (its link is not polled meanwhile, so the failure can
    // only come from the transport's DISCONNECTED)
    wait_until("DISCONNECTED at the server", || {
        seen.poll(&[&server, &client]);
        sl.failure().is_some()
    });
    let why = sl.failure().unwrap().to_string();
    assert!(why.contains("DISCONNECTED"), "{why}");
    drop(cl);
    drop(sl);
    assert_eq!(server.counters().live_links, 0);
}

/// A peer that does not listen over rdma_cm (a TCP-only node, say): the dial fails as
/// unreachable, so a node falls back to its next transport; the error names the peer.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn dial_to_a_port_without_an_rdma_listener_is_unreachable() {
    let (client, _) = listening(small_opts());
    let ip = rdma_ip();
    let peer = SocketAddr::new(ip, free_port(ip));
    let mut seen = Seen::default();
    match client.dial(peer, 9) {
        Err(e) => seen.failed.push((0, 9, e)),
        Ok(Dialing::Pending) => {}
        Ok(Dialing::Ready(_)) => panic!("an RDMA dial is never ready at once"),
    }
    seen.until(&[&client], "the dial's failure", |s| {
        assert!(
            s.dialed.is_empty(),
            "connected to {peer}, where nobody listens"
        );
        !s.failed.is_empty()
    });
    let (_, dial, e) = &seen.failed[0];
    assert_eq!(*dial, 9);
    assert!(e.unreachable, "must fall back, not retry RDMA: {e}");
    assert!(e.message.contains(&peer.to_string()), "{e}");
}

/// A dial the node gave up on hands out no link, and leaves nothing counted as live.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn cancelled_dial_hands_out_no_link() {
    let (server, saddr) = listening(small_opts());
    let (client, _) = listening(small_opts());
    assert!(matches!(client.dial(saddr, 5), Ok(Dialing::Pending)));
    client.cancel(5);
    let mut seen = Seen::default();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        seen.poll(&[&server, &client]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(seen.dialed.is_empty() && seen.failed.is_empty());
    assert_eq!(client.counters().live_links, 0);
    drop(seen);
    assert_eq!(server.counters().live_links, 0);
}

/// rdma_cm (RDMA_PS_TCP over RoCE) has a port space of its own: it listens on the IP and port
/// a kernel TCP socket already listens on, and the other way round, and both accept. A node
/// listens on one address over TCP and RDMA and relies on this.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn rdma_cm_and_kernel_tcp_listen_on_the_same_address() {
    let ip: IpAddr = rdma_ip();
    // TCP first, then rdma_cm on its port
    let tcp = TcpListener::bind((ip, 0)).expect("tcp listen");
    let port = tcp.local_addr().unwrap().port();
    let rdma = RdmaTransport::new(small_opts());
    let bound = rdma
        .listen(SocketAddr::new(ip, port))
        .unwrap_or_else(|e| panic!("rdma_cm cannot listen where TCP listens ({ip}:{port}): {e}"));
    assert_eq!(bound.port(), port);
    TcpStream::connect((ip, port)).expect("tcp connect beside the rdma_cm listener");
    let (client, _) = listening(small_opts());
    client.dial(bound, 1).expect("dial");
    let mut seen = Seen::default();
    seen.until(
        &[&rdma, &client],
        "an RDMA connection on the shared port",
        |s| {
            assert!(s.failed.is_empty(), "dial failed: {}", s.failed[0].2);
            !s.dialed.is_empty() && !s.accepted.is_empty()
        },
    );
    drop(tcp);

    // rdma_cm first (any port), then TCP on its port
    let (rdma2, bound2) = listening(small_opts());
    let tcp2 = TcpListener::bind(bound2)
        .unwrap_or_else(|e| panic!("TCP cannot listen where rdma_cm listens ({bound2}): {e}"));
    TcpStream::connect(bound2).expect("tcp connect");
    tcp2.accept().expect("tcp accept");
    client.dial(bound2, 2).expect("dial");
    seen.until(
        &[&rdma2, &client],
        "an RDMA connection on the second port",
        |s| {
            assert!(s.failed.is_empty(), "dial failed: {}", s.failed[0].2);
            s.dialed.iter().any(|d| d.1 == 2)
        },
    );
}

/// Without a device, listen (and so a node's start) fails saying what to do; with one,
/// naming a device that does not exist fails naming it.
#[test]
fn listen_without_a_device_says_what_to_do() {
    let name = EntityName {
        kind: EntityType::OSD,
        num: 0,
    };
    if has_device() {
        let opts = RdmaOptions {
            device: Some("nosuchdev9".into()),
            ..small_opts()
        };
        let bind = SocketAddr::new(rdma_ip(), 0);
        let e = RdmaTransport::new(opts.clone()).listen(bind).unwrap_err();
        assert!(
            e.contains("nosuchdev9") && e.contains("no RDMA device found"),
            "{e}"
        );
        let mut cfg = RdmaConfig::new(name, bind);
        cfg.rdma = opts;
        let e = common::messenger(cfg, Arc::new(Collect::default()))
            .start()
            .unwrap_err();
        assert!(matches!(e, MessengerError::Bind { .. }), "{e:?}");
        assert!(format!("{e:?}").contains("nosuchdev9"), "{e:?}");
        return;
    }
    let bind: SocketAddr = "10.0.2.15:0".parse().unwrap();
    let e = RdmaTransport::new(RdmaOptions::default())
        .listen(bind)
        .unwrap_err();
    assert!(e.starts_with("no RDMA device found"), "{e}");
    assert!(e.contains("rdma link add rxe0 type rxe netdev"), "{e}");
    assert!(e.contains("transport = \"tcp\""), "{e}");
    let m = common::messenger(RdmaConfig::new(name, bind), Arc::new(Collect::default()));
    let e = m.start().unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(text.contains("no RDMA device found"), "{text}");
}
