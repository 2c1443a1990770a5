//! MemNetwork / MemLink / MemTransport without a node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msgr_core::session::SessionError;
use msgr_node::{Clock, Dialing, Link, ReadEnd, Transport, TransportEvent, VirtualClock};

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn send(l: &mut MemLink, b: &'static [u8]) {
    l.queue(Bytes::from_static(b));
    assert_eq!(l.flush().expect("flush"), b.len());
    assert_eq!(l.queued(), 0);
}

fn read_all(l: &mut MemLink) -> (Vec<u8>, ReadEnd) {
    let mut buf = BytesMut::new();
    let (n, end) = l.read(&mut buf, 0);
    assert_eq!(n, buf.len());
    (buf.to_vec(), end)
}

fn failed_with(end: &ReadEnd, text: &str) -> bool {
    matches!(end, ReadEnd::Failed(SessionError::LinkFailed(m)) if m.contains(text))
}

#[test]
fn bytes_flow_both_ways_in_order() {
    let net = MemNetwork::new();
    let (mut a, mut b) = MemLink::pair(&net, None, None);
    assert_eq!(a.transport(), "mem");
    send(&mut a, b"hel");
    send(&mut a, b"lo");
    send(&mut b, b"back");
    let (got, end) = read_all(&mut b);
    assert_eq!(got, b"hello");
    assert!(matches!(end, ReadEnd::Drained));
    let (got, _) = read_all(&mut a);
    assert_eq!(got, b"back");
    let (got, end) = read_all(&mut a);
    assert!(got.is_empty() && matches!(end, ReadEnd::Drained));
}

#[test]
fn reads_respect_the_budget() {
    let net = MemNetwork::new();
    let (mut a, mut b) = MemLink::pair(&net, None, None);
    let big = Bytes::from(vec![7u8; READ_BUDGET + 10]);
    a.queue(big.clone());
    a.flush().unwrap();
    let mut buf = BytesMut::new();
    let (n, end) = b.read(&mut buf, 0);
    assert_eq!(n, READ_BUDGET);
    assert!(matches!(end, ReadEnd::Yield));
    let (n, end) = b.read(&mut buf, 0);
    assert_eq!(n, 10);
    assert!(matches!(end, ReadEnd::Drained));
    assert_eq!(buf, big);
    // A session waiting for a larger body may take it in one read.
    a.queue(big.clone());
    a.flush().unwrap();
    let mut buf = BytesMut::new();
    let (n, end) = b.read(&mut buf, big.len());
    assert_eq!(n, big.len());
    assert!(matches!(end, ReadEnd::Drained));
}

#[test]
fn close_delivers_what_was_flushed_then_the_end() {
    let net = MemNetwork::new();
    let (mut a, mut b) = MemLink::pair(&net, None, None);
    send(&mut a, b"last words");
    a.close();
    let (got, end) = read_all(&mut b);
    assert_eq!(got, b"last words");
    assert!(failed_with(&end, "mem peer closed"), "{end:?}");
    // Writing to a closed peer is not an error yet (a socket's write would not be either).
    b.queue(Bytes::from_static(b"x"));
    assert_eq!(b.flush().unwrap(), 1);
    // Our own end is closed for good.
    a.queue(Bytes::from_static(b"y"));
    assert!(a.flush().is_err());
}

#[test]
fn drop_closes_like_close() {
    let net = MemNetwork::new();
    let (a, mut b) = MemLink::pair(&net, None, None);
    drop(a);
    let (_, end) = read_all(&mut b);
    assert!(failed_with(&end, "mem peer closed"), "{end:?}");
}

#[test]
fn injected_failure_breaks_both_directions() {
    let net = MemNetwork::new();
    let (mut a, mut b) = MemLink::pair(&net, None, None);
    send(&mut a, b"unread");
    b.inject_failure();
    assert!(b.failure().is_some());
    let (got, end) = read_all(&mut a);
    assert!(got.is_empty());
    assert!(
        failed_with(&end, "mem peer closed the link: injected failure"),
        "{end:?}"
    );
    let (got, end) = read_all(&mut b);
    assert!(got.is_empty(), "unread bytes are lost");
    assert!(
        failed_with(&end, "mem link broken: injected failure"),
        "{end:?}"
    );
    a.queue(Bytes::from_static(b"z"));
    assert!(a.flush().is_err());
    assert_eq!(net.live_links(), 0);
}

#[test]
fn listen_dial_accept_through_transports() {
    let net = MemNetwork::new();
    let server = MemTransport::new(net.clone());
    let client = MemTransport::new(net.clone());
    let bound = server.listen(addr(0)).unwrap();
    assert_ne!(bound.port(), 0);
    assert!(
        MemTransport::new(net.clone()).listen(bound).is_err(),
        "same address twice"
    );
    let caddr = client.listen(addr(6801)).unwrap();
    assert_eq!(caddr, addr(6801));
    assert_eq!(net.listeners(), vec![addr(6801), bound]);

    let Ok(Dialing::Ready(mut dialed)) = client.dial(bound, 1) else {
        panic!("dial failed");
    };
    let mut out = Vec::new();
    server.poll(true, &mut out);
    let Some(TransportEvent::Accepted { mut link, peer }) = out.pop() else {
        panic!("nothing accepted");
    };
    assert_eq!(peer.ip(), caddr.ip());
    dialed.queue(Bytes::from_static(b"ping"));
    dialed.flush().unwrap();
    let mut buf = BytesMut::new();
    link.read(&mut buf, 0);
    assert_eq!(&buf[..], b"ping");

    // Nobody at that address: unreachable (the node tries its next transport).
    match client.dial(addr(9), 2) {
        Err(e) => assert!(
            e.unreachable && e.message.contains("no mem listener"),
            "{e}"
        ),
        Ok(_) => panic!("dialed nobody"),
    }
    // After stop, the address is free again and dials are refused.
    server.stop();
    assert!(client.dial(bound, 3).is_err());
    assert!(MemTransport::new(net.clone()).listen(bound).is_ok());
}

#[test]
fn a_dial_not_accepted_before_stop_reads_the_end() {
    let net = MemNetwork::new();
    let server = MemTransport::new(net.clone());
    let bound = server.listen(addr(0)).unwrap();
    let Ok(Dialing::Ready(mut dialed)) = MemTransport::new(net.clone()).dial(bound, 1) else {
        panic!("dial failed");
    };
    let mut out = Vec::new();
    server.poll(false, &mut out);
    assert!(out.is_empty());
    let mut buf = BytesMut::new();
    assert!(failed_with(&dialed.read(&mut buf, 0).1, "mem peer closed"));
}

fn sim_net(clock: &Arc<VirtualClock>, cfg: SimConfig) -> Arc<MemNetwork> {
    MemNetwork::simulated(Clock::Virtual(clock.clone()), cfg)
}

#[test]
fn simulated_delays_keep_each_direction_in_order() {
    let clock = VirtualClock::new();
    let cfg = SimConfig {
        seed: 7,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
        kill_one_in: 0,
    };
    let net = sim_net(&clock, cfg);
    let (mut a, mut b) = MemLink::pair(&net, None, None);
    let payload: Vec<u8> = (0..200u8).collect();
    for chunk in payload.chunks(7) {
        a.queue(Bytes::copy_from_slice(chunk));
        a.flush().unwrap();
        clock.advance(Duration::from_micros(300));
    }
    assert_eq!(read_all(&mut b).0, b"", "nothing arrives before its time");
    let mut got = Vec::new();
    while let Some(t) = net.next_delivery() {
        clock.advance_to(t);
        assert!(net.deliver_due() > 0);
        got.extend(read_all(&mut b).0);
    }
    assert_eq!(got, payload);
    assert_eq!(net.in_flight(), 0);
    assert_eq!(net.stats().delivered, payload.chunks(7).count() as u64);
}

#[test]
fn simulated_close_arrives_after_the_data() {
    let clock = VirtualClock::new();
    let cfg = SimConfig {
        seed: 1,
        max_delay: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let net = sim_net(&clock, cfg);
    let (mut a, mut b) = MemLink::pair(&net, None, None);
    send(&mut a, b"data");
    a.close();
    assert!(matches!(read_all(&mut b).1, ReadEnd::Drained));
    assert_eq!(net.deliver_all(), 2);
    let (got, end) = read_all(&mut b);
    assert_eq!(got, b"data");
    assert!(failed_with(&end, "mem peer closed"), "{end:?}");
}

#[test]
fn simulated_drops_break_links_and_replay_by_seed() {
    let run = |seed: u64| {
        let clock = VirtualClock::new();
        let cfg = SimConfig {
            seed,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(5),
            kill_one_in: 4,
        };
        let net = sim_net(&clock, cfg);
        let mut trace = Vec::new();
        for i in 0..20 {
            let (mut a, _b) = MemLink::pair(&net, None, None);
            let mut flushes = 0;
            while a.failure().is_none() && flushes < 50 {
                a.queue(Bytes::from_static(b"x"));
                let _ = a.flush();
                flushes += 1;
            }
            trace.push((i, flushes, net.next_delivery().map(|t| t - clock.now())));
        }
        (trace, net.stats())
    };
    let (t1, s1) = run(42);
    assert!(s1.kills > 0);
    assert_eq!((t1.clone(), s1.clone()), run(42), "same seed, same run");
    assert_ne!(t1, run(43).0, "another seed, another run");
}

#[test]
fn partitions_break_links_and_refuse_dials_until_healed() {
    let net = MemNetwork::new();
    let a = MemTransport::new(net.clone());
    let b = MemTransport::new(net.clone());
    let c = MemTransport::new(net.clone());
    let (aa, ba, ca) = (
        a.listen(addr(1)).unwrap(),
        b.listen(addr(2)).unwrap(),
        c.listen(addr(3)).unwrap(),
    );
    let Ok(Dialing::Ready(ab)) = a.dial(ba, 1) else {
        panic!()
    };
    let Ok(Dialing::Ready(ac)) = a.dial(ca, 2) else {
        panic!()
    };
    assert_eq!(net.live_links(), 2);
    net.partition(ba, aa);
    assert!(ab.failure().is_some());
    assert!(ac.failure().is_none());
    match a.dial(ba, 3) {
        Err(e) => assert!(!e.unreachable && e.message.contains("partitioned"), "{e}"),
        Ok(_) => panic!("dialed across a partition"),
    }
    assert!(matches!(b.dial(ca, 4), Ok(Dialing::Ready(_))));
    net.heal(aa, ba);
    assert!(matches!(a.dial(ba, 5), Ok(Dialing::Ready(_))));
    assert_eq!(net.kill_node(ca), 1 + 1, "a-c and b-c");
    assert!(ac.failure().is_some());
}
