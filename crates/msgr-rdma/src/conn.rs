//! [`RdmaConnection`]: the `Connection` an application holds for one peer address.
//!
//! It owns the peer's [`Session`] and outlives the queue pairs ("links") the session runs on: a
//! lossless reconnect, or the peer reconnecting to us, attaches a new link to the same
//! connection. Session events are moved to an ordered inbox and handed to the dispatcher on the
//! reactor thread, outside every lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use msgr_core::api::{Connection, ConnectionCounters, ConnectionRef, MessengerError};
use msgr_core::message::Message;
use msgr_core::node::counters::CounterPair;
use msgr_core::node::{Backoff, Inbox, PolicyThrottle};
use msgr_core::policy::Policy;
use msgr_core::session::{ConnectRequest, Session, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

use crate::messenger::{Cmd, Shared};

/// State under the connection's lock.
pub(crate) struct Inner {
    pub session: Session,
    pub peer_type: EntityType,
    /// rdma_cm token of the current link, if any.
    pub link: Option<u64>,
    pub backoff: Backoff,
    /// A dial is queued, in progress, or a reconnect timer is armed.
    pub reconnect_pending: bool,
    /// The application knows this connection (we dialed it, or its accept was resolved).
    pub announced: bool,
    pub ever_linked: bool,
}

/// What the reactor must do after events were absorbed.
#[derive(Debug, Default)]
pub(crate) struct Followup {
    pub accept: Option<ConnectRequest>,
    pub reconnect_after: Option<Duration>,
    pub unregister: bool,
}

/// A peer connection over RDMA.
pub struct RdmaConnection {
    pub(crate) id: u64,
    me: Weak<RdmaConnection>,
    pub(crate) shared: Arc<Shared>,
    peer_addr: Mutex<EntityAddr>,
    pub(crate) inner: Mutex<Inner>,
    /// Events for the dispatcher. While it is paused (a message waits for throttle budget) the
    /// reactor stops consuming this peer's receive buffers, so its credits run out (back-pressure
    /// down to the sender).
    inbox: Inbox,
    pub(crate) drive_pending: AtomicBool,
    throttle: OnceLock<Option<Arc<PolicyThrottle>>>,
    /// Payload bytes accepted by send_message and not yet in a send buffer.
    queued_bytes: AtomicU64,
    connected: AtomicBool,
    closed: AtomicBool,
    features: AtomicU64,
    peer_name: Mutex<Option<EntityName>>,
    pub(crate) counters: CounterPair,
}

impl std::fmt::Debug for RdmaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaConnection")
            .field("id", &self.id)
            .field("peer", &*self.peer_addr.lock())
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl RdmaConnection {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        session: Session,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        announced: bool,
    ) -> Arc<Self> {
        let cfg = &shared.cfg;
        Arc::new_cyclic(|me| RdmaConnection {
            id: shared.next_id(),
            me: me.clone(),
            shared: shared.clone(),
            peer_addr: Mutex::new(peer_addr),
            inner: Mutex::new(Inner {
                session,
                peer_type,
                link: None,
                backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max),
                reconnect_pending: false,
                announced,
                ever_linked: false,
            }),
            inbox: Inbox::new(),
            drive_pending: AtomicBool::new(false),
            throttle: OnceLock::new(),
            queued_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            features: AtomicU64::new(0),
            peer_name: Mutex::new(None),
            counters: CounterPair::new(shared.counters.clone()),
        })
    }

    pub(crate) fn arc(&self) -> Arc<RdmaConnection> {
        self.me.upgrade().expect("connection used after drop")
    }

    pub(crate) fn peer_addr_now(&self) -> EntityAddr {
        *self.peer_addr.lock()
    }

    pub(crate) fn set_peer_addr(&self, addr: EntityAddr) {
        *self.peer_addr.lock() = addr;
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

    /// Throttle budget came back: dispatch again and let the reactor consume receives.
    fn resume(&self) {
        self.inbox.resume();
        self.shared.send(Cmd::Dispatch(self.arc()));
        if let Some(t) = self.inner.lock().link {
            self.shared.send(Cmd::Drive(t));
        }
    }

    /// Bytes of the session's output went into send buffers.
    pub(crate) fn note_written(&self, n: u64) {
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Payload bytes accepted by `send_message` and not yet handed to the queue pair.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn note_down(&self) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.shared
                .counters
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Move the session's events to the inbox; note what the reactor must do.
    pub(crate) fn absorb_events(&self, g: &mut MutexGuard<'_, Inner>) -> Followup {
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
                    g.announced
                }
                SessionEvent::AcceptRequest(req) => {
                    f.accept = Some(req.clone());
                    false
                }
                SessionEvent::Message(_) => {
                    self.counters.add_messages_in(1);
                    true
                }
                SessionEvent::KeepaliveAck { .. } => false,
                SessionEvent::Faulted {
                    error,
                    will_reconnect,
                } => {
                    self.note_down();
                    self.counters.add_faults(1);
                    total.count_error(error);
                    tracing::debug!(target: "msgr_rdma", conn = self.id, %error, will_reconnect, "link fault");
                    if *will_reconnect && !g.reconnect_pending && !self.is_closed() {
                        g.reconnect_pending = true;
                        f.reconnect_after = Some(g.backoff.next_delay());
                    }
                    g.announced
                }
                SessionEvent::Reset { error, .. } => {
                    self.note_down();
                    total.count_error(error);
                    self.mark_closed();
                    f.unregister = true;
                    g.announced
                }
                SessionEvent::RemoteReset { .. } => g.announced,
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

    /// Hand inbox events to the dispatcher, in order, one thread at a time.
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

    /// Drop the session now; returns the link token to close.
    pub(crate) fn mark_down_now(&self) -> Option<u64> {
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

    fn request_drive(&self, token: u64) {
        if !self.drive_pending.swap(true, Ordering::AcqRel) {
            self.shared.send(Cmd::Drive(token));
        }
    }

    fn closed_error(&self) -> MessengerError {
        if self.shared.is_stopping() {
            return MessengerError::ShutDown;
        }
        MessengerError::ConnectionClosed {
            peer: format!("{:?}", self.peer_addr()),
            reason: "the session was reset or marked down".into(),
        }
    }
}

impl Connection for RdmaConnection {
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
    /// Returns `QueueFull` at once when `send_queue_bytes` of payload already wait for the
    /// queue pair (a message larger than the limit is accepted into an empty queue).
    fn send_message(&self, msg: Message) -> Result<(), MessengerError> {
        let len = msg.payload_len() as u64;
        let limit = self.shared.cfg.send_queue_bytes;
        let mut g = self.inner.lock();
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let queued = self.queued_bytes.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(len) > limit {
            return Err(MessengerError::QueueFull {
                peer: format!("{:?}", self.peer_addr_now()),
                queued_bytes: queued,
                limit,
            });
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
        if let Some(t) = link {
            self.request_drive(t);
        } else if dial {
            self.shared.send(Cmd::Dial(self.arc()));
        }
        Ok(())
    }
    fn send_keepalive(&self) -> Result<(), MessengerError> {
        let mut g = self.inner.lock();
        if self.is_closed() {
            return Err(self.closed_error());
        }
        g.session.send_keepalive(Instant::now());
        let link = g.link;
        drop(g);
        if let Some(t) = link {
            self.request_drive(t);
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
        if let Some(t) = self.mark_down_now() {
            self.shared.send(Cmd::Close(t));
        }
        self.shared.send(Cmd::Dispatch(me));
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

impl Drop for RdmaConnection {
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
    a: &'a RdmaConnection,
    b: Option<&'a RdmaConnection>,
) -> (MutexGuard<'a, Inner>, Option<MutexGuard<'a, Inner>>) {
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
