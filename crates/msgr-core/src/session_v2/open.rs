//! The open session: received MESSAGE / ACK / KEEPALIVE2(_ACK) frames, and the transmit path.

use std::time::Instant;

use bytes::BytesMut;

use super::link::InFrame;
use super::{wire_err, SessionV2};
use crate::message::{Message, Priority};
use crate::session::{SessionError, SessionEvent};
use crate::v2::message::{MsgHeader2, MESSAGE_ALIGNMENTS};
use crate::v2::payload::Control;
use crate::v2::Tag;
use crate::wire::EntityName;

impl SessionV2 {
    pub(super) fn open_frame(&mut self, f: InFrame, now: Instant) -> Result<(), SessionError> {
        if f.tag == Tag::Message {
            return self.on_message(f);
        }
        match Control::decode(f.tag, &f.segments[0]).map_err(wire_err)? {
            Control::Ack { seq } => {
                self.sent.trim(seq);
            }
            Control::Keepalive2 { stamp } => {
                self.link_mut()
                    .send_control(&Control::Keepalive2Ack { stamp });
            }
            Control::Keepalive2Ack { stamp } => {
                let rtt = self
                    .keepalive_sent
                    .filter(|(s, _)| *s == stamp)
                    .map(|(_, at)| now.saturating_duration_since(at));
                self.events
                    .push_back(SessionEvent::KeepaliveAck { stamp, rtt });
            }
            c => {
                return Err(SessionError::Protocol(format!(
                    "unexpected {:?} frame on an open msgr2 session",
                    c.tag()
                )))
            }
        }
        Ok(())
    }

    fn on_message(&mut self, f: InFrame) -> Result<(), SessionError> {
        let [header, front, middle, data] = f.segments;
        let h = MsgHeader2::decode(&header).map_err(wire_err)?;
        self.sent.trim(h.ack_seq);
        if h.seq <= self.in_seq {
            // A replay of something we already have.
            return Ok(());
        }
        self.in_seq = h.seq;
        self.link_mut().ack_due = true;
        let mut m = Message::new(h.msg_type, front)
            .with_priority(Priority(h.priority))
            .with_middle(middle)
            .with_data(data)
            .with_tid(h.tid);
        m.version = h.version;
        m.compat_version = h.compat_version;
        m.data_off = h.data_off;
        m.seq = h.seq;
        m.src = EntityName::new(
            self.peer_type.unwrap_or(crate::wire::EntityType(0)),
            self.peer_gid,
        );
        self.events.push_back(SessionEvent::Message(m));
        Ok(())
    }

    /// Writes keepalive, ack and queued messages (up to the batch budget) to the link.
    pub(super) fn write_open(&mut self) {
        let batch = self.config.base.transmit_batch_bytes;
        let lossy_limit = self
            .policy
            .lossy
            .then_some(self.config.base.lossy_unacked_limit);
        let in_seq = self.in_seq;
        if let Some(stamp) = self.keepalive.take() {
            self.keepalive_sent = Some((stamp, self.born + elapsed(stamp)));
            self.link_mut().send_control(&Control::Keepalive2 { stamp });
        }
        let link = self.link.as_mut().expect("open sessions have a link");
        // The header's bytes, reused from message to message (the frame copies them).
        let mut h = BytesMut::with_capacity(MsgHeader2::LEN);
        let written = self
            .queue
            .write(&mut self.sent, &mut self.out_seq, batch, |m| {
                h.clear();
                MsgHeader2::for_message(m, m.seq, in_seq).encode(&mut h);
                let [a0, a1, a2, a3] = MESSAGE_ALIGNMENTS;
                link.send_frame(
                    Tag::Message,
                    &[(&h, a0), (&m.front, a1), (&m.middle, a2), (&m.data, a3)],
                );
            });
        let wrote = written > 0;
        if let Some(limit) = lossy_limit {
            self.sent.cap(limit);
        }
        let link = self.link.as_mut().expect("open sessions have a link");
        if wrote {
            // Every message header carried ack_seq = in_seq.
            link.ack_due = false;
        } else if link.ack_due {
            link.ack_due = false;
            link.send_control(&Control::Ack { seq: in_seq });
        }
    }
}

/// The offset from `born` a keepalive stamp encodes.
fn elapsed(stamp: (u32, u32)) -> std::time::Duration {
    std::time::Duration::new(stamp.0.into(), stamp.1)
}
