//! One reactor thread: a `mio::Poll`, the links (sockets) it owns, its timers and its command
//! queue. See the crate docs for who does what.
//!
//! Per link, one "drive" step: read what the socket has (unless the connection is paused by its
//! throttle) into the link's reusable buffer, hand it to the session, fire the session's timer
//! if due, collect chunks to write, absorb events, then write with one vectored write and hand
//! events to the dispatcher, all outside the connection lock except the session calls.

use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use msgr_core::api::Connection;
use msgr_core::node::{attach_accepted, Accepting, Attached};
use msgr_core::session::{ConnectRequest, Session, SessionError, SessionState};
use msgr_core::wire::{EntityAddr, EntityType};

use crate::conn::{link_error, Followup, LinkRef, TcpConnection, ACCESS};
use crate::fault::FaultInjector;
use crate::messenger::{set_current_worker, Cmd, Shared};
use crate::timer::TimerHeap;

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);
/// Receive allocations adapt between these: small for request/response traffic and idle
/// links, large for streams.
const MIN_READ: usize = 4 << 10;
const MAX_READ: usize = 1 << 20;
/// From this read size on, reads go into fresh uninitialised memory through std's
/// `read_to_end` (no zeroing; see [`read_large`]); below it, into zeroed spare space.
const LARGE_READ: usize = 64 << 10;
/// Bytes read from one link before others get a turn.
const READ_BUDGET: usize = 1 << 20;
/// Bytes collected from a session for writing before the socket is written.
const WRITE_BATCH: usize = 4 << 20;
/// Large receive buffers a link keeps watching for reuse (see [`read_large`]): enough for
/// `MAX_READ`-sized buffers to cover what a busy peer keeps referenced (a few MiB).
const RECYCLE: usize = 8;
/// Large reads in a row that find under an eighth of their room before the read size halves.
const SHRINK_AFTER: u8 = 16;
/// Chunks per vectored write.
const MAX_IOV: usize = 64;
/// Queued chunks totalling at most this many bytes are copied into one write.
const COALESCE_MAX: usize = 8 << 10;

enum Timer {
    /// The session's own deadline (`armed` tells whether it is still current).
    Link { token: usize, gen: u64, at: Instant },
    /// A lossless connection wants to dial again.
    Reconnect(Arc<TcpConnection>),
}

/// A socket and what the worker keeps for it.
struct Link {
    sock: TcpStream,
    /// The same socket as a std stream (a duplicated descriptor), for large reads: std's
    /// `read_to_end` reads a std socket into a `Vec`'s spare capacity without zeroing it.
    std_sock: std::net::TcpStream,
    conn: Arc<TcpConnection>,
    gen: u64,
    /// Received bytes not yet consumed by the session.
    rbuf: BytesMut,
    /// Zeroed space right after `rbuf` in the same allocation: reads land here and are joined
    /// to `rbuf` without a copy; each byte is zeroed once (safe Rust cannot read into
    /// uninitialised memory).
    spare: BytesMut,
    /// Size of the next receive allocation: grows while reads fill it, shrinks while large
    /// reads find little.
    read_size: usize,
    /// Large receive buffers handed to the session, oldest first, each as an empty handle at
    /// the end of its allocation: once the messages sliced from one are all dropped the handle
    /// is its only owner and the allocation is read into again (already paged in: no page
    /// faults, no trip through the allocator).
    recycle: VecDeque<BytesMut>,
    /// Large reads in a row that found little (see [`read_large`]).
    small_bursts: u8,
    /// What the session said it needs in `rbuf` to complete the message body it is receiving
    /// (0: no body in progress); see [`read_body`].
    body_wanted: usize,
    wq: VecDeque<Bytes>,
    wq_bytes: usize,
    armed: Option<Instant>,
    /// The poller reported the peer's end closed: read until EOF.
    peer_closed: bool,
}

enum ReadEnd {
    /// The socket has nothing more now.
    Drained,
    /// Budget spent; more may be waiting.
    More,
    Failed(SessionError),
}

pub(crate) struct Worker {
    idx: usize,
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    links: HashMap<usize, Link>,
    next_token: usize,
    timers: TimerHeap<Timer>,
    faults: FaultInjector,
    /// Links to drive again without waiting for an event (read budget spent, resumed).
    ready: Vec<usize>,
    chunks: Vec<Bytes>,
    /// Reused buffer for coalescing small writes.
    scratch: Vec<u8>,
    accept_rr: usize,
    /// Set by shutdown: flush until then, then fail what is left.
    stop_at: Option<Instant>,
    /// Last time the poller reported something (for busy polling).
    last_active: Instant,
}

impl Worker {
    pub fn new(
        idx: usize,
        shared: Arc<Shared>,
        mut listener: Option<TcpListener>,
    ) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        let seed = shared.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (idx as u64 + 1);
        let faults = FaultInjector::new(shared.cfg.inject_socket_failures, seed);
        Ok(Worker {
            idx,
            shared,
            poll,
            listener,
            links: HashMap::new(),
            next_token: 0,
            timers: TimerHeap::default(),
            faults,
            ready: Vec::new(),
            chunks: Vec::new(),
            scratch: Vec::with_capacity(COALESCE_MAX),
            accept_rr: 0,
            stop_at: None,
            last_active: Instant::now(),
        })
    }

    pub fn idx(&self) -> usize {
        self.idx
    }

    pub fn waker(&self) -> std::io::Result<Waker> {
        Waker::new(self.poll.registry(), WAKER)
    }

    pub fn run(mut self) {
        set_current_worker(self.shared.id, self.idx);
        let mut events = Events::with_capacity(256);
        let mut cmds = Vec::new();
        loop {
            loop {
                self.shared.workers.get().expect("workers set before run")[self.idx]
                    .take(&mut cmds);
                if cmds.is_empty() {
                    break;
                }
                for c in cmds.drain(..) {
                    self.command(c);
                }
            }
            for token in std::mem::take(&mut self.ready) {
                self.drive(token, true);
            }
            if self.stop_at.is_some() && self.stop_done() {
                break;
            }
            let now = Instant::now();
            let mut timeout = self
                .timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if !self.ready.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            if self.stop_at.is_some() {
                timeout = Some(timeout.map_or(Duration::from_millis(5), |t| {
                    t.min(Duration::from_millis(5))
                }));
            }
            // Busy-poll for a while after activity: a reply that comes back within
            // `busy_poll` is picked up without sleeping and being woken (latency for CPU).
            let busy = self.shared.cfg.busy_poll;
            if !busy.is_zero() && now.saturating_duration_since(self.last_active) < busy {
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed; worker stops");
                    break;
                }
            }
            if !events.is_empty() {
                self.last_active = Instant::now();
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept_all(),
                    Token(t) => {
                        if ev.is_read_closed() || ev.is_error() {
                            if let Some(l) = self.links.get_mut(&t) {
                                l.peer_closed = true;
                            }
                        }
                        self.drive(t, ev.is_readable() || ev.is_read_closed() || ev.is_error())
                    }
                }
            }
            let now = Instant::now();
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
                }
            }
        }
        self.finish();
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Adopt(sock) => self.adopt(sock),
            Cmd::Dial(conn) => self.dial(conn),
            Cmd::Drive { token, gen } => {
                // Only a flush: reading happens on readiness events (or after a resume).
                if self.links.get(&token).is_some_and(|l| l.gen == gen) {
                    self.drive(token, false);
                }
            }
            Cmd::Close { token, gen } => self.close_link(token, gen),
            Cmd::Dispatch(conn) => {
                conn.run_dispatch();
                if !conn.is_paused() {
                    let link = conn.core.inner.lock().link;
                    if let Some(l) = link.filter(|l| l.worker == self.idx) {
                        if self.links.get(&l.token).is_some_and(|x| x.gen == l.gen) {
                            self.drive(l.token, true);
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
                if let Some(mut l) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                self.stop_at = Some(Instant::now() + self.shared.cfg.shutdown_flush);
            }
        }
    }

    fn alloc_token(&mut self) -> usize {
        loop {
            let t = self.next_token;
            self.next_token = (self.next_token + 1) % (usize::MAX - 2);
            if !self.links.contains_key(&t) {
                return t;
            }
        }
    }

    fn tune(&self, sock: &TcpStream) {
        let cfg = &self.shared.cfg;
        if let Err(e) = sock.set_nodelay(cfg.nodelay) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let s = socket2::SockRef::from(sock);
        if let Some(n) = cfg.send_buffer {
            let _ = s.set_send_buffer_size(n);
        }
        if let Some(n) = cfg.recv_buffer {
            let _ = s.set_recv_buffer_size(n);
        }
    }

    /// Register a socket and attach it to `conn` (whose lock the caller holds).
    fn attach(
        &mut self,
        mut sock: TcpStream,
        conn: &Arc<TcpConnection>,
    ) -> std::io::Result<LinkRef> {
        self.tune(&sock);
        let std_sock = std::net::TcpStream::from(sock.as_fd().try_clone_to_owned()?);
        let token = self.alloc_token();
        self.poll.registry().register(
            &mut sock,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let gen = self.shared.next_id();
        self.links.insert(
            token,
            Link {
                sock,
                std_sock,
                conn: conn.clone(),
                gen,
                rbuf: BytesMut::new(),
                spare: BytesMut::new(),
                read_size: MIN_READ,
                recycle: VecDeque::new(),
                small_bursts: 0,
                body_wanted: 0,
                wq: VecDeque::new(),
                wq_bytes: 0,
                armed: None,
                peer_closed: false,
            },
        );
        Ok(LinkRef {
            worker: self.idx,
            token,
            gen,
        })
    }

    fn accept_all(&mut self) {
        let n = self.shared.workers.get().map_or(1, |w| w.len());
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => {
                    tracing::debug!(%peer, "accepted a socket");
                    let target = self.accept_rr % n;
                    self.accept_rr += 1;
                    if target == self.idx {
                        self.adopt(sock);
                    } else {
                        self.shared.send(target, Cmd::Adopt(sock));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn adopt(&mut self, sock: TcpStream) {
        if self.stop_at.is_some() {
            return;
        }
        let Ok(peer) = sock.peer_addr() else { return };
        let now = Instant::now();
        let s = self.shared.clone();
        let session = Session::accept(s.session_cfg(), peer, now);
        let addr = EntityAddr {
            kind: 0,
            nonce: 0,
            addr: Some(peer),
        };
        let conn = TcpConnection::new(&s, session, addr, EntityType::CLIENT, false);
        let link = match self.attach(sock, &conn) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register an accepted socket");
                return;
            }
        };
        let follow = {
            let mut g = conn.core.inner.lock();
            g.link = Some(link);
            g.ever_linked = true;
            g.session.link_up(now);
            conn.absorb_events(&mut g)
        };
        self.after(&conn, follow, Some(link.token));
        self.drive(link.token, true);
    }

    fn dial(&mut self, conn: Arc<TcpConnection>) {
        let now = Instant::now();
        let mut g = conn.core.inner.lock();
        g.reconnect_pending = false;
        if conn.is_closed() || g.link.is_some() || self.stop_at.is_some() {
            return;
        }
        if g.ever_linked && !g.session.wants_reconnect() {
            return;
        }
        let Some(addr) = conn.peer_addr().addr else {
            return;
        };
        let result = TcpStream::connect(addr).and_then(|sock| self.attach(sock, &conn));
        let first = !g.ever_linked;
        g.ever_linked = true;
        match result {
            Ok(link) => {
                if !first {
                    conn.core.counters.add_reconnects(1);
                    conn.core
                        .counters
                        .add_replayed(g.session.pending_messages() as u64);
                }
                g.link = Some(link);
                g.session.link_up(now);
                let follow = conn.absorb_events(&mut g);
                drop(g);
                self.after(&conn, follow, Some(link.token));
                self.drive(link.token, false);
            }
            Err(e) => {
                tracing::debug!(conn = conn.id, %addr, error = %e, "connect failed");
                g.session.link_up(now);
                g.session.link_down(link_error("connect", &e), now);
                let follow = conn.absorb_events(&mut g);
                drop(g);
                self.after(&conn, follow, None);
            }
        }
    }

    fn close_link(&mut self, token: usize, gen: u64) {
        if self.links.get(&token).is_some_and(|l| l.gen == gen) {
            self.remove_link(token);
        }
    }

    fn remove_link(&mut self, token: usize) {
        if let Some(mut l) = self.links.remove(&token) {
            let _ = self.poll.registry().deregister(&mut l.sock);
            let _ = l.sock.shutdown(Shutdown::Both);
        }
    }

    /// What every path does after absorbing events: timers, registry, dispatch, accept.
    fn after(&mut self, conn: &Arc<TcpConnection>, f: Followup, token: Option<usize>) {
        if let Some(d) = f.reconnect_after {
            self.timers
                .push(Instant::now() + d, Timer::Reconnect(conn.clone()));
        }
        if f.unregister {
            self.shared.registry.unregister(conn);
        }
        conn.run_dispatch();
        if let (Some(req), Some(token)) = (f.accept, token) {
            self.resolve(token, conn.clone(), req);
        }
    }

    /// One step for a link; see the module docs.
    fn drive(&mut self, token: usize, read: bool) {
        let Some(mut link) = self.links.remove(&token) else {
            return;
        };
        let now = Instant::now();
        let conn = link.conn.clone();
        let this = LinkRef {
            worker: self.idx,
            token,
            gen: link.gen,
        };

        let mut got = 0;
        let mut io_err = None;
        if read && !conn.is_paused() {
            let (n, end) = read_link(&mut link, &mut self.faults);
            got = n;
            conn.core.counters.add_bytes_in(n as u64);
            match end {
                ReadEnd::Drained => {}
                ReadEnd::More => self.ready.push(token),
                ReadEnd::Failed(e) => io_err = Some(e),
            }
        }

        let mut g = conn.core.inner.lock();
        if g.link.map(|l| l.gen) != Some(link.gen) {
            // Replaced or marked down meanwhile: this socket is no longer the session's.
            drop(g);
            self.links.insert(token, link);
            self.remove_link(token);
            return;
        }
        conn.flush_pending
            .store(false, std::sync::atomic::Ordering::Release);
        let mut input_err = None;
        if got > 0 {
            if let Err(e) = g.session.handle_input(&mut link.rbuf, now) {
                input_err = Some(e);
            }
            link.body_wanted = g.session.input_wanted();
        }
        let mut dead = input_err.is_some();
        if !dead {
            if let Some(e) = io_err.take() {
                if g.session.state() != SessionState::Closed {
                    g.session.link_down(e, now);
                }
                dead = true;
            }
        }
        if !dead && g.session.poll_timeout().is_some_and(|t| t <= now) {
            g.session.handle_timeout(now);
        }
        if !dead {
            // Take no more than a batch: while the socket cannot keep up, messages wait in the
            // session's queue, where `send_queue_bytes` applies back-pressure to senders.
            while link.wq_bytes < WRITE_BATCH {
                let n = g.session.poll_transmit(&mut self.chunks);
                for c in self.chunks.drain(..) {
                    link.wq_bytes += c.len();
                    link.wq.push_back(c);
                }
                if n == 0 {
                    break;
                }
            }
        }
        // The session may be done with this link (CloseLink: closed, told to wait, faulted
        // itself); what it handed out above is still written once before the socket closes.
        let (wanted, deadline) = g.keep_link(dead);
        let follow = conn.absorb_events(&mut g);
        drop(g);
        if let Some(e) = &input_err {
            if !follow.failure_seen {
                self.shared.counters.count_error(e);
            }
            tracing::debug!(conn = conn.id, error = %e, "closing link on input error");
        }

        let mut write_err = None;
        if !link.wq.is_empty() && (!dead || input_err.is_some()) {
            match write_link(&mut link, &mut self.faults, &mut self.scratch) {
                Ok(n) => {
                    if n > 0 {
                        conn.core.counters.add_bytes_out(n as u64);
                        conn.note_written(n as u64);
                    }
                }
                Err(e) => write_err = Some(e),
            }
        }

        if wanted && write_err.is_none() {
            if let Some(d) = deadline {
                if link.armed.is_none_or_later(d) {
                    link.armed = Some(d);
                    self.timers.push(
                        d,
                        Timer::Link {
                            token,
                            gen: link.gen,
                            at: d,
                        },
                    );
                }
            }
            self.links.insert(token, link);
        } else {
            let gen = link.gen;
            self.links.insert(token, link);
            self.close_link(token, gen);
        }

        match write_err {
            None => self.after(&conn, follow, Some(token)),
            Some(e) => {
                // The link is dead: a pending accept is moot; report what happened so far,
                // then the failure.
                let follow = Followup {
                    accept: None,
                    ..follow
                };
                self.after(&conn, follow, Some(token));
                self.fail(&conn, Some(this), e);
            }
        }
    }

    /// A write failed after the session step: tell the session its link is gone.
    fn fail(&mut self, conn: &Arc<TcpConnection>, link: Option<LinkRef>, e: SessionError) {
        let now = Instant::now();
        let follow = {
            let mut g = conn.core.inner.lock();
            if g.link != link || link.is_none() {
                return;
            }
            g.link = None;
            if g.session.state() != SessionState::Closed {
                g.session.link_down(e, now);
            }
            conn.absorb_events(&mut g)
        };
        if let Some(l) = link {
            self.close_link(l.token, l.gen);
        }
        self.after(conn, follow, None);
    }

    /// Answer an accepting session's connect (see `msgr_core::node::attach`).
    fn resolve(&mut self, token: usize, temp: Arc<TcpConnection>, req: ConnectRequest) {
        let s = self.shared.clone();
        let policy = s.policy_for(req.peer_type);
        let acc = Accepting {
            req: &req,
            hook_allows: self.stop_at.is_none()
                && s.dispatchers.verify_accept(&req.peer_addr, req.peer_type),
            my_addr: s.my_addr(),
            policy: &policy,
            now: Instant::now(),
        };
        let is_current = |l: Option<LinkRef>| l.map(|l| l.token) == Some(token);
        let Some(Attached {
            decision,
            owner,
            old_link,
            lossy_replaced,
        }) = attach_accepted(&ACCESS, &s.registry, &s.throttles, &temp, is_current, acc)
        else {
            return;
        };
        tracing::debug!(peer = ?req.peer_addr, ?decision, "accept resolved");
        if !Arc::ptr_eq(&owner, &temp) {
            // The existing connection took the link over; the temporary one is done.
            temp.mark_closed();
            if let Some(l) = self.links.get_mut(&token) {
                l.conn = owner.clone();
            }
        }
        if let Some(ol) = old_link {
            if ol.worker == self.idx {
                self.close_link(ol.token, ol.gen);
            } else {
                s.send(
                    ol.worker,
                    Cmd::Close {
                        token: ol.token,
                        gen: ol.gen,
                    },
                );
            }
        }
        if let Some((ex, follow)) = lossy_replaced {
            self.after(&ex, follow, None);
        }
        self.drive(token, false);
    }

    /// During shutdown: true once every link has written everything and had it acknowledged,
    /// or the flush time is over; then fails what is left.
    fn stop_done(&mut self) -> bool {
        let Some(deadline) = self.stop_at else {
            return false;
        };
        let flushed = self
            .links
            .values()
            .all(|l| l.wq.is_empty() && l.conn.core.inner.lock().session.pending_messages() == 0);
        flushed || Instant::now() >= deadline
    }

    /// Fail every connection this worker still serves and close its sockets.
    fn finish(&mut self) {
        let tokens: Vec<usize> = self.links.keys().copied().collect();
        for token in tokens {
            let Some(l) = self.links.get(&token) else {
                continue;
            };
            let conn = l.conn.clone();
            self.shared.registry.unregister(&conn);
            let _ = conn.mark_down_now();
            self.remove_link(token);
            conn.run_dispatch();
        }
    }
}

trait ArmedExt {
    fn is_none_or_later(&self, d: Instant) -> bool;
}

impl ArmedExt for Option<Instant> {
    fn is_none_or_later(&self, d: Instant) -> bool {
        match self {
            None => true,
            Some(a) => d < *a,
        }
    }
}

/// Make room to read: when the spare space is nearly used up, move the unconsumed bytes into a
/// fresh allocation with `read_size` (or, for a large message being assembled, as much again)
/// zeroed bytes after them.
fn ensure_spare(link: &mut Link) {
    if link.spare.len() >= MIN_READ {
        return;
    }
    let keep = link.rbuf.len();
    let size = link.read_size.max(keep);
    let mut buf = BytesMut::with_capacity(keep + size);
    buf.extend_from_slice(&link.rbuf);
    buf.resize(keep + size, 0);
    link.spare = buf.split_off(keep);
    link.rbuf = buf;
}

/// One large read burst: the unconsumed bytes and up to about `read_size` new ones go into a
/// `Vec` (recycled when one is free, see [`large_buffer`]), read through the std socket's
/// `read_to_end`, which fills spare capacity without zeroing it first (std reads sockets into
/// uninitialised memory; safe code cannot). Costs one copy of the unconsumed tail (a partial
/// frame) per burst instead of zeroing every byte, and a few more `recv` calls (std starts each
/// `read_to_end` at 8 KiB and doubles). The `Vec` becomes `rbuf` without a copy; its unused
/// capacity is where the decoder's reservation for the rest of a partial frame lands.
fn read_large(link: &mut Link) -> (usize, ReadEnd) {
    let keep = link.rbuf.len();
    let mut v = large_buffer(&mut link.recycle, keep, link.read_size);
    let limit = v.capacity() - keep;
    v.extend_from_slice(&link.rbuf);
    let result = (&link.std_sock).take(limit as u64).read_to_end(&mut v);
    let n = v.len() - keep;
    link.spare = BytesMut::new();
    // Both conversions keep the allocation (and its spare capacity): the Vec is unique.
    let mut rbuf = BytesMut::from(Bytes::from(v));
    let end_handle = rbuf.split_off(rbuf.capacity());
    link.recycle.push_back(end_handle);
    link.rbuf = rbuf;
    let end = match result {
        // The limit was reached: more may be waiting, and larger reads would pay.
        Ok(_) if n == limit => {
            link.read_size = (limit * 2).min(MAX_READ);
            ReadEnd::More
        }
        Ok(_) => ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
        Err(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => {
                if n < limit / 8 {
                    link.small_bursts += 1;
                } else {
                    link.small_bursts = 0;
                }
                if link.small_bursts >= SHRINK_AFTER {
                    // The stream has become little traffic: smaller allocations (and, below
                    // LARGE_READ, back to zeroed reads, which stop at the first short read).
                    link.small_bursts = 0;
                    link.read_size = (link.read_size / 2).max(MIN_READ);
                    if link.read_size < LARGE_READ {
                        link.recycle.clear();
                    }
                }
                ReadEnd::Drained
            }
            _ => ReadEnd::Failed(link_error("read", &e)),
        },
    };
    (n, end)
}

/// The rest of a large message body: `rbuf` becomes a `Vec` with room for the whole body, read
/// through the std socket's `read_to_end` (no zeroing, as in [`read_large`]), and goes back
/// to the session as the same allocation. The first burst of a body copies what was received
/// of it once (or, if nothing else references the allocation, nothing); later bursts find
/// `rbuf` unique and unshared (the session takes nothing from it until the body is complete),
/// so the conversions copy nothing. At most `MAX_READ` bytes per call: one large message does
/// not keep the worker from other links.
fn read_body(link: &mut Link) -> (usize, ReadEnd) {
    let keep = link.rbuf.len();
    let missing = link.body_wanted - keep;
    let mut v: Vec<u8> = std::mem::take(&mut link.rbuf).into();
    // The decoder has usually reserved exactly the body already: reading up to its end and no
    // further costs nothing (the next burst starts a fresh buffer), whereas asking for more
    // room here would reallocate and copy the partial body (up to a whole message) again.
    // Only when the body does not fit, grow once, with room for the start of what follows.
    if v.capacity() - keep < missing {
        v.reserve(missing + MIN_READ);
    }
    let limit = (v.capacity() - keep).min(MAX_READ);
    let result = (&link.std_sock).take(limit as u64).read_to_end(&mut v);
    let n = v.len() - keep;
    link.spare = BytesMut::new();
    link.rbuf = BytesMut::from(Bytes::from(v));
    let end = match result {
        Ok(_) if n == limit => ReadEnd::More,
        Ok(_) => ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
        Err(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => ReadEnd::Drained,
            _ => ReadEnd::Failed(link_error("read", &e)),
        },
    };
    (n, end)
}

/// A buffer with room for `keep` bytes and about `size` more: the oldest recycled allocation
/// that nothing references any more and is big enough, else a new one. When `RECYCLE`
/// buffers are all still in use, the oldest is given up on (freed when its messages go).
fn large_buffer(recycle: &mut VecDeque<BytesMut>, keep: usize, size: usize) -> Vec<u8> {
    let need = keep + size / 2;
    // `try_reclaim` is true only for a handle that is its allocation's sole owner (every
    // message sliced from it was dropped) and big enough; for others it is one atomic load.
    if let Some(i) = recycle.iter_mut().position(|h| h.try_reclaim(need)) {
        let v: Vec<u8> = recycle.remove(i).expect("position is in range").into();
        if v.capacity() >= need {
            tracing::trace!(capacity = v.capacity(), "receive buffer reused");
            return v;
        }
    } else if recycle.len() >= RECYCLE {
        recycle.pop_front();
    }
    Vec::with_capacity(keep + size)
}

/// Read until the socket is drained or the budget is spent. Returns bytes read and why it
/// stopped.
fn read_link(link: &mut Link, faults: &mut FaultInjector) -> (usize, ReadEnd) {
    let mut total = 0;
    loop {
        if faults.fire() {
            let _ = link.sock.shutdown(Shutdown::Both);
            return (
                total,
                ReadEnd::Failed(SessionError::LinkFailed(
                    "injected socket failure on read".into(),
                )),
            );
        }
        if link.body_wanted >= LARGE_READ && link.body_wanted > link.rbuf.len() {
            // The rest of a large message, however little: straight into the buffer that will
            // hold it (the paths below would copy the whole partial body to a new buffer).
            let (n, end) = read_body(link);
            return (total + n, end);
        }
        if link.read_size >= LARGE_READ && link.rbuf.len() <= link.read_size / 2 {
            // One burst per drive: the session consumes it before the next burst, which would
            // otherwise copy it again as "unconsumed". Each burst here copies the unconsumed
            // bytes once, so a large partial frame whose size is not known yet takes the
            // zeroed path below, whose allocations double with it.
            let (n, end) = read_large(link);
            return (total + n, end);
        }
        ensure_spare(link);
        let want = link.spare.len();
        match link.sock.read(&mut link.spare[..]) {
            Ok(0) => {
                return (
                    total,
                    ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
                );
            }
            Ok(n) => {
                // Contiguous with `rbuf`: joining is O(1).
                let got = link.spare.split_to(n);
                link.rbuf.unsplit(got);
                total += n;
                if n == want {
                    link.read_size = (link.read_size * 2).min(MAX_READ);
                } else if !link.peer_closed {
                    // A short read emptied the socket's receive queue; anything arriving later
                    // raises a new readiness event (saves one EAGAIN read per wake-up). When
                    // the peer also closed, read on to see the end of the stream.
                    return (total, ReadEnd::Drained);
                }
                if total >= READ_BUDGET {
                    return (total, ReadEnd::More);
                }
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => {
                    return (total, ReadEnd::Drained)
                }
                std::io::ErrorKind::Interrupted => continue,
                _ => return (total, ReadEnd::Failed(link_error("read", &e))),
            },
        }
    }
}

/// Write queued chunks with vectored writes until done or the socket would block.
fn write_link(
    link: &mut Link,
    faults: &mut FaultInjector,
    scratch: &mut Vec<u8>,
) -> Result<usize, SessionError> {
    let mut total = 0;
    while !link.wq.is_empty() {
        if faults.fire() {
            let _ = link.sock.shutdown(Shutdown::Both);
            return Err(SessionError::LinkFailed(
                "injected socket failure on write".into(),
            ));
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        let mut bytes = 0;
        for c in link.wq.iter().take(MAX_IOV) {
            iov[n] = IoSlice::new(c);
            n += 1;
            bytes += c.len();
        }
        // Small frames (header, front, footer, ACK ...) are cheaper copied into one buffer than
        // handed to the kernel as many tiny iovecs; payloads go vectored, uncopied.
        let result = if n > 1 && bytes <= COALESCE_MAX {
            scratch.clear();
            for c in &iov[..n] {
                scratch.extend_from_slice(c);
            }
            link.sock.write(scratch)
        } else {
            link.sock.write_vectored(&iov[..n])
        };
        match result {
            Ok(0) => return Err(SessionError::LinkFailed("socket wrote nothing".into())),
            Ok(mut w) => {
                total += w;
                link.wq_bytes -= w;
                while w > 0 {
                    let front = link.wq.front_mut().expect("wrote more than queued");
                    if front.len() <= w {
                        w -= front.len();
                        link.wq.pop_front();
                    } else {
                        front.advance(w);
                        w = 0;
                    }
                }
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => break,
                std::io::ErrorKind::Interrupted => continue,
                _ => return Err(link_error("write", &e)),
            },
        }
    }
    Ok(total)
}
