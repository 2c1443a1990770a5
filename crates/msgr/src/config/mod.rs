//! The TOML configuration: schema (serde, unknown keys refused), validation, and the error
//! type, which always names the file, the key and what is allowed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use msgr_core::policy::PolicySet;
use msgr_core::wire::{DecodeLimits, EntityName};
use msgr_node::NodeConfig;
#[cfg(feature = "rdma")]
use msgr_rdma::{RdmaError, RdmaOptions};
#[cfg(feature = "tcp")]
use msgr_tcp::TcpOptions;

mod build;
mod raw;
#[cfg(test)]
mod tests;

use build::build;
pub use build::{entity_type, parse_entity_name};
use raw::{toml_error, RawConfig};

/// A configuration problem: `{file}: key "{key}": {what}` (`{file}: {what}` when it is about
/// the file as a whole, e.g. it cannot be read or is not TOML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or label) the configuration came from.
    pub file: String,
    /// The key at fault, dotted (`timeouts.idle_ms`); empty when about the whole file.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: key \"{}\": {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about `key` of `file`.
    pub fn new(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// A transport [`crate::from_config`] can put in a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// `"tcp"`: msgr-tcp (cargo feature `tcp`, on by default).
    Tcp,
    /// `"rdma"`: msgr-rdma (cargo feature `rdma`; needs an RDMA device).
    Rdma,
    /// In-process links between nodes of one process (tests, simulations).
    Mem,
}

impl Transport {
    /// Every name `transports` accepts.
    pub const NAMES: &'static [&'static str] = &["tcp", "rdma", "mem"];
    /// The name in the configuration (`"tcp"`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rdma => "rdma",
            Transport::Mem => "mem",
        }
    }
    /// The transport named `s`; None for an unknown name.
    pub fn from_name(s: &str) -> Option<Transport> {
        match s {
            "tcp" => Some(Transport::Tcp),
            "rdma" => Some(Transport::Rdma),
            "mem" => Some(Transport::Mem),
            _ => None,
        }
    }
}

/// `[limits]`: sizes checked before anything is allocated for a peer, and the send queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSection {
    /// `max_front`, `max_middle`, `max_data`, `max_message`, in bytes.
    pub decode: DecodeLimits,
    /// `send_queue_bytes`: payload bytes a connection queues before `QueueFull`.
    pub send_queue_bytes: u64,
    /// Links held at once; peers beyond it are closed on arrival (None: no limit).
    pub max_connections: Option<usize>,
}

/// `[timeouts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutsSection {
    /// `handshake_ms`: a peer that has not finished the handshake by then is disconnected.
    pub handshake: Duration,
    /// `keepalive_ms`: keepalive interval on open links (None: `0`, never).
    pub keepalive: Option<Duration>,
    /// `idle_ms`: drop a link that received nothing this long (None: `0`, never).
    pub idle: Option<Duration>,
    /// `reconnect_initial_ms`: first reconnect delay after a failed attempt.
    pub reconnect_initial: Duration,
    /// `reconnect_max_ms`: the reconnect delay doubles up to this.
    pub reconnect_max: Duration,
    /// `shutdown_flush_ms`: how long shutdown lets queued messages be written and acknowledged.
    pub shutdown_flush: Duration,
}

/// `[protocol]`: wire-protocol options (Ceph's `ms_*` names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolSection {
    /// Ceph `ms_crc_data`: checksum the data section of sent messages (default true).
    pub crc_data: bool,
}

impl Default for ProtocolSection {
    fn default() -> Self {
        ProtocolSection { crc_data: true }
    }
}

/// `[tcp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSection {
    /// `nodelay`: TCP_NODELAY on every socket.
    pub nodelay: bool,
    /// `busy_poll_us`: workers poll without sleeping this long after activity (zero: never).
    pub busy_poll: Duration,
    /// `send_buffer`: SO_SNDBUF in bytes (None: `0`, the kernel's default).
    pub send_buffer: Option<usize>,
    /// `recv_buffer`: SO_RCVBUF in bytes (None: `0`, the kernel's default).
    pub recv_buffer: Option<usize>,
}

/// `[rdma]` (parsed and checked here; used by the RDMA transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaSection {
    /// `device`: the RDMA device name (`rxe0`, `mlx5_0`; see `ibv_devices`).
    pub device: String,
    /// `port`: the device's port (1-based).
    pub port: u8,
    /// `gid_index`: GID table index, checked against the one rdma_cm picks (0 to 255).
    pub gid_index: u32,
    /// `buffer_size`: size of each registered send / receive buffer, in bytes.
    pub buffer_size: usize,
    /// `send_buffers`: registered send buffers per connection.
    pub send_buffers: usize,
    /// `recv_buffers`: registered receive buffers per connection (the peer's credits).
    pub recv_buffers: usize,
    /// `poll_us`: busy-poll the completion queues this many microseconds (0: never).
    pub poll_us: u64,
    /// `read_threshold`: payloads of at least this many bytes go by RDMA READ (0 = never).
    pub read_threshold: usize,
}

/// `[fault]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultSection {
    /// `inject_socket_failures`: break a link on about one in N drives of it (0: never).
    pub inject_socket_failures: u64,
}

/// A checked configuration. Fields are public so programs and tests can adjust them after
/// loading (e.g. `bind`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (file path, or a label), used in error messages.
    pub origin: String,
    /// `name`: our entity name (`osd.0`).
    pub name: EntityName,
    /// The transports, in order of preference (`transports = ["rdma", "tcp"]`, or a single
    /// `transport = "tcp"`): each peer is reached over the first that can reach it.
    pub transports: Vec<Transport>,
    /// `bind`: the address every transport listens on (port 0: a free one).
    pub bind: SocketAddr,
    /// `nonce`: our nonce (None: a random one per start).
    pub nonce: Option<u32>,
    /// `workers`: worker threads (1 to 256).
    pub workers: usize,
    /// `[policy.*]`: the session policy per peer type.
    pub policies: PolicySet,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[timeouts]`.
    pub timeouts: TimeoutsSection,
    /// `[protocol]`.
    pub protocol: ProtocolSection,
    /// `[tcp]`.
    pub tcp: TcpSection,
    /// `[rdma]`.
    pub rdma: RdmaSection,
    /// `[fault]`.
    pub fault: FaultSection,
}

// ---- loading ------------------------------------------------------------------------------

impl Config {
    /// Read and check a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: origin.clone(),
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_toml_str(&text, &origin)
    }

    /// Parse and check TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        build(raw, origin)
    }

    /// The defaults every key falls back to (a working TCP setup on 127.0.0.1).
    pub fn default_tcp(name: EntityName) -> Config {
        let mut c = build(RawConfig::default(), "<defaults>").expect("defaults are valid");
        c.name = name;
        c
    }

    /// Whether `t` is one of the node's transports.
    pub fn uses(&self, t: Transport) -> bool {
        self.transports.contains(&t)
    }

    /// The transport-independent settings of the node.
    pub fn node_config(&self) -> NodeConfig {
        let mut n = NodeConfig::new(self.name, self.bind);
        n.nonce = self.nonce;
        n.workers = self.workers;
        n.policies = self.policies.clone();
        n.limits = self.limits.decode;
        n.handshake_timeout = self.timeouts.handshake;
        n.keepalive_interval = self.timeouts.keepalive;
        n.idle_timeout = self.timeouts.idle;
        n.reconnect_initial = self.timeouts.reconnect_initial;
        n.reconnect_max = self.timeouts.reconnect_max;
        n.shutdown_flush = self.timeouts.shutdown_flush;
        n.send_queue_bytes = self.limits.send_queue_bytes;
        n.max_connections = self.limits.max_connections;
        n.crc_data = self.protocol.crc_data;
        n.inject_failures = self.fault.inject_socket_failures;
        // One event loop serves every transport: it busy-polls as long as the longest asks.
        let mut busy = Duration::ZERO;
        if self.uses(Transport::Tcp) {
            busy = busy.max(self.tcp.busy_poll);
        }
        if self.uses(Transport::Rdma) {
            busy = busy.max(Duration::from_micros(self.rdma.poll_us));
        }
        n.busy_poll = busy;
        n
    }

    /// The `[tcp]` socket options.
    #[cfg(feature = "tcp")]
    pub fn tcp_options(&self) -> TcpOptions {
        TcpOptions {
            nodelay: self.tcp.nodelay,
            send_buffer: self.tcp.send_buffer,
            recv_buffer: self.tcp.recv_buffer,
        }
    }

    #[cfg(feature = "rdma")]
    /// The `[rdma]` settings. Errors (a value msgr-rdma refuses) name the file and the
    /// `rdma.*` key.
    pub fn rdma_options(&self) -> Result<RdmaOptions, ConfigError> {
        let s = &self.rdma;
        let o = RdmaOptions {
            device: Some(s.device.clone()),
            port: s.port,
            // Checked to be at most 255 when the file was loaded.
            gid_index: Some(u8::try_from(s.gid_index).unwrap_or(u8::MAX)),
            buffer_size: s.buffer_size,
            send_buffers: s.send_buffers,
            recv_buffers: s.recv_buffers,
            poll_us: s.poll_us,
            read_threshold: s.read_threshold,
            ..RdmaOptions::default()
        };
        o.validate().map_err(|e| match e {
            RdmaError::BadOption { key, detail } => {
                ConfigError::new(&self.origin, &format!("rdma.{key}"), detail)
            }
            other => ConfigError::new(&self.origin, "rdma", other.to_string()),
        })?;
        Ok(o)
    }
}
