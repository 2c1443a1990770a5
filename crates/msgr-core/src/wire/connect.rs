//! `ceph_msg_connect` (33 bytes) and `ceph_msg_connect_reply` (26 bytes). TODO(wire helper).

/// `ceph_msg_connect`, sent by the connecting side, followed by `authorizer_len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnectMsg {
    pub features: u64,
    pub host_type: u32,
    pub global_seq: u32,
    pub connect_seq: u32,
    pub protocol_version: u32,
    pub authorizer_protocol: u32,
    pub authorizer_len: u32,
    pub flags: u8,
}

/// `ceph_msg_connect_reply`, followed by `authorizer_len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnectReply {
    pub tag: u8,
    pub features: u64,
    pub global_seq: u32,
    pub connect_seq: u32,
    pub protocol_version: u32,
    pub authorizer_len: u32,
    pub flags: u8,
}
