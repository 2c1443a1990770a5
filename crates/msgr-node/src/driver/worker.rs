//! One worker: a `mio::Poll`, the links it owns, its timers and its command queue. See the
//! crate docs for who does what.
//!
//! A worker runs [`Worker::turn`] in a loop: commands, links ready to drive, the poller (or,
//! while busy-polling, the links themselves), timers. On a thread it blocks in the poller
//! until the next deadline; stepped by hand (simulation) it never blocks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::{Events, Poll, Token, Waker};

use msgr_core::protocol::ProtocolSession;

use crate::connection::NodeConnection;
use crate::driver::fault::FaultInjector;
use crate::driver::timer::TimerHeap;
use crate::port::{set_current, Cmd, Port};
use crate::shared::Shared;
use crate::transport::{Link, Notify, Ready, Registration};

pub(crate) const WAKER: Token = Token(usize::MAX);
/// Transport `i`'s sources are registered under `TRANSPORT_BASE - i` (on worker 0).
pub(crate) const TRANSPORT_BASE: usize = usize::MAX - 1;
/// At most this many transports per node (the token range reserved for them).
pub(crate) const MAX_TRANSPORTS: usize = 16;
/// While busy-polling links that poll themselves, the poller is asked once in this many rounds.
const POLL_EVERY: u32 = 32;
/// Rounds of commands queued by this thread's own dispatchers carried out before the worker
/// polls again (a bound, so a dispatcher that always sends cannot starve the others).
const LOCAL_ROUNDS: usize = 4;

pub(crate) enum Timer {
    /// The session's own deadline (`armed` tells whether it is still current).
    Link { token: usize, gen: u64, at: Instant },
    /// A lossless connection wants to dial again.
    Reconnect(Arc<NodeConnection>),
    /// The deadline of a session left without a link (the end of a WAIT: the peer won the
    /// connect race but may never connect).
    Unlinked(Arc<NodeConnection>),
}

/// A link and what the worker keeps for it.
pub(crate) struct Slot {
    pub link: Box<dyn Link>,
    pub conn: Arc<NodeConnection>,
    pub gen: u64,
    /// Received bytes not yet consumed by the session.
    pub rbuf: BytesMut,
    /// What the session said it needs in `rbuf` for the body it is receiving (0: none).
    pub wanted: usize,
    /// The session timer pushed for this link, if still pending.
    pub armed: Option<Instant>,
}

pub(crate) struct Worker {
    pub idx: usize,
    pub shared: Arc<Shared>,
    pub poll: Poll,
    events: Events,
    pub links: BTreeMap<usize, Slot>,
    next_token: usize,
    pub timers: TimerHeap<Timer>,
    pub faults: FaultInjector,
    /// Links to drive without waiting for an event, and whether to read from them.
    pub ready: Vec<(usize, bool)>,
    pub chunks: Vec<Bytes>,
    /// Closed links kept until their linger time is over.
    pub closing: Vec<(Box<dyn Link>, Instant)>,
    pub accept_rr: usize,
    /// Set by shutdown: flush until then, then fail what is left.
    pub stop_at: Option<Instant>,
    busy_until: Option<Instant>,
    spins: u32,
    cmds: Vec<Cmd>,
}

impl Worker {
    pub fn new(idx: usize, shared: Arc<Shared>) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let seed = shared
            .cfg
            .seed
            .unwrap_or(u64::from(shared.my_addr().nonce) ^ 0x9E37_79B9_7F4A_7C15);
        let faults = FaultInjector::new(
            shared.cfg.inject_failures,
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (idx as u64 + 1),
        );
        Ok(Worker {
            idx,
            shared,
            poll,
            events: Events::with_capacity(256),
            links: BTreeMap::new(),
            next_token: 0,
            timers: TimerHeap::default(),
            faults,
            ready: Vec::new(),
            chunks: Vec::new(),
            closing: Vec::new(),
            accept_rr: 0,
            stop_at: None,
            busy_until: None,
            spins: 0,
            cmds: Vec::new(),
        })
    }

    pub fn waker(&self) -> std::io::Result<Waker> {
        Waker::new(self.poll.registry(), WAKER)
    }

    pub fn port(&self) -> &Arc<Port> {
        &self
            .shared
            .ports
            .get()
            .expect("ports set before workers run")[self.idx]
    }

    pub fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// A registration for `token` on this worker's poller.
    pub fn registration(&self, token: usize) -> Registration<'_> {
        Registration {
            registry: self.poll.registry(),
            token: Token(token),
            notify: Notify::new(self.port().clone(), token),
        }
    }

    /// Register transport `i`'s sources (worker 0, at start).
    pub fn register_transports(&self) -> std::io::Result<()> {
        for (i, t) in self.shared.transports().iter().enumerate() {
            t.register(&self.registration(TRANSPORT_BASE - 1 - i))?;
        }
        Ok(())
    }

    /// The thread body: turns until shutdown is done, then fails what is left.
    pub fn run(mut self) {
        set_current(self.shared.id, self.idx);
        while !self.turn(true) {}
        self.finish();
    }

    /// One round of the event loop. `block`: wait in the poller for the next event or
    /// deadline (a thread); false: look and return (a simulation step). Returns true once a
    /// shutdown is complete (the caller then calls [`Worker::finish`]).
    pub fn turn(&mut self, block: bool) -> bool {
        let mut active = self.run_cmds();
        self.drive_ready();
        if self.stop_at.is_some() && self.stop_done() {
            return true;
        }
        let now = self.now();
        if self.busy_until.is_some_and(|b| b <= now) {
            self.end_busy_window(now);
        }
        let busy = self.busy_until.is_some_and(|b| b > now);
        self.spins = if busy { self.spins.wrapping_add(1) } else { 0 };
        // Links that poll themselves (completion queues) need no poller while busy: it is
        // asked only every POLL_EVERY rounds then, as each round would be a system call.
        let skip_poller = busy
            && !self.spins.is_multiple_of(POLL_EVERY)
            && self.links.values().all(|s| s.link.polls_itself());
        let mut had_events = false;
        if !skip_poller {
            let mut timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if !block || busy || !self.ready.is_empty() || self.port().has_cmds() {
                timeout = Some(Duration::ZERO);
            }
            if self.stop_at.is_some() {
                timeout = Some(timeout.map_or(Duration::from_millis(5), |t| {
                    t.min(Duration::from_millis(5))
                }));
            }
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed; worker stops");
                    return true;
                }
            }
            // Taken out while handling them (handlers need `&mut self`), put back after: no
            // allocation per turn.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for ev in events.iter() {
                had_events = true;
                let ready = Ready {
                    readable: ev.is_readable(),
                    writable: ev.is_writable(),
                    closed: ev.is_read_closed() || ev.is_error(),
                };
                self.event(ev.token().0, Some(ready), busy);
            }
            self.events = events;
        }
        if busy {
            for (t, slot) in self.links.iter_mut() {
                if slot.link.poll() {
                    self.ready.push((*t, true));
                }
            }
        }
        active |= self.run_cmds();
        active |= !self.ready.is_empty();
        if !active && !had_events && busy {
            // An empty busy-poll round: give the CPU away for a moment (where the "device" is
            // the CPU, as Soft-RoCE is, or the peer shares the core, spinning starves exactly
            // the work being waited for; on an idle core the yield returns at once).
            std::thread::yield_now();
        }
        self.drive_ready();
        // Dispatchers ran in those drives and may have queued sends from this thread: carry
        // them out now, so a reply leaves without another trip through the poller.
        for _ in 0..LOCAL_ROUNDS {
            if !self.port().has_cmds() {
                break;
            }
            self.run_cmds();
            self.drive_ready();
        }
        self.fire_timers();
        self.reap_closing();
        self.busy_bookkeeping(active || had_events);
        false
    }

    /// Busy-poll for `busy_poll` after activity.
    fn busy_bookkeeping(&mut self, active: bool) {
        let busy_poll = self.shared.cfg.busy_poll;
        if !busy_poll.is_zero() && active {
            self.busy_until = Some(self.now() + busy_poll);
        }
    }

    /// The busy window is over and the worker is about to block in the poller: re-arm the
    /// links first (while busy they were polled, unarmed), so the next arrival raises an
    /// event. What arrived before the re-arm is driven now, and keeps the worker busy.
    fn end_busy_window(&mut self, now: Instant) {
        self.busy_until = None;
        for (t, slot) in self.links.iter_mut() {
            if slot.link.arm() {
                self.ready.push((*t, true));
            }
        }
        if !self.ready.is_empty() {
            self.busy_until = Some(now + self.shared.cfg.busy_poll);
            self.drive_ready();
        }
    }

    /// A poller event or notify for `token`.
    fn event(&mut self, token: usize, ready: Option<Ready>, busy: bool) {
        if token == WAKER.0 {
            return;
        }
        if token < TRANSPORT_BASE - MAX_TRANSPORTS {
            if let Some(slot) = self.links.get_mut(&token) {
                let r = ready.unwrap_or(Ready {
                    readable: true,
                    ..Ready::default()
                });
                slot.link.on_ready(r, busy);
                // Room to write alone needs no read (a system call that would find nothing).
                self.ready.push((token, r.readable || r.closed));
            }
            return;
        }
        if let Some(i) = (TRANSPORT_BASE - 1).checked_sub(token) {
            self.transport_events(i);
        }
    }

    /// Carry out the queued commands. Returns whether there were any.
    fn run_cmds(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut cmds = std::mem::take(&mut self.cmds);
            self.port().take(&mut cmds);
            if cmds.is_empty() {
                self.cmds = cmds;
                return any;
            }
            any = true;
            for c in cmds.drain(..) {
                self.command(c);
            }
            self.cmds = cmds;
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Adopt {
                link,
                conn,
                outgoing,
            } => self.adopt(link, conn, outgoing),
            Cmd::Dial(conn) => self.dial(conn),
            Cmd::Drive { token, gen } => {
                // Only a flush: reading happens on readiness events (or after a resume).
                if self.links.get(&token).is_some_and(|l| l.gen == gen) {
                    self.ready.push((token, false));
                }
            }
            Cmd::Close { token, gen } => self.close_link(token, gen),
            Cmd::Fault { token, gen } => {
                if let Some(slot) = self.links.get_mut(&token).filter(|s| s.gen == gen) {
                    tracing::debug!(token, "injecting a link failure");
                    slot.link.inject_failure();
                    self.ready.push((token, true));
                }
            }
            Cmd::Ready(key) => self.event(key, None, false),
            Cmd::Dispatch(conn) => {
                conn.run_dispatch();
                if !conn.is_paused() {
                    let link = conn.core.inner.lock().link;
                    if let Some(l) = link.filter(|l| l.worker == self.idx) {
                        if self.links.get(&l.token).is_some_and(|x| x.gen == l.gen) {
                            self.ready.push((l.token, true));
                        }
                    }
                }
            }
            Cmd::Loopback => {
                if let Some(lb) = self.shared.loopback.get() {
                    lb.deliver_pending(&self.shared.dispatchers);
                }
            }
            Cmd::Shutdown => {
                if self.idx == 0 {
                    for t in self.shared.transports() {
                        t.stop();
                    }
                }
                self.stop_at = Some(self.now() + self.shared.cfg.shutdown_flush);
            }
        }
    }

    /// Drive each link in `ready` once (duplicates merged). Links made ready meanwhile (a
    /// spent read budget) wait for the next turn, after the others had theirs.
    fn drive_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_unstable();
        let mut i = 0;
        while i < ready.len() {
            let (token, mut read) = ready[i];
            while i + 1 < ready.len() && ready[i + 1].0 == token {
                i += 1;
                read |= ready[i].1;
            }
            i += 1;
            self.drive(token, read);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Link { token, gen, at } => {
                    let current = self
                        .links
                        .get_mut(&token)
                        .filter(|l| l.gen == gen && l.armed == Some(at));
                    if let Some(l) = current {
                        l.armed = None;
                        self.drive(token, false);
                    }
                }
                Timer::Reconnect(conn) => self.dial(conn),
                Timer::Unlinked(conn) => self.unlinked_timeout(conn),
            }
        }
    }

    fn reap_closing(&mut self) {
        let now = self.now();
        self.closing.retain(|(_, until)| *until > now);
    }

    pub fn alloc_token(&mut self) -> usize {
        loop {
            let t = self.next_token;
            self.next_token = (self.next_token + 1) % (TRANSPORT_BASE - MAX_TRANSPORTS);
            if !self.links.contains_key(&t) {
                return t;
            }
        }
    }

    /// The earliest time this worker wants a turn: a timer, or a closed link to drop.
    pub fn next_deadline(&self) -> Option<Instant> {
        let closing = self.closing.iter().map(|c| c.1).min();
        match (self.timers.next_deadline(), closing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// During shutdown: true once every link has written everything and had it acknowledged,
    /// or the flush time is over.
    fn stop_done(&mut self) -> bool {
        let Some(deadline) = self.stop_at else {
            return false;
        };
        let flushed = self.links.values().all(|l| {
            l.link.queued() == 0 && l.conn.core.inner.lock().session.pending_messages() == 0
        });
        flushed || self.now() >= deadline
    }

    /// Fail every connection this worker still serves and close its links.
    pub fn finish(&mut self) {
        let tokens: Vec<usize> = self.links.keys().copied().collect();
        for token in tokens {
            let Some(l) = self.links.get(&token) else {
                continue;
            };
            let (conn, gen) = (l.conn.clone(), l.gen);
            self.shared.registry.unregister(&conn);
            let _ = conn.mark_down_now();
            self.close_link(token, gen);
            conn.run_dispatch();
        }
        self.closing.clear();
        if self.idx == 0 {
            // Dials still in progress will not be adopted: let the transports forget them
            // (their connections are failed by the node's shutdown).
            let pending: Vec<_> = self.shared.dials.lock().drain().collect();
            let transports = self.shared.transports();
            for (id, p) in pending {
                if let Some(t) = transports.get(p.transport) {
                    t.cancel(id);
                }
            }
        }
    }
}
