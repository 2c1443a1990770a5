//! # msgr
//!
//! The one entry point applications use: read a TOML file into a [`Config`], then
//! [`from_config`] builds a [`Node`] (the messenger) with the transports the file lists, in
//! order of preference. Register a [`Dispatcher`] (your callbacks: messages, connects,
//! resets), `start` it, and send [`Message`]s to an entity address or on a [`Connection`].
//!
//! An echo server and a client over TCP on 127.0.0.1, in one process (the repository's
//! `crates/msgr/examples/echo.rs`, also the README's example):
//!
//! ```
#![doc = include_str!("../examples/echo.rs")]
//! ```
//!
//! From a file: `msgr::from_config(&msgr::Config::from_file("config/tcp.toml")?)`; see
//! `config/tcp.toml` in the repository for every key, documented.
//! Inside a daemon's own file: make [`Config`] a field of the daemon's config type (e.g. under
//! a `[messenger]` table) and read the file with [`load_toml`]; errors name the file, the key
//! path and the line.
//!
//! Errors: [`MessengerError`] says what to do; a transport that cannot start is
//! `MessengerError::Transport { transport, source }`, whose source downcasts to the
//! transport's own error (`RdmaError` with the `rdma` feature).
//!
//! Transports, by cargo feature: `tcp` (default), `rdma` (optional: needs libibverbs /
//! librdmacm headers and clang to build, an RDMA device to run), and `mem` (in-process links,
//! always built).
#![deny(missing_docs)]

mod config;

use std::sync::Arc;

pub use config::{
    entity_type as config_entity_type, load_toml, parse_entity_name, Config, ConfigError,
    FaultSection, LimitsSection, ProtocolSection, RdmaSection, TcpSection, TimeoutsSection,
    Transport,
};
pub use msgr_core::api::{
    Connection, ConnectionCounters, ConnectionRef, Dispatcher, Messenger, MessengerCounters,
    MessengerError,
};
pub use msgr_core::protocol::{parse_peer_addr, Protocol};
pub use msgr_core::{EntityAddr, EntityName, EntityType, Message, Policy, Priority};
pub use msgr_node::{ErrorClass, Msgr2Config, Node, NodeConfig, NodeConnection, TransportError};
/// The RDMA transport's error: what `MessengerError::Transport { transport: "rdma", source }`
/// downcasts to (`source.downcast_ref::<msgr::RdmaError>()`), e.g. `RdmaError::NoDevice` or
/// `RdmaError::Memlock`.
#[cfg(feature = "rdma")]
pub use msgr_rdma::RdmaError;

/// Errors of [`from_config`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration holds a value a transport refuses (names the file and the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A node and handles on the transports it was built with (for transport-specific extras).
#[derive(Clone)]
pub struct Built {
    /// The node (not started).
    pub node: Node,
    /// The RDMA transport, when the configuration lists it (`RdmaTransport::counters`,
    /// `register_buffer`).
    #[cfg(feature = "rdma")]
    pub rdma: Option<Arc<msgr_rdma::RdmaTransport>>,
}

/// Build the node the configuration describes (not started: add a dispatcher, then `start`).
///
/// With `transports = ["rdma", "tcp"]` on a machine without an RDMA device, `start` logs that
/// RDMA is not available and goes on over TCP; with `rdma` alone it fails with msgr-rdma's
/// "no RDMA device found ..." error.
pub fn from_config(cfg: &Config) -> Result<Node, BuildError> {
    Ok(build(cfg)?.node)
}

/// [`from_config`], keeping handles on the transports.
pub fn build(cfg: &Config) -> Result<Built, BuildError> {
    let node_cfg = cfg.node_config();
    let mut transports: Vec<Arc<dyn msgr_node::Transport>> = Vec::new();
    #[cfg(feature = "rdma")]
    let mut rdma = None;
    for t in &cfg.transports {
        match t {
            #[cfg(feature = "tcp")]
            Transport::Tcp => transports.push(msgr_tcp::TcpTransport::new(cfg.tcp_options())),
            #[cfg(not(feature = "tcp"))]
            Transport::Tcp => {
                return Err(ConfigError::new(
                    &cfg.origin,
                    "transports",
                    "\"tcp\" needs msgr built with the `tcp` cargo feature (on by default; \
                     it is off here because of `default-features = false`)",
                )
                .into())
            }
            Transport::Mem => {
                transports.push(msgr_mem::MemTransport::new(msgr_mem::MemNetwork::global()))
            }
            #[cfg(feature = "rdma")]
            Transport::Rdma => {
                let r = msgr_rdma::RdmaTransport::for_node(&node_cfg, cfg.rdma_options()?);
                rdma = Some(r.clone());
                transports.push(r);
            }
            #[cfg(not(feature = "rdma"))]
            Transport::Rdma => {
                return Err(ConfigError::new(
                    &cfg.origin,
                    "transports",
                    "\"rdma\" needs msgr built with the `rdma` cargo feature \
                     (e.g. `msgr = { version = \"*\", features = [\"rdma\"] }`), or use \"tcp\"",
                )
                .into())
            }
        }
    }
    Ok(Built {
        node: Node::new(node_cfg, transports),
        #[cfg(feature = "rdma")]
        rdma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "rdma")]
    struct Nop;
    #[cfg(feature = "rdma")]
    impl Dispatcher for Nop {
        fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
    }

    #[test]
    fn transports_in_order_of_preference() {
        let cfg = Config::from_toml_str("transports = [\"mem\", \"tcp\"]\n", "<both>").unwrap();
        let n = from_config(&cfg).unwrap();
        assert_eq!(n.transports(), vec!["mem", "tcp"]);
        assert_eq!(n.my_name(), cfg.name);
    }

    #[cfg(not(feature = "rdma"))]
    #[test]
    fn rdma_without_the_feature_says_which_feature() {
        let cfg = Config::from_toml_str("transport = \"rdma\"\n", "<rdma>").unwrap();
        let Err(e) = from_config(&cfg) else {
            panic!("built an RDMA node without the rdma feature")
        };
        let e = e.to_string();
        assert!(e.contains("`rdma` cargo feature"), "{e}");
        assert!(e.starts_with("<rdma>: key \"transports\""), "{e}");
    }

    /// On a machine without an RDMA device (CI hosts, most laptops), `start` says so and
    /// points at Soft-RoCE and TCP. Where a device exists this check has nothing to look at.
    #[cfg(feature = "rdma")]
    #[test]
    fn rdma_without_a_device_fails_at_start_with_a_hint() {
        if let Ok(devices) = msgr_rdma::verbs::list_devices() {
            eprintln!("RDMA devices present ({devices:?}): the no-device error cannot occur here");
            return;
        }
        let cfg = Config::from_toml_str("transport = \"rdma\"\n", "<rdma>").unwrap();
        let m = from_config(&cfg).unwrap();
        m.add_dispatcher(Arc::new(Nop));
        let err = m.start().unwrap_err();
        let e = err.to_string();
        assert!(e.contains("no RDMA device found"), "{e}");
        assert!(e.contains("rdma link add rxe0 type rxe"), "{e}");
        assert!(e.contains("or use transport = \"tcp\""), "{e}");
        // ... and as a value the application can match.
        match &err {
            MessengerError::Transport {
                transport: "rdma",
                source,
            } => assert!(
                matches!(source.downcast_ref(), Some(RdmaError::NoDevice { .. })),
                "{source:?}"
            ),
            other => panic!("expected MessengerError::Transport from rdma, got {other:?}"),
        }
        // A failed start leaves the messenger stoppable.
        m.shutdown();
    }

    /// Without a device, `["rdma", "tcp"]` starts over TCP alone (a warning, not an error).
    #[cfg(feature = "rdma")]
    #[test]
    fn rdma_then_tcp_without_a_device_falls_back_to_tcp() {
        if msgr_rdma::verbs::list_devices().is_ok() {
            eprintln!("RDMA devices present: nothing to fall back from here");
            return;
        }
        let cfg = Config::from_toml_str("transports = [\"rdma\", \"tcp\"]\n", "<both>").unwrap();
        let m = from_config(&cfg).unwrap();
        m.add_dispatcher(Arc::new(Nop));
        m.start().unwrap();
        assert_eq!(m.transports(), vec!["tcp"]);
        m.shutdown();
    }
}
