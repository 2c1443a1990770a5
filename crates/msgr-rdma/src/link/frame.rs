//! What the send, receive and rendezvous paths share: the framed SEND's header (its wire
//! format), what the sender queued ([`Out`]), received stream input ([`Input`]) and where a
//! READ announced by the peer stands ([`ReadState`]). Below `send`, `recv` and `rendezvous`,
//! which all use it and none of which it uses.

use bytes::{Bytes, BytesMut};

use crate::verbs::ReadTarget;

/// A READ announced in a framed SEND: "the `len` bytes at `addr` / `rkey` come next in the
/// stream, after this SEND's own bytes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadRequest {
    pub id: u32,
    pub len: u64,
    pub addr: u64,
    pub rkey: u32,
}

/// Header of a framed SEND: a plain SEND (no immediate, which is how it is told from a data
/// SEND) whose first [`FRAME_HEADER`] bytes carry the credits a data SEND carries in its
/// immediate, optionally "every READ up to `done` is finished, release them" and optionally a
/// READ request; stream bytes follow. A sender frames a SEND only when it has a READ to
/// announce or dones to report, so a message's header, its READ request and the previous
/// message's footer travel in one SEND, and dones ride along with replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHeader {
    pub credits: u32,
    pub done: Option<u32>,
    pub read: Option<ReadRequest>,
}

pub(super) const FRAME_HEADER: usize = 40;
pub(super) const FRAME_HAS_DONE: u8 = 1;
pub(super) const FRAME_HAS_READ: u8 = 2;
pub(super) const FRAME_MAGIC: u8 = 0x4d; // 'M'

impl FrameHeader {
    pub(super) fn encode(&self, buf: &mut [u8]) {
        let flags = if self.done.is_some() {
            FRAME_HAS_DONE
        } else {
            0
        } | if self.read.is_some() {
            FRAME_HAS_READ
        } else {
            0
        };
        buf[..FRAME_HEADER].fill(0);
        buf[0] = FRAME_MAGIC;
        buf[1] = flags;
        buf[4..8].copy_from_slice(&self.credits.to_le_bytes());
        buf[8..12].copy_from_slice(&self.done.unwrap_or(0).to_le_bytes());
        if let Some(r) = self.read {
            buf[12..16].copy_from_slice(&r.id.to_le_bytes());
            buf[16..24].copy_from_slice(&r.len.to_le_bytes());
            buf[24..32].copy_from_slice(&r.addr.to_le_bytes());
            buf[32..36].copy_from_slice(&r.rkey.to_le_bytes());
        }
    }

    pub(super) fn decode(b: &[u8]) -> Result<FrameHeader, String> {
        if b.len() < FRAME_HEADER
            || b[0] != FRAME_MAGIC
            || b[1] & !(FRAME_HAS_DONE | FRAME_HAS_READ) != 0
        {
            return Err(format!(
                "malformed framed SEND ({} bytes, starts {:02x?}): not an msgr peer, or a bug",
                b.len(),
                &b[..b.len().min(4)]
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(FrameHeader {
            credits: u32_at(4),
            done: (b[1] & FRAME_HAS_DONE != 0).then(|| u32_at(8)),
            read: (b[1] & FRAME_HAS_READ != 0).then(|| ReadRequest {
                id: u32_at(12),
                len: u64_at(16),
                addr: u64_at(24),
                rkey: u32_at(32),
            }),
        })
    }
}

/// Where a READ announced by the peer stands.
pub(super) enum ReadState {
    Waiting,
    Posted(ReadTarget),
    /// The buffer (READ_HEAD bytes of room, then the payload, then spare room), and the room.
    Done(BytesMut, usize),
}

/// What the sender queued, in stream order.
pub(super) enum Out {
    /// Copied into send buffers.
    Stream(Bytes),
    /// Sent as a READ request (at least `read_threshold` bytes).
    Read(Bytes),
}

/// Received stream input, in order.
pub(super) enum Input {
    /// Bytes [off, end) of a completed receive buffer, re-posted once consumed if `repost`
    /// (else a READ of the same SEND follows and re-posts it).
    Data {
        slot: usize,
        off: usize,
        end: usize,
        repost: bool,
    },
    /// A READ request; `slot` (the request's receive buffer) is re-posted once the payload is
    /// consumed, so requests use credits as data does.
    Read {
        slot: usize,
        id: u32,
        len: usize,
        addr: u64,
        rkey: u32,
        state: ReadState,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_round_trip_and_rejects_garbage() {
        let mut buf = [0xaau8; 64];
        for h in [
            FrameHeader {
                credits: 7,
                done: None,
                read: None,
            },
            FrameHeader {
                credits: u32::MAX,
                done: Some(0),
                read: Some(ReadRequest {
                    id: 9,
                    len: 1 << 40,
                    addr: 0xdead_beef_0000,
                    rkey: 0x1234,
                }),
            },
        ] {
            h.encode(&mut buf);
            assert_eq!(FrameHeader::decode(&buf[..FRAME_HEADER]), Ok(h));
            assert_eq!(FrameHeader::decode(&buf), Ok(h), "stream bytes follow");
        }
        assert!(FrameHeader::decode(&buf[..FRAME_HEADER - 1]).is_err());
        let mut bad = buf;
        bad[0] = b'X';
        assert!(FrameHeader::decode(&bad).unwrap_err().contains("malformed"));
        let mut bad = buf;
        bad[1] = 0x80;
        assert!(FrameHeader::decode(&bad).is_err(), "unknown flag");
    }
}
