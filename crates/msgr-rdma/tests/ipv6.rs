//! IPv6 on real verbs: rdma_cm resolves IPv6 addresses, the GID is the address itself (RoCE
//! v2), a messenger pair talks over IPv6, and an IPv6 address with no RDMA device behind it
//! gives an error that says so.
//!
//! Every test here is ignored by a plain `cargo test`, and FAILS (never passes silently) when
//! forced with `--include-ignored` without an RDMA device and an IPv6 address
//! on its netdev. Run the binary inside the Soft-RoCE VM, which provides both:
//!
//!   cargo test -p msgr-rdma --test ipv6 --no-run   # prints the test binary path
//!   scripts/rdma-vm/run.sh target/debug/deps/ipv6-<hash> --test-threads 1 --include-ignored
//!
//! The VM exports `RDMA_IP6` (a ULA on the netdev under `rxe0`) and `NO_RDMA_IP6` (a ULA on a
//! second netdev that has no RDMA device). Elsewhere set them yourself, e.g.
//! `ip -6 addr add fd00:6d73:6772::15/64 dev ETH nodad; export RDMA_IP6=fd00:6d73:6772::15`.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use common::{from_env, small_opts, wait_until, Collect};
use msgr_core::api::Messenger;
use msgr_core::message::Message;
use msgr_core::policy::Policy;
use msgr_core::wire::EntityType;
use msgr_rdma::endpoint::{Endpoint, EndpointEvent};
use msgr_rdma::link::{fmt_gid, Hello, Link};
use msgr_rdma::{RdmaError, RdmaMessenger, RdmaOptions};

const HOW_TO_RUN: &str = "Run the test binary inside the Soft-RoCE VM (rxe0, RDMA_IP6 and \
     NO_RDMA_IP6 are set up there): \
     `cargo test -p msgr-rdma --test ipv6 --no-run` then \
     `scripts/rdma-vm/run.sh target/debug/deps/ipv6-<hash> --test-threads 1 --include-ignored`";

/// The IPv6 address of the netdev under the RDMA device.
fn rdma_ip6() -> Ipv6Addr {
    from_env(
        "RDMA_IP6",
        "IPv6 address of the netdev under the RDMA device",
        HOW_TO_RUN,
    )
}

/// An IPv6 address on a netdev that has no RDMA device.
fn no_rdma_ip6() -> Ipv6Addr {
    from_env(
        "NO_RDMA_IP6",
        "IPv6 address of a netdev without an RDMA device",
        HOW_TO_RUN,
    )
}

fn v6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ip), port)
}

fn endpoint() -> Endpoint {
    let opts = RdmaOptions {
        buffer_size: 4096,
        send_buffers: 4,
        recv_buffers: 4,
        ..Default::default()
    };
    Endpoint::new(opts.clone(), Hello::from_options(&opts)).expect("endpoint on the RDMA device")
}

/// Process rdma_cm events until `done` says so (or the hang guard trips).
fn pump_until(
    ep: &mut Endpoint,
    what: &str,
    mut done: impl FnMut(&mut Vec<EndpointEvent>) -> bool,
) -> Vec<EndpointEvent> {
    let mut seen = Vec::new();
    wait_until(what, || {
        ep.process(&mut |_peer, _hello| true, &mut seen)
            .expect("rdma_cm events");
        done(&mut seen)
    });
    seen
}

// ---------------------------------------------------------------------------------------------
// Addressing

/// rdma_cm binds, resolves and connects by IPv6 address, and the link's GID is that address:
/// for RoCE v2 the GID of an IPv6 address is the address itself (an IPv4 one is v4-mapped).
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn ipv6_connection_uses_the_address_as_its_gid() {
    let ip = rdma_ip6();
    let mut ep = endpoint();
    let bound = ep.listen(v6(ip, 0)).expect("listen on RDMA_IP6");
    assert!(bound.is_ipv6(), "bound to {bound}");
    assert_eq!(bound.ip(), IpAddr::V6(ip));
    assert_ne!(bound.port(), 0, "port not filled in");
    let token = ep.connect(bound).expect("connect to RDMA_IP6");

    let events = pump_until(&mut ep, "both ends of the self connection", |evs| {
        if let Some(EndpointEvent::ConnectFailed { error, .. }) = evs
            .iter()
            .find(|e| matches!(e, EndpointEvent::ConnectFailed { .. }))
        {
            panic!("connect over IPv6 failed: {error}");
        }
        evs.iter()
            .filter(|e| matches!(e, EndpointEvent::Established { .. }))
            .count()
            == 2
    });
    let mut links: Vec<(bool, SocketAddr, Box<Link>)> = Vec::new();
    for ev in events {
        if let EndpointEvent::Established {
            token: t,
            link,
            outgoing,
            peer,
            ..
        } = ev
        {
            assert_eq!(outgoing, t == token, "only our connect is outgoing");
            links.push((outgoing, peer, link));
        }
    }
    for (outgoing, peer, link) in &links {
        let side = if *outgoing { "client" } else { "server" };
        assert_eq!(peer.ip(), IpAddr::V6(ip), "{side} sees peer {peer}");
        let id = link.id();
        let local = id.local_addr().expect("local address");
        let remote = id.peer_addr().expect("peer address");
        assert_eq!(local.ip(), IpAddr::V6(ip), "{side} local {local}");
        assert_eq!(remote.ip(), IpAddr::V6(ip), "{side} remote {remote}");
        let sgid = id.sgid().expect("bound id has a GID");
        assert_eq!(
            sgid,
            ip.octets(),
            "{side}: GID {} is not the IPv6 address {ip}",
            fmt_gid(&sgid)
        );
        let in_table = (0..16u8).any(|i| id.query_gid(i).ok() == Some(sgid));
        assert!(in_table, "GID {} not in the port's table", fmt_gid(&sgid));
    }
    // the server's view of the client's port is the client's source port
    let client_port = links
        .iter()
        .find(|l| l.0)
        .and_then(|l| l.2.id().local_addr())
        .unwrap()
        .port();
    let server_sees = links.iter().find(|l| !l.0).unwrap().1;
    assert_eq!(server_sees.port(), client_port);
}

// ---------------------------------------------------------------------------------------------
// No RDMA device behind the address

/// Connect to `peer` and return the error, whether `connect` gives it at once or it arrives as
/// `ConnectFailed` after address resolution.
fn connect_error(peer: SocketAddr) -> RdmaError {
    let mut ep = endpoint();
    let token = match ep.connect(peer) {
        Err(e) => return e,
        Ok(t) => t,
    };
    let events = pump_until(&mut ep, "connect failure", |evs| {
        evs.iter().any(|e| {
            matches!(
                e,
                EndpointEvent::ConnectFailed { .. } | EndpointEvent::Established { .. }
            )
        })
    });
    for ev in events {
        match ev {
            EndpointEvent::ConnectFailed { token: t, error } if t == token => return error,
            EndpointEvent::Established { .. } => {
                panic!("connected to {peer}, which has no RDMA device behind it")
            }
            _ => {}
        }
    }
    unreachable!("pump_until returned without a connect outcome")
}

/// What a "no RDMA device behind this address" error must tell the user.
fn assert_clear(err: &RdmaError, peer: SocketAddr) {
    let text = err.to_string();
    println!("connect to {peer}: {text}");
    assert!(
        matches!(
            err,
            RdmaError::Unreachable { .. } | RdmaError::AddressNotRdma { .. }
        ),
        "wrong kind of error for {peer}: {err:?}"
    );
    // names the address as written ([v6]:port)
    assert!(
        text.contains(&peer.to_string()),
        "does not name {peer}: {text}"
    );
    // says what to check
    assert!(
        text.contains("RDMA-capable network") || text.contains("netdev under the RDMA device"),
        "no hint about what to do: {text}"
    );
}

/// An address on a netdev without an RDMA device: rdma_cm finds a route and a source address
/// but no device for them.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn ipv6_peer_on_a_netdev_without_rdma_gives_a_clear_error() {
    let peer = v6(no_rdma_ip6(), 6800);
    let err = connect_error(peer);
    assert_clear(&err, peer);
    let text = err.to_string();
    assert!(
        text.contains("No such device") || text.contains("not on an RDMA device"),
        "does not say there is no device: {text}"
    );
    // the next address in that subnet: routed the same way, not local
    let mut octets = no_rdma_ip6().octets();
    octets[15] ^= 0x80;
    let remote = v6(Ipv6Addr::from(octets), 6800);
    assert_clear(&connect_error(remote), remote);
}

/// An address nothing routes to (the documentation prefix; the VM has no default IPv6 route).
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn ipv6_peer_without_a_route_gives_a_clear_error() {
    rdma_ip6();
    let peer = v6("2001:db8::1".parse().unwrap(), 6800);
    // With a route (a default one), rdma_cm would resolve it and the connect would time out
    // after its retries instead (a different failure, not checked here).
    let routed = std::net::UdpSocket::bind("[::]:0").and_then(|s| s.connect(peer));
    assert!(
        routed.is_err(),
        "this machine has a route to {peer} (a default IPv6 route?), so the no-route case \
         cannot be checked: this test did NOT run. The Soft-RoCE VM has no such route. {HOW_TO_RUN}"
    );
    let err = connect_error(peer);
    assert_clear(&err, peer);
}

/// Listening on an IPv6 address that is not on an RDMA device is refused at once, with the
/// address in the error (a messenger would otherwise start but never accept anything).
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn ipv6_listen_on_a_netdev_without_rdma_is_refused() {
    let addr = v6(no_rdma_ip6(), 0);
    let mut ep = endpoint();
    let err = ep.listen(addr).expect_err("listen must fail");
    let text = err.to_string();
    assert!(matches!(err, RdmaError::AddressNotRdma { .. }), "{err:?}");
    assert!(text.contains(&addr.ip().to_string()), "{text}");
    assert!(text.contains("rdma link show"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A messenger pair over IPv6

/// OSD `num` on RDMA_IP6 (any port), lossless with its OSD peers.
fn node(num: i64, d: Arc<Collect>) -> RdmaMessenger {
    let cfg = common::config(EntityType::OSD, num, v6(rdma_ip6(), 0), small_opts());
    let m = common::messenger(cfg, d);
    m.set_policy(EntityType::OSD, Policy::lossless_peer());
    m
}

/// Payload of request `i`: small ones, and every 25th spans several 16 KiB receive buffers.
fn request(i: u64) -> Message {
    let front = format!("req {i} over ipv6");
    let data_len = if i.is_multiple_of(25) {
        40_000 + i as usize
    } else {
        i as usize % 300
    };
    let data: Vec<u8> = (0..data_len).map(|b| (b as u64 * 31 + i) as u8).collect();
    Message::new(100, front).with_data(data).with_tid(i)
}

/// Two OSDs with lossless peer sessions, both bound to RDMA_IP6: A sends, B echoes each message
/// back on the same session. Halfway, A's QP is forced into error: the session must redial the
/// IPv6 address it learned from the handshake and replay, so both directions still see every
/// message once, in order.
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn messenger_pair_over_ipv6_lossless_both_ways() {
    let ip = rdma_ip6();
    let ad = Arc::new(Collect::default());
    let bd = Arc::new(Collect {
        echo: true,
        ..Default::default()
    });
    let a = node(0, ad.clone());
    let b = node(1, bd.clone());
    a.start().expect("start A on RDMA_IP6");
    b.start().expect("start B on RDMA_IP6");
    for (who, m) in [("A", &a), ("B", &b)] {
        let addr = m.my_addr().addr.expect("bound address");
        assert_eq!(addr.ip(), IpAddr::V6(ip), "{who} address {addr}");
        assert_ne!(addr.port(), 0, "{who} port not filled in");
    }

    let conn = a.connect_to(EntityType::OSD, &b.my_addr()).unwrap();
    let total = 400u64;
    for i in 0..total {
        conn.send_message(request(i)).unwrap();
        if i == total / 2 {
            ad.wait_for("some replies before the fault", |c| {
                !c.msgs.lock().is_empty()
            });
            assert!(a.inject_qp_error(&b.my_addr()), "no link to B to fault");
        }
    }
    bd.wait_for("all requests at B", |c| c.msgs.lock().len() as u64 >= total);
    ad.wait_for("all replies at A", |c| c.msgs.lock().len() as u64 >= total);

    for (who, d, msg_type) in [("B", &bd, 100u16), ("A", &ad, 101u16)] {
        let got = d.msgs.lock();
        let tids: Vec<u64> = got.iter().map(|m| m.tid).collect();
        assert_eq!(
            tids,
            (0..total).collect::<Vec<_>>(),
            "{who}: lost, duplicated or reordered"
        );
        for m in got.iter() {
            let want = request(m.tid);
            assert_eq!(m.msg_type, msg_type, "{who} tid {}", m.tid);
            assert_eq!(m.front, want.front, "{who} tid {}", m.tid);
            assert!(
                m.data == want.data,
                "{who}: data of tid {} corrupted",
                m.tid
            );
        }
    }
    // each side knows the other by its IPv6 messenger address (msgr1 entity_addr, AF_INET6)
    assert!(
        ad.from.lock().iter().all(|p| *p == b.my_addr()),
        "A saw {:?}",
        ad.from.lock()[0]
    );
    assert!(
        bd.from
            .lock()
            .iter()
            .all(|p| p.addr.map(|s| s.ip()) == Some(IpAddr::V6(ip))),
        "B saw {:?}",
        bd.from.lock()[0]
    );

    assert!(conn.counters().reconnects >= 1, "{:?}", conn.counters());
    assert_eq!(*ad.resets.lock(), 0, "lossless session was reset");
    assert_eq!(*bd.resets.lock(), 0, "lossless session was reset");
    let rc = a.rdma_counters();
    assert_eq!(rc.rnr_events, 0, "{rc:?}");
    assert!(
        rc.completions_with_error >= 1,
        "the injected fault was not seen: {rc:?}"
    );
    a.shutdown();
    b.shutdown();
}

/// The messenger reports a dial to an IPv6 address with no RDMA device as a fault whose text
/// names the address, and keeps the lossless session (it retries, nothing is reset).
#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn messenger_dial_to_ipv6_without_rdma_reports_the_address() {
    let peer = v6(no_rdma_ip6(), 6800);
    let d = Arc::new(Collect::default());
    let m = node(0, d.clone());
    m.start().expect("start on RDMA_IP6");
    let peer_addr = msgr_core::wire::EntityAddr {
        kind: 0,
        nonce: 7,
        addr: Some(peer),
    };
    let conn = m.connect_to(EntityType::OSD, &peer_addr).unwrap();
    conn.send_message(Message::new(1, "nobody gets this"))
        .unwrap();
    d.wait_for("a fault", |c| !c.faults.lock().is_empty());
    let fault = d.faults.lock()[0].clone();
    assert!(
        fault.contains(&peer.to_string()),
        "fault does not name {peer}: {fault}"
    );
    assert!(fault.contains("RDMA"), "{fault}");
    assert!(!conn.is_connected());
    assert_eq!(
        *d.resets.lock(),
        0,
        "a lossless session is kept and retried"
    );
    m.shutdown();
}
