//! The connecting side of the handshake: banner, our address and connect, the server's reply
//! (retries, WAIT, errors) and the SEQ exchange, up to `Connected`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::connect::CONNECT_FLAG_LOSSY;
use crate::wire::{ConnectMsg, ConnectReply, EntityAddr, EntityType, Tag, WireError, BANNER};

use crate::session::config::protocol_version;
use crate::session::timers::Timer;
use crate::session::{Session, SessionError, SessionEvent, State};

use super::{check_banner_prefix, is_blank_ip, same_endpoint, take, ClientStep, ADDR_LEN};

impl Session {
    pub(in crate::session) fn start_client_handshake(&mut self) {
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
    pub(in crate::session) fn client_input(
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
        self.queue.requeue_unacked(&mut self.sent);
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
}
