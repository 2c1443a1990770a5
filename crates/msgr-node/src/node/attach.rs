//! Attaching an accepted link: the registry step of accept resolution, the same for every
//! transport (see [`crate::node::registry`] for the steps and the lock order).
//!
//! A transport's accepting link starts on a temporary connection. When its session asks
//! ([`msgr_core::session::SessionEvent::AcceptRequest`]), [`attach_accepted`] decides, under the
//! registry lock and both connection locks, whether the temporary connection becomes the
//! registered one for that peer, or the existing connection (which the application may hold)
//! takes the new link over. The transport then closes the replaced link and drives the new one.

use std::sync::Arc;
use std::time::Instant;

use crate::node::conn::{lock_pair, ConnCore, Followup, LinkState};
use crate::node::registry::{replaces_existing, resolve_accept};
use crate::node::{Registry, Throttles};
use msgr_core::policy::Policy;
use msgr_core::protocol::ProtocolSession;
use msgr_core::session::{AcceptDecision, ConnectRequest};
use msgr_core::wire::EntityAddr;

/// How the node layer reaches into a transport's connection type `C`, whose links are `L` (a
/// socket's worker and token, a queue pair's token). Plain functions rather than a trait, so the
/// transport's public connection type does not grow a public trait impl.
pub struct ConnAccess<C, L> {
    pub core: fn(&C) -> &ConnCore<L>,
    /// [`ConnCore::absorb_events`], with the transport's event logging.
    pub absorb: fn(&C, &mut LinkState<L>) -> Followup,
}

/// The peer's connect, and what the accepting side knows about it.
#[derive(Debug, Clone, Copy)]
pub struct Accepting<'a> {
    pub req: &'a ConnectRequest,
    /// The accept hook's verdict (false also while shutting down).
    pub hook_allows: bool,
    pub my_addr: EntityAddr,
    /// The policy for the peer's type.
    pub policy: &'a Policy,
    pub now: Instant,
}

/// What [`attach_accepted`] did; the transport acts on it after the locks are dropped.
#[derive(Debug)]
pub struct Attached<C, L> {
    pub decision: AcceptDecision,
    /// The connection that owns the link now: the temporary one, or the existing one that took
    /// the link (and the session holding its queues) over.
    pub owner: Arc<C>,
    /// The existing connection's previous link, replaced: close it.
    pub old_link: Option<L>,
    /// A lossy existing connection was reset by the replacement: run its follow-up.
    pub lossy_replaced: Option<(Arc<C>, Followup)>,
}

/// Resolve `temp`'s accept against the connection registered for the peer's address (see the
/// module docs). Returns `None`, doing nothing, when `is_current` says `temp`'s link is no
/// longer the one that asked.
pub fn attach_accepted<C, L: Copy>(
    access: &ConnAccess<C, L>,
    registry: &Registry<Arc<C>>,
    throttles: &Throttles,
    temp: &Arc<C>,
    is_current: impl FnOnce(Option<L>) -> bool,
    acc: Accepting<'_>,
) -> Option<Attached<C, L>> {
    let core = access.core;
    let absorb = access.absorb;
    let req = acc.req;
    let mut reg = registry.lock();
    let existing = reg
        .get(&req.peer_addr)
        .filter(|e| !Arc::ptr_eq(e, temp))
        .cloned();
    let (mut gn, mut ge) = lock_pair(core(temp), existing.as_deref().map(core));
    if !is_current(gn.link) {
        return None;
    }
    let existing_lossy = ge.as_ref().is_some_and(|g| g.session.policy().lossy);
    let decision = resolve_accept(
        acc.hook_allows,
        req,
        &mut gn.session,
        ge.as_mut().map(|g| &mut g.session),
        &acc.my_addr,
        acc.policy,
        acc.now,
    );
    let mut out = Attached {
        decision: decision.clone(),
        owner: temp.clone(),
        old_link: None,
        lossy_replaced: None,
    };
    let announce = |gn: &mut LinkState<L>| {
        let core = core(temp);
        core.set_peer_addr(req.peer_addr);
        core.init_throttle(throttles, req.peer_type, acc.policy);
        gn.peer_type = req.peer_type;
        gn.announced = true;
    };
    match (&decision, existing.clone(), ge) {
        (d, Some(ex), Some(mut ge)) if replaces_existing(d) && existing_lossy => {
            // A lossy session has nothing worth keeping: it was reset (the application hears
            // of it on the old connection) and the new one is registered.
            out.old_link = ge.link.take();
            let follow = absorb(&ex, &mut ge);
            out.lossy_replaced = Some((ex, follow));
            announce(&mut gn);
            reg.insert(req.peer_addr, temp.clone());
        }
        (d, Some(ex), Some(mut ge)) if replaces_existing(d) => {
            // The existing connection keeps its identity and takes over the new link and the
            // session now holding its queues.
            std::mem::swap(&mut gn.session, &mut ge.session);
            out.old_link = ge.link.take();
            ge.link = gn.link.take();
            ge.reconnect_pending = false;
            ge.ever_linked = true;
            ge.peer_type = req.peer_type;
            let _ = absorb(temp, &mut gn);
            core(&ex).counters.add_reconnects(1);
            out.owner = ex;
        }
        (AcceptDecision::New, _, _) | (AcceptDecision::Replace, None, _) => {
            announce(&mut gn);
            reg.insert(req.peer_addr, temp.clone());
        }
        (AcceptDecision::Refuse, _, _) => {
            core(temp)
                .counters
                .total
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        _ => {}
    }
    Some(out)
}
