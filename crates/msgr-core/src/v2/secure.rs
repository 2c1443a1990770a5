//! msgr2.1 secure mode: AES-128-GCM (Ceph `crypto_onwire.cc`, `frames_v2.cc` rev1 secure).
//!
//! Keys: the connection secret that authentication produced is split into a 16-byte key, then two
//! 12-byte nonces; the client receives with the first nonce and sends with the second, the
//! server the other way round. A nonce is le32 fixed part + le64 counter; the counter grows by
//! one after every sealed block, in each direction independently. No associated data.
//!
//! A frame is one or two sealed blocks:
//! 1. the preamble and a 48-byte inline area (the start of segment 0, zero padded), sealed with
//!    its own 16-byte tag: 96 bytes on the wire;
//! 2. only if segment 0 is longer than 48 bytes or there are several segments: the rest of
//!    segment 0, then segments 1.., each zero padded to 16 bytes, then (several segments only) a
//!    16-byte epilogue (late status, 15 zero bytes), sealed with one tag.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit};
use bytes::{BufMut, BytesMut};

use super::frame::{check_late_status, segment_len, FrameRef, LATE_STATUS_COMPLETE};
use super::{FrameLimits, Preamble, Tag, V2Error};

/// Bytes of segment 0 carried in the first sealed block.
pub const INLINE_LEN: usize = 48;
/// GCM tag size.
pub const GCM_TAG_LEN: usize = 16;
/// AES block size; the second block's parts are padded to it.
pub const BLOCK_LEN: usize = 16;
/// On-wire size of the first sealed block.
pub const FIRST_BLOCK_LEN: usize = super::frame::PREAMBLE_LEN + INLINE_LEN + GCM_TAG_LEN;
/// Connection secret bytes secure mode uses: key and two nonces.
pub const SECRET_LEN: usize = 16 + 2 * 12;

/// Which end of the connection we are (the nonces are crossed between the two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We dialed and sent AUTH_REQUEST.
    Client,
    /// We accepted and sent AUTH_DONE.
    Server,
}

/// A GCM nonce: le32 fixed part and le64 counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcmNonce {
    /// Fixed part.
    pub fixed: u32,
    /// Counter, incremented after every sealed block.
    pub counter: u64,
}

impl GcmNonce {
    fn from_bytes(b: &[u8]) -> Self {
        let mut fixed = [0u8; 4];
        fixed.copy_from_slice(&b[..4]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&b[4..12]);
        GcmNonce {
            fixed: u32::from_le_bytes(fixed),
            counter: u64::from_le_bytes(counter),
        }
    }

    fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.fixed.to_le_bytes());
        b[4..].copy_from_slice(&self.counter.to_le_bytes());
        b
    }

    /// Returns the nonce to use now and advances the counter.
    fn next(&mut self) -> [u8; 12] {
        let b = self.to_bytes();
        self.counter = self.counter.wrapping_add(1);
        b
    }
}

/// Key and the two nonces of one end of a secure-mode connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecureKeys {
    /// AES-128 key.
    pub key: [u8; 16],
    /// Nonce for frames we receive.
    pub rx: GcmNonce,
    /// Nonce for frames we send.
    pub tx: GcmNonce,
}

impl std::fmt::Debug for SecureKeys {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureKeys")
            .field("key", &"hidden")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .finish()
    }
}

impl SecureKeys {
    /// Derives key and nonces from the connection secret, as Ceph's
    /// `rxtx_t::create_handler_pair` does (the server's are crossed).
    pub fn from_connection_secret(secret: &[u8], role: Role) -> Result<Self, V2Error> {
        if secret.len() < SECRET_LEN {
            return Err(V2Error::SecretTooShort(secret.len()));
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&secret[..16]);
        let first = GcmNonce::from_bytes(&secret[16..28]);
        let second = GcmNonce::from_bytes(&secret[28..40]);
        let (rx, tx) = match role {
            Role::Client => (first, second),
            Role::Server => (second, first),
        };
        Ok(SecureKeys { key, rx, tx })
    }

    /// The sending half.
    pub fn tx(&self) -> SecureTx {
        SecureTx {
            cipher: Aes128Gcm::new(&self.key.into()),
            nonce: self.tx,
        }
    }

    /// The receiving half.
    pub fn rx(&self) -> SecureRx {
        SecureRx {
            cipher: Aes128Gcm::new(&self.key.into()),
            nonce: self.rx,
            pending: None,
        }
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(BLOCK_LEN) * BLOCK_LEN
}

/// Size of the second sealed block (tag included) for `preamble`, 0 when there is none.
fn second_block_len(p: &Preamble) -> usize {
    let segs = p.present();
    let rest0 = (segs[0].len as usize).saturating_sub(INLINE_LEN);
    if segs.len() == 1 && rest0 == 0 {
        return 0;
    }
    let mut n = padded(rest0);
    for s in &segs[1..] {
        n += padded(s.len as usize);
    }
    if segs.len() > 1 {
        n += BLOCK_LEN;
    }
    n + GCM_TAG_LEN
}

/// Seals frames we send.
pub struct SecureTx {
    cipher: Aes128Gcm,
    nonce: GcmNonce,
}

impl SecureTx {
    /// Appends a sealed frame: `segments` are (bytes, alignment), at most 4.
    pub fn seal(&mut self, tag: Tag, segments: &[(&[u8], u16)], out: &mut BytesMut) {
        let descs: Vec<(u32, u16)> = segments.iter().map(|(b, a)| (segment_len(b), *a)).collect();
        let preamble = Preamble::new(tag, &descs);
        let n = usize::from(preamble.num_segments);
        let seg0: &[u8] = segments.first().map_or(&[], |s| s.0);
        let inline = seg0.len().min(INLINE_LEN);

        let start = out.len();
        out.reserve(FIRST_BLOCK_LEN + second_block_len(&preamble));
        out.put_slice(&preamble.to_bytes());
        out.put_slice(&seg0[..inline]);
        out.put_bytes(0, INLINE_LEN - inline);
        self.seal_tail(out, start);

        if second_block_len(&preamble) == 0 {
            return;
        }
        let start = out.len();
        let rest0 = &seg0[inline..];
        out.put_slice(rest0);
        out.put_bytes(0, padded(rest0.len()) - rest0.len());
        for (b, _) in &segments[1..n] {
            out.put_slice(b);
            out.put_bytes(0, padded(b.len()) - b.len());
        }
        if n > 1 {
            out.put_u8(LATE_STATUS_COMPLETE);
            out.put_bytes(0, BLOCK_LEN - 1);
        }
        self.seal_tail(out, start);
    }

    /// Encrypts `out[start..]` in place and appends its tag.
    fn seal_tail(&mut self, out: &mut BytesMut, start: usize) {
        let nonce = self.nonce.next();
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce.into(), b"", &mut out[start..])
            .expect("AES-GCM seals any frame shorter than 64 GiB");
        out.put_slice(&tag);
    }
}

impl std::fmt::Debug for SecureTx {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecureTx {{ next counter: {} }}", self.nonce.counter)
    }
}

/// Opens frames we receive.
pub struct SecureRx {
    cipher: Aes128Gcm,
    nonce: GcmNonce,
    /// The first block of a frame whose rest has not arrived yet (already opened: its nonce is
    /// spent).
    pending: Option<(Preamble, [u8; INLINE_LEN])>,
}

/// What [`SecureRx::open`] made of the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum SecureDecoded {
    /// The buffer must hold at least this many bytes before the next call can progress.
    Need(usize),
    /// A whole frame, and the bytes it took from the front of the buffer.
    Frame(OpenedFrame, usize),
}

/// A decrypted frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedFrame {
    /// The checked preamble.
    pub preamble: Preamble,
    data: Vec<u8>,
    bounds: [(usize, usize); 4],
}

impl OpenedFrame {
    /// A view with the same shape a crc-mode frame decodes to.
    pub fn frame(&self) -> FrameRef<'_> {
        let mut segments: [&[u8]; 4] = [&[]; 4];
        for (s, (a, b)) in segments.iter_mut().zip(self.bounds) {
            *s = &self.data[a..b];
        }
        FrameRef {
            preamble: self.preamble,
            segments,
        }
    }
}

impl std::fmt::Debug for SecureRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecureRx {{ next counter: {} }}", self.nonce.counter)
    }
}

impl SecureRx {
    /// Opens one frame from the front of `buf`. A tag mismatch anywhere is an error; the
    /// connection must then be dropped (the nonce sequence is lost).
    pub fn open(&mut self, buf: &[u8], limits: &FrameLimits) -> Result<SecureDecoded, V2Error> {
        let (preamble, inline) = match self.pending {
            Some(p) => p,
            None => {
                if buf.len() < FIRST_BLOCK_LEN {
                    return Ok(SecureDecoded::Need(FIRST_BLOCK_LEN));
                }
                const SEALED: usize = FIRST_BLOCK_LEN - GCM_TAG_LEN;
                let mut block = [0u8; SEALED];
                block.copy_from_slice(&buf[..SEALED]);
                self.decrypt(&mut block, &buf[SEALED..FIRST_BLOCK_LEN], "preamble block")?;
                let preamble = Preamble::decode(&block, limits)?;
                let mut inline = [0u8; INLINE_LEN];
                inline.copy_from_slice(&block[super::frame::PREAMBLE_LEN..]);
                self.pending = Some((preamble, inline));
                (preamble, inline)
            }
        };
        let second = second_block_len(&preamble);
        let total = FIRST_BLOCK_LEN + second;
        if buf.len() < total {
            return Ok(SecureDecoded::Need(total));
        }
        let segs = preamble.present();
        let len0 = segs[0].len as usize;
        let inline_used = len0.min(INLINE_LEN);
        let mut data = Vec::with_capacity(preamble.payload_len() as usize);
        data.extend_from_slice(&inline[..inline_used]);
        let mut bounds = [(0, 0); 4];
        if second > 0 {
            let mut body = buf[FIRST_BLOCK_LEN..total - GCM_TAG_LEN].to_vec();
            self.decrypt(
                &mut body,
                &buf[total - GCM_TAG_LEN..total],
                "segments block",
            )?;
            let rest0 = len0 - inline_used;
            data.extend_from_slice(&body[..rest0]);
            bounds[0] = (0, len0);
            let mut off = padded(rest0);
            for (i, s) in segs.iter().enumerate().skip(1) {
                let len = s.len as usize;
                let at = data.len();
                data.extend_from_slice(&body[off..off + len]);
                bounds[i] = (at, at + len);
                off += padded(len);
            }
            if segs.len() > 1 {
                check_late_status(body[off])?;
            }
        } else {
            bounds[0] = (0, len0);
        }
        let end = data.len();
        for b in bounds.iter_mut().skip(segs.len()) {
            *b = (end, end);
        }
        self.pending = None;
        Ok(SecureDecoded::Frame(
            OpenedFrame {
                preamble,
                data,
                bounds,
            },
            total,
        ))
    }

    fn decrypt(&mut self, block: &mut [u8], tag: &[u8], what: &'static str) -> Result<(), V2Error> {
        let nonce = self.nonce.next();
        self.cipher
            .decrypt_in_place_detached(&nonce.into(), b"", block, tag.into())
            .map_err(|_| V2Error::AuthTag(what))
    }
}
