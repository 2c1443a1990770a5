//! msgr2.1 frame micro-benchmarks: a MESSAGE frame (64 B, 64 KiB and 1 MiB of data) encoded and
//! decoded in crc mode, and sealed and opened in secure mode (AES-128-GCM), on one core.
//!
//! `cargo bench -p msgr-core --bench v2_codec -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits};
use msgr_core::v2::message::{encode_message_crc, MsgHeader2, MESSAGE_ALIGNMENTS};
use msgr_core::v2::secure::{Role, SecureDecoded, SecureKeys};
use msgr_core::v2::Tag;

const SIZES: [usize; 3] = [64, 64 << 10, 1 << 20];

fn header() -> MsgHeader2 {
    MsgHeader2 {
        seq: 1,
        msg_type: 42,
        priority: 127,
        ..MsgHeader2::default()
    }
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("v2_crc_roundtrip");
    let limits = FrameLimits::default();
    for size in SIZES {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            let mut out = BytesMut::with_capacity(size + 256);
            b.iter(|| {
                out.clear();
                encode_message_crc(&header(), b"front", &[], black_box(d), &mut out);
                match decode_crc(&out, &limits).unwrap() {
                    Decoded::Frame(f, _) => black_box(f.segments[3].len()),
                    Decoded::Need(_) => unreachable!("whole frame"),
                }
            })
        });
    }
    g.finish();
}

fn bench_secure(c: &mut Criterion) {
    let mut g = c.benchmark_group("v2_secure_roundtrip");
    let limits = FrameLimits::default();
    let secret = [0x5a; 40];
    let client = SecureKeys::from_connection_secret(&secret, Role::Client).unwrap();
    let server = SecureKeys::from_connection_secret(&secret, Role::Server).unwrap();
    for size in SIZES {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut h = BytesMut::new();
        header().encode(&mut h);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            let (mut tx, mut rx) = (client.tx(), server.rx());
            let mut out = BytesMut::with_capacity(size + 256);
            let [a0, a1, a2, a3] = MESSAGE_ALIGNMENTS;
            b.iter(|| {
                out.clear();
                let segs = [
                    (&h[..], a0),
                    (&b"front"[..], a1),
                    (&[][..], a2),
                    (black_box(&d[..]), a3),
                ];
                tx.seal(Tag::Message, &segs, &mut out);
                match rx.open(&out, &limits).unwrap() {
                    SecureDecoded::Frame(f, _) => black_box(f.frame().segments[3].len()),
                    SecureDecoded::Need(_) => unreachable!("whole frame"),
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_crc, bench_secure);
criterion_main!(benches);
