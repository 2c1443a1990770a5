//! The cephx exchange between a client and a monitor, as msgr2 carries it (Ceph
//! `CephxClientHandler`, `CephxServiceHandler`, `CephxProtocol.{h,cc}`, `MonClient`):
//!
//! 1. AUTH_REQUEST payload ([`MonAuthRequest`]): u8 mode 10 (AUTH_MODE_MON), entity name (le32
//!    type, string id), le64 global id (0 the first time).
//! 2. AUTH_REPLY_MORE ([`ServerChallenge`]): u8 version 1, le64 server challenge.
//! 3. AUTH_REQUEST_MORE ([`AuthenticateRequest`]): le16 request type 0x0100, then
//!    `CephXAuthenticate` v3: le64 client challenge, le64 proof ([`challenge_proof`]), the old
//!    ticket blob, le32 the service types wanted as well.
//! 4. AUTH_DONE ([`read_session_key_reply`]): le16 request type, le32 status, the ticket reply
//!    (session key sealed with the client's key, the ticket), then the connection secret sealed
//!    with the session key, then extra tickets.
//! 5. AUTH_SIGNATURE both ways ([`auth_signature`]).

use bytes::{BufMut, BytesMut};

use super::{CephxError, CryptoKey};
use crate::v2::Reader;

/// `CEPHX_GET_AUTH_SESSION_KEY`.
pub const GET_AUTH_SESSION_KEY: u16 = 0x0100;
/// `AUTH_MODE_MON`: the AUTH_REQUEST payload of a client talking to a monitor.
pub const AUTH_MODE_MON: u8 = 10;
/// `CEPH_ENTITY_TYPE_AUTH`: the service id of the auth ticket.
pub const SERVICE_AUTH: u32 = 0x20;

/// The client's first auth payload to a monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonAuthRequest {
    /// `CEPH_ENTITY_TYPE_*` of the client (8 = client).
    pub entity_type: u32,
    /// The id after the dot (`admin` in `client.admin`).
    pub entity_id: String,
    /// Global id from an earlier session, 0 the first time.
    pub global_id: u64,
}

impl MonAuthRequest {
    /// Appends the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(AUTH_MODE_MON);
        out.put_u32_le(self.entity_type);
        out.put_u32_le(self.entity_id.len() as u32);
        out.put_slice(self.entity_id.as_bytes());
        out.put_u64_le(self.global_id);
    }

    /// Decodes the payload.
    pub fn decode(buf: &[u8]) -> Result<Self, CephxError> {
        let mut r = Reader::new(buf, "monitor auth request");
        let mode = r.u8()?;
        if mode != AUTH_MODE_MON {
            return Err(CephxError::Unsupported {
                what: "monitor auth request",
                field: "mode",
                value: mode.into(),
            });
        }
        Ok(MonAuthRequest {
            entity_type: r.u32()?,
            entity_id: String::from_utf8_lossy(r.blob()?).into_owned(),
            global_id: r.u64()?,
        })
    }
}

/// The monitor's challenge (`CephXServerChallenge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerChallenge(pub u64);

impl ServerChallenge {
    /// Appends the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(1);
        out.put_u64_le(self.0);
    }

    /// Decodes the payload.
    pub fn decode(buf: &[u8]) -> Result<Self, CephxError> {
        let mut r = Reader::new(buf, "cephx server challenge");
        let _v = r.u8()?;
        Ok(ServerChallenge(r.u64()?))
    }
}

/// `CephXTicketBlob`: a ticket as the client stores it (opaque, sealed with a service secret).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketBlob {
    /// Which rotating service secret sealed it.
    pub secret_id: u64,
    /// The sealed ticket.
    pub blob: Vec<u8>,
}

impl TicketBlob {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(1);
        out.put_u64_le(self.secret_id);
        out.put_u32_le(self.blob.len() as u32);
        out.put_slice(&self.blob);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CephxError> {
        let _v = r.u8()?;
        Ok(TicketBlob {
            secret_id: r.u64()?,
            blob: r.blob()?.to_vec(),
        })
    }
}

/// The client's answer to the challenge: request header + `CephXAuthenticate` v3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticateRequest {
    /// The client's random challenge.
    pub client_challenge: u64,
    /// Proof of the key: [`challenge_proof`].
    pub key: u64,
    /// The ticket from an earlier session (empty the first time).
    pub old_ticket: TicketBlob,
    /// Service types (bit mask) whose tickets are wanted as well.
    pub other_keys: u32,
}

impl AuthenticateRequest {
    /// Appends the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(GET_AUTH_SESSION_KEY);
        out.put_u8(3);
        out.put_u64_le(self.client_challenge);
        out.put_u64_le(self.key);
        self.old_ticket.encode(out);
        out.put_u32_le(self.other_keys);
    }

    /// Decodes the payload.
    pub fn decode(buf: &[u8]) -> Result<Self, CephxError> {
        let mut r = Reader::new(buf, "cephx authenticate request");
        let request = r.u16()?;
        if request != GET_AUTH_SESSION_KEY {
            return Err(CephxError::Unsupported {
                what: "authenticate request",
                field: "request type",
                value: request.into(),
            });
        }
        let v = r.u8()?;
        if !(1..=3).contains(&v) {
            return Err(CephxError::Unsupported {
                what: "CephXAuthenticate",
                field: "version",
                value: v.into(),
            });
        }
        Ok(AuthenticateRequest {
            client_challenge: r.u64()?,
            key: r.u64()?,
            old_ticket: TicketBlob::decode_from(&mut r)?,
            other_keys: if v >= 2 { r.u32()? } else { 0 },
        })
    }
}

/// `cephx_calc_client_server_challenge`: seals (server challenge, client challenge) with the
/// client's key, and XORs the length-prefixed result as le64 words (the trailing 4 bytes that
/// do not fill a word are left out, as Ceph does).
pub fn challenge_proof(key: &CryptoKey, server_challenge: u64, client_challenge: u64) -> u64 {
    let mut blob = BytesMut::with_capacity(16);
    blob.put_u64_le(server_challenge);
    blob.put_u64_le(client_challenge);
    let sealed = key.seal(&blob);
    let mut enc = Vec::with_capacity(4 + sealed.len());
    enc.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    enc.extend_from_slice(&sealed);
    enc.chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8-byte chunk")))
        .fold(0, |a, w| a ^ w)
}

/// One service's ticket from a ticket reply, opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTicket {
    /// `CEPH_ENTITY_TYPE_*` of the service (0x20 auth, 1 mon, 4 osd, ...).
    pub service_id: u32,
    /// Key for talking to that service.
    pub session_key: CryptoKey,
    /// How long the ticket is valid (seconds, nanoseconds).
    pub validity: (u32, u32),
    /// The ticket to present to the service.
    pub ticket: TicketBlob,
}

/// What a successful monitor authentication yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKeyReply {
    /// Tickets, the auth ticket first.
    pub tickets: Vec<ServiceTicket>,
    /// The connection secret for secure mode (empty in crc mode).
    pub connection_secret: Vec<u8>,
    /// Tickets for the other services asked for (`other_keys`).
    pub extra_tickets: Vec<ServiceTicket>,
}

impl SessionKeyReply {
    /// The session key of the auth ticket: the key that signs the msgr2 handshake.
    pub fn session_key(&self) -> Option<&CryptoKey> {
        self.tickets
            .iter()
            .find(|t| t.service_id == SERVICE_AUTH)
            .map(|t| &t.session_key)
    }
}

/// Reads the monitor's AUTH_DONE payload for GET_AUTH_SESSION_KEY, opening it with the
/// client's key from the keyring.
pub fn read_session_key_reply(
    payload: &[u8],
    client_key: &CryptoKey,
) -> Result<SessionKeyReply, CephxError> {
    let mut r = Reader::new(payload, "cephx session key reply");
    let _request = r.u16()?;
    let status = r.i32()?;
    if status != 0 {
        return Err(CephxError::Refused {
            request: "GET_AUTH_SESSION_KEY",
            status,
        });
    }
    let tickets = read_ticket_reply(&mut r, client_key)?;
    let auth_key = tickets
        .iter()
        .find(|t| t.service_id == SERVICE_AUTH)
        .map(|t| t.session_key);
    let mut connection_secret = Vec::new();
    let mut extra_tickets = Vec::new();
    if let Some(key) = auth_key {
        if r.remaining() > 0 {
            let cbl = r.blob()?;
            if !cbl.is_empty() {
                let mut c = Reader::new(cbl, "connection secret");
                let secret = key.open(c.blob()?, "connection secret")?;
                connection_secret = Reader::new(&secret, "connection secret").blob()?.to_vec();
            }
        }
        if r.remaining() > 0 {
            let extra = r.blob()?;
            if !extra.is_empty() {
                extra_tickets = read_ticket_reply(&mut Reader::new(extra, "extra tickets"), &key)?;
            }
        }
    }
    Ok(SessionKeyReply {
        tickets,
        connection_secret,
        extra_tickets,
    })
}

/// `CephXTicketManager::verify_service_ticket_reply`: each ticket's session key is sealed with
/// `principal`; the ticket itself may be sealed with that session key.
fn read_ticket_reply(
    r: &mut Reader<'_>,
    principal: &CryptoKey,
) -> Result<Vec<ServiceTicket>, CephxError> {
    let _v = r.u8()?;
    let n = r.u32()? as usize;
    // Each entry takes well over 16 bytes: bound the count before allocating.
    let mut out = Vec::with_capacity(n.min(r.remaining() / 16));
    for _ in 0..n {
        let service_id = r.u32()?;
        let _v = r.u8()?;
        let msg_a = principal.open(r.blob()?, "service ticket session key")?;
        let mut a = Reader::new(&msg_a, "CephXServiceTicket");
        let _v = a.u8()?;
        let session_key = CryptoKey::decode_from(&mut a)?;
        let validity = (a.u32()?, a.u32()?);
        let sealed_ticket = r.u8()? != 0;
        let ticket_bl = if sealed_ticket {
            let opened = session_key.open(r.blob()?, "service ticket")?;
            Reader::new(&opened, "service ticket").blob()?.to_vec()
        } else {
            r.blob()?.to_vec()
        };
        let ticket = TicketBlob::decode_from(&mut Reader::new(&ticket_bl, "ticket blob"))?;
        out.push(ServiceTicket {
            service_id,
            session_key,
            validity,
            ticket,
        });
    }
    Ok(out)
}

/// msgr2 AUTH_SIGNATURE: HMAC-SHA256 with the session key over every byte the signer
/// *received* before it (banner included); the peer checks it against what it sent.
pub fn auth_signature(session_key: &CryptoKey, received: &[u8]) -> [u8; 32] {
    session_key.hmac_sha256(received)
}
