//! The accepting side of the handshake: banner and addresses, the peer's connect and its checks,
//! the driver's accept decision (new, replace, retry, WAIT, refuse) and the SEQ exchange, up to
//! `Accepted`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::connect::CONNECT_FLAG_LOSSY;
use crate::wire::features::{has_feature, CEPH_FEATUREMASK_RECONNECT_SEQ};
use crate::wire::{ConnectMsg, ConnectReply, EntityAddr, EntityType, Tag, BANNER};

use crate::session::config::protocol_version;
use crate::session::timers::Timer;
use crate::session::{AcceptDecision, ConnectRequest, Session, SessionError, SessionEvent, State};

use super::{check_banner_prefix, is_blank_ip, take, ServerStep, ADDR_LEN};

impl Session {
    pub(in crate::session) fn start_server_handshake(&mut self) {
        let my_addr = self.my_addr;
        let seen = self
            .socket_peer
            .map_or(EntityAddr::blank(), |sa| EntityAddr::new(sa, 0));
        let ctrl = self.ctrl();
        ctrl.extend_from_slice(BANNER);
        my_addr.encode_legacy(ctrl);
        seen.encode_legacy(ctrl);
        self.state = State::Accepting(ServerStep::Banner);
    }

    /// One server step. Returns whether it consumed something.
    pub(in crate::session) fn server_input(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Result<bool, SessionError> {
        let State::Accepting(step) = self.state.clone() else {
            return Ok(false);
        };
        match step {
            ServerStep::AwaitLink | ServerStep::Decision { .. } => return Ok(false),
            ServerStep::Banner => {
                check_banner_prefix(buf)?;
                let Some(b) = take(buf, BANNER.len() + ADDR_LEN) else {
                    return Ok(false);
                };
                let mut peer = EntityAddr::decode_legacy(&b[BANNER.len()..])?;
                if is_blank_ip(&peer) {
                    // The peer does not know its IP: it is the one its socket comes from.
                    if let Some(sa) = self.socket_peer {
                        peer.addr = Some(SocketAddr::new(sa.ip(), peer.port()));
                    }
                }
                self.peer_addr = Some(peer);
                self.state = State::Accepting(ServerStep::Connect);
            }
            ServerStep::Connect => {
                let Some(b) = take(buf, ConnectMsg::LEN) else {
                    return Ok(false);
                };
                let msg = ConnectMsg::decode(&b)?;
                self.check_authorizer_len(msg.authorizer_len)?;
                if msg.authorizer_len > 0 {
                    self.state = State::Accepting(ServerStep::ConnectAuth(msg));
                } else {
                    self.handle_connect(msg, &[])?;
                }
            }
            ServerStep::ConnectAuth(msg) => {
                let Some(auth) = take(buf, msg.authorizer_len as usize) else {
                    return Ok(false);
                };
                self.handle_connect(msg, &auth)?;
            }
            ServerStep::PeerSeq => {
                let Some(mut b) = take(buf, 8) else {
                    return Ok(false);
                };
                let acked = b.get_u64_le();
                self.queue.discard_replayed_up_to(acked);
                self.server_ready(now);
            }
        }
        Ok(true)
    }

    /// Checks that need no other session (protocol version, features, authorizer), then asks
    /// the driver about existing sessions.
    fn handle_connect(&mut self, msg: ConnectMsg, auth: &[u8]) -> Result<(), SessionError> {
        let peer_type = u8::try_from(msg.host_type)
            .map(EntityType)
            .map_err(|_| SessionError::Protocol(format!("host_type {}", msg.host_type)))?;
        self.peer_type = Some(peer_type);
        self.policy = self.config.policies.get(peer_type).clone();
        let ours = protocol_version(self.my_type(), peer_type, false);
        if msg.protocol_version != ours {
            self.send_error_reply(Tag::BadProtoVer, &msg);
            return Ok(());
        }
        if self.required_features() & !msg.features != 0 {
            self.send_error_reply(Tag::Features, &msg);
            return Ok(());
        }
        let Ok(auth_reply) = self.config.authorizer.verify(msg.authorizer_protocol, auth) else {
            self.send_error_reply(Tag::BadAuthorizer, &msg);
            return Ok(());
        };
        let req = ConnectRequest {
            peer_addr: self.peer_addr.unwrap_or(EntityAddr::blank()),
            peer_type,
            global_seq: msg.global_seq,
            connect_seq: msg.connect_seq,
            features: msg.features,
            lossy: msg.is_lossy(),
        };
        self.state = State::Accepting(ServerStep::Decision { msg, auth_reply });
        self.events.push_back(SessionEvent::AcceptRequest(req));
        Ok(())
    }

    fn reply_for(&self, tag: Tag, msg: &ConnectMsg) -> ConnectReply {
        ConnectReply {
            tag: tag as u8,
            features: (msg.features & self.config.features_supported) | self.required_features(),
            global_seq: 0,
            connect_seq: 0,
            protocol_version: protocol_version(
                self.my_type(),
                self.peer_type.unwrap_or(EntityType::CLIENT),
                false,
            ),
            authorizer_len: 0,
            flags: 0,
        }
    }

    /// A reply after which the client sends another connect on this link.
    fn send_error_reply(&mut self, tag: Tag, msg: &ConnectMsg) {
        self.send_retry_reply(self.reply_for(tag, msg));
    }

    fn send_retry_reply(&mut self, reply: ConnectReply) {
        reply.encode(self.ctrl());
        self.state = State::Accepting(ServerStep::Connect);
    }

    pub(in crate::session) fn server_resolve(
        &mut self,
        decision: AcceptDecision,
        existing: Option<&mut Session>,
        now: Instant,
    ) {
        let State::Accepting(ServerStep::Decision { msg, auth_reply }) = self.state.clone() else {
            return;
        };
        if self.link.is_none() {
            return;
        }
        match decision {
            AcceptDecision::New => self.open_accepted(msg, auth_reply, false, now),
            AcceptDecision::Replace => {
                self.take_over(existing, false);
                self.open_accepted(msg, auth_reply, false, now);
            }
            AcceptDecision::ReplaceAfterPeerReset => {
                self.take_over(existing, true);
                self.open_accepted(msg, auth_reply, true, now);
            }
            AcceptDecision::RetrySession { connect_seq } => {
                let mut r = self.reply_for(Tag::RetrySession, &msg);
                r.connect_seq = connect_seq;
                self.send_retry_reply(r);
            }
            AcceptDecision::RetryGlobal { global_seq } => {
                let mut r = self.reply_for(Tag::RetryGlobal, &msg);
                r.global_seq = global_seq;
                self.send_retry_reply(r);
            }
            AcceptDecision::ResetSession => self.send_error_reply(Tag::ResetSession, &msg),
            AcceptDecision::Wait => {
                // Our own connect wins; make sure it goes through even if it had nothing to
                // send (Ceph nudges it with a keepalive).
                if let Some(ex) = existing {
                    ex.send_keepalive(now);
                }
                self.send_error_reply(Tag::Wait, &msg);
            }
            AcceptDecision::Refuse => {
                let who = self
                    .peer_addr
                    .map_or_else(|| "peer".to_string(), |a| a.to_string());
                self.terminate(SessionError::Refused(who), true);
            }
        }
        if matches!(
            self.state,
            State::Open | State::Accepting(ServerStep::PeerSeq)
        ) {
            return;
        }
        // A retry / error reply: the handshake timer keeps running for the next connect.
        self.timers
            .set_if_later_unset(Timer::Handshake, now + self.config.handshake_timeout);
    }

    /// Take the existing session's state (Ceph `replace`). A lossy existing one has nothing
    /// worth keeping: it is reset and reported. `peer_reset`: the peer restarted, so its
    /// numbering starts at 0 again and (resetcheck) our old queue is dropped and reported.
    fn take_over(&mut self, existing: Option<&mut Session>, peer_reset: bool) {
        let Some(ex) = existing else { return };
        if ex.policy.lossy {
            ex.terminate(SessionError::Replaced, true);
            return;
        }
        if ex.link.take().is_some() {
            ex.events.push_back(SessionEvent::CloseLink);
        }
        ex.timers.clear();
        ex.queue.requeue_unacked(&mut ex.sent);
        // A peer reset only invalidates numbering we actually used: if this session never
        // wrote or received a message (e.g. the peer's first handshake was cut before it saw
        // our reply), its queue is still good for the peer and is kept rather than dropped
        // (Ceph drops it here; the application would have to resend).
        let numbered = ex.out_seq > 0 || ex.in_seq > 0;
        if peer_reset && self.policy.resetcheck && numbered {
            let undelivered = ex.queue.drain_all();
            self.events
                .push_back(SessionEvent::RemoteReset { undelivered });
        } else {
            // The conversation continues under the existing session's policy (Ceph keeps the
            // existing connection object and only swaps its socket).
            self.policy = ex.policy.clone();
            self.queue = std::mem::take(&mut ex.queue);
            self.out_seq = ex.out_seq;
            self.in_seq = ex.in_seq;
            self.once_ready = ex.once_ready;
        }
        if let Some(k) = ex.keepalive.take() {
            self.keepalive = Some(k);
        }
        ex.state = State::Closed;
        ex.events.push_back(SessionEvent::Replaced);
    }

    /// Accept the connect (Ceph `open`): READY, or SEQ + our in_seq when the peer can exchange
    /// sequence numbers (not after a peer reset: its numbering starts again).
    fn open_accepted(
        &mut self,
        msg: ConnectMsg,
        auth_reply: Bytes,
        peer_reset: bool,
        now: Instant,
    ) {
        self.connect_seq = msg.connect_seq + 1;
        self.peer_global_seq = msg.global_seq;
        let seq_exchange = has_feature(msg.features, CEPH_FEATUREMASK_RECONNECT_SEQ) && !peer_reset;
        if !seq_exchange {
            self.in_seq = 0;
        }
        let mut reply = self.reply_for(if seq_exchange { Tag::Seq } else { Tag::Ready }, &msg);
        reply.features = self.config.features_supported;
        reply.global_seq = self.config.global_seq.next(0);
        reply.connect_seq = self.connect_seq;
        reply.authorizer_len = auth_reply.len() as u32;
        reply.flags = if self.policy.lossy {
            CONNECT_FLAG_LOSSY
        } else {
            0
        };
        self.features = self.config.features_supported & msg.features;
        // The peer may now consider the session open: from here a fault keeps it (Ceph sets
        // once_ready when this reply is written).
        self.once_ready = true;
        let in_seq = self.in_seq;
        let ctrl = self.ctrl();
        reply.encode(ctrl);
        ctrl.extend_from_slice(&auth_reply);
        if seq_exchange {
            self.put_u64(in_seq);
            self.state = State::Accepting(ServerStep::PeerSeq);
        } else {
            self.server_ready(now);
        }
    }

    fn server_ready(&mut self, now: Instant) {
        self.become_open(now);
        let (peer_addr, peer_name) = (self.peer_addr, self.peer_name());
        self.events.push_back(SessionEvent::Accepted {
            peer_addr: peer_addr.unwrap_or(EntityAddr::blank()),
            peer_name: peer_name.unwrap_or_default(),
            features: self.features,
        });
    }
}
