//! Opening a session: the handshake both ways, what each side checks (protocol version,
//! features, the server's nonce), learning our own address, and connect races.

use crate::wire::features::DEFAULT_SUPPORTED;

use super::*;

#[test]
fn handshake_opens_both_sides() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.link_up();
    let (ea, eb) = p.exchange();
    assert_eq!((ea, eb), (None, None));
    assert_eq!(p.a.s.state(), SessionState::Open);
    assert_eq!(p.b.s.state(), SessionState::Open);
    assert!(p.a.has(
        |e| matches!(e, SessionEvent::Connected { features, .. } if *features == DEFAULT_SUPPORTED)
    ));
    assert!(p.b.has(
        |e| matches!(e, SessionEvent::Accepted { peer_addr, .. } if *peer_addr == addr(6800, 42))
    ));
    // Both count this as the first open: connect_seq 1 on both sides.
    assert_eq!((p.a.s.connect_seq(), p.b.s.connect_seq()), (1, 1));
    assert_eq!(p.b.s.peer_type(), Some(EntityType::OSD));
}

#[test]
fn server_decides_lossy() {
    // A lossless-minded client talking to a lossy server becomes lossy.
    let p = Pair::open(Policy::lossless_client(), Policy::stateless_server());
    assert!(p.a.s.policy().lossy);
}

/// A lossy client (client.5000) dialing `dial`, which it takes for a `peer_type`, and a
/// monitor (mon.6789, stateless server) accepting its link; nothing exchanged yet.
fn client_to_mon(dial: EntityAddr, peer_type: EntityType) -> Pair {
    let now = Instant::now();
    let ca = config(EntityType::CLIENT, 5000, Policy::lossy_client());
    let cb = config(EntityType::MON, 6789, Policy::stateless_server());
    let a = Session::connect(ca, dial, peer_type, Policy::lossy_client(), now);
    let b = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 1)), now);
    Pair::from_sessions(a, b, now)
}

#[test]
fn wrong_protocol_version_gets_badprotover() {
    // An OSD dialing a monitor with OSD-internal expectations: make the server a MON.
    // The client believes the peer is an OSD, so it sends protocol 24; the MON wants 15.
    let mut p = client_to_mon(addr(6789, 42), EntityType::OSD);
    p.link_up();
    let (ea, _) = p.exchange();
    assert_eq!(
        ea,
        Some(SessionError::BadProtocolVersion {
            theirs: 15,
            ours: 24
        })
    );
}

#[test]
fn missing_features_get_features_reply() {
    let now = Instant::now();
    let ca = config(EntityType::OSD, 6800, Policy::lossless_peer());
    let mut cb = SessionConfig::new(EntityName::new(EntityType::OSD, 2), addr(6900, 42));
    cb.features_required = 1 << 50;
    let a = Session::connect(
        ca,
        addr(6900, 42),
        EntityType::OSD,
        Policy::lossless_peer(),
        now,
    );
    let b = Session::accept(Arc::new(cb), SocketAddr::from(([127, 0, 0, 1], 1)), now);
    let mut p = Pair::from_sessions(a, b, now);
    p.link_up();
    let (ea, _) = p.exchange();
    assert!(
        matches!(ea, Some(SessionError::MissingFeatures { missing, .. }) if missing == 1 << 50),
        "{ea:?}"
    );
}

#[test]
fn client_verifies_server_nonce() {
    // We dialed nonce 0; the server announces nonce 42.
    let mut p = client_to_mon(addr(6789, 0), EntityType::MON);
    p.link_up();
    let (ea, _) = p.exchange();
    assert!(
        matches!(ea, Some(SessionError::AddressMismatch { .. })),
        "{ea:?}"
    );
}

#[test]
fn blank_client_address_is_learned_and_filled_in() {
    let now = Instant::now();
    let mut ca = SessionConfig::new(
        EntityName::new(EntityType::CLIENT, -1),
        EntityAddr::blank().with_nonce(77),
    );
    ca.ack_delay = Duration::ZERO;
    let cb = config(EntityType::MON, 6789, Policy::stateless_server());
    let a = Session::connect(
        Arc::new(ca),
        addr(6789, 42),
        EntityType::MON,
        Policy::lossy_client(),
        now,
    );
    let b = Session::accept(cb, SocketAddr::from(([127, 0, 0, 9], 5555)), now);
    let mut p = Pair::from_sessions(a, b, now);
    p.link_up();
    p.exchange();
    let learned = EntityAddr::new(SocketAddr::from(([127, 0, 0, 9], 0)), 77);
    assert!(p
        .a
        .has(|e| matches!(e, SessionEvent::LearnedAddr(a) if *a == learned)));
    assert_eq!(p.b.s.peer_addr(), Some(learned));
    assert_eq!(p.a.s.state(), SessionState::Open);
}

#[test]
fn connect_race_lower_address_wins() {
    // a (port 6800) and b (port 6900) dial each other at once. Each messenger has its own
    // outgoing session; incoming links get fresh accepting sessions.
    let now = Instant::now();
    let ca = config(EntityType::OSD, 6800, Policy::lossless_peer());
    let cb = config(EntityType::OSD, 6900, Policy::lossless_peer());
    let mut a_out = Session::connect(
        ca.clone(),
        addr(6900, 42),
        EntityType::OSD,
        Policy::lossless_peer(),
        now,
    );
    let mut b_out = Session::connect(
        cb.clone(),
        addr(6800, 42),
        EntityType::OSD,
        Policy::lossless_peer(),
        now,
    );
    a_out.send_message(msg(127, 1, 1));
    b_out.send_message(msg(127, 2, 1));
    let mut a_in = Session::accept(ca, SocketAddr::from(([127, 0, 0, 1], 1)), now);
    let mut b_in = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 2)), now);
    // Links: a_out <-> b_in, b_out <-> a_in.
    for s in [&mut a_out, &mut b_out, &mut a_in, &mut b_in] {
        s.link_up(now);
    }
    let mut delivered: Vec<u64> = Vec::new();
    fn pump(x: &mut Session, y: &mut Session, inbox: &mut BytesMut, now: Instant) -> bool {
        let mut out = Vec::new();
        while x.poll_transmit(&mut out) > 0 {}
        for c in &out {
            inbox.put_slice(c);
        }
        if out.is_empty() {
            return false;
        }
        let _ = y.handle_input(inbox, now);
        true
    }
    let mut boxes: [BytesMut; 4] = Default::default();
    for _ in 0..20 {
        let [x0, x1, x2, x3] = &mut boxes;
        let mut moved = pump(&mut a_out, &mut b_in, x0, now);
        moved |= pump(&mut b_in, &mut a_out, x1, now);
        moved |= pump(&mut b_out, &mut a_in, x2, now);
        moved |= pump(&mut a_in, &mut b_out, x3, now);
        // Accept requests, resolved against each messenger's outgoing session.
        for (inc, out, me) in [
            (&mut a_in, &mut a_out, addr(6800, 42)),
            (&mut b_in, &mut b_out, addr(6900, 42)),
        ] {
            let evs: Vec<SessionEvent> = std::iter::from_fn(|| inc.poll_event()).collect();
            for e in evs {
                match e {
                    SessionEvent::AcceptRequest(req) => {
                        let d = accept::decide(Some(out), &req, &me, &inc.policy().clone());
                        inc.resolve_accept(d, Some(out), now);
                        moved = true;
                    }
                    SessionEvent::Message(m) => delivered.push(m.tid),
                    _ => {}
                }
            }
            while let Some(e) = out.poll_event() {
                if let SessionEvent::Message(m) = e {
                    delivered.push(m.tid);
                }
            }
        }
        if !moved {
            break;
        }
    }
    // b's incoming session replaced b's outgoing one (a has the lower address); a told b WAIT.
    assert_eq!(b_out.state(), SessionState::Closed);
    assert_eq!(b_in.state(), SessionState::Open);
    assert_eq!(a_out.state(), SessionState::Open);
    assert_eq!(a_in.state(), SessionState::Accepting);
    delivered.sort();
    assert_eq!(delivered, vec![1, 2]);
}
