//! The READ rendezvous: a chunk of at least `read_threshold` bytes (a message's data section)
//! is not copied through send buffers. The sender exposes it where it lies (registered per
//! send, or found in a [`crate::verbs::RegisteredBuffer`]) and announces it with a READ request
//! in a framed SEND at its place in the stream; the receiver fetches it with one RDMA READ
//! straight into the buffer its session decodes from, splices it into the stream there, and
//! reports a READ done (cumulative, riding on a later framed SEND) so the sender can release it.
//!
//! Here: the framed SEND's header (its wire format), the sender's exposing of payloads within
//! `max_exposed`, and the receiver's posting of READs within its budget.

use bytes::BytesMut;

use crate::options::READS_IN_FLIGHT;
use crate::verbs::{ExposedRegion, ReadTarget};

use super::recv::Input;
use super::send::Out;
use super::Link;

/// Room kept before a READ's payload for the undecoded stream bytes that precede it (a
/// message's front and middle), so they are copied instead of the payload.
pub(super) const READ_HEAD: usize = 4096;
/// Room kept after a READ's payload for what follows it (the footer, the next frames).
pub(super) const READ_TAIL: usize = 4096;
/// READ destinations a link keeps registered for reuse, and the largest it keeps (larger
/// payloads get a registration of their own per READ).
pub(super) const READ_POOL_BUFFERS: usize = 8;
/// READ payload bytes a link holds (posted, or read and not consumed by the session) before it
/// starts another READ: a receiver that does not consume (its dispatcher is throttled) stops
/// pulling data, as it stops re-posting receive buffers. One READ always may go, whatever its
/// size.
pub(super) const READ_BUDGET: usize = 16 << 20;
pub(super) const READ_POOL_MAX: usize = 4 << 20;

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

impl Link {
    /// Whether a payload of `len` bytes may be exposed now (see `RdmaOptions::max_exposed`).
    fn may_expose(&self, len: usize) -> bool {
        self.exposed.is_empty() || self.exposed_bytes + len <= self.max_exposed
    }

    /// The next payload to be read, if it is at the queue's front and may not be exposed yet.
    pub(super) fn read_blocked(&self) -> bool {
        matches!(self.out.front(), Some(Out::Read(b)) if !self.may_expose(b.len()))
    }

    /// If the queue's front is a payload to be read, expose it and return its READ request. A
    /// payload that cannot be registered is copied through send buffers instead.
    pub(super) fn expose_next_read(&mut self) -> Option<ReadRequest> {
        if !matches!(self.out.front(), Some(Out::Read(_))) || self.read_blocked() {
            return None;
        }
        let Some(Out::Read(b)) = self.out.pop_front() else {
            unreachable!("checked above")
        };
        match ExposedRegion::new(&self.device(), b.clone()) {
            Ok(region) => {
                let id = self.next_read_id;
                self.next_read_id = id.wrapping_add(1);
                let req = ReadRequest {
                    id,
                    len: region.len() as u64,
                    addr: region.addr(),
                    rkey: region.rkey(),
                };
                self.counters.read_requests += 1;
                self.counters.read_registrations += region.registered_here() as u64;
                self.out_bytes -= region.len();
                self.counters.bytes_out += region.len() as u64;
                self.exposed_bytes += region.len();
                self.exposed.push_back((id, region));
                Some(req)
            }
            Err(e) => {
                // Copy it instead: slower, but the message goes.
                if self.counters.read_fallbacks == 0 {
                    tracing::warn!(target: "msgr_rdma", "cannot register a {}-byte payload for RDMA READ, copying it through send buffers instead: {e}", b.len());
                }
                self.counters.read_fallbacks += 1;
                self.out.push_front(Out::Stream(b));
                None
            }
        }
    }

    /// Post the READs of waiting requests, oldest first, up to READS_IN_FLIGHT.
    pub(super) fn start_reads(&mut self) {
        if self.failed.is_some() || self.reads_in_flight >= READS_IN_FLIGHT {
            return;
        }
        let mut qp = self.id.qp_mut().expect("link has a qp");
        let mut error = None;
        for input in self.ready_in.iter_mut() {
            if self.reads_in_flight >= READS_IN_FLIGHT {
                break;
            }
            let Input::Read {
                id,
                len,
                addr,
                rkey,
                state,
                ..
            } = input
            else {
                continue;
            };
            if !matches!(state, ReadState::Waiting) {
                continue;
            }
            if self.read_bytes_held > 0 && self.read_bytes_held + *len > READ_BUDGET {
                break;
            }
            let posted = self
                .read_pool
                .target(READ_HEAD, *len, READ_TAIL)
                .and_then(|t| {
                    qp.post_read(u64::from(*id), &t, *addr, *rkey)?;
                    Ok(t)
                });
            match posted {
                Ok(t) => {
                    *state = ReadState::Posted(t);
                    self.reads_in_flight += 1;
                    self.read_bytes_held += *len;
                }
                Err(e) => {
                    error = Some(format!("cannot start an RDMA READ of {len} bytes: {e}"));
                    break;
                }
            }
        }
        if let Some(e) = error {
            self.fail(e);
        }
    }

    /// The READ `id` completed successfully: its payload is ready to splice into the stream.
    pub(super) fn read_completed(&mut self, id: u32) {
        for input in self.ready_in.iter_mut() {
            if let Input::Read { id: rid, state, .. } = input {
                if *rid == id && matches!(state, ReadState::Posted(_)) {
                    let ReadState::Posted(t) = std::mem::replace(state, ReadState::Waiting) else {
                        unreachable!("checked above")
                    };
                    let len = t.len();
                    let (buf, head) = t.finish(&mut self.read_pool);
                    self.counters.read_buffers_registered = self.read_pool.registrations;
                    *state = ReadState::Done(buf, head);
                    self.counters.reads += 1;
                    self.counters.read_bytes += len as u64;
                    return;
                }
            }
        }
    }
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
