//! [`NodeConnection`]: the `Connection` an application holds for one peer address.
//!
//! It owns the peer's [`Session`] (in its [`ConnCore`]) and outlives the links the session
//! runs on: a lossless reconnect (perhaps over another transport), or a peer reconnecting to
//! us, attaches a new link to the same `NodeConnection`, so handles the application keeps stay
//! valid.
//!
//! Events the session emits are moved into an ordered inbox and handed to the dispatcher by
//! [`NodeConnection::run_dispatch`], outside every lock, on a worker thread. A message is
//! admitted to the dispatcher only when its policy throttle has budget; otherwise the
//! connection is paused (its worker stops reading from the peer) until budget is released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use msgr_core::api::{Connection, ConnectionCounters, ConnectionRef, MessengerError};
use msgr_core::message::Message;
use msgr_core::policy::Policy;
use msgr_core::protocol::AnySession;
use msgr_core::session::SessionEvent;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::node::attach::ConnAccess;
use crate::node::backoff::Backoff;
use crate::node::conn::{ConnCore, Followup, LinkState, SendFollowup};
use crate::node::counters::CounterPair;
use crate::node::shared::NodeShared;
use crate::wait::WaitList;

/// Where a connection's current link lives: which worker, its token there, and a generation
/// number unique over the node's life (so a stale link is never mistaken for the current).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkRef {
    pub worker: usize,
    pub token: usize,
    pub gen: u64,
}

/// State guarded by the connection's lock.
pub(crate) type ConnInner = LinkState<LinkRef>;

/// The node a connection belongs to, as the connection sees it.
pub(crate) type NodeState = NodeShared<Arc<NodeConnection>>;

/// What a connection asks of its node's workers (the driver implements it), so that this
/// layer needs nothing of the driver's.
pub(crate) trait Host: Send + Sync {
    /// Open a link for `conn` (on its home worker).
    fn dial(&self, conn: Arc<NodeConnection>);
    /// Write what the session of `link` has queued.
    fn flush(&self, link: LinkRef);
    /// Close `link` without touching its session.
    fn close(&self, link: LinkRef);
    /// Run `conn`'s dispatch on `worker`.
    fn dispatch(&self, worker: usize, conn: Arc<NodeConnection>);
}

/// A peer connection, whatever carries it. See the module docs.
pub struct NodeConnection {
    pub(crate) id: u64,
    me: Weak<NodeConnection>,
    pub(crate) node: Arc<NodeState>,
    host: Arc<dyn Host>,
    clock: Clock,
    send_queue_bytes: u64,
    workers: usize,
    /// Session, link, inbox, throttle, send queue and counters.
    pub(crate) core: ConnCore<LinkRef>,
    pub(crate) flush_pending: AtomicBool,
    /// The transport of the current (or last) link.
    transport: Mutex<Option<&'static str>>,
    /// A fallback to a later transport was logged for this connection already.
    pub(crate) fallback_logged: AtomicBool,
    /// Tasks in `poll_send` waiting for send-queue room (woken on writes and on close).
    space_waiters: WaitList,
    /// Tasks in `poll_connected` (woken when the handshake finishes or the connection closes).
    state_waiters: WaitList,
}

impl std::fmt::Debug for NodeConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConnection")
            .field("id", &self.id)
            .field("peer", &self.core.peer_addr())
            .field("transport", &self.transport())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// The peer as errors name it: `ip:port/nonce`.
fn peer_string(a: &EntityAddr) -> String {
    match a.addr {
        Some(s) => format!("{s}/{}", a.nonce),
        None => format!("-/{}", a.nonce),
    }
}

impl NodeConnection {
    /// A connection of `node` (configured by `cfg`) around `session`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node: &Arc<NodeState>,
        host: Arc<dyn Host>,
        cfg: &NodeConfig,
        session: AnySession,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        announced: bool,
    ) -> Arc<Self> {
        let id = node.next_id();
        let backoff = Backoff::new(cfg.reconnect_initial, cfg.reconnect_max);
        Arc::new_cyclic(|me| NodeConnection {
            id,
            me: me.clone(),
            node: node.clone(),
            host,
            clock: cfg.clock.clone(),
            send_queue_bytes: cfg.send_queue_bytes,
            workers: cfg.workers.max(1),
            core: ConnCore::new(
                id,
                CounterPair::new(node.counters.clone()),
                peer_addr,
                peer_string,
                LinkState::new(session, peer_type, announced, backoff),
            ),
            flush_pending: AtomicBool::new(false),
            transport: Mutex::new(None),
            fallback_logged: AtomicBool::new(false),
            space_waiters: WaitList::default(),
            state_waiters: WaitList::default(),
        })
    }

    pub(crate) fn arc(&self) -> Arc<NodeConnection> {
        self.me.upgrade().expect("connection used after drop")
    }

    pub(crate) fn init_throttle(&self, peer_type: EntityType, policy: &Policy) {
        self.core
            .init_throttle(&self.node.throttles, peer_type, policy);
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.core.is_paused()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    pub(crate) fn set_transport(&self, name: &'static str) {
        *self.transport.lock() = Some(name);
    }

    /// The transport carrying this connection now, or the last one that did ("tcp", "rdma",
    /// "mem"); None before a first link.
    pub fn transport(&self) -> Option<&'static str> {
        *self.transport.lock()
    }

    /// Move the session's events to the inbox and note what the driver must do. Called with the
    /// lock held, right after any session call.
    pub(crate) fn absorb_events(&self, g: &mut ConnInner) -> Followup {
        let f = self.core.absorb_events(g, |ev| trace_event(self.id, ev));
        self.wake_waiters();
        if f.queue_dropped {
            self.space_waiters.wake_all();
        }
        f
    }

    /// Wake the tasks whose condition now holds: connected or closed (`poll_connected`),
    /// closed (`poll_send`). Two atomic loads when neither holds.
    fn wake_waiters(&self) {
        let closed = self.is_closed();
        if closed || self.is_connected() {
            self.state_waiters.wake_all();
        }
        if closed {
            self.space_waiters.wake_all();
        }
    }

    /// `n` queued bytes were written to the link: senders waiting for room may go on.
    pub(crate) fn note_written(&self, n: u64) {
        self.core.note_written(n);
        self.space_waiters.wake_all();
    }

    /// Throttle budget came back: let the worker read and dispatch again.
    fn resume(&self) {
        self.core.resume();
        let worker = self
            .core
            .inner
            .lock()
            .link
            .map(|l| l.worker)
            .unwrap_or(self.home_worker());
        self.host.dispatch(worker, self.arc());
    }

    pub(crate) fn home_worker(&self) -> usize {
        (self.id as usize) % self.workers
    }

    /// Hand inbox events to the dispatcher, in order, one thread at a time; stops (paused) when a
    /// message finds its throttle full. Call on a worker thread.
    pub(crate) fn run_dispatch(&self) {
        let conn_ref: ConnectionRef = self.arc();
        self.core.drain(&conn_ref, &self.node.dispatchers, || {
            let me = self.arc();
            move || me.resume()
        });
    }

    /// Drop the session (local mark-down or shutdown): undelivered messages are reported through
    /// `ms_handle_reset` by a worker. Returns the link that must be closed, if any.
    pub(crate) fn mark_down_now(&self) -> Option<LinkRef> {
        let link = self.core.mark_down_now(|ev| trace_event(self.id, ev));
        self.wake_waiters();
        link
    }

    /// Queue under the lock, then ask a worker to write or dial.
    fn queue_message(
        &self,
        msg: Message,
        allow_wait: Option<Instant>,
    ) -> Result<(), MessengerError> {
        let limit = self.send_queue_bytes;
        let f = self
            .core
            .queue_message(msg, limit, allow_wait, || self.node.is_stopping())?;
        self.follow_send(f);
        Ok(())
    }

    /// After a message was queued: ask a worker to write or dial.
    fn follow_send(&self, f: SendFollowup<LinkRef>) {
        match f {
            SendFollowup::Drive(l) => self.request_flush(l),
            SendFollowup::Dial => self.host.dial(self.arc()),
            SendFollowup::None => {}
        }
    }

    /// Ask the link's worker to write; at most one request per batch of sends.
    pub(crate) fn request_flush(&self, l: LinkRef) {
        if !self.flush_pending.swap(true, Ordering::AcqRel) {
            self.host.flush(l);
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

    /// Payload bytes accepted by `send_message` and not yet handed to a link.
    pub fn queued_bytes(&self) -> u64 {
        self.core.queued_bytes()
    }
}

/// Log the session events an operator wants to see.
fn trace_event(conn: u64, ev: &SessionEvent) {
    match ev {
        SessionEvent::Connected { peer_name, .. } | SessionEvent::Accepted { peer_name, .. } => {
            tracing::debug!(conn, peer = ?peer_name, "link open");
        }
        SessionEvent::Faulted {
            error,
            will_reconnect,
        } => {
            tracing::debug!(conn, %error, will_reconnect, "link fault");
        }
        SessionEvent::Reset { error, undelivered } => {
            tracing::debug!(conn, %error, undelivered = undelivered.len(), "session reset");
        }
        _ => {}
    }
}

impl Connection for NodeConnection {
    fn peer_addr(&self) -> EntityAddr {
        self.core.peer_addr()
    }
    fn peer_type(&self) -> EntityType {
        self.core.peer_type()
    }
    fn peer_name(&self) -> Option<EntityName> {
        self.core.peer_name()
    }
    fn features(&self) -> u64 {
        self.core.features()
    }
    /// Returns `QueueFull` at once when `send_queue_bytes` are already queued; use
    /// [`NodeConnection::send_message_timeout`] to wait for room instead.
    fn send_message(&self, msg: Message) -> Result<(), MessengerError> {
        self.queue_message(msg, None)
    }
    fn send_keepalive(&self) -> Result<(), MessengerError> {
        let now = self.clock.now();
        let link = self.core.queue_keepalive(now, || self.node.is_stopping())?;
        if let Some(l) = link {
            self.request_flush(l);
        }
        Ok(())
    }
    fn is_connected(&self) -> bool {
        self.core.is_connected()
    }
    fn mark_down(&self) {
        let me = self.arc();
        self.node.registry.unregister(&me);
        if let Some(l) = self.mark_down_now() {
            self.host.close(l);
        }
        self.host.dispatch(self.home_worker(), me);
    }
    fn counters(&self) -> ConnectionCounters {
        self.core.counters_snapshot()
    }
    fn release(&self, msg_len: usize) {
        self.core.release(msg_len);
    }
    fn transport(&self) -> Option<&'static str> {
        NodeConnection::transport(self)
    }
    fn protocol(&self) -> msgr_core::protocol::Protocol {
        use msgr_core::protocol::ProtocolSession;
        self.core.inner.lock().session.protocol()
    }
    /// Waits while `send_queue_bytes` are queued (see [`Connection::poll_send`]).
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        msg: &mut Option<Message>,
    ) -> Poll<Result<(), MessengerError>> {
        let register = || self.space_waiters.register(cx.waker());
        let limit = self.send_queue_bytes;
        match self
            .core
            .try_queue(msg, limit, register, || self.node.is_stopping())
        {
            Err(e) => Poll::Ready(Err(e)),
            Ok(Some(f)) => {
                self.follow_send(f);
                Poll::Ready(Ok(()))
            }
            Ok(None) if msg.is_some() => Poll::Pending,
            Ok(None) => Poll::Ready(Ok(())),
        }
    }
    fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<Result<(), MessengerError>> {
        let state = || {
            if self.is_closed() {
                Some(Err(self.core.closed_error(self.node.is_stopping())))
            } else {
                self.is_connected().then_some(Ok(()))
            }
        };
        if let Some(r) = state() {
            return Poll::Ready(r);
        }
        self.state_waiters.register(cx.waker());
        state().map_or(Poll::Pending, Poll::Ready)
    }
}

/// How the node layer's accept resolution reaches a connection's core.
pub(crate) const ACCESS: ConnAccess<NodeConnection, LinkRef> = ConnAccess {
    core: |c| &c.core,
    absorb: NodeConnection::absorb_events,
};
