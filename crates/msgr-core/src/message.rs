//! A msgr1 message: the header fields an application sets or reads, and the three payload
//! sections as `Bytes`. A received message's sections are slices of the receive buffer (no copy).

use bytes::Bytes;

use crate::wire::EntityName;

/// Message priority (`CEPH_MSG_PRIO_*`). Higher is sent first; within one priority, FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(pub u16);

impl Priority {
    /// `CEPH_MSG_PRIO_LOW` (64).
    pub const LOW: Priority = Priority(64);
    /// `CEPH_MSG_PRIO_DEFAULT` (127).
    pub const DEFAULT: Priority = Priority(127);
    /// `CEPH_MSG_PRIO_HIGH` (196).
    pub const HIGH: Priority = Priority(196);
    /// `CEPH_MSG_PRIO_HIGHEST` (255).
    pub const HIGHEST: Priority = Priority(255);
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

/// One message. `seq` and `src` are filled by the sending session; the rest is the application's.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    /// Ceph message type (`CEPH_MSG_*`, e.g. 17 = MAuth). Opaque to the messenger.
    pub msg_type: u16,
    /// Send priority among queued messages.
    pub priority: Priority,
    /// Encoding version of the front section, and the oldest version that can decode it.
    pub version: u16,
    /// The oldest encoding version that can decode the front section.
    pub compat_version: u16,
    /// Transaction id, opaque to the messenger.
    pub tid: u64,
    /// Alignment hint for the data section.
    pub data_off: u16,
    /// Per-session sequence number: assigned when first sent, kept across replays.
    pub seq: u64,
    /// Sender, as the header names it (filled on receive).
    pub src: EntityName,
    /// Front section (the encoded message proper), covered by the front CRC.
    pub front: Bytes,
    /// Middle section (rarely used by Ceph), covered by the middle CRC.
    pub middle: Bytes,
    /// Data section (bulk payload), covered by the data CRC.
    pub data: Bytes,
    /// The data CRC the receiving session verified, reused when this data is sent on unchanged
    /// (see [`DataCrc`]); leave it at its default.
    pub data_crc: DataCrc,
}

/// A received message's data CRC, kept so that sending the same data on (an echo, a primary
/// passing a write to its replicas, a relay) does not read the whole payload again: Ceph's
/// buffers cache their CRCs for the same reason. Kept only for data sections of at least
/// [`DataCrc::KEEP_MIN`] bytes, where the CRC costs far more than the small allocation.
///
/// It cannot go stale: it holds a handle on the very bytes it was computed over, and counts
/// only while the message's `data` is still that slice (same address, same length). `Bytes`
/// are immutable, and the handle keeps the allocation alive, so no other contents can appear
/// at that address meanwhile. Replacing `data` simply makes it unused. It plays no part in
/// comparing messages.
#[derive(Clone, Default)]
pub struct DataCrc(Option<Box<CachedCrc>>);

#[derive(Clone)]
struct CachedCrc {
    data: Bytes,
    seed: u32,
    crc: u32,
}

impl DataCrc {
    /// Smallest data section whose CRC is kept.
    pub const KEEP_MIN: usize = 32 << 10;

    /// The CRC `crc` of `data` from `seed` (Ceph's crc32c, as the wire carries it), kept if
    /// `data` is large enough to be worth it. Only the receive path makes one: a wrong value
    /// would go out as the message's CRC and the peer would drop the connection.
    pub(crate) fn new(data: &Bytes, seed: u32, crc: u32) -> Self {
        if data.len() < Self::KEEP_MIN {
            return DataCrc(None);
        }
        DataCrc(Some(Box::new(CachedCrc {
            data: data.clone(),
            seed,
            crc,
        })))
    }

    /// The CRC of `data` from `seed`, if this one was computed over exactly these bytes.
    pub fn get(&self, data: &Bytes, seed: u32) -> Option<u32> {
        let c = self.0.as_deref()?;
        let same = c.seed == seed && c.data.as_ptr() == data.as_ptr() && c.data.len() == data.len();
        same.then_some(c.crc)
    }
}

impl PartialEq for DataCrc {
    /// Always equal: a cache, not part of the message's value.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DataCrc {}

impl std::fmt::Debug for DataCrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "DataCrc({:#010x} over {} bytes)", c.crc, c.data.len()),
            None => f.write_str("DataCrc(none)"),
        }
    }
}

impl Message {
    /// A message of `msg_type` with `front` as its only payload, at default priority.
    pub fn new(msg_type: u16, front: impl Into<Bytes>) -> Self {
        Message {
            msg_type,
            version: 1,
            compat_version: 1,
            front: front.into(),
            ..Default::default()
        }
    }
    /// This message at `priority`.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
    /// This message with `middle` as its middle section.
    pub fn with_middle(mut self, middle: impl Into<Bytes>) -> Self {
        self.middle = middle.into();
        self
    }
    /// This message with `data` as its data section.
    pub fn with_data(mut self, data: impl Into<Bytes>) -> Self {
        self.data = data.into();
        self
    }
    /// This message with transaction id `tid`.
    pub fn with_tid(mut self, tid: u64) -> Self {
        self.tid = tid;
        self
    }
    /// Bytes of payload (front + middle + data), what throttles count.
    pub fn payload_len(&self) -> usize {
        self.front.len() + self.middle.len() + self.data.len()
    }
}

impl Default for EntityName {
    fn default() -> Self {
        EntityName {
            kind: crate::wire::EntityType::CLIENT,
            num: -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::encode_message;
    use crate::wire::{EntityName, MsgFooter};

    fn sent_data_crc(msg: &Message) -> u32 {
        let mut chunks = Vec::new();
        encode_message(msg, 1, EntityName::default(), false, &mut chunks);
        let footer = chunks.last().expect("a footer");
        MsgFooter::decode(footer, false)
            .expect("a valid footer")
            .data_crc
    }

    /// A deliberately wrong kept value shows whether the encoder used it.
    #[test]
    fn the_kept_crc_is_what_the_footer_carries_while_the_data_is_the_same() {
        let data = Bytes::from(vec![7u8; DataCrc::KEEP_MIN]);
        let real = MsgFooter::for_payload(&[], &[], &data).data_crc;
        let planted = real ^ 0xdead_beef;
        let mut msg = Message {
            data_crc: DataCrc::new(&data, 0, planted),
            ..Message::new(70, &b"f"[..]).with_data(data.clone())
        };
        assert_eq!(sent_data_crc(&msg), planted);
        // The same contents elsewhere: computed.
        msg.data = Bytes::copy_from_slice(&data);
        assert_eq!(sent_data_crc(&msg), real);
    }
}
