//! The READ rendezvous: a chunk of at least `read_threshold` bytes (a message's data section)
//! is not copied through send buffers. The sender exposes it where it lies (registered per
//! send, or found in a [`crate::verbs::RegisteredBuffer`]) and announces it with a READ request
//! in a framed SEND at its place in the stream; the receiver fetches it with one RDMA READ
//! straight into the buffer its session decodes from, splices it into the stream there, and
//! reports a READ done (cumulative, riding on a later framed SEND) so the sender can release it.
//!
//! Here: the sender's exposing of payloads within `max_exposed`, and the receiver's posting of
//! READs within its budget. The framed SEND's header (its wire format) is in `frame`.

use crate::options::READS_IN_FLIGHT;
use crate::verbs::ExposedRegion;

use super::frame::{Input, Out, ReadRequest, ReadState};
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
