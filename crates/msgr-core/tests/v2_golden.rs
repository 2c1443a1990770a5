//! Golden vectors from real Ceph traffic (see `tests/data/v2/README.md`): every crc-mode frame the
//! `ceph` CLI and a monitor exchanged decodes, and re-encodes byte for byte from the decoded
//! fields.

mod v2_data;

use bytes::BytesMut;
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits};
use msgr_core::v2::message::{encode_message_crc, MessageRef};
use msgr_core::v2::payload::Control;
use msgr_core::v2::{AddrKind, Banner, Tag};
use v2_data::{load, CRC_STREAMS};

/// Decodes a whole crc-mode stream into (tag, re-encoded bytes, original bytes) per frame.
fn frames(stream: &[u8]) -> Vec<(Tag, Vec<u8>, Vec<u8>)> {
    let (banner, mut at) = Banner::decode(stream).unwrap().expect("whole banner");
    Banner::default().check_peer(&banner).unwrap();
    let mut out = Vec::new();
    while at < stream.len() {
        let rest = &stream[at..];
        let (frame, used) = match decode_crc(rest, &FrameLimits::default()).unwrap() {
            Decoded::Frame(f, used) => (f, used),
            Decoded::Need(n) => panic!("truncated frame at {at}: need {n}"),
        };
        let tag = frame.tag().unwrap();
        let mut again = BytesMut::new();
        if tag == Tag::Message {
            let m = MessageRef::from_frame(&frame).unwrap();
            encode_message_crc(&m.header, m.front, m.middle, m.data, &mut again);
        } else {
            Control::decode(tag, frame.payload())
                .unwrap()
                .encode_crc(&mut again);
        }
        out.push((tag, again.to_vec(), rest[..used].to_vec()));
        at += used;
    }
    out
}

#[test]
fn every_crc_frame_reencodes_byte_for_byte() {
    let mut count = 0;
    for name in CRC_STREAMS {
        for (i, (tag, again, orig)) in frames(&load(name)).into_iter().enumerate() {
            assert_eq!(
                again, orig,
                "{name} frame {i} ({tag:?}) differs after re-encoding"
            );
            count += 1;
        }
    }
    // 8 streams; the count guards against a decoder that silently stops early.
    assert!(count >= 70, "only {count} frames decoded");
}

#[test]
fn banners_are_msgr2_1_without_compression() {
    for name in CRC_STREAMS {
        let (b, len) = Banner::decode(&load(name)).unwrap().unwrap();
        assert_eq!(len, 26);
        assert_eq!(
            b,
            Banner {
                supported: 1,
                required: 0
            },
            "{name}"
        );
    }
}

#[test]
fn handshake_fields_match_the_capture() {
    let c2s = frames(&load("crc-none.0.c2s"));
    let tags: Vec<Tag> = c2s.iter().map(|f| f.0).collect();
    assert_eq!(
        tags[..4],
        [
            Tag::Hello,
            Tag::AuthRequest,
            Tag::AuthSignature,
            Tag::ClientIdent
        ]
    );
    let hello = decode_payload(&c2s[0].2);
    let Control::Hello {
        entity_type,
        peer_addr,
    } = hello
    else {
        panic!("{hello:?}")
    };
    assert_eq!(entity_type.0, 8, "the CLI is a client");
    assert_eq!(peer_addr.to_string(), "v2:127.0.0.1:13304/0");

    let Control::AuthRequest {
        method,
        preferred_modes,
        ..
    } = decode_payload(&c2s[1].2)
    else {
        panic!()
    };
    assert_eq!(
        (method, preferred_modes),
        (1, vec![1]),
        "auth none, crc mode"
    );

    let Control::ClientIdent(ci) = decode_payload(&c2s[3].2) else {
        panic!()
    };
    assert_eq!(ci.target_addr.kind, AddrKind::MSGR2);
    assert_eq!(ci.addrs.0[0].kind, AddrKind::ANY);
    assert_eq!(ci.gid, -1);

    let s2c = frames(&load("crc-none.0.s2c"));
    let Control::AuthDone {
        global_id,
        con_mode,
        ..
    } = decode_payload(&s2c[1].2)
    else {
        panic!()
    };
    assert_eq!((global_id, con_mode), (4097, 1));
    let Control::AuthSignature { signature } = decode_payload(&s2c[2].2) else {
        panic!()
    };
    assert_eq!(
        signature, [0; 32],
        "auth none signs with an empty key: all zeros"
    );
    let Control::ServerIdent(si) = decode_payload(&s2c[3].2) else {
        panic!()
    };
    assert_eq!(
        si.addrs.to_string(),
        "[v2:127.0.0.1:13304/0,v1:127.0.0.1:16793/0]"
    );
}

/// Decodes the control payload of one whole crc frame.
fn decode_payload(frame: &[u8]) -> Control {
    let Decoded::Frame(f, _) = decode_crc(frame, &FrameLimits::default()).unwrap() else {
        panic!("whole frame expected")
    };
    Control::decode(f.tag().unwrap(), f.payload()).unwrap()
}
