//! Ceph's `CryptoKey` and `CryptoAES`: AES-128-CBC with the fixed IV `cephsageyudagreg` and
//! PKCS#7 padding; HMAC-SHA256 keyed with the key's 16 secret bytes; and cephx's envelope
//! (`encode_encrypt`): u8 struct_v 1, le64 magic `AUTH_ENC_MAGIC`, payload, all encrypted.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use bytes::{BufMut, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::CephxError;
use crate::v2::Reader;

/// The IV every CryptoAES operation uses (Ceph's `CEPH_AES_IV`).
pub const CEPH_AES_IV: &[u8; 16] = b"cephsageyudagreg";
/// Marks correctly decrypted cephx structures.
pub const AUTH_ENC_MAGIC: u64 = 0xff00_9cad_8826_aa55;
/// `CEPH_CRYPTO_AES`.
pub const CRYPTO_AES: u16 = 1;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// A cephx secret: an AES-128 key and when it was created.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CryptoKey {
    /// Creation time (seconds, nanoseconds), carried for byte-exact encoding.
    pub created: (u32, u32),
    /// The AES-128 key.
    pub secret: [u8; 16],
}

impl std::fmt::Debug for CryptoKey {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CryptoKey(created {}.{:09}, secret hidden)",
            self.created.0, self.created.1
        )
    }
}

impl CryptoKey {
    /// Encoded size: le16 type, utime, le16 length, 16 bytes.
    pub const LEN: usize = 28;

    /// Decodes the binary form (`CryptoKey::encode`) from `r`.
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, CephxError> {
        let kind = r.u16()?;
        if kind != CRYPTO_AES {
            return Err(CephxError::Unsupported {
                what: "key",
                field: "type",
                value: kind.into(),
            });
        }
        let created = (r.u32()?, r.u32()?);
        let len = r.u16()?;
        if len != 16 {
            return Err(CephxError::BadKey("AES key length is not 16 bytes"));
        }
        Ok(CryptoKey {
            created,
            secret: r.array()?,
        })
    }

    /// Decodes the binary form.
    pub fn decode(buf: &[u8]) -> Result<Self, CephxError> {
        Self::decode_from(&mut Reader::new(buf, "CryptoKey"))
    }

    /// Decodes the base64 text of a keyring's `key =`.
    pub fn from_base64(text: &str) -> Result<Self, CephxError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| CephxError::BadKey("not valid base64"))?;
        if raw.len() != Self::LEN {
            return Err(CephxError::BadKey("not 28 bytes once base64-decoded"));
        }
        Self::decode(&raw)
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(CRYPTO_AES);
        out.put_u32_le(self.created.0);
        out.put_u32_le(self.created.1);
        out.put_u16_le(16);
        out.put_slice(&self.secret);
    }

    /// CryptoAES encryption (PKCS#7 padded: always 1 to 16 bytes longer).
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        Aes128CbcEnc::new(&self.secret.into(), CEPH_AES_IV.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain)
    }

    /// CryptoAES decryption; `what` names the data in the error.
    pub fn decrypt(&self, cipher: &[u8], what: &'static str) -> Result<Vec<u8>, CephxError> {
        Aes128CbcDec::new(&self.secret.into(), CEPH_AES_IV.into())
            .decrypt_padded_vec_mut::<Pkcs7>(cipher)
            .map_err(|_| CephxError::Decrypt(what))
    }

    /// HMAC-SHA256 keyed with the secret (msgr2's AUTH_SIGNATURE).
    pub fn hmac_sha256(&self, data: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// cephx `encode_encrypt_enc_bl`: seals `payload` in the magic envelope.
    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut plain = BytesMut::with_capacity(9 + payload.len());
        plain.put_u8(1);
        plain.put_u64_le(AUTH_ENC_MAGIC);
        plain.put_slice(payload);
        self.encrypt(&plain)
    }

    /// cephx `decode_decrypt_enc_bl`: opens an envelope and returns its payload.
    pub fn open(&self, cipher: &[u8], what: &'static str) -> Result<Vec<u8>, CephxError> {
        let plain = self.decrypt(cipher, what)?;
        let mut r = Reader::new(&plain, what);
        let _struct_v = r.u8()?;
        if r.u64()? != AUTH_ENC_MAGIC {
            return Err(CephxError::BadMagic(what));
        }
        Ok(plain[9..].to_vec())
    }
}
