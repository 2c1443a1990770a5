//! What a msgr2 session needs from its messenger beyond msgr1's [`SessionConfig`]: its address
//! vector, the Ceph feature bits it announces in IDENT frames, authentication and modes.

use std::sync::Arc;

use crate::auth::cephx::CryptoKey;
use crate::auth::MODE_CRC;
use crate::session::SessionConfig;
use crate::v2::{EntityAddrVec, FrameLimits};

/// Ceph feature bits a Pacific client announces in CLIENT_IDENT (captured from the `ceph` CLI);
/// a monitor requires several of them (MSG_ADDR2, the CRUSH tunables, SERVER_NAUTILUS, ...).
pub const PACIFIC_FEATURES: u64 = 0x3f01_cfbd_fffd_ffff;

/// How a session authenticates.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum V2Auth {
    /// `auth none`: the client claims a name and nobody checks it. Unauthenticated: use it only
    /// on a trusted network.
    None,
    /// cephx with the client's key from its keyring (client side; a server with cephx is not
    /// implemented and answers AUTH_BAD_METHOD offering auth none).
    Cephx {
        /// The key of `client.<entity_id>`.
        key: CryptoKey,
    },
}

/// Messenger-wide msgr2 settings.
#[derive(Debug)]
pub struct V2Config {
    /// Name, policies, timeouts, global_seq counter, ack batching (shared with msgr1).
    pub base: Arc<SessionConfig>,
    /// Our addresses as SERVER_IDENT / CLIENT_IDENT announce them.
    pub my_addrs: EntityAddrVec,
    /// Ceph feature bits announced in IDENT frames.
    pub features_supported: u64,
    /// Ceph feature bits a peer must have.
    pub features_required: u64,
    /// How we authenticate (client) or which method we accept (server).
    pub auth: V2Auth,
    /// The id half of our auth name (`admin` for `client.admin`).
    pub entity_id: String,
    /// Connection modes, preferred first (`MODE_CRC`, `MODE_SECURE`). A server picks the first
    /// of the client's it also has here.
    pub modes: Vec<u32>,
    /// Frame size limits checked before buffering.
    pub frame_limits: FrameLimits,
}

impl V2Config {
    /// Defaults: Pacific's feature bits, auth none, crc mode, default limits.
    pub fn new(base: Arc<SessionConfig>, my_addrs: EntityAddrVec) -> Self {
        V2Config {
            base,
            my_addrs,
            features_supported: PACIFIC_FEATURES,
            features_required: 0,
            auth: V2Auth::None,
            entity_id: "admin".to_string(),
            modes: vec![MODE_CRC],
            frame_limits: FrameLimits::default(),
        }
    }
}
