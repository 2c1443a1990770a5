//! Bad input gives a typed error, never a panic, and never an allocation sized by the peer
//! before the limits are checked.

use bytes::{BufMut, Bytes, BytesMut};
use msgr_core::wire::frame::{encode_ack, encode_message_into};
use msgr_core::wire::{
    check_banner, ConnectMsg, ConnectReply, DecodeLimits, EntityAddr, EntityName, EntityType,
    Frame, FrameDecoder, MsgFooter, MsgHeader, Tag, WireError, LEGACY_ADDR_LEN,
};
use msgr_core::Message;

const SRC: EntityName = EntityName::new(EntityType::OSD, 3);

fn sample() -> Message {
    Message::new(42, Bytes::from_static(b"front bytes"))
        .with_middle(Bytes::from_static(b"mid"))
        .with_data(Bytes::from(vec![7u8; 1000]))
        .with_tid(9)
}

fn encoded(m: &Message, msg_auth: bool) -> BytesMut {
    let mut b = BytesMut::new();
    encode_message_into(m, 5, SRC, msg_auth, &mut b);
    b
}

fn decode_all(bytes: &[u8], limits: DecodeLimits, msg_auth: bool) -> Result<Vec<Frame>, WireError> {
    let mut dec = FrameDecoder::new(limits, msg_auth);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

/// Offsets inside an encoded MSG frame.
const HDR: usize = 1;
const FRONT: usize = 1 + MsgHeader::LEN;

#[test]
fn wrong_banner() {
    let e = check_banner(b"ceph v2\n\x10\x00").unwrap_err();
    assert_eq!(e, WireError::BadBanner(b"ceph v2\n\x10".to_vec()));
    assert!(
        e.to_string().contains("msgr2"),
        "says what is probably wrong: {e}"
    );
    assert!(matches!(
        check_banner(b"GET / HTTP"),
        Err(WireError::BadBanner(_))
    ));
    assert_eq!(
        check_banner(b"ceph"),
        Err(WireError::Short { need: 9, have: 4 })
    );
}

#[test]
fn short_structures() {
    assert_eq!(
        EntityAddr::decode_legacy(&[0; 135]),
        Err(WireError::Short {
            need: LEGACY_ADDR_LEN,
            have: 135
        })
    );
    assert!(matches!(
        ConnectMsg::decode(&[0; 32]),
        Err(WireError::Short { need: 33, .. })
    ));
    assert!(matches!(
        ConnectReply::decode(&[0; 25]),
        Err(WireError::Short { need: 26, .. })
    ));
    assert!(matches!(
        MsgHeader::decode(&[0; 52]),
        Err(WireError::Short { need: 53, .. })
    ));
    assert!(matches!(
        MsgFooter::decode(&[0; 20], true),
        Err(WireError::Short { need: 21, .. })
    ));
    assert!(matches!(
        MsgFooter::decode(&[0; 12], false),
        Err(WireError::Short { need: 13, .. })
    ));
    assert!(matches!(
        EntityName::decode(&[0; 8]),
        Err(WireError::Short { need: 9, .. })
    ));
}

#[test]
fn bad_addresses() {
    let mut b = BytesMut::new();
    EntityAddr::new("10.0.0.1:6800".parse().unwrap(), 7).encode_legacy(&mut b);
    let mut family = b.clone();
    family[8..10].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        EntityAddr::decode_legacy(&family),
        Err(WireError::BadAddrFamily(7))
    );
    // AF_INET in little-endian order is not AF_INET.
    let mut le = b.clone();
    le[8..10].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        EntityAddr::decode_legacy(&le),
        Err(WireError::BadAddrFamily(0x0200))
    );
    // Marker 1 starts an ADDR2 (msgr2-era) encoding, which the banner never carries.
    let mut marker = b.clone();
    marker[0] = 1;
    assert_eq!(
        EntityAddr::decode_legacy(&marker),
        Err(WireError::BadAddrMarker(1))
    );
    // A blank address decodes to None whatever padding follows.
    let blank = [0u8; LEGACY_ADDR_LEN];
    assert_eq!(EntityAddr::decode_legacy(&blank), Ok(EntityAddr::blank()));
}

#[test]
fn unknown_and_unexpected_tags() {
    assert_eq!(
        decode_all(&[0x42], DecodeLimits::default(), true),
        Err(WireError::UnknownTag(0x42))
    );
    assert_eq!(
        decode_all(&[0], DecodeLimits::default(), true),
        Err(WireError::UnknownTag(0))
    );
    // Handshake-only tags are known but not valid once the session is open.
    for tag in [
        Tag::Ready,
        Tag::Seq,
        Tag::Wait,
        Tag::ResetSession,
        Tag::Features,
    ] {
        assert_eq!(
            decode_all(&[tag as u8], DecodeLimits::default(), true),
            Err(WireError::UnexpectedTag {
                tag: tag as u8,
                state: "open"
            })
        );
    }
    // A bad tag after good frames: the good ones come out first.
    let mut b = BytesMut::new();
    encode_ack(3, &mut b);
    b.put_u8(200);
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    assert_eq!(dec.decode(&mut b), Ok(Some(Frame::Ack(3))));
    assert_eq!(dec.decode(&mut b), Err(WireError::UnknownTag(200)));
}

#[test]
fn header_crc_flipped() {
    let good = encoded(&sample(), true);
    // A flipped bit in a header field, and in the crc itself.
    for at in [HDR + 2, HDR + 20, HDR + MsgHeader::LEN - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let e = decode_all(&bad, DecodeLimits::default(), true).unwrap_err();
        assert!(matches!(e, WireError::HeaderCrc { .. }), "byte {at}: {e:?}");
    }
}

/// The decoder stops at the header crc even when the rest of the frame never arrives.
#[test]
fn header_crc_checked_before_waiting_for_payload() {
    let good = encoded(&sample(), true);
    let mut bad = BytesMut::from(&good[..FRONT]);
    bad[HDR] ^= 1;
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    assert!(matches!(
        dec.decode(&mut bad),
        Err(WireError::HeaderCrc { .. })
    ));
}

#[test]
fn payload_crc_flipped() {
    let m = sample();
    let good = encoded(&m, true);
    let front_at = FRONT;
    let middle_at = front_at + m.front.len();
    let data_at = middle_at + m.middle.len();
    for (at, section) in [
        (front_at, "front"),
        (middle_at + 1, "middle"),
        (data_at + 500, "data"),
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x80;
        match decode_all(&bad, DecodeLimits::default(), true) {
            Err(WireError::PayloadCrc {
                section: s,
                computed,
                expected,
            }) => {
                assert_eq!(s, section);
                assert_ne!(computed, expected);
            }
            other => panic!("{section}: {other:?}"),
        }
    }
    // A flipped footer crc field is caught the same way.
    let mut bad = good.clone();
    let footer_at = good.len() - MsgFooter::LEN_NEW;
    bad[footer_at] ^= 1;
    assert!(matches!(
        decode_all(&bad, DecodeLimits::default(), true),
        Err(WireError::PayloadCrc {
            section: "front",
            ..
        })
    ));
}

/// Rewrites the footer flags of an encoded frame (last byte).
fn with_flags(mut b: BytesMut, flags: u8) -> BytesMut {
    let last = b.len() - 1;
    b[last] = flags;
    b
}

#[test]
fn nocrc_skips_only_the_data_crc() {
    let m = sample();
    let good = encoded(&m, false);
    let data_at = FRONT + m.front.len() + m.middle.len();
    let mut corrupt_data = with_flags(
        good.clone(),
        MsgFooter::FLAG_COMPLETE | MsgFooter::FLAG_NOCRC,
    );
    corrupt_data[data_at] ^= 1;
    let frames = decode_all(&corrupt_data, DecodeLimits::default(), false).unwrap();
    let Frame::Msg(got) = &frames[0] else {
        panic!()
    };
    assert_eq!(
        got.data[0],
        m.data[0] ^ 1,
        "data accepted unchecked under NOCRC"
    );
    let mut corrupt_front = with_flags(good, MsgFooter::FLAG_COMPLETE | MsgFooter::FLAG_NOCRC);
    corrupt_front[FRONT] ^= 1;
    assert!(matches!(
        decode_all(&corrupt_front, DecodeLimits::default(), false),
        Err(WireError::PayloadCrc {
            section: "front",
            ..
        })
    ));
}

#[test]
fn footer_without_complete() {
    let good = encoded(&sample(), true);
    for flags in [0, MsgFooter::FLAG_NOCRC] {
        assert_eq!(
            decode_all(
                &with_flags(good.clone(), flags),
                DecodeLimits::default(),
                true
            ),
            Err(WireError::Incomplete(flags))
        );
    }
}

/// A valid tag + header (correct crc) announcing the given section lengths.
fn announce(front: u32, middle: u32, data: u32) -> BytesMut {
    let h = MsgHeader {
        seq: 1,
        front_len: front,
        middle_len: middle,
        data_len: data,
        src: SRC,
        ..MsgHeader::default()
    };
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(Tag::Msg as u8);
    h.encode(&mut b);
    b
}

#[test]
fn lengths_above_limits_fail_without_allocating() {
    let limits = DecodeLimits {
        max_message: 32 << 20,
        ..DecodeLimits::default()
    };
    let cases = [
        ((0, 0, u32::MAX), "data"),
        ((u32::MAX, 0, 0), "front"),
        ((0, u32::MAX, 0), "middle"),
        // Each within its own limit, the sum above max_message.
        (
            (limits.max_front, limits.max_middle, limits.max_data),
            "message",
        ),
    ];
    for ((f, m, d), section) in cases {
        let mut buf = announce(f, m, d);
        let cap = buf.capacity();
        let mut dec = FrameDecoder::new(limits, true);
        match dec.decode(&mut buf) {
            Err(WireError::TooLong {
                section: s,
                len,
                limit,
            }) => {
                assert_eq!(s, section);
                assert!(len > limit);
            }
            other => panic!("{section}: {other:?}"),
        }
        // (Consuming the tag shrinks the capacity by one; nothing may grow it.)
        assert!(
            buf.capacity() <= cap,
            "{section}: reserved for the announced length"
        );
        // Poisoned: the same error again, still without touching the buffer.
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::TooLong { .. })
        ));
        assert!(buf.capacity() <= cap);
    }
    let e = decode_all(&announce(0, 0, u32::MAX), limits, true).unwrap_err();
    assert!(e.to_string().contains("max_data"), "names the knob: {e}");
}

#[test]
fn small_limits_are_enforced_exactly() {
    let limits = DecodeLimits {
        max_front: 10,
        max_middle: 0,
        max_data: 100,
        max_message: 105,
    };
    let m = Message::new(1, vec![0u8; 10]).with_data(vec![1u8; 95]);
    assert!(
        decode_all(&encoded(&m, true), limits, true).is_ok(),
        "exactly at the limits"
    );
    let m = Message::new(1, vec![0u8; 11]);
    assert!(matches!(
        decode_all(&encoded(&m, true), limits, true),
        Err(WireError::TooLong {
            section: "front",
            ..
        })
    ));
    let m = Message::new(1, vec![0u8; 10]).with_data(vec![1u8; 96]);
    assert!(matches!(
        decode_all(&encoded(&m, true), limits, true),
        Err(WireError::TooLong {
            section: "message",
            ..
        })
    ));
    let m = Message::new(1, vec![]).with_middle(vec![1u8]);
    assert!(matches!(
        decode_all(&encoded(&m, true), limits, true),
        Err(WireError::TooLong {
            section: "middle",
            ..
        })
    ));
}

/// While waiting for a payload the decoder reserves room for exactly what is missing.
#[test]
fn reserves_only_what_the_frame_needs() {
    let m = Message::new(1, vec![5u8; 3000]).with_data(vec![6u8; 100_000]);
    let full = encoded(&m, true);
    let mut buf = BytesMut::from(&full[..FRONT + 10]);
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    let missing = full.len() - FRONT;
    assert!(buf.capacity() >= missing, "room for the rest of the frame");
    assert!(
        buf.capacity() <= 2 * missing,
        "capacity {} for {missing} bytes",
        buf.capacity()
    );
    buf.extend_from_slice(&full[FRONT + 10..]);
    let Some(Frame::Msg(got)) = dec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(got.data, m.data);
}

#[test]
fn msg_auth_mismatch_is_detected() {
    // A 13-byte-footer stream read as 21-byte footers: the old footer's flags byte lands in the
    // signature and the next frame's bytes in the footer, whose flags then lack COMPLETE.
    let mut b = encoded(&sample(), false);
    encode_ack(1, &mut b);
    encode_ack(2, &mut b);
    assert_eq!(
        decode_all(&b, DecodeLimits::default(), true),
        Err(WireError::Incomplete(0))
    );
}

#[test]
fn seq_and_src_come_from_the_sender_not_the_message() {
    let m = sample(); // seq 0, src client.? by default
    let frames = decode_all(&encoded(&m, true), DecodeLimits::default(), true).unwrap();
    let [Frame::Msg(got)] = &frames[..] else {
        panic!("{frames:?}")
    };
    assert_eq!((got.seq, got.src), (5, SRC));
    assert_eq!((got.msg_type, got.tid), (42, 9));
    assert_eq!(
        (&got.front, &got.middle, &got.data),
        (&m.front, &m.middle, &m.data)
    );
}

#[test]
fn reset_clears_a_failed_decoder_for_a_new_link() {
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    let mut junk = BytesMut::from(&[0xffu8][..]);
    assert_eq!(dec.decode(&mut junk), Err(WireError::UnknownTag(0xff)));
    assert!(!dec.is_idle());
    dec.reset();
    assert!(dec.is_idle());
    let mut good = BytesMut::new();
    encode_ack(77, &mut good);
    assert_eq!(dec.decode(&mut good), Ok(Some(Frame::Ack(77))));
}
