//! What a session needs from its messenger: identity, features, limits, timeouts, authorizer.
//!
//! TODO(session helper): complete.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::policy::PolicySet;
use crate::wire::{DecodeLimits, EntityAddr, EntityName};

/// Messenger-wide global_seq counter shared by all its sessions (Ceph `get_global_seq`).
#[derive(Debug, Default)]
pub struct GlobalSeq(AtomicU32);

impl GlobalSeq {
    /// Next value, above both our last one and `at_least`.
    pub fn next(&self, at_least: u32) -> u32 {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = cur.max(at_least) + 1;
            match self
                .0
                .compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Builds and checks authorizers carried in connect / connect-reply.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// `CEPH_AUTH_*` protocol number (0 = none sent, 1 = "none").
    fn protocol(&self) -> u32;
    /// Authorizer bytes to send with our connect.
    fn build(&self, me: &EntityName) -> bytes::Bytes;
    /// Check a peer's authorizer; Ok(reply bytes) to accept.
    fn verify(&self, protocol: u32, authorizer: &[u8]) -> Result<bytes::Bytes, ()>;
}

/// Ceph's "none" authorizer: u8 version 1, EntityName, u64 global_id 0.
#[derive(Debug, Default)]
pub struct NoneAuthorizer;

/// Messenger-wide session settings.
#[derive(Debug)]
pub struct SessionConfig {
    pub my_name: EntityName,
    pub my_addr: EntityAddr,
    pub features_supported: u64,
    pub features_required: u64,
    pub limits: DecodeLimits,
    pub policies: PolicySet,
    pub handshake_timeout: Duration,
    pub keepalive_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub global_seq: Arc<GlobalSeq>,
    pub authorizer: Arc<dyn Authorizer>,
}
