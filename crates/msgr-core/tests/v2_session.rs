//! The msgr2 session state machine against itself (client and server sessions over an
//! in-memory pipe, on fake time) and against the monitor's captured bytes.

mod v2_data;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use msgr_core::auth::cephx::Keyring;
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::{AcceptDecision, SessionConfig, SessionError, SessionEvent, SessionState};
use msgr_core::session_v2::{SessionV2, V2Auth, V2Config};
use msgr_core::v2::{AddrKind, EntityAddrV2, EntityAddrVec};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_core::Message;

const SERVER: &str = "127.0.0.1:3300";

fn config(name: EntityName, addr: &str, policy: Policy) -> V2Config {
    let sa: SocketAddr = addr.parse().unwrap();
    let mut base = SessionConfig::new(name, EntityAddr::new(sa, 7));
    base.policies = PolicySet::new(policy);
    base.keepalive_interval = None;
    let addrs = EntityAddrVec(vec![EntityAddrV2::new(AddrKind::MSGR2, sa, 7)]);
    V2Config::new(Arc::new(base), addrs)
}

fn server_addr() -> EntityAddrV2 {
    EntityAddrV2::new(AddrKind::MSGR2, SERVER.parse().unwrap(), 7)
}

/// A client and a server session joined by an in-memory pipe.
struct Pair {
    c: SessionV2,
    s: SessionV2,
    c_in: BytesMut,
    s_in: BytesMut,
    c_events: Vec<SessionEvent>,
    s_events: Vec<SessionEvent>,
    now: Instant,
    /// Bytes per delivery (1 = byte by byte).
    chunk: usize,
    /// The server's existing session for the client (what a driver's registry would hold),
    /// offered to `resolve_accept`.
    existing: Option<SessionV2>,
    /// The server's answers to the client's IDENTs, in order.
    decisions: Vec<AcceptDecision>,
}

impl Pair {
    fn new(client_policy: Policy, client_auth: V2Auth) -> Pair {
        let now = Instant::now();
        let mut cc = config(
            EntityName::new(EntityType::CLIENT, 4100),
            "127.0.0.1:0",
            client_policy.clone(),
        );
        cc.auth = client_auth;
        let sc = config(
            EntityName::new(EntityType::OSD, 3),
            SERVER,
            Policy::stateful_server(),
        );
        let mut c = SessionV2::connect(
            Arc::new(cc),
            server_addr(),
            EntityType::OSD,
            client_policy,
            now,
        );
        let mut s = SessionV2::accept(Arc::new(sc), "127.0.0.1:50000".parse().unwrap(), now);
        c.link_up(now);
        s.link_up(now);
        Pair {
            c,
            s,
            c_in: BytesMut::new(),
            s_in: BytesMut::new(),
            c_events: Vec::new(),
            s_events: Vec::new(),
            now,
            chunk: usize::MAX,
            existing: None,
            decisions: Vec::new(),
        }
    }

    /// A new server session on a new link for the same client (the old server session
    /// becomes the existing one, as the driver's registry keeps it); the client dials again.
    fn relink(&mut self) {
        let sc = config(
            EntityName::new(EntityType::OSD, 3),
            SERVER,
            Policy::stateful_server(),
        );
        let old = std::mem::replace(
            &mut self.s,
            SessionV2::accept(Arc::new(sc), "127.0.0.1:50001".parse().unwrap(), self.now),
        );
        self.existing = Some(old);
        self.s.link_up(self.now);
        self.c.link_up(self.now);
        self.c_in.clear();
        self.s_in.clear();
        self.c_events.clear();
        self.s_events.clear();
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let mut out = Vec::new();
            self.c.poll_transmit(&mut out);
            moved |= deliver(&mut self.s, &mut self.s_in, out, self.chunk, self.now);
            let mut out = Vec::new();
            self.s.poll_transmit(&mut out);
            moved |= deliver(&mut self.c, &mut self.c_in, out, self.chunk, self.now);
            while let Some(e) = self.c.poll_event() {
                self.c_events.push(e);
            }
            while let Some(e) = self.s.poll_event() {
                if matches!(e, SessionEvent::AcceptRequest(_)) {
                    let me = EntityAddr::new(SERVER.parse().unwrap(), 7);
                    let d = self
                        .s
                        .resolve_accept(true, self.existing.as_mut(), &me, self.now);
                    self.decisions.push(d);
                    moved = true;
                }
                self.s_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the sessions never went quiet");
    }
}

/// Feeds `out` to `to` in chunks; errors end up as events.
fn deliver(
    to: &mut SessionV2,
    inbox: &mut BytesMut,
    out: Vec<Bytes>,
    chunk: usize,
    now: Instant,
) -> bool {
    let bytes: Vec<u8> = out.concat();
    for part in bytes.chunks(chunk.min(bytes.len()).max(1)) {
        inbox.extend_from_slice(part);
        let _ = to.handle_input(inbox, now);
    }
    !bytes.is_empty()
}

fn messages(events: &[SessionEvent]) -> Vec<(u16, Bytes)> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Message(m) => Some((m.msg_type, m.front.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_then_messages_both_ways_in_order() {
    for chunk in [usize::MAX, 1, 7] {
        let mut p = Pair::new(Policy::lossless_client(), V2Auth::None);
        p.chunk = chunk;
        p.pump();
        assert_eq!(
            p.c.state(),
            SessionState::Open,
            "chunk {chunk}: {:?}",
            p.c_events
        );
        assert_eq!(p.s.state(), SessionState::Open);
        assert!(matches!(
            &p.c_events[0],
            SessionEvent::Connected { peer_name, .. } if *peer_name == EntityName::new(EntityType::OSD, 3)
        ));
        assert!(matches!(
            &p.s_events[0],
            SessionEvent::AcceptRequest(req) if req.peer_type == EntityType::CLIENT && req.connect_seq == 0
        ));
        assert_eq!(p.decisions, [AcceptDecision::New]);
        assert!(matches!(
            &p.s_events[1],
            SessionEvent::Accepted { peer_name, .. } if *peer_name == EntityName::new(EntityType::CLIENT, 4100)
        ));
        for i in 0..5u16 {
            p.c.send_message(
                Message::new(100 + i, vec![i as u8; 100 * i as usize]).with_data(vec![9; 5000]),
            );
            p.s.send_message(Message::new(200 + i, vec![i as u8]));
        }
        p.pump();
        let got = messages(&p.s_events);
        assert_eq!(
            got.iter().map(|m| m.0).collect::<Vec<_>>(),
            [100, 101, 102, 103, 104]
        );
        assert_eq!(got[3].1.len(), 300);
        assert_eq!(
            messages(&p.c_events)
                .iter()
                .map(|m| m.0)
                .collect::<Vec<_>>(),
            [200, 201, 202, 203, 204]
        );
        assert_eq!((p.c.out_seq(), p.s.in_seq()), (5, 5));
        assert_eq!(p.c.pending_messages(), 0, "acked messages are forgotten");
        assert_eq!(p.s.pending_messages(), 0);
    }
}

#[test]
fn keepalive_is_acked_with_its_stamp() {
    let mut p = Pair::new(Policy::lossy_client(), V2Auth::None);
    p.pump();
    p.now += Duration::from_millis(1500);
    p.c.send_keepalive(p.now);
    p.pump();
    let ack = p.c_events.iter().find_map(|e| match e {
        SessionEvent::KeepaliveAck { stamp, rtt } => Some((*stamp, *rtt)),
        _ => None,
    });
    let (stamp, rtt) = ack.expect("KEEPALIVE2_ACK");
    assert_eq!(stamp.0, 1, "stamp is seconds since the session began");
    assert_eq!(rtt, Some(Duration::ZERO), "fake time did not move");
}

#[test]
fn cephx_to_a_non_monitor_fails_clearly() {
    let key = *Keyring::load(&v2_data::path("cephx.keyring"))
        .unwrap()
        .get("client.admin")
        .unwrap();
    let mut p = Pair::new(Policy::lossy_client(), V2Auth::Cephx { key });
    p.pump();
    let reset = p.c_events.iter().find_map(|e| match e {
        SessionEvent::Reset { error, .. } => Some(error.to_string()),
        _ => None,
    });
    let text = reset.expect("the client gives up");
    assert!(text.contains("service ticket"), "{text}");
}

#[test]
fn secure_only_client_and_auth_none_server_fail_naming_what_is_allowed() {
    let now = Instant::now();
    let mut cc = config(
        EntityName::new(EntityType::CLIENT, 1),
        "127.0.0.1:0",
        Policy::lossy_client(),
    );
    cc.modes = vec![msgr_core::auth::MODE_SECURE];
    let mut p = Pair::new(Policy::lossy_client(), V2Auth::None);
    p.c = SessionV2::connect(
        Arc::new(cc),
        server_addr(),
        EntityType::OSD,
        Policy::lossy_client(),
        now,
    );
    p.c.link_up(now);
    p.pump();
    let text = p
        .c_events
        .iter()
        .find_map(|e| match e {
            SessionEvent::Reset { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .expect("the client gives up");
    assert!(
        text.contains("allows methods [1]") && text.contains("modes [1]"),
        "{text}"
    );
    assert_ne!(p.s.state(), SessionState::Open);
}

#[test]
fn lossless_client_reconnects_and_the_unknown_session_is_reset() {
    let mut p = Pair::new(Policy::lossless_client(), V2Auth::None);
    p.pump();
    p.c.send_message(Message::new(1, vec![1]));
    // The link dies before the message is written.
    p.c.link_down(SessionError::LinkFailed("cable".into()), p.now);
    assert!(p.c.wants_reconnect());
    assert_eq!(p.c.state(), SessionState::Faulted);
    // A new link to a new server session (the old one is gone): RECONNECT, RESET, new session.
    let sc = config(
        EntityName::new(EntityType::OSD, 3),
        SERVER,
        Policy::stateful_server(),
    );
    p.s = SessionV2::accept(Arc::new(sc), "127.0.0.1:50001".parse().unwrap(), p.now);
    p.s.link_up(p.now);
    p.c.link_up(p.now);
    p.c_in.clear();
    p.s_events.clear();
    p.pump();
    assert!(
        p.c_events.iter().any(
            |e| matches!(e, SessionEvent::RemoteReset { undelivered } if undelivered.len() == 1)
        ),
        "{:?}",
        p.c_events
    );
    assert_eq!(p.c.state(), SessionState::Open);
    assert_eq!(p.s.state(), SessionState::Open);
}

#[test]
fn lossless_reconnect_resumes_the_existing_session_without_loss_or_duplicates() {
    let mut p = Pair::new(Policy::lossless_client(), V2Auth::None);
    p.pump();
    for i in 0..3u8 {
        p.c.send_message(Message::new(10, vec![i]));
        p.s.send_message(Message::new(20, vec![i]));
    }
    p.pump();
    assert_eq!(messages(&p.s_events).len(), 3);
    // Written on both sides but the link dies before any ACK crosses: both replay.
    for i in 3..6u8 {
        p.c.send_message(Message::new(10, vec![i]));
        p.s.send_message(Message::new(20, vec![i]));
    }
    let (mut lost_c, mut lost_s) = (Vec::new(), Vec::new());
    p.c.poll_transmit(&mut lost_c);
    p.s.poll_transmit(&mut lost_s);
    // The server gets the client's messages 4..6; the client never sees the server's.
    deliver(&mut p.s, &mut p.s_in, lost_c, usize::MAX, p.now);
    while let Some(e) = p.s.poll_event() {
        p.s_events.push(e);
    }
    assert_eq!(messages(&p.s_events).len(), 6);
    p.c.link_down(SessionError::LinkFailed("cable".into()), p.now);
    p.s.link_down(SessionError::LinkFailed("cable".into()), p.now);
    assert_eq!(
        p.s.state(),
        SessionState::Standby,
        "a lossless server waits"
    );
    let before_s = messages(&p.s_events);
    p.relink();
    p.pump();
    assert_eq!(p.decisions.last(), Some(&AcceptDecision::Replace));
    assert!(
        p.s_events
            .iter()
            .all(|e| !matches!(e, SessionEvent::RemoteReset { .. })),
        "{:?}",
        p.s_events
    );
    let ex = p.existing.as_mut().unwrap();
    assert_eq!(
        ex.state(),
        SessionState::Closed,
        "the old session was taken over"
    );
    let mut ex_events = Vec::new();
    while let Some(e) = ex.poll_event() {
        ex_events.push(e);
    }
    assert!(ex_events
        .iter()
        .any(|e| matches!(e, SessionEvent::Replaced)));
    assert!(!ex_events
        .iter()
        .any(|e| matches!(e, SessionEvent::Reset { .. })));
    p.pump();
    // The server already had the client's 4..6: none delivered twice. The client gets the
    // server's 4..6 replayed, after its 1..3, in order.
    let mut to_s: Vec<_> = before_s;
    to_s.extend(messages(&p.s_events));
    let want: Vec<(u16, Bytes)> = (0..6u8).map(|i| (10, Bytes::from(vec![i]))).collect();
    assert_eq!(to_s, want);
    let to_c = messages(&p.c_events);
    let want: Vec<(u16, Bytes)> = (3..6u8).map(|i| (20, Bytes::from(vec![i]))).collect();
    assert_eq!(to_c, want, "only the unacknowledged ones replayed");
    assert_eq!(p.c.state(), SessionState::Open);
    assert_eq!(p.s.state(), SessionState::Open);
    assert_eq!(p.s.in_seq(), 6);
    assert_eq!(p.c.in_seq(), 6);
}

#[test]
fn a_restarted_client_resets_the_old_session_and_its_queue_is_reported() {
    let mut p = Pair::new(Policy::lossless_client(), V2Auth::None);
    p.pump();
    p.c.link_down(SessionError::LinkFailed("cable".into()), p.now);
    p.s.link_down(SessionError::LinkFailed("cable".into()), p.now);
    // Two messages wait for the client on the server when it restarts.
    p.s.send_message(Message::new(20, vec![1]));
    p.s.send_message(Message::new(20, vec![2]));
    p.relink();
    // The restarted client: a fresh session (new cookie) from the same address.
    let cc = config(
        EntityName::new(EntityType::CLIENT, 4100),
        "127.0.0.1:0",
        Policy::lossless_client(),
    );
    p.c = SessionV2::connect(
        Arc::new(cc),
        server_addr(),
        EntityType::OSD,
        Policy::lossless_client(),
        p.now,
    );
    p.c.link_up(p.now);
    p.s.send_message(Message::new(20, vec![3]));
    p.pump();
    assert_eq!(
        p.decisions,
        [AcceptDecision::New, AcceptDecision::ReplaceAfterPeerReset]
    );
    let reset = p
        .s_events
        .iter()
        .find_map(|e| match e {
            SessionEvent::RemoteReset { undelivered } => Some(undelivered.len()),
            _ => None,
        })
        .expect("the old session's queue is reported");
    assert_eq!(reset, 2);
    assert_eq!(p.s.state(), SessionState::Open);
    // What was queued on the new session after the restart still goes out.
    assert_eq!(messages(&p.c_events), [(20, Bytes::from(vec![3]))]);
}

#[test]
fn a_flipped_byte_faults_the_link() {
    let mut p = Pair::new(Policy::lossy_client(), V2Auth::None);
    p.pump();
    p.c.send_message(Message::new(1, vec![1; 64]));
    let mut out = Vec::new();
    p.c.poll_transmit(&mut out);
    let mut bytes = out.concat();
    bytes[40] ^= 1;
    p.s_in.extend_from_slice(&bytes);
    let err = p.s.handle_input(&mut p.s_in, p.now).unwrap_err();
    assert!(err.to_string().contains("crc mismatch"), "{err}");
    let mut events = Vec::new();
    while let Some(e) = p.s.poll_event() {
        events.push(e);
    }
    assert!(events.iter().any(|e| matches!(e, SessionEvent::CloseLink)));
}

#[test]
fn stalled_handshake_times_out() {
    let now = Instant::now();
    let cc = config(
        EntityName::new(EntityType::CLIENT, -1),
        "127.0.0.1:0",
        Policy::lossy_client(),
    );
    let timeout = cc.base.handshake_timeout;
    let mut c = SessionV2::connect(
        Arc::new(cc),
        server_addr(),
        EntityType::OSD,
        Policy::lossy_client(),
        now,
    );
    c.link_up(now);
    assert_eq!(c.poll_timeout(), Some(now + timeout));
    c.handle_timeout(now + timeout);
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::Reset {
                error: SessionError::HandshakeTimeout(_),
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(c.state(), SessionState::Closed);
}

/// Our client fed the monitor's captured answers (auth none, crc): it accepts the handshake
/// byte for byte and delivers the monitor's messages.
#[test]
fn client_accepts_the_captured_monitor_stream() {
    let now = Instant::now();
    let mon = EntityAddrV2::new(AddrKind::MSGR2, "127.0.0.1:13304".parse().unwrap(), 0);
    let cc = config(
        EntityName::new(EntityType::CLIENT, -1),
        "127.0.0.1:0",
        Policy::lossy_client(),
    );
    let mut c = SessionV2::connect(
        Arc::new(cc),
        mon,
        EntityType::MON,
        Policy::lossy_client(),
        now,
    );
    c.link_up(now);
    let mut inbox = BytesMut::from(&v2_data::load("crc-none.0.s2c")[..]);
    c.handle_input(&mut inbox, now).unwrap();
    assert!(inbox.is_empty());
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    assert!(
        matches!(&events[0], SessionEvent::Connected { peer_name, .. } if peer_name.kind == EntityType::MON)
    );
    assert_eq!(
        messages(&events).iter().map(|m| m.0).collect::<Vec<_>>(),
        [4, 62, 4],
        "MonMap, Config, MonMap"
    );
    assert_eq!(c.global_id(), 4097);
    // What our client wrote up to CLIENT_IDENT is what the ceph CLI wrote, byte for byte (the
    // ident itself differs: cookie and nonce are random).
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    let ours = out.concat();
    let cli = v2_data::load("crc-none.0.c2s");
    let until_ident = 26 + 72 + 74 + 68; // banner, HELLO, AUTH_REQUEST, AUTH_SIGNATURE
    assert_eq!(ours[..until_ident], cli[..until_ident]);
    assert_eq!(
        c.peer_addrs().to_string(),
        "[v2:127.0.0.1:13304/0,v1:127.0.0.1:16793/0]"
    );
}
