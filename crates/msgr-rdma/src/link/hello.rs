//! The private data of rdma_cm connect / accept / reject: a [`Hello`] tells the peer who we
//! are and how it may send to us (receive window), a reject says why.

use crate::options::RdmaOptions;

/// Private data of connect / accept: who we are and how the peer may send to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Receives posted before the connection was established (the peer's initial credits).
    pub recv_buffers: u32,
    /// Size of each receive buffer (largest SEND the peer may post).
    pub buffer_size: u32,
    /// The sender's entity type (`CEPH_ENTITY_TYPE_*`), for the accept hook; 0 if unknown.
    pub entity_type: u8,
    /// The sender's messenger nonce, for the accept hook.
    pub nonce: u32,
}

/// First bytes of every private data we send, to tell msgr peers from anything else.
pub const HELLO_MAGIC: [u8; 4] = *b"MSRD";
/// 2: READ requests and dones travel in framed SENDs with stream bytes.
pub const HELLO_VERSION: u8 = 2;
/// Encoded size of a [`Hello`] (fits the 56 bytes of an RC connect's private data).
pub const HELLO_LEN: usize = 20;
/// Reject private data: the accept hook refused the peer.
pub const REJECT_REFUSED: u8 = 1;
/// Reject private data: the connect request was malformed (not an msgr peer).
pub const REJECT_BAD_HELLO: u8 = 2;

impl Hello {
    pub fn from_options(o: &RdmaOptions) -> Self {
        Hello {
            recv_buffers: o.recv_buffers as u32,
            buffer_size: o.buffer_size as u32,
            entity_type: 0,
            nonce: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HELLO_LEN);
        v.extend_from_slice(&HELLO_MAGIC);
        v.extend_from_slice(&[HELLO_VERSION, self.entity_type, 0, 0]);
        v.extend_from_slice(&self.recv_buffers.to_le_bytes());
        v.extend_from_slice(&self.buffer_size.to_le_bytes());
        v.extend_from_slice(&self.nonce.to_le_bytes());
        v
    }

    /// Decode and sanity-check a peer's hello (IB pads private data with zeros, so trailing
    /// bytes are ignored).
    pub fn decode(b: &[u8]) -> Result<Hello, String> {
        if b.len() < HELLO_LEN {
            return Err(format!(
                "private data is {} bytes, expected at least {HELLO_LEN}",
                b.len()
            ));
        }
        if b[..4] != HELLO_MAGIC {
            return Err(format!("bad magic {:02x?}", &b[..4]));
        }
        if b[4] != HELLO_VERSION {
            return Err(format!("unsupported version {}", b[4]));
        }
        let recv_buffers = u32::from_le_bytes(b[8..12].try_into().unwrap());
        let buffer_size = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if !(2..=65536).contains(&recv_buffers) || !(64..=(1 << 30)).contains(&buffer_size) {
            return Err(format!(
                "implausible window: {recv_buffers} receive buffers of {buffer_size} bytes"
            ));
        }
        Ok(Hello {
            recv_buffers,
            buffer_size,
            entity_type: b[5],
            nonce: u32::from_le_bytes(b[16..20].try_into().unwrap()),
        })
    }

    pub fn reject_data(code: u8) -> Vec<u8> {
        let mut v = HELLO_MAGIC.to_vec();
        v.push(code);
        v
    }

    /// The reason code of a reject we sent, if the data is ours.
    pub fn reject_code(b: &[u8]) -> Option<u8> {
        (b.len() >= 5 && b[..4] == HELLO_MAGIC).then(|| b[4])
    }
}

/// A GID as 8 groups of hex digits (`fe80:0000:...`).
pub fn fmt_gid(g: &[u8; 16]) -> String {
    g.chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_rejects_garbage() {
        let h = Hello {
            recv_buffers: 16,
            buffer_size: 65536,
            entity_type: 4,
            nonce: 0xdead_beef,
        };
        let mut b = h.encode();
        b.resize(56, 0); // IB pads private data
        assert_eq!(Hello::decode(&b), Ok(h));
        assert!(Hello::decode(b"MSRD").is_err());
        assert!(Hello::decode(&[0u8; 56]).unwrap_err().contains("magic"));
        let mut huge = h.encode();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Hello::decode(&huge).unwrap_err().contains("implausible"));
        assert_eq!(
            Hello::reject_code(&Hello::reject_data(REJECT_REFUSED)),
            Some(REJECT_REFUSED)
        );
        assert_eq!(Hello::reject_code(&[0; 8]), None);
    }
}
