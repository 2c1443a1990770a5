//! [`RdmaCounters`]: the RDMA-level counters of a transport, summed over its links.
//!
//! No lock is shared on the data path: each link publishes a snapshot of its own counters into
//! a slot of its own (an uncontended lock, once per drive step, not per message), and
//! [`Stats::sum`] adds up the slots of live links and the totals of links already gone.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::link::{Link, LinkCounters};

/// RDMA-specific counters of a transport (sums over its links, live and past).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdmaCounters {
    /// Send buffers posted and not completed yet, over live links (gauge).
    pub send_buffers_in_use: u64,
    /// Send buffers free to be filled, over live links (gauge).
    pub send_buffers_free: u64,
    /// Receive buffers holding data not consumed yet, over live links.
    pub recv_buffers_held: u64,
    /// Times a link had data waiting and no credit (sends waiting for credits).
    pub credit_stalls: u64,
    /// Links waiting for credits right now.
    pub links_waiting_for_credits: u64,
    /// Credit-only SENDs (zero-length, credits in the immediate data) posted.
    pub credit_messages: u64,
    /// Work completions with an error status (flushes of a failing QP included).
    pub completions_with_error: u64,
    /// Completions that failed with receiver-not-ready retries exceeded (a flow-control bug,
    /// or a peer that stopped re-posting receives).
    pub rnr_events: u64,
    /// Stream bytes sent, through send buffers or exposed for the peer's READ.
    pub bytes_out: u64,
    /// Stream bytes received and handed to the session.
    pub bytes_in: u64,
    /// SENDs carrying data posted.
    pub data_sends: u64,
    /// Receives carrying data completed.
    pub data_recvs: u64,
    /// Links alive right now (gauge).
    pub live_links: u64,
    /// Large payloads sent as READ requests; of those, how many needed a registration of
    /// their own (the others lay in a `RegisteredBuffer`), and how many were copied through
    /// send buffers instead because registration failed.
    pub read_requests: u64,
    /// READ requests whose payload needed a memory registration of its own.
    pub read_registrations: u64,
    /// Large payloads copied through send buffers because registering them failed.
    pub read_fallbacks: u64,
    /// RDMA READs this side completed, and their bytes.
    pub reads: u64,
    /// Bytes fetched by the RDMA READs this side completed.
    pub read_bytes: u64,
    /// READ payloads copied into the session's buffer instead of spliced in.
    pub read_copies: u64,
    /// READ destinations registered; the other READs reused a pooled registration.
    pub read_buffers_registered: u64,
    /// Payloads exposed for the peer's READ and not released yet, over live links.
    pub exposed_regions: u64,
}

impl RdmaCounters {
    /// Add `o`'s counts to these.
    pub fn add(&mut self, o: &RdmaCounters) {
        // Destructured, so a new counter cannot be forgotten here.
        let RdmaCounters {
            send_buffers_in_use,
            send_buffers_free,
            recv_buffers_held,
            credit_stalls,
            links_waiting_for_credits,
            credit_messages,
            completions_with_error,
            rnr_events,
            bytes_out,
            bytes_in,
            data_sends,
            data_recvs,
            live_links,
            read_requests,
            read_registrations,
            read_fallbacks,
            reads,
            read_bytes,
            read_copies,
            read_buffers_registered,
            exposed_regions,
        } = o;
        self.send_buffers_in_use += send_buffers_in_use;
        self.send_buffers_free += send_buffers_free;
        self.recv_buffers_held += recv_buffers_held;
        self.credit_stalls += credit_stalls;
        self.links_waiting_for_credits += links_waiting_for_credits;
        self.credit_messages += credit_messages;
        self.completions_with_error += completions_with_error;
        self.rnr_events += rnr_events;
        self.bytes_out += bytes_out;
        self.bytes_in += bytes_in;
        self.data_sends += data_sends;
        self.data_recvs += data_recvs;
        self.live_links += live_links;
        self.read_requests += read_requests;
        self.read_registrations += read_registrations;
        self.read_fallbacks += read_fallbacks;
        self.reads += reads;
        self.read_bytes += read_bytes;
        self.read_copies += read_copies;
        self.read_buffers_registered += read_buffers_registered;
        self.exposed_regions += exposed_regions;
    }

    /// Add `o`'s running totals, not its gauges (what a live link holds right now): what a
    /// link leaves behind when it is gone.
    fn add_totals(&mut self, o: &RdmaCounters) {
        self.add(&RdmaCounters {
            send_buffers_in_use: 0,
            send_buffers_free: 0,
            recv_buffers_held: 0,
            links_waiting_for_credits: 0,
            live_links: 0,
            exposed_regions: 0,
            ..o.clone()
        });
    }

    /// One live link's gauges and totals.
    pub(crate) fn of_link(l: &Link) -> RdmaCounters {
        // Destructured, so a new link counter cannot be forgotten here.
        let LinkCounters {
            bytes_out,
            bytes_in,
            data_sends,
            credit_sends,
            data_recvs,
            credit_stalls,
            wc_errors,
            rnr_errors,
            read_requests,
            read_registrations,
            read_fallbacks,
            reads,
            read_bytes,
            read_copies,
            read_buffers_registered,
        } = l.counters;
        RdmaCounters {
            send_buffers_in_use: l.sends_in_flight() as u64,
            send_buffers_free: l.send_buffers_free() as u64,
            recv_buffers_held: l.recv_buffers_held() as u64,
            credit_stalls,
            links_waiting_for_credits: u64::from(l.is_stalled()),
            credit_messages: credit_sends,
            completions_with_error: wc_errors,
            rnr_events: rnr_errors,
            bytes_out,
            bytes_in,
            data_sends,
            data_recvs,
            live_links: 1,
            read_requests,
            read_registrations,
            read_fallbacks,
            reads,
            read_bytes,
            read_copies,
            read_buffers_registered,
            exposed_regions: l.exposed_regions() as u64,
        }
    }
}

/// One link's published counters.
pub(crate) type LinkSlot = Mutex<RdmaCounters>;

/// The counters of a transport's links: a slot per live link, and what gone links left.
#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<StatsInner>,
}

#[derive(Default)]
struct StatsInner {
    gone: RdmaCounters,
    live: Vec<Weak<LinkSlot>>,
}

impl Stats {
    /// A slot for a new link (counted as live from now on).
    pub fn slot(&self) -> Arc<LinkSlot> {
        let slot = Arc::new(Mutex::new(RdmaCounters {
            live_links: 1,
            ..RdmaCounters::default()
        }));
        let mut g = self.inner.lock();
        g.live.retain(|w| w.strong_count() > 0);
        g.live.push(Arc::downgrade(&slot));
        slot
    }

    /// The link of `slot` is gone: its totals move to the past, its gauges vanish. Both under
    /// the one lock [`Stats::sum`] takes, so no sum counts the link twice or not at all.
    pub fn retire(&self, slot: &LinkSlot) {
        let mut g = self.inner.lock();
        let mut s = slot.lock();
        g.gone.add_totals(&s);
        *s = RdmaCounters::default();
    }

    /// Live links' latest snapshots plus the totals of links gone.
    pub fn sum(&self) -> RdmaCounters {
        let g = self.inner.lock();
        let mut r = g.gone.clone();
        for s in g.live.iter().filter_map(Weak::upgrade) {
            r.add(&s.lock());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_links_leave_their_totals_but_not_their_gauges() {
        let stats = Stats::default();
        let a = stats.slot();
        let b = stats.slot();
        assert_eq!(
            stats.sum().live_links,
            2,
            "a new link is live before it publishes"
        );
        let snapshot = |bytes_out, held| RdmaCounters {
            live_links: 1,
            bytes_out,
            recv_buffers_held: held,
            send_buffers_free: 4,
            ..RdmaCounters::default()
        };
        *a.lock() = snapshot(100, 3);
        *b.lock() = snapshot(10, 1);
        let s = stats.sum();
        assert_eq!(
            (s.live_links, s.bytes_out, s.recv_buffers_held),
            (2, 110, 4)
        );
        assert_eq!(s.send_buffers_free, 8);

        stats.retire(&a);
        let s = stats.sum();
        assert_eq!(
            (s.live_links, s.bytes_out, s.recv_buffers_held),
            (1, 110, 1)
        );
        assert_eq!(s.send_buffers_free, 4);
        // The slot object may outlive the retirement (a lingering link): it counts nothing.
        drop(b);
        let s = stats.sum();
        assert_eq!(
            (s.live_links, s.bytes_out),
            (0, 100),
            "a dropped slot is not counted"
        );
        drop(a);
        assert_eq!(stats.sum().bytes_out, 100);
    }

    #[test]
    fn add_totals_skips_exactly_the_gauges() {
        let all_ones = RdmaCounters {
            send_buffers_in_use: 1,
            send_buffers_free: 1,
            recv_buffers_held: 1,
            credit_stalls: 1,
            links_waiting_for_credits: 1,
            credit_messages: 1,
            completions_with_error: 1,
            rnr_events: 1,
            bytes_out: 1,
            bytes_in: 1,
            data_sends: 1,
            data_recvs: 1,
            live_links: 1,
            read_requests: 1,
            read_registrations: 1,
            read_fallbacks: 1,
            reads: 1,
            read_bytes: 1,
            read_copies: 1,
            read_buffers_registered: 1,
            exposed_regions: 1,
        };
        let mut t = RdmaCounters::default();
        t.add_totals(&all_ones);
        assert_eq!(t.live_links + t.exposed_regions + t.recv_buffers_held, 0);
        assert_eq!(t.send_buffers_in_use + t.send_buffers_free, 0);
        assert_eq!(t.links_waiting_for_credits, 0);
        assert_eq!(
            (t.credit_stalls, t.bytes_in, t.read_buffers_registered),
            (1, 1, 1)
        );
    }
}
