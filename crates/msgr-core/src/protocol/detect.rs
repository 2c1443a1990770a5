//! [`Detect`]: an accepted link that may carry either protocol reads the peer's banner first
//! (clients of both protocols write theirs before reading), then becomes the right session.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{AnySession, Configs, Protocol, ProtocolSession};
use crate::message::Message;
use crate::policy::Policy;
use crate::session::{Session, SessionError, SessionEvent, SessionState};
use crate::session_v2::SessionV2;
use crate::wire::{EntityName, EntityType};

/// Reads the first bytes of an accepted link to learn the protocol.
#[derive(Debug)]
pub struct Detect {
    configs: Configs,
    socket_peer: SocketAddr,
    policy: Policy,
    linked: bool,
    closed: bool,
    deadline: Option<Instant>,
    events: std::collections::VecDeque<SessionEvent>,
}

impl Detect {
    /// A detector for a link `socket_peer` dialed (both protocols accepted by `configs`).
    pub(super) fn new(configs: &Configs, socket_peer: SocketAddr) -> Self {
        Detect {
            configs: configs.clone(),
            socket_peer,
            policy: configs.v1.policies.get(EntityType(0)).clone(),
            linked: false,
            closed: false,
            deadline: None,
            events: Default::default(),
        }
    }
}

/// What both banners start with; the next byte tells them apart (`0` of `v027`, `2` of `v2\n`).
const BANNER_PREFIX: &[u8] = b"ceph v";
/// Enough of msgr1's banner to tell a msgr1 peer.
pub(super) const V1_BANNER_START: &[u8] = b"ceph v0";

impl Detect {
    /// The protocol the banner in `buf` names, once enough of it is there; an error for bytes
    /// that are no Ceph banner.
    pub(super) fn detect(&mut self, buf: &BytesMut) -> Result<Option<Protocol>, SessionError> {
        let n = buf.len().min(BANNER_PREFIX.len());
        if buf[..n] != BANNER_PREFIX[..n] {
            let e = SessionError::Protocol(format!(
                "the peer at {} sent {:?}, which is no Ceph messenger banner: not a Ceph peer?",
                self.socket_peer,
                String::from_utf8_lossy(&buf[..buf.len().min(16)])
            ));
            self.end(e.clone());
            return Err(e);
        }
        let Some(&b) = buf.get(BANNER_PREFIX.len()) else {
            return Ok(None);
        };
        // A detector exists only where both protocols are accepted.
        let found = match b {
            b'0' => Protocol::V1,
            b'2' => Protocol::V2,
            _ => {
                let e = SessionError::Protocol(format!(
                    "the peer at {} sent a Ceph banner of an unknown protocol version",
                    self.socket_peer
                ));
                self.end(e.clone());
                return Err(e);
            }
        };
        Ok(Some(found))
    }

    /// The session for `protocol`, with the link up (it was up while detecting).
    pub(super) fn become_session(&mut self, protocol: Protocol, now: Instant) -> AnySession {
        let mut s = match (protocol, &self.configs.v2) {
            (Protocol::V2, Some(v2)) => AnySession::V2(Box::new(SessionV2::accept(
                v2.clone(),
                self.socket_peer,
                now,
            ))),
            _ => AnySession::V1(Box::new(Session::accept(
                self.configs.v1.clone(),
                self.socket_peer,
                now,
            ))),
        };
        if self.linked {
            s.link_up(now);
        }
        s
    }

    fn end(&mut self, error: SessionError) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.deadline = None;
        if std::mem::take(&mut self.linked) {
            self.events.push_back(SessionEvent::CloseLink);
        }
        self.events.push_back(SessionEvent::Reset {
            error,
            undelivered: Vec::new(),
        });
    }
}

/// Before the banner: no peer, nothing to send; only the handshake timeout runs.
impl ProtocolSession for Detect {
    fn protocol(&self) -> Protocol {
        Protocol::V1
    }
    fn link_up(&mut self, now: Instant) {
        if self.closed || self.linked {
            self.events.push_back(SessionEvent::CloseLink);
            return;
        }
        self.linked = true;
        self.deadline = Some(now + self.configs.v1.handshake_timeout);
    }
    fn link_down(&mut self, error: SessionError, _now: Instant) {
        if self.linked {
            self.linked = false;
            self.end(error);
        }
    }
    fn handle_input(&mut self, _buf: &mut BytesMut, _now: Instant) -> Result<(), SessionError> {
        // AnySession::handle_input detects; a Detect on its own never gets here.
        Ok(())
    }
    fn input_wanted(&self) -> usize {
        0
    }
    fn poll_transmit(&mut self, _out: &mut Vec<Bytes>) -> usize {
        0
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.end(SessionError::HandshakeTimeout(
                self.configs.v1.handshake_timeout,
            ));
        }
    }
    fn wants_reconnect(&self) -> bool {
        false
    }
    fn send_message(&mut self, _msg: Message) {}
    fn send_keepalive(&mut self, _now: Instant) {}
    fn mark_down(&mut self) {
        self.end(SessionError::MarkedDown);
    }
    fn close(&mut self) {
        self.end(SessionError::Closed);
    }
    fn state(&self) -> SessionState {
        if self.closed {
            SessionState::Closed
        } else {
            SessionState::Accepting
        }
    }
    fn has_link(&self) -> bool {
        self.linked
    }
    fn pending_messages(&self) -> usize {
        0
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }
    fn features(&self) -> u64 {
        0
    }
    fn peer_name(&self) -> Option<EntityName> {
        None
    }
}
