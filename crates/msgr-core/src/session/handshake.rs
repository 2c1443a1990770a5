//! The msgr1 handshake, both sides, as steps of [`State::Connecting`] / [`State::Accepting`].
//!
//! ```text
//! client                                   server
//!   banner  ------------------------------>
//!           <------------------------------  banner, server addr, client addr as seen
//!   client addr, connect (+authorizer) --->
//!           <------------------------------  reply (+authorizer reply)
//!                                             READY: open
//!                                             SEQ: + u64 server's in_seq
//!   u64 client's in_seq (after SEQ) ------>
//! ```
//! Error replies (BADPROTOVER, FEATURES, BADAUTHORIZER) and RETRY_SESSION / RETRY_GLOBAL /
//! RESETSESSION leave the link up: the client sends another connect on it. WAIT ends it.
//!
//! Every length a peer announces (authorizers) is checked against the config before we wait
//! for or keep its bytes.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::connect::CONNECT_FLAG_LOSSY;
use crate::wire::features::{has_feature, CEPH_FEATUREMASK_RECONNECT_SEQ};
use crate::wire::{ConnectMsg, ConnectReply, EntityAddr, EntityType, Tag, WireError, BANNER};

use super::config::protocol_version;
use super::timers::Timer;
use super::{AcceptDecision, ConnectRequest, Session, SessionError, SessionEvent, State};

const ADDR_LEN: usize = EntityAddr::LEGACY_LEN;

/// Where a client handshake is.
#[derive(Debug, Clone)]
pub(super) enum ClientStep {
    /// Banner sent; waiting for the server's banner, its address and ours as it sees it.
    Banner,
    /// Our address and a connect sent; waiting for the 26-byte reply.
    Reply,
    /// Reply read; waiting for its `authorizer_len` bytes.
    ReplyAuth(ConnectReply),
    /// Reply was SEQ: waiting for the server's le64 acked seq.
    AckSeq(ConnectReply),
}

/// Where a server handshake is.
#[derive(Debug, Clone)]
pub(super) enum ServerStep {
    /// Made by `Session::accept`, link not up yet.
    AwaitLink,
    /// Our banner and addresses sent; waiting for the client's banner and address.
    Banner,
    /// Waiting for a 33-byte connect (first one, or another after an error / retry reply).
    Connect,
    /// Connect read; waiting for its `authorizer_len` bytes.
    ConnectAuth(ConnectMsg),
    /// Connect checked; `AcceptRequest` emitted, waiting for `resolve_accept`.
    Decision { msg: ConnectMsg, auth_reply: Bytes },
    /// SEQ reply sent; waiting for the client's le64 in_seq.
    PeerSeq,
}

/// No IP (family 0) or the unspecified IP: the sender does not know its address.
fn is_blank_ip(a: &EntityAddr) -> bool {
    a.ip().is_none_or(|ip| ip.is_unspecified())
}

/// Same endpoint: address and nonce (the type field is not part of the identity).
fn same_endpoint(a: &EntityAddr, b: &EntityAddr) -> bool {
    a.nonce == b.nonce && a.addr == b.addr
}

/// Fails as soon as the bytes received so far (up to the banner's length) differ from the
/// banner, so a peer speaking another protocol (say a short HTTP request) is dropped at once
/// instead of holding the link until the handshake timeout while we wait for a full banner
/// and address.
fn check_banner_prefix(buf: &[u8]) -> Result<(), SessionError> {
    let n = buf.len().min(BANNER.len());
    if buf[..n] != BANNER[..n] {
        return Err(WireError::BadBanner(buf[..n].to_vec()).into());
    }
    Ok(())
}

/// Takes `n` bytes off the front of `buf` if they are all there.
fn take(buf: &mut BytesMut, n: usize) -> Option<BytesMut> {
    if buf.len() < n {
        buf.reserve(n - buf.len());
        return None;
    }
    Some(buf.split_to(n))
}

impl Session {
    fn my_type(&self) -> EntityType {
        self.config.my_name.kind
    }

    fn required_features(&self) -> u64 {
        self.config.features_required | self.policy.features_required
    }

    fn check_authorizer_len(&self, len: u32) -> Result<(), SessionError> {
        if len > self.config.max_authorizer_len {
            return Err(WireError::LimitExceeded {
                what: "authorizer",
                len: len.into(),
                limit: self.config.max_authorizer_len.into(),
            }
            .into());
        }
        Ok(())
    }

    // ---- client ----------------------------------------------------------------------------

    pub(super) fn start_client_handshake(&mut self) {
        self.global_seq = self.config.global_seq.next(0);
        self.ctrl().extend_from_slice(BANNER);
        self.state = State::Connecting(ClientStep::Banner);
    }

    fn send_connect(&mut self) {
        let peer_type = self.peer_type.unwrap_or(EntityType::CLIENT);
        let me = self.config.my_name;
        // Ceph sends no authorizer to a monitor unless it is one (clients authenticate to
        // monitors with MAuth messages instead).
        let auth = if (peer_type != EntityType::MON || me.kind == EntityType::MON)
            && self.config.authorizer.protocol() != 0
        {
            self.config.authorizer.build(&me)
        } else {
            Bytes::new()
        };
        let msg = ConnectMsg {
            features: self.config.features_supported,
            host_type: me.kind.0.into(),
            global_seq: self.global_seq,
            connect_seq: self.connect_seq,
            protocol_version: protocol_version(me.kind, peer_type, true),
            authorizer_protocol: if auth.is_empty() {
                0
            } else {
                self.config.authorizer.protocol()
            },
            authorizer_len: auth.len() as u32,
            flags: if self.policy.lossy {
                CONNECT_FLAG_LOSSY
            } else {
                0
            },
        };
        let ctrl = self.ctrl();
        msg.encode(ctrl);
        ctrl.extend_from_slice(&auth);
    }

    /// One client step. Returns whether it consumed something.
    pub(super) fn client_input(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Result<bool, SessionError> {
        let State::Connecting(step) = self.state.clone() else {
            return Ok(false);
        };
        match step {
            ClientStep::Banner => {
                check_banner_prefix(buf)?;
                let Some(b) = take(buf, BANNER.len() + 2 * ADDR_LEN) else {
                    return Ok(false);
                };
                let theirs = EntityAddr::decode_legacy(&b[BANNER.len()..])?;
                let mine_as_seen = EntityAddr::decode_legacy(&b[BANNER.len() + ADDR_LEN..])?;
                self.check_server_addr(&theirs)?;
                self.learn_my_addr(&mine_as_seen);
                let my_addr = self.my_addr;
                my_addr.encode_legacy(self.ctrl());
                self.send_connect();
                self.state = State::Connecting(ClientStep::Reply);
            }
            ClientStep::Reply => {
                let Some(b) = take(buf, ConnectReply::LEN) else {
                    return Ok(false);
                };
                let reply = ConnectReply::decode(&b)?;
                self.check_authorizer_len(reply.authorizer_len)?;
                if reply.authorizer_len > 0 {
                    self.state = State::Connecting(ClientStep::ReplyAuth(reply));
                } else {
                    self.handle_reply(reply, now)?;
                }
            }
            ClientStep::ReplyAuth(reply) => {
                // The authorizer reply of auth-none is empty; other protocols are not ours to
                // check here, so its bytes are skipped.
                let Some(_auth) = take(buf, reply.authorizer_len as usize) else {
                    return Ok(false);
                };
                self.handle_reply(reply, now)?;
            }
            ClientStep::AckSeq(reply) => {
                let Some(mut b) = take(buf, 8) else {
                    return Ok(false);
                };
                let acked = b.get_u64_le();
                // The server has these already: do not replay them.
                self.queue.discard_replayed_up_to(acked);
                let in_seq = self.in_seq;
                self.put_u64(in_seq);
                self.client_ready(reply, now)?;
            }
        }
        Ok(true)
    }

    /// A client checks that the server is who it dialed, nonce included (NOTES.md): a daemon
    /// restarted on the same port has a new nonce and must not inherit the session. A server
    /// that does not know its IP yet (blank) is accepted if port and nonce match.
    fn check_server_addr(&self, theirs: &EntityAddr) -> Result<(), SessionError> {
        let Some(dialed) = self.peer_addr else {
            return Ok(());
        };
        let ok = same_endpoint(theirs, &dialed)
            || (is_blank_ip(theirs)
                && theirs.port() == dialed.port()
                && theirs.nonce == dialed.nonce);
        if ok {
            Ok(())
        } else {
            Err(SessionError::AddressMismatch {
                claimed: theirs.to_string(),
                dialed: dialed.to_string(),
            })
        }
    }

    /// Our configured IP is blank: take the one the server saw, keep our port and nonce.
    fn learn_my_addr(&mut self, seen: &EntityAddr) {
        if !is_blank_ip(&self.my_addr) {
            return;
        }
        let Some(ip) = seen.ip() else { return };
        let port = self.my_addr.port();
        self.my_addr.addr = Some(SocketAddr::new(ip, port));
        self.events
            .push_back(SessionEvent::LearnedAddr(self.my_addr));
    }

    fn handle_reply(&mut self, reply: ConnectReply, now: Instant) -> Result<(), SessionError> {
        let peer = self
            .peer_addr
            .map_or_else(|| "peer".to_string(), |a| a.to_string());
        match Tag::from_u8(reply.tag) {
            Some(Tag::Features) => Err(SessionError::MissingFeatures {
                peer,
                missing: reply.features & !self.config.features_supported,
            }),
            Some(Tag::BadProtoVer) => Err(SessionError::BadProtocolVersion {
                theirs: reply.protocol_version,
                ours: protocol_version(
                    self.my_type(),
                    self.peer_type.unwrap_or(EntityType::CLIENT),
                    true,
                ),
            }),
            Some(Tag::BadAuthorizer) => Err(SessionError::BadAuthorizer),
            Some(Tag::ResetSession) => {
                // The server forgot our session: start numbering again, tell the owner.
                self.session_reset();
                self.send_connect();
                self.state = State::Connecting(ClientStep::Reply);
                Ok(())
            }
            Some(Tag::RetryGlobal) => {
                self.global_seq = self.config.global_seq.next(reply.global_seq);
                self.send_connect();
                self.state = State::Connecting(ClientStep::Reply);
                Ok(())
            }
            Some(Tag::RetrySession) => {
                if reply.connect_seq <= self.connect_seq {
                    return Err(SessionError::Protocol(format!(
                        "RETRY_SESSION with connect_seq {} not above ours {}",
                        reply.connect_seq, self.connect_seq
                    )));
                }
                self.connect_seq = reply.connect_seq;
                self.send_connect();
                self.state = State::Connecting(ClientStep::Reply);
                Ok(())
            }
            Some(Tag::Wait) => {
                self.enter_wait(now);
                Ok(())
            }
            Some(Tag::Ready) | Some(Tag::Seq) => {
                let missing = self.required_features() & !reply.features;
                if missing != 0 {
                    return Err(SessionError::MissingFeatures { peer, missing });
                }
                if reply.tag == Tag::Seq as u8 {
                    self.state = State::Connecting(ClientStep::AckSeq(reply));
                    Ok(())
                } else {
                    self.client_ready(reply, now)
                }
            }
            _ => Err(WireError::UnexpectedTag {
                tag: reply.tag,
                state: "connect reply",
            }
            .into()),
        }
    }

    /// The peer won a connect race: drop our link, keep the queues, wait for its connect.
    fn enter_wait(&mut self, now: Instant) {
        self.link = None;
        self.timers.clear();
        self.queue.requeue_front(self.sent.take().into_iter());
        self.state = State::Wait;
        self.timers
            .set(Timer::WaitRetry, now + self.config.wait_retry);
        self.events.push_back(SessionEvent::CloseLink);
    }

    fn client_ready(&mut self, reply: ConnectReply, now: Instant) -> Result<(), SessionError> {
        if reply.connect_seq != self.connect_seq + 1 {
            return Err(SessionError::Protocol(format!(
                "ready with connect_seq {}, expected {}",
                reply.connect_seq,
                self.connect_seq + 1
            )));
        }
        self.connect_seq = reply.connect_seq;
        self.peer_global_seq = reply.global_seq;
        // The server decides whether the session is lossy.
        self.policy.lossy = reply.is_lossy();
        self.features = reply.features & self.config.features_supported;
        self.become_open(now);
        let (peer_addr, peer_name) = (self.peer_addr, self.peer_name());
        self.events.push_back(SessionEvent::Connected {
            peer_addr: peer_addr.unwrap_or(EntityAddr::blank()),
            peer_name: peer_name.unwrap_or_default(),
            features: self.features,
        });
        Ok(())
    }

    // ---- server ----------------------------------------------------------------------------

    pub(super) fn start_server_handshake(&mut self) {
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
    pub(super) fn server_input(
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

    pub(super) fn server_resolve(
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
        ex.queue.requeue_front(ex.sent.take().into_iter());
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
