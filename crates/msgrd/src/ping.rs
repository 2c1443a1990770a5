//! `msgrd ping`: clients that measure latency and throughput against `serve`.
//!
//! Echo (the default) is a closed loop: each connection keeps `--concurrency` messages in
//! flight and sends the next from the dispatcher as each echo arrives; every round trip goes
//! into a latency histogram. `--one-way` streams (see [`crate::stream`]): the server answers
//! nothing but msgr1 ACKs until an end marker, whose answer carries the server's count.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use msgr::{
    Connection, ConnectionRef, Dispatcher, EntityName, EntityType, ErrorClass, Message, Messenger,
    MessengerCounters, NodeConnection,
};
use msgr_core::session::SessionError;

use crate::common::{add_counters, load_config, log_event, parse_addr, print_counters};
use crate::measure::{cpu_seconds, Latencies};
use crate::serve::{MSG_ECHO, MSG_STREAM_END};
use crate::stream;
use crate::AnyError;

pub(crate) struct PingArgs {
    pub(crate) config: PathBuf,
    pub(crate) peer: String,
    pub(crate) size: usize,
    pub(crate) count: u64,
    pub(crate) concurrency: u64,
    pub(crate) connections: u64,
    pub(crate) peer_type: String,
    pub(crate) json: bool,
    pub(crate) no_crc_data: bool,
    pub(crate) one_way: bool,
}

/// One connection's client: the closed loop's state, or a stream's end-marker answers.
pub(crate) struct Driver {
    state: Mutex<DriverState>,
    done: Condvar,
    front: Bytes,
    data: Bytes,
    msg_type: u16,
}

struct DriverState {
    /// Answers (echoes, or end-marker answers when streaming) this phase waits for.
    total: u64,
    sent: u64,
    received: u64,
    sent_at: VecDeque<Instant>,
    latencies: Latencies,
    /// The session sequence number the server saw on the latest end marker (streaming).
    server_seq: Option<u64>,
    errors: u64,
    fatal: Option<String>,
}

impl DriverState {
    fn phase(total: u64, window: u64) -> Self {
        DriverState {
            total,
            sent: 0,
            received: 0,
            sent_at: VecDeque::with_capacity(window as usize),
            latencies: Latencies::new(),
            server_seq: None,
            errors: 0,
            fatal: None,
        }
    }
}

impl Driver {
    /// The payload message this client sends (with tid `tid`).
    pub(crate) fn message(&self, tid: u64) -> Message {
        Message::new(self.msg_type, self.front.clone())
            .with_data(self.data.clone())
            .with_tid(tid)
    }

    /// Start a phase that ends after `total` answers.
    pub(crate) fn expect(&self, total: u64) {
        *self.state.lock() = DriverState::phase(total, 0);
    }

    /// The sequence number the server reported on the last end marker.
    pub(crate) fn server_seq(&self) -> Option<u64> {
        self.state.lock().server_seq
    }

    /// Queue up to `n` more echo messages (bounded by the phase's total) on `conn`.
    fn send_more(&self, conn: &NodeConnection, n: u64) {
        for _ in 0..n {
            let tid = {
                let mut s = self.state.lock();
                if s.sent >= s.total {
                    return;
                }
                s.sent += 1;
                s.sent_at.push_back(Instant::now());
                s.sent
            };
            if let Err(e) = conn.send_message(self.message(tid)) {
                self.note_send_error(&e);
                return;
            }
        }
    }

    pub(crate) fn note_send_error(&self, e: &msgr::MessengerError) {
        tracing::error!(error = %e, "send failed");
        self.state.lock().errors += 1;
        self.done.notify_all();
    }

    /// Block until the phase's answers are in, or say why they will not come.
    pub(crate) fn wait_done(&self) -> Result<(), AnyError> {
        let mut s = self.state.lock();
        while s.received < s.total {
            if let Some(why) = &s.fatal {
                return Err(format!("cannot talk to the peer: {why}").into());
            }
            if s.errors > 0 {
                return Err("sending failed (see the log above)".into());
            }
            if self
                .done
                .wait_for(&mut s, Duration::from_secs(120))
                .timed_out()
            {
                return Err(format!(
                    "no answer for 120 s ({} of {} received): is the server running?",
                    s.received, s.total
                )
                .into());
            }
        }
        Ok(())
    }
}

impl Dispatcher for Driver {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        if msg.msg_type == MSG_STREAM_END {
            let mut s = self.state.lock();
            s.server_seq = stream::decode_count(&msg.front);
            s.received += 1;
            self.done.notify_all();
            return;
        }
        let next_tid = {
            let mut s = self.state.lock();
            if let Some(t) = s.sent_at.pop_front() {
                s.latencies.record_ns(t.elapsed().as_nanos() as u64);
            }
            s.received += 1;
            if s.received >= s.total {
                self.done.notify_all();
            }
            (s.sent < s.total).then(|| {
                s.sent += 1;
                s.sent_at.push_back(Instant::now());
                s.sent
            })
        };
        if let Some(tid) = next_tid {
            if let Err(e) = conn.send_message(self.message(tid)) {
                self.note_send_error(&e);
            }
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        log_event("connected", conn);
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        tracing::warn!(peer = %conn.peer_addr(), undelivered = undelivered.len(), "session reset");
        self.state.lock().errors += 1;
        self.done.notify_all();
    }
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        tracing::info!(peer = %conn.peer_addr(), %error, "link fault");
        // A peer that is not the one we asked for (wrong nonce, not msgr1 ...) will not
        // become it by retrying: stop with the reason.
        if ErrorClass::of(error) == ErrorClass::Protocol {
            let hint = if matches!(error, SessionError::AddressMismatch { .. }) {
                " (give --peer exactly as `msgrd serve` printed it: IP:PORT/NONCE)"
            } else {
                ""
            };
            self.state.lock().fatal = Some(format!("{error}{hint}"));
            self.done.notify_all();
        }
    }
}

/// What `ping` measured: one JSON line (`--json`, for the bench) or one human line.
/// Latencies are round trips; streaming has none (null in JSON).
#[derive(serde::Serialize)]
struct PingSummary {
    transport: &'static str,
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
            "{}{} size={} count={} concurrency={} connections={}: p50 {} us, p99 {} us, \
             p99.9 {} us, max {} us; {:.0} msg/s, {:.3} GB/s; client CPU {:.2} s over {:.3} s \
             ({:.2} s per million messages, {:.2} s per GB)",
            self.transport,
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

/// One client messenger, its dispatcher and its connection to the server.
pub(crate) struct Client {
    pub(crate) node: msgr::Node,
    pub(crate) driver: Arc<Driver>,
    pub(crate) conn: Arc<NodeConnection>,
    /// Messages this connection must carry in the measured phase.
    pub(crate) share: u64,
    /// Streaming: the session sequence number of the warm-up's end marker.
    pub(crate) warm_seq: u64,
}

pub(crate) fn ping(a: PingArgs) -> Result<(), AnyError> {
    let base = load_config(&a.config, a.no_crc_data)?;
    let peer = parse_addr(&a.peer)?;
    let peer_type = match msgr::config_entity_type(&a.peer_type) {
        Some(t) => t,
        None => {
            return Err(format!(
                "--peer-type {}: expected one of mon, mds, osd, client, mgr",
                a.peer_type
            )
            .into())
        }
    };
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
        let driver = Arc::new(Driver {
            state: Mutex::new(DriverState::phase(1, 1)),
            done: Condvar::new(),
            front: front.clone(),
            data: data.clone(),
            msg_type: if a.one_way {
                stream::MSG_STREAM
            } else {
                MSG_ECHO
            },
        });
        let node = msgr::from_config(&cfg)?;
        node.add_dispatcher(driver.clone());
        node.start()?;
        let conn = node.connect(peer_type, &peer)?;
        // Warm-up: one round trip opens the session before the clock starts.
        let warm_seq = if a.one_way {
            stream::warm_up(&driver, &conn)?
        } else {
            driver.send_more(&conn, 1);
            driver.wait_done()?;
            *driver.state.lock() = DriverState::phase(share, a.concurrency);
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
    let mut lat = Latencies::new();
    let mut total = MessengerCounters::default();
    for c in &clients {
        lat.merge(&c.driver.state.lock().latencies);
        c.node.shutdown();
        add_counters(&mut total, &c.node.counters());
    }
    print_counters("ping", &total);
    waited?;
    let count = if a.one_way { a.count } else { lat.count() };
    let summary = PingSummary {
        transport: carried_by,
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
