//! A reactor thread of an [`crate::RdmaMessenger`]: one mio poll over its links' completion
//! channels and a waker for commands (and, on reactor 0, the rdma_cm event channel); session
//! timers in a small list. It drives each link's session exactly as the TCP worker drives a
//! socket's: completions in, bytes to the session, session output into the link, events to the
//! dispatcher.
//!
//! Reactor 0 runs connection management: it dials, accepts and hands each established link to
//! its owner (`Shared::owner`, round-robin by token) with `Cmd::Adopt`, and forwards rdma_cm
//! DISCONNECTED events. Everything about a link happens on its owner; connections move between
//! reactors only as their links do (a connection is driven wherever its current link lives).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use msgr_core::node::{attach_accepted, Accepting, Attached};
use msgr_core::session::{ConnectRequest, Session, SessionError, SessionState};
use msgr_core::wire::{EntityAddr, EntityType};

use crate::conn::{Followup, RdmaConnection, ACCESS};
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::link::Link;
use crate::messenger::{Cmd, RdmaCounters, Shared};

const WAKER: Token = Token(0);
const CM: Token = Token(1);
/// While busy-polling, epoll is asked once in this many rounds.
const EPOLL_EVERY: u32 = 32;
/// Rounds of commands queued by this thread's own dispatchers carried out before the reactor
/// polls again (a bound, so a dispatcher that always sends cannot starve the others).
const LOCAL_ROUNDS: usize = 4;

struct Slot {
    link: Link,
    conn: Arc<RdmaConnection>,
    rbuf: BytesMut,
    armed: Option<Instant>,
}

enum Timer {
    Link { token: u64, at: Instant },
    Reconnect(Arc<RdmaConnection>),
}

pub(crate) struct Reactor {
    shared: Arc<Shared>,
    /// Which reactor this is (index into `Shared::ports`).
    index: usize,
    poll: Poll,
    /// Reactor 0 only: rdma_cm.
    ep: Option<Endpoint>,
    links: HashMap<u64, Slot>,
    dials: HashMap<u64, Arc<RdmaConnection>>,
    /// Links the session gave up: disconnected, dropped on DISCONNECTED or after a grace time.
    closing: HashMap<u64, (Link, Instant)>,
    timers: Vec<(Instant, Timer)>,
    chunks: Vec<Bytes>,
    /// Counters of links already gone.
    past: RdmaCounters,
    stopping: bool,
    busy_until: Option<Instant>,
    /// xorshift state for `inject_qp_failures`.
    fault_rng: u64,
}

impl Reactor {
    pub fn new(
        shared: Arc<Shared>,
        index: usize,
        ep: Option<Endpoint>,
    ) -> std::io::Result<Reactor> {
        let fault_rng =
            0x9e37_79b9_7f4a_7c15 ^ u64::from(shared.my_addr().nonce) ^ (index as u64) << 32;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let _ = shared.ports[index].waker.set(waker);
        if let Some(ep) = &ep {
            poll.registry()
                .register(&mut SourceFd(&ep.fd()), CM, Interest::READABLE)?;
        }
        Ok(Reactor {
            shared,
            index,
            poll,
            ep,
            links: HashMap::new(),
            dials: HashMap::new(),
            closing: HashMap::new(),
            timers: Vec::new(),
            chunks: Vec::new(),
            past: RdmaCounters::default(),
            stopping: false,
            busy_until: None,
            fault_rng,
        })
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut cmds = Vec::new();
        let poll_us = self.shared.cfg.rdma.poll_us;
        let mut spins: u32 = 0;
        self.shared.enter_reactor(self.index);
        loop {
            let now = Instant::now();
            let busy = self.busy_until.is_some_and(|b| b > now);
            // While busy-polling, the CQs are polled directly below and commands are checked
            // with one lock; epoll (rdma_cm events, channel fds) is asked only every
            // EPOLL_EVERY rounds, since each round's epoll_wait is a system call.
            spins = if busy { spins.wrapping_add(1) } else { 0 };
            let polled = !busy || spins.is_multiple_of(EPOLL_EVERY);
            if polled {
                let next_timer = self.timers.iter().map(|(t, _)| *t).min();
                let mut timeout = next_timer.map(|t| t.saturating_duration_since(now));
                if busy || self.shared.has_cmds(self.index) {
                    timeout = Some(Duration::ZERO);
                }
                if let Err(e) = self.poll.poll(&mut events, timeout) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        tracing::error!(target: "msgr_rdma", "poll failed: {e}");
                        break;
                    }
                }
            }
            let mut ready: Vec<u64> = Vec::new();
            let mut had_events = false;
            if polled {
                for ev in events.iter() {
                    had_events = true;
                    match ev.token() {
                        WAKER => {}
                        CM => self.cm_events(),
                        Token(t) => {
                            let t = t as u64;
                            if let Some(slot) = self.links.get_mut(&t) {
                                let _ = if busy {
                                    slot.link.on_readable_unarmed()
                                } else {
                                    slot.link.on_readable()
                                };
                                ready.push(t);
                            }
                        }
                    }
                }
            }
            if self.busy_until.is_some() {
                // busy-poll: look at every CQ without waiting for the channel
                for (t, slot) in self.links.iter_mut() {
                    if slot.link.poll_completions().unwrap_or(0) > 0 {
                        ready.push(*t);
                    }
                }
            }
            let mut active = self.run_cmds(&mut cmds, &mut ready);
            active |= !ready.is_empty();
            if !active && !had_events && self.busy_until.is_some() {
                // An empty busy-poll round: give the CPU away for a moment. Where the "device"
                // is the CPU (Soft-RoCE: the kernel's rxe tasks move the packets and write the
                // completions) or the peer shares the core, spinning without yielding starves
                // exactly the work being waited for; on an idle core the yield returns at once.
                std::thread::yield_now();
            }
            self.drive_all(&mut ready);
            // Dispatchers ran in those drives and may have queued sends from this thread:
            // carry them out now, so a reply leaves without another trip through epoll.
            for _ in 0..LOCAL_ROUNDS {
                if !self.shared.has_cmds(self.index) {
                    break;
                }
                self.run_cmds(&mut cmds, &mut ready);
                self.drive_all(&mut ready);
            }
            self.fire_timers();
            self.reap_closing();
            if poll_us > 0 && active {
                self.busy_until = Some(Instant::now() + Duration::from_micros(poll_us));
            } else if self.busy_until.is_some_and(|b| b <= Instant::now()) {
                self.busy_until = None;
                // About to sleep on the channels: every CQ must raise an event again. What
                // arrived before the re-arm is drained here, and keeps the reactor busy.
                let mut late = Vec::new();
                for (t, slot) in self.links.iter_mut() {
                    if !slot.link.is_armed() && slot.link.arm().unwrap_or(0) > 0 {
                        late.push(*t);
                    }
                }
                if !late.is_empty() {
                    self.busy_until = Some(Instant::now() + Duration::from_micros(poll_us));
                    self.drive_all(&mut late);
                }
            }
            if !busy || active {
                // Not on every empty busy-poll round: the snapshot takes a lock and walks
                // every link.
                self.publish_counters();
            }
            if self.stopping {
                self.finish();
                return;
            }
        }
    }

    /// Carry out the queued commands; links to drive go to `ready`. Returns whether there
    /// were any.
    fn run_cmds(&mut self, cmds: &mut Vec<Cmd>, ready: &mut Vec<u64>) -> bool {
        self.shared.take_cmds(self.index, cmds);
        let any = !cmds.is_empty();
        for c in cmds.drain(..) {
            match c {
                Cmd::Dial(conn) => self.dial(conn),
                Cmd::Drive(t) => ready.push(t),
                Cmd::Close(t) => self.close_link(t),
                Cmd::Dispatch(conn) => conn.run_dispatch(),
                Cmd::Loopback => {
                    if let Some(lb) = self.shared.loopback.get() {
                        lb.deliver_pending(&self.shared.dispatchers);
                    }
                }
                Cmd::FaultQp(t) => {
                    if let Some(slot) = self.links.get_mut(&t) {
                        let _ = slot.link.force_error();
                        ready.push(t);
                    }
                }
                Cmd::Adopt {
                    token,
                    link,
                    conn,
                    outgoing,
                } => self.attach(token, link, conn, outgoing),
                Cmd::Disconnected(t) => self.disconnected(t),
                Cmd::Shutdown => self.stopping = true,
            }
        }
        any
    }

    /// Drive each link in `ready` once (duplicates dropped); empties `ready`.
    fn drive_all(&mut self, ready: &mut Vec<u64>) {
        ready.sort_unstable();
        ready.dedup();
        for t in ready.drain(..) {
            self.drive(t);
        }
    }

    fn cm_events(&mut self) {
        let mut out = Vec::new();
        let stopping = self.stopping;
        let Some(ep) = self.ep.as_mut() else {
            return;
        };
        // The application's accept hook runs on the msgr1 handshake (it needs the peer's entity
        // address); at the rdma_cm level only a stopping messenger refuses.
        if let Err(e) = ep.process(&mut |_, _| !stopping, &mut out) {
            tracing::error!(target: "msgr_rdma", "rdma_cm events: {e}");
        }
        for ev in out {
            match ev {
                EndpointEvent::Established {
                    token,
                    link,
                    outgoing,
                    peer,
                    ..
                } => {
                    if outgoing {
                        match self.dials.remove(&token) {
                            Some(conn) => self.hand_over(token, link, conn, true),
                            None => drop(link),
                        }
                    } else {
                        let now = Instant::now();
                        let session = Session::accept(self.shared.session_cfg(), peer, now);
                        let addr = EntityAddr {
                            kind: 0,
                            nonce: 0,
                            addr: Some(peer),
                        };
                        let conn = RdmaConnection::new(
                            &self.shared,
                            session,
                            addr,
                            EntityType::CLIENT,
                            false,
                        );
                        self.hand_over(token, link, conn, false);
                    }
                }
                EndpointEvent::ConnectFailed { token, error } => {
                    if let Some(conn) = self.dials.remove(&token) {
                        tracing::debug!(target: "msgr_rdma", conn = conn.id, "connect failed: {error}");
                        let now = Instant::now();
                        let follow = {
                            let mut g = conn.core.inner.lock();
                            // the dial is over: a reconnect timer may be armed again
                            g.reconnect_pending = false;
                            g.ever_linked = true;
                            g.session.link_up(now);
                            g.session
                                .link_down(SessionError::LinkFailed(error.to_string()), now);
                            conn.absorb_events(&mut g)
                        };
                        self.after(&conn, follow, None);
                    }
                }
                EndpointEvent::Disconnected { token } => {
                    if self.shared.owner(token) == self.index {
                        self.disconnected(token);
                    } else {
                        self.shared.send(Cmd::Disconnected(token));
                    }
                }
                EndpointEvent::Refused { peer, reason } => {
                    tracing::debug!(target: "msgr_rdma", %peer, "refused RDMA connection: {reason}");
                }
            }
        }
    }

    /// rdma_cm reported the link `token` (ours) disconnected.
    fn disconnected(&mut self, token: u64) {
        if let Some(slot) = self.links.get(&token) {
            let conn = slot.conn.clone();
            self.fail(
                &conn,
                token,
                SessionError::LinkFailed("RDMA peer disconnected (rdma_cm DISCONNECTED)".into()),
            );
        }
        self.closing.remove(&token);
    }

    /// An established link goes to its owner (this reactor, or another by `Cmd::Adopt`).
    fn hand_over(
        &mut self,
        token: u64,
        link: Box<Link>,
        conn: Arc<RdmaConnection>,
        outgoing: bool,
    ) {
        if self.shared.owner(token) == self.index {
            self.attach(token, link, conn, outgoing);
        } else {
            self.shared.send(Cmd::Adopt {
                token,
                link,
                conn,
                outgoing,
            });
        }
    }

    fn attach(&mut self, token: u64, link: Box<Link>, conn: Arc<RdmaConnection>, outgoing: bool) {
        let now = Instant::now();
        tracing::debug!(target: "msgr_rdma", conn = conn.id, token, outgoing, "link established");
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&link.fd()),
            Token(token as usize),
            Interest::READABLE,
        ) {
            tracing::warn!(target: "msgr_rdma", "cannot poll a completion channel: {e}");
            return;
        }
        let follow = {
            let mut g = conn.core.inner.lock();
            if outgoing {
                g.reconnect_pending = false;
                if g.ever_linked {
                    conn.core.counters.add_reconnects(1);
                    conn.core
                        .counters
                        .add_replayed(g.session.pending_messages() as u64);
                }
            }
            g.ever_linked = true;
            g.link = Some(token);
            g.session.link_up(now);
            conn.absorb_events(&mut g)
        };
        self.links.insert(
            token,
            Slot {
                link: *link,
                conn: conn.clone(),
                rbuf: BytesMut::with_capacity(64 * 1024),
                armed: None,
            },
        );
        self.after(&conn, follow, Some(token));
        self.drive(token);
    }

    fn dial(&mut self, conn: Arc<RdmaConnection>) {
        let Some(ep) = self.ep.as_mut() else {
            // rdma_cm is reactor 0's
            self.shared.send(Cmd::Dial(conn));
            return;
        };
        let now = Instant::now();
        let mut g = conn.core.inner.lock();
        if conn.is_closed() || g.link.is_some() || self.stopping {
            g.reconnect_pending = false;
            return;
        }
        if g.ever_linked && !g.session.wants_reconnect() {
            g.reconnect_pending = false;
            return;
        }
        let Some(addr) = conn_peer(&conn) else { return };
        tracing::debug!(target: "msgr_rdma", conn = conn.id, %addr, "dialing");
        match ep.connect(addr) {
            Ok(token) => {
                g.reconnect_pending = true;
                drop(g);
                self.dials.insert(token, conn);
            }
            Err(e) => {
                g.ever_linked = true;
                g.reconnect_pending = false;
                g.session.link_up(now);
                g.session
                    .link_down(SessionError::LinkFailed(e.to_string()), now);
                let follow = conn.absorb_events(&mut g);
                drop(g);
                self.after(&conn, follow, None);
            }
        }
    }

    fn close_link(&mut self, token: u64) {
        if self.shared.owner(token) != self.index {
            self.shared.send(Cmd::Close(token));
            return;
        }
        if let Some(mut slot) = self.links.remove(&token) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&slot.link.fd()));
            let _ = slot.link.flush();
            slot.link.disconnect();
            self.past_add(&slot.link);
            self.closing
                .insert(token, (slot.link, Instant::now() + Duration::from_secs(2)));
        }
    }

    fn reap_closing(&mut self) {
        let now = Instant::now();
        self.closing.retain(|_, (_, until)| *until > now);
    }

    fn after(&mut self, conn: &Arc<RdmaConnection>, f: Followup, token: Option<u64>) {
        if let Some(d) = f.reconnect_after {
            self.timers
                .push((Instant::now() + d, Timer::Reconnect(conn.clone())));
        }
        if f.unregister {
            self.shared.registry.unregister(conn);
        }
        conn.run_dispatch();
        if let (Some(req), Some(token)) = (f.accept, token) {
            self.resolve(token, conn.clone(), req);
        }
    }

    /// Fault injection: true on about one call in `inject_qp_failures`.
    fn inject_now(&mut self) -> bool {
        let n = self.shared.cfg.inject_qp_failures;
        if n == 0 {
            return false;
        }
        self.fault_rng ^= self.fault_rng << 13;
        self.fault_rng ^= self.fault_rng >> 7;
        self.fault_rng ^= self.fault_rng << 17;
        self.fault_rng % n == n - 1
    }

    fn drive(&mut self, token: u64) {
        if self.links.contains_key(&token) && self.inject_now() {
            if let Some(slot) = self.links.get_mut(&token) {
                tracing::debug!(target: "msgr_rdma", token, "injecting a QP error");
                let _ = slot.link.force_error();
                let _ = slot.link.poll_completions();
            }
        }
        let Some(mut slot) = self.links.remove(&token) else {
            return;
        };
        let now = Instant::now();
        let conn = slot.conn.clone();
        conn.drive_pending
            .store(false, std::sync::atomic::Ordering::Release);
        let mut g = conn.core.inner.lock();
        if g.link != Some(token) {
            drop(g);
            self.links.insert(token, slot);
            self.close_link(token);
            return;
        }
        // A paused connection (throttle full) leaves its receive buffers with the link: they
        // are not re-posted, so the peer runs out of credits. A READ payload ends a read (see
        // `Link::read_into`): decode, then go on.
        let mut dead = false;
        let mut got_total = 0;
        let mut first = true;
        loop {
            // Within a message body, read just up to its end: after a spliced READ payload
            // that is the footer, which fits the buffer's spare room (more could make it grow,
            // copying the payload).
            let wanted = g.session.input_wanted();
            let max = if wanted > slot.rbuf.len() {
                wanted - slot.rbuf.len()
            } else {
                usize::MAX
            };
            let got = if conn.is_paused() {
                0
            } else {
                slot.link.read_into(&mut slot.rbuf, max).unwrap_or_default()
            };
            got_total += got;
            if got > 0 || (first && !slot.rbuf.is_empty()) {
                if let Err(e) = g.session.handle_input(&mut slot.rbuf, now) {
                    tracing::debug!(target: "msgr_rdma", conn = conn.id, token, "closing link on input error: {e}");
                    dead = true;
                    break;
                }
            }
            first = false;
            if got == 0 || !slot.link.has_input() {
                break;
            }
        }
        conn.core.counters.add_bytes_in(got_total as u64);
        if !dead {
            if let Some(f) = slot.link.failure() {
                if g.session.state() != SessionState::Closed {
                    g.session
                        .link_down(SessionError::LinkFailed(f.0.clone()), now);
                }
                dead = true;
            }
        }
        if !dead && g.session.poll_timeout().is_some_and(|t| t <= now) {
            g.session.handle_timeout(now);
        }
        let before = slot.link.counters.bytes_out + slot.link.queued_bytes() as u64;
        let before_out = slot.link.counters.bytes_out;
        if !dead || g.session.has_link() {
            while g.session.poll_transmit(&mut self.chunks) > 0 {
                for c in self.chunks.drain(..) {
                    slot.link.queue(c);
                }
            }
        }
        let (wanted, deadline) = g.keep_link(dead);
        let follow = conn.absorb_events(&mut g);
        drop(g);
        let flushed = slot.link.flush();
        let after = slot.link.counters.bytes_out + slot.link.queued_bytes() as u64;
        conn.core
            .counters
            .add_bytes_out(after.saturating_sub(before));
        conn.note_written(slot.link.counters.bytes_out - before_out);
        if wanted && flushed.is_ok() {
            if let Some(d) = deadline {
                if slot.armed.is_none_or(|a| a > d) {
                    slot.armed = Some(d);
                    self.timers.push((d, Timer::Link { token, at: d }));
                }
            }
            self.links.insert(token, slot);
        } else {
            self.links.insert(token, slot);
            self.close_link(token);
        }
        self.after(&conn, follow, Some(token));
        if let Err(e) = flushed {
            self.fail(&conn, token, SessionError::LinkFailed(e.to_string()));
        }
    }

    fn fail(&mut self, conn: &Arc<RdmaConnection>, token: u64, e: SessionError) {
        let now = Instant::now();
        let follow = {
            let mut g = conn.core.inner.lock();
            if g.link != Some(token) {
                drop(g);
                self.close_link(token);
                return;
            }
            g.link = None;
            if g.session.state() != SessionState::Closed {
                g.session.link_down(e, now);
            }
            conn.absorb_events(&mut g)
        };
        self.close_link(token);
        self.after(conn, follow, None);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].0 <= now {
                due.push(self.timers.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        for t in due {
            match t {
                Timer::Link { token, at } => {
                    if let Some(slot) = self.links.get_mut(&token) {
                        if slot.armed == Some(at) {
                            slot.armed = None;
                            self.drive(token);
                        }
                    }
                }
                Timer::Reconnect(conn) => {
                    tracing::debug!(target: "msgr_rdma", conn = conn.id, "reconnect timer");
                    if self.ep.is_some() {
                        conn.core.inner.lock().reconnect_pending = false;
                        self.dial(conn);
                    } else {
                        // Reactor 0 dials; the connection stays "reconnect pending" meanwhile,
                        // so a send does not queue a second dial.
                        self.shared.send(Cmd::Dial(conn));
                    }
                }
            }
        }
    }

    /// Answer an accepting session's connect (see `msgr_core::node::attach`).
    fn resolve(&mut self, token: u64, temp: Arc<RdmaConnection>, req: ConnectRequest) {
        let s = self.shared.clone();
        let policy = s.policy_for(req.peer_type);
        let acc = Accepting {
            req: &req,
            hook_allows: !self.stopping
                && s.dispatchers.verify_accept(&req.peer_addr, req.peer_type),
            my_addr: s.my_addr(),
            policy: &policy,
            now: Instant::now(),
        };
        let is_current = |l: Option<u64>| l == Some(token);
        let Some(Attached {
            decision,
            owner,
            old_link,
            lossy_replaced,
        }) = attach_accepted(&ACCESS, &s.registry, &s.throttles, &temp, is_current, acc)
        else {
            return;
        };
        tracing::debug!(target: "msgr_rdma", peer = ?req.peer_addr, ?decision, "accept resolved");
        if !Arc::ptr_eq(&owner, &temp) {
            if let Some(slot) = self.links.get_mut(&token) {
                slot.conn = owner.clone();
            }
        }
        if let Some(ol) = old_link {
            self.close_link(ol);
        }
        if let Some((ex, follow)) = lossy_replaced {
            self.after(&ex, follow, None);
        }
        self.drive(token);
    }

    fn past_add(&mut self, link: &Link) {
        add_link_totals(&mut self.past, &link.counters);
    }

    fn publish_counters(&mut self) {
        let mut r = self.past.clone();
        for slot in self.links.values() {
            let l = &slot.link;
            r.send_buffers_in_use += l.sends_in_flight() as u64;
            r.send_buffers_free += l.send_buffers_free() as u64;
            r.recv_buffers_held += l.recv_buffers_held() as u64;
            r.links_waiting_for_credits += l.is_stalled() as u64;
            r.exposed_regions += l.exposed_regions() as u64;
            r.live_links += 1;
            add_link_totals(&mut r, &l.counters);
        }
        *self.shared.ports[self.index].counters.lock() = r;
    }

    /// Shutdown: fail every connection with a link, disconnect, drop the QPs.
    fn finish(&mut self) {
        let tokens: Vec<u64> = self.links.keys().copied().collect();
        for t in tokens {
            if let Some(slot) = self.links.get(&t) {
                let conn = slot.conn.clone();
                let _ = conn.mark_down_now();
                conn.run_dispatch();
            }
            self.close_link(t);
        }
        self.publish_counters();
        self.closing.clear();
    }
}

/// Add a link's running totals to the messenger's (for live links and for links gone).
fn add_link_totals(r: &mut RdmaCounters, c: &crate::link::LinkCounters) {
    // Destructured, so a new link counter cannot be forgotten here.
    let crate::link::LinkCounters {
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
    } = c;
    r.credit_stalls += credit_stalls;
    r.credit_messages += credit_sends;
    r.completions_with_error += wc_errors;
    r.rnr_events += rnr_errors;
    r.bytes_out += bytes_out;
    r.bytes_in += bytes_in;
    r.data_sends += data_sends;
    r.data_recvs += data_recvs;
    r.read_requests += read_requests;
    r.read_registrations += read_registrations;
    r.read_fallbacks += read_fallbacks;
    r.reads += reads;
    r.read_bytes += read_bytes;
    r.read_copies += read_copies;
    r.read_buffers_registered += read_buffers_registered;
}

fn conn_peer(conn: &RdmaConnection) -> Option<std::net::SocketAddr> {
    conn.peer_addr_now().addr
}
