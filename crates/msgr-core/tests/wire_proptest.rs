//! Property tests: every structure round-trips through encode / decode, and any stream of frames
//! decodes to the same frames however the bytes are split.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{Bytes, BytesMut};
use msgr_core::wire::frame::{
    encode_frame, encode_message, encode_message_batched, encode_message_crc, flush_batch,
};
use msgr_core::wire::{
    ConnectMsg, ConnectReply, DecodeLimits, EntityAddr, EntityName, EntityType, Frame,
    FrameDecoder, MsgFooter, MsgHeader, LEGACY_ADDR_LEN,
};
use msgr_core::{Message, Priority};
use proptest::prelude::*;

fn entity_name() -> impl Strategy<Value = EntityName> {
    (any::<u8>(), any::<i64>()).prop_map(|(t, num)| EntityName::new(EntityType(t), num))
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        (any::<u128>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope
            ))
        ),
    ]
}

fn entity_addr() -> impl Strategy<Value = EntityAddr> {
    // The low byte of `kind` is the legacy marker and must be 0; the rest is kept padding.
    (
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(socket_addr()),
    )
        .prop_map(|(kind, nonce, addr)| EntityAddr {
            kind: kind & !0xff,
            nonce,
            addr,
        })
}

fn section(max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        (any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>()),
        (any::<u64>(), any::<u16>(), any::<u64>(), entity_name()),
        (section(300), section(40), section(2000)),
    )
        .prop_map(
            |(
                (msg_type, prio, version, compat_version),
                (tid, data_off, seq, src),
                (front, middle, data),
            )| Message {
                msg_type,
                priority: Priority(prio),
                version,
                compat_version,
                tid,
                data_off,
                seq,
                src,
                front,
                middle,
                data,
                ..Message::default()
            },
        )
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => message().prop_map(Frame::Msg),
        1 => any::<u64>().prop_map(Frame::Ack),
        1 => Just(Frame::Keepalive),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(sec, nsec)| Frame::Keepalive2 { sec, nsec }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(sec, nsec)| Frame::Keepalive2Ack { sec, nsec }),
        1 => Just(Frame::Close),
    ]
}

/// Decodes `bytes` fed in chunks of the given sizes (cycled), draining after each chunk.
fn decode_in_chunks(bytes: &[u8], chunks: &[usize], msg_auth: bool) -> Vec<Frame> {
    let mut dec = FrameDecoder::new(DecodeLimits::default(), msg_auth);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for &n in chunks.iter().cycle() {
        if at == bytes.len() {
            break;
        }
        let n = n.min(bytes.len() - at);
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        while let Some(f) = dec.decode(&mut buf).expect("valid stream") {
            out.push(f);
        }
    }
    assert!(buf.is_empty());
    assert!(dec.is_idle());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn entity_name_round_trips(n in entity_name()) {
        let mut out = BytesMut::new();
        n.encode(&mut out);
        prop_assert_eq!(out.len(), EntityName::LEN);
        prop_assert_eq!(EntityName::decode(&out).unwrap(), n);
    }

    #[test]
    fn entity_addr_round_trips(a in entity_addr()) {
        let mut out = BytesMut::new();
        a.encode_legacy(&mut out);
        prop_assert_eq!(out.len(), LEGACY_ADDR_LEN);
        prop_assert_eq!(EntityAddr::decode_legacy(&out).unwrap(), a);
        // Family and port are big-endian.
        if let Some(sa) = a.addr {
            prop_assert_eq!(u16::from_be_bytes([out[10], out[11]]), sa.port());
            let family = u16::from_be_bytes([out[8], out[9]]);
            prop_assert_eq!(family, if sa.is_ipv4() { 2 } else { 10 });
        } else {
            prop_assert!(out[8..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn connect_round_trips(
        c in (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u8>())
    ) {
        let c = ConnectMsg {
            features: c.0, host_type: c.1, global_seq: c.2, connect_seq: c.3,
            protocol_version: c.4, authorizer_protocol: c.5, authorizer_len: c.6, flags: c.7,
        };
        let mut out = BytesMut::new();
        c.encode(&mut out);
        prop_assert_eq!(out.len(), ConnectMsg::LEN);
        prop_assert_eq!(ConnectMsg::decode(&out).unwrap(), c);
    }

    #[test]
    fn connect_reply_round_trips(
        r in (any::<u8>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u8>())
    ) {
        let r = ConnectReply {
            tag: r.0, features: r.1, global_seq: r.2, connect_seq: r.3,
            protocol_version: r.4, authorizer_len: r.5, flags: r.6,
        };
        let mut out = BytesMut::new();
        r.encode(&mut out);
        prop_assert_eq!(out.len(), ConnectReply::LEN);
        prop_assert_eq!(ConnectReply::decode(&out).unwrap(), r);
    }

    #[test]
    fn header_round_trips_with_crc(
        a in (any::<u64>(), any::<u64>(), any::<u16>(), any::<u16>(), any::<u16>()),
        b in (any::<u32>(), any::<u32>(), any::<u32>(), any::<u16>(), entity_name(), any::<u16>(), any::<u16>()),
    ) {
        let h = MsgHeader {
            seq: a.0, tid: a.1, msg_type: a.2, priority: a.3, version: a.4,
            front_len: b.0, middle_len: b.1, data_len: b.2, data_off: b.3, src: b.4,
            compat_version: b.5, reserved: b.6, crc: 0,
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        prop_assert_eq!(out.len(), MsgHeader::LEN);
        let d = MsgHeader::decode(&out).unwrap();
        prop_assert_eq!(d, h.with_crc());
        prop_assert_eq!(d.crc, h.compute_crc());
    }

    #[test]
    fn footer_round_trips(
        f in (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u8>()),
        msg_auth in any::<bool>(),
    ) {
        let f = MsgFooter {
            front_crc: f.0, middle_crc: f.1, data_crc: f.2,
            sig: if msg_auth { f.3 } else { 0 }, flags: f.4,
        };
        let mut out = BytesMut::new();
        f.encode(&mut out, msg_auth);
        prop_assert_eq!(out.len(), if msg_auth { MsgFooter::LEN_NEW } else { MsgFooter::LEN_OLD });
        prop_assert_eq!(MsgFooter::decode(&out, msg_auth).unwrap(), f);
    }

    /// A message encoded as chunks is tag+header, the non-empty sections (the very same
    /// buffers), and the footer.
    #[test]
    fn encode_message_is_vectored(m in message(), msg_auth in any::<bool>()) {
        let mut chunks = Vec::new();
        encode_message(&m, m.seq, m.src, msg_auth, &mut chunks);
        let sections: Vec<&Bytes> = [&m.front, &m.middle, &m.data].into_iter().filter(|s| !s.is_empty()).collect();
        prop_assert_eq!(chunks.len(), 2 + sections.len());
        prop_assert_eq!(chunks[0].len(), 1 + MsgHeader::LEN);
        for (c, s) in chunks[1..].iter().zip(&sections) {
            prop_assert_eq!(c.as_ptr(), s.as_ptr(), "payload chunk is a clone, not a copy");
        }
        prop_assert_eq!(chunks.last().unwrap().len(), MsgFooter::len(msg_auth));
    }

    /// Many messages encoded into one batch buffer make the same bytes as each encoded on its
    /// own; sections above the inline limit stay uncopied chunks, and small messages share
    /// their chunks.
    #[test]
    fn batched_encoding_is_byte_identical(
        msgs in proptest::collection::vec(message(), 1..12),
        msg_auth in any::<bool>(),
        crc_data in any::<bool>(),
        inline_max in prop_oneof![Just(0usize), Just(64), Just(1024), Just(1 << 20)],
    ) {
        let (mut each, mut batched) = (Vec::new(), Vec::new());
        let mut batch = BytesMut::new();
        for m in &msgs {
            encode_message_crc(m, m.seq, m.src, msg_auth, crc_data, &mut each);
            encode_message_batched(m, m.seq, m.src, msg_auth, crc_data, inline_max, &mut batch, &mut batched);
        }
        flush_batch(&mut batch, &mut batched);
        prop_assert_eq!(batched.concat(), each.concat());
        let large: Vec<&Bytes> = msgs
            .iter()
            .flat_map(|m| [&m.front, &m.middle, &m.data])
            .filter(|s| s.len() > inline_max)
            .collect();
        for s in &large {
            prop_assert!(batched.iter().any(|c| c.as_ptr() == s.as_ptr() && c.len() == s.len()), "large section copied");
        }
        // Everything else shares chunks: one run of small parts before each large section, one
        // at the end, and one more per batch allocation (16 KiB) filled.
        let small: usize = each.iter().map(Bytes::len).sum::<usize>() - large.iter().map(|s| s.len()).sum::<usize>();
        let most = 2 * large.len() + 1 + small / (16 << 10);
        prop_assert!(batched.len() <= most, "{} chunks for {} large sections, {} small bytes", batched.len(), large.len(), small);
        prop_assert!(batched.iter().all(|c| !c.is_empty()));
    }

    #[test]
    fn frame_stream_survives_any_split(
        frames in proptest::collection::vec(frame(), 1..12),
        chunks in proptest::collection::vec(1usize..200, 1..20),
        msg_auth in any::<bool>(),
    ) {
        let mut bytes = BytesMut::new();
        for f in &frames {
            encode_frame(f, msg_auth, &mut bytes);
        }
        let whole = decode_in_chunks(&bytes, &[bytes.len()], msg_auth);
        prop_assert_eq!(&whole, &frames);
        let split = decode_in_chunks(&bytes, &chunks, msg_auth);
        prop_assert_eq!(&split, &frames);
        let bytewise = decode_in_chunks(&bytes, &[1], msg_auth);
        prop_assert_eq!(&bytewise, &frames);
    }
}
