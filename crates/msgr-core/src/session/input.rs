//! The receive path: bytes from the link go to the handshake step in progress or, once open,
//! are decoded frame by frame (messages, ACKs, keepalives, CLOSE).

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::wire::frame::{self, Frame, Step};

use super::timers::Timer;
use super::{Session, SessionError, SessionEvent, State};

impl Session {
    /// Consume received bytes. Complete frames are taken out of `buf`; a partial frame stays.
    /// An error means the link must be closed (the session already faulted itself and emitted
    /// [`SessionEvent::CloseLink`]).
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            // Bytes of a link we gave up: nobody reads them.
            buf.clear();
            return Ok(());
        };
        link.last_rx = now;
        loop {
            let step = match &self.state {
                State::Connecting(_) => self.client_input(buf, now),
                State::Accepting(_) => self.server_input(buf, now),
                State::Open => self.open_input(buf, now),
                _ => {
                    buf.clear();
                    Ok(false)
                }
            };
            match step {
                Ok(true) if self.link.is_some() => continue,
                Ok(_) => return Ok(()),
                Err(e) => {
                    self.fault(e.clone(), now, true);
                    return Err(e);
                }
            }
        }
    }

    /// Open-state input: one frame per call. Returns whether a frame was consumed.
    fn open_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<bool, SessionError> {
        let link = self.link.as_mut().expect("open implies a link");
        // A message goes straight from the decoder into the event queue (the hot path: one
        // move of the message rather than one per layer).
        let (in_seq, peer_num, dups) = (
            &mut self.in_seq,
            &mut self.peer_num,
            &mut self.duplicates_dropped,
        );
        let (events, timers, ack_delay) =
            (&mut self.events, &mut self.timers, self.config.ack_delay);
        let unacked_in = &mut link.unacked_in;
        let step = link.decoder.decode_with(buf, |m| {
            if m.seq <= *in_seq {
                // A replay of something we already delivered: the peer did not see our ACK.
                *dups += 1;
                return;
            }
            *in_seq = m.seq;
            *peer_num = m.src.num;
            *unacked_in += 1;
            if !ack_delay.is_zero() {
                timers.set_if_later_unset(Timer::Ack, now + ack_delay);
            }
            events.push_back(SessionEvent::Message(m));
        })?;
        let f = match step {
            Step::More => return Ok(false),
            Step::Message => return Ok(true),
            Step::Frame(f) => f,
        };
        match f {
            Frame::Msg(_) => unreachable!("messages go to the closure above"),
            Frame::Ack(seq) => {
                self.sent.trim(seq);
            }
            Frame::Keepalive => {}
            Frame::Keepalive2 { sec, nsec } => {
                frame::encode_keepalive2_ack(sec, nsec, &mut link.ctrl);
            }
            Frame::Keepalive2Ack { sec, nsec } => {
                let sent_at = self.born + Duration::new(sec.into(), nsec.min(999_999_999));
                let rtt = now.checked_duration_since(sent_at);
                self.events.push_back(SessionEvent::KeepaliveAck {
                    stamp: (sec, nsec),
                    rtt,
                });
            }
            Frame::Close => {
                self.terminate(SessionError::PeerClosed, true);
                return Ok(false);
            }
        }
        Ok(true)
    }
}
