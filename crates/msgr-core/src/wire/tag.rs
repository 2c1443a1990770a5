//! `CEPH_MSGR_TAG_*`: the byte that starts every msgr1 frame after the handshake and every
//! connect reply.

/// One msgr1 tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tag {
    Ready = 1,
    ResetSession = 2,
    Wait = 3,
    RetrySession = 4,
    RetryGlobal = 5,
    Close = 6,
    Msg = 7,
    Ack = 8,
    Keepalive = 9,
    BadProtoVer = 10,
    BadAuthorizer = 11,
    Features = 12,
    Seq = 13,
    Keepalive2 = 14,
    Keepalive2Ack = 15,
    ChallengeAuthorizer = 16,
}

impl Tag {
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
