//! The transmit path: control bytes (handshake, keepalives), then queued messages up to the
//! batch budget, then the coalesced ACK and a pending CLOSE.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::features::{
    has_feature, CEPH_FEATUREMASK_MSGR_KEEPALIVE2, CEPH_FEATUREMASK_MSG_AUTH,
};
use crate::wire::frame;

use super::timers::Timer;
use super::{Session, SessionError, State};

impl Session {
    /// Append the chunks to write, in order. Returns the number of chunks appended; call again
    /// until it returns 0 (one call hands out at most `transmit_batch_bytes` of payload).
    pub fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let before = out.len();
        let open = matches!(self.state, State::Open);
        let Some(link) = self.link.as_mut() else {
            return 0;
        };
        if open {
            if let Some((sec, nsec)) = self.keepalive.take() {
                if has_feature(self.features, CEPH_FEATUREMASK_MSGR_KEEPALIVE2) {
                    frame::encode_keepalive2(sec, nsec, &mut link.ctrl);
                } else {
                    frame::encode_keepalive(&mut link.ctrl);
                }
            }
        }
        if !open {
            frame::flush_batch(&mut link.ctrl, out);
            return out.len() - before;
        }
        // Messages follow the control bytes in the same buffer: a run of small messages (and
        // the ACK after them) leaves as one chunk; large sections go as their own chunks.
        let msg_auth = has_feature(self.features, CEPH_FEATUREMASK_MSG_AUTH);
        let (my_name, crc_data) = (self.config.my_name, self.config.crc_data);
        let written = self.queue.write(
            &mut self.sent,
            &mut self.out_seq,
            self.config.transmit_batch_bytes,
            |m| {
                m.src = my_name;
                frame::encode_message_batched(
                    m,
                    m.seq,
                    my_name,
                    msg_auth,
                    crc_data,
                    frame::INLINE_SECTION_MAX,
                    &mut link.ctrl,
                    out,
                );
            },
        );
        let wrote_msgs = written > 0;
        if self.policy.lossy {
            self.sent.cap(self.config.lossy_unacked_limit);
        }
        // One ACK covers everything received so far. It rides along with our own messages, or
        // goes when enough piled up or the deferred-ack deadline passed.
        if link.unacked_in > 0
            && (wrote_msgs
                || link.ack_due
                || link.unacked_in >= self.config.ack_every
                || self.config.ack_delay.is_zero())
        {
            frame::encode_ack(self.in_seq, &mut link.ctrl);
            link.unacked_in = 0;
            link.ack_due = false;
            self.timers.stop(Timer::Ack);
        }
        let close = self.closing && self.queue.is_empty();
        if close {
            frame::encode_close(&mut link.ctrl);
        }
        frame::flush_batch(&mut link.ctrl, out);
        if close {
            self.terminate(SessionError::Closed, true);
        }
        out.len() - before
    }

    pub(super) fn ctrl(&mut self) -> &mut BytesMut {
        &mut self.link.as_mut().expect("handshake runs on a link").ctrl
    }

    pub(super) fn put_u64(&mut self, v: u64) {
        self.ctrl().put_u64_le(v);
    }
}
