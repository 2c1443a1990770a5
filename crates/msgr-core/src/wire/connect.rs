//! `ceph_msg_connect` (33 bytes) and `ceph_msg_connect_reply` (26 bytes), the handshake messages
//! of msgr1 after the banner and addresses. Both are followed on the wire by `authorizer_len`
//! bytes of authorizer, which the session reads separately (after checking its own limit).

use bytes::{BufMut, BytesMut};

use super::entity::need;
use super::WireError;

/// `CEPH_MSG_CONNECT_LOSSY`: the connecting side wants a lossy session (no replay, no reconnect).
pub const CONNECT_FLAG_LOSSY: u8 = 1;

/// `ceph_msg_connect`, sent by the connecting side, followed by `authorizer_len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnectMsg {
    /// `features`: the connecting side's supported `CEPH_FEATURE_*` bits.
    pub features: u64,
    /// `host_type`: the connecting side's entity type (`CEPH_ENTITY_TYPE_*`).
    pub host_type: u32,
    /// `global_seq`: the connecting side's count of connection attempts, messenger-wide.
    pub global_seq: u32,
    /// `connect_seq`: attempts within this session (0: a new session).
    pub connect_seq: u32,
    /// `protocol_version`: `CEPH_*_PROTOCOL` for this pair of entity types.
    pub protocol_version: u32,
    /// `authorizer_protocol`: `CEPH_AUTH_*` of the authorizer (0: none).
    pub authorizer_protocol: u32,
    /// `authorizer_len`: authorizer bytes that follow, in bytes.
    pub authorizer_len: u32,
    /// `flags`: [`CONNECT_FLAG_LOSSY`] or 0.
    pub flags: u8,
}

impl ConnectMsg {
    /// Encoded size (`<QIIIIIIB`).
    pub const LEN: usize = 33;

    /// The connecting side asks for a lossy session.
    pub fn is_lossy(&self) -> bool {
        self.flags & CONNECT_FLAG_LOSSY != 0
    }

    /// Appends the 33 bytes (not the authorizer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(Self::LEN);
        out.put_u64_le(self.features);
        out.put_u32_le(self.host_type);
        out.put_u32_le(self.global_seq);
        out.put_u32_le(self.connect_seq);
        out.put_u32_le(self.protocol_version);
        out.put_u32_le(self.authorizer_protocol);
        out.put_u32_le(self.authorizer_len);
        out.put_u8(self.flags);
    }

    /// Decodes the first [`ConnectMsg::LEN`] bytes of `buf` (the authorizer is not included).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(need(buf, Self::LEN)?);
        Ok(ConnectMsg {
            features: r.u64(),
            host_type: r.u32(),
            global_seq: r.u32(),
            connect_seq: r.u32(),
            protocol_version: r.u32(),
            authorizer_protocol: r.u32(),
            authorizer_len: r.u32(),
            flags: r.u8(),
        })
    }
}

/// `ceph_msg_connect_reply`, followed by `authorizer_len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnectReply {
    /// A `CEPH_MSGR_TAG_*` value (READY, SEQ, WAIT, RETRY_*, RESETSESSION, BADPROTOVER, ...).
    pub tag: u8,
    /// `features`: the connecting side's features the accepting side supports, plus those it
    /// requires (`CEPH_FEATURE_*` bits).
    pub features: u64,
    /// `global_seq`: READY / SEQ: the accepting side's own global_seq; RETRY_GLOBAL: the one
    /// to exceed.
    pub global_seq: u32,
    /// `connect_seq`: READY / SEQ: the session's new connect_seq; RETRY_SESSION: the one to
    /// retry with.
    pub connect_seq: u32,
    /// `protocol_version`: `CEPH_*_PROTOCOL` of the accepting side.
    pub protocol_version: u32,
    /// `authorizer_len`: authorizer reply bytes that follow, in bytes.
    pub authorizer_len: u32,
    /// `flags`: [`CONNECT_FLAG_LOSSY`] when the session is lossy, else 0.
    pub flags: u8,
}

impl ConnectReply {
    /// Encoded size (`<BQIIIIB`).
    pub const LEN: usize = 26;

    /// The accepting side made the session lossy.
    pub fn is_lossy(&self) -> bool {
        self.flags & CONNECT_FLAG_LOSSY != 0
    }

    /// Appends the 26 bytes (not the authorizer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(Self::LEN);
        out.put_u8(self.tag);
        out.put_u64_le(self.features);
        out.put_u32_le(self.global_seq);
        out.put_u32_le(self.connect_seq);
        out.put_u32_le(self.protocol_version);
        out.put_u32_le(self.authorizer_len);
        out.put_u8(self.flags);
    }

    /// Decodes the first [`ConnectReply::LEN`] bytes of `buf`. The tag is not validated here:
    /// which tags are acceptable depends on the handshake state.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(need(buf, Self::LEN)?);
        Ok(ConnectReply {
            tag: r.u8(),
            features: r.u64(),
            global_seq: r.u32(),
            connect_seq: r.u32(),
            protocol_version: r.u32(),
            authorizer_len: r.u32(),
            flags: r.u8(),
        })
    }
}

/// Little-endian reader over a slice whose length the caller already checked.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gives N bytes")
    }
    pub(crate) fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
}
