//! Checking a parsed file: defaults, ranges, presets; every error names the key.

use std::net::SocketAddr;
use std::time::Duration;

use std::path::Path;

use msgr_core::auth::cephx::Keyring;
use msgr_core::auth::{MODE_CRC, MODE_SECURE};
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::protocol::Protocol;
use msgr_core::wire::{DecodeLimits, EntityName, EntityType};

use super::raw::{quoted_list, RawConfig, RawProtocol};
use super::*;

/// `osd.0`, `client.4121`, `client` (number not assigned): [`EntityName`]'s `FromStr`.
pub fn parse_entity_name(s: &str) -> Option<EntityName> {
    s.parse().ok()
}

/// `mon`, `mds`, `osd`, `client`, `mgr`: [`EntityType`]'s `FromStr`.
pub fn entity_type(s: &str) -> Option<EntityType> {
    s.parse().ok()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// `rdma.read_threshold` when the file gives none (msgr-rdma's default).
const DEFAULT_READ_THRESHOLD: usize = 64 << 10;

pub(super) fn build(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(origin, key, msg);

    let name_s = raw.name.unwrap_or_else(|| "client".into());
    let name: EntityName = name_s.parse().map_err(|e| err("name", format!("{e}")))?;

    let names: Vec<(String, String)> =
        match (raw.transport, raw.transports) {
            (Some(_), Some(_)) => return Err(err(
                "transports",
                "give either `transport = \"tcp\"` or `transports = [\"rdma\", \"tcp\"]`, not both"
                    .into(),
            )),
            (Some(t), None) => vec![("transport".into(), t)],
            (None, Some(list)) => list
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("transports[{i}]"), t))
                .collect(),
            (None, None) => vec![("transport".into(), "tcp".into())],
        };
    if names.is_empty() {
        return Err(err(
            "transports",
            format!(
                "expected at least one of {} (in order of preference), got an empty list",
                quoted_list(Transport::NAMES)
            ),
        ));
    }
    let mut transports = Vec::new();
    for (key, t) in names {
        let Some(tr) = Transport::from_name(&t) else {
            return Err(err(
                &key,
                format!(
                    "expected one of {}, got \"{t}\"",
                    quoted_list(Transport::NAMES)
                ),
            ));
        };
        if transports.contains(&tr) {
            return Err(err(&key, format!("\"{t}\" is listed twice")));
        }
        transports.push(tr);
    }

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
    let max_connections =
        match l.max_connections {
            Some(0) => return Err(err(
                "limits.max_connections",
                "expected a positive number of connections, got 0 (leave the key out for no limit)"
                    .into(),
            )),
            n => n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        };

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
        read_threshold: r.read_threshold.map_or(DEFAULT_READ_THRESHOLD, |v| {
            usize::try_from(v).unwrap_or(usize::MAX)
        }),
    };

    Ok(Config {
        origin: origin.to_string(),
        name,
        transports,
        bind,
        nonce: raw.nonce,
        workers: workers as usize,
        policies,
        limits: LimitsSection {
            decode,
            send_queue_bytes,
            max_connections,
        },
        timeouts,
        protocol: protocol_section(raw.protocol, origin)?,
        tcp,
        rdma,
        fault: FaultSection {
            inject_socket_failures: raw.fault.inject_socket_failures.unwrap_or(0),
        },
    })
}

/// `[protocol]`: protocols, msgr2 modes, authentication (the keyring is read here, so a
/// missing file or key is an error naming `protocol.keyring`).
fn protocol_section(raw: RawProtocol, origin: &str) -> Result<ProtocolSection, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(origin, key, msg);
    let d = ProtocolSection::default();
    let prefer = match raw.prefer {
        Some(p) => p.parse().map_err(|e| err("protocol.prefer", e))?,
        None => d.prefer,
    };
    let accept = match raw.accept {
        Some(list) => {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                out.push(
                    p.parse::<Protocol>()
                        .map_err(|e| err(&format!("protocol.accept[{i}]"), e))?,
                );
            }
            if out.is_empty() {
                return Err(err(
                    "protocol.accept",
                    "expected at least one of \"v1\", \"v2\"; an empty list accepts nobody".into(),
                ));
            }
            out
        }
        None => d.accept,
    };
    let modes = match raw.modes {
        Some(list) => {
            let mut out = Vec::new();
            for (i, m) in list.iter().enumerate() {
                out.push(match m.as_str() {
                    "crc" => MODE_CRC,
                    "secure" => MODE_SECURE,
                    other => {
                        return Err(err(
                            &format!("protocol.modes[{i}]"),
                            format!(
                                "unknown msgr2 mode \"{other}\": expected \"crc\" or \"secure\""
                            ),
                        ))
                    }
                });
            }
            if out.is_empty() {
                return Err(err(
                    "protocol.modes",
                    "expected at least one of \"crc\", \"secure\"".into(),
                ));
            }
            out
        }
        None => d.modes,
    };
    let auth_name = raw.auth_name.unwrap_or(d.auth_name);
    let cephx_key = match (raw.auth.as_deref().unwrap_or("none"), raw.keyring) {
        ("none", None) => None,
        ("none", Some(_)) => {
            return Err(err(
                "protocol.keyring",
                "a keyring is only read with auth = \"cephx\": set that, or drop the keyring"
                    .into(),
            ))
        }
        ("cephx", None) => {
            return Err(err(
                "protocol.keyring",
                "auth = \"cephx\" needs the keyring file with our key (Ceph's format: \
                 [client.admin] key = ...)"
                    .into(),
            ))
        }
        ("cephx", Some(path)) => {
            // The keyring's errors name the file (and line).
            let keyring = Keyring::load(Path::new(&path))
                .map_err(|e| err("protocol.keyring", e.to_string()))?;
            Some(
                *keyring
                    .get(&auth_name)
                    .map_err(|e| err("protocol.keyring", e.to_string()))?,
            )
        }
        (other, _) => {
            return Err(err(
                "protocol.auth",
                format!("unknown auth method \"{other}\": expected \"none\" or \"cephx\""),
            ))
        }
    };
    Ok(ProtocolSection {
        crc_data: raw.crc_data.unwrap_or(d.crc_data),
        prefer,
        accept,
        modes,
        auth_name,
        cephx_key,
    })
}
