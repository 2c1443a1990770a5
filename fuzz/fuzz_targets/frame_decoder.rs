//! Fuzzes `FrameDecoder` with arbitrary bytes split at arbitrary points.
//!
//! Input layout: byte 0 picks the footer size (bit 0: MSG_AUTH) and bytes 1..3 seed the chunk
//! sizes; the rest is the stream. Checks: no panic, the receive buffer never grows beyond one
//! maximal frame plus the input, an error is sticky, and a decoded stream re-encodes to frames
//! that decode identically.

#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use msgr_core::wire::frame::encode_frame;
use msgr_core::wire::{DecodeLimits, FrameDecoder};

/// Small limits so that "within limits" inputs are cheap and the limit paths are reachable.
const LIMITS: DecodeLimits = DecodeLimits {
    max_front: 4096,
    max_middle: 512,
    max_data: 16384,
    max_message: 20000,
};

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let msg_auth = input[0] & 1 == 1;
    let mut chunk_seed = u16::from_le_bytes([input[1], input[2]]) as usize | 1;
    let stream = &input[3..];

    let bound = stream.len() + 2 * LIMITS.max_frame_len(msg_auth) as usize + 64;
    let mut dec = FrameDecoder::new(LIMITS, msg_auth);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    'feed: while at < stream.len() {
        // Cheap deterministic chunk sizes from 1 to 512 bytes.
        chunk_seed = chunk_seed.wrapping_mul(1103515245).wrapping_add(12345);
        let n = (1 + (chunk_seed >> 7) % 512).min(stream.len() - at);
        buf.put_slice(&stream[at..at + n]);
        at += n;
        loop {
            let r = dec.decode(&mut buf);
            assert!(
                buf.capacity() <= bound,
                "receive buffer grew to {}",
                buf.capacity()
            );
            match r {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(dec.decode(&mut buf), Err(e), "errors are sticky");
                    break 'feed;
                }
            }
        }
    }

    // Whatever decoded must survive our own encoder and decoder unchanged.
    let mut again = BytesMut::new();
    for f in &frames {
        encode_frame(f, msg_auth, &mut again);
    }
    let mut dec = FrameDecoder::new(LIMITS, msg_auth);
    for f in &frames {
        let g = dec
            .decode(&mut again)
            .expect("re-encoded frame decodes")
            .expect("complete");
        assert_eq!(&g, f);
    }
    assert!(again.is_empty());
});
