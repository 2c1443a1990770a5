//! The MESSAGE frame: four segments (header, front, middle, data) with alignments 8, 8, 8, 4096.
//! Its header is `ceph_msg_header2`, 41 packed bytes: le64 seq, le64 tid, le16 type, le16
//! priority, le16 version, le32 data_pre_padding_len, le16 data_off, le64 ack_seq, u8 flags,
//! le16 compat_version, le16 reserved. Unlike msgr1 there is no source name (the session knows
//! its peer), no per-section crc in the header and no footer: the frame's crcs or GCM tags cover it.

use bytes::{BufMut, BytesMut};

use super::frame::{encode_crc, FrameRef, DEFAULT_ALIGNMENT, PAGE_ALIGNMENT};
use super::{Reader, Tag, V2Error};
use crate::message::{Message, Priority};
use crate::wire::EntityName;

/// `ceph_msg_header2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgHeader2 {
    /// Message sequence number in this session.
    pub seq: u64,
    /// Transaction id.
    pub tid: u64,
    /// Message type (`CEPH_MSG_*`).
    pub msg_type: u16,
    /// Priority.
    pub priority: u16,
    /// Encoding version of the message.
    pub version: u16,
    /// Padding before the data segment (0: we never pad).
    pub data_pre_padding_len: u32,
    /// Data offset hint.
    pub data_off: u16,
    /// Piggy-backed ack: highest sequence the sender received.
    pub ack_seq: u64,
    /// Flags.
    pub flags: u8,
    /// Oldest encoding version that can decode the message.
    pub compat_version: u16,
    /// Reserved, kept for byte-exact re-encoding.
    pub reserved: u16,
}

/// Alignments Ceph announces for the four segments of a MESSAGE frame.
pub const MESSAGE_ALIGNMENTS: [u16; 4] = [
    DEFAULT_ALIGNMENT,
    DEFAULT_ALIGNMENT,
    DEFAULT_ALIGNMENT,
    PAGE_ALIGNMENT,
];

impl MsgHeader2 {
    /// Encoded size.
    pub const LEN: usize = 41;

    /// The header a session sends for `msg` with sequence `seq`, acking `ack_seq`.
    pub fn for_message(msg: &Message, seq: u64, ack_seq: u64) -> Self {
        MsgHeader2 {
            seq,
            tid: msg.tid,
            msg_type: msg.msg_type,
            priority: msg.priority.0,
            version: msg.version,
            data_pre_padding_len: 0,
            data_off: msg.data_off,
            ack_seq,
            flags: 0,
            compat_version: msg.compat_version,
            reserved: 0,
        }
    }

    /// Appends the 41 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(Self::LEN);
        out.put_u64_le(self.seq);
        out.put_u64_le(self.tid);
        out.put_u16_le(self.msg_type);
        out.put_u16_le(self.priority);
        out.put_u16_le(self.version);
        out.put_u32_le(self.data_pre_padding_len);
        out.put_u16_le(self.data_off);
        out.put_u64_le(self.ack_seq);
        out.put_u8(self.flags);
        out.put_u16_le(self.compat_version);
        out.put_u16_le(self.reserved);
    }

    /// Decodes the first 41 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, V2Error> {
        let mut r = Reader::new(buf, "ceph_msg_header2");
        Ok(MsgHeader2 {
            seq: r.u64()?,
            tid: r.u64()?,
            msg_type: r.u16()?,
            priority: r.u16()?,
            version: r.u16()?,
            data_pre_padding_len: r.u32()?,
            data_off: r.u16()?,
            ack_seq: r.u64()?,
            flags: r.u8()?,
            compat_version: r.u16()?,
            reserved: r.u16()?,
        })
    }
}

/// A decoded MESSAGE frame whose sections borrow the frame's segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// The header segment.
    pub header: MsgHeader2,
    /// Front section.
    pub front: &'a [u8],
    /// Middle section.
    pub middle: &'a [u8],
    /// Data section.
    pub data: &'a [u8],
}

impl<'a> MessageRef<'a> {
    /// Reads a MESSAGE frame.
    pub fn from_frame(frame: &FrameRef<'a>) -> Result<Self, V2Error> {
        let tag = frame.tag()?;
        if tag != Tag::Message {
            return Err(V2Error::UnexpectedTag {
                tag,
                context: "a MESSAGE frame",
            });
        }
        let [header, front, middle, data] = frame.segments;
        Ok(MessageRef {
            header: MsgHeader2::decode(header)?,
            front,
            middle,
            data,
        })
    }

    /// The message as the API hands it out; `src` is the session's peer.
    pub fn to_message(&self, src: EntityName) -> Message {
        let h = &self.header;
        let mut m = Message::new(h.msg_type, self.front.to_vec())
            .with_priority(Priority(h.priority))
            .with_middle(self.middle.to_vec())
            .with_data(self.data.to_vec())
            .with_tid(h.tid);
        m.version = h.version;
        m.compat_version = h.compat_version;
        m.data_off = h.data_off;
        m.seq = h.seq;
        m.src = src;
        m
    }
}

/// Appends a crc-mode MESSAGE frame.
pub fn encode_message_crc(
    header: &MsgHeader2,
    front: &[u8],
    middle: &[u8],
    data: &[u8],
    out: &mut BytesMut,
) {
    let mut h = BytesMut::with_capacity(MsgHeader2::LEN);
    header.encode(&mut h);
    let [a0, a1, a2, a3] = MESSAGE_ALIGNMENTS;
    encode_crc(
        Tag::Message,
        &[(&h, a0), (front, a1), (middle, a2), (data, a3)],
        out,
    );
}
