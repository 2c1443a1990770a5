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
    #[error("{origin}: this build has no RDMA transport yet; use transport = \"tcp\"")]
    NoRdma { origin: String },
}

/// Build the messenger the configuration names (not started: add a dispatcher, then `start`).
pub fn from_config(cfg: &Config) -> Result<Arc<dyn Messenger>, BuildError> {
    match cfg.transport {
        Transport::Tcp => Ok(Arc::new(msgr_tcp::TcpMessenger::new(cfg.tcp_config()))),
        Transport::Rdma => rdma(cfg),
    }
}

/// The RDMA arm, kept in one place: the lead wires `msgr-rdma` in here.
fn rdma(cfg: &Config) -> Result<Arc<dyn Messenger>, BuildError> {
    Err(BuildError::NoRdma {
        origin: cfg.origin.clone(),
    })
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
