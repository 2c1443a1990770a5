//! `ceph_msg_header` (53 bytes) and `ceph_msg_footer` (21 bytes) / `ceph_msg_footer_old` (13).
//! TODO(wire helper).

use super::EntityName;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgHeader {
    pub seq: u64,
    pub tid: u64,
    pub msg_type: u16,
    pub priority: u16,
    pub version: u16,
    pub front_len: u32,
    pub middle_len: u32,
    pub data_len: u32,
    pub data_off: u16,
    pub src: EntityName,
    pub compat_version: u16,
    pub reserved: u16,
    pub crc: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgFooter {
    pub front_crc: u32,
    pub middle_crc: u32,
    pub data_crc: u32,
    pub sig: u64,
    pub flags: u8,
}
