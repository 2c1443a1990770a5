//! [`NodeShared`]: the transport-neutral state of a messenger, and the steps of the
//! [`msgr_core::api::Messenger`] calls that do not depend on how links are driven.
//!
//! A transport embeds one in its own shared state (next to its threads, wakers and device
//! handles) and calls these steps from its `Messenger` impl: the order of checks in `start`,
//! `connect_to` and `shutdown` is then the same for every transport.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::RwLock;

use crate::node::counters::CounterPair;
use crate::node::{Dispatchers, Loopback, MessengerCounterCells, Registry, Throttles};
use msgr_core::api::{ConnectionRef, MessengerError};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::protocol::{AnySession, Configs, Protocol};
use msgr_core::session::SessionConfig;
use msgr_core::session_v2::V2Config;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

/// What a messenger shares between its handle, its connections and its transport threads,
/// minus the transport. `C` is the transport's connection handle (kept in the registry).
///
/// Lifecycle: created stopped; [`NodeShared::begin_start`] marks it started (undone by
/// [`NodeShared::abort_start`] if the transport cannot bind or spawn);
/// [`NodeShared::set_bound`] fixes our address and the session configuration;
/// [`NodeShared::begin_shutdown`] marks it stopping, for good.
pub struct NodeShared<C> {
    pub name: EntityName,
    policies: RwLock<PolicySet>,
    pub dispatchers: Dispatchers,
    pub registry: Registry<C>,
    pub counters: Arc<MessengerCounterCells>,
    pub throttles: Throttles,
    /// Set once started (it needs our bound address).
    pub loopback: OnceLock<Arc<Loopback>>,
    session_cfg: OnceLock<Arc<SessionConfig>>,
    configs: OnceLock<Configs>,
    my_addr: RwLock<EntityAddr>,
    next_id: AtomicU64,
    started: AtomicBool,
    stopping: AtomicBool,
}

/// A nonce for a messenger whose configuration gives none: differs between processes and
/// between messengers of one process (each `RandomState` is seeded afresh), so a restarted
/// peer is told apart from its previous instance.
pub fn random_nonce() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 16) as u32
}

impl<C: Clone> NodeShared<C> {
    /// A stopped node named `name` that will listen on `bind`; `nonce` None: a random one.
    pub fn new(
        name: EntityName,
        bind: SocketAddr,
        nonce: Option<u32>,
        policies: PolicySet,
    ) -> Self {
        NodeShared {
            name,
            policies: RwLock::new(policies),
            dispatchers: Dispatchers::default(),
            registry: Registry::default(),
            counters: Arc::new(MessengerCounterCells::default()),
            throttles: Throttles::default(),
            loopback: OnceLock::new(),
            session_cfg: OnceLock::new(),
            configs: OnceLock::new(),
            my_addr: RwLock::new(EntityAddr {
                kind: 0,
                nonce: nonce.unwrap_or_else(random_nonce),
                addr: Some(bind),
            }),
            next_id: AtomicU64::new(1),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// A fresh connection id (starts at 1).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
    pub fn my_addr(&self) -> EntityAddr {
        *self.my_addr.read()
    }
    pub fn policy_for(&self, t: EntityType) -> Policy {
        self.policies.read().get(t).clone()
    }
    pub fn set_policy(&self, t: EntityType, policy: Policy) {
        self.policies.write().set(t, policy);
    }
    /// The session configuration. Panics before [`NodeShared::set_bound`]: connections exist
    /// only once started.
    pub fn session_cfg(&self) -> Arc<SessionConfig> {
        self.session_cfg.get().expect("started").clone()
    }

    /// Both protocols' configurations. Before [`NodeShared::set_protocols`]: msgr1 only.
    pub fn configs(&self) -> Configs {
        match self.configs.get() {
            Some(c) => c.clone(),
            None => Configs {
                v1: self.session_cfg(),
                v2: None,
                accept_v1: true,
                accept_v2: false,
            },
        }
    }

    /// After [`NodeShared::set_bound`]: which protocols this node accepts; `v2` builds the
    /// msgr2 configuration from the msgr1 one.
    pub fn set_protocols(
        &self,
        accept_v1: bool,
        accept_v2: bool,
        v2: impl FnOnce(Arc<SessionConfig>) -> V2Config,
    ) {
        let v1 = self.session_cfg();
        let v2 = Some(Arc::new(v2(v1.clone())));
        let _ = self.configs.set(Configs {
            v1,
            v2,
            accept_v1,
            accept_v2,
        });
    }

    /// First step of `start`: refuse without a dispatcher or after shutdown, then mark
    /// started. Ok(false): it was started already, nothing to do.
    pub fn begin_start(&self) -> Result<bool, MessengerError> {
        if self.dispatchers.is_empty() {
            return Err(MessengerError::NoDispatcher);
        }
        if self.is_stopping() {
            return Err(MessengerError::ShutDown);
        }
        Ok(!self.started.swap(true, Ordering::AcqRel))
    }

    /// `start` failed after [`NodeShared::begin_start`]: back to stopped, pass `e` on.
    pub fn abort_start(&self, e: MessengerError) -> MessengerError {
        self.started.store(false, Ordering::Release);
        e
    }

    /// The transport listens on `bound`: our address takes that port, and the session
    /// configuration is fixed (`tune` sets what the transport's config decides). Returns our
    /// address.
    pub fn set_bound(
        &self,
        bound: SocketAddr,
        tune: impl FnOnce(&mut SessionConfig),
    ) -> EntityAddr {
        let my_addr = EntityAddr {
            addr: Some(bound),
            ..self.my_addr()
        };
        *self.my_addr.write() = my_addr;
        let mut scfg = SessionConfig::new(self.name, my_addr);
        scfg.policies = self.policies.read().clone();
        tune(&mut scfg);
        let _ = self.session_cfg.set(Arc::new(scfg));
        my_addr
    }

    /// Create the loopback connection (after [`NodeShared::set_bound`]); `wake` must make a
    /// transport thread call [`Loopback::deliver_pending`] soon.
    pub fn install_loopback(&self, wake: impl Fn() + Send + Sync + 'static) {
        let lb = Loopback::new(
            self.name,
            self.my_addr(),
            self.session_cfg().features_supported,
            CounterPair::new(self.counters.clone()),
            wake,
        );
        let _ = self.loopback.set(lb);
    }

    /// The checks `connect_to` makes before the transport: Err when not started or shut
    /// down; Ok(Some) with the loopback connection when `addr` is our own; Ok(None): the
    /// transport connects.
    pub fn check_connect(
        &self,
        addr: &EntityAddr,
    ) -> Result<Option<ConnectionRef>, MessengerError> {
        if !self.is_started() {
            return Err(MessengerError::NotStarted);
        }
        if self.is_stopping() {
            return Err(MessengerError::ShutDown);
        }
        if *addr == self.my_addr() {
            let lb: ConnectionRef = self.loopback.get().expect("started").clone();
            return Ok(Some(lb));
        }
        Ok(None)
    }

    /// The open connection to `addr`, or a new dialing one speaking `protocol`: `is_closed`
    /// tells whether a registered connection is done with; `create` makes a connection around
    /// a connecting session (with `addr`'s policy). The bool is true when it was created: the
    /// transport must dial it. Err: `protocol` is msgr2 and this node does not speak it.
    pub fn dialing_conn(
        &self,
        peer_type: EntityType,
        addr: &EntityAddr,
        protocol: Protocol,
        now: Instant,
        is_closed: impl FnOnce(&C) -> bool,
        create: impl FnOnce(AnySession, Policy) -> C,
    ) -> Result<(C, bool), MessengerError> {
        let policy = self.policy_for(peer_type);
        let mut reg = self.registry.lock();
        if let Some(c) = reg.get(addr) {
            if !is_closed(c) {
                return Ok((c.clone(), false));
            }
        }
        let configs = self.configs();
        let session =
            AnySession::connect(&configs, protocol, *addr, peer_type, policy.clone(), now)
                .map_err(|_| MessengerError::BadPeerAddress {
                    addr: format!("v2:{addr}"),
                    reason: "msgr2 is off on this messenger: turn it on in its config \
                             ([msgr2] in the TOML file, NodeConfig::msgr2) or dial v1",
                })?;
        let conn = create(session, policy);
        reg.insert(*addr, conn.clone());
        Ok((conn, true))
    }

    /// First step of `shutdown`: false when not started or already shutting down (the call
    /// is then a no-op); afterwards the node refuses to start or connect.
    pub fn begin_shutdown(&self) -> bool {
        self.is_started() && !self.stopping.swap(true, Ordering::AcqRel)
    }

    /// Last step of `shutdown`, once transport threads are gone: `fail` each connection left
    /// (standby, waiting to reconnect), deliver what the loopback holds and drop the rest.
    pub fn finish_shutdown(&self, mut fail: impl FnMut(C)) {
        for c in self.registry.take_all() {
            fail(c);
        }
        if let Some(lb) = self.loopback.get() {
            lb.deliver_pending(&self.dispatchers);
            let _ = lb.take_pending();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msgr_core::api::Dispatcher;
    use msgr_core::wire::EntityType;
    use msgr_core::Message;

    struct Nop;
    impl Dispatcher for Nop {
        fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
    }

    fn node() -> NodeShared<u32> {
        let name = EntityName::new(EntityType::CLIENT, 1);
        NodeShared::new(
            name,
            "127.0.0.1:0".parse().unwrap(),
            Some(7),
            PolicySet::default(),
        )
    }

    #[test]
    fn start_connect_shutdown_order() {
        let n = node();
        let peer = EntityAddr {
            kind: 0,
            nonce: 9,
            addr: Some("127.0.0.1:1".parse().unwrap()),
        };
        assert!(matches!(n.begin_start(), Err(MessengerError::NoDispatcher)));
        assert!(matches!(
            n.check_connect(&peer),
            Err(MessengerError::NotStarted)
        ));
        n.dispatchers.add(Arc::new(Nop));
        assert!(n.begin_start().unwrap());
        assert!(!n.begin_start().unwrap(), "second start is a no-op");
        let me = n.set_bound("127.0.0.1:6800".parse().unwrap(), |c| c.crc_data = false);
        assert_eq!(me.nonce, 7);
        assert_eq!(n.my_addr().addr, Some("127.0.0.1:6800".parse().unwrap()));
        assert!(!n.session_cfg().crc_data);
        n.install_loopback(|| {});
        assert!(
            n.check_connect(&me).unwrap().is_some(),
            "own address: loopback"
        );
        assert!(n.check_connect(&peer).unwrap().is_none());

        let dial = |closed: bool, id: u32| {
            n.dialing_conn(
                EntityType::OSD,
                &peer,
                Protocol::V1,
                Instant::now(),
                |_| closed,
                |_, _| id,
            )
            .unwrap()
        };
        assert_eq!(dial(false, 5), (5, true));
        assert_eq!(dial(false, 6), (5, false), "open connection reused");
        assert_eq!(dial(true, 6), (6, true), "closed connection replaced");
        let v2 = n.dialing_conn(
            EntityType::OSD,
            &peer,
            Protocol::V2,
            Instant::now(),
            |_| true,
            |_, _| 7,
        );
        let e = v2.unwrap_err().to_string();
        assert!(e.contains("msgr2 is off"), "{e}");

        assert!(n.begin_shutdown());
        assert!(!n.begin_shutdown(), "shutdown is idempotent");
        let mut failed = Vec::new();
        n.finish_shutdown(|c| failed.push(c));
        assert_eq!(failed, vec![6]);
        assert!(matches!(
            n.check_connect(&peer),
            Err(MessengerError::ShutDown)
        ));
        assert!(matches!(n.begin_start(), Err(MessengerError::ShutDown)));
    }

    #[test]
    fn abort_start_allows_a_retry() {
        let n = node();
        n.dispatchers.add(Arc::new(Nop));
        assert!(n.begin_start().unwrap());
        let e = n.abort_start(MessengerError::NotStarted);
        assert!(matches!(e, MessengerError::NotStarted));
        assert!(!n.is_started());
        assert!(n.begin_start().unwrap());
    }
}
