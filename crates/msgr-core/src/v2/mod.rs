//! Byte-exact msgr2.1 structures (Ceph `src/msg/async/frames_v2.{h,cc}`, `ProtocolV2.cc`,
//! `crypto_onwire.cc`): the banner, frames in crc and secure mode, and the payload of every
//! control frame. Encoders, and decoders that check lengths before touching anything and never
//! panic on any input. No session state lives here.
//!
//! Module map (one concept each):
//! - `reader`: bounds-checked little-endian field reader shared by the decoders.
//! - `banner`: `ceph v2\n`, its le16 length and the two le64 feature words.
//! - `tag`: the one-byte frame tags.
//! - `frame`: the 32-byte preamble, frame assembly and the incremental crc-mode decoder.
//! - `secure`: AES-128-GCM secure mode (keys and nonces from the connection secret).
//! - `addr`: `entity_addr_t` in its ADDR2 form and `entity_addrvec_t`.
//! - `payload`: handshake and session control frame payloads (HELLO, AUTH_*, IDENT, RECONNECT, ...).
//! - `message`: `ceph_msg_header2` and the four-segment MESSAGE frame.

pub mod addr;
pub mod banner;
pub mod frame;
pub mod message;
pub mod payload;
mod reader;
pub mod secure;
pub mod tag;

pub use addr::{AddrKind, EntityAddrV2, EntityAddrVec};
pub use banner::{Banner, BANNER_LEN, BANNER_PREFIX};
pub use frame::{decode_crc, encode_crc, Decoded, FrameLimits, FrameRef, Preamble, SegmentDesc};
pub use reader::ShortRead;
pub use tag::Tag;

pub(crate) use reader::Reader;

/// Everything that can be wrong with msgr2 bytes received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum V2Error {
    /// The first bytes are not `ceph v2\n`.
    #[error("peer sent banner {0:?}, expected \"ceph v2\\n\" (is it a msgr1-only daemon on a v1 port, or not Ceph at all? use a v1: address for it)")]
    BadBanner(Vec<u8>),
    /// The banner's payload length is not the 16 bytes of two feature words.
    #[error("msgr2 banner payload length {0}, expected at least 16 (two le64 feature words): the peer is not speaking msgr2")]
    BannerLength(u16),
    /// The peer requires banner features we do not have.
    #[error("peer requires msgr2 features {missing:#x} that we do not support (we support {supported:#x}); the connection is dropped")]
    MissingFeatures {
        /// Required bits we lack.
        missing: u64,
        /// What we support.
        supported: u64,
    },
    /// The peer speaks msgr2.0 only.
    #[error("peer does not support msgr2.1 (feature REVISION_1): msgr2.0 is refused (obsolete, CVE-2020-1759); upgrade the peer to Ceph 14.2.8 or later, or use its v1: address")]
    Revision0Peer,
    /// The preamble crc does not match.
    #[error("msgr2 preamble crc mismatch: computed {computed:#010x}, preamble says {expected:#010x} (corrupted in transit, a peer bug, or secure mode on one side only); the connection is dropped")]
    PreambleCrc {
        /// What we computed.
        computed: u32,
        /// What the preamble carries.
        expected: u32,
    },
    /// A segment crc does not match.
    #[error("msgr2 segment {index} crc mismatch: computed {computed:#010x}, frame says {expected:#010x} (corrupted in transit or a peer bug); the connection is dropped")]
    SegmentCrc {
        /// Segment number, 0 to 3.
        index: usize,
        /// What we computed.
        computed: u32,
        /// What the frame carries.
        expected: u32,
    },
    /// Segment count outside 1..=4.
    #[error("msgr2 preamble announces {0} segments, valid is 1 to 4: the stream is corrupt or out of step")]
    BadSegmentCount(u8),
    /// A segment is longer than the configured limit.
    #[error("msgr2 segment {index} length {len} exceeds the limit {limit} (raise the frame limit if this peer is trusted)")]
    SegmentTooLong {
        /// Segment number.
        index: usize,
        /// Announced length.
        len: u32,
        /// Configured limit.
        limit: u32,
    },
    /// The peer set the compressed flag though compression was declined.
    #[error("peer sent a compressed msgr2 frame (flags {0:#x}) although compression was not negotiated: protocol violation")]
    Compressed(u8),
    /// The sender aborted the frame (late status ABORTED).
    #[error("peer aborted the msgr2 frame (late status {0:#x}): the frame is discarded")]
    Aborted(u8),
    /// Late status neither COMPLETE nor ABORTED.
    #[error("msgr2 epilogue late status {0:#x} is neither COMPLETE (0xe) nor ABORTED (0x1): the stream is corrupt")]
    BadLateStatus(u8),
    /// A tag value outside Ceph's list.
    #[error("unknown msgr2 frame tag {0}: the stream is corrupt or the peer is newer than us")]
    UnknownTag(u8),
    /// A frame that does not belong where it was found.
    #[error("msgr2 frame {tag:?} where {context} was expected: protocol violation")]
    UnexpectedTag {
        /// The frame's tag.
        tag: Tag,
        /// What was expected.
        context: &'static str,
    },
    /// A payload field ran past the end of its segment.
    #[error(transparent)]
    Short(#[from] ShortRead),
    /// An address field is malformed.
    #[error("bad entity address in msgr2 payload: {0}")]
    BadAddr(&'static str),
    /// Secure mode: the GCM tag did not verify.
    #[error("msgr2 secure-mode frame failed authentication (AES-GCM tag mismatch in the {0}): tampered with, corrupted, or the two sides derived different keys; the connection is dropped")]
    AuthTag(&'static str),
    /// Secure mode: the connection secret is too short for key and nonces.
    #[error("connection secret is {0} bytes, secure mode needs at least 40 (16-byte key and two 12-byte nonces): the auth exchange went wrong")]
    SecretTooShort(usize),
}
