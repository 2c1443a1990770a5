//! [`ConnCore`]: the state of one peer connection that needs no I/O.
//!
//! The node's connection type owns one `ConnCore<L>`, where `L` says where the current link
//! lives (a worker and a token there). The core holds the peer's session ([`AnySession`]) and link
//! bookkeeping under one lock ([`LinkState`]), the inbox for the dispatcher, the policy
//! throttle, the send-queue accounting and the counters; the driver adds how a link is driven,
//! flushed, dialed and closed.
//!
//! The rule every method follows: session calls happen under the lock, then
//! [`ConnCore::absorb_events`] moves the session's events out, still under the lock, and says
//! what the driver must do next ([`Followup`]); dispatcher callbacks run only after unlocking.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::node::counters::CounterPair;
use crate::node::{Backoff, Dispatchers, Inbox, PolicyThrottle, Throttles};
use msgr_core::api::{ConnectionCounters, ConnectionRef, MessengerError};
use msgr_core::message::Message;
use msgr_core::policy::Policy;
use msgr_core::protocol::{AnySession, ProtocolSession};
use msgr_core::session::{ConnectRequest, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

/// State guarded by the connection's lock; `L` names the current link.
pub struct LinkState<L> {
    pub session: AnySession,
    pub peer_type: EntityType,
    pub link: Option<L>,
    pub backoff: Backoff,
    /// A dial is queued or in progress, or a reconnect timer is armed.
    pub reconnect_pending: bool,
    /// The application knows this connection (we dialed it, or its accept was resolved);
    /// events of unannounced connections (hostile or replaced links) are not dispatched.
    pub announced: bool,
    /// A link was up before (the next one is a reconnect).
    pub ever_linked: bool,
}

/// What the driver must do after events were absorbed under the lock.
#[derive(Debug, Default)]
pub struct Followup {
    /// The peer asked to connect: resolve the accept (see [`crate::node::registry`]).
    pub accept: Option<ConnectRequest>,
    /// Dial again after this delay (a reconnect was not pending yet).
    pub reconnect_after: Option<Duration>,
    /// The session was reset: remove the connection from the registry.
    pub unregister: bool,
    /// A Faulted or Reset event was seen (its error was counted).
    pub failure_seen: bool,
    /// The session dropped its send queue (remote reset): senders waiting for room may go on.
    pub queue_dropped: bool,
}

/// What a send queued under the lock asks of the driver after unlocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFollowup<L> {
    /// Nothing: no link and no reconnect wanted (or one already pending).
    None,
    /// Drive (write out) the current link.
    Drive(L),
    /// No link, but the session wants one again: dial (`reconnect_pending` is already set).
    Dial,
}

/// How a transport writes its peer address in error messages.
pub type PeerLabel = fn(&EntityAddr) -> String;

/// The transport-independent state of one connection. See the module docs.
pub struct ConnCore<L> {
    /// Unique over the messenger's life; orders locks in [`lock_pair`].
    pub id: u64,
    pub inner: Mutex<LinkState<L>>,
    pub counters: CounterPair,
    peer_addr: Mutex<EntityAddr>,
    peer_label: PeerLabel,
    /// Signalled when queued bytes were written or the connection closed (senders waiting for
    /// room wait on it, with `inner`'s guard).
    space: Condvar,
    inbox: Inbox,
    throttle: OnceLock<Option<Arc<PolicyThrottle>>>,
    /// Payload bytes accepted by `send_message` and not yet handed to the link.
    queued_bytes: AtomicU64,
    connected: AtomicBool,
    closed: AtomicBool,
    features: AtomicU64,
    peer_name: Mutex<Option<EntityName>>,
}

impl<L> LinkState<L> {
    /// No link yet, none ever up, no reconnect pending.
    pub fn new(
        session: AnySession,
        peer_type: EntityType,
        announced: bool,
        backoff: Backoff,
    ) -> Self {
        LinkState {
            session,
            peer_type,
            link: None,
            backoff,
            reconnect_pending: false,
            announced,
            ever_linked: false,
        }
    }

    /// End of a driver step on the current link: keep it only while it is alive (`!dead`) and
    /// the session still has a link. Returns whether it was kept and, if so, when the session
    /// next wants a step on it (its `poll_timeout`).
    pub fn keep_link(&mut self, dead: bool) -> (bool, Option<Instant>) {
        if dead || !self.session.has_link() {
            self.link = None;
            return (false, None);
        }
        (true, self.session.poll_timeout())
    }
}

impl<L: Copy> ConnCore<L> {
    /// A connection in `state`; `counters` bumps this connection's and the messenger's.
    pub fn new(
        id: u64,
        counters: CounterPair,
        peer_addr: EntityAddr,
        peer_label: PeerLabel,
        state: LinkState<L>,
    ) -> Self {
        ConnCore {
            id,
            inner: Mutex::new(state),
            counters,
            peer_addr: Mutex::new(peer_addr),
            peer_label,
            space: Condvar::new(),
            inbox: Inbox::new(),
            throttle: OnceLock::new(),
            queued_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            features: AtomicU64::new(0),
            peer_name: Mutex::new(None),
        }
    }

    pub fn peer_addr(&self) -> EntityAddr {
        *self.peer_addr.lock()
    }

    pub fn set_peer_addr(&self, addr: EntityAddr) {
        *self.peer_addr.lock() = addr;
    }

    /// The peer address as the transport writes it in errors.
    pub fn peer_label(&self) -> String {
        (self.peer_label)(&self.peer_addr())
    }

    pub fn peer_type(&self) -> EntityType {
        self.inner.lock().peer_type
    }

    pub fn peer_name(&self) -> Option<EntityName> {
        *self.peer_name.lock()
    }

    pub fn features(&self) -> u64 {
        self.features.load(Ordering::Relaxed)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn counters_snapshot(&self) -> ConnectionCounters {
        self.counters.conn.snapshot()
    }

    /// Set the policy throttle for this peer type, once (later calls are ignored).
    pub fn init_throttle(&self, throttles: &Throttles, peer_type: EntityType, policy: &Policy) {
        let _ = self.throttle.set(throttles.for_peer(peer_type, policy));
    }

    pub fn throttle(&self) -> Option<&PolicyThrottle> {
        self.throttle.get().and_then(|t| t.as_deref())
    }

    /// The application is done with a message of `msg_len` payload bytes.
    pub fn release(&self, msg_len: usize) {
        if let Some(t) = self.throttle() {
            t.release(msg_len as u64);
        }
    }

    /// A message waits for throttle budget: the driver must not take more from the peer.
    pub fn is_paused(&self) -> bool {
        self.inbox.is_paused()
    }

    /// Throttle budget came back; the transport then runs [`ConnCore::drain`] again.
    pub fn resume(&self) {
        self.inbox.resume();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.space.notify_all();
    }

    /// Payload bytes accepted by `send_message` and not yet handed to the link.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// `n` queued bytes were handed to the link.
    pub fn note_written(&self, n: u64) {
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
        self.space.notify_all();
    }

    /// The link went down: the messenger has one open connection less.
    fn note_down(&self) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.counters
                .total
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Move the session's events to the inbox, bump counters and note what the driver must do.
    /// Call with the lock held, right after any session call. `trace` sees every event first
    /// (the transport logs under its own target).
    pub fn absorb_events(
        &self,
        g: &mut LinkState<L>,
        mut trace: impl FnMut(&SessionEvent),
    ) -> Followup {
        let mut f = Followup::default();
        let total = &self.counters.total;
        // The events go straight into the inbox (a burst of messages moves as one queue when
        // the inbox is empty); those the application must not see are taken out again.
        let mut inbox = self.inbox.events();
        let start = inbox.len();
        g.session.poll_events(&mut inbox);
        let mut not_delivered = Vec::new();
        let mut messages = 0;
        for (i, ev) in inbox.range(start..).enumerate() {
            trace(ev);
            let deliver = match ev {
                SessionEvent::Connected {
                    peer_name,
                    features,
                    ..
                }
                | SessionEvent::Accepted {
                    peer_name,
                    features,
                    ..
                } => {
                    if matches!(ev, SessionEvent::Connected { .. }) {
                        total.connected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        total.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    if !self.connected.swap(true, Ordering::AcqRel) {
                        total.open_connections.fetch_add(1, Ordering::Relaxed);
                    }
                    self.features.store(*features, Ordering::Relaxed);
                    *self.peer_name.lock() = Some(*peer_name);
                    g.backoff.reset();
                    g.announced
                }
                SessionEvent::AcceptRequest(req) => {
                    f.accept = Some(req.clone());
                    false
                }
                SessionEvent::Message(_) => {
                    messages += 1;
                    true
                }
                SessionEvent::KeepaliveAck { .. } => false,
                SessionEvent::Faulted {
                    error,
                    will_reconnect,
                } => {
                    f.failure_seen = true;
                    self.note_down();
                    self.counters.add_faults(1);
                    total.count_error(error);
                    if *will_reconnect && !g.reconnect_pending && !self.is_closed() {
                        g.reconnect_pending = true;
                        f.reconnect_after = Some(g.backoff.next_delay());
                    }
                    g.announced
                }
                SessionEvent::Reset { error, .. } => {
                    f.failure_seen = true;
                    self.note_down();
                    total.count_error(error);
                    self.mark_closed();
                    f.unregister = true;
                    g.announced
                }
                SessionEvent::RemoteReset { .. } => {
                    // The session dropped everything it had queued; those bytes will never be
                    // written, so they no longer count against `send_queue_bytes`.
                    self.queued_bytes.store(0, Ordering::Release);
                    self.space.notify_all();
                    f.queue_dropped = true;
                    g.announced
                }
                // The driver closes a link when the session no longer has one (`has_link`).
                SessionEvent::CloseLink | SessionEvent::Replaced | SessionEvent::LearnedAddr(_) => {
                    false
                }
                // `SessionEvent` is non-exhaustive: an event this driver does not know yet
                // is not the application's.
                _ => false,
            };
            if !deliver {
                not_delivered.push(start + i);
            }
        }
        // Rare events (an accept request, a keepalive ack): removed from the back first, so
        // the indexes still hold.
        for i in not_delivered.into_iter().rev() {
            inbox.remove(i);
        }
        // Counted before the inbox is unlocked: a dispatcher never sees a message the counters
        // do not include yet.
        if messages > 0 {
            self.counters.add_messages_in(messages);
        }
        drop(inbox);
        f
    }

    /// Hand inbox events to the dispatchers (see [`Inbox::drain`]); `waker` makes the callback
    /// that resumes this connection when throttle budget comes back.
    pub fn drain<W>(&self, conn: &ConnectionRef, dispatchers: &Dispatchers, waker: impl Fn() -> W)
    where
        W: FnOnce() + Send + 'static,
    {
        self.inbox
            .drain(conn, dispatchers, self.throttle(), &self.counters, waker);
    }

    /// Drop the session (local mark-down or shutdown); undelivered messages wait in the inbox
    /// for the next drain. Returns the link the driver must close, if any.
    pub fn mark_down_now(&self, trace: impl FnMut(&SessionEvent)) -> Option<L> {
        let mut g = self.inner.lock();
        if self.is_closed() {
            return g.link.take();
        }
        g.session.mark_down();
        let link = g.link.take();
        let _ = self.absorb_events(&mut g, trace);
        self.mark_closed();
        self.note_down();
        link
    }

    /// The error for a send on a closed connection (`stopping`: the messenger shuts down).
    pub fn closed_error(&self, stopping: bool) -> MessengerError {
        if stopping {
            return MessengerError::ShutDown;
        }
        MessengerError::ConnectionClosed {
            peer: self.peer_label(),
            reason: "the session was reset or marked down".into(),
        }
    }

    /// Queue `msg` in the session unless `limit` payload bytes already wait (a message larger
    /// than the limit is accepted into an empty queue). With `wait_until`, wait up to then for
    /// room instead of failing with `QueueFull`. `stopping` is asked only when the connection
    /// is closed.
    pub fn queue_message(
        &self,
        msg: Message,
        limit: u64,
        wait_until: Option<Instant>,
        stopping: impl Fn() -> bool,
    ) -> Result<SendFollowup<L>, MessengerError> {
        let len = msg.payload_len() as u64;
        let mut g = self.inner.lock();
        loop {
            if self.is_closed() {
                return Err(self.closed_error(stopping()));
            }
            let queued = self.queued_bytes.load(Ordering::Acquire);
            if queued == 0 || queued.saturating_add(len) <= limit {
                break;
            }
            let Some(deadline) = wait_until else {
                return Err(MessengerError::QueueFull {
                    peer: self.peer_label(),
                    queued_bytes: queued,
                    limit,
                });
            };
            if self.space.wait_until(&mut g, deadline).timed_out() {
                return Err(MessengerError::SendTimeout(
                    deadline.saturating_duration_since(Instant::now()),
                ));
            }
        }
        Ok(self.push(&mut g, msg))
    }

    /// Async variant of [`ConnCore::queue_message`]: queue `msg.take()` if it fits, else call
    /// `register` (under the lock, before a last look at the queue, so no write is missed) and
    /// return Ok(None) with `msg` left in place.
    pub fn try_queue(
        &self,
        msg: &mut Option<Message>,
        limit: u64,
        register: impl FnOnce(),
        stopping: impl Fn() -> bool,
    ) -> Result<Option<SendFollowup<L>>, MessengerError> {
        let Some(len) = msg.as_ref().map(|m| m.payload_len() as u64) else {
            return Ok(None);
        };
        let mut g = self.inner.lock();
        let fits = |q: u64| q == 0 || q.saturating_add(len) <= limit;
        if !self.is_closed() && !fits(self.queued_bytes.load(Ordering::SeqCst)) {
            register();
            if !self.is_closed() && !fits(self.queued_bytes.load(Ordering::SeqCst)) {
                return Ok(None);
            }
        }
        if self.is_closed() {
            return Err(self.closed_error(stopping()));
        }
        let msg = msg.take().expect("checked above");
        Ok(Some(self.push(&mut g, msg)))
    }

    /// Queue `msg` in the session (room was checked) and say what the driver must do.
    fn push(&self, g: &mut LinkState<L>, msg: Message) -> SendFollowup<L> {
        self.queued_bytes
            .fetch_add(msg.payload_len() as u64, Ordering::AcqRel);
        self.counters.add_messages_out(1);
        g.session.send_message(msg);
        if let Some(l) = g.link {
            return SendFollowup::Drive(l);
        }
        if !g.reconnect_pending && g.ever_linked && g.session.wants_reconnect() {
            g.reconnect_pending = true;
            return SendFollowup::Dial;
        }
        SendFollowup::None
    }

    /// Queue a keepalive stamped `now` (the node's clock); returns the link to drive, if any.
    pub fn queue_keepalive(
        &self,
        now: Instant,
        stopping: impl Fn() -> bool,
    ) -> Result<Option<L>, MessengerError> {
        let mut g = self.inner.lock();
        if self.is_closed() {
            return Err(self.closed_error(stopping()));
        }
        g.session.send_keepalive(now);
        Ok(g.link)
    }
}

impl<L> Drop for ConnCore<L> {
    fn drop(&mut self) {
        if self.connected.load(Ordering::Acquire) {
            self.counters
                .total
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Lock two connections in id order (never the same one twice), so two threads resolving
/// accepts that involve the same pair cannot deadlock.
pub fn lock_pair<'a, L>(
    a: &'a ConnCore<L>,
    b: Option<&'a ConnCore<L>>,
) -> (
    MutexGuard<'a, LinkState<L>>,
    Option<MutexGuard<'a, LinkState<L>>>,
) {
    match b {
        None => (a.inner.lock(), None),
        Some(b) if b.id < a.id => {
            let gb = b.inner.lock();
            (a.inner.lock(), Some(gb))
        }
        Some(b) => {
            let ga = a.inner.lock();
            (ga, Some(b.inner.lock()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::node::MessengerCounterCells;
    use msgr_core::session::SessionConfig;
    use msgr_core::wire::EntityName;

    fn addr(port: u16, nonce: u32) -> EntityAddr {
        EntityAddr::new(SocketAddr::from(([127, 0, 0, 1], port)), nonce)
    }

    fn label(a: &EntityAddr) -> String {
        format!("peer-{}", a.nonce)
    }

    /// A connection dialing `peer` (no link yet), with its messenger's counters.
    fn dialing(id: u64, total: &Arc<MessengerCounterCells>) -> ConnCore<u32> {
        let me = addr(6800, 1);
        let cfg = Arc::new(SessionConfig::new(EntityName::new(EntityType::OSD, 1), me));
        let peer = addr(6801, 7);
        let policy = Policy::lossless_client();
        let session = AnySession::V1(Box::new(msgr_core::session::Session::connect(
            cfg,
            peer,
            EntityType::OSD,
            policy,
            Instant::now(),
        )));
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(8));
        ConnCore::new(
            id,
            CounterPair::new(total.clone()),
            peer,
            label,
            LinkState::new(session, EntityType::OSD, true, backoff),
        )
    }

    fn msg(len: usize) -> Message {
        Message::new(1, vec![0u8; len])
    }

    #[test]
    fn send_queue_limit_counts_unwritten_bytes() {
        let total = Arc::new(MessengerCounterCells::default());
        let c = dialing(1, &total);
        c.inner.lock().link = Some(5);
        // An empty queue takes a message larger than the limit.
        assert!(matches!(
            c.queue_message(msg(100), 10, None, || false),
            Ok(SendFollowup::Drive(5))
        ));
        assert_eq!(c.queued_bytes(), 100);
        match c.queue_message(msg(1), 10, None, || false) {
            Err(MessengerError::QueueFull {
                peer,
                queued_bytes,
                limit,
            }) => assert_eq!((peer.as_str(), queued_bytes, limit), ("peer-7", 100, 10)),
            other => panic!("expected QueueFull, got {other:?}"),
        }
        // A deadline already passed: the wait gives up instead of queueing.
        let late = Instant::now();
        assert!(matches!(
            c.queue_message(msg(1), 10, Some(late), || false),
            Err(MessengerError::SendTimeout(_))
        ));
        c.note_written(100);
        assert_eq!(c.queued_bytes(), 0);
        assert!(matches!(
            c.queue_message(msg(4), 10, None, || false),
            Ok(SendFollowup::Drive(5))
        ));
        assert_eq!(c.counters_snapshot().messages_out, 2);
        assert_eq!(total.snapshot().connections.messages_out, 2);
    }

    #[test]
    fn try_queue_leaves_the_message_and_registers_when_full() {
        let total = Arc::new(MessengerCounterCells::default());
        let c = dialing(1, &total);
        c.inner.lock().link = Some(5);
        let mut registered = 0;
        let mut m = Some(msg(100));
        let r = c.try_queue(&mut m, 10, || registered += 1, || false);
        assert!(matches!(r, Ok(Some(SendFollowup::Drive(5)))));
        assert!(
            m.is_none() && registered == 0,
            "an empty queue takes it at once"
        );
        let mut m = Some(msg(1));
        assert!(matches!(
            c.try_queue(&mut m, 10, || registered += 1, || false),
            Ok(None)
        ));
        assert!(
            m.is_some() && registered == 1,
            "full: kept, waiter registered"
        );
        c.note_written(100);
        let r = c.try_queue(&mut m, 10, || registered += 1, || false);
        assert!(matches!(r, Ok(Some(SendFollowup::Drive(5)))));
        assert!(m.is_none() && registered == 1);
        let _ = c.mark_down_now(|_| {});
        let mut m = Some(msg(1));
        match c.try_queue(&mut m, 10, || registered += 1, || false) {
            Err(MessengerError::ConnectionClosed { peer, .. }) => assert_eq!(peer, "peer-7"),
            other => panic!("expected ConnectionClosed, got {other:?}"),
        }
    }

    #[test]
    fn no_link_means_no_drive_and_no_dial_before_a_first_link() {
        let total = Arc::new(MessengerCounterCells::default());
        let c = dialing(1, &total);
        // Never linked: the transport's own dial is pending, the send only queues.
        assert!(matches!(
            c.queue_message(msg(1), 10, None, || false),
            Ok(SendFollowup::None)
        ));
        let now = Instant::now();
        assert!(matches!(c.queue_keepalive(now, || false), Ok(None)));
    }

    #[test]
    fn mark_down_closes_and_hands_back_the_link() {
        let total = Arc::new(MessengerCounterCells::default());
        let c = dialing(1, &total);
        c.inner.lock().link = Some(9);
        assert!(c.queue_message(msg(3), 10, None, || false).is_ok());
        let mut undelivered = None;
        let link = c.mark_down_now(|ev| {
            if let SessionEvent::Reset { undelivered: u, .. } = ev {
                undelivered = Some(u.len());
            }
        });
        assert_eq!(link, Some(9));
        // The queued message is reported as undelivered (the Reset goes to the dispatcher).
        assert_eq!(undelivered, Some(1));
        assert!(c.is_closed());
        assert_eq!(c.mark_down_now(|_| {}), None);
        match c.queue_message(msg(1), 10, None, || false) {
            Err(MessengerError::ConnectionClosed { peer, .. }) => assert_eq!(peer, "peer-7"),
            other => panic!("expected ConnectionClosed, got {other:?}"),
        }
        assert!(matches!(
            c.queue_keepalive(Instant::now(), || true),
            Err(MessengerError::ShutDown)
        ));
    }

    #[test]
    fn keep_link_follows_the_session() {
        let total = Arc::new(MessengerCounterCells::default());
        let c = dialing(1, &total);
        let mut g = c.inner.lock();
        g.link = Some(3);
        // The session never had this link: the driver must drop it.
        assert_eq!(g.keep_link(false), (false, None));
        assert_eq!(g.link, None);
        g.link = Some(4);
        g.session.link_up(Instant::now());
        let (kept, deadline) = g.keep_link(false);
        // Kept, with the handshake's deadline to wake up for.
        assert!(kept && deadline.is_some());
        assert_eq!(g.link, Some(4));
        // A dead socket or queue pair is dropped whatever the session thinks.
        assert_eq!(g.keep_link(true), (false, None));
        assert_eq!(g.link, None);
    }
}
