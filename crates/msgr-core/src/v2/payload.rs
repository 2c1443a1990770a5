//! Payloads of the msgr2 control frames (one segment each), as Ceph's `ProtocolV2` frame classes
//! encode them: fields in order, integers little-endian, `bufferlist` and `vector<u32>` with a
//! le32 length or count, `bool` as one byte.

use bytes::{BufMut, BytesMut};

use super::frame::{encode_crc, DEFAULT_ALIGNMENT};
use super::reader::{put_blob, put_u32_vec};
use super::{EntityAddrV2, EntityAddrVec, Reader, Tag, V2Error};
use crate::wire::EntityType;

/// A decoded control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// HELLO: the sender's entity type and the peer's address as the sender sees it.
    Hello {
        /// Sender's entity type.
        entity_type: EntityType,
        /// The receiver's address as seen by the sender.
        peer_addr: EntityAddrV2,
    },
    /// AUTH_REQUEST.
    AuthRequest {
        /// Auth method (1 none, 2 cephx).
        method: u32,
        /// Connection modes the client accepts, preferred first (1 crc, 2 secure).
        preferred_modes: Vec<u32>,
        /// Method-specific payload.
        auth_payload: Vec<u8>,
    },
    /// AUTH_BAD_METHOD.
    AuthBadMethod {
        /// The refused method.
        method: u32,
        /// Error code (negative errno).
        result: i32,
        /// Methods the server accepts.
        allowed_methods: Vec<u32>,
        /// Modes the server accepts.
        allowed_modes: Vec<u32>,
    },
    /// AUTH_REPLY_MORE: server's next auth round.
    AuthReplyMore {
        /// Method-specific payload.
        auth_payload: Vec<u8>,
    },
    /// AUTH_REQUEST_MORE: client's next auth round.
    AuthRequestMore {
        /// Method-specific payload.
        auth_payload: Vec<u8>,
    },
    /// AUTH_DONE.
    AuthDone {
        /// The client's global id.
        global_id: u64,
        /// Chosen mode (1 crc, 2 secure).
        con_mode: u32,
        /// Method-specific payload (cephx: tickets and the connection secret).
        auth_payload: Vec<u8>,
    },
    /// AUTH_SIGNATURE: HMAC-SHA256 over the pre-auth bytes the sender received.
    AuthSignature {
        /// The digest.
        signature: [u8; 32],
    },
    /// CLIENT_IDENT.
    ClientIdent(ClientIdent),
    /// SERVER_IDENT.
    ServerIdent(ServerIdent),
    /// IDENT_MISSING_FEATURES.
    IdentMissingFeatures {
        /// Features the client lacks.
        features: u64,
    },
    /// SESSION_RECONNECT.
    SessionReconnect(SessionReconnect),
    /// SESSION_RESET.
    SessionReset {
        /// Whether the client must drop all its sessions' state (full reset).
        full: bool,
    },
    /// SESSION_RETRY.
    SessionRetry {
        /// The server's connect_seq.
        connect_seq: u64,
    },
    /// SESSION_RETRY_GLOBAL.
    SessionRetryGlobal {
        /// The server's view of the peer's global_seq.
        global_seq: u64,
    },
    /// SESSION_RECONNECT_OK.
    SessionReconnectOk {
        /// Last message sequence the server received.
        msg_seq: u64,
    },
    /// WAIT (no payload).
    Wait,
    /// KEEPALIVE2.
    Keepalive2 {
        /// Timestamp: seconds, nanoseconds.
        stamp: (u32, u32),
    },
    /// KEEPALIVE2_ACK.
    Keepalive2Ack {
        /// The echoed timestamp.
        stamp: (u32, u32),
    },
    /// ACK.
    Ack {
        /// Highest message sequence received.
        seq: u64,
    },
    /// COMPRESSION_REQUEST.
    CompressionRequest {
        /// Whether compression is asked for.
        is_compress: bool,
        /// Methods, preferred first.
        preferred_methods: Vec<u32>,
    },
    /// COMPRESSION_DONE.
    CompressionDone {
        /// Whether compression is on.
        is_compress: bool,
        /// The chosen method.
        method: u32,
    },
}

/// CLIENT_IDENT: a client's identity for a new session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdent {
    /// The client's addresses.
    pub addrs: EntityAddrVec,
    /// The address the client dialed.
    pub target_addr: EntityAddrV2,
    /// Global id (-1 before authentication assigned one).
    pub gid: i64,
    /// The client's connection counter.
    pub global_seq: u64,
    /// Ceph feature bits the client supports.
    pub supported_features: u64,
    /// Ceph feature bits the client requires.
    pub required_features: u64,
    /// Flags (1 = lossy).
    pub flags: u64,
    /// The client's session cookie.
    pub cookie: u64,
}

/// SERVER_IDENT: the server's answer to CLIENT_IDENT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerIdent {
    /// The server's addresses.
    pub addrs: EntityAddrVec,
    /// Global id.
    pub gid: i64,
    /// The server's connection counter.
    pub global_seq: u64,
    /// Ceph feature bits the server supports.
    pub supported_features: u64,
    /// Ceph feature bits the server requires.
    pub required_features: u64,
    /// Flags (1 = lossy).
    pub flags: u64,
    /// The server's session cookie.
    pub cookie: u64,
}

/// SESSION_RECONNECT: resume an existing session on a new link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReconnect {
    /// The client's addresses.
    pub addrs: EntityAddrVec,
    /// Cookie the client chose.
    pub client_cookie: u64,
    /// Cookie the server chose.
    pub server_cookie: u64,
    /// The client's connection counter.
    pub global_seq: u64,
    /// Reconnect attempts on this session.
    pub connect_seq: u64,
    /// Last message sequence the client received.
    pub msg_seq: u64,
}

/// Flag in CLIENT_IDENT / SERVER_IDENT: the session is lossy.
pub const IDENT_FLAG_LOSSY: u64 = 1;

impl Control {
    /// The frame tag carrying this payload.
    pub fn tag(&self) -> Tag {
        match self {
            Control::Hello { .. } => Tag::Hello,
            Control::AuthRequest { .. } => Tag::AuthRequest,
            Control::AuthBadMethod { .. } => Tag::AuthBadMethod,
            Control::AuthReplyMore { .. } => Tag::AuthReplyMore,
            Control::AuthRequestMore { .. } => Tag::AuthRequestMore,
            Control::AuthDone { .. } => Tag::AuthDone,
            Control::AuthSignature { .. } => Tag::AuthSignature,
            Control::ClientIdent(_) => Tag::ClientIdent,
            Control::ServerIdent(_) => Tag::ServerIdent,
            Control::IdentMissingFeatures { .. } => Tag::IdentMissingFeatures,
            Control::SessionReconnect(_) => Tag::SessionReconnect,
            Control::SessionReset { .. } => Tag::SessionReset,
            Control::SessionRetry { .. } => Tag::SessionRetry,
            Control::SessionRetryGlobal { .. } => Tag::SessionRetryGlobal,
            Control::SessionReconnectOk { .. } => Tag::SessionReconnectOk,
            Control::Wait => Tag::Wait,
            Control::Keepalive2 { .. } => Tag::Keepalive2,
            Control::Keepalive2Ack { .. } => Tag::Keepalive2Ack,
            Control::Ack { .. } => Tag::Ack,
            Control::CompressionRequest { .. } => Tag::CompressionRequest,
            Control::CompressionDone { .. } => Tag::CompressionDone,
        }
    }

    /// Appends the payload (segment 0).
    pub fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Control::Hello {
                entity_type,
                peer_addr,
            } => {
                out.put_u8(entity_type.0);
                peer_addr.encode(out);
            }
            Control::AuthRequest {
                method,
                preferred_modes,
                auth_payload,
            } => {
                out.put_u32_le(*method);
                put_u32_vec(out, preferred_modes);
                put_blob(out, auth_payload);
            }
            Control::AuthBadMethod {
                method,
                result,
                allowed_methods,
                allowed_modes,
            } => {
                out.put_u32_le(*method);
                out.put_i32_le(*result);
                put_u32_vec(out, allowed_methods);
                put_u32_vec(out, allowed_modes);
            }
            Control::AuthReplyMore { auth_payload } | Control::AuthRequestMore { auth_payload } => {
                put_blob(out, auth_payload)
            }
            Control::AuthDone {
                global_id,
                con_mode,
                auth_payload,
            } => {
                out.put_u64_le(*global_id);
                out.put_u32_le(*con_mode);
                put_blob(out, auth_payload);
            }
            Control::AuthSignature { signature } => out.put_slice(signature),
            Control::ClientIdent(c) => {
                c.addrs.encode(out);
                c.target_addr.encode(out);
                out.put_i64_le(c.gid);
                for v in [
                    c.global_seq,
                    c.supported_features,
                    c.required_features,
                    c.flags,
                    c.cookie,
                ] {
                    out.put_u64_le(v);
                }
            }
            Control::ServerIdent(s) => {
                s.addrs.encode(out);
                out.put_i64_le(s.gid);
                for v in [
                    s.global_seq,
                    s.supported_features,
                    s.required_features,
                    s.flags,
                    s.cookie,
                ] {
                    out.put_u64_le(v);
                }
            }
            Control::SessionReconnect(r) => {
                r.addrs.encode(out);
                for v in [
                    r.client_cookie,
                    r.server_cookie,
                    r.global_seq,
                    r.connect_seq,
                    r.msg_seq,
                ] {
                    out.put_u64_le(v);
                }
            }
            Control::IdentMissingFeatures { features: v }
            | Control::SessionRetry { connect_seq: v }
            | Control::SessionRetryGlobal { global_seq: v }
            | Control::SessionReconnectOk { msg_seq: v }
            | Control::Ack { seq: v } => out.put_u64_le(*v),
            Control::SessionReset { full } => out.put_u8(u8::from(*full)),
            Control::Wait => {}
            Control::Keepalive2 { stamp } | Control::Keepalive2Ack { stamp } => {
                out.put_u32_le(stamp.0);
                out.put_u32_le(stamp.1);
            }
            Control::CompressionRequest {
                is_compress,
                preferred_methods,
            } => {
                out.put_u8(u8::from(*is_compress));
                put_u32_vec(out, preferred_methods);
            }
            Control::CompressionDone {
                is_compress,
                method,
            } => {
                out.put_u8(u8::from(*is_compress));
                out.put_u32_le(*method);
            }
        }
    }

    /// Appends the whole crc-mode frame.
    pub fn encode_crc(&self, out: &mut BytesMut) {
        let mut payload = BytesMut::new();
        self.encode_payload(&mut payload);
        encode_crc(self.tag(), &[(&payload, DEFAULT_ALIGNMENT)], out);
    }

    /// Decodes the payload of a control frame with tag `tag`. Bytes after the known fields are
    /// ignored, as Ceph ignores them (a newer peer may append fields). MESSAGE is not a control
    /// frame: see [`super::message`].
    pub fn decode(tag: Tag, payload: &[u8]) -> Result<Control, V2Error> {
        let mut r = Reader::new(payload, tag_name(tag));
        let c = match tag {
            Tag::Hello => Control::Hello {
                entity_type: EntityType(r.u8()?),
                peer_addr: EntityAddrV2::decode_from(&mut r)?,
            },
            Tag::AuthRequest => Control::AuthRequest {
                method: r.u32()?,
                preferred_modes: r.u32_vec()?,
                auth_payload: r.blob()?.to_vec(),
            },
            Tag::AuthBadMethod => Control::AuthBadMethod {
                method: r.u32()?,
                result: r.i32()?,
                allowed_methods: r.u32_vec()?,
                allowed_modes: r.u32_vec()?,
            },
            Tag::AuthReplyMore => Control::AuthReplyMore {
                auth_payload: r.blob()?.to_vec(),
            },
            Tag::AuthRequestMore => Control::AuthRequestMore {
                auth_payload: r.blob()?.to_vec(),
            },
            Tag::AuthDone => Control::AuthDone {
                global_id: r.u64()?,
                con_mode: r.u32()?,
                auth_payload: r.blob()?.to_vec(),
            },
            Tag::AuthSignature => Control::AuthSignature {
                signature: r.array()?,
            },
            Tag::ClientIdent => Control::ClientIdent(ClientIdent {
                addrs: EntityAddrVec::decode_from(&mut r)?,
                target_addr: EntityAddrV2::decode_from(&mut r)?,
                gid: r.i64()?,
                global_seq: r.u64()?,
                supported_features: r.u64()?,
                required_features: r.u64()?,
                flags: r.u64()?,
                cookie: r.u64()?,
            }),
            Tag::ServerIdent => Control::ServerIdent(ServerIdent {
                addrs: EntityAddrVec::decode_from(&mut r)?,
                gid: r.i64()?,
                global_seq: r.u64()?,
                supported_features: r.u64()?,
                required_features: r.u64()?,
                flags: r.u64()?,
                cookie: r.u64()?,
            }),
            Tag::IdentMissingFeatures => Control::IdentMissingFeatures { features: r.u64()? },
            Tag::SessionReconnect => Control::SessionReconnect(SessionReconnect {
                addrs: EntityAddrVec::decode_from(&mut r)?,
                client_cookie: r.u64()?,
                server_cookie: r.u64()?,
                global_seq: r.u64()?,
                connect_seq: r.u64()?,
                msg_seq: r.u64()?,
            }),
            Tag::SessionReset => Control::SessionReset { full: r.u8()? != 0 },
            Tag::SessionRetry => Control::SessionRetry {
                connect_seq: r.u64()?,
            },
            Tag::SessionRetryGlobal => Control::SessionRetryGlobal {
                global_seq: r.u64()?,
            },
            Tag::SessionReconnectOk => Control::SessionReconnectOk { msg_seq: r.u64()? },
            Tag::Wait => Control::Wait,
            Tag::Keepalive2 => Control::Keepalive2 {
                stamp: (r.u32()?, r.u32()?),
            },
            Tag::Keepalive2Ack => Control::Keepalive2Ack {
                stamp: (r.u32()?, r.u32()?),
            },
            Tag::Ack => Control::Ack { seq: r.u64()? },
            Tag::CompressionRequest => Control::CompressionRequest {
                is_compress: r.u8()? != 0,
                preferred_methods: r.u32_vec()?,
            },
            Tag::CompressionDone => Control::CompressionDone {
                is_compress: r.u8()? != 0,
                method: r.u32()?,
            },
            Tag::Message => {
                return Err(V2Error::UnexpectedTag {
                    tag,
                    context: "a control frame",
                })
            }
        };
        Ok(c)
    }
}

/// The structure name used in truncation errors.
fn tag_name(tag: Tag) -> &'static str {
    match tag {
        Tag::Hello => "HELLO payload",
        Tag::AuthRequest => "AUTH_REQUEST payload",
        Tag::AuthBadMethod => "AUTH_BAD_METHOD payload",
        Tag::AuthReplyMore => "AUTH_REPLY_MORE payload",
        Tag::AuthRequestMore => "AUTH_REQUEST_MORE payload",
        Tag::AuthDone => "AUTH_DONE payload",
        Tag::AuthSignature => "AUTH_SIGNATURE payload",
        Tag::ClientIdent => "CLIENT_IDENT payload",
        Tag::ServerIdent => "SERVER_IDENT payload",
        Tag::SessionReconnect => "SESSION_RECONNECT payload",
        Tag::Keepalive2 | Tag::Keepalive2Ack => "KEEPALIVE2 payload",
        _ => "msgr2 control payload",
    }
}
