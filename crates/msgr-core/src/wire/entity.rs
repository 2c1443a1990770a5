//! Entity types, names and addresses.
//!
//! TODO(wire helper): encode / decode, Display.

use std::net::SocketAddr;

/// `CEPH_ENTITY_TYPE_*`: what kind of daemon or client a peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityType(pub u8);

impl EntityType {
    pub const MON: EntityType = EntityType(0x01);
    pub const MDS: EntityType = EntityType(0x02);
    pub const OSD: EntityType = EntityType(0x04);
    pub const CLIENT: EntityType = EntityType(0x08);
    pub const MGR: EntityType = EntityType(0x10);
    pub const AUTH: EntityType = EntityType(0x20);
}

/// `entity_name_t`: type and number (`osd.3`, `client.4121`). Number -1 means "new / not assigned".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityName {
    pub kind: EntityType,
    pub num: i64,
}

/// `entity_addr_t` as msgr1 carries it: type (0 = legacy), nonce, and an optional socket address
/// (None = blank address, family 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityAddr {
    pub kind: u32,
    pub nonce: u32,
    pub addr: Option<SocketAddr>,
}

/// Size of the legacy `entity_addr_t` encoding (u32 type, u32 nonce, 128-byte sockaddr_storage).
pub const LEGACY_ADDR_LEN: usize = 136;
