//! Bounded, seeded fuzzing of whole sessions, short enough for every CI run (the `fuzz/`
//! `session` target is the long-running, coverage-guided version of the same interpreter,
//! [`world`]). A client and a server session (each policy pair) get random scripts of link
//! traffic, injected and corrupted bytes, time steps and API calls (send, keepalive, mark
//! down, close, cut, reconnect, restart); scripts seeded from the golden captures of a real
//! Ceph monitor and client, and mutations of them. After every step: no panic, receive buffers
//! and output bounded, sequence numbers monotonic, nothing delivered twice or never sent.
//!
//! A failure prints the seed; rerun one with `SESSION_FUZZ_SEED=<n>`. With
//! `SESSION_FUZZ_CORPUS=<dir>` the seed scripts are written there (the libFuzzer corpus).

#[path = "session_fuzz/world.rs"]
mod world;

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{rngs::StdRng, Rng, SeedableRng};
use world::script::{inject, op};
use world::*;

/// The captured streams (see tests/data/README.md): (client to monitor, monitor to client).
fn captures() -> Vec<(Vec<u8>, Vec<u8>)> {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    (0..2)
        .map(|i| {
            let read = |dir: &str| std::fs::read(format!("{data}/stream{i}_{dir}.bin")).unwrap();
            (read("c2s"), read("s2c"))
        })
        .collect()
}

/// Scripts made of the captures: the real client's bytes to our server, the real monitor's
/// to our client, after a link is up; whole, in pieces, and mixed with our own traffic.
fn capture_scripts() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (c2s, s2c) in captures() {
        for cfg in [2u8, 8 | 2, 8 | 16, 8 | 1, 8 | 3] {
            let mut s = vec![cfg];
            op(&mut s, OP_RECONNECT, &[]);
            inject(&mut s, true, &c2s);
            op(&mut s, OP_EXCHANGE, &[]);
            out.push(s);

            let mut s = vec![cfg];
            op(&mut s, OP_RECONNECT, &[]);
            inject(&mut s, false, &s2c);
            op(&mut s, OP_SEND_A, &[20, 0]);
            op(&mut s, OP_EXCHANGE, &[]);
            out.push(s);

            // The monitor's stream in 500-byte pieces, with time passing in between.
            let mut s = vec![cfg];
            op(&mut s, OP_RECONNECT, &[]);
            for piece in s2c.chunks(500) {
                inject(&mut s, false, piece);
                op(&mut s, OP_TIME, &[3]);
            }
            out.push(s);
        }
    }
    out
}

/// A random script: mostly traffic and sends, some faults and restarts. `clean`: a lossless
/// client and server, and only what they must survive without losing a message (link cuts,
/// reconnects, time: no injected bytes, mark-down, close or restart).
fn random_script(rng: &mut StdRng, caps: &[(Vec<u8>, Vec<u8>)], clean: bool) -> Vec<u8> {
    let cfg = if clean {
        // Policy pair 1 is lossless_client / stateful_server (see `world`).
        rng.gen_range(0..50u8) * 5 + 1
    } else {
        rng.gen()
    };
    let mut s = vec![cfg];
    op(&mut s, OP_RECONNECT, &[]);
    for _ in 0..rng.gen_range(1..200) {
        let o = match rng.gen_range(0..if clean { 83 } else { 100 }) {
            0..=17 => OP_EXCHANGE,
            18..=25 => OP_DELIVER_AB,
            26..=33 => OP_DELIVER_BA,
            34..=48 => OP_SEND_A,
            49..=57 => OP_SEND_B,
            58..=64 => OP_TIME,
            65..=73 => OP_RECONNECT,
            74..=79 => OP_CUT,
            80..=82 => OP_KEEPALIVE,
            83..=84 => OP_MARK_DOWN,
            85..=86 => OP_CLOSE,
            87..=88 => OP_RESTART,
            89..=91 => OP_CORRUPT,
            92..=95 => OP_INJECT_A,
            _ => OP_INJECT_B,
        };
        match o {
            OP_INJECT_A | OP_INJECT_B => {
                // Random bytes, or a slice of a capture.
                let bytes: Vec<u8> = if rng.gen_bool(0.5) {
                    (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect()
                } else {
                    let (c2s, s2c) = &caps[rng.gen_range(0..caps.len())];
                    let src = if o == OP_INJECT_B { c2s } else { s2c };
                    let from = rng.gen_range(0..src.len());
                    let to = (from + rng.gen_range(1..2000)).min(src.len());
                    src[from..to].to_vec()
                };
                inject(&mut s, o == OP_INJECT_B, &bytes);
            }
            OP_TIME => {
                // Mostly milliseconds, sometimes past the keepalive, handshake or idle timeout.
                let b = if rng.gen_bool(0.8) {
                    rng.gen_range(0..10)
                } else {
                    rng.gen()
                };
                op(&mut s, o, &[b]);
            }
            _ => {
                // Exactly the argument bytes the op reads (more would be read as ops).
                let n = match o {
                    OP_EXCHANGE | OP_CUT | OP_RECONNECT => 0,
                    OP_SEND_A | OP_SEND_B => 2,
                    OP_CORRUPT => 3,
                    _ => 1,
                };
                let args: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                op(&mut s, o, &args);
            }
        }
    }
    s
}

/// Flip, drop or duplicate a few bytes of a script.
fn mutate(rng: &mut StdRng, mut s: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.gen_range(1..8) {
        if s.len() < 2 {
            break;
        }
        let i = rng.gen_range(1..s.len());
        match rng.gen_range(0..3) {
            0 => s[i] ^= 1 << rng.gen_range(0..8),
            1 => {
                s.remove(i);
            }
            _ => s.insert(i, rng.gen()),
        }
    }
    s
}

fn script_for(seed: u64, seeds: &[Vec<u8>], caps: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    match seed % 4 {
        0 => seeds[rng.gen_range(0..seeds.len())].clone(),
        1 => {
            let s = seeds[rng.gen_range(0..seeds.len())].clone();
            mutate(&mut rng, s)
        }
        2 => random_script(&mut rng, caps, false),
        _ => random_script(&mut rng, caps, true),
    }
}

#[test]
fn sessions_survive_random_scripts() {
    let caps = captures();
    let seeds = capture_scripts();
    if let Ok(dir) = std::env::var("SESSION_FUZZ_CORPUS") {
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(format!("{dir}/capture-{i}"), s).unwrap();
        }
        for i in 0..64 {
            let s = random_script(&mut rng, &caps, i % 2 == 0);
            std::fs::write(format!("{dir}/random-{i}"), s).unwrap();
        }
    }
    let range: Vec<u64> = match std::env::var("SESSION_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("SESSION_FUZZ_SEED must be a u64")],
        Err(_) => (0..1500).collect(),
    };
    let full_run = range.len() > 1;
    let mut total = Stats::default();
    for seed in range {
        let script = script_for(seed, &seeds, &caps);
        match catch_unwind(AssertUnwindSafe(|| World::run(&script))) {
            Ok(stats) => total += stats,
            Err(p) => {
                eprintln!(
                    "session fuzz failed with seed {seed}: rerun with SESSION_FUZZ_SEED={seed}"
                );
                std::panic::resume_unwind(p);
            }
        }
    }
    eprintln!("session fuzz: {total:?}");
    if full_run {
        // The scripts must keep reaching every part of the sessions, or this proves little.
        let reached = [
            ("handshakes", total.opened),
            ("deliveries", total.delivered),
            ("input errors", total.input_errors),
            ("resets", total.resets),
            ("replacements", total.replaced),
            ("messages checked for loss", total.lossless_checked),
        ];
        for (what, n) in reached {
            assert!(n > 0, "no {what} in the whole run: {total:?}");
        }
    }
}
