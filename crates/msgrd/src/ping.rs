//! `msgrd ping`: clients that measure latency and throughput against `serve`.
//!
//! Echo (the default) is a closed loop: each connection keeps `--concurrency` messages in
//! flight and sends the next from the dispatcher as each echo arrives; every round trip goes
//! into a latency histogram. `--one-way` streams (see [`crate::stream`]): the server answers
//! nothing but msgr1 ACKs until an end marker, whose answer carries the server's count.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;

use msgr::{Connection, EntityName, EntityType, Messenger, MessengerCounters};

use crate::client::{Client, Driver};
use crate::common::Peer;
use crate::common::{load_config, print_counters};
use crate::measure::{cpu_seconds, Latencies};
use crate::proto::{MSG_ECHO, MSG_STREAM};
use crate::stream;
use crate::AnyError;

pub(crate) struct PingArgs {
    pub(crate) config: PathBuf,
    pub(crate) peer: Peer,
    pub(crate) size: usize,
    pub(crate) count: u64,
    pub(crate) concurrency: u64,
    pub(crate) connections: u64,
    pub(crate) peer_type: EntityType,
    pub(crate) json: bool,
    pub(crate) no_crc_data: bool,
    pub(crate) one_way: bool,
}

/// What `ping` measured: one JSON line (`--json`, for the bench) or one human line.
/// Latencies are round trips; streaming has none (null in JSON).
#[derive(serde::Serialize)]
struct PingSummary {
    transport: &'static str,
    /// "v1" or "v2".
    protocol: &'static str,
    size: usize,
    count: u64,
    concurrency: u64,
    connections: u64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    msgs_per_s: f64,
    gbytes_per_s: f64,
    /// User + system CPU seconds of this client process over the measured interval.
    cpu_s_client: f64,
    wall_s: f64,
    one_way: bool,
}

impl std::fmt::Display for PingSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let gb = self.count as f64 * self.size as f64 / 1e9;
        write!(
            f,
            "{}{}{} size={} count={} concurrency={} connections={}: p50 {} us, p99 {} us, \
             p99.9 {} us, max {} us; {:.0} msg/s, {:.3} GB/s; client CPU {:.2} s over {:.3} s \
             ({:.2} s per million messages, {:.2} s per GB)",
            self.transport,
            if self.protocol == "v2" { " msgr2" } else { "" },
            if self.one_way { " one-way" } else { "" },
            self.size,
            self.count,
            self.concurrency,
            self.connections,
            us(self.p50_us),
            us(self.p99_us),
            us(self.p999_us),
            us(self.max_us),
            self.msgs_per_s,
            self.gbytes_per_s,
            self.cpu_s_client,
            self.wall_s,
            self.cpu_s_client / (self.count as f64 / 1e6),
            if gb > 0.0 {
                self.cpu_s_client / gb
            } else {
                0.0
            },
        )
    }
}

pub(crate) fn ping(a: PingArgs) -> Result<(), AnyError> {
    let base = load_config(&a.config, a.no_crc_data)?;
    let (peer, peer_type) = (a.peer, a.peer_type);
    let payload = Bytes::from(vec![0x5au8; a.size]);
    let (front, data) = if a.size <= 4096 {
        (payload, Bytes::new())
    } else {
        (Bytes::new(), payload)
    };
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..a.connections {
        let mut cfg = base.clone();
        // Clients listen on an ephemeral port of the configured IP (the server has the port).
        cfg.bind = SocketAddr::new(cfg.bind.ip(), 0);
        cfg.nonce = None;
        cfg.name = EntityName::new(EntityType::CLIENT, i as i64);
        if a.one_way {
            cfg.limits.send_queue_bytes = stream::queue_bytes(a.size, a.concurrency);
        }
        let share = a.count / a.connections + u64::from(i < a.count % a.connections);
        let msg_type = if a.one_way { MSG_STREAM } else { MSG_ECHO };
        let driver = Driver::new(front.clone(), data.clone(), msg_type);
        let node = msgr::from_config(&cfg)?;
        node.add_dispatcher(driver.clone());
        node.start()?;
        let protocol = peer.protocol.unwrap_or(cfg.protocol.prefer);
        let conn = node.connect_with(peer_type, &peer.addr, protocol)?;
        // Warm-up: one round trip opens the session before the clock starts.
        let warm_seq = if a.one_way {
            stream::warm_up(&driver, &conn)?
        } else {
            driver.send_more(&conn, 1);
            driver.wait_done()?;
            driver.start_phase(share, a.concurrency);
            0
        };
        clients.push(Client {
            node,
            driver,
            conn,
            share,
            warm_seq,
        });
    }

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let waited = if a.one_way {
        stream::run(&clients)
    } else {
        closed_loop(&clients, a.concurrency)
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;

    // The transport that carried the connections (the first listed that could reach the peer).
    let carried_by = clients
        .first()
        .and_then(|c| c.conn.transport())
        .unwrap_or("none");
    let protocol = clients.first().map_or("v1", |c| c.conn.protocol().as_str());
    let mut lat = Latencies::new();
    let mut total = MessengerCounters::default();
    for c in &clients {
        c.driver.merge_latencies_into(&mut lat);
        c.node.shutdown();
        total += c.node.counters();
    }
    print_counters("ping", &total);
    waited?;
    let count = if a.one_way { a.count } else { lat.count() };
    let summary = PingSummary {
        transport: carried_by,
        protocol,
        size: a.size,
        count,
        concurrency: a.concurrency,
        connections: a.connections,
        p50_us: lat.quantile_us(0.50),
        p99_us: lat.quantile_us(0.99),
        p999_us: lat.quantile_us(0.999),
        max_us: lat.max_us(),
        msgs_per_s: count as f64 / wall,
        gbytes_per_s: (count as f64 * a.size as f64) / wall / 1e9,
        cpu_s_client: cpu,
        wall_s: wall,
        one_way: a.one_way,
    };
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}

/// Echo mode: fill every connection's window, then let the dispatchers keep it full.
fn closed_loop(clients: &[Client], window: u64) -> Result<(), AnyError> {
    for c in clients {
        c.driver.send_more(&c.conn, window);
    }
    for c in clients {
        c.driver.wait_done()?;
    }
    Ok(())
}
