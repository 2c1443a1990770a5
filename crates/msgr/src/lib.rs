//! # msgr
//!
//! The one entry point applications use: read a TOML file into a [`Config`], then
//! [`from_config`] builds the messenger of the transport the file names, behind the common
//! [`Messenger`] trait.
//!
//! ```no_run
//! let cfg = msgr::Config::from_file("config/tcp.toml")?;
//! let messenger = msgr::from_config(&cfg)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `config/tcp.toml` in the repository for every key, documented.

mod config;

use std::sync::Arc;

pub use config::{
    entity_type as config_entity_type, parse_entity_name, Config, ConfigError, FaultSection,
    LimitsSection, ProtocolSection, RdmaSection, TcpSection, TimeoutsSection, Transport,
};
pub use msgr_core::api::{
    Connection, ConnectionCounters, ConnectionRef, Dispatcher, Messenger, MessengerCounters,
    MessengerError,
};
pub use msgr_core::{EntityAddr, EntityName, EntityType, Message, Policy, Priority};

/// Errors of [`from_config`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration holds a value the transport refuses (names the file and the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Build the messenger the configuration names (not started: add a dispatcher, then `start`).
///
/// Over RDMA, a machine without an RDMA device fails at `start` with msgr-rdma's
/// "no RDMA device found ...; ... or use transport = \"tcp\"" error.
pub fn from_config(cfg: &Config) -> Result<Arc<dyn Messenger>, BuildError> {
    match cfg.transport {
        Transport::Tcp => Ok(Arc::new(msgr_tcp::TcpMessenger::new(cfg.tcp_config()))),
        Transport::Rdma => rdma(cfg),
    }
}

/// The RDMA arm: settings checked (errors name the file and the `rdma.*` key), then built.
fn rdma(cfg: &Config) -> Result<Arc<dyn Messenger>, BuildError> {
    Ok(Arc::new(rdma_from_config(cfg)?))
}

/// An RDMA messenger with its concrete type (for RDMA-only extras such as
/// `RdmaMessenger::rdma_counters`). Errors if the file names another transport.
pub fn rdma_from_config(cfg: &Config) -> Result<msgr_rdma::RdmaMessenger, ConfigError> {
    if cfg.transport != Transport::Rdma {
        return Err(ConfigError::new(
            &cfg.origin,
            "transport",
            format!("expected \"rdma\" here, got \"{}\"", cfg.transport.name()),
        ));
    }
    Ok(msgr_rdma::RdmaMessenger::new(cfg.rdma_config()?))
}

/// A TCP messenger with its concrete type (for TCP-only extras such as
/// `TcpConnection::send_message_timeout`). Errors if the file names another transport.
pub fn tcp_from_config(cfg: &Config) -> Result<msgr_tcp::TcpMessenger, ConfigError> {
    if cfg.transport != Transport::Tcp {
        return Err(ConfigError::new(
            &cfg.origin,
            "transport",
            format!("expected \"tcp\" here, got \"{}\"", cfg.transport.name()),
        ));
    }
    Ok(msgr_tcp::TcpMessenger::new(cfg.tcp_config()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Dispatcher for Nop {
        fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
    }

    #[test]
    fn rdma_transport_is_built_and_tcp_only_helpers_refuse_it() {
        let cfg = Config::from_toml_str("transport = \"rdma\"\n", "<rdma>").unwrap();
        let m = from_config(&cfg).unwrap();
        assert_eq!(m.my_name(), cfg.name);
        let e = tcp_from_config(&cfg).unwrap_err();
        assert_eq!(e.key, "transport");
        let tcp = Config::from_toml_str("", "<tcp>").unwrap();
        let Err(e) = rdma_from_config(&tcp) else {
            panic!("a TCP config gave an RDMA messenger")
        };
        assert_eq!(
            e.to_string(),
            "<tcp>: key \"transport\": expected \"rdma\" here, got \"tcp\""
        );
    }

    /// On a machine without an RDMA device (CI hosts, most laptops), `start` says so and
    /// points at Soft-RoCE and TCP. Where a device exists this check has nothing to look at.
    #[test]
    fn rdma_without_a_device_fails_at_start_with_a_hint() {
        if let Ok(devices) = msgr_rdma::verbs::list_devices() {
            eprintln!("RDMA devices present ({devices:?}): the no-device error cannot occur here");
            return;
        }
        let cfg = Config::from_toml_str("transport = \"rdma\"\n", "<rdma>").unwrap();
        let m = from_config(&cfg).unwrap();
        m.add_dispatcher(Arc::new(Nop));
        let e = m.start().unwrap_err().to_string();
        assert!(e.contains("no RDMA device found"), "{e}");
        assert!(e.contains("rdma link add rxe0 type rxe"), "{e}");
        assert!(e.contains("or use transport = \"tcp\""), "{e}");
        // A failed start leaves the messenger stoppable.
        m.shutdown();
    }
}
