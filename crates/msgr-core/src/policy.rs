//! Per-peer-type connection policy, as Ceph's `Messenger::Policy`.
//!
//! A policy answers: what happens to a session when its link fails (lossy: drop it and tell the
//! owner; lossless: keep queues, reconnect, replay), who reconnects (the client, never a `server`),
//! whether an idle lossless server-side session waits in standby, and whether a peer that forgot the
//! session must be told (`resetcheck`).

use std::collections::HashMap;

use crate::wire::EntityType;

/// How a session behaves on faults and reconnects. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// On a fault the session is dropped and unacknowledged messages are lost (the owner is told).
    pub lossy: bool,
    /// This side never initiates a reconnect: it waits for the peer to come back.
    pub server: bool,
    /// After a fault with nothing queued, wait (standby) instead of reconnecting at once.
    pub standby: bool,
    /// Detect that the peer lost its session state (connect_seq 0 on a known session) and report it.
    pub resetcheck: bool,
    /// Feature bits the peer must support, on top of the protocol's own required set.
    pub features_required: u64,
    /// Throttle on bytes of received messages not yet released by the application (None = unlimited).
    pub throttle_bytes: Option<u64>,
    /// Throttle on number of received messages not yet released by the application (None = unlimited).
    pub throttle_messages: Option<u64>,
}

impl Policy {
    const fn base(lossy: bool, server: bool, standby: bool, resetcheck: bool) -> Self {
        Policy {
            lossy,
            server,
            standby,
            resetcheck,
            features_required: 0,
            throttle_bytes: None,
            throttle_messages: None,
        }
    }
    /// A client whose sessions are dropped on any fault (Ceph: clients talking to OSDs / monitors).
    pub const fn lossy_client() -> Self {
        Self::base(true, false, false, true)
    }
    /// A client that reconnects and replays after a fault.
    pub const fn lossless_client() -> Self {
        Self::base(false, false, false, true)
    }
    /// A server that keeps session state for reconnecting lossless clients, in standby when idle.
    pub const fn stateful_server() -> Self {
        Self::base(false, true, true, true)
    }
    /// A server that forgets a client as soon as its link fails.
    pub const fn stateless_server() -> Self {
        Self::base(true, true, false, false)
    }
    /// Symmetric lossless peers (Ceph: OSD to OSD): whoever has traffic reconnects.
    pub const fn lossless_peer() -> Self {
        Self::base(false, false, false, true)
    }
    /// Lossless peers that wait in standby when idle.
    pub const fn lossless_peer_reuse() -> Self {
        Self::base(false, false, true, true)
    }

    /// Look a preset up by its config name (`lossy_client`, `lossless_client`, ...).
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "lossy_client" => Self::lossy_client(),
            "lossless_client" => Self::lossless_client(),
            "stateful_server" => Self::stateful_server(),
            "stateless_server" => Self::stateless_server(),
            "lossless_peer" => Self::lossless_peer(),
            "lossless_peer_reuse" => Self::lossless_peer_reuse(),
            _ => return None,
        })
    }

    /// Names accepted by [`Policy::preset`], for error messages.
    pub const PRESETS: &'static [&'static str] = &[
        "lossy_client",
        "lossless_client",
        "stateful_server",
        "stateless_server",
        "lossless_peer",
        "lossless_peer_reuse",
    ];
}

/// The policies of one messenger: one per peer type, and a default for the others.
#[derive(Clone, Debug)]
pub struct PolicySet {
    default: Policy,
    by_type: HashMap<EntityType, Policy>,
}

impl PolicySet {
    /// `default` for every peer type, until [`PolicySet::set`] names one.
    pub fn new(default: Policy) -> Self {
        PolicySet {
            default,
            by_type: HashMap::new(),
        }
    }
    /// The policy for peers of `peer_type`.
    pub fn set(&mut self, peer_type: EntityType, policy: Policy) {
        self.by_type.insert(peer_type, policy);
    }
    /// The policy for peer types not [`PolicySet::set`].
    pub fn set_default(&mut self, policy: Policy) {
        self.default = policy;
    }
    /// The policy that applies to peers of `peer_type`.
    pub fn get(&self, peer_type: EntityType) -> &Policy {
        self.by_type.get(&peer_type).unwrap_or(&self.default)
    }
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet::new(Policy::lossless_peer())
    }
}
