//! msgr2 frame tags (Ceph `frames_v2.h`, `enum class Tag`).

use super::V2Error;

/// The first byte of a msgr2 preamble: what the frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Tag {
    /// Entity type and the peer's address as seen.
    Hello = 1,
    /// Client: auth method, preferred modes, first auth payload.
    AuthRequest = 2,
    /// Server: method refused, with the allowed methods and modes.
    AuthBadMethod = 3,
    /// Server: another auth round (e.g. the cephx challenge).
    AuthReplyMore = 4,
    /// Client: answer to an AUTH_REPLY_MORE.
    AuthRequestMore = 5,
    /// Server: authenticated; global id and connection mode.
    AuthDone = 6,
    /// Both: HMAC-SHA256 over the pre-auth bytes received.
    AuthSignature = 7,
    /// Client: addresses, features, cookie of a new session.
    ClientIdent = 8,
    /// Server: answer to CLIENT_IDENT.
    ServerIdent = 9,
    /// Server: the client lacks required features.
    IdentMissingFeatures = 10,
    /// Client: resume a session after a link failure.
    SessionReconnect = 11,
    /// Server: the session is unknown or reset.
    SessionReset = 12,
    /// Server: retry with a higher connect_seq.
    SessionRetry = 13,
    /// Server: retry with a higher global_seq.
    SessionRetryGlobal = 14,
    /// Server: reconnect accepted.
    SessionReconnectOk = 15,
    /// Server: a racing connection wins; wait.
    Wait = 16,
    /// A message: header, front, middle, data segments.
    Message = 17,
    /// Keepalive with a timestamp.
    Keepalive2 = 18,
    /// Keepalive answer echoing the timestamp.
    Keepalive2Ack = 19,
    /// Acknowledges messages up to a sequence number.
    Ack = 20,
    /// Compression negotiation request.
    CompressionRequest = 21,
    /// Compression negotiation answer.
    CompressionDone = 22,
}

impl TryFrom<u8> for Tag {
    type Error = V2Error;

    fn try_from(b: u8) -> Result<Self, V2Error> {
        use Tag::*;
        const ALL: [Tag; 22] = [
            Hello,
            AuthRequest,
            AuthBadMethod,
            AuthReplyMore,
            AuthRequestMore,
            AuthDone,
            AuthSignature,
            ClientIdent,
            ServerIdent,
            IdentMissingFeatures,
            SessionReconnect,
            SessionReset,
            SessionRetry,
            SessionRetryGlobal,
            SessionReconnectOk,
            Wait,
            Message,
            Keepalive2,
            Keepalive2Ack,
            Ack,
            CompressionRequest,
            CompressionDone,
        ];
        match b {
            1..=22 => Ok(ALL[usize::from(b) - 1]),
            _ => Err(V2Error::UnknownTag(b)),
        }
    }
}
