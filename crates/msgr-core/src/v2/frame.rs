//! msgr2.1 frames: the 32-byte preamble, crc-mode assembly and the crc-mode decoder.
//!
//! Preamble (`preamble_block_t`): u8 tag, u8 segment count (1 to 4), four `{le32 length, le16
//! alignment}` slots (unused slots zero), u8 flags, u8 reserved, le32 `ceph_crc32c(0, first 28
//! bytes)`.
//!
//! crc mode, revision 1: preamble, segment 0, le32 crc of segment 0; then, only when there is
//! more than one segment, segments 1.. and a 13-byte epilogue: u8 late status (0xe = complete,
//! 0x1 = aborted) and three le32 crcs for segments 1 to 3 (0 for absent ones). Segment crcs are
//! `ceph_crc32c(0xffffffff, bytes)`. Trailing empty segments are not sent (the count drops), but
//! an empty segment before a non-empty one is (with crc 0xffffffff).

use bytes::{BufMut, BytesMut};

use super::{Reader, Tag, V2Error};
use crate::wire::crc::ceph_crc32c;

/// Size of the preamble.
pub const PREAMBLE_LEN: usize = 32;
/// Most segments a frame has.
pub const MAX_SEGMENTS: usize = 4;
/// Size of segment 0's inline crc in crc mode.
pub const CRC_LEN: usize = 4;
/// Size of the crc-mode epilogue of a multi-segment frame.
pub const CRC_EPILOGUE_LEN: usize = 13;
/// Preamble flag: the segments are compressed (we never negotiate it).
pub const FLAG_COMPRESSED: u8 = 0x1;
/// Late status of a complete frame.
pub const LATE_STATUS_COMPLETE: u8 = 0xe;
/// Late status of an aborted frame.
pub const LATE_STATUS_ABORTED: u8 = 0x1;
/// Alignment Ceph announces for control segments and message header / front / middle.
pub const DEFAULT_ALIGNMENT: u16 = 8;
/// Alignment Ceph announces for a message's data segment.
pub const PAGE_ALIGNMENT: u16 = 4096;

/// One segment slot of the preamble.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentDesc {
    /// Segment length in bytes.
    pub len: u32,
    /// Alignment the receiver should give the segment's buffer (advisory).
    pub align: u16,
}

/// A decoded (and crc-checked) preamble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// The raw tag byte (see [`Preamble::tag`]).
    pub tag: u8,
    /// Segments present, 1 to 4.
    pub num_segments: u8,
    /// All four slots, as sent.
    pub segments: [SegmentDesc; MAX_SEGMENTS],
    /// Flags (only [`FLAG_COMPRESSED`] is defined).
    pub flags: u8,
    /// Reserved byte, kept for byte-exact re-encoding.
    pub reserved: u8,
}

impl Preamble {
    /// A preamble for `tag` carrying `segments` (length, alignment). Trailing empty segments are
    /// dropped from the count as Ceph does; at least one segment is always announced.
    pub fn new(tag: Tag, segments: &[(u32, u16)]) -> Self {
        assert!(
            segments.len() <= MAX_SEGMENTS,
            "a msgr2 frame has at most 4 segments"
        );
        let used = segments.iter().rposition(|s| s.0 > 0).map_or(1, |i| i + 1);
        let mut slots = [SegmentDesc::default(); MAX_SEGMENTS];
        for (slot, &(len, align)) in slots.iter_mut().zip(segments).take(used) {
            *slot = SegmentDesc { len, align };
        }
        if segments.is_empty() {
            slots[0].align = DEFAULT_ALIGNMENT;
        }
        Preamble {
            tag: tag as u8,
            num_segments: used as u8,
            segments: slots,
            flags: 0,
            reserved: 0,
        }
    }

    /// The tag, or an error for a value Ceph does not define.
    pub fn tag(&self) -> Result<Tag, V2Error> {
        Tag::try_from(self.tag)
    }

    /// The segments present.
    pub fn present(&self) -> &[SegmentDesc] {
        &self.segments[..usize::from(self.num_segments).min(MAX_SEGMENTS)]
    }

    /// The 32 encoded bytes, crc included.
    pub fn to_bytes(&self) -> [u8; PREAMBLE_LEN] {
        let mut b = [0u8; PREAMBLE_LEN];
        b[0] = self.tag;
        b[1] = self.num_segments;
        for (i, s) in self.segments.iter().enumerate() {
            b[2 + 6 * i..6 + 6 * i].copy_from_slice(&s.len.to_le_bytes());
            b[6 + 6 * i..8 + 6 * i].copy_from_slice(&s.align.to_le_bytes());
        }
        b[26] = self.flags;
        b[27] = self.reserved;
        let crc = ceph_crc32c(0, &b[..28]);
        b[28..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks the first 32 bytes of `buf`: crc, segment count, no compression,
    /// segment lengths within `limits`.
    pub fn decode(buf: &[u8], limits: &FrameLimits) -> Result<Self, V2Error> {
        let mut r = Reader::new(buf, "msgr2 preamble");
        let tag = r.u8()?;
        let num_segments = r.u8()?;
        let mut segments = [SegmentDesc::default(); MAX_SEGMENTS];
        for s in &mut segments {
            s.len = r.u32()?;
            s.align = r.u16()?;
        }
        let flags = r.u8()?;
        let reserved = r.u8()?;
        let expected = r.u32()?;
        let computed = ceph_crc32c(0, &buf[..28]);
        if computed != expected {
            return Err(V2Error::PreambleCrc { computed, expected });
        }
        if !(1..=MAX_SEGMENTS as u8).contains(&num_segments) {
            return Err(V2Error::BadSegmentCount(num_segments));
        }
        if flags & FLAG_COMPRESSED != 0 {
            return Err(V2Error::Compressed(flags));
        }
        let p = Preamble {
            tag,
            num_segments,
            segments,
            flags,
            reserved,
        };
        for (index, s) in p.present().iter().enumerate() {
            if s.len > limits.max_segment {
                return Err(V2Error::SegmentTooLong {
                    index,
                    len: s.len,
                    limit: limits.max_segment,
                });
            }
        }
        Ok(p)
    }

    /// Sum of the present segments' lengths.
    pub fn payload_len(&self) -> u64 {
        self.present().iter().map(|s| u64::from(s.len)).sum()
    }

    /// Total crc-mode frame size on the wire.
    pub fn crc_frame_len(&self) -> u64 {
        let epilogue = if self.num_segments > 1 {
            CRC_EPILOGUE_LEN
        } else {
            0
        };
        (PREAMBLE_LEN + CRC_LEN + epilogue) as u64 + self.payload_len()
    }
}

/// Limits checked against a peer's announced lengths before anything is buffered for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest segment accepted.
    pub max_segment: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_segment: 128 << 20,
        }
    }
}

/// A decoded frame whose segments borrow the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The checked preamble.
    pub preamble: Preamble,
    /// Segments; those past `num_segments` are empty.
    pub segments: [&'a [u8]; MAX_SEGMENTS],
}

impl<'a> FrameRef<'a> {
    /// The frame's tag.
    pub fn tag(&self) -> Result<Tag, V2Error> {
        self.preamble.tag()
    }

    /// Segment 0, where every control frame keeps its payload.
    pub fn payload(&self) -> &'a [u8] {
        self.segments[0]
    }

    /// The segments present.
    pub fn present(&self) -> &[&'a [u8]] {
        &self.segments[..usize::from(self.preamble.num_segments)]
    }
}

/// What the decoder made of the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer must hold at least this many bytes before the next call can progress.
    Need(usize),
    /// A whole frame, and the bytes it took from the front of the buffer.
    Frame(FrameRef<'a>, usize),
}

/// Decodes one crc-mode frame from the front of `buf`, checking every crc.
pub fn decode_crc<'a>(buf: &'a [u8], limits: &FrameLimits) -> Result<Decoded<'a>, V2Error> {
    if buf.len() < PREAMBLE_LEN {
        return Ok(Decoded::Need(PREAMBLE_LEN));
    }
    let preamble = Preamble::decode(buf, limits)?;
    let total = preamble.crc_frame_len();
    if (buf.len() as u64) < total {
        // Fits in usize: each segment is below `max_segment`, a u32.
        return Ok(Decoded::Need(usize::try_from(total).unwrap_or(usize::MAX)));
    }
    let mut r = Reader::new(&buf[PREAMBLE_LEN..], "msgr2 crc frame");
    let mut segments: [&[u8]; MAX_SEGMENTS] = [&[]; MAX_SEGMENTS];
    let present = preamble.present();
    segments[0] = r.take(present[0].len as usize)?;
    check_segment_crc(0, segments[0], r.u32()?)?;
    if present.len() > 1 {
        for (i, s) in present.iter().enumerate().skip(1) {
            segments[i] = r.take(s.len as usize)?;
        }
        check_late_status(r.u8()?)?;
        for (i, seg) in segments.iter().enumerate().skip(1) {
            let crc = r.u32()?;
            if i < present.len() {
                check_segment_crc(i, seg, crc)?;
            }
        }
    }
    Ok(Decoded::Frame(
        FrameRef { preamble, segments },
        total as usize,
    ))
}

fn check_segment_crc(index: usize, seg: &[u8], expected: u32) -> Result<(), V2Error> {
    let computed = ceph_crc32c(u32::MAX, seg);
    if computed != expected {
        return Err(V2Error::SegmentCrc {
            index,
            computed,
            expected,
        });
    }
    Ok(())
}

/// Checks an epilogue's late status (crc and secure mode share it).
pub(crate) fn check_late_status(status: u8) -> Result<(), V2Error> {
    match status & 0xf {
        LATE_STATUS_COMPLETE => Ok(()),
        LATE_STATUS_ABORTED => Err(V2Error::Aborted(status)),
        _ => Err(V2Error::BadLateStatus(status)),
    }
}

/// Appends a crc-mode frame: `segments` are (bytes, alignment), at most 4.
pub fn encode_crc(tag: Tag, segments: &[(&[u8], u16)], out: &mut BytesMut) {
    let descs: Vec<(u32, u16)> = segments.iter().map(|(b, a)| (segment_len(b), *a)).collect();
    let preamble = Preamble::new(tag, &descs);
    let n = usize::from(preamble.num_segments);
    out.reserve(preamble.crc_frame_len() as usize);
    out.put_slice(&preamble.to_bytes());
    let seg0: &[u8] = segments.first().map_or(&[], |s| s.0);
    out.put_slice(seg0);
    out.put_u32_le(ceph_crc32c(u32::MAX, seg0));
    if n > 1 {
        for (b, _) in &segments[1..n] {
            out.put_slice(b);
        }
        out.put_u8(LATE_STATUS_COMPLETE);
        for i in 1..MAX_SEGMENTS {
            let crc = segments
                .get(i)
                .filter(|_| i < n)
                .map_or(0, |s| ceph_crc32c(u32::MAX, s.0));
            out.put_u32_le(crc);
        }
    }
}

/// A segment's length as the preamble carries it.
pub(crate) fn segment_len(b: &[u8]) -> u32 {
    u32::try_from(b.len()).expect("a msgr2 segment is shorter than 4 GiB")
}
