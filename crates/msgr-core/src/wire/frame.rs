//! Frames of an open session and their incremental decoder. TODO(wire helper).

use crate::message::Message;

/// Limits checked before anything is allocated for a peer's announced lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_front: u32,
    pub max_middle: u32,
    pub max_data: u32,
    pub max_message: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_front: 16 << 20,
            max_middle: 16 << 20,
            max_data: 64 << 20,
            max_message: 96 << 20,
        }
    }
}

/// One frame of an open session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Msg(Message),
    Ack(u64),
    Keepalive,
    Keepalive2 { sec: u32, nsec: u32 },
    Keepalive2Ack { sec: u32, nsec: u32 },
    Close,
}

/// Resumable decoder of [`Frame`]s.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    pub limits: DecodeLimits,
}
