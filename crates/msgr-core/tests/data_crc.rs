//! A received message's data CRC travels with it and is reused when the same data is sent on
//! (an echo, a forward), but never once the data has changed.

use bytes::{Bytes, BytesMut};
use msgr_core::wire::frame::encode_message;
use msgr_core::wire::{DecodeLimits, EntityName, Frame, FrameDecoder, MsgFooter};
use msgr_core::{DataCrc, Message};

/// The footer `msg` is sent with (the last chunk of its encoding, without MSG_AUTH).
fn sent_footer(msg: &Message) -> MsgFooter {
    let mut chunks = Vec::new();
    encode_message(msg, 1, EntityName::default(), false, &mut chunks);
    MsgFooter::decode(chunks.last().expect("a footer"), false).expect("a valid footer")
}

/// `msg` after a trip over the wire: what a receiving session hands to its dispatcher.
fn received(msg: &Message) -> Message {
    let mut chunks = Vec::new();
    encode_message(msg, 1, EntityName::default(), false, &mut chunks);
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(&c);
    }
    let mut dec = FrameDecoder::new(DecodeLimits::default(), false);
    match dec.decode(&mut buf).expect("a valid frame") {
        Some(Frame::Msg(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn payload(len: usize, salt: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect::<Vec<u8>>()
        .into()
}

fn true_data_crc(data: &[u8]) -> u32 {
    MsgFooter::for_payload(&[], &[], data).data_crc
}

#[test]
fn a_received_large_data_crc_is_kept_and_sent_again_unchanged() {
    let data = payload(DataCrc::KEEP_MIN, 1);
    let m = received(&Message::new(70, &b"front"[..]).with_data(data.clone()));
    assert_eq!(m.data, data);
    assert_eq!(m.data_crc.get(&m.data, 0), Some(true_data_crc(&data)));
    // Echoed as it came (the msgrd echo server's shape): the same footer goes back out.
    let echo = Message { seq: 0, ..m };
    assert_eq!(
        sent_footer(&echo),
        MsgFooter::for_payload(b"front", &[], &data)
    );
}

#[test]
fn replaced_or_resliced_data_is_checksummed_afresh() {
    let data = payload(DataCrc::KEEP_MIN + 100, 3);
    let m = received(&Message::new(70, &b"f"[..]).with_data(data.clone()));
    assert!(m.data_crc.get(&m.data, 0).is_some());

    // Equal contents in another allocation: not the bytes the CRC was kept for.
    let copy = Bytes::copy_from_slice(&m.data);
    assert_eq!(m.data_crc.get(&copy, 0), None);

    // The same allocation and start, shorter: recomputed over what is sent.
    let mut shorter = m.clone();
    shorter.data = m.data.slice(..DataCrc::KEEP_MIN);
    assert_eq!(m.data_crc.get(&shorter.data, 0), None);
    assert_eq!(sent_footer(&shorter).data_crc, true_data_crc(&shorter.data));

    // Changed after receipt by the application (a new data section): recomputed.
    let mut changed = m;
    changed.data = payload(data.len(), 4);
    assert_eq!(sent_footer(&changed).data_crc, true_data_crc(&changed.data));
}

#[test]
fn small_sections_and_other_seeds_keep_nothing() {
    let small = payload(DataCrc::KEEP_MIN - 1, 5);
    let m = received(&Message::new(70, &b"f"[..]).with_data(small.clone()));
    assert_eq!(m.data_crc.get(&m.data, 0), None);

    let data = payload(DataCrc::KEEP_MIN, 6);
    let m = received(&Message::new(70, &b"f"[..]).with_data(data.clone()));
    // msgr2 checksums segments from another seed: a msgr1 CRC is no answer there.
    assert_eq!(m.data_crc.get(&m.data, u32::MAX), None);
    assert_eq!(m.data_crc.get(&m.data, 0), Some(true_data_crc(&data)));
}
