//! What a session needs from its messenger: identity, features, limits, timeouts, authorizer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::policy::PolicySet;
use crate::wire::{features, DecodeLimits, EntityAddr, EntityName, EntityType};

/// Messenger-wide global_seq counter shared by all its sessions (Ceph `get_global_seq`).
#[derive(Debug, Default)]
pub struct GlobalSeq(AtomicU32);

impl GlobalSeq {
    /// Next value, above both our last one and `at_least`.
    pub fn next(&self, at_least: u32) -> u32 {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = cur.max(at_least).wrapping_add(1);
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
    /// Check a peer's authorizer; Ok(reply bytes) to accept. (The refusal carries nothing: the
    /// wire answer, BADAUTHORIZER, has no room for a reason.)
    #[allow(clippy::result_unit_err)]
    fn verify(&self, protocol: u32, authorizer: &[u8]) -> Result<bytes::Bytes, ()>;
}

/// `CEPH_AUTH_NONE`.
pub const CEPH_AUTH_NONE: u32 = 1;

/// Ceph's "none" authorizer: u8 version 1, the auth `EntityName` (le32 entity type, le32 length +
/// id string), le64 global_id 0. The id is the entity number in decimal, or `admin` when the
/// number is not assigned (-1); an auth-none server does not check it.
#[derive(Debug, Default)]
pub struct NoneAuthorizer;

impl NoneAuthorizer {
    /// The id string put in the authorizer for `me`.
    pub fn auth_id(me: &EntityName) -> String {
        if me.num < 0 {
            "admin".to_string()
        } else {
            me.num.to_string()
        }
    }
}

impl Authorizer for NoneAuthorizer {
    fn protocol(&self) -> u32 {
        CEPH_AUTH_NONE
    }

    fn build(&self, me: &EntityName) -> Bytes {
        let id = Self::auth_id(me);
        let mut b = BytesMut::with_capacity(1 + 8 + id.len() + 8);
        b.put_u8(1);
        b.put_u32_le(me.kind.0 as u32);
        b.put_u32_le(id.len() as u32);
        b.put_slice(id.as_bytes());
        b.put_u64_le(0);
        b.freeze()
    }

    /// Accepts no authorizer at all (protocol 0, as Ceph clients talking to monitors send) and a
    /// well-formed auth-none authorizer; anything else is refused.
    fn verify(&self, protocol: u32, authorizer: &[u8]) -> Result<Bytes, ()> {
        match protocol {
            0 if authorizer.is_empty() => Ok(Bytes::new()),
            CEPH_AUTH_NONE => {
                // u8 version, u32 type, u32 len, id, u64 global_id; lengths checked before use.
                let (&v, rest) = authorizer.split_first().ok_or(())?;
                if v != 1 || rest.len() < 8 {
                    return Err(());
                }
                let id_len = u32::from_le_bytes(rest[4..8].try_into().map_err(|_| ())?) as usize;
                let rest = &rest[8..];
                if rest.len() != id_len.checked_add(8).ok_or(())? {
                    return Err(());
                }
                Ok(Bytes::new())
            }
            _ => Err(()),
        }
    }
}

/// Messenger-wide session settings. Build with [`SessionConfig::new`] and adjust the fields.
#[derive(Debug)]
pub struct SessionConfig {
    /// Our entity name.
    pub my_name: EntityName,
    /// Our address as announced in the banner (a blank IP is learned from the first peer).
    pub my_addr: EntityAddr,
    /// Feature bits we advertise (default [`features::DEFAULT_SUPPORTED`]).
    pub features_supported: u64,
    /// Feature bits every peer must have, on top of the policy's.
    pub features_required: u64,
    /// Limits on what a peer may announce (checked before allocating).
    pub limits: DecodeLimits,
    /// The policy for each peer type.
    pub policies: PolicySet,
    /// From `link_up` to the open state; a stalled peer faults the link after this.
    pub handshake_timeout: Duration,
    /// Send a KEEPALIVE2 on an open link this often (None = never on our own).
    pub keepalive_interval: Option<Duration>,
    /// Fault an open link that received nothing for this long (None = never).
    pub idle_timeout: Option<Duration>,
    /// The messenger-wide connect attempt counter, shared by its sessions.
    pub global_seq: Arc<GlobalSeq>,
    /// Builds our authorizer and checks peers' (default: none, as with `auth_none`).
    pub authorizer: Arc<dyn Authorizer>,
    /// Largest authorizer (or authorizer reply) accepted from a peer, checked before reading it.
    pub max_authorizer_len: u32,
    /// How long an ACK for received messages may be held back to coalesce it with later ones
    /// (zero = sent with the next transmit).
    pub ack_delay: Duration,
    /// Received messages after which an ACK is sent at once, whatever `ack_delay` says.
    pub ack_every: u32,
    /// After the peer answered WAIT (it won a connect race), how long to wait for its own
    /// connect before dialing again (Ceph: ms_max_backoff).
    pub wait_retry: Duration,
    /// Message payload bytes handed out by one `poll_transmit` call before it returns (so one
    /// session cannot monopolise a driver); call again for more.
    pub transmit_batch_bytes: usize,
    /// A lossy session keeps at most this many sent-but-unacked messages to report on reset
    /// (a Ceph lossy server never ACKs, so this bounds memory); older ones are forgotten.
    pub lossy_unacked_limit: usize,
    /// Checksum the data section of the messages we send (Ceph `ms_crc_data`, default true).
    /// When false the footer carries `FLAG_NOCRC` and a zero data crc, and the peer skips the
    /// check; front and middle crcs are always sent. Received messages are checked as their
    /// footer says either way.
    pub crc_data: bool,
}

impl SessionConfig {
    /// Defaults: Ceph's advertised features, no extra required ones, default limits and
    /// policies, 30 s handshake timeout, no keepalive, no idle timeout, auth-none, data crcs on.
    pub fn new(my_name: EntityName, my_addr: EntityAddr) -> Self {
        SessionConfig {
            my_name,
            my_addr,
            features_supported: features::DEFAULT_SUPPORTED,
            features_required: 0,
            limits: DecodeLimits::default(),
            policies: PolicySet::default(),
            handshake_timeout: Duration::from_secs(30),
            keepalive_interval: None,
            idle_timeout: None,
            global_seq: Arc::new(GlobalSeq::default()),
            authorizer: Arc::new(NoneAuthorizer),
            max_authorizer_len: 4096,
            ack_delay: Duration::from_millis(1),
            ack_every: 64,
            wait_retry: Duration::from_secs(15),
            transmit_batch_bytes: 4 << 20,
            lossy_unacked_limit: 4096,
            crc_data: true,
        }
    }
}

/// Ceph's `CEPH_*_PROTOCOL` numbers, per pair of entity types (`Messenger::get_proto_version`).
pub mod proto {
    /// OSD to OSD.
    pub const OSD_INTERNAL: u32 = 10;
    /// MDS to MDS (Pacific).
    pub const MDS_INTERNAL: u32 = 34;
    /// Monitor to monitor.
    pub const MON_INTERNAL: u32 = 13;
    /// Anyone to an OSD.
    pub const OSD_CLIENT: u32 = 24;
    /// Anyone to an MDS.
    pub const MDS_CLIENT: u32 = 32;
    /// Anyone to a monitor.
    pub const MON_CLIENT: u32 = 15;
}

/// The protocol version a connect carries (`connecting`) or an acceptor expects, for us of type
/// `me` and a peer of type `peer`. Same type: the cluster-internal number; otherwise the public
/// number of the serving side (the peer when we connect, us when we accept); 0 for others.
pub fn protocol_version(me: EntityType, peer: EntityType, connecting: bool) -> u32 {
    if me == peer {
        return match me {
            EntityType::OSD => proto::OSD_INTERNAL,
            EntityType::MDS => proto::MDS_INTERNAL,
            EntityType::MON => proto::MON_INTERNAL,
            _ => 0,
        };
    }
    match if connecting { peer } else { me } {
        EntityType::OSD => proto::OSD_CLIENT,
        EntityType::MDS => proto::MDS_CLIENT,
        EntityType::MON => proto::MON_CLIENT,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions_match_ceph() {
        let (c, m, o) = (EntityType::CLIENT, EntityType::MON, EntityType::OSD);
        assert_eq!(protocol_version(c, m, true), 15);
        assert_eq!(protocol_version(m, c, false), 15);
        assert_eq!(protocol_version(m, m, true), 13);
        assert_eq!(protocol_version(o, o, false), 10);
        assert_eq!(protocol_version(c, o, true), 24);
        assert_eq!(protocol_version(o, c, false), 24);
        assert_eq!(protocol_version(o, m, true), 15);
        assert_eq!(protocol_version(c, EntityType::MDS, true), 32);
        assert_eq!(protocol_version(c, c, true), 0);
    }

    #[test]
    fn none_authorizer_bytes() {
        let a = NoneAuthorizer;
        let b = a.build(&EntityName::new(EntityType::MON, 0));
        // u8 1 | le32 type 1 | le32 len 1 | "0" | le64 0
        let want: &[u8] = &[1, 1, 0, 0, 0, 1, 0, 0, 0, b'0', 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(&b[..], want);
        assert!(a.verify(1, &b).is_ok());
        assert!(a.verify(0, &[]).is_ok());
        assert!(a.verify(1, &b[..b.len() - 1]).is_err());
        assert!(a.verify(1, &[2]).is_err());
        assert!(a.verify(2, &b).is_err());
        // A huge announced id length is refused, not trusted.
        assert!(a.verify(1, &[1, 1, 0, 0, 0, 255, 255, 255, 255]).is_err());
    }

    #[test]
    fn global_seq_is_above_hint() {
        let g = GlobalSeq::default();
        assert_eq!(g.next(0), 1);
        assert_eq!(g.next(10), 11);
        assert_eq!(g.next(3), 12);
    }
}
