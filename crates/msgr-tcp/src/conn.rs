//! [`TcpConnection`]: the `Connection` an application holds for one peer address.
//!
//! It owns the peer's [`Session`] (under `inner`) and outlives the sockets ("links") the session
//! runs on: a lossless reconnect, or a peer reconnecting to us, attaches a new link to the same
//! `TcpConnection`, so handles the application keeps stay valid.
//!
//! Events the session emits are moved into an ordered inbox and handed to the dispatcher by
//! [`TcpConnection::run_dispatch`], outside every lock, on a worker thread. A message is admitted
//! to the dispatcher only when its policy throttle has budget; otherwise the connection is
//! `paused` (its worker stops reading from the peer) until budget is released.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use msgr_core::api::{Connection, ConnectionCounters, ConnectionRef, MessengerError};
use msgr_core::message::Message;
use msgr_core::node::counters::CounterPair;
use msgr_core::node::{Backoff, Inbox, PolicyThrottle};
use msgr_core::policy::Policy;
use msgr_core::session::{ConnectRequest, Session, SessionError, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

use crate::messenger::{Cmd, Shared};

/// Where a connection's current socket lives: which worker, its token there, and a generation
/// number unique over the messenger's life (so a stale socket is never mistaken for the current).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkRef {
    pub worker: usize,
    pub token: usize,
    pub gen: u64,
}

/// State guarded by the connection's lock.
pub(crate) struct ConnInner {
    pub session: Session,
    pub peer_type: EntityType,
    pub link: Option<LinkRef>,
    pub backoff: Backoff,
    /// A dial is queued or a reconnect timer is armed.
    pub reconnect_pending: bool,
    /// The application knows this connection (we dialed it, or its accept was resolved);
    /// events of unannounced connections (hostile or replaced links) are not dispatched.
    pub announced: bool,
    /// A link was up before (the next one is a reconnect).
    pub ever_linked: bool,
}

/// What the worker must do after events were absorbed under the lock.
#[derive(Debug, Default)]
pub(crate) struct Followup {
    pub accept: Option<ConnectRequest>,
    pub reconnect_after: Option<Duration>,
    pub unregister: bool,
    /// A Faulted or Reset event was seen (its error was counted).
    pub failure_seen: bool,
}

/// A peer connection over TCP. See the module docs.
pub struct TcpConnection {
    pub(crate) id: u64,
    me: Weak<TcpConnection>,
    pub(crate) shared: Arc<Shared>,
    peer_addr: Mutex<EntityAddr>,
    pub(crate) inner: Mutex<ConnInner>,
    /// Signalled when queued bytes were written (send_message_timeout waits on it).
    space: Condvar,
    inbox: Inbox,
    throttle: OnceLock<Option<Arc<PolicyThrottle>>>,
    pub(crate) flush_pending: AtomicBool,
    queued_bytes: AtomicU64,
    connected: AtomicBool,
    closed: AtomicBool,
    features: AtomicU64,
    peer_name: Mutex<Option<EntityName>>,
    pub(crate) counters: CounterPair,
}

impl std::fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnection")
            .field("id", &self.id)
            .field("peer", &*self.peer_addr.lock())
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl TcpConnection {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        session: Session,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        announced: bool,
    ) -> Arc<Self> {
        let cfg = &shared.cfg;
        Arc::new_cyclic(|me| TcpConnection {
            id: shared.next_id(),
            me: me.clone(),
            shared: shared.clone(),
            peer_addr: Mutex::new(peer_addr),
            inner: Mutex::new(ConnInner {
                session,
                peer_type,
                link: None,
                backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max),
                reconnect_pending: false,
                announced,
                ever_linked: false,
            }),
            space: Condvar::new(),
            inbox: Inbox::new(),
            throttle: OnceLock::new(),
            flush_pending: AtomicBool::new(false),
            queued_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            features: AtomicU64::new(0),
            peer_name: Mutex::new(None),
            counters: CounterPair::new(shared.counters.clone()),
        })
    }

    pub(crate) fn arc(&self) -> Arc<TcpConnection> {
        self.me.upgrade().expect("connection used after drop")
    }

    /// The peer's identity is known (accept resolved): set address, type and throttle.
    pub(crate) fn set_peer(&self, addr: EntityAddr, peer_type: EntityType, policy: &Policy) {
        *self.peer_addr.lock() = addr;
        let _ = self
            .throttle
            .set(self.shared.throttles.for_peer(peer_type, policy));
    }

    pub(crate) fn init_throttle(&self, peer_type: EntityType, policy: &Policy) {
        let _ = self
            .throttle
            .set(self.shared.throttles.for_peer(peer_type, policy));
    }

    fn throttle(&self) -> Option<&Arc<PolicyThrottle>> {
        self.throttle.get().and_then(|t| t.as_ref())
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.inbox.is_paused()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.space.notify_all();
    }

    /// Bytes accepted by `send_message` were written to a socket.
    pub(crate) fn note_written(&self, n: u64) {
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
        self.space.notify_all();
    }

    /// Move the session's events to the inbox and note what the driver must do. Called with the
    /// lock held, right after any session call.
    pub(crate) fn absorb_events(&self, g: &mut MutexGuard<'_, ConnInner>) -> Followup {
        let mut f = Followup::default();
        let total = &self.shared.counters;
        while let Some(ev) = g.session.poll_event() {
            let deliver = match &ev {
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
                    tracing::debug!(conn = self.id, peer = ?peer_name, "link open");
                    g.announced
                }
                SessionEvent::AcceptRequest(req) => {
                    f.accept = Some(req.clone());
                    false
                }
                SessionEvent::Message(m) => {
                    let _ = m;
                    self.counters.add_messages_in(1);
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
                    tracing::debug!(conn = self.id, %error, will_reconnect, "link fault");
                    if *will_reconnect && !g.reconnect_pending && !self.is_closed() {
                        g.reconnect_pending = true;
                        f.reconnect_after = Some(g.backoff.next_delay());
                    }
                    g.announced
                }
                SessionEvent::Reset { error, undelivered } => {
                    f.failure_seen = true;
                    self.note_down();
                    total.count_error(error);
                    tracing::debug!(conn = self.id, %error, undelivered = undelivered.len(), "session reset");
                    self.mark_closed();
                    f.unregister = true;
                    g.announced
                }
                SessionEvent::RemoteReset { .. } => g.announced,
                // The driver closes a link when the session no longer has one (`has_link`).
                SessionEvent::CloseLink | SessionEvent::Replaced | SessionEvent::LearnedAddr(_) => {
                    false
                }
            };
            if deliver {
                self.inbox.push(ev);
            }
        }
        f
    }

    fn note_down(&self) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.shared
                .counters
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Throttle budget came back: let the worker read and dispatch again.
    fn resume(&self) {
        self.inbox.resume();
        let worker = self
            .inner
            .lock()
            .link
            .map(|l| l.worker)
            .unwrap_or(self.home_worker());
        self.shared.send(worker, Cmd::Dispatch(self.arc()));
    }

    pub(crate) fn home_worker(&self) -> usize {
        (self.id as usize) % self.shared.cfg.workers.max(1)
    }

    /// Hand inbox events to the dispatcher, in order, one thread at a time; stops (paused) when a
    /// message finds its throttle full. Call on a worker thread.
    pub(crate) fn run_dispatch(&self) {
        let conn_ref: ConnectionRef = self.arc();
        self.inbox.drain(
            &conn_ref,
            &self.shared.dispatchers,
            self.throttle().map(|t| &**t),
            &self.counters,
            || {
                let me = self.arc();
                move || me.resume()
            },
        );
    }

    /// Drop the session (local mark-down or shutdown): undelivered messages are reported through
    /// `ms_handle_reset` by a worker. Returns the link that must be closed, if any.
    pub(crate) fn mark_down_now(&self) -> Option<LinkRef> {
        let mut g = self.inner.lock();
        if self.is_closed() {
            return g.link.take();
        }
        g.session.mark_down();
        let link = g.link.take();
        let _ = self.absorb_events(&mut g);
        self.mark_closed();
        self.note_down();
        link
    }

    /// Queue under the lock; returns what to do after unlocking.
    fn queue_message(
        &self,
        msg: Message,
        allow_wait: Option<Instant>,
    ) -> Result<(), MessengerError> {
        let len = msg.payload_len() as u64;
        let limit = self.shared.cfg.send_queue_bytes;
        let mut g = self.inner.lock();
        loop {
            if self.is_closed() {
                return Err(self.closed_error());
            }
            let queued = self.queued_bytes.load(Ordering::Acquire);
            if queued == 0 || queued.saturating_add(len) <= limit {
                break;
            }
            match allow_wait {
                None => {
                    return Err(MessengerError::QueueFull {
                        peer: self.peer_string(),
                        queued_bytes: queued,
                        limit,
                    })
                }
                Some(deadline) => {
                    if self.space.wait_until(&mut g, deadline).timed_out() {
                        return Err(MessengerError::SendTimeout(
                            deadline.saturating_duration_since(Instant::now()),
                        ));
                    }
                }
            }
        }
        self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.counters.add_messages_out(1);
        g.session.send_message(msg);
        let link = g.link;
        let dial =
            link.is_none() && !g.reconnect_pending && g.ever_linked && g.session.wants_reconnect();
        if dial {
            g.reconnect_pending = true;
        }
        drop(g);
        if let Some(l) = link {
            self.request_flush(l);
        } else if dial {
            self.shared.send(self.home_worker(), Cmd::Dial(self.arc()));
        }
        Ok(())
    }

    /// Ask the link's worker to write; at most one request per batch of sends.
    pub(crate) fn request_flush(&self, l: LinkRef) {
        if !self.flush_pending.swap(true, Ordering::AcqRel) {
            self.shared.send(
                l.worker,
                Cmd::Drive {
                    token: l.token,
                    gen: l.gen,
                },
            );
        }
    }

    fn closed_error(&self) -> MessengerError {
        if self.shared.is_stopping() {
            return MessengerError::ShutDown;
        }
        MessengerError::ConnectionClosed {
            peer: self.peer_string(),
            reason: "the session was reset or marked down".into(),
        }
    }

    fn peer_string(&self) -> String {
        let a = *self.peer_addr.lock();
        match a.addr {
            Some(s) => format!("{s}/{}", a.nonce),
            None => format!("-/{}", a.nonce),
        }
    }

    /// Like `send_message`, but when the send queue is full wait up to `timeout` for room
    /// instead of returning `QueueFull`; `SendTimeout` if none came.
    pub fn send_message_timeout(
        &self,
        msg: Message,
        timeout: Duration,
    ) -> Result<(), MessengerError> {
        let deadline = Instant::now() + timeout;
        self.queue_message(msg, Some(deadline))
            .map_err(|e| match e {
                MessengerError::SendTimeout(_) => MessengerError::SendTimeout(timeout),
                e => e,
            })
    }

    /// Payload bytes accepted by `send_message` and not yet written to a socket.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Acquire)
    }
}

impl Connection for TcpConnection {
    fn peer_addr(&self) -> EntityAddr {
        *self.peer_addr.lock()
    }
    fn peer_type(&self) -> EntityType {
        self.inner.lock().peer_type
    }
    fn peer_name(&self) -> Option<EntityName> {
        *self.peer_name.lock()
    }
    fn features(&self) -> u64 {
        self.features.load(Ordering::Relaxed)
    }
    /// Returns `QueueFull` at once when `send_queue_bytes` are already queued (see the crate
    /// docs); use [`TcpConnection::send_message_timeout`] to wait for room instead.
    fn send_message(&self, msg: Message) -> Result<(), MessengerError> {
        self.queue_message(msg, None)
    }
    fn send_keepalive(&self) -> Result<(), MessengerError> {
        let mut g = self.inner.lock();
        if self.is_closed() {
            return Err(self.closed_error());
        }
        g.session.send_keepalive(Instant::now());
        let link = g.link;
        drop(g);
        if let Some(l) = link {
            self.request_flush(l);
        }
        Ok(())
    }
    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
    fn mark_down(&self) {
        let addr = self.peer_addr();
        let me = self.arc();
        self.shared
            .registry
            .remove_if(&addr, |c| Arc::ptr_eq(c, &me));
        let link = self.mark_down_now();
        if let Some(l) = link {
            self.shared.send(
                l.worker,
                Cmd::Close {
                    token: l.token,
                    gen: l.gen,
                },
            );
        }
        self.shared.send(self.home_worker(), Cmd::Dispatch(me));
    }
    fn counters(&self) -> ConnectionCounters {
        self.counters.conn.snapshot()
    }
    fn release(&self, msg_len: usize) {
        if let Some(t) = self.throttle() {
            t.release(msg_len as u64);
        }
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        if self.connected.load(Ordering::Acquire) {
            self.shared
                .counters
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Lock two connections in id order (never the same one twice).
pub(crate) fn lock_pair<'a>(
    a: &'a TcpConnection,
    b: Option<&'a TcpConnection>,
) -> (MutexGuard<'a, ConnInner>, Option<MutexGuard<'a, ConnInner>>) {
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

/// Errors from the socket, as the session sees them.
pub(crate) fn link_error(what: &str, e: &std::io::Error) -> SessionError {
    SessionError::LinkFailed(format!("{what}: {e}"))
}
