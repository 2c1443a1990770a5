//! Bounded, seeded fuzzing of the frame decoder, short enough for every CI run (the `fuzz/`
//! cargo-fuzz target is the long-running version). Arbitrary bytes and mutated valid streams,
//! fed in random chunks, must never panic, never grow the receive buffer beyond one maximal
//! frame, keep failing once failed, and decode every frame before the first damaged byte exactly.
//! A failure prints the seed; rerun one seed with `WIRE_FUZZ_SEED=<n>`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use msgr_core::wire::frame::encode_frame;
use msgr_core::wire::{
    DecodeLimits, EntityName, EntityType, Frame, FrameDecoder, MsgHeader, Tag, WireError,
};
use msgr_core::{Message, Priority};
use rand::{rngs::StdRng, Rng, SeedableRng};

const LIMITS: DecodeLimits = DecodeLimits {
    max_front: 4096,
    max_middle: 512,
    max_data: 16384,
    max_message: 20000,
};

fn random_section(rng: &mut StdRng, max: usize) -> Bytes {
    let n = if rng.gen_bool(0.3) {
        0
    } else {
        rng.gen_range(0..=max)
    };
    (0..n).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>().into()
}

fn random_frame(rng: &mut StdRng) -> Frame {
    match rng.gen_range(0..8) {
        0..=3 => Frame::Msg(Message {
            msg_type: rng.gen(),
            priority: Priority(rng.gen()),
            version: rng.gen(),
            compat_version: rng.gen(),
            tid: rng.gen(),
            data_off: rng.gen(),
            seq: rng.gen(),
            src: EntityName::new(EntityType(rng.gen()), rng.gen()),
            front: random_section(rng, 600),
            middle: random_section(rng, 64),
            data: random_section(rng, 3000),
            ..Message::default()
        }),
        4 => Frame::Ack(rng.gen()),
        5 => Frame::Keepalive2 {
            sec: rng.gen(),
            nsec: rng.gen(),
        },
        6 => Frame::Keepalive2Ack {
            sec: rng.gen(),
            nsec: rng.gen(),
        },
        _ => {
            if rng.gen() {
                Frame::Keepalive
            } else {
                Frame::Close
            }
        }
    }
}

/// A valid stream, its frames, and where each frame ends.
fn valid_stream(rng: &mut StdRng, msg_auth: bool) -> (Vec<u8>, Vec<Frame>, Vec<usize>, Vec<usize>) {
    let mut bytes = BytesMut::new();
    let (mut frames, mut ends, mut msg_starts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rng.gen_range(1..10) {
        let f = random_frame(rng);
        if matches!(f, Frame::Msg(_)) {
            msg_starts.push(bytes.len());
        }
        encode_frame(&f, msg_auth, &mut bytes);
        frames.push(f);
        ends.push(bytes.len());
    }
    (bytes.to_vec(), frames, ends, msg_starts)
}

/// Damages `b`; returns the lowest offset touched.
fn mutate(rng: &mut StdRng, b: &mut Vec<u8>, msg_starts: &[usize]) -> usize {
    if b.is_empty() {
        b.push(rng.gen());
        return 0;
    }
    let at = rng.gen_range(0..b.len());
    match rng.gen_range(0..7) {
        0 => b[at] ^= 1 << rng.gen_range(0..8),
        1 => b[at] = rng.gen(),
        2 => {
            let junk: Vec<u8> = (0..rng.gen_range(1..40)).map(|_| rng.gen()).collect();
            b.splice(at..at, junk);
        }
        3 => {
            let end = (at + rng.gen_range(1..64)).min(b.len());
            b.drain(at..end);
        }
        4 => b.truncate(at),
        5 => {
            let end = (at + rng.gen_range(1..200)).min(b.len());
            let copy = b[at..end].to_vec();
            b.splice(end..end, copy);
        }
        _ => {
            // Rewrite a header's lengths and fix its crc, so the damage gets past the header
            // check and reaches the limit checks, the payload and the footer.
            // (Earlier mutations may have moved or cut the frame: then damage a tag instead.)
            let start = msg_starts.get(rng.gen_range(0..msg_starts.len().max(1)));
            let Some(hdr) = start
                .map(|s| s + 1)
                .filter(|h| h + MsgHeader::LEN <= b.len())
            else {
                b[at] = Tag::Msg as u8;
                return at;
            };
            let mut h = MsgHeader::decode_unchecked(&b[hdr..]).expect("header present");
            let pick = |rng: &mut StdRng, cur: u32| match rng.gen_range(0..4) {
                0 => u32::MAX,
                1 => rng.gen_range(0..=LIMITS.max_data + 1),
                2 => cur.wrapping_add(rng.gen_range(1..16)),
                _ => cur,
            };
            h.front_len = pick(rng, h.front_len);
            h.middle_len = pick(rng, h.middle_len);
            h.data_len = pick(rng, h.data_len);
            let mut out = BytesMut::new();
            h.encode(&mut out);
            b[hdr..hdr + MsgHeader::LEN].copy_from_slice(&out);
            return hdr;
        }
    }
    at
}

/// How a run ended: the error variant's name, or "ok".
fn run_one(seed: u64) -> &'static str {
    let mut rng = StdRng::seed_from_u64(seed);
    let msg_auth = rng.gen();
    let (bytes, frames, ends, intact_until) = if rng.gen_bool(0.2) {
        // Arbitrary bytes, often starting with a real tag so the decoder gets past byte one.
        let mut b: Vec<u8> = (0..rng.gen_range(0..3000)).map(|_| rng.gen()).collect();
        if !b.is_empty() && rng.gen() {
            b[0] = *[7u8, 8, 9, 14, 15].get(rng.gen_range(0..5)).unwrap();
        }
        (b, vec![], vec![], 0)
    } else {
        let (mut b, frames, ends, msg_starts) = valid_stream(&mut rng, msg_auth);
        let mut lowest = usize::MAX;
        for _ in 0..rng.gen_range(0..4) {
            lowest = lowest.min(mutate(&mut rng, &mut b, &msg_starts));
        }
        (b, frames, ends, lowest)
    };

    let bound = bytes.len() + 2 * LIMITS.max_frame_len(msg_auth) as usize + 64;
    let mut dec = FrameDecoder::new(LIMITS, msg_auth);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut failed = None;
    let mut at = 0;
    'feed: while at < bytes.len() {
        let n = rng.gen_range(1..=700).min(bytes.len() - at);
        buf.put_slice(&bytes[at..at + n]);
        at += n;
        loop {
            let r = dec.decode(&mut buf);
            assert!(
                buf.capacity() <= bound,
                "buffer grew to {} (bound {bound})",
                buf.capacity()
            );
            match r {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(e) => {
                    // Poisoned: the error sticks, whatever comes next.
                    buf.put_slice(&bytes[at..]);
                    assert_eq!(dec.decode(&mut buf), Err(e.clone()));
                    failed = Some(variant(&e));
                    break 'feed;
                }
            }
        }
    }
    // Every frame that ended before the first damaged byte comes out exactly as sent.
    let intact = ends.iter().take_while(|&&e| e <= intact_until).count();
    assert!(
        got.len() >= intact || failed.is_some(),
        "lost intact frames without an error"
    );
    for (i, (g, f)) in got.iter().zip(&frames).take(intact).enumerate() {
        assert_eq!(g, f, "intact frame {i} differs");
    }
    if intact_until == usize::MAX {
        assert_eq!(failed, None, "an undamaged stream failed");
        assert_eq!(got, frames);
    }
    failed.unwrap_or("ok")
}

fn variant(e: &WireError) -> &'static str {
    match e {
        WireError::UnknownTag(_) => "UnknownTag",
        WireError::UnexpectedTag { .. } => "UnexpectedTag",
        WireError::HeaderCrc { .. } => "HeaderCrc",
        WireError::PayloadCrc { .. } => "PayloadCrc",
        WireError::TooLong { .. } => "TooLong",
        WireError::Incomplete(_) => "Incomplete",
        other => panic!("the frame decoder returned an error it never should: {other:?}"),
    }
}

#[test]
fn frame_decoder_survives_garbage_and_mutations() {
    let seeds: Vec<u64> = match std::env::var("WIRE_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("WIRE_FUZZ_SEED must be a u64")],
        Err(_) => (0..3000).collect(),
    };
    let full_run = seeds.len() > 1;
    let mut outcomes = std::collections::BTreeMap::new();
    for seed in seeds {
        match catch_unwind(AssertUnwindSafe(|| run_one(seed))) {
            Ok(outcome) => *outcomes.entry(outcome).or_insert(0) += 1,
            Err(p) => {
                eprintln!("wire fuzz failed with seed {seed}: rerun with WIRE_FUZZ_SEED={seed}");
                std::panic::resume_unwind(p);
            }
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    if full_run {
        // The inputs must keep reaching every check, or this test proves little.
        for want in [
            "ok",
            "UnknownTag",
            "UnexpectedTag",
            "HeaderCrc",
            "PayloadCrc",
            "TooLong",
            "Incomplete",
        ] {
            assert!(
                outcomes.get(want).copied().unwrap_or(0) >= 5,
                "{want} reached too rarely: {outcomes:?}"
            );
        }
    }
}
