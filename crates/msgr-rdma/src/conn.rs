//! [`RdmaConnection`]: the `Connection` an application holds for one peer address.
//!
//! It owns the peer's [`Session`] and outlives the queue pairs ("links") the session runs on: a
//! lossless reconnect, or the peer reconnecting to us, attaches a new link to the same
//! connection. Session events are moved to an ordered inbox and handed to the dispatcher on the
//! reactor thread, outside every lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use msgr_core::api::{Connection, ConnectionCounters, ConnectionRef, MessengerError};
use msgr_core::message::Message;
use msgr_core::node::conn::{ConnCore, LinkState, SendFollowup};
use msgr_core::node::counters::CounterPair;
use msgr_core::node::{Backoff, ConnAccess};
use msgr_core::policy::Policy;
use msgr_core::session::{Session, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

use crate::messenger::{Cmd, Shared};

pub(crate) use msgr_core::node::conn::Followup;

/// State under the connection's lock; the link is the rdma_cm token of the current queue pair.
pub(crate) type Inner = LinkState<u64>;

/// A peer connection over RDMA.
pub struct RdmaConnection {
    pub(crate) id: u64,
    me: Weak<RdmaConnection>,
    pub(crate) shared: Arc<Shared>,
    /// Session, link, inbox, throttle, send queue and counters (shared with the TCP transport).
    /// While the inbox is paused (a message waits for throttle budget) the reactor stops
    /// consuming this peer's receive buffers, so its credits run out (back-pressure down to the
    /// sender).
    pub(crate) core: ConnCore<u64>,
    pub(crate) drive_pending: AtomicBool,
}

impl std::fmt::Debug for RdmaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaConnection")
            .field("id", &self.id)
            .field("peer", &self.core.peer_addr())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// The peer as errors name it.
fn peer_debug(a: &EntityAddr) -> String {
    format!("{a:?}")
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
        let id = shared.next_id();
        let backoff = Backoff::new(cfg.reconnect_initial, cfg.reconnect_max);
        Arc::new_cyclic(|me| RdmaConnection {
            id,
            me: me.clone(),
            shared: shared.clone(),
            core: ConnCore::new(
                id,
                CounterPair::new(shared.counters.clone()),
                peer_addr,
                peer_debug,
                LinkState::new(session, peer_type, announced, backoff),
            ),
            drive_pending: AtomicBool::new(false),
        })
    }

    pub(crate) fn arc(&self) -> Arc<RdmaConnection> {
        self.me.upgrade().expect("connection used after drop")
    }

    pub(crate) fn peer_addr_now(&self) -> EntityAddr {
        self.core.peer_addr()
    }

    pub(crate) fn init_throttle(&self, peer_type: EntityType, policy: &Policy) {
        self.core
            .init_throttle(&self.shared.throttles, peer_type, policy);
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.core.is_paused()
    }

    /// Throttle budget came back: dispatch again and let the reactor consume receives.
    fn resume(&self) {
        self.core.resume();
        self.shared.send(Cmd::Dispatch(self.arc()));
        if let Some(t) = self.core.inner.lock().link {
            self.shared.send(Cmd::Drive(t));
        }
    }

    /// Bytes of the session's output went into send buffers.
    pub(crate) fn note_written(&self, n: u64) {
        self.core.note_written(n);
    }

    /// Payload bytes accepted by `send_message` and not yet handed to the queue pair.
    pub fn queued_bytes(&self) -> u64 {
        self.core.queued_bytes()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Move the session's events to the inbox; note what the reactor must do.
    pub(crate) fn absorb_events(&self, g: &mut Inner) -> Followup {
        self.core.absorb_events(g, |ev| trace_event(self.id, ev))
    }

    /// Hand inbox events to the dispatcher, in order, one thread at a time.
    pub(crate) fn run_dispatch(&self) {
        let conn_ref: ConnectionRef = self.arc();
        self.core.drain(&conn_ref, &self.shared.dispatchers, || {
            let me = self.arc();
            move || me.resume()
        });
    }

    /// Drop the session now; returns the link token to close.
    pub(crate) fn mark_down_now(&self) -> Option<u64> {
        self.core.mark_down_now(|ev| trace_event(self.id, ev))
    }

    fn request_drive(&self, token: u64) {
        if !self.drive_pending.swap(true, Ordering::AcqRel) {
            self.shared.send(Cmd::Drive(token));
        }
    }
}

/// Log the session events an RDMA operator wants to see (under this crate's target).
fn trace_event(conn: u64, ev: &SessionEvent) {
    if let SessionEvent::Faulted {
        error,
        will_reconnect,
    } = ev
    {
        tracing::debug!(target: "msgr_rdma", conn, %error, will_reconnect, "link fault");
    }
}

impl Connection for RdmaConnection {
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
    /// Returns `QueueFull` at once when `send_queue_bytes` of payload already wait for the
    /// queue pair (a message larger than the limit is accepted into an empty queue).
    fn send_message(&self, msg: Message) -> Result<(), MessengerError> {
        let limit = self.shared.cfg.send_queue_bytes;
        match self
            .core
            .queue_message(msg, limit, None, || self.shared.is_stopping())?
        {
            SendFollowup::Drive(t) => self.request_drive(t),
            SendFollowup::Dial => self.shared.send(Cmd::Dial(self.arc())),
            SendFollowup::None => {}
        }
        Ok(())
    }
    fn send_keepalive(&self) -> Result<(), MessengerError> {
        if let Some(t) = self.core.queue_keepalive(|| self.shared.is_stopping())? {
            self.request_drive(t);
        }
        Ok(())
    }
    fn is_connected(&self) -> bool {
        self.core.is_connected()
    }
    fn mark_down(&self) {
        let me = self.arc();
        self.shared.registry.unregister(&me);
        if let Some(t) = self.mark_down_now() {
            self.shared.send(Cmd::Close(t));
        }
        self.shared.send(Cmd::Dispatch(me));
    }
    fn counters(&self) -> ConnectionCounters {
        self.core.counters_snapshot()
    }
    fn release(&self, msg_len: usize) {
        self.core.release(msg_len);
    }
}

/// How the node layer's accept resolution reaches a connection's core.
pub(crate) const ACCESS: ConnAccess<RdmaConnection, u64> = ConnAccess {
    core: |c| &c.core,
    absorb: RdmaConnection::absorb_events,
};
