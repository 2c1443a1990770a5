//! [`RdmaMessenger`]: a convenience for "a node whose only transport is RDMA", with the
//! RDMA-specific extras (counters, registered buffers, QP fault injection) at hand. Everything
//! a messenger does is the node's ([`msgr_node::Node`], reached through `Deref`).

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use msgr_core::api::Messenger;
use msgr_core::wire::{EntityAddr, EntityName};
use msgr_node::{Node, NodeConfig};

use crate::counters::RdmaCounters;
use crate::error::RdmaError;
use crate::options::RdmaOptions;
use crate::transport::RdmaTransport;
use crate::verbs::RegisteredBuffer;

/// Everything an [`RdmaMessenger`] needs; [`RdmaConfig::new`] gives working defaults.
#[derive(Clone, Debug)]
pub struct RdmaConfig {
    /// The node's settings. `bind` must be an IP of the netdev under the RDMA device (port 0:
    /// any free one). `busy_poll` zero takes `rdma.poll_us`; `inject_failures` breaks QPs.
    pub node: NodeConfig,
    /// The `[rdma]` settings.
    pub rdma: RdmaOptions,
}

impl RdmaConfig {
    /// The node defaults of [`NodeConfig::new`], except one worker thread (RDMA links are
    /// cheap to drive; more workers spread queue pairs round-robin) and a first reconnect
    /// after 100 ms.
    pub fn new(name: EntityName, bind: SocketAddr) -> Self {
        let mut node = NodeConfig::new(name, bind);
        node.workers = 1;
        node.reconnect_initial = Duration::from_millis(100);
        RdmaConfig {
            node,
            rdma: RdmaOptions::default(),
        }
    }
}

/// A messenger speaking msgr1 over RDMA only: a [`Node`] with one [`RdmaTransport`]. Cheap to
/// clone (handles). The `Messenger` methods (`start`, `connect_to`, `shutdown` ...) are the
/// node's, through `Deref`.
#[derive(Clone, Debug)]
pub struct RdmaMessenger {
    /// The node (the messenger proper).
    pub node: Node,
    /// Its one transport, for RDMA extras (counters, registered buffers).
    pub transport: Arc<RdmaTransport>,
}

impl RdmaMessenger {
    /// A node over one RDMA transport, not started. `busy_poll` zero in `cfg.node` takes
    /// `cfg.rdma.poll_us`; the transport announces the node's entity type and nonce.
    pub fn new(cfg: RdmaConfig) -> Self {
        let RdmaConfig { mut node, rdma } = cfg;
        if node.busy_poll.is_zero() && rdma.poll_us > 0 {
            node.busy_poll = Duration::from_micros(rdma.poll_us);
        }
        let transport = RdmaTransport::for_node(&node, rdma);
        let node = Node::new(node, vec![transport.clone()]);
        // The nonce is the node's (a random one unless configured).
        transport.set_identity(node.my_name().kind.0, node.my_addr().nonce);
        RdmaMessenger { node, transport }
    }

    /// RDMA-level counters (buffers, credits, completion errors, RNR, READs), over the links
    /// live and gone.
    pub fn rdma_counters(&self) -> RdmaCounters {
        self.transport.counters()
    }

    /// See [`RdmaTransport::register_buffer`]: needs a started messenger bound to an RDMA
    /// device's address.
    pub fn register_buffer(&self, len: usize) -> Result<RegisteredBuffer, RdmaError> {
        self.transport.register_buffer(len)
    }

    /// Fault injection: force the queue pair of the connection to `addr` into the error state.
    /// A lossless session reconnects and replays; a lossy one is reset. False when there is no
    /// such connection or it has no link.
    pub fn inject_qp_error(&self, addr: &EntityAddr) -> bool {
        self.node.inject_failure(addr)
    }
}

impl Deref for RdmaMessenger {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msgr_core::wire::EntityType;

    #[test]
    fn defaults_are_the_old_rdma_messenger_ones() {
        let name = EntityName {
            kind: EntityType::OSD,
            num: 0,
        };
        let c = RdmaConfig::new(name, "10.0.0.1:0".parse().unwrap());
        assert_eq!(c.node.workers, 1);
        assert_eq!(c.node.reconnect_initial, Duration::from_millis(100));
        assert_eq!(c.node.reconnect_max, Duration::from_secs(15));
        assert_eq!(c.node.busy_poll, Duration::ZERO);
        assert_eq!(c.rdma, RdmaOptions::default());
    }

    #[test]
    fn poll_us_becomes_the_busy_poll_window_and_no_device_is_needed_before_start() {
        let name = EntityName {
            kind: EntityType::CLIENT,
            num: 1,
        };
        let mut c = RdmaConfig::new(name, "10.0.0.1:0".parse().unwrap());
        c.rdma.poll_us = 250;
        let m = RdmaMessenger::new(c);
        assert_eq!(m.config().busy_poll, Duration::from_micros(250));
        assert_eq!(m.transports(), vec!["rdma"]);
        assert_eq!(m.transport.options().max_read, 64 << 20, "decode limit");
        assert_eq!(m.rdma_counters(), RdmaCounters::default());
        m.shutdown();
    }
}
