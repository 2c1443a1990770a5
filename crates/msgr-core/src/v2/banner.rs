//! The msgr2 banner: `ceph v2\n`, le16 payload length (16), le64 supported and le64 required
//! feature bits. Both sides send theirs at once.

use bytes::{BufMut, BytesMut};

use super::{Reader, V2Error};

/// The fixed start of the banner.
pub const BANNER_PREFIX: &[u8; 8] = b"ceph v2\n";
/// Banner size as we send it: prefix, le16 length, two le64 words.
pub const BANNER_LEN: usize = 26;

/// msgr2 feature bit: revision 1 (msgr2.1 framing). We require it.
pub const FEATURE_REVISION_1: u64 = 1 << 0;
/// msgr2 feature bit: on-wire compression. We neither offer nor use it.
pub const FEATURE_COMPRESSION: u64 = 1 << 1;
/// What we support.
pub const SUPPORTED: u64 = FEATURE_REVISION_1;
/// What we require from a peer.
pub const REQUIRED: u64 = FEATURE_REVISION_1;

/// A decoded banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banner {
    /// Feature bits the sender supports.
    pub supported: u64,
    /// Feature bits the sender requires.
    pub required: u64,
}

impl Default for Banner {
    fn default() -> Self {
        Banner {
            supported: SUPPORTED,
            required: REQUIRED,
        }
    }
}

impl Banner {
    /// Appends the 26-byte banner.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(BANNER_LEN);
        out.put_slice(BANNER_PREFIX);
        out.put_u16_le(16);
        out.put_u64_le(self.supported);
        out.put_u64_le(self.required);
    }

    /// Decodes a banner from the start of `buf`: `Ok(None)` if more bytes are needed, else the
    /// banner and the bytes it took. A longer payload (a future peer) is accepted and skipped.
    pub fn decode(buf: &[u8]) -> Result<Option<(Banner, usize)>, V2Error> {
        let prefix_len = BANNER_PREFIX.len().min(buf.len());
        if buf[..prefix_len] != BANNER_PREFIX[..prefix_len] {
            return Err(V2Error::BadBanner(buf[..prefix_len].to_vec()));
        }
        if buf.len() < BANNER_PREFIX.len() + 2 {
            return Ok(None);
        }
        let mut r = Reader::new(&buf[BANNER_PREFIX.len()..], "msgr2 banner");
        let len = r.u16()?;
        if len < 16 {
            return Err(V2Error::BannerLength(len));
        }
        let total = BANNER_PREFIX.len() + 2 + usize::from(len);
        if buf.len() < total {
            return Ok(None);
        }
        let banner = Banner {
            supported: r.u64()?,
            required: r.u64()?,
        };
        Ok(Some((banner, total)))
    }

    /// Checks a peer's banner against ours: its required bits must be ones we support, and it
    /// must speak msgr2.1.
    pub fn check_peer(&self, peer: &Banner) -> Result<(), V2Error> {
        let missing = peer.required & !self.supported;
        if missing != 0 {
            return Err(V2Error::MissingFeatures {
                missing,
                supported: self.supported,
            });
        }
        if peer.supported & FEATURE_REVISION_1 == 0 {
            return Err(V2Error::Revision0Peer);
        }
        Ok(())
    }
}
