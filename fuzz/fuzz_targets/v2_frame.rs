//! Fuzzes the msgr2.1 frame decoders (crc mode and secure mode) and the control-payload
//! decoders with arbitrary bytes split at arbitrary points.
//!
//! Input layout: byte 0 bit 0 picks secure mode (a fixed test key), bytes 1..3 seed the chunk
//! sizes; the rest is the stream (without banner). Checks: no panic; `Need(n)` always asks for
//! more than is buffered; a decoded crc control frame whose preamble and payload are in canonical
//! form re-encodes to the bytes it came from (the crcs pin down the rest).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits};
use msgr_core::v2::payload::Control;
use msgr_core::v2::secure::{Role, SecureDecoded, SecureKeys};
use msgr_core::v2::{Preamble, Tag};

const LIMITS: FrameLimits = FrameLimits { max_segment: 16384 };

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let secure = input[0] & 1 == 1;
    let mut seed = u16::from_le_bytes([input[1], input[2]]) as usize | 1;
    let stream = &input[3..];
    let keys = SecureKeys::from_connection_secret(&[0x5a; 40], Role::Server).unwrap();
    let mut rx = keys.rx();
    let mut buf = Vec::new();
    let mut at = 0;
    loop {
        let progress = if secure {
            match rx.open(&buf, &LIMITS) {
                Err(_) => return,
                Ok(SecureDecoded::Need(n)) => Err(n),
                Ok(SecureDecoded::Frame(f, used)) => {
                    let fr = f.frame();
                    if let Ok(tag) = fr.tag() {
                        let _ = Control::decode(tag, fr.payload());
                    }
                    Ok(used)
                }
            }
        } else {
            match decode_crc(&buf, &LIMITS) {
                Err(_) => return,
                Ok(Decoded::Need(n)) => Err(n),
                Ok(Decoded::Frame(f, used)) => {
                    if let Ok(tag) = f.tag() {
                        if tag != Tag::Message && f.preamble.num_segments == 1 {
                            if let Ok(c) = Control::decode(tag, f.payload()) {
                                // Only a payload without trailing bytes re-encodes exactly.
                                let mut p = BytesMut::new();
                                c.encode_payload(&mut p);
                                let canonical = Preamble::new(tag, &[(p.len() as u32, 8)]);
                                if p[..] == *f.payload() && f.preamble == canonical {
                                    let mut again = BytesMut::new();
                                    c.encode_crc(&mut again);
                                    assert_eq!(&again[..], &buf[..used], "{tag:?} re-encoding");
                                }
                            }
                        }
                    }
                    Ok(used)
                }
            }
        };
        match progress {
            Ok(used) => {
                assert!(used <= buf.len());
                buf.drain(..used);
            }
            Err(n) => {
                assert!(n > buf.len(), "Need({n}) with {} buffered", buf.len());
                if at == stream.len() {
                    return;
                }
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                let take = (1 + (seed >> 7) % 512).min(stream.len() - at);
                buf.extend_from_slice(&stream[at..at + take]);
                at += take;
            }
        }
    }
});
