//! The send path: what the session queues, in stream order, goes out in SENDs of at most one
//! peer receive buffer each, as credits and send buffers allow; a SEND is framed (see
//! [`FrameHeader`]) when it announces a READ or reports READ dones.

use bytes::{Buf, Bytes};

use crate::error::RdmaError;

use super::frame::{FrameHeader, Out, FRAME_HEADER};
use super::Link;

impl Link {
    /// Append stream bytes (no copy until they go into a send buffer; none at all for chunks
    /// of `read_threshold` bytes or more, which the peer reads).
    pub fn queue(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.out_bytes += b.len();
        if self.read_threshold > 0 && b.len() >= self.read_threshold && b.len() <= self.max_read {
            self.out.push_back(Out::Read(b));
        } else {
            self.out.push_back(Out::Stream(b));
        }
    }

    /// Whether [`Link::flush`] has a SEND to post that carries no stream bytes: a READ done
    /// to report, or credits to return (a receiver that sends nothing of its own must still
    /// return them, or the peer stalls). Only what can be posted now counts.
    pub fn control_due(&self) -> bool {
        if self.failed.is_some() || self.free_send.is_empty() {
            return false;
        }
        (self.done_unreported.is_some() && self.credits.can_send_data())
            || self.credits.wants_credit_message()
    }

    /// Whether the send about to be posted asks for a completion. Only every
    /// `send_slots / 2`-th does (fewer completions, fewer wake-ups), and always the one that
    /// takes the last free slot, so some completion is always coming to give slots back.
    fn want_signal(&mut self) -> bool {
        self.unsignaled += 1;
        if self.free_send.is_empty() || self.unsignaled >= (self.send_slots / 2).max(1) {
            self.unsignaled = 0;
            true
        } else {
            false
        }
    }

    /// Post as many SENDs as buffers and credits allow, then a credit update if one is due.
    pub fn flush(&mut self) -> Result<(), RdmaError> {
        if self.failed.is_some() {
            return Ok(());
        }
        while self.out_bytes > 0 || self.done_unreported.is_some() {
            if !self.credits.can_send_data() {
                if !self.stalled && self.out_bytes > 0 {
                    self.stalled = true;
                    self.counters.credit_stalls += 1;
                }
                break;
            }
            if self.done_unreported.is_none() && self.read_blocked() {
                // Waiting for the peer's READ dones (counted as a stall, like credits).
                if !self.stalled {
                    self.stalled = true;
                    self.counters.credit_stalls += 1;
                }
                break;
            }
            let Some(slot) = self.free_send.pop() else {
                break;
            };
            self.stalled = false;
            // Framed when there is a done to report or a READ within this SEND's reach.
            let framed =
                self.done_unreported.is_some() || self.read_within(self.chunk - FRAME_HEADER);
            let start = if framed { FRAME_HEADER } else { 0 };
            let mut qp = self.id.qp_mut().expect("link has a qp");
            let buf = qp.send_slot_mut(slot).expect("free send slot");
            let mut n = start;
            while n < self.chunk {
                let Some(Out::Stream(front)) = self.out.front_mut() else {
                    break;
                };
                let take = front.len().min(self.chunk - n);
                buf[n..n + take].copy_from_slice(&front[..take]);
                front.advance(take);
                n += take;
                if front.is_empty() {
                    self.out.pop_front();
                }
            }
            self.out_bytes -= n - start;
            self.counters.bytes_out += (n - start) as u64;
            let read = if framed {
                self.expose_next_read()
            } else {
                None
            };
            let imm = self.credits.on_send();
            let signaled = self.want_signal();
            let mut qp = self.id.qp_mut().expect("link has a qp");
            let posted = if framed {
                let header = FrameHeader {
                    credits: imm,
                    done: self.done_unreported.take(),
                    read,
                };
                header.encode(qp.send_slot_mut(slot).expect("free send slot"));
                qp.post_send(slot, n, None, signaled)
            } else {
                qp.post_send(slot, n, Some(imm), signaled)
            };
            if let Err(e) = posted {
                self.free_send.push(slot);
                self.fail(e.to_string());
                return Err(e);
            }
            self.counters.data_sends += 1;
        }
        if self.credits.wants_credit_message() {
            if let Some(slot) = self.free_send.pop() {
                let imm = self.credits.on_send();
                let signaled = self.want_signal();
                let mut qp = self.id.qp_mut().expect("link has a qp");
                if let Err(e) = qp.post_send(slot, 0, Some(imm), signaled) {
                    self.free_send.push(slot);
                    self.fail(e.to_string());
                    return Err(e);
                }
                self.counters.credit_sends += 1;
            }
        }
        Ok(())
    }

    /// Whether a payload to be read is queued behind at most `reach` stream bytes. Looks at
    /// no more of the queue than that (it may hold many small chunks; this runs per SEND).
    fn read_within(&self, reach: usize) -> bool {
        let mut n = 0;
        for o in &self.out {
            match o {
                Out::Stream(b) => n += b.len(),
                Out::Read(_) => return true,
            }
            if n > reach {
                return false;
            }
        }
        false
    }
}
