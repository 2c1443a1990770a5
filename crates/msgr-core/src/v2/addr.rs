//! `entity_addr_t` in the ADDR2 encoding msgr2 always uses, and `entity_addrvec_t`.
//!
//! Address: u8 marker 1, u8 struct_v 1, u8 compat 1, le32 length of what follows, le32 type
//! (0 none, 1 legacy = v1, 2 msgr2 = v2, 3 any), le32 nonce, le32 sockaddr length, then the
//! sockaddr with its family **little-endian** and the rest as the kernel lays it out (port
//! big-endian, IP in network order, IPv4 padded with 8 zero bytes, IPv6 with big-endian flowinfo
//! and host-order scope id). Vector: u8 marker 2, le32 count, addresses.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::{Reader, V2Error};

/// `entity_addr_t::type`: which protocol an address speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKind(pub u32);

impl AddrKind {
    /// No address.
    pub const NONE: AddrKind = AddrKind(0);
    /// msgr1 (`v1:`).
    pub const LEGACY: AddrKind = AddrKind(1);
    /// msgr2 (`v2:`).
    pub const MSGR2: AddrKind = AddrKind(2);
    /// Either (a client's own address before it knows which it speaks).
    pub const ANY: AddrKind = AddrKind(3);

    fn prefix(self) -> &'static str {
        match self {
            AddrKind::LEGACY => "v1:",
            AddrKind::MSGR2 => "v2:",
            AddrKind::ANY => "any:",
            _ => "",
        }
    }
}

/// An address as msgr2 carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityAddrV2 {
    /// Protocol the address speaks.
    pub kind: AddrKind,
    /// Instance nonce (monitors use 0).
    pub nonce: u32,
    /// IP and port; `None` for a blank address.
    pub addr: Option<SocketAddr>,
}

const MARKER_ADDR2: u8 = 1;
const MARKER_VEC: u8 = 2;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

impl EntityAddrV2 {
    /// An address of `kind` at `addr` with `nonce`.
    pub const fn new(kind: AddrKind, addr: SocketAddr, nonce: u32) -> Self {
        EntityAddrV2 {
            kind,
            nonce,
            addr: Some(addr),
        }
    }

    /// The blank address (type none, no socket address).
    pub const fn blank() -> Self {
        EntityAddrV2 {
            kind: AddrKind::NONE,
            nonce: 0,
            addr: None,
        }
    }

    /// Appends the ADDR2 encoding.
    pub fn encode(&self, out: &mut BytesMut) {
        let sa_len: u32 = match self.addr {
            None => 0,
            Some(SocketAddr::V4(_)) => 16,
            Some(SocketAddr::V6(_)) => 28,
        };
        out.put_u8(MARKER_ADDR2);
        out.put_u8(1); // struct_v
        out.put_u8(1); // compat
        out.put_u32_le(12 + sa_len);
        out.put_u32_le(self.kind.0);
        out.put_u32_le(self.nonce);
        out.put_u32_le(sa_len);
        match self.addr {
            None => {}
            Some(SocketAddr::V4(a)) => {
                out.put_u16_le(AF_INET);
                out.put_u16(a.port());
                out.put_slice(&a.ip().octets());
                out.put_bytes(0, 8);
            }
            Some(SocketAddr::V6(a)) => {
                out.put_u16_le(AF_INET6);
                out.put_u16(a.port());
                out.put_u32(a.flowinfo());
                out.put_slice(&a.ip().octets());
                out.put_u32_le(a.scope_id());
            }
        }
    }

    /// Decodes one address from `r`.
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, V2Error> {
        let marker = r.u8()?;
        if marker != MARKER_ADDR2 {
            return Err(V2Error::BadAddr(
                "address marker is not 1 (ADDR2): a legacy address where msgr2 needs the ADDR2 form",
            ));
        }
        let _struct_v = r.u8()?;
        let compat = r.u8()?;
        if compat > 1 {
            return Err(V2Error::BadAddr(
                "address encoding compat version above 1: the peer is newer than us",
            ));
        }
        let body = r.blob()?;
        let mut b = Reader::new(body, "entity_addr_t");
        let kind = AddrKind(b.u32()?);
        let nonce = b.u32()?;
        let sa = b.blob()?;
        let addr = decode_sockaddr(sa)?;
        Ok(EntityAddrV2 { kind, nonce, addr })
    }

    /// Decodes one address from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, V2Error> {
        Self::decode_from(&mut Reader::new(buf, "entity_addr_t"))
    }
}

fn decode_sockaddr(sa: &[u8]) -> Result<Option<SocketAddr>, V2Error> {
    if sa.is_empty() {
        return Ok(None);
    }
    let mut r = Reader::new(sa, "sockaddr");
    match r.u16()? {
        AF_INET if sa.len() >= 8 => {
            let port = u16::from_be_bytes(r.array()?);
            let ip = Ipv4Addr::from(r.array::<4>()?);
            Ok(Some(SocketAddr::V4(SocketAddrV4::new(ip, port))))
        }
        AF_INET6 if sa.len() >= 28 => {
            let port = u16::from_be_bytes(r.array()?);
            let flow = u32::from_be_bytes(r.array()?);
            let ip = Ipv6Addr::from(r.array::<16>()?);
            let scope = r.u32()?;
            Ok(Some(SocketAddr::V6(SocketAddrV6::new(
                ip, port, flow, scope,
            ))))
        }
        0 => Ok(None),
        _ => Err(V2Error::BadAddr(
            "sockaddr family is not IPv4 or IPv6, or its length is too short for it",
        )),
    }
}

impl fmt::Display for EntityAddrV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{}{}/{}", self.kind.prefix(), a, self.nonce),
            None => write!(f, "{}-/{}", self.kind.prefix(), self.nonce),
        }
    }
}

/// `entity_addrvec_t`: the addresses an entity is reachable at (typically one v2 and one v1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EntityAddrVec(pub Vec<EntityAddrV2>);

impl EntityAddrVec {
    /// Appends the vector encoding (marker 2).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(MARKER_VEC);
        out.put_u32_le(self.0.len() as u32);
        for a in &self.0 {
            a.encode(out);
        }
    }

    /// Decodes a vector (marker 2) or a lone ADDR2 address (marker 1) from `r`.
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, V2Error> {
        let mut peek = r.clone();
        match peek.u8()? {
            MARKER_ADDR2 => Ok(EntityAddrVec(vec![EntityAddrV2::decode_from(r)?])),
            MARKER_VEC => {
                r.u8()?;
                let n = r.u32()? as usize;
                // Each address takes at least 7 bytes: bound the count before allocating.
                if n > r.remaining() / 7 {
                    return Err(V2Error::BadAddr(
                        "address vector count larger than its bytes allow",
                    ));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(EntityAddrV2::decode_from(r)?);
                }
                Ok(EntityAddrVec(v))
            }
            _ => Err(V2Error::BadAddr(
                "address vector marker is neither 2 (vector) nor 1 (single ADDR2 address)",
            )),
        }
    }

    /// The first address of `kind`, if any.
    pub fn of_kind(&self, kind: AddrKind) -> Option<&EntityAddrV2> {
        self.0.iter().find(|a| a.kind == kind)
    }
}

impl fmt::Display for EntityAddrVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        f.write_str("]")
    }
}
