//! Frames of an open session: their resumable decoder and their encoders.
//!
//! After the handshake, each frame starts with a one-byte tag:
//!
//! | tag | frame | body |
//! |-----|-------|------|
//! | 7 MSG | [`Frame::Msg`] | 53-byte header, front, middle, data, footer (13 or 21 bytes) |
//! | 8 ACK | [`Frame::Ack`] | le64 seq |
//! | 9 KEEPALIVE | [`Frame::Keepalive`] | nothing |
//! | 14 KEEPALIVE2 | [`Frame::Keepalive2`] | le32 sec, le32 nsec |
//! | 15 KEEPALIVE2_ACK | [`Frame::Keepalive2Ack`] | le32 sec, le32 nsec (echoed) |
//! | 6 CLOSE | [`Frame::Close`] | nothing |
//!
//! The decoder keeps unconsumed bytes in the caller's receive buffer and only a small state
//! between calls. It checks every announced length against [`DecodeLimits`] before reserving
//! room for it, and hands out a message's sections as slices of the receive buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::header::{MsgFooter, MsgHeader};
use super::{EntityName, Tag, WireError};
use crate::message::{DataCrc, Message};

/// Limits checked before anything is allocated for a peer's announced lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest front section accepted, in bytes.
    pub max_front: u32,
    /// Largest middle section accepted, in bytes.
    pub max_middle: u32,
    /// Largest data section accepted, in bytes.
    pub max_data: u32,
    /// Limit on front + middle + data, in bytes.
    pub max_message: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_front: 16 << 20,
            max_middle: 16 << 20,
            max_data: 64 << 20,
            max_message: 96 << 20,
        }
    }
}

impl DecodeLimits {
    /// Checks a header's announced section lengths against the limits.
    pub fn check(&self, h: &MsgHeader) -> Result<(), WireError> {
        let sections = [
            ("front", h.front_len, self.max_front),
            ("middle", h.middle_len, self.max_middle),
            ("data", h.data_len, self.max_data),
        ];
        for (section, len, limit) in sections {
            if len > limit {
                return Err(WireError::TooLong {
                    section,
                    len: len.into(),
                    limit: limit.into(),
                });
            }
        }
        if h.payload_len() > self.max_message {
            return Err(WireError::TooLong {
                section: "message",
                len: h.payload_len(),
                limit: self.max_message,
            });
        }
        Ok(())
    }

    /// The largest buffer the decoder ever asks to hold for one frame under these limits and
    /// footer size: tag, header, largest allowed payload, footer.
    pub fn max_frame_len(&self, msg_auth: bool) -> u64 {
        let sections = self.max_front as u64 + self.max_middle as u64 + self.max_data as u64;
        1 + MsgHeader::LEN as u64 + sections.min(self.max_message) + MsgFooter::len(msg_auth) as u64
    }
}

/// One frame of an open session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// TAG_MSG: a whole message, crcs checked.
    Msg(Message),
    /// TAG_ACK: the peer received every message up to this sequence number.
    Ack(u64),
    /// TAG_KEEPALIVE (no stamp).
    Keepalive,
    /// TAG_KEEPALIVE2: a stamp for the receiver to echo.
    Keepalive2 {
        /// Seconds of the stamp.
        sec: u32,
        /// Nanoseconds of the stamp.
        nsec: u32,
    },
    /// TAG_KEEPALIVE2_ACK: our KEEPALIVE2's stamp, echoed.
    Keepalive2Ack {
        /// Seconds of the stamp.
        sec: u32,
        /// Nanoseconds of the stamp.
        nsec: u32,
    },
    /// TAG_CLOSE: the peer closes the session.
    Close,
}

/// Where the decoder is inside the current frame. The bytes themselves stay in the caller's
/// buffer until a whole unit (tag, fixed body, header, payload+footer) is there.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Between frames: waiting for a tag byte.
    Tag,
    /// ACK tag consumed: waiting for the le64 acked seq.
    Ack,
    /// KEEPALIVE2 (`ack == false`) or KEEPALIVE2_ACK tag consumed: waiting for the 8-byte stamp.
    Stamp { ack: bool },
    /// MSG tag consumed: waiting for the 53-byte header.
    Header,
    /// Header verified and within limits: waiting for front + middle + data + footer.
    Body { header: MsgHeader },
    /// A frame was bad; the stream cannot be resynchronised. Every later call returns this error.
    Failed(WireError),
}

/// What one [`FrameDecoder::decode_with`] call did.
#[derive(Debug)]
pub(crate) enum Step {
    /// More bytes are needed.
    More,
    /// A message was handed over.
    Message,
    /// Any other frame.
    Frame(Frame),
}

/// Resumable decoder of [`Frame`]s.
///
/// Feed it the receive buffer after every read; bytes may arrive split at any point. Each
/// [`FrameDecoder::decode`] call returns at most one frame; call it until it returns
/// `Ok(None)`. When it needs more bytes it reserves room in the buffer for exactly the unit it
/// waits for (never more than [`DecodeLimits::max_frame_len`]), so the next read can land there.
/// After an error the decoder is poisoned: the link must be closed.
///
/// A received message's sections are `split_to(..).freeze()` slices of the receive buffer, so
/// they keep that allocation alive until dropped; `BytesMut` simply allocates anew for the next
/// frame meanwhile, and reuses the space once the application has dropped the message.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: DecodeLimits,
    msg_auth: bool,
    state: State,
}

impl Default for FrameDecoder {
    /// Default limits, with MSG_AUTH footers (every Ceph peer this project talks to negotiates
    /// MSG_AUTH; see `features::DEFAULT_SUPPORTED`).
    fn default() -> Self {
        FrameDecoder::new(DecodeLimits::default(), true)
    }
}

impl FrameDecoder {
    /// `msg_auth`: whether the MSG_AUTH feature was negotiated (21-byte footers), else 13 bytes.
    pub fn new(limits: DecodeLimits, msg_auth: bool) -> Self {
        FrameDecoder {
            limits,
            msg_auth,
            state: State::Tag,
        }
    }

    /// The limits this decoder checks.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Footers carry the MSG_AUTH signature (21 bytes, not 13).
    pub fn msg_auth(&self) -> bool {
        self.msg_auth
    }

    /// Sets the footer size once features are negotiated. Call only between frames.
    pub fn set_msg_auth(&mut self, msg_auth: bool) {
        debug_assert!(
            self.is_idle(),
            "footer size changed in the middle of a frame"
        );
        self.msg_auth = msg_auth;
    }

    /// While a message body is awaited: the bytes it takes in the buffer, counted from the
    /// buffer's start (payload and footer); 0 otherwise. Lets a driver size its next read to
    /// the rest of a large message.
    pub fn body_len_wanted(&self) -> usize {
        match &self.state {
            // Within limits, so it fits usize.
            State::Body { header } => header.payload_len() as usize + MsgFooter::len(self.msg_auth),
            _ => 0,
        }
    }

    /// True between frames (nothing of a frame consumed yet).
    pub fn is_idle(&self) -> bool {
        self.state == State::Tag
    }

    /// Forgets any partial frame and any earlier error (for a fresh link).
    pub fn reset(&mut self) {
        self.state = State::Tag;
    }

    /// Decodes the next frame from the front of `buf`, consuming its bytes.
    ///
    /// `Ok(None)`: more bytes are needed (what is there is kept in `buf` or in the decoder).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let mut msg = None;
        Ok(match self.decode_with(buf, |m| msg = Some(m))? {
            Step::More => None,
            Step::Message => msg.map(Frame::Msg),
            Step::Frame(f) => Some(f),
        })
    }

    /// [`FrameDecoder::decode`] for the receive hot path: a message goes to `on_msg` as it is
    /// built instead of coming back inside a [`Frame`], so the caller can queue it with fewer
    /// moves of the (150-byte) message.
    #[inline]
    pub(crate) fn decode_with(
        &mut self,
        buf: &mut BytesMut,
        on_msg: impl FnOnce(Message),
    ) -> Result<Step, WireError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        self.step(buf, on_msg)
            .inspect_err(|e| self.state = State::Failed(e.clone()))
    }

    #[inline]
    fn step(
        &mut self,
        buf: &mut BytesMut,
        on_msg: impl FnOnce(Message),
    ) -> Result<Step, WireError> {
        loop {
            match &self.state {
                State::Tag => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Step::More);
                    };
                    let next = match Tag::from_u8(byte) {
                        Some(Tag::Msg) => State::Header,
                        Some(Tag::Ack) => State::Ack,
                        Some(Tag::Keepalive2) => State::Stamp { ack: false },
                        Some(Tag::Keepalive2Ack) => State::Stamp { ack: true },
                        Some(Tag::Keepalive) => {
                            buf.advance(1);
                            return Ok(Step::Frame(Frame::Keepalive));
                        }
                        Some(Tag::Close) => {
                            buf.advance(1);
                            return Ok(Step::Frame(Frame::Close));
                        }
                        Some(_) => {
                            return Err(WireError::UnexpectedTag {
                                tag: byte,
                                state: "open",
                            })
                        }
                        None => return Err(WireError::UnknownTag(byte)),
                    };
                    buf.advance(1);
                    self.state = next;
                }
                State::Ack => {
                    if !wait_for(buf, 8) {
                        return Ok(Step::More);
                    }
                    self.state = State::Tag;
                    return Ok(Step::Frame(Frame::Ack(buf.get_u64_le())));
                }
                &State::Stamp { ack } => {
                    if !wait_for(buf, 8) {
                        return Ok(Step::More);
                    }
                    let (sec, nsec) = (buf.get_u32_le(), buf.get_u32_le());
                    self.state = State::Tag;
                    return Ok(Step::Frame(if ack {
                        Frame::Keepalive2Ack { sec, nsec }
                    } else {
                        Frame::Keepalive2 { sec, nsec }
                    }));
                }
                State::Header => {
                    if !wait_for(buf, MsgHeader::LEN) {
                        return Ok(Step::More);
                    }
                    // Crc first: lengths from a damaged header mean nothing.
                    let header = MsgHeader::decode(&buf[..MsgHeader::LEN])?;
                    self.limits.check(&header)?;
                    buf.advance(MsgHeader::LEN);
                    self.state = State::Body { header };
                }
                State::Body { header } => {
                    let footer_len = MsgFooter::len(self.msg_auth);
                    // Within limits, so it fits usize on every platform we build for.
                    let need = header.payload_len() as usize + footer_len;
                    if !wait_for(buf, need) {
                        return Ok(Step::More);
                    }
                    let header = *header;
                    self.state = State::Tag;
                    self.finish_message(&header, buf, on_msg)?;
                    return Ok(Step::Message);
                }
                State::Failed(e) => return Err(e.clone()),
            }
        }
    }

    /// Splits the sections off `buf` (which holds them and the footer), verifies the footer
    /// and hands the message to `on_msg`.
    #[inline]
    fn finish_message(
        &self,
        h: &MsgHeader,
        buf: &mut BytesMut,
        on_msg: impl FnOnce(Message),
    ) -> Result<(), WireError> {
        let front = take_section(buf, h.front_len);
        let middle = take_section(buf, h.middle_len);
        let data = take_section(buf, h.data_len);
        let footer_len = MsgFooter::len(self.msg_auth);
        let footer = MsgFooter::decode(&buf[..footer_len], self.msg_auth)?;
        buf.advance(footer_len);
        if !footer.is_complete() {
            return Err(WireError::Incomplete(footer.flags));
        }
        check_crc("front", &front, footer.front_crc)?;
        check_crc("middle", &middle, footer.middle_crc)?;
        let mut data_crc = DataCrc::default();
        if footer.flags & MsgFooter::FLAG_NOCRC == 0 {
            check_crc("data", &data, footer.data_crc)?;
            data_crc = DataCrc::new(&data, 0, footer.data_crc);
        }
        let mut msg = Message {
            front,
            middle,
            data,
            data_crc,
            ..Message::default()
        };
        h.fill_message(&mut msg);
        on_msg(msg);
        Ok(())
    }
}

/// True if `buf` holds `n` bytes; otherwise makes room for exactly the missing ones.
fn wait_for(buf: &mut BytesMut, n: usize) -> bool {
    if buf.len() >= n {
        return true;
    }
    buf.reserve(n - buf.len());
    false
}

/// The next `len` bytes of `buf` as a shared slice (no copy); empty sections share nothing.
fn take_section(buf: &mut BytesMut, len: u32) -> Bytes {
    if len == 0 {
        Bytes::new()
    } else {
        buf.split_to(len as usize).freeze()
    }
}

fn check_crc(section: &'static str, bytes: &[u8], expected: u32) -> Result<(), WireError> {
    let computed = super::crc::ceph_crc32c(0, bytes);
    if computed != expected {
        return Err(WireError::PayloadCrc {
            section,
            computed,
            expected,
        });
    }
    Ok(())
}

/// Appends a MSG frame as chunks for a vectored write: tag + header, then front, middle, data
/// (each a clone of the message's `Bytes`, skipped when empty), then the footer. The footer's
/// crcs are computed over the sections; its signature is 0 (signing is not implemented).
///
/// # Panics
/// If a section is 4 GiB or larger (msgr1 lengths are u32); the sender must not queue such a
/// message.
pub fn encode_message(
    msg: &Message,
    seq: u64,
    src: EntityName,
    msg_auth: bool,
    out: &mut Vec<Bytes>,
) {
    encode_message_crc(msg, seq, src, msg_auth, true, out);
}

/// [`encode_message`], with the data crc optional (Ceph's `ms_crc_data`): when `crc_data` is
/// false the data section is not checksummed, the footer's data crc is 0 and its
/// `FLAG_NOCRC` tells the receiver not to check it. Front and middle crcs are always sent.
pub fn encode_message_crc(
    msg: &Message,
    seq: u64,
    src: EntityName,
    msg_auth: bool,
    crc_data: bool,
    out: &mut Vec<Bytes>,
) {
    let header = MsgHeader::for_message(msg, seq, src);
    let footer = footer_for(msg, crc_data);
    // One allocation for both small chunks.
    let mut fixed = BytesMut::with_capacity(1 + MsgHeader::LEN + MsgFooter::len(msg_auth));
    fixed.put_u8(Tag::Msg as u8);
    header.encode(&mut fixed);
    let head = fixed.split().freeze();
    footer.encode(&mut fixed, msg_auth);
    out.push(head);
    for section in [&msg.front, &msg.middle, &msg.data] {
        if !section.is_empty() {
            out.push(section.clone());
        }
    }
    out.push(fixed.freeze());
}

/// The footer of `msg`: crcs of its sections; without `crc_data`, no data crc and
/// `FLAG_NOCRC` (front and middle crcs are always sent).
fn footer_for(msg: &Message, crc_data: bool) -> MsgFooter {
    if crc_data {
        match msg.data_crc.get(&msg.data, 0) {
            // Verified on receipt and unchanged since: not computed again.
            Some(data_crc) => MsgFooter {
                data_crc,
                ..MsgFooter::for_payload(&msg.front, &msg.middle, &[])
            },
            None => MsgFooter::for_payload(&msg.front, &msg.middle, &msg.data),
        }
    } else {
        MsgFooter {
            data_crc: 0,
            flags: MsgFooter::FLAG_COMPLETE | MsgFooter::FLAG_NOCRC,
            ..MsgFooter::for_payload(&msg.front, &msg.middle, &[])
        }
    }
}

/// Sections up to this many bytes are copied into the batch buffer by
/// [`encode_message_batched`]; larger ones go out as their own chunk, uncopied.
pub const INLINE_SECTION_MAX: usize = 1024;
/// Smallest allocation of a batch buffer: many small frames share one.
const BATCH_ALLOC: usize = 16 << 10;

/// [`encode_message_crc`] for many messages in a row: the frame's small parts (tag, header,
/// footer, and sections up to `inline_max` bytes) are appended to `batch`, so a run of small
/// messages becomes one contiguous buffer (one allocation and one iovec per batch, not three
/// per message); a larger section ends the run (`batch` so far goes to `out`, then the
/// section, uncopied). Call [`flush_batch`] after the last message. The bytes on the wire are
/// those of [`encode_message_crc`].
#[allow(clippy::too_many_arguments)]
pub fn encode_message_batched(
    msg: &Message,
    seq: u64,
    src: EntityName,
    msg_auth: bool,
    crc_data: bool,
    inline_max: usize,
    batch: &mut BytesMut,
    out: &mut Vec<Bytes>,
) {
    let header = MsgHeader::for_message(msg, seq, src);
    let footer = footer_for(msg, crc_data);
    let sections = [&msg.front, &msg.middle, &msg.data];
    let inline: usize = sections
        .iter()
        .map(|s| s.len())
        .filter(|&n| n <= inline_max)
        .sum();
    let need = 1 + MsgHeader::LEN + inline + MsgFooter::len(msg_auth);
    if batch.capacity() - batch.len() < need {
        // Whatever the old allocation holds stays valid in `out`; a new one takes the rest.
        flush_batch(batch, out);
        batch.reserve(need.max(BATCH_ALLOC));
    }
    batch.put_u8(Tag::Msg as u8);
    header.encode(batch);
    for section in sections {
        if section.is_empty() {
            continue;
        }
        if section.len() <= inline_max {
            batch.extend_from_slice(section);
        } else {
            flush_batch(batch, out);
            out.push(section.clone());
        }
    }
    footer.encode(batch, msg_auth);
}

/// Hands what `batch` holds to `out` as one chunk (nothing when it is empty).
pub fn flush_batch(batch: &mut BytesMut, out: &mut Vec<Bytes>) {
    if !batch.is_empty() {
        out.push(batch.split().freeze());
    }
}

/// [`encode_message`] into one contiguous buffer (copies the payload; for tests and tools).
pub fn encode_message_into(
    msg: &Message,
    seq: u64,
    src: EntityName,
    msg_auth: bool,
    out: &mut BytesMut,
) {
    let mut chunks = Vec::with_capacity(5);
    encode_message(msg, seq, src, msg_auth, &mut chunks);
    out.reserve(chunks.iter().map(Bytes::len).sum());
    for c in chunks {
        out.put_slice(&c);
    }
}

/// ACK: tag + le64 seq of the last message received in order.
pub fn encode_ack(seq: u64, out: &mut BytesMut) {
    out.reserve(9);
    out.put_u8(Tag::Ack as u8);
    out.put_u64_le(seq);
}

/// KEEPALIVE (the old, stamp-less form).
pub fn encode_keepalive(out: &mut BytesMut) {
    out.put_u8(Tag::Keepalive as u8);
}

/// KEEPALIVE2 with the sender's timestamp.
pub fn encode_keepalive2(sec: u32, nsec: u32, out: &mut BytesMut) {
    encode_stamp(Tag::Keepalive2, sec, nsec, out);
}

/// KEEPALIVE2_ACK echoing the stamp of the KEEPALIVE2 it answers.
pub fn encode_keepalive2_ack(sec: u32, nsec: u32, out: &mut BytesMut) {
    encode_stamp(Tag::Keepalive2Ack, sec, nsec, out);
}

fn encode_stamp(tag: Tag, sec: u32, nsec: u32, out: &mut BytesMut) {
    out.reserve(9);
    out.put_u8(tag as u8);
    out.put_u32_le(sec);
    out.put_u32_le(nsec);
}

/// CLOSE.
pub fn encode_close(out: &mut BytesMut) {
    out.put_u8(Tag::Close as u8);
}

/// Any frame into one contiguous buffer. A MSG frame uses the message's own `seq` and `src`.
pub fn encode_frame(frame: &Frame, msg_auth: bool, out: &mut BytesMut) {
    match frame {
        Frame::Msg(m) => encode_message_into(m, m.seq, m.src, msg_auth, out),
        Frame::Ack(seq) => encode_ack(*seq, out),
        Frame::Keepalive => encode_keepalive(out),
        Frame::Keepalive2 { sec, nsec } => encode_keepalive2(*sec, *nsec, out),
        Frame::Keepalive2Ack { sec, nsec } => encode_keepalive2_ack(*sec, *nsec, out),
        Frame::Close => encode_close(out),
    }
}
