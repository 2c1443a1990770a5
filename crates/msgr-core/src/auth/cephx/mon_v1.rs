//! cephx over msgr1: a client's MAuth exchange with a monitor, sans-IO (messages in, messages
//! out). Ceph's MonClient runs it above the messenger; msgr2 carries the same cephx payloads in
//! its AUTH frames instead (see `session_v2`).
//!
//! Rounds (the order the real `ceph` CLI uses, checked against its capture):
//! 1. MAuth, protocol 0 (negotiating), payload: u8 1, the methods we offer, our entity name and
//!    global id. The monitor picks cephx and answers MAuthReply(protocol 2) with its challenge.
//! 2. MAuth, protocol 2, payload: `CEPHX_GET_AUTH_SESSION_KEY` with our proof of the key
//!    ([`challenge_proof`]). The monitor answers MAuthReply with our global id and the
//!    session-key reply, sealed with our key ([`read_session_key_reply`]).
//!
//! Messages on a client's monitor session are not signed (Ceph signs msgr1 messages only on
//! connections authenticated by an authorizer), so nothing changes on the session afterwards.

use bytes::{BufMut, BytesMut};

use super::exchange::{
    challenge_proof, read_session_key_reply, AuthenticateRequest, ServerChallenge, SERVICE_AUTH,
};
use super::{CephxError, CryptoKey};
use crate::auth::METHOD_CEPHX;
use crate::message::Message;
use crate::v2::Reader;
use crate::wire::EntityType;

/// `CEPH_MSG_AUTH`.
pub const MSG_AUTH: u16 = 17;
/// `CEPH_MSG_AUTH_REPLY`.
pub const MSG_AUTH_REPLY: u16 = 18;

/// What to do after a reply.
#[derive(Debug)]
pub enum MonAuthStep {
    /// Send this MAuth and wait for the next reply.
    Send(Message),
    /// Authenticated.
    Done {
        /// The global id the monitor assigned.
        global_id: u64,
        /// The session key (for service tickets and authorizers).
        session_key: CryptoKey,
    },
}

/// Where the exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// `start` not called yet.
    New,
    /// The first MAuth is out; the challenge is awaited.
    Offered,
    /// The proof is out; the session key is awaited.
    Proved,
    /// Done (or failed): further replies are errors.
    Over,
}

/// A client's cephx authentication to a monitor over msgr1. See the module docs.
#[derive(Debug)]
pub struct MonAuthV1 {
    key: CryptoKey,
    entity_type: EntityType,
    entity_id: String,
    global_id: u64,
    round: Round,
}

/// An MAuthReply front: protocol, result, global id, the cephx payload, the message.
struct Reply<'a> {
    protocol: u32,
    result: i32,
    global_id: u64,
    payload: &'a [u8],
    text: String,
}

fn parse_reply(front: &[u8]) -> Result<Reply<'_>, CephxError> {
    let mut r = Reader::new(front, "MAuthReply");
    let protocol = r.u32()?;
    let result = r.i32()?;
    let global_id = r.u64()?;
    let payload = r.blob()?;
    let text = String::from_utf8_lossy(r.blob()?).into_owned();
    Ok(Reply {
        protocol,
        result,
        global_id,
        payload,
        text,
    })
}

/// An MAuth message: paxos header (version, deprecated session mon -1, its tid), protocol,
/// the payload as a bufferlist, monmap epoch 0.
fn mauth(protocol: u32, payload: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(30 + payload.len());
    b.put_u64_le(0);
    b.put_i16_le(-1);
    b.put_u64_le(0);
    b.put_u32_le(protocol);
    b.put_u32_le(payload.len() as u32);
    b.put_slice(payload);
    b.put_u32_le(0);
    Message::new(MSG_AUTH, b.freeze())
}

impl MonAuthV1 {
    /// Authenticate as `entity_type`.`entity_id` (`client`.`admin`) with `key`.
    pub fn new(key: CryptoKey, entity_type: EntityType, entity_id: impl Into<String>) -> Self {
        MonAuthV1 {
            key,
            entity_type,
            entity_id: entity_id.into(),
            global_id: 0,
            round: Round::New,
        }
    }

    /// The first MAuth (offering cephx). Send it once the session to the monitor is open.
    pub fn start(&mut self) -> Message {
        let mut p = BytesMut::new();
        p.put_u8(1);
        p.put_u32_le(1);
        p.put_u32_le(METHOD_CEPHX);
        p.put_u32_le(self.entity_type.0.into());
        p.put_u32_le(self.entity_id.len() as u32);
        p.put_slice(self.entity_id.as_bytes());
        p.put_u64_le(self.global_id);
        self.round = Round::Offered;
        mauth(0, &p)
    }

    /// Feed an MAuthReply (`MSG_AUTH_REPLY`); other messages are not for this exchange.
    pub fn handle_reply(&mut self, reply: &Message) -> Result<MonAuthStep, CephxError> {
        let r = parse_reply(&reply.front)?;
        let request = match self.round {
            Round::Offered => "the cephx offer",
            Round::Proved => "the cephx proof of our key",
            Round::New | Round::Over => {
                return Err(CephxError::Unsupported {
                    what: "MAuthReply",
                    field: "round (no request of ours is waiting)",
                    value: 0,
                })
            }
        };
        // The monitor answers the offer with -EAGAIN or 0 and its challenge.
        let fine = r.result == 0 || (self.round == Round::Offered && r.result == -11);
        if !fine {
            self.round = Round::Over;
            if !r.text.is_empty() {
                tracing::warn!(monitor_says = %r.text, "cephx refused");
            }
            return Err(CephxError::Refused {
                request,
                status: r.result,
            });
        }
        if r.protocol != METHOD_CEPHX {
            self.round = Round::Over;
            return Err(CephxError::Unsupported {
                what: "MAuthReply",
                field: "auth method (we offered only cephx = 2)",
                value: r.protocol.into(),
            });
        }
        if r.global_id != 0 {
            self.global_id = r.global_id;
        }
        if self.round == Round::Offered {
            let challenge = ServerChallenge::decode(r.payload)?;
            let client_challenge: u64 = rand::random();
            let req = AuthenticateRequest {
                client_challenge,
                key: challenge_proof(&self.key, challenge.0, client_challenge),
                old_ticket: Default::default(),
                other_keys: SERVICE_AUTH,
            };
            let mut p = BytesMut::new();
            req.encode(&mut p);
            self.round = Round::Proved;
            return Ok(MonAuthStep::Send(mauth(METHOD_CEPHX, &p)));
        }
        self.round = Round::Over;
        let keys = read_session_key_reply(r.payload, &self.key)?;
        let session_key = *keys.session_key().ok_or(CephxError::Unsupported {
            what: "cephx session key reply",
            field: "auth tickets (none)",
            value: 0,
        })?;
        Ok(MonAuthStep::Done {
            global_id: self.global_id,
            session_key,
        })
    }
}
