//! `CEPH_MSGR_TAG_*`: the byte that starts every msgr1 frame after the handshake and every
//! connect reply.

/// One msgr1 tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tag {
    /// `CEPH_MSGR_TAG_READY`: connect reply, the session is open.
    Ready = 1,
    /// `CEPH_MSGR_TAG_RESETSESSION`: connect reply, the server has no such session; start over.
    ResetSession = 2,
    /// `CEPH_MSGR_TAG_WAIT`: connect reply, wait: the server's own connect to us wins the race.
    Wait = 3,
    /// `CEPH_MSGR_TAG_RETRY_SESSION`: connect reply, retry with a higher connect_seq.
    RetrySession = 4,
    /// `CEPH_MSGR_TAG_RETRY_GLOBAL`: connect reply, retry with a higher global_seq.
    RetryGlobal = 5,
    /// `CEPH_MSGR_TAG_CLOSE`: the sender closes the session.
    Close = 6,
    /// `CEPH_MSGR_TAG_MSG`: a message (header, sections, footer) follows.
    Msg = 7,
    /// `CEPH_MSGR_TAG_ACK`: acknowledges messages up to a sequence number (u64 follows).
    Ack = 8,
    /// `CEPH_MSGR_TAG_KEEPALIVE`: a keepalive without a stamp.
    Keepalive = 9,
    /// `CEPH_MSGR_TAG_BADPROTOVER`: connect reply, protocol version refused.
    BadProtoVer = 10,
    /// `CEPH_MSGR_TAG_BADAUTHORIZER`: connect reply, authorizer refused.
    BadAuthorizer = 11,
    /// `CEPH_MSGR_TAG_FEATURES`: connect reply, required features missing.
    Features = 12,
    /// `CEPH_MSGR_TAG_SEQ`: connect reply, READY plus the last sequence number the server got.
    Seq = 13,
    /// `CEPH_MSGR_TAG_KEEPALIVE2`: a keepalive with a timestamp to echo.
    Keepalive2 = 14,
    /// `CEPH_MSGR_TAG_KEEPALIVE2_ACK`: echoes a KEEPALIVE2's timestamp.
    Keepalive2Ack = 15,
    /// `CEPH_MSGR_TAG_CHALLENGE_AUTHORIZER`: connect reply, the server challenges the authorizer.
    ChallengeAuthorizer = 16,
}

impl Tag {
    /// The tag of byte `b`; None for a byte that is no msgr1 tag.
    pub fn from_u8(b: u8) -> Option<Tag> {
        use Tag::*;
        Some(match b {
            1 => Ready,
            2 => ResetSession,
            3 => Wait,
            4 => RetrySession,
            5 => RetryGlobal,
            6 => Close,
            7 => Msg,
            8 => Ack,
            9 => Keepalive,
            10 => BadProtoVer,
            11 => BadAuthorizer,
            12 => Features,
            13 => Seq,
            14 => Keepalive2,
            15 => Keepalive2Ack,
            16 => ChallengeAuthorizer,
            _ => return None,
        })
    }
}
