//! The TOML configuration: schema (serde, unknown keys refused), validation, and the error
//! type, which always names the file, the key and what is allowed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use msgr_core::policy::{Policy, PolicySet};
use msgr_core::wire::{DecodeLimits, EntityName, EntityType};
use msgr_rdma::{RdmaConfig, RdmaError, RdmaOptions};
use msgr_tcp::TcpConfig;

/// A configuration problem: `{file}: key "{key}": {what}` (`{file}: {what}` when it is about
/// the file as a whole, e.g. it cannot be read or is not TOML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
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
    pub fn new(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Which transport [`crate::from_config`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Rdma,
}

impl Transport {
    pub const NAMES: &'static [&'static str] = &["tcp", "rdma"];
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rdma => "rdma",
        }
    }
}

/// `[limits]`: sizes checked before anything is allocated for a peer, and the send queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSection {
    pub decode: DecodeLimits,
    pub send_queue_bytes: u64,
}

/// `[timeouts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutsSection {
    pub handshake: Duration,
    pub keepalive: Option<Duration>,
    pub idle: Option<Duration>,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
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
    pub nodelay: bool,
    /// Workers poll without sleeping this long after activity (zero: never).
    pub busy_poll: Duration,
    pub send_buffer: Option<usize>,
    pub recv_buffer: Option<usize>,
}

/// `[rdma]` (parsed and checked here; used by the RDMA transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaSection {
    pub device: String,
    pub port: u8,
    pub gid_index: u32,
    pub buffer_size: usize,
    pub send_buffers: usize,
    pub recv_buffers: usize,
    pub poll_us: u64,
    /// Payloads of at least this many bytes go by RDMA READ (0 = never).
    pub read_threshold: usize,
}

/// `[fault]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultSection {
    pub inject_socket_failures: u64,
}

/// A checked configuration. Fields are public so programs and tests can adjust them after
/// loading (e.g. `bind`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (file path, or a label), used in error messages.
    pub origin: String,
    pub name: EntityName,
    pub transport: Transport,
    pub bind: SocketAddr,
    pub nonce: Option<u32>,
    pub workers: usize,
    pub policies: PolicySet,
    pub limits: LimitsSection,
    pub timeouts: TimeoutsSection,
    pub protocol: ProtocolSection,
    pub tcp: TcpSection,
    pub rdma: RdmaSection,
    pub fault: FaultSection,
}

// ---- the file as written ------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    transport: Option<String>,
    bind: Option<String>,
    nonce: Option<u32>,
    workers: Option<u64>,
    #[serde(default)]
    policy: RawPolicies,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    protocol: RawProtocol,
    #[serde(default)]
    tcp: RawTcp,
    #[serde(default)]
    rdma: RawRdma,
    #[serde(default)]
    fault: RawFault,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    default: Option<RawPolicy>,
    mon: Option<RawPolicy>,
    mds: Option<RawPolicy>,
    osd: Option<RawPolicy>,
    client: Option<RawPolicy>,
    mgr: Option<RawPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    preset: Option<String>,
    throttle_bytes: Option<u64>,
    throttle_messages: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_front: Option<u32>,
    max_middle: Option<u32>,
    max_data: Option<u32>,
    max_message: Option<u64>,
    send_queue_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    handshake_ms: Option<u64>,
    keepalive_ms: Option<u64>,
    idle_ms: Option<u64>,
    reconnect_initial_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    shutdown_flush_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    crc_data: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    nodelay: Option<bool>,
    busy_poll_us: Option<u64>,
    send_buffer: Option<u64>,
    recv_buffer: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRdma {
    device: Option<String>,
    port: Option<u64>,
    gid_index: Option<u64>,
    buffer_size: Option<u64>,
    send_buffers: Option<u64>,
    recv_buffers: Option<u64>,
    poll_us: Option<u64>,
    read_threshold: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFault {
    inject_socket_failures: Option<u64>,
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

    /// The TCP transport's settings.
    pub fn tcp_config(&self) -> TcpConfig {
        let mut t = TcpConfig::new(self.name, self.bind);
        t.nonce = self.nonce;
        t.workers = self.workers;
        t.policies = self.policies.clone();
        t.limits = self.limits.decode;
        t.handshake_timeout = self.timeouts.handshake;
        t.keepalive_interval = self.timeouts.keepalive;
        t.idle_timeout = self.timeouts.idle;
        t.reconnect_initial = self.timeouts.reconnect_initial;
        t.reconnect_max = self.timeouts.reconnect_max;
        t.shutdown_flush = self.timeouts.shutdown_flush;
        t.send_queue_bytes = self.limits.send_queue_bytes;
        t.crc_data = self.protocol.crc_data;
        t.nodelay = self.tcp.nodelay;
        t.busy_poll = self.tcp.busy_poll;
        t.send_buffer = self.tcp.send_buffer;
        t.recv_buffer = self.tcp.recv_buffer;
        t.inject_socket_failures = self.fault.inject_socket_failures;
        t
    }

    /// The RDMA transport's settings: the common keys plus `[rdma]`. Errors (a value
    /// msgr-rdma refuses) name the file and the `rdma.*` key.
    ///
    /// `workers` is the number of reactor threads; `[fault] inject_socket_failures` becomes
    /// the RDMA counterpart, QP failures on about one in N reactor steps of a link.
    pub fn rdma_config(&self) -> Result<RdmaConfig, ConfigError> {
        let mut r = RdmaConfig::new(self.name, self.bind);
        r.nonce = self.nonce;
        r.policies = self.policies.clone();
        r.limits = self.limits.decode;
        r.handshake_timeout = self.timeouts.handshake;
        r.keepalive_interval = self.timeouts.keepalive;
        r.idle_timeout = self.timeouts.idle;
        r.reconnect_initial = self.timeouts.reconnect_initial;
        r.reconnect_max = self.timeouts.reconnect_max;
        r.send_queue_bytes = self.limits.send_queue_bytes;
        r.crc_data = self.protocol.crc_data;
        r.inject_qp_failures = self.fault.inject_socket_failures;
        r.workers = self.workers;
        let s = &self.rdma;
        r.rdma = RdmaOptions {
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
        r.rdma.validate().map_err(|e| match e {
            RdmaError::BadOption { key, detail } => {
                ConfigError::new(&self.origin, &format!("rdma.{key}"), detail)
            }
            other => ConfigError::new(&self.origin, "rdma", other.to_string()),
        })?;
        Ok(r)
    }
}

/// Turn a toml / serde error into "file: key ...: what", finding the key from the error's span.
fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let key = e
        .span()
        .map(|span| key_at(text, span.start))
        .unwrap_or_default();
    // serde names an unknown key in the message; prefer it over the span's line.
    let key = match message.strip_prefix("unknown field `") {
        Some(rest) => {
            let field = rest.split('`').next().unwrap_or("");
            let section = key.rsplit_once('.').map(|(s, _)| s.to_string());
            match section {
                Some(s) if !key.ends_with(field) => format!("{s}.{field}"),
                _ if key.ends_with(field) => key,
                _ => field.to_string(),
            }
        }
        None => key,
    };
    ConfigError {
        file: origin.to_string(),
        key,
        message,
    }
}

/// The dotted key (`section.key`) of the line holding byte `offset` in `text`.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let trimmed = line.trim();
    let mut section = String::new();
    for l in text[..line_start].lines().rev() {
        let l = l.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            break;
        }
    }
    if trimmed.starts_with('[') {
        return trimmed
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    }
    let key = trimmed
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .to_string();
    if section.is_empty() {
        key
    } else {
        format!("{section}.{key}")
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `osd.0`, `client.4121`, `client` (number not assigned).
pub fn parse_entity_name(s: &str) -> Option<EntityName> {
    let (t, num) = match s.split_once('.') {
        Some((t, n)) => (t, n.parse::<i64>().ok().filter(|n| *n >= 0)?),
        None => (s, -1),
    };
    Some(EntityName::new(entity_type(t)?, num))
}

const ENTITY_TYPES: &[&str] = &["mon", "mds", "osd", "client", "mgr"];

/// `mon`, `mds`, `osd`, `client`, `mgr`.
pub fn entity_type(s: &str) -> Option<EntityType> {
    Some(match s {
        "mon" => EntityType::MON,
        "mds" => EntityType::MDS,
        "osd" => EntityType::OSD,
        "client" => EntityType::CLIENT,
        "mgr" => EntityType::MGR,
        _ => return None,
    })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn build(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(origin, key, msg);

    let name_s = raw.name.unwrap_or_else(|| "client".into());
    let name = parse_entity_name(&name_s).ok_or_else(|| {
        err(
            "name",
            format!(
                "expected TYPE.NUMBER or TYPE with TYPE one of {} (e.g. \"osd.0\"), got \"{name_s}\"",
                quoted_list(ENTITY_TYPES)
            ),
        )
    })?;

    let transport = match raw.transport.as_deref().unwrap_or("tcp") {
        "tcp" => Transport::Tcp,
        "rdma" => Transport::Rdma,
        other => {
            return Err(err(
                "transport",
                format!(
                    "expected one of {}, got \"{other}\"",
                    quoted_list(Transport::NAMES)
                ),
            ))
        }
    };

    let bind_s = raw.bind.unwrap_or_else(|| "127.0.0.1:0".into());
    let bind: SocketAddr = bind_s.parse().map_err(|_| {
        err(
            "bind",
            format!("expected IP:PORT (e.g. \"127.0.0.1:6800\", \"[::1]:0\"), got \"{bind_s}\""),
        )
    })?;

    let workers = raw.workers.unwrap_or(2);
    if !(1..=256).contains(&workers) {
        return Err(err(
            "workers",
            format!("expected a number from 1 to 256, got {workers}"),
        ));
    }

    let mut policies = PolicySet::default();
    let p = raw.policy;
    let sections = [
        ("default", None, p.default),
        ("mon", Some(EntityType::MON), p.mon),
        ("mds", Some(EntityType::MDS), p.mds),
        ("osd", Some(EntityType::OSD), p.osd),
        ("client", Some(EntityType::CLIENT), p.client),
        ("mgr", Some(EntityType::MGR), p.mgr),
    ];
    for (label, ty, rp) in sections {
        let Some(rp) = rp else { continue };
        let key = format!("policy.{label}");
        let preset = rp.preset.as_deref().unwrap_or("lossless_peer");
        let mut pol = Policy::preset(preset).ok_or_else(|| {
            err(
                &format!("{key}.preset"),
                format!(
                    "expected one of {}, got \"{preset}\"",
                    quoted_list(Policy::PRESETS)
                ),
            )
        })?;
        if rp.throttle_bytes == Some(0) {
            return Err(err(
                &format!("{key}.throttle_bytes"),
                "expected a positive number of bytes (leave the key out for no limit), got 0"
                    .into(),
            ));
        }
        if rp.throttle_messages == Some(0) {
            return Err(err(
                &format!("{key}.throttle_messages"),
                "expected a positive number of messages (leave the key out for no limit), got 0"
                    .into(),
            ));
        }
        pol.throttle_bytes = rp.throttle_bytes;
        pol.throttle_messages = rp.throttle_messages;
        match ty {
            None => policies.set_default(pol),
            Some(t) => policies.set(t, pol),
        }
    }

    let d = DecodeLimits::default();
    let l = raw.limits;
    let decode = DecodeLimits {
        max_front: l.max_front.unwrap_or(d.max_front),
        max_middle: l.max_middle.unwrap_or(d.max_middle),
        max_data: l.max_data.unwrap_or(d.max_data),
        max_message: l.max_message.unwrap_or(d.max_message),
    };
    for (k, v) in [
        ("limits.max_front", decode.max_front as u64),
        ("limits.max_data", decode.max_data as u64),
        ("limits.max_message", decode.max_message),
    ] {
        if v == 0 {
            return Err(err(k, "expected a positive number of bytes, got 0".into()));
        }
    }
    let send_queue_bytes = l.send_queue_bytes.unwrap_or(256 << 20);
    if send_queue_bytes == 0 {
        return Err(err(
            "limits.send_queue_bytes",
            "expected a positive number of bytes, got 0".into(),
        ));
    }

    let t = raw.timeouts;
    let handshake_ms = t.handshake_ms.unwrap_or(30_000);
    if handshake_ms == 0 {
        return Err(err(
            "timeouts.handshake_ms",
            "expected a positive number of milliseconds, got 0".into(),
        ));
    }
    let reconnect_initial = ms(t.reconnect_initial_ms.unwrap_or(200));
    let reconnect_max = ms(t.reconnect_max_ms.unwrap_or(15_000));
    if reconnect_max < reconnect_initial {
        return Err(err(
            "timeouts.reconnect_max_ms",
            format!(
                "expected at least reconnect_initial_ms ({}), got {}",
                reconnect_initial.as_millis(),
                reconnect_max.as_millis()
            ),
        ));
    }
    let timeouts = TimeoutsSection {
        handshake: ms(handshake_ms),
        keepalive: t.keepalive_ms.or(Some(10_000)).filter(|v| *v > 0).map(ms),
        idle: t.idle_ms.or(Some(900_000)).filter(|v| *v > 0).map(ms),
        reconnect_initial,
        reconnect_max,
        shutdown_flush: ms(t.shutdown_flush_ms.unwrap_or(2_000)),
    };

    if raw.tcp.busy_poll_us.is_some_and(|v| v > 1_000_000) {
        return Err(err(
            "tcp.busy_poll_us",
            "expected microseconds from 0 to 1000000 (0 = never busy-poll)".into(),
        ));
    }
    let tcp = TcpSection {
        nodelay: raw.tcp.nodelay.unwrap_or(true),
        busy_poll: Duration::from_micros(raw.tcp.busy_poll_us.unwrap_or(0)),
        send_buffer: raw.tcp.send_buffer.filter(|v| *v > 0).map(|v| v as usize),
        recv_buffer: raw.tcp.recv_buffer.filter(|v| *v > 0).map(|v| v as usize),
    };

    let r = raw.rdma;
    let port = r.port.unwrap_or(1);
    if !(1..=255).contains(&port) {
        return Err(err(
            "rdma.port",
            format!("expected a port number from 1 to 255, got {port}"),
        ));
    }
    let gid_index = r.gid_index.unwrap_or(1);
    if gid_index > 255 {
        return Err(err(
            "rdma.gid_index",
            format!("expected a GID table index from 0 to 255, got {gid_index}"),
        ));
    }
    let buffer_size = r.buffer_size.unwrap_or(64 << 10);
    if !(4096..=(16 << 20)).contains(&buffer_size) {
        return Err(err(
            "rdma.buffer_size",
            format!("expected bytes from 4096 to 16777216, got {buffer_size}"),
        ));
    }
    // Lower bounds as msgr-rdma's `RdmaOptions::validate`: two send buffers keep one SEND in
    // flight while the next is filled; credit-based flow control needs four receive buffers.
    let mut counts = [0usize; 2];
    for (i, (k, v, min)) in [
        ("rdma.send_buffers", r.send_buffers.unwrap_or(32), 2),
        ("rdma.recv_buffers", r.recv_buffers.unwrap_or(32), 4),
    ]
    .into_iter()
    .enumerate()
    {
        if !(min..=65536).contains(&v) {
            return Err(err(
                k,
                format!("expected a count from {min} to 65536, got {v}"),
            ));
        }
        counts[i] = v as usize;
    }
    let device = r.device.unwrap_or_else(|| "rxe0".into());
    if device.is_empty() {
        return Err(err(
            "rdma.device",
            "expected an RDMA device name such as \"rxe0\" or \"mlx5_0\" (see `ibv_devices`), got \"\""
                .into(),
        ));
    }
    let rdma = RdmaSection {
        device,
        port: port as u8,
        gid_index: gid_index as u32,
        buffer_size: buffer_size as usize,
        send_buffers: counts[0],
        recv_buffers: counts[1],
        poll_us: r.poll_us.unwrap_or(0),
        read_threshold: r
            .read_threshold
            .map_or(RdmaOptions::default().read_threshold, |v| {
                usize::try_from(v).unwrap_or(usize::MAX)
            }),
    };

    Ok(Config {
        origin: origin.to_string(),
        name,
        transport,
        bind,
        nonce: raw.nonce,
        workers: workers as usize,
        policies,
        limits: LimitsSection {
            decode,
            send_queue_bytes,
        },
        timeouts,
        protocol: ProtocolSection {
            crc_data: raw.protocol.crc_data.unwrap_or(true),
        },
        tcp,
        rdma,
        fault: FaultSection {
            inject_socket_failures: raw.fault.inject_socket_failures.unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(s, "config/test.toml")
    }

    #[test]
    fn empty_file_gives_working_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(c.workers, 2);
        assert_eq!(c.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.name, EntityName::new(EntityType::CLIENT, -1));
    }

    #[test]
    fn bad_transport_names_file_key_and_choices() {
        let e = parse("transport = \"udp\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config/test.toml: key \"transport\": expected one of \"tcp\", \"rdma\", got \"udp\""
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let e = parse("[tcp]\nnodelay = true\nno_delay = false\n").unwrap_err();
        assert_eq!(e.key, "tcp.no_delay", "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = parse("colour = 3\n").unwrap_err();
        assert_eq!(e.key, "colour", "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse("[tcp]\nnodelay = \"yes\"\n").unwrap_err();
        assert_eq!(e.key, "tcp.nodelay", "{e}");
        let e = parse("workers = 0\n").unwrap_err();
        assert_eq!(e.key, "workers");
        assert!(e.message.contains("1 to 256"));
    }

    #[test]
    fn policies_by_peer_type_with_throttles() {
        let c = parse(
            "[policy.client]\npreset = \"stateful_server\"\nthrottle_messages = 8\n\
             [policy.default]\npreset = \"lossy_client\"\n",
        )
        .unwrap();
        let p = c.policies.get(EntityType::CLIENT);
        assert!(p.server && !p.lossy);
        assert_eq!(p.throttle_messages, Some(8));
        assert!(c.policies.get(EntityType::OSD).lossy);
        let e = parse("[policy.osd]\npreset = \"lossless\"\n").unwrap_err();
        assert_eq!(e.key, "policy.osd.preset");
        assert!(e.message.contains("\"lossless_peer\""), "{e}");
    }

    #[test]
    fn names_and_rdma_are_checked() {
        assert_eq!(
            parse_entity_name("osd.3"),
            Some(EntityName::new(EntityType::OSD, 3))
        );
        assert_eq!(parse_entity_name("osd.x"), None);
        let e = parse("name = \"disk.0\"\n").unwrap_err();
        assert_eq!(e.key, "name");
        let e = parse("[rdma]\nport = 0\n").unwrap_err();
        assert_eq!(e.key, "rdma.port");
        let c = parse("transport = \"rdma\"\n[rdma]\ndevice = \"mlx5_0\"\n").unwrap();
        assert_eq!(c.rdma.device, "mlx5_0");
        assert_eq!(c.transport, Transport::Rdma);
    }

    #[test]
    fn crc_data_defaults_on_and_reaches_the_transport() {
        let c = parse("").unwrap();
        assert!(c.protocol.crc_data);
        assert!(c.tcp_config().crc_data);
        let c = parse("[protocol]\ncrc_data = false\n").unwrap();
        assert!(!c.protocol.crc_data);
        assert!(!c.tcp_config().crc_data);
        let e = parse("[protocol]\ncrc_data = 0\n").unwrap_err();
        assert_eq!(e.key, "protocol.crc_data", "{e}");
        let e = parse("[protocol]\nms_crc_data = false\n").unwrap_err();
        assert_eq!(e.key, "protocol.ms_crc_data", "{e}");
    }

    #[test]
    fn rdma_config_maps_common_keys_and_the_rdma_table() {
        let c = parse(
            "name = \"osd.7\"\ntransport = \"rdma\"\nbind = \"10.0.2.15:6801\"\nnonce = 99\n\
             [policy.client]\npreset = \"stateful_server\"\n\
             [limits]\nmax_front = 1000\nmax_data = 2000\nsend_queue_bytes = 4096\n\
             [timeouts]\nhandshake_ms = 1500\nkeepalive_ms = 0\nidle_ms = 7000\n\
             reconnect_initial_ms = 3\nreconnect_max_ms = 40\n\
             [protocol]\ncrc_data = false\n[fault]\ninject_socket_failures = 50\n\
             [rdma]\ndevice = \"mlx5_1\"\nport = 2\ngid_index = 3\nbuffer_size = 8192\n\
             send_buffers = 2\nrecv_buffers = 4\npoll_us = 25\nread_threshold = 0\n",
        )
        .unwrap();
        let r = c.rdma_config().unwrap();
        assert_eq!(r.name, EntityName::new(EntityType::OSD, 7));
        assert_eq!(r.bind, "10.0.2.15:6801".parse().unwrap());
        assert_eq!(r.nonce, Some(99));
        assert!(r.policies.get(EntityType::CLIENT).server);
        assert_eq!((r.limits.max_front, r.limits.max_data), (1000, 2000));
        assert_eq!(r.send_queue_bytes, 4096);
        assert_eq!(r.handshake_timeout, Duration::from_millis(1500));
        assert_eq!(r.keepalive_interval, None);
        assert_eq!(r.idle_timeout, Some(Duration::from_millis(7000)));
        assert_eq!(r.reconnect_initial, Duration::from_millis(3));
        assert_eq!(r.reconnect_max, Duration::from_millis(40));
        assert!(!r.crc_data);
        assert_eq!(r.inject_qp_failures, 50);
        assert_eq!(r.workers, 2, "the default number of workers");
        let o = &r.rdma;
        assert_eq!(o.device.as_deref(), Some("mlx5_1"));
        assert_eq!((o.port, o.gid_index), (2, Some(3)));
        assert_eq!(
            (o.buffer_size, o.send_buffers, o.recv_buffers),
            (8192, 2, 4)
        );
        assert_eq!(o.poll_us, 25);
        assert_eq!(o.read_threshold, 0);
    }

    #[test]
    fn rdma_buffer_counts_have_the_transports_lower_bounds() {
        let e = parse("[rdma]\nsend_buffers = 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config/test.toml: key \"rdma.send_buffers\": expected a count from 2 to 65536, got 1"
        );
        let e = parse("[rdma]\nrecv_buffers = 3\n").unwrap_err();
        assert_eq!(e.key, "rdma.recv_buffers", "{e}");
        assert!(e.message.contains("from 4 to"), "{e}");
        // Whatever the loader lets through, the transport accepts.
        let c =
            parse("transport = \"rdma\"\n[rdma]\nsend_buffers = 2\nrecv_buffers = 4\n").unwrap();
        c.rdma_config().unwrap();
        // A value only the transport checks still names the file and key.
        let mut c = c;
        c.rdma.recv_buffers = 3;
        let e = c.rdma_config().unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("config/test.toml", "rdma.recv_buffers")
        );
    }

    #[test]
    fn shipped_configs_load() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
        for f in ["tcp.toml", "rdma.toml"] {
            let c = Config::from_file(format!("{root}/{f}"));
            assert!(c.is_ok(), "{f}: {:?}", c.err());
        }
    }
}
