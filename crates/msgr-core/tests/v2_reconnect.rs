//! The msgr2 client's reconnect path against a scripted server: SESSION_RECONNECT carries the
//! cookies and our in_seq; RETRY_GLOBAL and RETRY make it try again with higher counters;
//! RECONNECT_OK resumes the session, replaying exactly the messages the server had not received,
//! with their original sequence numbers; WAIT backs off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::{SessionConfig, SessionError, SessionEvent, SessionState};
use msgr_core::session_v2::{SessionV2, V2Config};
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits};
use msgr_core::v2::message::{encode_message_crc, MessageRef, MsgHeader2};
use msgr_core::v2::payload::{Control, ServerIdent, SessionReconnect};
use msgr_core::v2::{AddrKind, Banner, EntityAddrV2, EntityAddrVec, Tag};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_core::Message;

const SERVER_COOKIE: u64 = 0xc00c1e;

fn server_addr() -> EntityAddrV2 {
    EntityAddrV2::new(AddrKind::MSGR2, "127.0.0.1:3300".parse().unwrap(), 9)
}

fn client() -> SessionV2 {
    let sa: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut base = SessionConfig::new(
        EntityName::new(EntityType::CLIENT, 5),
        EntityAddr::new(sa, 1),
    );
    base.policies = PolicySet::new(Policy::lossless_client());
    let cfg = V2Config::new(
        Arc::new(base),
        EntityAddrVec(vec![EntityAddrV2::new(AddrKind::ANY, sa, 1)]),
    );
    SessionV2::connect(
        Arc::new(cfg),
        server_addr(),
        EntityType::OSD,
        Policy::lossless_client(),
        Instant::now(),
    )
}

/// One end of a scripted server: what the client sent, decoded.
#[derive(Default)]
struct Script {
    from_client: BytesMut,
    banner_seen: bool,
}

enum Sent {
    Control(Control),
    Message(MsgHeader2),
}

impl Script {
    /// Everything the client wrote since the last call.
    fn read(&mut self, c: &mut SessionV2) -> Vec<Sent> {
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        self.from_client.extend_from_slice(&out.concat());
        if !self.banner_seen {
            let (_, used) = Banner::decode(&self.from_client).unwrap().unwrap();
            let _ = self.from_client.split_to(used);
            self.banner_seen = true;
        }
        let mut frames = Vec::new();
        while let Decoded::Frame(f, used) =
            decode_crc(&self.from_client, &FrameLimits::default()).unwrap()
        {
            let tag = f.tag().unwrap();
            frames.push(if tag == Tag::Message {
                Sent::Message(MessageRef::from_frame(&f).unwrap().header)
            } else {
                Sent::Control(Control::decode(tag, f.payload()).unwrap())
            });
            let _ = self.from_client.split_to(used);
        }
        frames
    }
}

fn frame(c: Control) -> Bytes {
    let mut b = BytesMut::new();
    c.encode_crc(&mut b);
    b.freeze()
}

fn feed(c: &mut SessionV2, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    c.handle_input(&mut buf, Instant::now()).unwrap();
    assert!(buf.is_empty());
}

/// The server's side of banner, HELLO, auth none, signature.
fn server_handshake(c: &mut SessionV2) {
    let mut b = BytesMut::new();
    Banner::default().encode(&mut b);
    feed(c, &b);
    feed(
        c,
        &frame(Control::Hello {
            entity_type: EntityType::OSD,
            peer_addr: server_addr(),
        }),
    );
    feed(
        c,
        &frame(Control::AuthDone {
            global_id: 77,
            con_mode: 1,
            auth_payload: vec![],
        }),
    );
    feed(c, &frame(Control::AuthSignature { signature: [0; 32] }));
}

fn events(c: &mut SessionV2) -> Vec<SessionEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn last_control(sent: &[Sent]) -> &Control {
    sent.iter()
        .rev()
        .find_map(|s| match s {
            Sent::Control(c) => Some(c),
            _ => None,
        })
        .expect("a control frame")
}

#[test]
fn reconnect_retries_then_resumes_and_replays_only_what_was_lost() {
    let mut c = client();
    let mut s = Script::default();
    c.link_up(Instant::now());
    server_handshake(&mut c);
    let Control::ClientIdent(ci) = last_control(&s.read(&mut c)).clone() else {
        panic!()
    };
    assert_eq!(ci.flags, 0, "lossless");
    feed(
        &mut c,
        &frame(Control::ServerIdent(ServerIdent {
            addrs: EntityAddrVec(vec![server_addr()]),
            gid: 3,
            global_seq: 10,
            supported_features: ci.supported_features,
            required_features: 0,
            flags: 0,
            cookie: SERVER_COOKIE,
        })),
    );
    assert!(matches!(events(&mut c)[0], SessionEvent::Connected { .. }));

    // Three messages out, two in; the server only ever acks seq 1.
    for t in 1..=3 {
        c.send_message(Message::new(t, vec![t as u8]));
    }
    let sent = s.read(&mut c);
    assert_eq!(
        sent.iter()
            .filter(|m| matches!(m, Sent::Message(_)))
            .count(),
        3
    );
    let mut b = BytesMut::new();
    for seq in 1..=2 {
        let h = MsgHeader2 {
            seq,
            msg_type: 99,
            ack_seq: 1,
            ..Default::default()
        };
        encode_message_crc(&h, b"x", &[], &[], &mut b);
    }
    feed(&mut c, &b);
    assert_eq!(c.in_seq(), 2);

    c.link_down(SessionError::LinkFailed("cable".into()), Instant::now());
    assert!(c.wants_reconnect());
    c.link_up(Instant::now());
    s = Script::default();
    server_handshake(&mut c);
    let Control::SessionReconnect(r1) = last_control(&s.read(&mut c)).clone() else {
        panic!()
    };
    assert_eq!(
        (
            r1.client_cookie,
            r1.server_cookie,
            r1.msg_seq,
            r1.connect_seq
        ),
        (ci.cookie, SERVER_COOKIE, 2, 0)
    );

    feed(
        &mut c,
        &frame(Control::SessionRetryGlobal { global_seq: 500 }),
    );
    let Control::SessionReconnect(r2) = last_control(&s.read(&mut c)).clone() else {
        panic!()
    };
    assert!(
        r2.global_seq > 500,
        "global_seq above the server's: {}",
        r2.global_seq
    );

    feed(&mut c, &frame(Control::SessionRetry { connect_seq: 4 }));
    let Control::SessionReconnect(r3) = last_control(&s.read(&mut c)).clone() else {
        panic!()
    };
    assert_eq!(r3.connect_seq, 5);
    let _: &SessionReconnect = &r3;

    // The server had received up to seq 2: only seq 3 is replayed, with its seq.
    feed(&mut c, &frame(Control::SessionReconnectOk { msg_seq: 2 }));
    assert!(events(&mut c)
        .iter()
        .any(|e| matches!(e, SessionEvent::Connected { .. })));
    assert_eq!(c.state(), SessionState::Open);
    let replayed: Vec<u64> = s
        .read(&mut c)
        .iter()
        .filter_map(|m| match m {
            Sent::Message(h) => Some(h.seq),
            _ => None,
        })
        .collect();
    assert_eq!(replayed, [3]);
    c.send_message(Message::new(4, vec![]));
    let next: Vec<(u64, u64)> = s
        .read(&mut c)
        .iter()
        .filter_map(|m| match m {
            Sent::Message(h) => Some((h.seq, h.ack_seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        next,
        [(4, 2)],
        "new messages continue the numbering and ack what we have"
    );
}

#[test]
fn wait_backs_off_then_wants_a_new_link() {
    let mut c = client();
    let mut s = Script::default();
    c.link_up(Instant::now());
    server_handshake(&mut c);
    s.read(&mut c);
    feed(&mut c, &frame(Control::Wait));
    assert_eq!(c.state(), SessionState::Wait);
    assert!(events(&mut c)
        .iter()
        .any(|e| matches!(e, SessionEvent::CloseLink)));
    assert!(!c.wants_reconnect(), "not before the back-off");
    let at = c.poll_timeout().expect("a back-off deadline");
    c.handle_timeout(at);
    assert!(c.wants_reconnect());
}
