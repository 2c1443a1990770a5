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
mod entity_text;
pub mod features;
pub mod frame;
pub mod header;
pub mod tag;

pub use connect::{ConnectMsg, ConnectReply, CONNECT_FLAG_LOSSY};
pub use entity::{EntityAddr, EntityName, EntityType, LEGACY_ADDR_LEN};
pub use entity_text::ParseEntityError;
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
pub enum WireError {
    #[error("peer sent banner {0:?}, expected \"ceph v027\" (is it a msgr2-only daemon or not Ceph at all?)")]
    BadBanner(Vec<u8>),
    #[error("unknown tag {0} from peer: the byte stream is corrupt or out of step (peer bug, or MSG_AUTH footer size disagreement); the connection is dropped")]
    UnknownTag(u8),
    #[error("peer sent tag {tag}, which is not valid in the {state} state: protocol violation, the connection is dropped")]
    UnexpectedTag { tag: u8, state: &'static str },
    #[error("bad address family {0} in entity_addr_t (expected 0, 2 = IPv4 or 10 = IPv6)")]
    BadAddrFamily(u16),
    #[error("entity_addr_t marker {0} where msgr1 needs a legacy address (marker 0): is the peer speaking msgr2?")]
    BadAddrMarker(u8),
    #[error(
        "message header crc mismatch: computed {computed:#010x}, header says {expected:#010x} (corrupted in transit or a peer bug; the connection is dropped)"
    )]
    HeaderCrc { computed: u32, expected: u32 },
    #[error(
        "message {section} crc mismatch: computed {computed:#010x}, footer says {expected:#010x} (corrupted in transit or a peer bug; the connection is dropped)"
    )]
    PayloadCrc {
        section: &'static str,
        computed: u32,
        expected: u32,
    },
    #[error("message {section} length {len} exceeds the limit {limit} (raise limits.max_{section} if this peer is trusted)")]
    TooLong {
        section: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("{what} length {len} exceeds the limit {limit}")]
    LimitExceeded {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("message footer lacks the COMPLETE flag (flags {0:#x}): the sender aborted the message or the stream is out of step; the connection is dropped")]
    Incomplete(u8),
    #[error("short buffer: need {need} bytes, have {have} (a caller decoded before reading enough bytes)")]
    Short { need: usize, have: usize },
}
