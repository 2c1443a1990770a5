//! The handshake frames of both sides: HELLO, authentication, AUTH_SIGNATURE, and the
//! identification or reconnect that ends it.

use std::time::Instant;

use bytes::{BufMut, BytesMut};

use super::accept::PendingIdent;
use super::link::{signature, InFrame};
use super::{cephx_err, wire_err, AuthStep, SessionV2, State, V2Auth};
use crate::auth::cephx::exchange::{
    challenge_proof, read_session_key_reply, AuthenticateRequest, MonAuthRequest, ServerChallenge,
    SERVICE_AUTH,
};
use crate::auth::{METHOD_CEPHX, METHOD_NONE, MODE_CRC, MODE_SECURE};
use crate::session::{SessionError, SessionEvent};
use crate::v2::payload::{ClientIdent, Control, ServerIdent, SessionReconnect};
use crate::v2::secure::{Role, SecureKeys};
use crate::v2::EntityAddrV2;
use crate::wire::EntityType;

/// `-EOPNOTSUPP`, what Ceph puts in AUTH_BAD_METHOD.
const EOPNOTSUPP: i32 = -95;

fn protocol(what: String) -> SessionError {
    SessionError::Protocol(what)
}

impl SessionV2 {
    /// Sends our HELLO: our type and the peer's address as we see it.
    pub(super) fn send_hello(&mut self) {
        let hello = Control::Hello {
            entity_type: self.config.base.my_name.kind,
            peer_addr: self.peer_addr.unwrap_or(EntityAddrV2::blank()),
        };
        self.link_mut().send_control(&hello);
    }

    pub(super) fn link_mut(&mut self) -> &mut super::Link {
        self.link.as_mut().expect("a handshake runs on a link")
    }

    /// Any frame before the session is open.
    pub(super) fn handshake_frame(&mut self, f: InFrame, now: Instant) -> Result<(), SessionError> {
        let c = Control::decode(f.tag, &f.segments[0]).map_err(wire_err)?;
        match (self.state, c) {
            (State::Hello, Control::Hello { entity_type, .. }) => self.on_hello(entity_type),
            (State::Auth(_), c) if self.server => self.server_auth(c),
            (State::Auth(step), c) => self.client_auth(step, c),
            (State::AuthSignature, Control::AuthSignature { signature }) => {
                if Some(signature) != self.expected_signature {
                    return Err(protocol(
                        "AUTH_SIGNATURE mismatch: the peer signed different handshake bytes than we sent \
                         (tampering on the path, or a peer bug); the connection is dropped"
                            .into(),
                    ));
                }
                self.state = State::Ident;
                if !self.server {
                    self.send_ident_or_reconnect();
                }
                Ok(())
            }
            (State::Ident, c) if self.server => self.server_ident(c, now),
            (State::Ident, c) => self.client_ident_reply(c, now),
            (state, c) => Err(protocol(format!(
                "unexpected {:?} frame in handshake state {state:?}",
                c.tag()
            ))),
        }
    }

    fn on_hello(&mut self, peer_type: EntityType) -> Result<(), SessionError> {
        if self.server {
            self.peer_type = Some(peer_type);
            self.policy = self.config.base.policies.get(peer_type).clone();
            self.state = State::Auth(AuthStep::Requested);
            return Ok(());
        }
        if Some(peer_type) != self.peer_type {
            return Err(protocol(format!(
                "peer says it is a {peer_type}, we dialed a {}: wrong address?",
                self.peer_type.unwrap_or(EntityType(0))
            )));
        }
        let me = self.config.base.my_name.kind;
        let mut payload = BytesMut::new();
        if peer_type == EntityType::MON {
            MonAuthRequest {
                entity_type: me.0.into(),
                entity_id: self.config.entity_id.clone(),
                global_id: self.global_id,
            }
            .encode(&mut payload);
        } else {
            // Ceph's auth-none authorizer: u8 1, entity name, global id.
            payload.put_u8(1);
            payload.put_u32_le(me.0.into());
            payload.put_u32_le(self.config.entity_id.len() as u32);
            payload.put_slice(self.config.entity_id.as_bytes());
            payload.put_u64_le(self.global_id);
        }
        let method = match self.config.auth {
            V2Auth::None => METHOD_NONE,
            V2Auth::Cephx { .. } if peer_type != EntityType::MON => {
                return Err(protocol(format!(
                    "cephx to a {peer_type} needs a service ticket authorizer, which is not \
                     implemented: use auth none for this peer, or talk to a monitor"
                )))
            }
            V2Auth::Cephx { .. } => METHOD_CEPHX,
        };
        let req = Control::AuthRequest {
            method,
            preferred_modes: self.config.modes.clone(),
            auth_payload: payload.to_vec(),
        };
        self.link_mut().send_control(&req);
        self.state = State::Auth(AuthStep::Requested);
        Ok(())
    }

    fn client_auth(&mut self, step: AuthStep, c: Control) -> Result<(), SessionError> {
        match (c, &self.config.auth) {
            (Control::AuthReplyMore { auth_payload }, V2Auth::Cephx { key })
                if step == AuthStep::Requested =>
            {
                let challenge = ServerChallenge::decode(&auth_payload).map_err(cephx_err)?;
                let client_challenge: u64 = rand::random();
                let req = AuthenticateRequest {
                    client_challenge,
                    key: challenge_proof(key, challenge.0, client_challenge),
                    old_ticket: Default::default(),
                    other_keys: SERVICE_AUTH,
                };
                let mut payload = BytesMut::new();
                req.encode(&mut payload);
                let more = Control::AuthRequestMore {
                    auth_payload: payload.to_vec(),
                };
                self.link_mut().send_control(&more);
                self.state = State::Auth(AuthStep::Proved);
                Ok(())
            }
            (
                Control::AuthDone {
                    global_id,
                    con_mode,
                    auth_payload,
                },
                auth,
            ) => {
                if !self.config.modes.contains(&con_mode) {
                    return Err(protocol(format!(
                        "server chose connection mode {con_mode}, which we did not offer ({:?})",
                        self.config.modes
                    )));
                }
                let mut secret = Vec::new();
                if let V2Auth::Cephx { key } = auth {
                    let reply = read_session_key_reply(&auth_payload, key).map_err(|e| {
                        SessionError::AuthFailed(format!(
                            "cannot read the server's cephx reply with our key ({e}): wrong key \
                             in the keyring?"
                        ))
                    })?;
                    self.session_key = reply.session_key().copied();
                    if self.session_key.is_none() {
                        return Err(protocol("cephx reply without an auth ticket".into()));
                    }
                    secret = reply.connection_secret;
                }
                self.global_id = global_id;
                self.con_mode = con_mode;
                self.finish_auth(Role::Client, &secret)
            }
            (
                Control::AuthBadMethod {
                    method,
                    result,
                    allowed_methods,
                    allowed_modes,
                },
                _,
            ) => Err(SessionError::AuthFailed(
                if method == METHOD_CEPHX
                    && allowed_methods.contains(&method)
                    && self.config.modes.iter().any(|m| allowed_modes.contains(m))
                {
                    // Ceph answers failed credentials this way too.
                    format!(
                    "the server refused our cephx credentials for {}.{} (error {result}): wrong \
                     key in the keyring, or an entity the cluster does not know (check `ceph \
                     auth get`)",
                    self.config.base.my_name.kind, self.config.entity_id
                )
                } else {
                    format!(
                    "server refused auth method {method} with our modes {:?} (error {result}); \
                     it allows methods {allowed_methods:?} (1 none, 2 cephx) and modes \
                     {allowed_modes:?} (1 crc, 2 secure): change auth / modes in the config",
                    self.config.modes
                )
                },
            )),
            (c, _) => Err(protocol(format!(
                "unexpected {:?} during authentication",
                c.tag()
            ))),
        }
    }

    /// Server: auth none only; a cephx request is answered with AUTH_BAD_METHOD offering none.
    fn server_auth(&mut self, c: Control) -> Result<(), SessionError> {
        let Control::AuthRequest {
            method,
            preferred_modes,
            ..
        } = c
        else {
            return Err(protocol(format!(
                "unexpected {:?} while waiting for AUTH_REQUEST",
                c.tag()
            )));
        };
        // Auth none yields no secret: secure mode is impossible with it.
        let mode = preferred_modes
            .iter()
            .copied()
            .find(|m| *m == MODE_CRC && self.config.modes.contains(m));
        let (METHOD_NONE, Some(mode)) = (method, mode) else {
            let bad = Control::AuthBadMethod {
                method,
                result: EOPNOTSUPP,
                allowed_methods: vec![METHOD_NONE],
                allowed_modes: vec![MODE_CRC],
            };
            self.link_mut().send_control(&bad);
            return Ok(());
        };
        self.global_id = rand::random::<u32>().into();
        self.con_mode = mode;
        let done = Control::AuthDone {
            global_id: self.global_id,
            con_mode: mode,
            auth_payload: Vec::new(),
        };
        self.link_mut().send_control(&done);
        self.finish_auth(Role::Server, &[])
    }

    /// AUTH_DONE passed: switch modes, sign what we received, remember what the peer must sign.
    fn finish_auth(&mut self, role: Role, secret: &[u8]) -> Result<(), SessionError> {
        let key = self.session_key;
        let secure = self.con_mode == MODE_SECURE;
        let link = self.link_mut();
        let pre = link.finish_pre_auth();
        if secure {
            // Too short (e.g. none at all) is an error: never fall back to crc silently.
            let keys = SecureKeys::from_connection_secret(secret, role).map_err(wire_err)?;
            link.go_secure(&keys);
        }
        link.send_control(&Control::AuthSignature {
            signature: signature(key.as_ref(), &pre.received),
        });
        self.expected_signature = Some(signature(key.as_ref(), &pre.sent));
        self.state = State::AuthSignature;
        Ok(())
    }

    fn send_ident_or_reconnect(&mut self) {
        let base = self.config.base.clone();
        self.global_seq = base.global_seq.next(self.peer_global_seq as u32).into();
        let frame = if self.server_cookie != 0 {
            Control::SessionReconnect(SessionReconnect {
                addrs: self.config.my_addrs.clone(),
                client_cookie: self.client_cookie,
                server_cookie: self.server_cookie,
                global_seq: self.global_seq,
                connect_seq: self.connect_seq,
                msg_seq: self.in_seq,
            })
        } else {
            if self.client_cookie == 0 {
                self.client_cookie = rand::random::<u64>() | 1;
            }
            if self.in_seq != 0 || self.out_seq != 0 {
                // An earlier session the server cannot resume (its cookie was 0, e.g. a lossy
                // monitor): the new one counts from 1; unacknowledged messages are sent again.
                (self.in_seq, self.out_seq) = (0, 0);
                self.queue.forget_seqs();
            }
            Control::ClientIdent(ClientIdent {
                addrs: self.config.my_addrs.clone(),
                target_addr: self.peer_addr.unwrap_or(EntityAddrV2::blank()),
                gid: base.my_name.num,
                global_seq: self.global_seq,
                supported_features: self.config.features_supported,
                required_features: self.config.features_required,
                flags: self.ident_flags(),
                cookie: self.client_cookie,
            })
        };
        self.link_mut().send_control(&frame);
    }

    fn client_ident_reply(&mut self, c: Control, now: Instant) -> Result<(), SessionError> {
        match c {
            Control::ServerIdent(si) => self.on_server_ident(si, now),
            Control::IdentMissingFeatures { features } => Err(SessionError::MissingFeatures {
                peer: self.peer_addr_legacy().to_string(),
                missing: features,
            }),
            Control::SessionReconnectOk { msg_seq } => {
                // The server has everything up to msg_seq: replay only what follows.
                self.queue.discard_replayed_up_to(msg_seq);
                self.connect_seq += 1;
                self.opened(now);
                Ok(())
            }
            Control::SessionRetry { connect_seq } => {
                self.connect_seq = connect_seq + 1;
                self.send_ident_or_reconnect();
                Ok(())
            }
            Control::SessionRetryGlobal { global_seq } => {
                self.peer_global_seq = global_seq;
                self.send_ident_or_reconnect();
                Ok(())
            }
            Control::SessionReset { .. } => {
                // The server lost our session: start a new one; what it never acked is lost.
                let undelivered = self.queue.take_undelivered(&mut self.sent);
                self.events
                    .push_back(SessionEvent::RemoteReset { undelivered });
                (self.in_seq, self.out_seq, self.connect_seq) = (0, 0, 0);
                (self.client_cookie, self.server_cookie) = (0, 0);
                self.send_ident_or_reconnect();
                Ok(())
            }
            Control::Wait => {
                self.state = State::Wait;
                self.fault(
                    SessionError::LinkFailed("server answered WAIT".into()),
                    now,
                    true,
                );
                // After the fault, which clears the deadlines.
                self.deadlines.wait = Some(now + self.wait_retry());
                Ok(())
            }
            c => Err(protocol(format!(
                "unexpected {:?} while waiting for SERVER_IDENT",
                c.tag()
            ))),
        }
    }

    fn on_server_ident(&mut self, si: ServerIdent, now: Instant) -> Result<(), SessionError> {
        let missing = si.required_features & !self.config.features_supported;
        if missing != 0 {
            return Err(SessionError::MissingFeatures {
                peer: self.peer_addr_legacy().to_string(),
                missing,
            });
        }
        if let Some(dialed) = self.peer_addr {
            let claims = si
                .addrs
                .0
                .iter()
                .any(|a| a.addr == dialed.addr && a.nonce == dialed.nonce);
            if !claims && !si.addrs.0.is_empty() {
                return Err(SessionError::AddressMismatch {
                    claimed: si.addrs.to_string(),
                    dialed: dialed.to_string(),
                });
            }
        }
        self.features = si.supported_features & self.config.features_supported;
        self.peer_addrs = si.addrs;
        self.peer_gid = si.gid;
        self.peer_global_seq = si.global_seq;
        self.server_cookie = si.cookie;
        self.opened(now);
        Ok(())
    }

    /// Server: the peer's CLIENT_IDENT (a new session) or SESSION_RECONNECT: the driver
    /// answers it (see `accept`).
    fn server_ident(&mut self, c: Control, _now: Instant) -> Result<(), SessionError> {
        if self.pending.is_some() {
            return Err(protocol(format!(
                "{:?} while its previous IDENT is still being answered",
                c.tag()
            )));
        }
        match c {
            Control::ClientIdent(ci) => {
                let required = self.config.features_required | self.policy.features_required;
                let missing = required & !ci.supported_features;
                if missing != 0 {
                    let frame = Control::IdentMissingFeatures { features: missing };
                    self.link_mut().send_control(&frame);
                    return Err(SessionError::MissingFeatures {
                        peer: ci.addrs.to_string(),
                        missing,
                    });
                }
                self.request_accept(PendingIdent::New(ci));
                Ok(())
            }
            Control::SessionReconnect(sr) => {
                self.request_accept(PendingIdent::Reconnect(sr));
                Ok(())
            }
            c => Err(protocol(format!(
                "unexpected {:?} while waiting for CLIENT_IDENT",
                c.tag()
            ))),
        }
    }
}
