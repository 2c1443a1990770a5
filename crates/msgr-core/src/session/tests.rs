//! Rule-by-rule tests of the session: two sessions wired back to back in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::message::Priority;
use crate::policy::PolicySet;
use crate::wire::features::DEFAULT_SUPPORTED;
use crate::wire::{ConnectMsg, BANNER};

fn addr(port: u16, nonce: u32) -> EntityAddr {
    EntityAddr::new(SocketAddr::from(([127, 0, 0, 1], port)), nonce)
}

fn config(kind: EntityType, port: u16, policy: Policy) -> Arc<SessionConfig> {
    let mut c = SessionConfig::new(EntityName::new(kind, port.into()), addr(port, 42));
    c.policies = PolicySet::new(policy);
    c.ack_delay = Duration::ZERO;
    Arc::new(c)
}

/// One side: its session and what it received.
struct End {
    s: Session,
    inbox: BytesMut,
    events: Vec<SessionEvent>,
}

impl End {
    fn new(s: Session) -> Self {
        End {
            s,
            inbox: BytesMut::new(),
            events: Vec::new(),
        }
    }
    fn drain_events(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
    }
    fn messages(&self) -> Vec<&Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }
    fn has(&self, f: impl Fn(&SessionEvent) -> bool) -> bool {
        self.events.iter().any(f)
    }
}

/// Client `a` dialed server `b`. `exchange` moves bytes until nothing moves, resolving accept
/// requests with `decide` against `b_existing` (the server's session table of one entry).
struct Pair {
    a: End,
    b: End,
    b_existing: Option<Session>,
    now: Instant,
}

impl Pair {
    fn new(a_policy: Policy, b_policy: Policy) -> Self {
        let now = Instant::now();
        let ca = config(EntityType::OSD, 6800, a_policy.clone());
        let cb = config(EntityType::OSD, 6900, b_policy);
        let a = Session::connect(ca, addr(6900, 42), EntityType::OSD, a_policy, now);
        let b = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 40000)), now);
        Pair::from_sessions(a, b, now)
    }

    /// `new`, then the handshake: link up and `exchange` (its result is not checked here).
    fn open(a_policy: Policy, b_policy: Policy) -> Self {
        let mut p = Pair::new(a_policy, b_policy);
        p.link_up();
        p.exchange();
        p
    }

    /// Client session `a` and server session `b`, made by the test.
    fn from_sessions(a: Session, b: Session, now: Instant) -> Self {
        Pair {
            a: End::new(a),
            b: End::new(b),
            b_existing: None,
            now,
        }
    }

    fn link_up(&mut self) {
        self.a.inbox.clear();
        self.b.inbox.clear();
        self.a.s.link_up(self.now);
        self.b.s.link_up(self.now);
    }

    /// Move bytes both ways until quiet. Returns errors seen by (a, b).
    fn exchange(&mut self) -> (Option<SessionError>, Option<SessionError>) {
        let (mut ea, mut eb) = (None, None);
        for _ in 0..100 {
            let mut moved = false;
            let mut out = Vec::new();
            while self.a.s.poll_transmit(&mut out) > 0 {}
            for c in out.drain(..) {
                moved = true;
                self.b.inbox.put_slice(&c);
            }
            while self.b.s.poll_transmit(&mut out) > 0 {}
            for c in out.drain(..) {
                moved = true;
                self.a.inbox.put_slice(&c);
            }
            if !self.a.inbox.is_empty() {
                if let Err(e) = self.a.s.handle_input(&mut self.a.inbox, self.now) {
                    ea = Some(e);
                }
            }
            if !self.b.inbox.is_empty() {
                if let Err(e) = self.b.s.handle_input(&mut self.b.inbox, self.now) {
                    eb = Some(e);
                }
            }
            self.a.drain_events();
            while let Some(e) = self.b.s.poll_event() {
                if let SessionEvent::AcceptRequest(req) = &e {
                    let my = self.b.s.my_addr();
                    let pol = self.b.s.policy().clone();
                    let d = accept::decide(self.b_existing.as_ref(), req, &my, &pol);
                    self.b
                        .s
                        .resolve_accept(d, self.b_existing.as_mut(), self.now);
                    moved = true;
                }
                self.b.events.push(e);
            }
            if !moved {
                break;
            }
        }
        (ea, eb)
    }

    /// The server side lost its link object: keep its session as "existing" and make a fresh
    /// accepting session for the next link (what a driver does).
    fn server_new_link(&mut self) {
        let cb = self.b.s.config.clone();
        let fresh = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 40001)), self.now);
        let old = std::mem::replace(&mut self.b.s, fresh);
        if old.state() != SessionState::Closed {
            self.b_existing = Some(old);
        }
    }

    /// The server restarted: a fresh accepting session for the next link and no memory of
    /// the old one.
    fn server_restarts(&mut self) {
        let cb = self.b.s.config.clone();
        self.b.s = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 2)), self.now);
        self.b_existing = None;
    }

    /// The client restarted: a brand new session to the server (connect_seq 0), with the same
    /// configuration and `policy`.
    fn client_restarts(&mut self, policy: Policy) {
        let ca = self.a.s.config.clone();
        self.a.s = Session::connect(ca, addr(6900, 42), EntityType::OSD, policy, self.now);
    }
}

fn msg(prio: u16, tid: u64, len: usize) -> Message {
    Message::new(42, vec![tid as u8; len])
        .with_priority(Priority(prio))
        .with_tid(tid)
}

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
fn priority_order_seq_numbers_and_ack_trim() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    for (prio, tid) in [(127, 1), (196, 2), (64, 3), (196, 4), (127, 5)] {
        p.a.s.send_message(msg(prio, tid, 10));
    }
    p.link_up();
    p.exchange();
    let got: Vec<(u64, u64)> = p.b.messages().iter().map(|m| (m.tid, m.seq)).collect();
    assert_eq!(got, vec![(2, 1), (4, 2), (1, 3), (5, 4), (3, 5)]);
    assert_eq!(
        p.b.messages()[0].src,
        EntityName::new(EntityType::OSD, 6800)
    );
    // The server acknowledged everything: nothing left to replay.
    assert_eq!(p.a.s.pending_messages(), 0);
    assert_eq!(p.b.s.in_seq(), 5);
}

/// The footer of the one MSG frame `s` transmits next (after the handshake is done).
fn next_footer(s: &mut Session) -> (crate::wire::MsgFooter, BytesMut) {
    let mut out = Vec::new();
    while s.poll_transmit(&mut out) > 0 {}
    let mut wire = BytesMut::new();
    for c in &out {
        wire.put_slice(c);
    }
    assert_eq!(wire[0], crate::wire::Tag::Msg as u8);
    let f = crate::wire::MsgFooter::decode(&wire[wire.len() - 21..], true).unwrap();
    (f, wire)
}

#[test]
fn crc_data_default_on_and_nocrc_flag_when_off() {
    use crate::wire::crc::ceph_crc32c;
    use crate::wire::MsgFooter;
    let data = Bytes::from(vec![0xa5u8; 3000]);

    // Default (what a Ceph monitor expects): data crc computed, no NOCRC flag.
    assert!(SessionConfig::new(EntityName::new(EntityType::MON, 0), addr(1, 0)).crc_data);
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 10).with_data(data.clone()));
    let (f, _) = next_footer(&mut p.a.s);
    assert_eq!(f.flags, MsgFooter::FLAG_COMPLETE);
    assert_eq!(f.data_crc, ceph_crc32c(0, &data));

    // crc_data = false: NOCRC set, data crc 0, front crc still there; the peer accepts it.
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    let mut c = SessionConfig::new(EntityName::new(EntityType::OSD, 6800), addr(6800, 42));
    c.policies = PolicySet::new(Policy::lossless_peer());
    c.ack_delay = Duration::ZERO;
    c.crc_data = false;
    p.a.s = Session::connect(
        Arc::new(c),
        addr(6900, 42),
        EntityType::OSD,
        Policy::lossless_peer(),
        p.now,
    );
    p.link_up();
    p.exchange();
    assert_eq!(p.a.s.state(), SessionState::Open);
    let m = msg(127, 2, 10).with_data(data.clone());
    let front_crc = ceph_crc32c(0, &m.front);
    p.a.s.send_message(m);
    let (f, wire) = next_footer(&mut p.a.s);
    assert_eq!(f.flags, MsgFooter::FLAG_COMPLETE | MsgFooter::FLAG_NOCRC);
    assert_eq!(f.data_crc, 0);
    assert_eq!(f.front_crc, front_crc);
    p.b.inbox.put_slice(&wire);
    p.b.s.handle_input(&mut p.b.inbox, p.now).unwrap();
    p.b.drain_events();
    let got = p.b.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, data);
}

#[test]
fn deferred_ack_waits_for_timer_or_outgoing() {
    let now = Instant::now();
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    let mut cfg = SessionConfig::new(EntityName::new(EntityType::OSD, 1), addr(6900, 42));
    cfg.ack_delay = Duration::from_millis(5);
    cfg.ack_every = 1000;
    p.b.s = Session::accept(Arc::new(cfg), SocketAddr::from(([127, 0, 0, 1], 1)), now);
    p.link_up();
    p.exchange();
    p.a.s.send_message(msg(127, 1, 4));
    p.a.s.send_message(msg(127, 2, 4));
    p.exchange();
    assert_eq!(p.b.messages().len(), 2);
    // No ACK yet: the server holds it back.
    assert_eq!(p.a.s.pending_messages(), 2);
    let t = p.b.s.poll_timeout().expect("ack timer armed");
    assert_eq!(t, p.now + Duration::from_millis(5));
    p.now = t;
    p.b.s.handle_timeout(t);
    p.exchange();
    assert_eq!(p.a.s.pending_messages(), 0, "one coalesced ACK for both");
    // An ACK rides along with an outgoing message without waiting.
    p.a.s.send_message(msg(127, 3, 4));
    p.exchange();
    p.b.s.send_message(msg(127, 9, 4));
    p.exchange();
    assert_eq!(p.a.s.pending_messages(), 0);
}

#[test]
fn duplicate_is_dropped() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 3));
    p.exchange();
    // Replay message 1 by hand (what a peer that missed our ACK does after reconnecting).
    let mut m = msg(127, 1, 3);
    m.seq = 1;
    let mut raw = BytesMut::new();
    frame::encode_message_into(
        &m,
        1,
        EntityName::new(EntityType::OSD, 6800),
        true,
        &mut raw,
    );
    p.b.s.handle_input(&mut raw, p.now).unwrap();
    p.b.drain_events();
    assert_eq!(p.b.messages().len(), 1);
    assert_eq!(p.b.s.duplicates_dropped(), 1);
}

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
fn lossless_reconnect_replays_unacked_with_original_seq() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3));
    p.exchange();
    // Messages 2 and 3 are written but the link dies before they arrive.
    p.a.s.send_message(msg(127, 2, 3));
    p.a.s.send_message(msg(196, 3, 3));
    let mut lost = Vec::new();
    while p.a.s.poll_transmit(&mut lost) > 0 {}
    assert!(!lost.is_empty());
    p.a.s
        .link_down(SessionError::LinkFailed("test".into()), p.now);
    p.b.s
        .link_down(SessionError::LinkFailed("test".into()), p.now);
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(
        e,
        SessionEvent::Faulted {
            will_reconnect: true,
            ..
        }
    )));
    assert!(p.a.s.wants_reconnect());
    assert_eq!(p.b.s.state(), SessionState::Standby);
    p.server_new_link();
    p.b.events.clear();
    p.link_up();
    let (ea, eb) = p.exchange();
    assert_eq!((ea, eb), (None, None));
    assert!(p.b_existing.as_ref().unwrap().state() == SessionState::Closed);
    let got: Vec<(u64, u64)> =
        p.b.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some((m.tid, m.seq)),
                _ => None,
            })
            .collect();
    // Replayed in seq order with their original numbers (3 had the higher priority).
    assert_eq!(got, vec![(3, 2), (2, 3)]);
    assert_eq!(p.b.s.in_seq(), 3);
    assert_eq!(p.a.s.connect_seq(), p.b.s.connect_seq());
}

#[test]
fn seq_exchange_drops_what_the_peer_already_has() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3));
    // Delivered, but the ACK is lost with the link.
    let mut out = Vec::new();
    while p.a.s.poll_transmit(&mut out) > 0 {}
    for c in out {
        p.b.inbox.put_slice(&c);
    }
    p.b.s.handle_input(&mut p.b.inbox, p.now).unwrap();
    p.b.drain_events();
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.b.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    assert_eq!(p.a.s.pending_messages(), 1);
    p.server_new_link();
    p.link_up();
    p.exchange();
    assert_eq!(p.b.s.state(), SessionState::Open);
    // The SEQ exchange told the client message 1 arrived: not resent, not redelivered.
    assert_eq!(p.a.s.pending_messages(), 0);
    assert_eq!(p.b.s.duplicates_dropped(), 0);
    assert_eq!(p.b.messages().len(), 1, "delivered once, on the first link");
}

#[test]
fn lossy_fault_resets_and_reports_undelivered() {
    let mut p = Pair::open(Policy::lossy_client(), Policy::stateless_server());
    assert!(p.a.s.policy().lossy);
    p.a.s.send_message(msg(127, 1, 3));
    p.a.s.send_message(msg(127, 2, 3));
    let mut out = Vec::new();
    while p.a.s.poll_transmit(&mut out) > 0 {}
    p.a.s.send_message(msg(127, 3, 3));
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.a.drain_events();
    assert_eq!(p.a.s.state(), SessionState::Closed);
    let undelivered: Vec<u64> =
        p.a.events
            .iter()
            .find_map(|e| match e {
                SessionEvent::Reset { undelivered, .. } => {
                    Some(undelivered.iter().map(|m| m.tid).collect())
                }
                _ => None,
            })
            .expect("reset");
    assert_eq!(undelivered, vec![1, 2, 3]);
    assert!(!p.a.s.wants_reconnect());
}

#[test]
fn server_decides_lossy() {
    // A lossless-minded client talking to a lossy server becomes lossy.
    let p = Pair::open(Policy::lossless_client(), Policy::stateless_server());
    assert!(p.a.s.policy().lossy);
}

#[test]
fn bad_banner_is_an_error_and_closes_the_link() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.link_up();
    let mut junk = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    junk.resize(9 + 136, b'x');
    let e = p.b.s.handle_input(&mut junk, p.now).unwrap_err();
    assert!(
        matches!(e, SessionError::Wire(WireError::BadBanner(_))),
        "{e}"
    );
    p.b.drain_events();
    assert!(p.b.has(|e| matches!(e, SessionEvent::CloseLink)));
    assert!(!p.b.s.has_link());
    // Whatever else arrives is ignored without panicking.
    let mut more = BytesMut::from(&[0xffu8; 64][..]);
    assert!(p.b.s.handle_input(&mut more, p.now).is_ok());
}

#[test]
fn short_wrong_banner_is_refused_without_waiting_for_more() {
    // A whole (short) HTTP request is less than banner + address: the server must not wait for
    // the rest, the first mismatching byte decides.
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.link_up();
    let mut req = BytesMut::from(&b"GET / HTTP/1.0\r\n\r\n"[..]);
    let e = p.b.s.handle_input(&mut req, p.now).unwrap_err();
    assert!(
        matches!(&e, SessionError::Wire(WireError::BadBanner(got)) if got == b"GET / HTT"),
        "{e}"
    );
    p.b.drain_events();
    assert!(p.b.has(|e| matches!(e, SessionEvent::CloseLink)));
    assert!(!p.b.s.has_link());

    // A single wrong byte is enough; a correct prefix waits for the rest.
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.link_up();
    let mut ok = BytesMut::from(&BANNER[..5]);
    p.b.s.handle_input(&mut ok, p.now).unwrap();
    assert!(p.b.s.has_link(), "a correct banner prefix must wait");
    assert_eq!(ok.len(), 5, "nothing consumed yet");
    ok.extend_from_slice(b"X");
    let e = p.b.s.handle_input(&mut ok, p.now).unwrap_err();
    assert!(
        matches!(&e, SessionError::Wire(WireError::BadBanner(got)) if got == b"ceph X"),
        "{e}"
    );

    // The connecting side checks the server's banner the same way.
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.link_up();
    let mut reply = BytesMut::from(&b"HTTP/1.0 400"[..]);
    let e = p.a.s.handle_input(&mut reply, p.now).unwrap_err();
    assert!(
        matches!(e, SessionError::Wire(WireError::BadBanner(_))),
        "{e}"
    );
    assert!(!p.a.s.has_link());
}

#[test]
fn oversized_authorizer_is_refused_before_reading_it() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.link_up();
    let mut b = BytesMut::new();
    b.put_slice(crate::wire::BANNER);
    addr(6800, 42).encode_legacy(&mut b);
    ConnectMsg {
        features: DEFAULT_SUPPORTED,
        host_type: EntityType::OSD.0.into(),
        protocol_version: 10,
        authorizer_protocol: 1,
        authorizer_len: u32::MAX,
        ..Default::default()
    }
    .encode(&mut b);
    let cap = b.capacity();
    let e = p.b.s.handle_input(&mut b, p.now).unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::Wire(WireError::LimitExceeded {
                what: "authorizer",
                ..
            })
        ),
        "{e}"
    );
    assert!(b.capacity() <= cap.max(4096), "no buffer sized by the peer");
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
fn server_that_forgot_answers_resetsession() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3)); // delivered and acked: numbering in use
    p.exchange();
    p.a.s.send_message(msg(127, 2, 3)); // queued for the lost session
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    // The server restarted: no existing session.
    p.server_restarts();
    p.link_up();
    p.exchange();
    let dropped = p.a.events.iter().find_map(|e| match e {
        SessionEvent::RemoteReset { undelivered } => Some(undelivered.len()),
        _ => None,
    });
    assert_eq!(dropped, Some(1));
    assert_eq!(p.a.s.state(), SessionState::Open);
    assert_eq!(p.a.s.connect_seq(), 1);
    assert_eq!(p.b.s.in_seq(), 0, "nothing reached the new server session");
}

#[test]
fn peer_restart_is_detected_by_resetcheck() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.b.s.send_message(msg(127, 6, 3)); // delivered: numbering is in use
    p.exchange();
    p.b.s.send_message(msg(127, 7, 3)); // queued for the old incarnation of a
    p.b.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.b.drain_events();
    // a restarts: a brand new session, connect_seq 0.
    p.client_restarts(Policy::lossless_peer());
    p.a.events.clear();
    p.server_new_link();
    p.link_up();
    p.exchange();
    assert_eq!(p.b.s.state(), SessionState::Open);
    let dropped = p.b.events.iter().find_map(|e| match e {
        SessionEvent::RemoteReset { undelivered } => Some(undelivered.len()),
        _ => None,
    });
    assert_eq!(dropped, Some(1));
    assert!(p.a.messages().is_empty());
    // Numbering restarted on both sides.
    assert_eq!((p.b.s.in_seq(), p.b.s.out_seq()), (0, 0));
}

#[test]
fn peer_reset_before_any_message_keeps_the_queue() {
    // Our session never numbered a message: a peer starting over loses nothing of it.
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.b.s.send_message(msg(127, 7, 3));
    p.b.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.client_restarts(Policy::lossless_peer());
    p.server_new_link();
    p.link_up();
    p.exchange();
    assert!(!p.b.has(|e| matches!(e, SessionEvent::RemoteReset { .. })));
    assert_eq!(p.a.messages().len(), 1);
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

#[test]
fn close_sends_close_and_peer_resets() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 3));
    p.a.s.close();
    p.exchange();
    assert_eq!(p.a.s.state(), SessionState::Closed);
    assert_eq!(p.b.s.state(), SessionState::Closed);
    assert_eq!(
        p.b.messages().len(),
        1,
        "queued message goes out before CLOSE"
    );
    assert!(p.b.has(|e| matches!(
        e,
        SessionEvent::Reset {
            error: SessionError::PeerClosed,
            ..
        }
    )));
    assert!(p.a.has(|e| matches!(e, SessionEvent::CloseLink)));
}

#[test]
fn mark_down_reports_everything() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 3));
    p.a.s.mark_down();
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(e, SessionEvent::Reset { error: SessionError::MarkedDown, undelivered } if undelivered.len() == 1)));
    p.a.events.clear();
    p.a.s.send_message(msg(127, 2, 3));
    assert_eq!(p.a.s.pending_messages(), 0);
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(e, SessionEvent::Reset { error: SessionError::Closed, undelivered } if undelivered[0].tid == 2)));
    assert!(p.a.s.try_send_message(msg(127, 3, 3)).is_err());
}

#[test]
fn standby_then_send_wants_reconnect() {
    let mut p = Pair::open(Policy::lossless_peer_reuse(), Policy::lossless_peer());
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    assert_eq!(p.a.s.state(), SessionState::Standby);
    assert!(!p.a.s.wants_reconnect());
    p.a.s.send_message(msg(127, 1, 1));
    assert!(p.a.s.wants_reconnect());
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

#[test]
fn garbage_after_open_never_panics() {
    let _p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    for tag in 0u8..=255 {
        let mut s2 = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
        let mut b = BytesMut::from(&[tag, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
        let _ = s2.b.s.handle_input(&mut b, s2.now);
    }
    let _ = Bytes::new();
}

#[test]
fn resetsession_before_any_message_keeps_the_queue() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3)); // never written
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.server_restarts();
    p.link_up();
    p.exchange();
    assert!(!p.a.has(|e| matches!(e, SessionEvent::RemoteReset { .. })));
    assert_eq!(p.a.s.state(), SessionState::Open);
    assert_eq!(p.b.messages().len(), 1);
    assert_eq!(p.b.s.in_seq(), 1);
}

/// Random peer bytes at every stage: never a panic; an error always closes the link.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Feed `data` in chunks of the given sizes; check the error contract.
    fn feed(
        s: &mut Session,
        data: &[u8],
        cuts: &[usize],
        now: Instant,
    ) -> Result<(), TestCaseError> {
        let mut buf = BytesMut::new();
        let mut rest = data;
        let mut sizes = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&rest.len()))
                .min(rest.len())
                .max(1);
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if s.handle_input(&mut buf, now).is_err() {
                prop_assert!(!s.has_link());
                let mut closed = false;
                while let Some(e) = s.poll_event() {
                    closed |= matches!(e, SessionEvent::CloseLink);
                }
                prop_assert!(closed, "error without CloseLink");
                return Ok(());
            }
            let mut out = Vec::new();
            while s.poll_transmit(&mut out) > 0 {}
        }
        Ok(())
    }

    /// Bytes that take a server to the point of reading a connect message.
    fn server_prefix() -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_slice(crate::wire::BANNER);
        addr(6800, 42).encode_legacy(&mut b);
        b.to_vec()
    }

    /// Bytes that take a client to the point of reading a connect reply.
    fn client_prefix() -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_slice(crate::wire::BANNER);
        addr(6900, 42).encode_legacy(&mut b);
        addr(6800, 42).encode_legacy(&mut b);
        b.to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_peer_bytes(
            stage in 0u8..5,
            data in prop::collection::vec(any::<u8>(), 0..1500),
            cuts in prop::collection::vec(1usize..80, 1..16),
        ) {
            let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
            let now = p.now;
            match stage {
                // Fresh server, garbage instead of a banner.
                0 => {
                    p.b.s.link_up(now);
                    feed(&mut p.b.s, &data, &cuts, now)?;
                }
                // Server past banner and address: garbage connect messages.
                1 => {
                    p.b.s.link_up(now);
                    let mut d = server_prefix();
                    d.extend_from_slice(&data);
                    feed(&mut p.b.s, &d, &cuts, now)?;
                    // Answer any connect that got through, then keep feeding.
                    while let Some(e) = p.b.s.poll_event() {
                        if let SessionEvent::AcceptRequest(_) = e {
                            p.b.s.resolve_accept(AcceptDecision::New, None, now);
                        }
                    }
                    feed(&mut p.b.s, &data, &cuts, now)?;
                }
                // Client past the server's banner: garbage connect replies.
                2 => {
                    p.a.s.link_up(now);
                    let mut d = client_prefix();
                    d.extend_from_slice(&data);
                    feed(&mut p.a.s, &d, &cuts, now)?;
                }
                // Open sessions, garbage frames either way.
                _ => {
                    p.link_up();
                    p.exchange();
                    prop_assert_eq!(p.a.s.state(), SessionState::Open);
                    let s = if stage == 3 { &mut p.a.s } else { &mut p.b.s };
                    feed(s, &data, &cuts, now)?;
                }
            }
        }
    }
}
