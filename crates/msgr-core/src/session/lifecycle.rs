//! How a session changes state outside the handshake: timers expiring, becoming open, faults
//! (link lost, session kept or reset per policy), the end of the session and a peer's reset.

use std::time::Instant;

use crate::message::Message;
use crate::wire::features::{has_feature, CEPH_FEATUREMASK_MSG_AUTH};

use super::handshake::ClientStep;
use super::timers::Timer;
use super::{Session, SessionError, SessionEvent, State};

impl Session {
    /// Run the timers due at `now` (handshake, idle, keepalive, delayed ack, WAIT retry); call
    /// it when the deadline the session gave is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        for t in self.timers.expired(now) {
            match t {
                Timer::Handshake => {
                    if matches!(self.state, State::Connecting(_) | State::Accepting(_)) {
                        let d = self.config.handshake_timeout;
                        self.fault(SessionError::HandshakeTimeout(d), now, true);
                    }
                }
                Timer::Idle => {
                    let (Some(idle), Some(link)) = (self.config.idle_timeout, self.link.as_ref())
                    else {
                        continue;
                    };
                    if !matches!(self.state, State::Open) {
                        continue;
                    }
                    let deadline = link.last_rx + idle;
                    if deadline <= now {
                        self.fault(SessionError::IdleTimeout(idle), now, true);
                    } else {
                        self.timers.set(Timer::Idle, deadline);
                    }
                }
                Timer::Keepalive => {
                    if let (State::Open, Some(every)) =
                        (&self.state, self.config.keepalive_interval)
                    {
                        self.keepalive = Some(self.stamp(now));
                        self.timers.set(Timer::Keepalive, now + every);
                    }
                }
                Timer::Ack => {
                    if let Some(link) = self.link.as_mut() {
                        link.ack_due = link.unacked_in > 0;
                    }
                }
                Timer::WaitRetry => {
                    if matches!(self.state, State::Wait) {
                        self.state = State::Faulted;
                        self.events.push_back(SessionEvent::Faulted {
                            error: SessionError::LinkFailed(format!(
                                "peer won the connect race but did not connect within {:?}",
                                self.config.wait_retry
                            )),
                            will_reconnect: true,
                        });
                    }
                }
            }
        }
    }

    /// Common part of reaching the open state, both sides.
    pub(super) fn become_open(&mut self, now: Instant) {
        let msg_auth = has_feature(self.features, CEPH_FEATUREMASK_MSG_AUTH);
        if let Some(link) = self.link.as_mut() {
            link.decoder.set_msg_auth(msg_auth);
            link.last_rx = now;
        }
        self.once_ready = true;
        self.state = State::Open;
        self.timers.stop(Timer::Handshake);
        if let Some(idle) = self.config.idle_timeout {
            self.timers.set(Timer::Idle, now + idle);
        }
        if let Some(every) = self.config.keepalive_interval {
            self.timers.set(Timer::Keepalive, now + every);
        }
    }

    /// Drop the current link after a failure (Ceph `fault`). `ours`: the session decided it (so
    /// the driver is told to close the link). Does nothing without a link.
    pub(super) fn fault(&mut self, error: SessionError, now: Instant, ours: bool) {
        if self.link.is_none() {
            return;
        }
        let client_early = matches!(self.state, State::Connecting(ClientStep::Banner));
        if self.policy.lossy && !client_early {
            self.terminate(error, ours);
            return;
        }
        self.link = None;
        self.timers.clear();
        if ours {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.queue.requeue_unacked(&mut self.sent);
        let was = std::mem::replace(&mut self.state, State::Faulted);
        if !self.once_ready && self.queue.is_empty() && matches!(was, State::Accepting(_)) {
            // A half-accepted peer with nothing for it: forget it.
            self.state = State::Closed;
            self.events.push_back(SessionEvent::Reset {
                error,
                undelivered: Vec::new(),
            });
            return;
        }
        if self.policy.standby && self.queue.is_empty() && self.keepalive.is_none() {
            self.state = State::Standby;
        } else if matches!(was, State::Connecting(_)) {
            // Still trying to connect: try again (same connect_seq).
            self.state = State::Faulted;
        } else if self.policy.server {
            self.state = State::Standby;
        } else {
            // Lost an open (or accepted) link: reconnect as the connecting side.
            self.connect_seq += 1;
            self.state = State::Faulted;
        }
        let _ = now;
        self.events.push_back(SessionEvent::Faulted {
            error,
            will_reconnect: self.wants_reconnect(),
        });
    }

    /// End the session: report everything not acknowledged.
    pub(super) fn terminate(&mut self, error: SessionError, ours: bool) {
        if self.link.take().is_some() && ours {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.timers.clear();
        self.state = State::Closed;
        self.closing = false;
        self.keepalive = None;
        let undelivered = self.take_undelivered();
        self.events
            .push_back(SessionEvent::Reset { error, undelivered });
    }

    /// Sent-but-unacked (seq order) then queued messages, emptying both.
    pub(super) fn take_undelivered(&mut self) -> Vec<Message> {
        self.queue.take_undelivered(&mut self.sent)
    }

    /// The peer lost our shared session (Ceph `session_reset`): numbering restarts, our queues
    /// are dropped and reported. If no message was ever numbered on this session there is
    /// nothing the peer could have lost: the queue is kept and nobody is told (Ceph drops it).
    pub(super) fn session_reset(&mut self) {
        self.connect_seq = 0;
        if self.in_seq == 0 && self.out_seq == 0 {
            return;
        }
        let undelivered = self.take_undelivered();
        self.in_seq = 0;
        self.out_seq = 0;
        self.connect_seq = 0;
        self.once_ready = false;
        if let Some(link) = self.link.as_mut() {
            link.unacked_in = 0;
        }
        self.events
            .push_back(SessionEvent::RemoteReset { undelivered });
    }
}
