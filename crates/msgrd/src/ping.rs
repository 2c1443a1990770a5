//! `msgrd ping`: closed-loop clients that measure latency and throughput against `serve`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use msgr::{
    ConnectionRef, Dispatcher, EntityAddr, EntityName, EntityType, ErrorClass, Message, Messenger,
    MessengerCounters,
};
use msgr_core::session::SessionError;

use crate::common::{load_config, log_event, print_counters};
use crate::serve::{MSG_ECHO, MSG_ONE_WAY};
use crate::AnyError;

pub(crate) struct PingArgs {
    pub(crate) config: PathBuf,
    pub(crate) peer: EntityAddr,
    pub(crate) size: usize,
    pub(crate) count: u64,
    pub(crate) concurrency: u64,
    pub(crate) connections: u64,
    pub(crate) peer_type: EntityType,
    pub(crate) json: bool,
    pub(crate) no_crc_data: bool,
    pub(crate) one_way: bool,
}

/// One connection's closed loop: the next message leaves when an echo arrives.
struct Driver {
    state: Mutex<DriverState>,
    done: Condvar,
    front: Bytes,
    data: Bytes,
    msg_type: u16,
}

struct DriverState {
    total: u64,
    sent: u64,
    received: u64,
    sent_at: VecDeque<Instant>,
    latencies_ns: Vec<u64>,
    errors: u64,
    fatal: Option<String>,
}

impl Driver {
    fn message(&self, tid: u64) -> Message {
        Message::new(self.msg_type, self.front.clone())
            .with_data(self.data.clone())
            .with_tid(tid)
    }

    /// Queue up to `n` more messages (bounded by the total) on `conn`.
    fn send_more(&self, conn: &ConnectionRef, n: u64) {
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
                tracing::error!(error = %e, "send failed");
                self.state.lock().errors += 1;
                self.done.notify_all();
                return;
            }
        }
    }

    fn wait_done(&self) -> Result<(), AnyError> {
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
                    "no echo for 120 s ({} of {} received): is the server running?",
                    s.received, s.total
                )
                .into());
            }
        }
        Ok(())
    }
}

impl Dispatcher for Driver {
    fn ms_dispatch(&self, conn: &ConnectionRef, _msg: Message) {
        let more = {
            let mut s = self.state.lock();
            if let Some(t) = s.sent_at.pop_front() {
                s.latencies_ns.push(t.elapsed().as_nanos() as u64);
            }
            s.received += 1;
            if s.received >= s.total {
                self.done.notify_all();
            }
            s.sent < s.total
        };
        if more {
            self.send_more(conn, 1);
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

fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is 3rd, utime 14th, stime 15th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e3
}

/// What `ping` measured: one JSON line (`--json`, for the bench) or one human line.
#[derive(serde::Serialize)]
struct PingSummary {
    transport: &'static str,
    size: usize,
    count: u64,
    concurrency: u64,
    connections: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    msgs_per_s: f64,
    gbytes_per_s: f64,
    cpu_s_client: f64,
    wall_s: f64,
    one_way: bool,
}

impl std::fmt::Display for PingSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} size={} count={} concurrency={} connections={}: p50 {:.1} us, p99 {:.1} us, \
             max {:.1} us; {:.0} msg/s, {:.3} GB/s; client CPU {:.2} s over {:.3} s",
            self.transport,
            if self.one_way { " one-way" } else { "" },
            self.size,
            self.count,
            self.concurrency,
            self.connections,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.msgs_per_s,
            self.gbytes_per_s,
            self.cpu_s_client,
            self.wall_s
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
    let mut nodes: Vec<(msgr::Node, Arc<Driver>, ConnectionRef)> = Vec::new();
    for i in 0..a.connections {
        let mut cfg = base.clone();
        // Clients listen on an ephemeral port of the configured IP (the server has the port).
        cfg.bind = SocketAddr::new(cfg.bind.ip(), 0);
        cfg.nonce = None;
        cfg.name = EntityName::new(EntityType::CLIENT, i as i64);
        let share = a.count / a.connections + u64::from(i < a.count % a.connections);
        let driver = Arc::new(Driver {
            state: Mutex::new(DriverState {
                total: 1,
                sent: 0,
                received: 0,
                sent_at: VecDeque::new(),
                latencies_ns: Vec::new(),
                errors: 0,
                fatal: None,
            }),
            done: Condvar::new(),
            front: front.clone(),
            data: data.clone(),
            msg_type: if a.one_way { MSG_ONE_WAY } else { MSG_ECHO },
        });
        let m = msgr::from_config(&cfg)?;
        m.add_dispatcher(driver.clone());
        m.start()?;
        let conn = m.connect_to(peer_type, &peer)?;
        // Warm-up: one round trip opens the session before the clock starts.
        driver.send_more(&conn, 1);
        driver.wait_done()?;
        {
            let mut s = driver.state.lock();
            *s = DriverState {
                total: share,
                sent: 0,
                received: 0,
                sent_at: VecDeque::with_capacity(a.concurrency as usize),
                latencies_ns: Vec::with_capacity(share as usize),
                errors: 0,
                fatal: None,
            };
        }
        nodes.push((m, driver, conn));
    }

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for (_, d, c) in &nodes {
        d.send_more(c, a.concurrency);
    }
    let mut waited = Ok(());
    for (_, d, _) in &nodes {
        if let Err(e) = d.wait_done() {
            waited = Err(e);
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;

    // The transport that carried the connections (the first listed that could reach the peer).
    let carried_by = nodes
        .first()
        .and_then(|(_, _, c)| c.transport())
        .unwrap_or("none");
    let mut lat: Vec<u64> = Vec::with_capacity(a.count as usize);
    let mut total = MessengerCounters::default();
    for (m, d, _) in &nodes {
        lat.extend_from_slice(&d.state.lock().latencies_ns);
        m.shutdown();
        total += m.counters();
    }
    print_counters("ping", &total);
    waited?;
    lat.sort_unstable();
    let count = lat.len() as u64;
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let max = lat.last().map_or(0.0, |v| *v as f64 / 1e3);
    let summary = PingSummary {
        transport: carried_by,
        size: a.size,
        count,
        concurrency: a.concurrency,
        connections: a.connections,
        p50_us: p50,
        p99_us: p99,
        max_us: max,
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
