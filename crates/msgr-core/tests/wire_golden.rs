//! Golden vectors from real Ceph traffic (`tests/data/`, see its README): decoding them gives the
//! fields a Ceph monitor and the `ceph` CLI actually sent, re-encoding gives the same bytes, and
//! every captured crc verifies.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use msgr_core::wire::features::*;
use msgr_core::wire::frame::{encode_keepalive2, encode_keepalive2_ack, encode_message};
use msgr_core::wire::{
    check_banner, crc::ceph_crc32c, ConnectMsg, ConnectReply, DecodeLimits, EntityAddr, EntityName,
    EntityType, Frame, FrameDecoder, MsgFooter, MsgHeader, Tag, BANNER, CONNECT_FLAG_LOSSY,
    LEGACY_ADDR_LEN,
};
use msgr_core::Priority;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

const MON_PORT: u16 = 16789;

/// Bytes before the first open-session frame: banner, addresses, connect / reply, and the
/// u64 seq exchanged after the SEQ reply (no authorizers in these sessions).
const C2S_HANDSHAKE: usize = 9 + LEGACY_ADDR_LEN + ConnectMsg::LEN + 8;
const S2C_HANDSHAKE: usize = 9 + 2 * LEGACY_ADDR_LEN + ConnectReply::LEN + 8;

fn decode_one(bytes: &[u8]) -> Frame {
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    let mut buf = BytesMut::from(bytes);
    let f = dec
        .decode(&mut buf)
        .expect("valid frame")
        .expect("complete frame");
    assert!(
        buf.is_empty(),
        "frame vector has {} trailing bytes",
        buf.len()
    );
    f
}

fn encode_msg_contiguous(m: &msgr_core::Message) -> Vec<u8> {
    let mut chunks = Vec::new();
    encode_message(m, m.seq, m.src, true, &mut chunks);
    chunks.concat()
}

#[test]
fn banner() {
    let b = hex(include_str!("data/banner.hex"));
    assert_eq!(&b[..], &BANNER[..]);
    check_banner(&b).unwrap();
}

#[test]
fn crc_matches_ceph_conventions() {
    assert_eq!(ceph_crc32c(0, b""), 0);
    assert_eq!(ceph_crc32c(0x1234_5678, b""), 0x1234_5678);
    // The standard CRC-32C check value is the same function with pre- and post-inversion.
    assert_eq!(!ceph_crc32c(!0, b"123456789"), 0xE306_9283);
    // Incremental use (seed = crc so far) equals one pass.
    let data = b"ceph messenger protocol v1";
    assert_eq!(
        ceph_crc32c(ceph_crc32c(0, &data[..7]), &data[7..]),
        ceph_crc32c(0, data)
    );
}

fn check_addr(file: &str, want: &str, nonce: u32) -> EntityAddr {
    let b = hex(file);
    assert_eq!(b.len(), LEGACY_ADDR_LEN);
    let a = EntityAddr::decode_legacy(&b).unwrap();
    assert_eq!(a.kind, 0, "banner addresses carry the legacy marker 0");
    assert_eq!(a.nonce, nonce);
    assert_eq!(a.addr, Some(want.parse::<SocketAddr>().unwrap()));
    let mut out = BytesMut::new();
    a.encode_legacy(&mut out);
    assert_eq!(&out[..], &b[..]);
    assert_eq!(EntityAddr::new(want.parse().unwrap(), nonce), a);
    a
}

#[test]
fn addresses_from_the_banner() {
    let server = check_addr(include_str!("data/addr_server.hex"), "127.0.0.1:16789", 0);
    assert_eq!(server.port(), MON_PORT);
    assert_eq!(server.to_string(), "v1:127.0.0.1:16789/0");
    let seen = check_addr(
        include_str!("data/addr_peer_seen.hex"),
        "127.0.0.1:34650",
        0,
    );
    assert_eq!(seen.to_string(), "v1:127.0.0.1:34650/0");
    // The client answers with the learned IP, port 0 and a random nonce.
    let client = check_addr(
        include_str!("data/addr_client.hex"),
        "127.0.0.1:0",
        0x9a97_adfe,
    );
    assert_eq!(client.to_string(), "v1:127.0.0.1:0/2593631742");
}

#[test]
fn connect_and_reply() {
    let b = hex(include_str!("data/connect.hex"));
    let c = ConnectMsg::decode(&b).unwrap();
    assert_eq!(
        c,
        ConnectMsg {
            features: 0x3f01_cfbd_fffd_ffff,
            host_type: EntityType::CLIENT.0 as u32,
            global_seq: 1,
            connect_seq: 0,
            protocol_version: 15,
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 0,
        }
    );
    // This client did not ask for a lossy session; the monitor's reply imposes one.
    assert!(!c.is_lossy());
    // The real client advertises everything our default set needs (and more).
    assert_eq!(c.features & DEFAULT_SUPPORTED, DEFAULT_SUPPORTED);
    assert!(has_feature(c.features, CEPH_FEATUREMASK_SERVER_PACIFIC));
    let mut out = BytesMut::new();
    c.encode(&mut out);
    assert_eq!(&out[..], &b[..]);

    let b = hex(include_str!("data/connect_reply_seq.hex"));
    let r = ConnectReply::decode(&b).unwrap();
    assert_eq!(r.tag, Tag::Seq as u8);
    assert_eq!(r.features, 0x3f01_cfbd_fffd_ffff);
    assert_eq!(
        (r.global_seq, r.connect_seq, r.protocol_version),
        (12, 1, 15)
    );
    assert_eq!(r.authorizer_len, 0);
    assert_eq!(r.flags, CONNECT_FLAG_LOSSY);
    assert!(r.is_lossy());
    assert_eq!(r.features & MSGR1_REQUIRED, MSGR1_REQUIRED);
    let mut out = BytesMut::new();
    r.encode(&mut out);
    assert_eq!(&out[..], &b[..]);
}

#[test]
fn keepalive2_and_its_ack() {
    let ka = hex(include_str!("data/keepalive2.hex"));
    let ack = hex(include_str!("data/keepalive2_ack.hex"));
    let Frame::Keepalive2 { sec, nsec } = decode_one(&ka) else {
        panic!("not a KEEPALIVE2")
    };
    assert_eq!((sec, nsec), (1_795_640_720, 87_027_107));
    assert!(nsec < 1_000_000_000);
    // The monitor echoes the stamp.
    assert_eq!(decode_one(&ack), Frame::Keepalive2Ack { sec, nsec });
    let mut out = BytesMut::new();
    encode_keepalive2(sec, nsec, &mut out);
    assert_eq!(&out[..], &ka[..]);
    out.clear();
    encode_keepalive2_ack(sec, nsec, &mut out);
    assert_eq!(&out[..], &ack[..]);
}

/// Checks a captured MSG frame: header crc, footer crcs, fields; re-encodes it byte for byte.
fn check_msg(bytes: &[u8]) -> msgr_core::Message {
    assert_eq!(bytes[0], Tag::Msg as u8);
    let h = MsgHeader::decode(&bytes[1..]).expect("captured header crc verifies");
    assert_eq!(h.crc, ceph_crc32c(0, &bytes[1..1 + MsgHeader::CRC_COVERED]));
    let payload = 1 + MsgHeader::LEN;
    let footer_at = payload + h.payload_len() as usize;
    assert_eq!(bytes.len(), footer_at + MsgFooter::LEN_NEW);
    let f = MsgFooter::decode(&bytes[footer_at..], true).unwrap();
    assert_eq!(f.flags, MsgFooter::FLAG_COMPLETE);
    assert_eq!(f.sig, 0, "auth none: unsigned");
    let front = &bytes[payload..payload + h.front_len as usize];
    assert_eq!(f.front_crc, ceph_crc32c(0, front));
    assert_eq!(f.middle_crc, 0, "empty middle has crc 0");
    assert_eq!(f.data_crc, 0, "empty data has crc 0");
    let mut fb = BytesMut::new();
    f.encode(&mut fb, true);
    assert_eq!(&fb[..], &bytes[footer_at..]);

    let Frame::Msg(m) = decode_one(bytes) else {
        panic!("not a MSG frame")
    };
    assert_eq!(m.seq, h.seq);
    assert_eq!(m.msg_type, h.msg_type);
    assert_eq!(&m.front[..], front);
    assert_eq!(encode_msg_contiguous(&m), bytes);
    m
}

#[test]
fn captured_mauth() {
    let m = check_msg(&hex(include_str!("data/msg_mauth.hex")));
    assert_eq!(m.msg_type, 17, "CEPH_MSG_AUTH");
    assert_eq!(m.seq, 1, "first message of the session");
    assert_eq!(m.tid, 0);
    assert_eq!(m.priority, Priority::DEFAULT);
    assert_eq!((m.version, m.compat_version), (1, 1));
    assert_eq!(m.src, EntityName::new(EntityType::CLIENT, -1));
    assert_eq!(m.src.to_string(), "client.?");
    assert_eq!(m.front.len(), 60);
    assert!(m.middle.is_empty() && m.data.is_empty());
    // MAuth carries the entity name the client authenticates as.
    assert!(m.front.windows(5).any(|w| w == b"admin"));
}

#[test]
fn captured_mauth_reply() {
    let m = check_msg(&hex(include_str!("data/msg_mauth_reply.hex")));
    assert_eq!(m.msg_type, 18, "CEPH_MSG_AUTH_REPLY");
    assert_eq!(m.seq, 1, "the monitor's outgoing seq starts at 1");
    assert_eq!(
        m.priority,
        Priority::HIGH,
        "monitor replies come at priority 196"
    );
    assert_eq!(m.src, EntityName::new(EntityType::MON, 0));
    assert_eq!(m.src.to_string(), "mon.0");
    assert_eq!(m.front.len(), 24);
}

#[test]
fn captured_monmap() {
    let m = check_msg(&hex(include_str!("data/msg_monmap.hex")));
    assert_eq!(m.msg_type, 4, "CEPH_MSG_MON_MAP");
    assert_eq!(m.seq, 2);
    assert_eq!(m.src.to_string(), "mon.0");
    assert_eq!(m.front.len(), 170);
    // The front is a bufferlist: le32 length, then the encoded monmap.
    let inner = u32::from_le_bytes(m.front[..4].try_into().unwrap()) as usize;
    assert_eq!(inner + 4, m.front.len());
}

/// Feeds `bytes` to a decoder in chunks of random size; returns every frame.
fn decode_chunked(bytes: &[u8], rng: &mut StdRng, max_chunk: usize) -> Vec<Frame> {
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = rng.gen_range(1..=max_chunk).min(bytes.len() - at);
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        while let Some(f) = dec.decode(&mut buf).expect("captured stream decodes") {
            frames.push(f);
        }
    }
    assert!(
        buf.is_empty() && dec.is_idle(),
        "stream ends on a frame boundary"
    );
    frames
}

fn reencode(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        msgr_core::wire::frame::encode_frame(f, true, &mut out);
    }
    out.to_vec()
}

fn msg_summary(frames: &[Frame]) -> Vec<(u64, u16)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Msg(m) => Some((m.seq, m.msg_type)),
            _ => None,
        })
        .collect()
}

/// Whole open-session byte streams of both captured connections, fed in random chunks: every
/// frame decodes, crcs verify, and re-encoding reproduces the capture exactly.
#[test]
fn captured_streams_decode_in_any_chunking_and_reencode_exactly() {
    // (bytes, handshake length, (seq, type) of each message)
    type Capture = (&'static [u8], usize, &'static [(u64, u16)]);
    let streams: [Capture; 4] = [
        (
            include_bytes!("data/stream0_c2s.bin"),
            C2S_HANDSHAKE,
            &[(1, 17), (2, 15)],
        ),
        (
            include_bytes!("data/stream0_s2c.bin"),
            S2C_HANDSHAKE,
            &[(1, 18), (2, 4), (3, 62), (4, 4)],
        ),
        (
            include_bytes!("data/stream1_c2s.bin"),
            C2S_HANDSHAKE,
            &[(1, 17), (2, 15), (3, 15), (4, 15), (5, 50), (6, 50)],
        ),
        (
            include_bytes!("data/stream1_s2c.bin"),
            S2C_HANDSHAKE,
            &[
                (1, 18),
                (2, 4),
                (3, 62),
                (4, 4),
                (5, 1796),
                (6, 41),
                (7, 51),
                (8, 51),
            ],
        ),
    ];
    let mut rng = StdRng::seed_from_u64(0x00c0_ffee);
    for (i, (bytes, handshake, want)) in streams.iter().enumerate() {
        let open = &bytes[*handshake..];
        let whole = decode_chunked(open, &mut rng, open.len());
        assert_eq!(msg_summary(&whole), *want, "stream {i}");
        // Each direction starts with the keepalive exchange.
        assert!(matches!(
            whole[0],
            Frame::Keepalive2 { .. } | Frame::Keepalive2Ack { .. }
        ));
        assert_eq!(
            reencode(&whole),
            open,
            "stream {i} re-encodes byte for byte"
        );
        for max_chunk in [1, 7, 64, 1500] {
            assert_eq!(
                decode_chunked(open, &mut rng, max_chunk),
                whole,
                "stream {i}"
            );
        }
    }
}

/// The big MCommandReply (type 51) in stream 1 has a 73 KiB data section: its data crc verifies
/// and the sections are slices of the receive buffer, not copies.
#[test]
fn captured_data_section_is_zero_copy() {
    let bytes: &[u8] = include_bytes!("data/stream1_s2c.bin");
    let mut buf = BytesMut::from(&bytes[S2C_HANDSHAKE..]);
    let base = buf.as_ptr() as usize;
    let end = base + buf.len();
    let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
    let mut big = None;
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        if let Frame::Msg(m) = f {
            if m.data.len() > 65536 {
                big = Some(m);
            }
        }
    }
    let m = big.expect("the capture holds a message with a large data section");
    assert_eq!((m.msg_type, m.seq, m.tid), (51, 7, 1));
    assert_eq!(m.data.len(), 73271);
    for section in [&m.front, &m.data] {
        let p = section.as_ptr() as usize;
        assert!(
            p >= base && p + section.len() <= end,
            "section not in the receive buffer"
        );
    }
    let _: &Bytes = &m.data;
}

/// A real ACK: the monitor, talking to a lossless mon peer (`data/live_mon_peer.py`),
/// acknowledges the peer's first message.
#[test]
fn captured_ack() {
    let b = hex(include_str!("data/ack.hex"));
    assert_eq!(decode_one(&b), Frame::Ack(1));
    let mut out = BytesMut::new();
    msgr_core::wire::frame::encode_ack(1, &mut out);
    assert_eq!(&out[..], &b[..]);
}

#[test]
fn mon_peer_reply_is_lossless() {
    let r = ConnectReply::decode(&hex(include_str!("data/connect_reply_mon_peer.hex"))).unwrap();
    assert_eq!(r.tag, Tag::Seq as u8);
    assert_eq!(r.protocol_version, 13, "mon-to-mon protocol");
    assert_eq!((r.global_seq, r.connect_seq), (1, 1));
    assert!(!r.is_lossy(), "mon peers get a lossless session");
}

/// The monitor's whole open-state stream to a mon peer: the echoed keepalive stamp, its reply
/// to MPing (a JSON status report in the front), and the ACK of our message.
#[test]
fn captured_mon_peer_stream() {
    let bytes: &[u8] = include_bytes!("data/mon_peer_s2c.bin");
    let open = &bytes[S2C_HANDSHAKE..];
    let mut rng = StdRng::seed_from_u64(7);
    let frames = decode_chunked(open, &mut rng, 300);
    assert_eq!(frames.len(), 3);
    assert_eq!(
        frames[0],
        Frame::Keepalive2Ack {
            sec: 1_700_000_000,
            nsec: 123_456_789
        }
    );
    let Frame::Msg(m) = &frames[1] else {
        panic!("expected the MPing reply")
    };
    assert_eq!(
        (m.msg_type, m.seq, m.src),
        (2, 1, EntityName::new(EntityType::MON, 0))
    );
    assert_eq!((m.version, m.compat_version), (1, 0));
    assert_eq!(m.priority, Priority::HIGH);
    assert_eq!(m.front.len(), 3152);
    let json_at = m
        .front
        .iter()
        .position(|&b| b == b'{')
        .expect("JSON report");
    assert!(m.front[json_at..].starts_with(b"{\n    \"health\""));
    assert_eq!(frames[2], Frame::Ack(1));
    assert_eq!(reencode(&frames), open);
}

/// Our feature sets against what the real monitor advertised (connect reply above) and what
/// NOTES.md measured it to require.
#[test]
fn feature_sets_fit_the_real_monitor() {
    let monitor = 0x3f01_cfbd_fffd_ffffu64;
    let required_bits = [18, 25, 41, 48, 58];
    assert_eq!(
        MSGR1_REQUIRED,
        required_bits.iter().fold(0, |m, b| m | 1u64 << b)
    );
    assert_eq!(
        monitor & DEFAULT_SUPPORTED,
        DEFAULT_SUPPORTED,
        "the monitor supports all we offer"
    );
    for (name, mask) in [
        ("NOSRCADDR", CEPH_FEATUREMASK_NOSRCADDR),
        ("MSG_AUTH", CEPH_FEATUREMASK_MSG_AUTH),
        ("MSGR_KEEPALIVE2", CEPH_FEATUREMASK_MSGR_KEEPALIVE2),
        ("RECONNECT_SEQ", CEPH_FEATUREMASK_RECONNECT_SEQ),
    ] {
        assert!(has_feature(DEFAULT_SUPPORTED, mask), "{name}");
    }
    assert_eq!(
        DEFAULT_SUPPORTED & CEPH_FEATURE_MSG_ADDR2,
        0,
        "legacy addresses only"
    );
    // Reused bits: the monitor is a Pacific server, so SERVER_PACIFIC's incarnation is there;
    // a mask with only the bare bit 20 is not Pacific.
    assert!(has_feature(monitor, CEPH_FEATUREMASK_SERVER_PACIFIC));
    assert!(!has_feature(
        CEPH_FEATURE_SERVER_PACIFIC,
        CEPH_FEATUREMASK_SERVER_PACIFIC
    ));
    let names = feature_names(MSGR1_REQUIRED);
    assert_eq!(
        names,
        [
            "CRUSH_TUNABLES",
            "CRUSH_TUNABLES2",
            "CRUSH_TUNABLES3",
            "CRUSH_V4",
            "CRUSH_TUNABLES5"
        ]
    );
    assert_eq!(
        feature_names(1 << 38),
        ["bit38"],
        "retired bits have no name"
    );
}
