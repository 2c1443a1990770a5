//! [`Shared`]: what a node's handle, its connections and its workers share.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use msgr_core::protocol::AnySession;
use msgr_core::wire::{EntityAddr, EntityType};

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::connection::{Host, LinkRef, NodeConnection, NodeState};
use crate::node::admission::Admission;
use crate::node::NodeShared;
use crate::port::{Cmd, Port};
use crate::transport::{DialId, Transport};

/// A dial whose outcome a transport reports later (as a [`crate::TransportEvent`]).
pub(crate) struct PendingDial {
    pub conn: Arc<NodeConnection>,
    /// Index into [`Shared::transports`] of the transport trying.
    pub transport: usize,
}

/// A node's shared state: the transport-neutral [`NodeShared`] (reached through `Deref`),
/// the configuration, the workers' ports, the transports in preference order.
pub(crate) struct Shared {
    pub id: u64,
    pub cfg: NodeConfig,
    pub clock: Clock,
    node: Arc<NodeState>,
    /// All transports, in preference order, as configured.
    pub configured: Vec<Arc<dyn Transport>>,
    /// The transports that listen (set by `start`; a transport that could not listen is left
    /// out, with a warning).
    pub transports: OnceLock<Vec<Arc<dyn Transport>>>,
    pub ports: OnceLock<Vec<Arc<Port>>>,
    pub dials: Mutex<HashMap<DialId, PendingDial>>,
    /// Links held by the workers, against `max_connections`.
    pub admission: Admission,
    next_dial: AtomicU64,
    pub threads: Mutex<Vec<JoinHandle<()>>>,
}

// The node's fields and methods read as the messenger's (`s.registry`, `s.next_id()`).
impl Deref for Shared {
    type Target = NodeShared<Arc<NodeConnection>>;
    fn deref(&self) -> &Self::Target {
        &self.node
    }
}

static NEXT_NODE_ID: AtomicU64 = AtomicU64::new(0);

impl Shared {
    pub fn new(cfg: NodeConfig, transports: Vec<Arc<dyn Transport>>) -> Self {
        Shared {
            id: NEXT_NODE_ID.fetch_add(1, Ordering::Relaxed),
            clock: cfg.clock.clone(),
            node: Arc::new(NodeShared::new(
                cfg.name,
                cfg.bind,
                cfg.nonce,
                cfg.policies.clone(),
            )),
            admission: Admission::new(cfg.max_connections),
            cfg,
            configured: transports,
            transports: OnceLock::new(),
            ports: OnceLock::new(),
            dials: Mutex::new(HashMap::new()),
            next_dial: AtomicU64::new(1),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Queue a command for worker `idx` and wake it.
    pub fn send(&self, idx: usize, cmd: Cmd) {
        if let Some(ports) = self.ports.get() {
            ports[idx % ports.len()].send(cmd);
        }
    }

    pub fn workers(&self) -> usize {
        self.ports.get().map_or(1, |p| p.len())
    }

    pub fn transports(&self) -> &[Arc<dyn Transport>] {
        self.transports.get().map_or(&[], |t| t.as_slice())
    }

    pub fn next_dial(&self) -> DialId {
        self.next_dial.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection of this node around `session`.
    pub fn new_connection(
        self: &Arc<Self>,
        session: AnySession,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        announced: bool,
    ) -> Arc<NodeConnection> {
        let host: Arc<dyn Host> = self.clone();
        NodeConnection::new(
            &self.node, host, &self.cfg, session, peer_addr, peer_type, announced,
        )
    }
}

impl Host for Shared {
    fn dial(&self, conn: Arc<NodeConnection>) {
        self.send(conn.home_worker(), Cmd::Dial(conn));
    }
    fn flush(&self, l: LinkRef) {
        self.send(
            l.worker,
            Cmd::Drive {
                token: l.token,
                gen: l.gen,
            },
        );
    }
    fn close(&self, l: LinkRef) {
        self.send(
            l.worker,
            Cmd::Close {
                token: l.token,
                gen: l.gen,
            },
        );
    }
    fn dispatch(&self, worker: usize, conn: Arc<NodeConnection>) {
        self.send(worker, Cmd::Dispatch(conn));
    }
}
