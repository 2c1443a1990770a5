//! What a run does, drawn from its seed: the [`Action`]s of its [`plan`] at virtual times,
//! and the [`message`]s it sends.

use std::time::Duration;

use bytes::Bytes;

use msgr_core::message::{Message, Priority};

use crate::scenario::{body, Inst, Rng, Scenario};

/// Something the plan does at a virtual time.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    Send {
        from: usize,
        to: usize,
    },
    /// `Node::inject_failure` on `node`'s link to `peer`.
    Fault {
        node: usize,
        peer: usize,
    },
    /// The network breaks the links between two nodes.
    NetKill {
        a: usize,
        b: usize,
    },
    Partition {
        a: usize,
        b: usize,
        for_: Duration,
    },
    Heal {
        a: usize,
        b: usize,
    },
    /// Shut `node` down; it comes back after `down`, with the same nonce or a new one.
    Restart {
        node: usize,
        down: Duration,
        same_nonce: bool,
    },
    Start {
        node: usize,
        same_nonce: bool,
    },
    /// `observer` learns `of`'s new address: marks the old one down, sends to the new.
    MapUpdate {
        observer: usize,
        of: usize,
    },
    MarkDown {
        node: usize,
        peer: usize,
    },
    MarkDownAll {
        node: usize,
    },
}

/// The plan of a run of `sc` with `n` nodes: sends and faults, with their times.
pub fn plan(rng: &mut Rng, sc: Scenario, n: usize) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
    let per_pair = rng.range(5, 40);
    for from in 0..n {
        for to in 0..n {
            if from == to || (sc == Scenario::Lossy && from != 0) {
                continue;
            }
            for k in 0..per_pair {
                let at = match sc {
                    Scenario::Race if k == 0 => Duration::ZERO,
                    _ => rng.ms(0, 1000),
                };
                plan.push((at, Action::Send { from, to }));
            }
        }
    }
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    for _ in 0..rng.range(0, 5) {
        let (node, peer) = rng.pick(&pairs);
        let at = rng.ms(0, 1200);
        plan.push((at, Action::Fault { node, peer }));
    }
    for _ in 0..rng.range(0, 3) {
        let (a, b) = rng.pick(&pairs);
        let at = rng.ms(0, 1200);
        plan.push((at, Action::NetKill { a, b }));
    }
    if sc != Scenario::Lossy && rng.one_in(4) {
        let (a, b) = rng.pick(&pairs);
        let at = rng.ms(0, 1000);
        let for_ = rng.ms(10, 500);
        plan.push((at, Action::Partition { a, b, for_ }));
    }
    match sc {
        Scenario::Restart => {
            for _ in 0..rng.range(1, 3) {
                let node = rng.range(0, n as u64) as usize;
                let at = rng.ms(50, 1000);
                let down = rng.ms(0, 300);
                let same_nonce = rng.one_in(2);
                plan.push((
                    at,
                    Action::Restart {
                        node,
                        down,
                        same_nonce,
                    },
                ));
            }
        }
        Scenario::MarkDown => {
            for _ in 0..rng.range(1, 5) {
                let (node, peer) = rng.pick(&pairs);
                let at = rng.ms(0, 1100);
                plan.push((at, Action::MarkDown { node, peer }));
            }
            if rng.one_in(4) {
                let node = rng.range(0, n as u64) as usize;
                let at = rng.ms(0, 1100);
                plan.push((at, Action::MarkDownAll { node }));
            }
        }
        _ => {}
    }
    plan
}

/// Message `tid` from instance `from` to node `to`, and its priority: random priority and
/// data length (mostly small, some large, a few of megabytes).
pub fn message(rng: &mut Rng, tid: u64, from: Inst, to: usize) -> (Message, u16) {
    let prio = rng.pick(&[64u16, 127, 127, 196, 255]);
    let len = match rng.range(0, 1000) {
        0..=2 => rng.range(1 << 20, 4 << 20),
        3..=40 => rng.range(4096, 65536),
        _ => rng.range(0, 512),
    } as usize;
    let mut m = Message::new(100, body(from, to))
        .with_priority(Priority(prio))
        .with_tid(tid);
    if len > 0 {
        m = m.with_data(Bytes::from(vec![(tid % 251) as u8; len]));
    }
    (m, prio)
}
