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
        if !link.ctrl.is_empty() {
            out.push(link.ctrl.split().freeze());
        }
        if !open {
            return out.len() - before;
        }
        let msg_auth = has_feature(self.features, CEPH_FEATUREMASK_MSG_AUTH);
        let mut budget = self.config.transmit_batch_bytes;
        let mut wrote_msgs = false;
        while budget > 0 {
            let Some(mut m) = self.queue.pop() else { break };
            if m.seq == 0 {
                self.out_seq += 1;
                m.seq = self.out_seq;
            }
            m.src = self.config.my_name;
            let crc_data = self.config.crc_data;
            frame::encode_message_crc(&m, m.seq, self.config.my_name, msg_auth, crc_data, out);
            budget = budget.saturating_sub(m.payload_len().max(1));
            self.sent.push(m);
            wrote_msgs = true;
        }
        if self.policy.lossy {
            self.sent.cap(self.config.lossy_unacked_limit);
        }
        // One ACK covers everything received so far. It rides along with our own messages, or
        // goes when enough piled up or the deferred-ack deadline passed.
        let link = self.link.as_mut().expect("checked above");
        if link.unacked_in > 0
            && (wrote_msgs
                || link.ack_due
                || link.unacked_in >= self.config.ack_every
                || self.config.ack_delay.is_zero())
        {
            let mut b = BytesMut::with_capacity(9);
            frame::encode_ack(self.in_seq, &mut b);
            out.push(b.freeze());
            link.unacked_in = 0;
            link.ack_due = false;
            self.timers.stop(Timer::Ack);
        }
        if self.closing && self.queue.is_empty() {
            let mut b = BytesMut::with_capacity(1);
            frame::encode_close(&mut b);
            out.push(b.freeze());
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
