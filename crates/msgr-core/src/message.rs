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
