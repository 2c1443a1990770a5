//! The TOML configuration: schema (serde, unknown keys refused), validation, and the error
//! type, which always names the file, the key and what is allowed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use msgr_core::auth::cephx::CryptoKey;
use msgr_core::auth::MODE_CRC;
use msgr_core::policy::PolicySet;
use msgr_core::protocol::Protocol;
use msgr_core::session_v2::V2Auth;
use msgr_core::wire::{DecodeLimits, EntityName};
use msgr_node::{Msgr2Config, NodeConfig};
#[cfg(feature = "rdma")]
use msgr_rdma::{RdmaError, RdmaOptions};
#[cfg(feature = "tcp")]
use msgr_tcp::TcpOptions;

mod build;
mod embed;
mod raw;
#[cfg(test)]
mod tests;

use build::build;
pub use build::{entity_type, parse_entity_name};
pub use embed::load_toml;
use raw::RawConfig;

/// A configuration problem: `{file}:{line}: key "{key}": {what}` (no `:{line}` where toml
/// does not give it; no key when it is about the file as a whole, e.g. it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or the label given to [`load_toml`] / [`Config::from_toml_str`]).
    pub file: String,
    /// The dotted key path (`messenger.rdma.port`, `transports[1]`); empty for the whole file.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The line (from 1) toml points at, when it gives one.
    pub line: Option<usize>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key \"{}\"", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about `key` of `file` (no line).
    pub fn new(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
            line: None,
        }
    }
}

/// A transport [`crate::from_config`] can put in a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Kernel TCP sockets (always built).
    Tcp,
    /// RDMA verbs and rdma_cm (cargo feature `rdma`; needs a device or Soft-RoCE).
    Rdma,
    /// In-process links between nodes of one process (tests, simulations).
    Mem,
}

impl Transport {
    /// The names the config's `transports` list takes.
    pub const NAMES: &'static [&'static str] = &["tcp", "rdma", "mem"];
    /// The name in the config (`"tcp"`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rdma => "rdma",
            Transport::Mem => "mem",
        }
    }
    /// The transport a config name stands for; None for an unknown name.
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
    /// `max_front`, `max_middle`, `max_data`, `max_message`: a peer's message over these
    /// fails its link before anything is allocated.
    pub decode: DecodeLimits,
    /// Bytes queued per connection before `send_message` refuses (`QueueFull`).
    pub send_queue_bytes: u64,
    /// Links held at once; peers beyond it are closed on arrival (None: no limit).
    pub max_connections: Option<usize>,
}

/// `[timeouts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutsSection {
    /// `handshake_ms`: a handshake not done by then fails its link.
    pub handshake: Duration,
    /// `keepalive_ms`: a keepalive goes out this long after the last one (None: never).
    pub keepalive: Option<Duration>,
    /// `idle_ms`: a link with nothing received for this long is failed (None: never).
    pub idle: Option<Duration>,
    /// `reconnect_initial_ms`: the first reconnect backoff.
    pub reconnect_initial: Duration,
    /// `reconnect_max_ms`: the backoff doubles up to this.
    pub reconnect_max: Duration,
    /// `shutdown_flush_ms`: how long `shutdown` lets queued messages drain.
    pub shutdown_flush: Duration,
}

/// `[protocol]`: wire-protocol options (Ceph's `ms_*` names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolSection {
    /// Ceph `ms_crc_data`: checksum the data section of sent messages (default true).
    pub crc_data: bool,
    /// `prefer = "v1" | "v2"`: what `connect` speaks to a peer whose address has no `v1:` /
    /// `v2:` prefix (default v1, which every Ceph release speaks).
    pub prefer: Protocol,
    /// `accept = ["v1", "v2"]`: what peers may speak to us, on the one port (default both).
    pub accept: Vec<Protocol>,
    /// `modes = ["crc", "secure"]`: msgr2 connection modes, preferred first (default crc).
    pub modes: Vec<u32>,
    /// `auth_name = "client.admin"`: the name we authenticate as (msgr2).
    pub auth_name: String,
    /// `auth = "cephx"` with `keyring = PATH`: the key of `auth_name` read from the keyring
    /// (None: `auth = "none"`, the default).
    pub cephx_key: Option<CryptoKey>,
}

impl Default for ProtocolSection {
    fn default() -> Self {
        ProtocolSection {
            crc_data: true,
            prefer: Protocol::V1,
            accept: vec![Protocol::V1, Protocol::V2],
            modes: vec![MODE_CRC],
            auth_name: "client.admin".into(),
            cephx_key: None,
        }
    }
}

/// `[tcp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSection {
    /// `TCP_NODELAY` on every socket.
    pub nodelay: bool,
    /// `busy_poll_us`: workers poll without sleeping this long after activity (zero: never).
    pub busy_poll: Duration,
    /// `SO_SNDBUF` (None: the kernel's default).
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` (None: the kernel's default).
    pub recv_buffer: Option<usize>,
}

/// `[rdma]` (parsed and checked here; used by the RDMA transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaSection {
    /// The RDMA device (`rxe0`, `mlx5_0`; see `ibv_devices`).
    pub device: String,
    /// The device's port, from 1.
    pub port: u8,
    /// The GID table index (RoCE v2 is usually 1).
    pub gid_index: u32,
    /// Bytes per send / receive buffer.
    pub buffer_size: usize,
    /// Send buffers per link.
    pub send_buffers: usize,
    /// Receive buffers per link (credits the peer may use).
    pub recv_buffers: usize,
    /// Microseconds workers busy-poll completions after activity (0: event-driven).
    pub poll_us: u64,
    /// `read_threshold`: payloads of at least this many bytes go by RDMA READ (0 = never).
    pub read_threshold: usize,
}

/// `[fault]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultSection {
    /// Fail one link in about this many I/O operations (0: never; Ceph's
    /// `ms_inject_socket_failures`).
    pub inject_socket_failures: u64,
}

/// A checked configuration. Fields are public so programs and tests can adjust them after
/// loading (e.g. `bind`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (file path, or a label), used in error messages.
    pub origin: String,
    /// Our entity name (`name = "osd.0"`).
    pub name: EntityName,
    /// The transports, in order of preference (`transports = ["rdma", "tcp"]`, or a single
    /// `transport = "tcp"`): each peer is reached over the first that can reach it.
    pub transports: Vec<Transport>,
    /// The IP:PORT every transport listens on (port 0: any free port).
    pub bind: SocketAddr,
    /// Our address's nonce (None: a random one, as Ceph daemons do; monitors use 0).
    pub nonce: Option<u32>,
    /// Worker threads.
    pub workers: usize,
    /// `[policy.*]`: the session policy by peer type.
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
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&origin, "", format!("cannot read the file: {e}")))?;
        Self::from_toml_str(&text, &origin)
    }

    /// Parse and check TOML text; `origin` names it in errors. To embed the settings in a
    /// larger file, make `Config` a field of your own type and use [`load_toml`].
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        load_toml(text, origin)
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
        let p = &self.protocol;
        n.protocol = p.prefer;
        n.accept_v1 = p.accept.contains(&Protocol::V1);
        n.accept_v2 = p.accept.contains(&Protocol::V2);
        n.msgr2 = Msgr2Config {
            auth: match p.cephx_key {
                Some(key) => V2Auth::Cephx { key },
                None => V2Auth::None,
            },
            entity_id: p
                .auth_name
                .split_once('.')
                .map_or(p.auth_name.as_str(), |(_, id)| id)
                .to_string(),
            modes: p.modes.clone(),
        };
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
