use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::*;
use crate::session::SessionConfig;
use crate::session_v2::V2Config;
use crate::v2::EntityAddrVec;
use crate::wire::EntityType;

fn configs(accept_v1: bool, accept_v2: bool) -> Configs {
    let me = EntityAddr::new("127.0.0.1:6800".parse().unwrap(), 7);
    let v1 = Arc::new(SessionConfig::new(EntityName::new(EntityType::OSD, 0), me));
    let v2 = Arc::new(V2Config::new(v1.clone(), EntityAddrVec::default()));
    Configs {
        v1,
        v2: Some(v2),
        accept_v1,
        accept_v2,
    }
}

fn accepted(accept_v1: bool, accept_v2: bool) -> (AnySession, Instant) {
    let now = Instant::now();
    let mut s = AnySession::accept(
        &configs(accept_v1, accept_v2),
        "127.0.0.1:5000".parse().unwrap(),
        now,
    );
    s.link_up(now);
    (s, now)
}

fn out(s: &mut AnySession) -> Vec<u8> {
    let mut chunks = Vec::new();
    s.poll_transmit(&mut chunks);
    chunks.concat()
}

#[test]
fn the_banner_picks_the_protocol_and_nothing_is_sent_before_it() {
    for (banner, protocol, reply) in [
        (&b"ceph v027"[..], Protocol::V1, &b"ceph v027"[..]),
        (&b"ceph v2\n"[..], Protocol::V2, &b"ceph v2\n"[..]),
    ] {
        let (mut s, now) = accepted(true, true);
        assert!(matches!(s, AnySession::Detect(_)));
        assert_eq!(s.state(), SessionState::Accepting);
        // Byte by byte: undecided until the protocol byte, and silent.
        let mut buf = BytesMut::new();
        for b in &banner[..6] {
            buf.extend_from_slice(&[*b]);
            s.handle_input(&mut buf, now).unwrap();
            assert!(matches!(s, AnySession::Detect(_)));
            assert!(out(&mut s).is_empty());
        }
        buf.extend_from_slice(&banner[6..]);
        s.handle_input(&mut buf, now).unwrap();
        assert_eq!(s.protocol(), protocol);
        assert!(
            out(&mut s).starts_with(reply),
            "{protocol} answers its banner"
        );
    }
}

#[test]
fn garbage_or_an_unaccepted_protocol_is_refused_with_the_reason() {
    for (accept_v1, accept_v2, input, says) in [
        (
            true,
            true,
            &b"GET / HTTP/1.1\r\n"[..],
            "no Ceph messenger banner",
        ),
        (true, true, &b"ceph v9"[..], "unknown protocol version"),
        (false, true, &b"ceph v027"[..], "msgr2 session"),
    ] {
        let (mut s, now) = accepted(accept_v1, accept_v2);
        let mut buf = BytesMut::from(input);
        let r = s.handle_input(&mut buf, now);
        let e = match r {
            Err(e) => e.to_string(),
            // A msgr2-only node has a msgr2 session: it fails on the msgr1 banner itself.
            Ok(()) => {
                let mut ev = Vec::new();
                while let Some(e) = s.poll_event() {
                    ev.push(format!("{e:?}"));
                }
                ev.join(" ")
            }
        };
        if accept_v1 {
            assert!(e.contains(says), "{e}");
            let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
            assert!(matches!(events[0], SessionEvent::CloseLink), "{events:?}");
            assert!(
                matches!(events[1], SessionEvent::Reset { .. }),
                "{events:?}"
            );
            assert_eq!(s.state(), SessionState::Closed);
        } else {
            assert_eq!(s.protocol(), Protocol::V2);
            assert!(!e.is_empty());
        }
    }
}

#[test]
fn a_stalled_peer_times_out_before_its_banner() {
    let (mut s, now) = accepted(true, true);
    let t = s.poll_timeout().expect("the handshake timer runs");
    s.handle_timeout(t);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        matches!(
            &events[1],
            SessionEvent::Reset {
                error: SessionError::HandshakeTimeout(_),
                ..
            }
        ),
        "{events:?}"
    );
    let _ = now;
}

#[test]
fn peer_prefixes_parse() {
    let (p, a) = parse_peer_addr("v2:10.0.0.1:3300/0").unwrap();
    assert_eq!((p, a.port()), (Some(Protocol::V2), 3300));
    let (p, _) = parse_peer_addr("10.0.0.1:6789/0").unwrap();
    assert_eq!(p, None);
    let e = parse_peer_addr("v2:nowhere").unwrap_err();
    assert_eq!(e.got, "v2:nowhere");
    assert_eq!("msgr2".parse::<Protocol>(), Ok(Protocol::V2));
    assert!("v3".parse::<Protocol>().is_err());
}
