//! Peers that send the wrong thing: bad banners, oversized authorizers, garbage frames.

use bytes::Bytes;

use crate::wire::features::DEFAULT_SUPPORTED;
use crate::wire::{ConnectMsg, WireError, BANNER};

use super::*;

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
