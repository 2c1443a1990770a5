//! One byte stream under a msgr2 session: frame encoding and decoding in crc or secure mode,
//! and the record of pre-auth bytes that AUTH_SIGNATURE signs.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::auth::cephx::CryptoKey;
use crate::v2::frame::{decode_crc, Decoded};
use crate::v2::payload::Control;
use crate::v2::secure::{SecureDecoded, SecureKeys, SecureRx, SecureTx};
use crate::v2::{encode_crc, FrameLimits, Preamble, Tag, V2Error};

/// A received frame; segments share one buffer.
#[derive(Debug)]
pub(super) struct InFrame {
    pub(super) tag: Tag,
    pub(super) segments: [Bytes; 4],
}

/// Bytes before and during authentication, both directions (banner included).
#[derive(Debug, Default)]
pub(super) struct PreAuth {
    pub(super) sent: Vec<u8>,
    pub(super) received: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Link {
    /// Encoded bytes not yet handed to the driver.
    pub(super) out: BytesMut,
    tx: Option<SecureTx>,
    rx: Option<SecureRx>,
    /// Recording until authentication finishes; then the signatures are computed from it.
    pub(super) pre_auth: Option<PreAuth>,
    /// The peer's banner arrived.
    pub(super) banner_done: bool,
    pub(super) last_rx: Instant,
    /// Received messages not acknowledged yet.
    pub(super) ack_due: bool,
    /// Bytes the receive buffer must hold to finish the frame in progress (0: none known);
    /// a driver may read that much at once (a large message straight into place).
    pub(super) wanted: usize,
}

impl Link {
    pub(super) fn new(now: Instant) -> Self {
        Link {
            out: BytesMut::new(),
            tx: None,
            rx: None,
            pre_auth: Some(PreAuth::default()),
            banner_done: false,
            last_rx: now,
            ack_due: false,
            wanted: 0,
        }
    }

    /// Appends raw bytes (the banner) to the output.
    pub(super) fn send_raw(&mut self, b: &[u8]) {
        if let Some(p) = self.pre_auth.as_mut() {
            p.sent.extend_from_slice(b);
        }
        self.out.extend_from_slice(b);
    }

    /// Records bytes taken from the receive buffer outside frames (the banner).
    pub(super) fn record_received(&mut self, b: &[u8]) {
        if let Some(p) = self.pre_auth.as_mut() {
            p.received.extend_from_slice(b);
        }
    }

    /// Appends a frame in the link's current mode.
    pub(super) fn send_frame(&mut self, tag: Tag, segments: &[(&[u8], u16)]) {
        let start = self.out.len();
        match self.tx.as_mut() {
            Some(tx) => tx.seal(tag, segments, &mut self.out),
            None => encode_crc(tag, segments, &mut self.out),
        }
        if let Some(p) = self.pre_auth.as_mut() {
            p.sent.extend_from_slice(&self.out[start..]);
        }
    }

    pub(super) fn send_control(&mut self, c: &Control) {
        let mut payload = BytesMut::new();
        c.encode_payload(&mut payload);
        self.send_frame(c.tag(), &[(&payload, crate::v2::frame::DEFAULT_ALIGNMENT)]);
    }

    /// Switches both directions to secure mode (right after AUTH_DONE).
    pub(super) fn go_secure(&mut self, keys: &SecureKeys) {
        self.tx = Some(keys.tx());
        self.rx = Some(keys.rx());
    }

    /// Ends the pre-auth record; returns it.
    pub(super) fn finish_pre_auth(&mut self) -> PreAuth {
        self.pre_auth.take().unwrap_or_default()
    }

    /// Takes one whole frame from the front of `buf`, if there is one.
    pub(super) fn next_frame(
        &mut self,
        buf: &mut BytesMut,
        limits: &FrameLimits,
    ) -> Result<Option<InFrame>, V2Error> {
        let (preamble, bounds, data) = match self.rx.as_mut() {
            None => {
                let (preamble, used) = match decode_crc(buf, limits)? {
                    Decoded::Need(n) => {
                        self.wanted = n;
                        return Ok(None);
                    }
                    Decoded::Frame(f, used) => (f.preamble, used),
                };
                let bounds = crc_segment_bounds(&preamble);
                let whole = buf.split_to(used);
                if let Some(p) = self.pre_auth.as_mut() {
                    p.received.extend_from_slice(&whole);
                }
                (preamble, bounds, whole.freeze())
            }
            Some(rx) => match rx.open(buf, limits)? {
                SecureDecoded::Need(n) => {
                    self.wanted = n;
                    return Ok(None);
                }
                SecureDecoded::Frame(f, used) => {
                    let _ = buf.split_to(used);
                    let fr = f.frame();
                    let mut bounds = [(0, 0); 4];
                    let mut at = 0;
                    for (b, s) in bounds.iter_mut().zip(fr.segments) {
                        *b = (at, at + s.len());
                        at += s.len();
                    }
                    let data: Vec<u8> = fr.segments.concat();
                    (f.preamble, bounds, Bytes::from(data))
                }
            },
        };
        self.wanted = 0;
        Ok(Some(in_frame(&preamble, bounds, &data)?))
    }
}

/// Where each segment lies in a crc-mode frame: segment 0 after the preamble, its crc, then
/// the others back to back; absent segments are empty.
fn crc_segment_bounds(p: &Preamble) -> [(usize, usize); 4] {
    let mut bounds = [(0, 0); 4];
    let mut at = crate::v2::frame::PREAMBLE_LEN;
    for (i, (b, s)) in bounds.iter_mut().zip(p.present()).enumerate() {
        *b = (at, at + s.len as usize);
        at += s.len as usize;
        if i == 0 {
            at += crate::v2::frame::CRC_LEN;
        }
    }
    bounds
}

fn in_frame(
    preamble: &Preamble,
    bounds: [(usize, usize); 4],
    data: &Bytes,
) -> Result<InFrame, V2Error> {
    // Spelled out rather than `bounds.map`, which showed as a tenth of msgr2's receive
    // profile; absent segments share nothing.
    let seg = |(a, b): (usize, usize)| {
        if a == b {
            Bytes::new()
        } else {
            data.slice(a..b)
        }
    };
    Ok(InFrame {
        tag: preamble.tag()?,
        segments: [
            seg(bounds[0]),
            seg(bounds[1]),
            seg(bounds[2]),
            seg(bounds[3]),
        ],
    })
}

/// The AUTH_SIGNATURE over `bytes`: HMAC-SHA256 with the session key, or zeros without one
/// (auth none), as Ceph sends.
pub(super) fn signature(key: Option<&CryptoKey>, bytes: &[u8]) -> [u8; 32] {
    key.map_or([0; 32], |k| k.hmac_sha256(bytes))
}
