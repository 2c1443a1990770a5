//! msgr1 codec micro-benchmarks: header encode / decode, ceph_crc32c throughput, and a full
//! message encode + decode.
//!
//! `cargo bench -p msgr-core --bench codec -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msgr_core::wire::crc::ceph_crc32c;
use msgr_core::wire::frame::encode_message;
use msgr_core::wire::{DecodeLimits, EntityName, EntityType, Frame, FrameDecoder, MsgHeader};
use msgr_core::Message;

const SRC: EntityName = EntityName::new(EntityType::OSD, 3);

fn header() -> MsgHeader {
    MsgHeader {
        seq: 12345,
        tid: 678,
        msg_type: 42,
        priority: 127,
        version: 2,
        front_len: 4096,
        middle_len: 0,
        data_len: 65536,
        data_off: 0,
        src: SRC,
        compat_version: 1,
        reserved: 0,
        crc: 0,
    }
}

fn bench_header(c: &mut Criterion) {
    let h = header();
    let mut out = BytesMut::with_capacity(MsgHeader::LEN);
    c.bench_function("header/encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&h).encode(&mut out);
            black_box(&out);
        })
    });
    let mut enc = BytesMut::new();
    h.encode(&mut enc);
    c.bench_function("header/decode", |b| {
        b.iter(|| black_box(MsgHeader::decode(black_box(&enc[..])).unwrap()))
    });
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [4 << 10, 64 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| black_box(ceph_crc32c(0, black_box(d))))
        });
    }
    g.finish();
}

/// Encode to chunks, gather them into a receive buffer as a transport would, decode.
fn bench_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("message/encode+decode");
    for size in [64usize, 64 << 10] {
        let msg = Message::new(42, Bytes::from(vec![0xabu8; size]));
        g.throughput(Throughput::Bytes(size as u64));
        let mut dec = FrameDecoder::new(DecodeLimits::default(), true);
        let mut chunks = Vec::with_capacity(5);
        let mut rx = BytesMut::with_capacity(size + 128);
        g.bench_with_input(BenchmarkId::from_parameter(size), &msg, |b, msg| {
            b.iter(|| {
                chunks.clear();
                encode_message(msg, 1, SRC, true, &mut chunks);
                for ch in &chunks {
                    rx.extend_from_slice(ch);
                }
                match dec.decode(&mut rx) {
                    Ok(Some(Frame::Msg(m))) => black_box(m),
                    other => panic!("decode failed: {other:?}"),
                };
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_header, bench_crc, bench_message);
criterion_main!(benches);
