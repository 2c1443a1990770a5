//! Entity types, names and addresses, as msgr1 encodes them.
//!
//! - `entity_name_t`: u8 type + le64 number (9 bytes).
//! - legacy `entity_addr_t`: le32 type marker (0), le32 nonce, 128-byte `sockaddr_storage` whose
//!   family and port are big-endian and whose IP is in network order, zero padded. This is the
//!   only address form msgr1 puts in the banner; we do not speak the ADDR2 form (feature
//!   MSG_ADDR2), so we never advertise it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::WireError;

/// `CEPH_ENTITY_TYPE_*`: what kind of daemon or client a peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityType(pub u8);

impl EntityType {
    /// `CEPH_ENTITY_TYPE_MON`: a monitor.
    pub const MON: EntityType = EntityType(0x01);
    /// `CEPH_ENTITY_TYPE_MDS`: a metadata server.
    pub const MDS: EntityType = EntityType(0x02);
    /// `CEPH_ENTITY_TYPE_OSD`: an object storage daemon.
    pub const OSD: EntityType = EntityType(0x04);
    /// `CEPH_ENTITY_TYPE_CLIENT`: a client.
    pub const CLIENT: EntityType = EntityType(0x08);
    /// `CEPH_ENTITY_TYPE_MGR`: a manager.
    pub const MGR: EntityType = EntityType(0x10);
    /// `CEPH_ENTITY_TYPE_AUTH`: the auth service.
    pub const AUTH: EntityType = EntityType(0x20);

    /// Ceph's short name for the type (`osd`), `unknown` for anything else.
    pub fn name(self) -> &'static str {
        match self {
            EntityType::MON => "mon",
            EntityType::MDS => "mds",
            EntityType::OSD => "osd",
            EntityType::CLIENT => "client",
            EntityType::MGR => "mgr",
            EntityType::AUTH => "auth",
            _ => "unknown",
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `entity_name_t`: type and number (`osd.3`, `client.4121`). Number -1 means "new / not assigned".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityName {
    /// The entity type (`osd`).
    pub kind: EntityType,
    /// The number (`3`); -1: not assigned yet.
    pub num: i64,
}

impl EntityName {
    /// Encoded size: u8 type + le64 num.
    pub const LEN: usize = 9;

    /// The name `kind.num`.
    pub const fn new(kind: EntityType, num: i64) -> Self {
        EntityName { kind, num }
    }

    /// Appends the 9 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(Self::LEN);
        out.put_u8(self.kind.0);
        out.put_i64_le(self.num);
    }

    /// Decodes the first [`EntityName::LEN`] bytes of `buf` (any type byte is accepted, as Ceph does).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let b = need(buf, Self::LEN)?;
        Ok(EntityName {
            kind: EntityType(b[0]),
            num: i64::from_le_bytes(b[1..9].try_into().expect("8 bytes")),
        })
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num < 0 {
            write!(f, "{}.?", self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.num)
        }
    }
}

/// `entity_addr_t` as msgr1 carries it: type (0 = legacy), nonce, and an optional socket address
/// (None = blank address, family 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityAddr {
    /// The raw le32 that starts the legacy encoding. Its low byte is the legacy marker and must
    /// be 0; the other three bytes are padding Ceph ignores (kept so re-encoding is byte-exact).
    pub kind: u32,
    /// Tells processes on the same address apart (a restarted daemon gets a new one).
    pub nonce: u32,
    /// The socket address; None: blank (family 0).
    pub addr: Option<SocketAddr>,
}

/// Size of the legacy `entity_addr_t` encoding (u32 type, u32 nonce, 128-byte sockaddr_storage).
pub const LEGACY_ADDR_LEN: usize = 136;

/// Size of `sockaddr_storage` inside the legacy address.
const SOCKADDR_STORAGE_LEN: usize = 128;
/// Linux address family numbers, which is what Ceph puts on the wire (converted to big-endian).
const AF_UNSPEC: u16 = 0;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

impl EntityAddr {
    /// Encoded size of the legacy form.
    pub const LEGACY_LEN: usize = LEGACY_ADDR_LEN;

    /// A legacy address for `addr` with `nonce` (monitors use 0, other daemons a random one).
    pub const fn new(addr: SocketAddr, nonce: u32) -> Self {
        EntityAddr {
            kind: 0,
            nonce,
            addr: Some(addr),
        }
    }

    /// The blank address (family 0), what a peer that does not know its address yet sends.
    pub const fn blank() -> Self {
        EntityAddr {
            kind: 0,
            nonce: 0,
            addr: None,
        }
    }

    /// No socket address (family 0).
    pub fn is_blank(&self) -> bool {
        self.addr.is_none()
    }

    /// The IP, if any.
    pub fn ip(&self) -> Option<IpAddr> {
        self.addr.map(|a| a.ip())
    }

    /// The port, 0 for a blank address.
    pub fn port(&self) -> u16 {
        self.addr.map_or(0, |a| a.port())
    }

    /// Same address with another port (e.g. the learned IP with our own port).
    pub fn with_port(mut self, port: u16) -> Self {
        if let Some(a) = self.addr.as_mut() {
            a.set_port(port);
        }
        self
    }

    /// Same address with another nonce.
    pub fn with_nonce(mut self, nonce: u32) -> Self {
        self.nonce = nonce;
        self
    }

    /// Appends the 136-byte legacy encoding.
    pub fn encode_legacy(&self, out: &mut BytesMut) {
        out.reserve(LEGACY_ADDR_LEN);
        out.put_u32_le(self.kind);
        out.put_u32_le(self.nonce);
        // sockaddr_storage: only family and port are byte-swapped relative to the kernel struct;
        // IPv6 flowinfo stays in network order and scope_id in host (little-endian) order.
        let used = match self.addr {
            None => {
                out.put_u16(AF_UNSPEC);
                2
            }
            Some(SocketAddr::V4(a)) => {
                out.put_u16(AF_INET);
                out.put_u16(a.port());
                out.put_slice(&a.ip().octets());
                8
            }
            Some(SocketAddr::V6(a)) => {
                out.put_u16(AF_INET6);
                out.put_u16(a.port());
                out.put_u32(a.flowinfo());
                out.put_slice(&a.ip().octets());
                out.put_u32_le(a.scope_id());
                28
            }
        };
        out.put_bytes(0, SOCKADDR_STORAGE_LEN - used);
    }

    /// Decodes the first [`LEGACY_ADDR_LEN`] bytes of `buf`.
    ///
    /// Padding after the socket address is ignored (Ceph ignores it too).
    pub fn decode_legacy(buf: &[u8]) -> Result<Self, WireError> {
        let b = need(buf, LEGACY_ADDR_LEN)?;
        let kind = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        if kind & 0xff != 0 {
            return Err(WireError::BadAddrMarker(kind as u8));
        }
        let nonce = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
        let ss = &b[8..];
        let family = u16::from_be_bytes([ss[0], ss[1]]);
        let port = u16::from_be_bytes([ss[2], ss[3]]);
        let addr = match family {
            AF_UNSPEC => None,
            AF_INET => {
                let ip = Ipv4Addr::new(ss[4], ss[5], ss[6], ss[7]);
                Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
            }
            AF_INET6 => {
                let flowinfo = u32::from_be_bytes(ss[4..8].try_into().expect("4 bytes"));
                let octets: [u8; 16] = ss[8..24].try_into().expect("16 bytes");
                let scope_id = u32::from_le_bytes(ss[24..28].try_into().expect("4 bytes"));
                let ip = Ipv6Addr::from(octets);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip, port, flowinfo, scope_id,
                )))
            }
            other => return Err(WireError::BadAddrFamily(other)),
        };
        Ok(EntityAddr { kind, nonce, addr })
    }
}

impl fmt::Display for EntityAddr {
    /// Ceph's form: `v1:127.0.0.1:6789/0`, `v1:[::1]:6789/7`, `v1:-/0` for a blank address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "v1:{a}/{}", self.nonce),
            None => write!(f, "v1:-/{}", self.nonce),
        }
    }
}

/// The first `n` bytes of `buf`, or `WireError::Short`.
pub(crate) fn need(buf: &[u8], n: usize) -> Result<&[u8], WireError> {
    buf.get(..n).ok_or(WireError::Short {
        need: n,
        have: buf.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_like_ceph() {
        assert_eq!(EntityName::new(EntityType::OSD, 3).to_string(), "osd.3");
        assert_eq!(
            EntityName::new(EntityType::CLIENT, -1).to_string(),
            "client.?"
        );
        assert_eq!(
            EntityName::new(EntityType::MGR, 4121).to_string(),
            "mgr.4121"
        );
        assert_eq!(
            EntityName::new(EntityType(0x40), 1).to_string(),
            "unknown.1"
        );
        let v6 = EntityAddr::new("[::1]:6789".parse().unwrap(), 7);
        assert_eq!(v6.to_string(), "v1:[::1]:6789/7");
        assert_eq!(EntityAddr::blank().to_string(), "v1:-/0");
    }

    #[test]
    fn ipv6_layout_is_sockaddr_in6() {
        let a = EntityAddr::new("[2001:db8::1]:6800".parse().unwrap(), 1);
        let mut b = BytesMut::new();
        a.encode_legacy(&mut b);
        assert_eq!(&b[8..10], &[0, 10], "AF_INET6, big-endian");
        assert_eq!(&b[10..12], &6800u16.to_be_bytes());
        assert_eq!(
            &b[16..18],
            &[0x20, 0x01],
            "address in network order after flowinfo"
        );
        assert!(b[36..].iter().all(|&x| x == 0));
    }

    #[test]
    fn with_port_and_nonce() {
        let a = EntityAddr::new("10.1.2.3:0".parse().unwrap(), 0);
        let b = a.with_port(6800).with_nonce(9);
        assert_eq!(b.to_string(), "v1:10.1.2.3:6800/9");
        assert_eq!(EntityAddr::blank().with_port(5).port(), 0);
    }
}
