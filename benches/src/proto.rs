//! The baseline's wire format.
//!
//! A connection starts with a hello: the magic `TBL1`, one mode byte and a little-endian
//! u64 message count. Then the client sends frames: a little-endian u32 payload length and
//! the payload.
//! - [`Mode::Echo`]: the server sends every frame back unchanged, as soon as it has read it.
//! - [`Mode::Stream`]: the server only reads; after `count` frames it answers one byte
//!   [`STREAM_DONE`], so the client can stop its clock when the last byte has arrived.

use std::io::{self, BufReader, BufWriter, Read, Write};

/// First bytes of every connection.
pub const MAGIC: [u8; 4] = *b"TBL1";
/// Sent by the server in stream mode once it has read every frame.
pub const STREAM_DONE: u8 = b'K';
/// Largest frame either side accepts; a bigger length prefix is garbage, not a request to
/// allocate (the matrix tops out at 4 MiB).
pub const MAX_FRAME: usize = 64 << 20;

/// What the server does with each frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Echo,
    Stream,
}

impl Mode {
    fn to_byte(self) -> u8 {
        match self {
            Mode::Echo => b'E',
            Mode::Stream => b'S',
        }
    }

    fn from_byte(b: u8) -> Option<Mode> {
        match b {
            b'E' => Some(Mode::Echo),
            b'S' => Some(Mode::Stream),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Stream => "stream",
        }
    }
}

/// The connection preamble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub mode: Mode,
    pub count: u64,
}

impl Hello {
    pub const LEN: usize = 13;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = self.mode.to_byte();
        b[5..].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; Self::LEN]) -> io::Result<Hello> {
        if b[..4] != MAGIC {
            return Err(invalid("not a tcp-baseline client (bad magic)"));
        }
        let mode = Mode::from_byte(b[4]).ok_or_else(|| invalid("unknown mode byte"))?;
        let count = u64::from_le_bytes(b[5..].try_into().expect("8 bytes"));
        Ok(Hello { mode, count })
    }

    pub fn read_from(r: &mut impl Read) -> io::Result<Hello> {
        let mut b = [0u8; Self::LEN];
        r.read_exact(&mut b)?;
        Hello::decode(&b)
    }
}

/// A frame ready to send: length prefix and payload in one buffer, so one `write` puts both
/// in the same segment (two writes with TCP_NODELAY would cost an extra packet per message).
pub fn frame(payload_len: usize, fill: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + payload_len);
    f.extend_from_slice(&(payload_len as u32).to_le_bytes());
    f.resize(4 + payload_len, fill);
    f
}

/// Reads one frame (length prefix included) into `buf`, which is resized to fit.
/// Returns `Ok(false)` on a clean end of stream before the first byte.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(invalid(&format!(
            "frame of {n} bytes announced, limit is {MAX_FRAME}"
        )));
    }
    buf.clear();
    buf.extend_from_slice(&len);
    buf.resize(4 + n, 0);
    r.read_exact(&mut buf[4..])?;
    Ok(true)
}

/// Buffer size of the server's reader and writer: a few frames of the small sizes, so a burst
/// of pipelined messages costs one read and one write system call, not three per message.
const IO_BUF: usize = 256 << 10;

/// Serves one connection (read half `r`, write half `w`) until the peer closes it.
///
/// Echoes are buffered and flushed whenever no further input is already buffered: a lone
/// ping-pong message goes back at once, a pipelined burst goes back in one write.
pub fn serve_conn(r: impl Read, w: impl Write) -> io::Result<()> {
    let mut r = BufReader::with_capacity(IO_BUF, r);
    let hello = Hello::read_from(&mut r)?;
    let mut buf = Vec::new();
    match hello.mode {
        Mode::Echo => {
            let mut w = BufWriter::with_capacity(IO_BUF, w);
            while read_frame(&mut r, &mut buf)? {
                w.write_all(&buf)?;
                if r.buffer().is_empty() {
                    w.flush()?;
                }
            }
            w.flush()?;
        }
        Mode::Stream => {
            for _ in 0..hello.count {
                if !read_frame(&mut r, &mut buf)? {
                    return Err(invalid("client closed before sending every frame"));
                }
            }
            let mut w = w;
            w.write_all(&[STREAM_DONE])?;
        }
    }
    Ok(())
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_bad_magic() {
        let h = Hello {
            mode: Mode::Stream,
            count: 12345,
        };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(Hello::decode(&bad).is_err());
        bad = h.encode();
        bad[4] = b'?';
        assert!(Hello::decode(&bad).is_err());
    }

    #[test]
    fn oversized_length_is_an_error_not_an_allocation() {
        let mut input: &[u8] = &u32::MAX.to_le_bytes();
        let mut buf = Vec::new();
        let err = read_frame(&mut input, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(buf.capacity() < MAX_FRAME);
    }

    #[test]
    fn echo_server_returns_every_frame_unchanged() {
        let mut input = Hello {
            mode: Mode::Echo,
            count: 2,
        }
        .encode()
        .to_vec();
        let a = frame(3, 7);
        let b = frame(0, 0);
        input.extend_from_slice(&a);
        input.extend_from_slice(&b);
        let mut output = Vec::new();
        serve_conn(&input[..], &mut output).unwrap();
        assert_eq!(output, [a, b].concat());
    }

    #[test]
    fn stream_server_answers_once_after_count_frames() {
        let mut input = Hello {
            mode: Mode::Stream,
            count: 3,
        }
        .encode()
        .to_vec();
        for _ in 0..3 {
            input.extend_from_slice(&frame(100, 1));
        }
        let mut output = Vec::new();
        serve_conn(&input[..], &mut output).unwrap();
        assert_eq!(output, [STREAM_DONE]);

        // One frame short: the server reports it instead of acknowledging.
        let short = &input[..input.len() - 104];
        let mut output = Vec::new();
        assert!(serve_conn(short, &mut output).is_err());
        assert!(output.is_empty());
    }
}
