//! The receive path: completions (receives, sends, READs) are drained from the CQ; received
//! buffers and finished READs become stream input, handed to the session in order by
//! [`Link::read_into`], which re-posts each emptied receive buffer (returning a credit).

use bytes::{Buf, BytesMut};

use crate::error::RdmaError;
use crate::verbs::{Retired, WcKind, WorkCompletion};

use super::frame::{FrameHeader, Input, ReadState, FRAME_HEADER};
use super::Link;

impl Link {
    /// The completion channel fd is readable: acknowledge its event, re-arm, and drain the CQ.
    /// Also right when woken for another reason (no event waiting): a CQ left unarmed by
    /// busy-polling is armed here, before the drain, so the next completion raises an event.
    pub fn on_readable(&mut self) -> Result<usize, RdmaError> {
        if self.cq.take_events(true)? == 0 && !self.cq_armed {
            self.cq.arm()?;
        }
        self.cq_armed = true;
        self.poll_completions()
    }

    /// As [`Link::on_readable`] but leaves the CQ unarmed: while busy-polling, completions are
    /// found by polling and need not raise events. Call [`Link::arm`] before sleeping.
    pub fn on_readable_unarmed(&mut self) -> Result<usize, RdmaError> {
        if self.cq.take_events(false)? > 0 {
            self.cq_armed = false;
        }
        self.poll_completions()
    }

    /// Whether the CQ will raise an event on the channel for its next completion.
    pub fn is_armed(&self) -> bool {
        self.cq_armed
    }

    /// Arm the CQ again, then drain what arrived before: the channel raises an event for the
    /// next completion. Returns how many completions were drained.
    pub fn arm(&mut self) -> Result<usize, RdmaError> {
        self.cq.arm()?;
        self.cq_armed = true;
        self.poll_completions()
    }

    /// Drain the CQ (in batches of `cq_batch`). Returns how many completions there were.
    pub fn poll_completions(&mut self) -> Result<usize, RdmaError> {
        let mut total = 0;
        loop {
            self.wcs.clear();
            let n = self.cq.poll(&mut self.wcs, self.batch)?;
            total += n;
            for i in 0..n {
                let wc = self.wcs[i];
                self.on_completion(wc);
            }
            if n < self.batch {
                break;
            }
        }
        self.start_reads();
        Ok(total)
    }

    fn on_completion(&mut self, wc: WorkCompletion) {
        let mut qp = self.id.qp_mut().expect("link has a qp");
        let slot = match qp.complete(wc.wr_id) {
            Retired::Unknown => return,
            Retired::Sends(slots) => {
                self.free_send.extend(slots);
                None
            }
            Retired::Read { id, sends } => {
                self.free_send.extend(sends);
                self.reads_in_flight -= 1;
                if wc.is_ok() {
                    self.read_completed(id as u32);
                    return;
                }
                None
            }
            Retired::Recv(slot) => Some(slot),
        };
        if !wc.is_ok() {
            self.counters.wc_errors += 1;
            if wc.is_rnr() {
                self.counters.rnr_errors += 1;
            }
            let what = if wc.is_flush() {
                "work request flushed: queue pair is in the error state (disconnected or faulted)"
                    .to_string()
            } else {
                format!(
                    "work completion error: {} (vendor error {:#x})",
                    wc.status_text(),
                    wc.vendor_err
                )
            };
            self.fail(what);
            return;
        }
        let Some(slot) = slot else {
            return;
        };
        debug_assert_eq!(wc.kind, WcKind::Recv);
        let len = wc.byte_len as usize;
        let Some(imm) = wc.imm else {
            self.on_framed(slot, len);
            return;
        };
        self.credits.on_receive(imm);
        if len == 0 {
            // credit-only: the buffer is free again at once
            let _ = self.repost(slot);
        } else {
            self.counters.data_recvs += 1;
            self.ready_in.push_back(Input::Data {
                slot,
                off: 0,
                end: len,
                repost: true,
            });
            self.ready_bytes += len;
        }
    }

    /// Give receive buffer `slot` back to the device; the peer learns of the credit with our
    /// next SEND. A failure fails the link.
    fn repost(&mut self, slot: usize) -> Result<(), RdmaError> {
        let mut qp = self.id.qp_mut().expect("link has a qp");
        if let Err(e) = qp.post_recv(slot) {
            self.fail(e.to_string());
            return Err(e);
        }
        self.credits.on_repost();
        Ok(())
    }

    /// A framed SEND arrived in receive buffer `slot`.
    fn on_framed(&mut self, slot: usize, len: usize) {
        let qp = self.id.qp_mut().expect("link has a qp");
        let data = qp.recv_data(slot, len).expect("completed receive slot");
        let header = match FrameHeader::decode(data) {
            Ok(h) => h,
            Err(e) => {
                self.fail(e);
                return;
            }
        };
        self.credits.on_receive(header.credits);
        if let Some(id) = header.done {
            // Dones are cumulative and READs complete in order.
            while self
                .exposed
                .front()
                .is_some_and(|(e, _)| id.wrapping_sub(*e) < u32::MAX / 2)
            {
                if let Some((_, r)) = self.exposed.pop_front() {
                    self.exposed_bytes -= r.len();
                }
            }
        }
        if let Some(r) = header.read {
            if r.len == 0 || r.len > self.max_read as u64 {
                self.fail(format!(
                    "peer asked us to RDMA READ {} bytes; the limit is {} (max_data)",
                    r.len, self.max_read
                ));
                return;
            }
        }
        let stream = len - FRAME_HEADER;
        if stream > 0 {
            self.counters.data_recvs += 1;
            self.ready_in.push_back(Input::Data {
                slot,
                off: FRAME_HEADER,
                end: len,
                repost: header.read.is_none(),
            });
            self.ready_bytes += stream;
        }
        match header.read {
            Some(r) => self.ready_in.push_back(Input::Read {
                slot,
                id: r.id,
                len: r.len as usize,
                addr: r.addr,
                rkey: r.rkey,
                state: ReadState::Waiting,
            }),
            None if stream == 0 => {
                let _ = self.repost(slot);
            }
            None => {}
        }
    }

    /// Received bytes not consumed yet (READ payloads not counted).
    pub fn readable_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// Whether [`Link::read_into`] would give something now.
    pub fn has_input(&self) -> bool {
        match self.ready_in.front() {
            Some(Input::Data { .. }) => true,
            Some(Input::Read { state, .. }) => matches!(state, ReadState::Done(..)),
            None => false,
        }
    }

    /// Move up to `max` received bytes into `buf`, in stream order; each emptied receive
    /// buffer is re-posted (returning a credit). Call [`Link::flush`] afterwards so the
    /// credits (and READ dones) travel.
    ///
    /// A completed READ's payload is spliced in without a copy: `buf` becomes the READ's
    /// buffer (what `buf` held moves into the room before the payload). A call stops before
    /// the payload when it appended more than that room holds (decode first, then call again),
    /// and right after the payload, so the session can decode it before more bytes are
    /// appended (which could make the buffer grow, and copy). Data receive buffers are copied.
    pub fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> Result<usize, RdmaError> {
        let mut copied = 0;
        let mut from_data = 0;
        while copied < max {
            let qp = self.id.qp_mut().expect("link has a qp");
            let consumed = match self.ready_in.front_mut() {
                None => break,
                Some(Input::Data {
                    slot,
                    off,
                    end,
                    repost,
                }) => {
                    let take = (*end - *off).min(max - copied);
                    let data = qp.recv_data(*slot, *end).expect("completed receive slot");
                    buf.extend_from_slice(&data[*off..*off + take]);
                    *off += take;
                    copied += take;
                    from_data += take;
                    (*off == *end).then_some((*slot, *repost))
                }
                Some(Input::Read {
                    slot,
                    id,
                    len,
                    state,
                    ..
                }) => {
                    if !matches!(state, ReadState::Done(..)) {
                        break;
                    }
                    let head = match state {
                        ReadState::Done(_, head) => *head,
                        _ => unreachable!("checked above"),
                    };
                    if copied > 0 && buf.len() > head {
                        // Let the caller decode what came before (whole frames leave the
                        // buffer) so the payload can be spliced in, not copied.
                        break;
                    }
                    let ReadState::Done(mut v, head) = std::mem::replace(state, ReadState::Waiting)
                    else {
                        unreachable!("checked above")
                    };
                    let keep = buf.len();
                    if keep <= head {
                        v[head - keep..head].copy_from_slice(buf);
                        v.advance(head - keep);
                        *buf = v;
                    } else {
                        buf.extend_from_slice(&v[head..]);
                        self.counters.read_copies += 1;
                    }
                    copied += *len;
                    self.read_bytes_held -= *len;
                    self.done_unreported = Some(*id);
                    let slot = *slot;
                    self.ready_in.pop_front();
                    self.repost(slot)?;
                    break;
                }
            };
            if let Some((slot, repost)) = consumed {
                self.ready_in.pop_front();
                if repost {
                    self.repost(slot)?;
                }
            }
        }
        self.ready_bytes -= from_data;
        self.counters.bytes_in += copied as u64;
        // Consuming a payload may have made room in the READ budget.
        self.start_reads();
        Ok(copied)
    }
}
