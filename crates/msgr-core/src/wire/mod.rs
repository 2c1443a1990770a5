//! Byte-exact msgr1 structures (Ceph `src/include/msgr.h`): encoders, and decoders that check
//! lengths and limits before touching or allocating anything. No session state lives here.
//!
//! Module map (one concept each):
//! - `crc`: Ceph's crc32c (seed given, no inversion).
//! - `entity`: `EntityType`, `EntityName`, `EntityAddr` (legacy 136-byte form used by msgr1).
//! - `tag`: the one-byte `CEPH_MSGR_TAG_*` values.
//! - `features`: `CEPH_FEATURE_*` bits as named constants.
//! - `connect`: `ceph_msg_connect` (33 bytes) and `ceph_msg_connect_reply` (26 bytes).
//! - `header`: the 53-byte `ceph_msg_header` and the 13 / 21-byte footers.
//! - `frame`: the open-session stream: frames after the handshake (MSG, ACK, KEEPALIVE*, CLOSE),
//!   an incremental decoder with limits, and encoders producing vectored output.

pub mod connect;
pub mod crc;
pub mod entity;
pub mod features;
pub mod frame;
pub mod header;
pub mod tag;

pub use connect::{ConnectMsg, ConnectReply, CONNECT_FLAG_LOSSY};
pub use entity::{EntityAddr, EntityName, EntityType, LEGACY_ADDR_LEN};
pub use frame::{DecodeLimits, Frame, FrameDecoder};
pub use header::{MsgFooter, MsgHeader};
pub use tag::Tag;

/// The msgr1 banner, sent by both sides first, 9 bytes, no newline.
pub const BANNER: &[u8; 9] = b"ceph v027";

/// Checks the first [`BANNER`]`.len()` bytes of `buf` are the msgr1 banner.
pub fn check_banner(buf: &[u8]) -> Result<(), WireError> {
    let got = entity::need(buf, BANNER.len())?;
    if got != BANNER {
        return Err(WireError::BadBanner(got.to_vec()));
    }
    Ok(())
}

/// Everything that can be wrong with bytes received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The first bytes are not the msgr1 banner (the bytes received).
    #[error("peer sent banner {0:?}, expected \"ceph v027\" (is it a msgr2-only daemon or not Ceph at all?)")]
    BadBanner(Vec<u8>),
    /// A tag byte that is no `CEPH_MSGR_TAG_*` value.
    #[error("unknown tag {0} from peer: the byte stream is corrupt or out of step (peer bug, or MSG_AUTH footer size disagreement); the connection is dropped")]
    UnknownTag(u8),
    /// A known tag where the protocol does not allow it.
    #[error("peer sent tag {tag}, which is not valid in the {state} state: protocol violation, the connection is dropped")]
    UnexpectedTag {
        /// The tag byte.
        tag: u8,
        /// The state it came in.
        state: &'static str,
    },
    /// An `entity_addr_t` whose family is neither unset, AF_INET nor AF_INET6 (the family).
    #[error("bad address family {0} in entity_addr_t (expected 0, 2 = IPv4 or 10 = IPv6)")]
    BadAddrFamily(u16),
    /// An `entity_addr_t` in the new (msgr2) encoding, not the legacy one (the marker byte).
    #[error("entity_addr_t marker {0} where msgr1 needs a legacy address (marker 0): is the peer speaking msgr2?")]
    BadAddrMarker(u8),
    /// The message header's crc does not match its bytes.
    #[error(
        "message header crc mismatch: computed {computed:#010x}, header says {expected:#010x} (corrupted in transit or a peer bug; the connection is dropped)"
    )]
    HeaderCrc {
        /// The crc32c of the header bytes received.
        computed: u32,
        /// The one the header carries.
        expected: u32,
    },
    /// A payload section's crc does not match its bytes.
    #[error(
        "message {section} crc mismatch: computed {computed:#010x}, footer says {expected:#010x} (corrupted in transit or a peer bug; the connection is dropped)"
    )]
    PayloadCrc {
        /// "front", "middle" or "data".
        section: &'static str,
        /// The crc32c of the section received.
        computed: u32,
        /// The one the footer carries.
        expected: u32,
    },
    /// A message section is longer than the configured decode limit.
    #[error("message {section} length {len} exceeds the limit {limit} (raise limits.max_{section} if this peer is trusted)")]
    TooLong {
        /// "front", "middle" or "data".
        section: &'static str,
        /// The length the header announces, in bytes.
        len: u64,
        /// The configured limit ([`DecodeLimits`]), in bytes.
        limit: u64,
    },
    /// A handshake field is longer than its configured limit.
    #[error("{what} length {len} exceeds the limit {limit}")]
    LimitExceeded {
        /// What was too long (e.g. "authorizer").
        what: &'static str,
        /// Its announced length, in bytes.
        len: u64,
        /// The configured limit, in bytes.
        limit: u64,
    },
    /// A message footer without `CEPH_MSG_FOOTER_COMPLETE` (the flags byte).
    #[error("message footer lacks the COMPLETE flag (flags {0:#x}): the sender aborted the message or the stream is out of step; the connection is dropped")]
    Incomplete(u8),
    /// A decoder was given fewer bytes than the structure needs (a caller bug).
    #[error("short buffer: need {need} bytes, have {have} (a caller decoded before reading enough bytes)")]
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
}
