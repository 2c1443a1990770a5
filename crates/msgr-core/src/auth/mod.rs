//! Authentication as msgr2 (and msgr1's MAuth) carries it: method and mode numbers, and
//! [`cephx`], Ceph's shared-secret protocol. Pure computation: no I/O beyond what a caller reads
//! for a keyring.

pub mod cephx;

/// `CEPH_AUTH_NONE`: no authentication (anyone may claim any name).
pub const METHOD_NONE: u32 = 1;
/// `CEPH_AUTH_CEPHX`.
pub const METHOD_CEPHX: u32 = 2;

/// `CEPH_CON_MODE_CRC`: frames protected by crc32c only.
pub const MODE_CRC: u32 = 1;
/// `CEPH_CON_MODE_SECURE`: frames sealed with AES-128-GCM.
pub const MODE_SECURE: u32 = 2;
