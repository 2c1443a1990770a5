//! Keepalives and deadlines: KEEPALIVE2 round trips, the handshake and idle timeouts.

use super::*;

#[test]
fn keepalive2_is_acked_with_echoed_stamp() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    let t = p.now + Duration::from_millis(1500);
    p.a.s.send_keepalive(t);
    p.now = t + Duration::from_millis(3);
    p.exchange();
    let ack = p.a.events.iter().find_map(|e| match e {
        SessionEvent::KeepaliveAck { stamp, rtt } => Some((*stamp, *rtt)),
        _ => None,
    });
    assert_eq!(
        ack,
        Some(((1, 500_000_000), Some(Duration::from_millis(3))))
    );
}

#[test]
fn handshake_timeout_faults_the_link() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.link_up(p.now);
    let t = p.a.s.poll_timeout().expect("handshake timer");
    assert_eq!(t, p.now + Duration::from_secs(30));
    p.a.s.handle_timeout(t);
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(e, SessionEvent::CloseLink)));
    assert!(p.a.has(|e| matches!(
        e,
        SessionEvent::Faulted {
            error: SessionError::HandshakeTimeout(_),
            will_reconnect: true
        }
    )));
}

#[test]
fn idle_timeout_and_periodic_keepalive() {
    let now = Instant::now();
    let mut ca = SessionConfig::new(EntityName::new(EntityType::OSD, 1), addr(6800, 42));
    ca.idle_timeout = Some(Duration::from_secs(10));
    ca.keepalive_interval = Some(Duration::from_secs(3));
    let cb = config(EntityType::OSD, 6900, Policy::lossless_peer());
    let a = Session::connect(
        Arc::new(ca),
        addr(6900, 42),
        EntityType::OSD,
        Policy::lossless_peer(),
        now,
    );
    let b = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 1)), now);
    let mut p = Pair::from_sessions(a, b, now);
    p.link_up();
    p.exchange();
    // Keepalives every 3 s keep the link busy: the peer's acks count as traffic.
    let acks = |p: &Pair| {
        p.a.events
            .iter()
            .filter(|e| matches!(e, SessionEvent::KeepaliveAck { .. }))
            .count()
    };
    while acks(&p) < 5 {
        let t = p.a.s.poll_timeout().unwrap();
        assert!(t <= p.now + Duration::from_secs(3));
        p.now = t;
        p.a.s.handle_timeout(t);
        p.exchange();
        assert_eq!(p.a.s.state(), SessionState::Open);
    }
    assert_eq!(p.now, p.a.s.born + Duration::from_secs(15));
    // Now the peer goes silent.
    let mut t = p.now;
    while p.a.s.state() == SessionState::Open {
        t = p.a.s.poll_timeout().unwrap();
        p.a.s.handle_timeout(t);
        let mut sink = Vec::new();
        while p.a.s.poll_transmit(&mut sink) > 0 {}
    }
    assert_eq!(t, p.now + Duration::from_secs(10));
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(
        e,
        SessionEvent::Faulted {
            error: SessionError::IdleTimeout(_),
            ..
        }
    )));
}
