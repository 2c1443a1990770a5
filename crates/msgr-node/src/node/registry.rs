//! Sessions keyed by peer address, and the accept resolution every transport runs when a peer's
//! connect arrives.
//!
//! A messenger has at most one session per peer address (Ceph's `conns` map). The transport
//! stores its own connection handle `C` per address (it owns the sessions: they live with the
//! socket or queue pair). When an accepting session reports
//! [`SessionEvent::AcceptRequest`](msgr_core::session::SessionEvent::AcceptRequest), the transport:
//! 1. runs the accept hook ([`super::Dispatchers::verify_accept`]);
//! 2. locks the registry, looks up the existing handle for `req.peer_addr` and locks its session;
//! 3. calls [`resolve_accept`], which decides by the protocol's rules ([`AnySession::resolve_accept`]:
//!    msgr1's `accept::decide`, msgr2's `SessionV2::resolve_accept`) and applies the
//!    decision;
//! 4. on [`AcceptDecision::New`] inserts the new handle; when [`replaces_existing`] is true the
//!    existing handle stays registered (the application may hold it) and takes the new link over.
//!
//! Lock order, to stay deadlock-free: registry first, then connection locks in a fixed order
//! (e.g. by connection id); never take the registry while holding a connection lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};

use msgr_core::api::Connection;
use msgr_core::policy::Policy;
use msgr_core::protocol::AnySession;
use msgr_core::session::{AcceptDecision, ConnectRequest};
use msgr_core::wire::EntityAddr;

/// Connection handles by peer address. Ordered, so that walking every connection (shutdown,
/// `mark_down_all`) goes the same way in every run (a deterministic simulation replays).
#[derive(Debug)]
pub struct Registry<C> {
    map: Mutex<BTreeMap<EntityAddr, C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<C: Clone> Registry<C> {
    pub fn get(&self, addr: &EntityAddr) -> Option<C> {
        self.map.lock().get(addr).cloned()
    }

    /// Insert, returning the handle it displaced.
    #[cfg(test)]
    pub fn insert(&self, addr: EntityAddr, conn: C) -> Option<C> {
        self.map.lock().insert(addr, conn)
    }

    /// Remove the entry for `addr` only if `is_it` says it is the caller's (a newer connection
    /// to the same address must not be removed by an older one going away).
    pub fn remove_if(&self, addr: &EntityAddr, is_it: impl FnOnce(&C) -> bool) -> Option<C> {
        let mut map = self.map.lock();
        if map.get(addr).is_some_and(is_it) {
            map.remove(addr)
        } else {
            None
        }
    }

    /// Empty the registry (shutdown, `mark_down_all`).
    pub fn take_all(&self) -> Vec<C> {
        let all = std::mem::take(&mut *self.map.lock());
        all.into_values().collect()
    }

    pub fn all(&self) -> Vec<C> {
        self.map.lock().values().cloned().collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hold the registry for an accept resolution (see the module docs for the lock order).
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<EntityAddr, C>> {
        self.map.lock()
    }
}

impl<C: Connection + ?Sized> Registry<Arc<C>> {
    /// Remove `conn` from its peer address's slot, unless a newer connection took the slot.
    pub fn unregister(&self, conn: &Arc<C>) {
        self.remove_if(&conn.peer_addr(), |c| Arc::ptr_eq(c, conn));
    }

    /// `Messenger::mark_down`: mark down the connection registered for `addr`, if any.
    pub fn mark_down(&self, addr: &EntityAddr) {
        if let Some(c) = self.get(addr) {
            c.mark_down();
        }
    }

    /// `Messenger::mark_down_all`: mark down every registered connection.
    pub fn mark_down_all(&self) {
        for c in self.all() {
            c.mark_down();
        }
    }
}

/// Answer a peer's connect on the accepting session `new`, given the `existing` session for the
/// same peer address. `hook_allows` is the accept hook's verdict; a refused peer gets
/// [`AcceptDecision::Refuse`]. Returns the decision applied.
pub fn resolve_accept(
    hook_allows: bool,
    req: &ConnectRequest,
    new: &mut AnySession,
    existing: Option<&mut AnySession>,
    my_addr: &EntityAddr,
    policy: &Policy,
    now: Instant,
) -> AcceptDecision {
    new.resolve_accept(hook_allows, req, existing, my_addr, policy, now)
}

/// The new link takes the existing session over (its queues moved into the new session):
/// the transport should keep the existing connection handle and attach the new link to it.
pub fn replaces_existing(decision: &AcceptDecision) -> bool {
    matches!(
        decision,
        AcceptDecision::Replace | AcceptDecision::ReplaceAfterPeerReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(nonce: u32) -> EntityAddr {
        EntityAddr {
            kind: 0,
            nonce,
            addr: Some("127.0.0.1:6800".parse().unwrap()),
        }
    }

    #[test]
    fn remove_if_spares_a_newer_entry() {
        let r: Registry<u32> = Registry::default();
        r.insert(addr(1), 10);
        assert_eq!(r.remove_if(&addr(1), |c| *c == 9), None);
        assert_eq!(r.get(&addr(1)), Some(10));
        assert_eq!(r.remove_if(&addr(1), |c| *c == 10), Some(10));
        assert!(r.is_empty());
    }

    #[test]
    fn unregister_spares_a_newer_connection() {
        use crate::node::counters::{CounterPair, MessengerCounterCells};
        use crate::node::Loopback;
        use msgr_core::wire::{EntityName, EntityType};
        let lb = || {
            let counters = CounterPair::new(Arc::new(MessengerCounterCells::default()));
            Loopback::new(
                EntityName::new(EntityType::OSD, 1),
                addr(1),
                0,
                counters,
                || {},
            )
        };
        let (old, new) = (lb(), lb());
        let r: Registry<Arc<Loopback>> = Registry::default();
        r.insert(addr(1), new.clone());
        r.unregister(&old);
        assert!(r.get(&addr(1)).is_some_and(|c| Arc::ptr_eq(&c, &new)));
        r.unregister(&new);
        assert!(r.is_empty());
    }

    #[test]
    fn replace_decisions() {
        assert!(replaces_existing(&AcceptDecision::Replace));
        assert!(replaces_existing(&AcceptDecision::ReplaceAfterPeerReset));
        assert!(!replaces_existing(&AcceptDecision::New));
        assert!(!replaces_existing(&AcceptDecision::Wait));
    }
}
