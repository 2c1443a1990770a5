//! The TOML file as written (serde, unknown keys refused), and how its errors name keys.

use serde::Deserialize;

// ---- the file as written ------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) name: Option<String>,
    pub(super) transport: Option<String>,
    pub(super) transports: Option<Vec<String>>,
    pub(super) bind: Option<String>,
    pub(super) nonce: Option<u32>,
    pub(super) workers: Option<u64>,
    #[serde(default)]
    pub(super) policy: RawPolicies,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    #[serde(default)]
    pub(super) protocol: RawProtocol,
    #[serde(default)]
    pub(super) tcp: RawTcp,
    #[serde(default)]
    pub(super) rdma: RawRdma,
    #[serde(default)]
    pub(super) fault: RawFault,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicies {
    pub(super) default: Option<RawPolicy>,
    pub(super) mon: Option<RawPolicy>,
    pub(super) mds: Option<RawPolicy>,
    pub(super) osd: Option<RawPolicy>,
    pub(super) client: Option<RawPolicy>,
    pub(super) mgr: Option<RawPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) preset: Option<String>,
    pub(super) throttle_bytes: Option<u64>,
    pub(super) throttle_messages: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_front: Option<u32>,
    pub(super) max_middle: Option<u32>,
    pub(super) max_data: Option<u32>,
    pub(super) max_message: Option<u64>,
    pub(super) send_queue_bytes: Option<u64>,
    pub(super) max_connections: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) handshake_ms: Option<u64>,
    pub(super) keepalive_ms: Option<u64>,
    pub(super) idle_ms: Option<u64>,
    pub(super) reconnect_initial_ms: Option<u64>,
    pub(super) reconnect_max_ms: Option<u64>,
    pub(super) shutdown_flush_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProtocol {
    pub(super) crc_data: Option<bool>,
    pub(super) prefer: Option<String>,
    pub(super) accept: Option<Vec<String>>,
    pub(super) modes: Option<Vec<String>>,
    pub(super) auth: Option<String>,
    pub(super) auth_name: Option<String>,
    pub(super) keyring: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcp {
    pub(super) nodelay: Option<bool>,
    pub(super) busy_poll_us: Option<u64>,
    pub(super) send_buffer: Option<u64>,
    pub(super) recv_buffer: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRdma {
    pub(super) device: Option<String>,
    pub(super) port: Option<u64>,
    pub(super) gid_index: Option<u64>,
    pub(super) buffer_size: Option<u64>,
    pub(super) send_buffers: Option<u64>,
    pub(super) recv_buffers: Option<u64>,
    pub(super) poll_us: Option<u64>,
    pub(super) read_threshold: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) inject_socket_failures: Option<u64>,
}

/// The dotted key (`section.key`) of the line holding byte `offset` in `text`.
pub(super) fn key_at(text: &str, offset: usize) -> String {
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

pub(super) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
