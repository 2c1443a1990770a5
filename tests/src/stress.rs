//! Synthetic workload (Ceph test_msgr.cc SyntheticTest / SyntheticInjectTest): many
//! connections, many messages in flight each, mixed sizes, some at high priority; every echo is
//! checked for payload, exactly-once delivery and per-connection, per-priority order. With
//! injected socket failures and lossless policies the result must be identical.

use msgr::Messenger as _;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use msgr::{Connection as _, ConnectionRef, EntityAddr, EntityType, Message, Policy, Priority};

use crate::harness::{check_payload, node, pattern, Node};

#[derive(Clone, Copy, Debug)]
pub struct StressSpec {
    pub servers: usize,
    pub clients: usize,
    pub in_flight: u64,
    pub per_conn: u64,
    pub max_size: usize,
    /// Socket failure injection (1 in N I/O calls), 0 = off.
    pub inject: u64,
}

impl StressSpec {
    /// 128 connections (8 clients x 16 servers), 64 in flight each.
    pub fn full(per_conn: u64, inject: u64) -> Self {
        StressSpec {
            servers: 16,
            clients: 8,
            in_flight: 64,
            per_conn,
            max_size: 4 << 20,
            inject,
        }
    }
}

fn mix(tid: u64, salt: u64) -> u64 {
    let mut x = (tid ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 32)
}

/// Size of message `tid`: mostly small, a few medium, rarely up to `max`.
fn size_of(tid: u64, max: usize) -> usize {
    let r = mix(tid, 1) % 1000;
    let x = mix(tid, 2) as usize;
    match r {
        0..=1 => x % max.max(1),
        2..=60 => x % (64 << 10).min(max.max(1)),
        _ => x % 512,
    }
}

fn message(conn_salt: u64, seq: u64, max: usize) -> Message {
    // The tid carries the connection (high bits) and the sequence (low bits).
    let tid = (conn_salt << 32) | seq;
    let len = size_of(tid, max);
    let (front, data) = if len <= 512 { (len, 0) } else { (64, len) };
    let prio = if mix(tid, 3) % 100 < 5 {
        Priority::HIGH
    } else {
        Priority::DEFAULT
    };
    Message::new(7, pattern(tid, front))
        .with_data(pattern(tid ^ 0xdead_beef, data))
        .with_tid(tid)
        .with_priority(prio)
}

#[derive(Default)]
struct ConnState {
    sent: u64,
    received: HashSet<u64>,
    last_by_prio: HashMap<u16, u64>,
    errors: Vec<String>,
}

pub fn stress(t: &str, spec: StressSpec) {
    let tweak = |c: &mut msgr::Config| {
        c.fault.inject_socket_failures = spec.inject;
        c.limits.send_queue_bytes = 1 << 30;
    };
    let servers: Vec<Node> = (0..spec.servers)
        .map(|i| {
            node(t, &format!("osd.{i}"), |c| {
                tweak(c);
                c.policies
                    .set(EntityType::CLIENT, Policy::stateful_server());
            })
            .echo()
        })
        .collect();
    let mut clients = Vec::new();
    let mut all_states = Vec::new();
    for ci in 0..spec.clients {
        let client = node(t, &format!("client.{ci}"), |c| {
            tweak(c);
            c.policies.set(EntityType::OSD, Policy::lossless_client());
        });
        client
            .rec
            .keep
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let states: Arc<Mutex<HashMap<EntityAddr, ConnState>>> = Arc::default();
        let salts: HashMap<EntityAddr, u64> = servers
            .iter()
            .enumerate()
            .map(|(si, s)| (s.addr(), (ci * spec.servers + si) as u64))
            .collect();
        let (st, max, total) = (states.clone(), spec.max_size, spec.per_conn);
        *client.rec.on_message.lock() = Some(Box::new(move |conn: &ConnectionRef, m: &Message| {
            let peer = conn.peer_addr();
            let salt = salts[&peer];
            let mut all = st.lock();
            let s = all.entry(peer).or_default();
            let seq = m.tid & 0xffff_ffff;
            if m.tid >> 32 != salt {
                s.errors
                    .push(format!("tid {:#x} on the wrong connection", m.tid));
            }
            if !check_payload(m) {
                s.errors.push(format!("payload of {:#x} corrupted", m.tid));
            }
            if !s.received.insert(seq) {
                s.errors.push(format!("{:#x} delivered twice", m.tid));
            }
            if let Some(last) = s.last_by_prio.insert(m.priority.0, seq) {
                if last >= seq {
                    s.errors
                        .push(format!("{seq} after {last} at priority {}", m.priority.0));
                }
            }
            if s.sent < total {
                let next = message(salt, s.sent, max);
                s.sent += 1;
                drop(all);
                if let Err(e) = conn.send_message(next) {
                    st.lock()
                        .get_mut(&peer)
                        .unwrap()
                        .errors
                        .push(format!("send: {e}"));
                }
            }
        }));
        for (si, server) in servers.iter().enumerate() {
            let salt = (ci * spec.servers + si) as u64;
            let conn = client
                .msgr
                .connect_to(EntityType::OSD, &server.addr())
                .unwrap();
            let first = spec.in_flight.min(spec.per_conn);
            // Held while the first window is queued, so echoes cannot make the dispatcher send
            // later messages in between (which would break the order check, not the messenger).
            let mut st = states.lock();
            st.entry(server.addr()).or_default().sent = first;
            for seq in 0..first {
                conn.send_message(message(salt, seq, spec.max_size))
                    .unwrap();
            }
            drop(st);
        }
        clients.push(client);
        all_states.push(states);
    }
    let want = spec.per_conn as usize * spec.servers;
    for (client, states) in clients.iter().zip(&all_states) {
        let stuck = || {
            // Every connection short of its echoes: what it received and how its session is.
            let st = states.lock();
            let mut out = String::new();
            for conn in client.msgr.connections() {
                let peer = conn.peer_addr();
                let got = st.get(&peer).map_or(0, |s| s.received.len());
                if got as u64 >= spec.per_conn {
                    continue;
                }
                let missing: Vec<u64> = (0..spec.per_conn)
                    .filter(|q| !st.get(&peer).is_some_and(|s| s.received.contains(q)))
                    .take(8)
                    .collect();
                out += &format!(
                    "{} -> {peer}: {got}/{} echoes (first missing {missing:?}), connected {}, \
                     queued {} B, {:?}\n",
                    client.msgr.my_addr(),
                    spec.per_conn,
                    conn.is_connected(),
                    conn.queued_bytes(),
                    conn.counters()
                );
                // The server's side of it.
                let me = client.msgr.my_addr();
                for s in servers.iter().filter(|s| s.addr() == peer) {
                    for sc in s.msgr.connections().iter().filter(|c| c.peer_addr() == me) {
                        out += &format!(
                            "    server side: connected {}, queued {} B, {:?}\n",
                            sc.is_connected(),
                            sc.queued_bytes(),
                            sc.counters()
                        );
                    }
                }
            }
            out
        };
        client.rec.wait_or(
            "every echo",
            |s| {
                let _ = s;
                let st = states.lock();
                st.values().map(|c| c.received.len()).sum::<usize>() >= want
                    || st.values().any(|c| !c.errors.is_empty())
            },
            stuck,
        );
    }
    for states in &all_states {
        for (peer, s) in states.lock().iter() {
            assert!(
                s.errors.is_empty(),
                "{peer}: {:?}",
                &s.errors[..s.errors.len().min(5)]
            );
            assert_eq!(
                s.received.len() as u64,
                spec.per_conn,
                "{peer}: all delivered"
            );
        }
    }
    let sum = |f: fn(&msgr::MessengerCounters) -> u64| -> u64 {
        clients.iter().map(|c| f(&c.msgr.counters())).sum()
    };
    let (faults, reconnects, replayed) = (
        sum(|c| c.connections.faults),
        sum(|c| c.connections.reconnects),
        sum(|c| c.connections.replayed),
    );
    eprintln!("{spec:?}: client faults {faults}, reconnects {reconnects}, replayed {replayed}");
    if spec.inject > 0 {
        assert!(faults > 0 && reconnects > 0, "failures were injected");
    }
    drop(clients);
    drop(servers);
}

pub fn stress_plain(t: &str) {
    stress(t, StressSpec::full(200, 0));
}

pub fn stress_inject_30(t: &str) {
    stress(t, StressSpec::full(100, 30));
}

pub fn stress_inject_600(t: &str) {
    stress(t, StressSpec::full(150, 600));
}
