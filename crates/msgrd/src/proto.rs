//! What `msgrd ping` and `msgrd serve` agree on: the message types and the end-marker answer.

use bytes::Bytes;

/// Message type of a ping that wants the whole payload echoed.
pub(crate) const MSG_ECHO: u16 = 1;
/// Message type of a stream message (`ping --one-way`): no answer but the msgr1 ACK.
pub(crate) const MSG_STREAM: u16 = 3;
/// Message type of a stream's end marker: answered with the same type and tid, its front the
/// marker's session sequence number (little-endian u64: [`encode_count`]).
pub(crate) const MSG_STREAM_END: u16 = 4;

/// The server's count in an end-marker answer: a little-endian u64 front.
pub(crate) fn encode_count(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_le_bytes())
}

pub(crate) fn decode_count(front: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(front.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_garbage_is_none() {
        assert_eq!(decode_count(&encode_count(0)), Some(0));
        assert_eq!(
            decode_count(&encode_count(u64::MAX - 3)),
            Some(u64::MAX - 3)
        );
        assert_eq!(decode_count(b""), None);
        assert_eq!(decode_count(b"123456789"), None);
    }
}
