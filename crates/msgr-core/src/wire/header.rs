//! `ceph_msg_header` (53 bytes) and `ceph_msg_footer` (21 bytes) / `ceph_msg_footer_old` (13).
//!
//! The header carries its own crc over its first 49 bytes. The footer carries the crcs of the
//! three payload sections and a flags byte; the 8-byte signature exists only when the MSG_AUTH
//! feature was negotiated.

use bytes::{BufMut, BytesMut};

use super::connect::Reader;
use super::crc::ceph_crc32c;
use super::entity::need;
use super::{EntityName, EntityType, WireError};
use crate::message::{Message, Priority};

/// `ceph_msg_header`: what precedes a message's sections. All fields little-endian on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgHeader {
    /// `seq`: the message's per-session sequence number.
    pub seq: u64,
    /// `tid`: transaction id, the application's.
    pub tid: u64,
    /// `type`: the Ceph message type (`CEPH_MSG_*`).
    pub msg_type: u16,
    /// `priority` (`CEPH_MSG_PRIO_*`).
    pub priority: u16,
    /// `version`: encoding version of the front section.
    pub version: u16,
    /// `front_len`: front section length, in bytes.
    pub front_len: u32,
    /// `middle_len`: middle section length, in bytes.
    pub middle_len: u32,
    /// `data_len`: data section length, in bytes.
    pub data_len: u32,
    /// `data_off`: alignment hint for the data section (sender's offset in its page).
    pub data_off: u16,
    /// `src`: the sender's entity name.
    pub src: EntityName,
    /// `compat_version`: oldest encoding version that can decode the front section.
    pub compat_version: u16,
    /// `reserved`: 0 when sent, ignored when received.
    pub reserved: u16,
    /// `crc`: crc32c of the 49 bytes before it.
    pub crc: u32,
}

impl MsgHeader {
    /// Encoded size (`<QQHHHIIIHBqHHI`).
    pub const LEN: usize = 53;
    /// The header crc covers everything before the crc field.
    pub const CRC_COVERED: usize = Self::LEN - 4;

    /// The header a session sends for `msg` with sequence number `seq` from `src`.
    /// `crc` is left 0; [`MsgHeader::encode`] computes it.
    ///
    /// # Panics
    /// If a section is 4 GiB or larger: msgr1 cannot carry it (lengths are u32).
    pub fn for_message(msg: &Message, seq: u64, src: EntityName) -> Self {
        MsgHeader {
            seq,
            tid: msg.tid,
            msg_type: msg.msg_type,
            priority: msg.priority.0,
            version: msg.version,
            front_len: len_u32(msg.front.len(), "front"),
            middle_len: len_u32(msg.middle.len(), "middle"),
            data_len: len_u32(msg.data.len(), "data"),
            data_off: msg.data_off,
            src,
            compat_version: msg.compat_version,
            reserved: 0,
            crc: 0,
        }
    }

    /// Total payload length announced (front + middle + data), without overflow.
    pub fn payload_len(&self) -> u64 {
        self.front_len as u64 + self.middle_len as u64 + self.data_len as u64
    }

    /// The 53 wire bytes, with the crc computed over the first 49 (the `crc` field is ignored).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let mut w = Writer(&mut b, 0);
        w.put(&self.seq.to_le_bytes());
        w.put(&self.tid.to_le_bytes());
        w.put(&self.msg_type.to_le_bytes());
        w.put(&self.priority.to_le_bytes());
        w.put(&self.version.to_le_bytes());
        w.put(&self.front_len.to_le_bytes());
        w.put(&self.middle_len.to_le_bytes());
        w.put(&self.data_len.to_le_bytes());
        w.put(&self.data_off.to_le_bytes());
        w.put(&[self.src.kind.0]);
        w.put(&self.src.num.to_le_bytes());
        w.put(&self.compat_version.to_le_bytes());
        w.put(&self.reserved.to_le_bytes());
        debug_assert_eq!(w.1, Self::CRC_COVERED);
        let crc = ceph_crc32c(0, &b[..Self::CRC_COVERED]);
        b[Self::CRC_COVERED..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The crc this header must carry: `ceph_crc32c(0, first 49 bytes)`.
    pub fn compute_crc(&self) -> u32 {
        let b = self.to_bytes();
        u32::from_le_bytes(b[Self::CRC_COVERED..].try_into().expect("4 bytes"))
    }

    /// Returns the header with `crc` set to [`MsgHeader::compute_crc`].
    pub fn with_crc(mut self) -> Self {
        self.crc = self.compute_crc();
        self
    }

    /// Appends the 53 bytes; the crc written is computed here (the `crc` field is ignored).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.to_bytes());
    }

    /// Decodes the first [`MsgHeader::LEN`] bytes of `buf` and verifies the header crc.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let h = Self::decode_unchecked(buf)?;
        let computed = ceph_crc32c(0, &buf[..Self::CRC_COVERED]);
        if computed != h.crc {
            return Err(WireError::HeaderCrc {
                computed,
                expected: h.crc,
            });
        }
        Ok(h)
    }

    /// Decodes without verifying the crc (for tools and tests that inspect damaged headers).
    pub fn decode_unchecked(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(need(buf, Self::LEN)?);
        Ok(MsgHeader {
            seq: r.u64(),
            tid: r.u64(),
            msg_type: r.u16(),
            priority: r.u16(),
            version: r.u16(),
            front_len: r.u32(),
            middle_len: r.u32(),
            data_len: r.u32(),
            data_off: r.u16(),
            src: EntityName {
                kind: EntityType(r.u8()),
                num: r.i64(),
            },
            compat_version: r.u16(),
            reserved: r.u16(),
            crc: r.u32(),
        })
    }

    /// Copies the header fields a receiver hands to the application into `msg`.
    pub(crate) fn fill_message(&self, msg: &mut Message) {
        msg.seq = self.seq;
        msg.tid = self.tid;
        msg.msg_type = self.msg_type;
        msg.priority = Priority(self.priority);
        msg.version = self.version;
        msg.compat_version = self.compat_version;
        msg.data_off = self.data_off;
        msg.src = self.src;
    }
}

/// Fills a fixed array front to back.
struct Writer<'a>(&'a mut [u8], usize);

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0[self.1..self.1 + bytes.len()].copy_from_slice(bytes);
        self.1 += bytes.len();
    }
}

/// Section lengths are u32 on the wire; a larger section cannot be sent at all.
fn len_u32(len: usize, section: &str) -> u32 {
    u32::try_from(len).unwrap_or_else(|_| {
        panic!("message {section} section of {len} bytes exceeds msgr1's 4 GiB limit")
    })
}

/// `ceph_msg_footer` (with `sig`, MSG_AUTH negotiated) or `ceph_msg_footer_old` (without).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgFooter {
    /// `front_crc`: crc32c of the front section.
    pub front_crc: u32,
    /// `middle_crc`: crc32c of the middle section.
    pub middle_crc: u32,
    /// `data_crc`: crc32c of the data section (0 and unchecked with `FLAG_NOCRC`).
    pub data_crc: u32,
    /// Message signature (only on the wire with MSG_AUTH; 0 when signing is off).
    pub sig: u64,
    /// `flags`: `FLAG_*` bits (`CEPH_MSG_FOOTER_*`).
    pub flags: u8,
}

impl MsgFooter {
    /// `ceph_msg_footer_old`: three crcs and flags.
    pub const LEN_OLD: usize = 13;
    /// `ceph_msg_footer`: three crcs, u64 signature, flags (MSG_AUTH negotiated).
    pub const LEN_NEW: usize = 21;
    /// `CEPH_MSG_FOOTER_COMPLETE`: the sender finished the message (it was not aborted).
    pub const FLAG_COMPLETE: u8 = 1;
    /// `CEPH_MSG_FOOTER_NOCRC`: the data crc was not computed; do not check it.
    pub const FLAG_NOCRC: u8 = 2;
    /// `CEPH_MSG_FOOTER_SIGNED`: the signature field is set.
    pub const FLAG_SIGNED: u8 = 4;

    /// Footer size for the negotiated features.
    pub const fn len(msg_auth: bool) -> usize {
        if msg_auth {
            Self::LEN_NEW
        } else {
            Self::LEN_OLD
        }
    }

    /// The complete footer of a message with these sections (sig 0, COMPLETE, all crcs).
    pub fn for_payload(front: &[u8], middle: &[u8], data: &[u8]) -> Self {
        MsgFooter {
            front_crc: ceph_crc32c(0, front),
            middle_crc: ceph_crc32c(0, middle),
            data_crc: ceph_crc32c(0, data),
            sig: 0,
            flags: Self::FLAG_COMPLETE,
        }
    }

    /// The sender finished the message ([`MsgFooter::FLAG_COMPLETE`]).
    pub fn is_complete(&self) -> bool {
        self.flags & Self::FLAG_COMPLETE != 0
    }

    /// Appends the footer; `sig` is written only when `msg_auth`.
    pub fn encode(&self, out: &mut BytesMut, msg_auth: bool) {
        out.reserve(Self::len(msg_auth));
        out.put_u32_le(self.front_crc);
        out.put_u32_le(self.middle_crc);
        out.put_u32_le(self.data_crc);
        if msg_auth {
            out.put_u64_le(self.sig);
        }
        out.put_u8(self.flags);
    }

    /// Decodes a footer of the size `msg_auth` selects. Flags are not interpreted here.
    pub fn decode(buf: &[u8], msg_auth: bool) -> Result<Self, WireError> {
        let mut r = Reader(need(buf, Self::len(msg_auth))?);
        Ok(MsgFooter {
            front_crc: r.u32(),
            middle_crc: r.u32(),
            data_crc: r.u32(),
            sig: if msg_auth { r.u64() } else { 0 },
            flags: r.u8(),
        })
    }
}
