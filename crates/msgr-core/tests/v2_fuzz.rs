//! Bounded, seeded fuzzing of the msgr2 decoders, short enough for every CI run. Valid streams
//! (random control frames and messages, crc and secure mode) fed in random chunks decode to
//! what was encoded; a damaged byte is caught (or, in crc mode, lands only in bytes that carry
//! nothing: the unused crc slots or the high nibble of the late status); arbitrary bytes never
//! panic and the decoders always either progress or ask for more than they have.
//! A failure prints the seed; rerun one seed with `V2_FUZZ_SEED=<n>`.

use bytes::BytesMut;
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits};
use msgr_core::v2::message::{encode_message_crc, MsgHeader2, MESSAGE_ALIGNMENTS};
use msgr_core::v2::payload::Control;
use msgr_core::v2::secure::{Role, SecureDecoded, SecureKeys};
use msgr_core::v2::{Tag, V2Error};
use rand::{rngs::StdRng, Rng, SeedableRng};

const LIMITS: FrameLimits = FrameLimits { max_segment: 8192 };

/// One frame as (tag, segments).
type Frame = (Tag, Vec<Vec<u8>>);

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = if rng.gen_bool(0.3) {
        0
    } else {
        rng.gen_range(0..=max)
    };
    (0..n).map(|_| rng.gen()).collect()
}

fn random_frame(rng: &mut StdRng) -> Frame {
    if rng.gen_bool(0.5) {
        let h = MsgHeader2 {
            seq: rng.gen(),
            tid: rng.gen(),
            msg_type: rng.gen(),
            ack_seq: rng.gen(),
            ..MsgHeader2::default()
        };
        let mut hb = BytesMut::new();
        h.encode(&mut hb);
        let mut segs = vec![
            hb.to_vec(),
            bytes(rng, 300),
            bytes(rng, 40),
            bytes(rng, 3000),
        ];
        while segs.len() > 1 && segs.last().unwrap().is_empty() {
            segs.pop();
        }
        return (Tag::Message, segs);
    }
    let c = match rng.gen_range(0..6) {
        0 => Control::Ack { seq: rng.gen() },
        1 => Control::Keepalive2 {
            stamp: (rng.gen(), rng.gen()),
        },
        2 => Control::AuthReplyMore {
            auth_payload: bytes(rng, 200),
        },
        3 => Control::Wait,
        4 => Control::SessionReset { full: rng.gen() },
        _ => Control::AuthSignature {
            signature: rng.gen(),
        },
    };
    let mut p = BytesMut::new();
    c.encode_payload(&mut p);
    (c.tag(), vec![p.to_vec()])
}

fn encode_crc_frame(f: &Frame, out: &mut BytesMut) {
    if f.0 == Tag::Message {
        let h = MsgHeader2::decode(&f.1[0]).unwrap();
        let seg = |i: usize| f.1.get(i).map_or(&[][..], |s| &s[..]);
        encode_message_crc(&h, seg(1), seg(2), seg(3), out);
    } else {
        msgr_core::v2::encode_crc(f.0, &[(&f.1[0], 8)], out);
    }
}

fn parts(f: &Frame) -> Vec<(&[u8], u16)> {
    let aligns = if f.0 == Tag::Message {
        MESSAGE_ALIGNMENTS.to_vec()
    } else {
        vec![8]
    };
    f.1.iter().map(|s| &s[..]).zip(aligns).collect()
}

/// Feeds `stream` in random chunks to a crc decoder; returns the frames and the first error.
fn feed_crc(rng: &mut StdRng, stream: &[u8]) -> (Vec<Frame>, Option<V2Error>) {
    let (mut buf, mut frames, mut at) = (Vec::new(), Vec::new(), 0);
    loop {
        match decode_crc(&buf, &LIMITS) {
            Err(e) => return (frames, Some(e)),
            Ok(Decoded::Frame(f, used)) => {
                assert!(used <= buf.len());
                let segs = f.present().iter().map(|s| s.to_vec()).collect();
                frames.push((f.tag().unwrap(), segs));
                buf.drain(..used);
            }
            Ok(Decoded::Need(n)) => {
                assert!(n > buf.len(), "Need({n}) with {} bytes buffered", buf.len());
                if at == stream.len() {
                    return (frames, None);
                }
                let take = rng.gen_range(1..=(stream.len() - at).min(700));
                buf.extend_from_slice(&stream[at..at + take]);
                at += take;
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("V2_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("V2_FUZZ_SEED is a number")],
        Err(_) => (0..300).collect(),
    }
}

#[test]
fn crc_streams_roundtrip_and_damage_is_caught() {
    for seed in seeds() {
        let rng = &mut StdRng::seed_from_u64(seed);
        let frames: Vec<Frame> = (0..rng.gen_range(1..8))
            .map(|_| random_frame(rng))
            .collect();
        let mut stream = BytesMut::new();
        let mut ends = Vec::new();
        for f in &frames {
            encode_crc_frame(f, &mut stream);
            ends.push(stream.len());
        }
        let (got, err) = feed_crc(rng, &stream);
        assert_eq!((&got, &err), (&frames, &None), "seed {seed}");

        let pos = rng.gen_range(0..stream.len());
        let mut bad = stream.to_vec();
        bad[pos] ^= 1 << rng.gen_range(0..8);
        let hit = ends.iter().position(|&e| pos < e).unwrap();
        let (got, err) = feed_crc(rng, &bad);
        assert_eq!(
            got[..hit.min(got.len())],
            frames[..hit],
            "seed {seed}: frames before the damage"
        );
        if err.is_none() {
            // Only bytes that carry nothing may change undetected.
            assert_eq!(
                got, frames,
                "seed {seed}: damage at {pos} changed a frame silently"
            );
        }
    }
}

#[test]
fn secure_streams_roundtrip_and_any_damage_fails_the_tag() {
    let secret: Vec<u8> = (0..64u8).collect();
    let client = SecureKeys::from_connection_secret(&secret, Role::Client).unwrap();
    let server = SecureKeys::from_connection_secret(&secret, Role::Server).unwrap();
    for seed in seeds() {
        let rng = &mut StdRng::seed_from_u64(seed);
        let frames: Vec<Frame> = (0..rng.gen_range(1..6))
            .map(|_| random_frame(rng))
            .collect();
        let mut tx = client.tx();
        let mut stream = BytesMut::new();
        for f in &frames {
            tx.seal(f.0, &parts(f), &mut stream);
        }
        let open = |bytes: &[u8], rng: &mut StdRng| -> Result<Vec<Frame>, V2Error> {
            let mut rx = server.rx();
            let (mut buf, mut out, mut at) = (Vec::new(), Vec::new(), 0);
            loop {
                match rx.open(&buf, &LIMITS)? {
                    SecureDecoded::Frame(f, used) => {
                        let fr = f.frame();
                        out.push((fr.tag()?, fr.present().iter().map(|s| s.to_vec()).collect()));
                        buf.drain(..used);
                    }
                    SecureDecoded::Need(n) => {
                        assert!(n > buf.len());
                        if at == bytes.len() {
                            return Ok(out);
                        }
                        let take = rng.gen_range(1..=(bytes.len() - at).min(500));
                        buf.extend_from_slice(&bytes[at..at + take]);
                        at += take;
                    }
                }
            }
        };
        assert_eq!(open(&stream, rng).unwrap(), frames, "seed {seed}");
        let mut bad = stream.to_vec();
        let pos = rng.gen_range(0..bad.len());
        bad[pos] ^= 1 << rng.gen_range(0..8);
        let err = open(&bad, rng).unwrap_err();
        assert!(matches!(err, V2Error::AuthTag(_)), "seed {seed}: {err:?}");
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let secret = [7u8; 40];
    let keys = SecureKeys::from_connection_secret(&secret, Role::Client).unwrap();
    for seed in seeds() {
        let rng = &mut StdRng::seed_from_u64(seed);
        let len = rng.gen_range(0..400);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let _ = feed_crc(rng, &junk);
        let _ = keys.rx().open(&junk, &LIMITS);
        for tag in 1..=22u8 {
            let _ = Control::decode(Tag::try_from(tag).unwrap(), &junk);
        }
        let _ = msgr_core::v2::Banner::decode(&junk);
        let _ = msgr_core::v2::EntityAddrV2::decode(&junk);
        // A valid preamble crc in front of junk reaches the segment checks.
        if junk.len() >= 32 {
            junk[1] = rng.gen_range(0..6);
            let crc = msgr_core::wire::crc::ceph_crc32c(0, &junk[..28]);
            junk[28..32].copy_from_slice(&crc.to_le_bytes());
            let _ = feed_crc(rng, &junk);
        }
    }
}
