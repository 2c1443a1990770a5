//! What the dispatchers see: a [`Recorder`] per node instance writes into one shared [`Log`]
//! (deliveries, reports, callbacks, and a hash of all of it with virtual times); [`check`]
//! and [`settled`] judge a log against what was sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use msgr_core::api::{ConnectionRef, Dispatcher};
use msgr_core::message::Message;
use msgr_core::session::SessionError;
use msgr_node::VirtualClock;

use crate::scenario::{node_of, parse, Inst};

/// How a message came back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Reset,
    RemoteReset,
}

/// A message a dispatcher got.
pub struct Delivery {
    pub tid: u64,
    pub seq: u64,
    pub from: Inst,
    pub to: Inst,
    /// Remote resets seen so far (sequence numbers restart after one).
    pub epoch: u64,
}

/// A message sent: by and to which instances, at which priority.
pub struct Sent {
    pub from: Inst,
    pub to: Inst,
    pub prio: u16,
}

/// What the dispatchers of all nodes saw, in order.
pub struct Log {
    pub clock: Arc<VirtualClock>,
    pub start: Instant,
    pub trace: bool,
    pub deliveries: Vec<Delivery>,
    /// tid -> (seq, how), the first report.
    pub reported: BTreeMap<u64, (u64, Report)>,
    pub errors: Vec<String>,
    /// Resets / remote resets / faults seen (before the final shutdown).
    pub resets: u64,
    pub remote_resets: u64,
    pub faults: u64,
    pub connects: u64,
    pub accepts: u64,
    /// Set for the final shutdown: messages reported from then on are counted apart.
    pub final_shutdown: bool,
    pub reported_at_end: u64,
    /// (server, client node) -> the connection the client opened (ClientServer).
    pub client_conns: BTreeMap<(usize, usize), ConnectionRef>,
    /// FNV-1a over everything above, in order, with virtual times.
    pub hash: u64,
}

impl Log {
    /// Hash the virtual time and `words` into the trace.
    pub fn mix(&mut self, words: &[u64]) {
        let t = (self.clock.now() - self.start).as_nanos() as u64;
        for w in std::iter::once(t).chain(words.iter().copied()) {
            for b in w.to_le_bytes() {
                self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    /// Trace (SIM_TRACE) what `me` saw.
    pub fn say(&self, me: Inst, what: std::fmt::Arguments<'_>) {
        if self.trace {
            let t = (self.clock.now() - self.start).as_micros();
            eprintln!("{t:>9}us n{}.{} {what}", me.0, me.1);
        }
    }
}

/// The dispatcher of one node instance: records into the shared log.
pub struct Recorder {
    pub me: Inst,
    pub log: Arc<Mutex<Log>>,
}

impl Recorder {
    fn report(&self, how: Report, undelivered: Vec<Message>) {
        let mut log = self.log.lock();
        for m in undelivered {
            log.say(
                self.me,
                format_args!("{how:?}: tid {} seq {}", m.tid, m.seq),
            );
            log.mix(&[2, how as u64, m.tid, m.seq]);
            if log.final_shutdown {
                log.reported_at_end += 1;
            }
            if log.reported.insert(m.tid, (m.seq, how)).is_some() {
                let e = format!("tid {} reported twice (by {:?})", m.tid, self.me);
                log.errors.push(e);
            }
        }
    }
}

impl Dispatcher for Recorder {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        let mut log = self.log.lock();
        log.say(
            self.me,
            format_args!("got tid {} seq {} from {:?}", msg.tid, msg.seq, msg.src),
        );
        log.mix(&[1, msg.tid, msg.seq, self.me.0 as u64, u64::from(self.me.1)]);
        let Some((from, to)) = parse(&msg.front) else {
            log.errors.push(format!("tid {}: front mangled", msg.tid));
            return;
        };
        if to != self.me.0 || msg.src.num != from.0 as i64 {
            let e = format!(
                "tid {} for node {to} from {from:?} reached {:?} (src {:?})",
                msg.tid, self.me, msg.src
            );
            log.errors.push(e);
        }
        // (Slice comparisons: fast in debug builds too.)
        let pattern = [(msg.tid % 251) as u8; 4096];
        if !msg.data.chunks(4096).all(|c| c == &pattern[..c.len()]) {
            log.errors.push(format!("tid {}: data corrupted", msg.tid));
        }
        let epoch = log.remote_resets;
        log.deliveries.push(Delivery {
            tid: msg.tid,
            seq: msg.seq,
            from,
            to: self.me,
            epoch,
        });
        if let Some(peer) = node_of(&conn.peer_addr()) {
            log.client_conns
                .entry((self.me.0, peer))
                .or_insert_with(|| conn.clone());
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        let mut log = self.log.lock();
        log.say(
            self.me,
            format_args!("connected {:?} {:?}", conn.peer_addr(), conn.peer_name()),
        );
        log.connects += 1;
        log.mix(&[3]);
    }
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        let mut log = self.log.lock();
        log.say(
            self.me,
            format_args!("accepted {:?} {:?}", conn.peer_addr(), conn.peer_name()),
        );
        log.accepts += 1;
        log.mix(&[4]);
        // (msgr1 names only the peer's type in its connect: its number comes with messages.)
        if let Some(peer) = node_of(&conn.peer_addr()) {
            log.client_conns.insert((self.me.0, peer), conn.clone());
        }
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        {
            let mut log = self.log.lock();
            log.say(
                self.me,
                format_args!(
                    "reset {:?}: {} undelivered",
                    conn.peer_addr(),
                    undelivered.len()
                ),
            );
            if !log.final_shutdown {
                log.resets += 1;
            }
            log.mix(&[5, undelivered.len() as u64]);
        }
        self.report(Report::Reset, undelivered);
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        let mut log = self.log.lock();
        log.say(self.me, format_args!("remote reset {:?}", conn.peer_addr()));
        log.remote_resets += 1;
        log.mix(&[6]);
    }
    fn ms_handle_remote_reset_undelivered(&self, _conn: &ConnectionRef, undelivered: Vec<Message>) {
        self.report(Report::RemoteReset, undelivered);
    }
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        let mut log = self.log.lock();
        log.say(self.me, format_args!("fault: {error}"));
        log.faults += 1;
        log.mix(&[7]);
    }
}

/// Every message accounted for: delivered (or, where sessions may reset, reported).
pub fn settled(log: &Log, sent: &BTreeMap<u64, Sent>) -> bool {
    let delivered: BTreeSet<u64> = log.deliveries.iter().map(|d| d.tid).collect();
    sent.keys()
        .all(|t| delivered.contains(t) || log.reported.contains_key(t))
}

/// Check what `log` saw against what was `sent` (`lossless`:
/// [`crate::scenario::Scenario::lossless`]).
pub fn check(log: &Log, sent: &BTreeMap<u64, Sent>, lossless: bool) -> Result<(), String> {
    if let Some(e) = log.errors.first() {
        return Err(e.clone());
    }
    let mut seen = BTreeSet::new();
    // (from, to, prio) -> last tid; (from, to) -> last seq.
    let mut last_tid: BTreeMap<(Inst, Inst, u16), u64> = BTreeMap::new();
    let mut last_seq: BTreeMap<(Inst, Inst), (u64, u64)> = BTreeMap::new();
    for d in &log.deliveries {
        let Some(s) = sent.get(&d.tid) else {
            return Err(format!("tid {} delivered but never sent", d.tid));
        };
        if !seen.insert(d.tid) {
            return Err(format!("tid {} delivered twice", d.tid));
        }
        if s.from != d.from || s.to.0 != d.to.0 || d.to.1 < s.to.1 {
            return Err(format!(
                "tid {} from {:?} to {:?} delivered from {:?} to {:?}",
                d.tid, s.from, s.to, d.from, d.to
            ));
        }
        if let Some(prev) = last_tid.insert((d.from, d.to, s.prio), d.tid) {
            if prev > d.tid {
                return Err(format!(
                    "{:?}->{:?} priority {}: tid {} after tid {}",
                    d.from, d.to, s.prio, d.tid, prev
                ));
            }
        }
        if let Some((prev, epoch)) = last_seq.insert((d.from, d.to), (d.seq, d.epoch)) {
            if lossless && prev >= d.seq && epoch == d.epoch {
                return Err(format!(
                    "{:?}->{:?}: seq {} (tid {}) after seq {prev}",
                    d.from, d.to, d.seq, d.tid
                ));
            }
        }
    }
    if lossless && log.resets > 0 {
        return Err(format!("lossless run saw {} session resets", log.resets));
    }
    for (tid, s) in sent {
        match (seen.contains(tid), log.reported.get(tid)) {
            (false, None) => {
                return Err(format!(
                    "tid {tid} {:?}->{:?} neither delivered nor reported",
                    s.from, s.to
                ))
            }
            (true, Some((0, how))) => {
                return Err(format!(
                    "tid {tid} delivered but reported ({how:?}) as never sent"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}
