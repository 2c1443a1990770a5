//! Reading a socket into the session's buffer, sized to the traffic.
//!
//! Small traffic: reads land in zeroed spare space right after the unconsumed bytes, joined to
//! them without a copy. Large bursts and the rest of a large message body: std's
//! `read_to_end` into uninitialised capacity (safe code cannot read into uninitialised memory
//! any other way), straight into the buffer the session decodes from; those allocations are
//! recycled once every message sliced from them is dropped.

use std::collections::VecDeque;
use std::io::Read;

use bytes::{Bytes, BytesMut};
use msgr_core::session::SessionError;
use msgr_node::ReadEnd;

/// Receive allocations adapt between these: small for request/response traffic and idle
/// links, large for streams.
pub(crate) const MIN_READ: usize = 4 << 10;
pub(crate) const MAX_READ: usize = 1 << 20;
/// From this read size on, reads go into fresh uninitialised memory through std's
/// `read_to_end` (no zeroing; see [`read_large`]); below it, into zeroed spare space.
pub(crate) const LARGE_READ: usize = 64 << 10;
/// Bytes read from one link before others get a turn.
pub(crate) const READ_BUDGET: usize = 1 << 20;
/// Large receive buffers a link keeps watching for reuse (see [`read_large`]): enough for
/// `MAX_READ`-sized buffers to cover what a busy peer keeps referenced (a few MiB).
pub(crate) const RECYCLE: usize = 8;
/// Large reads in a row that find under an eighth of their room before the read size halves.
pub(crate) const SHRINK_AFTER: u8 = 16;
/// Bytes read at the frame boundary after a large body: the next header and the start of what
/// follows it, so the decoder knows the next body's size before that body is read.
pub(crate) const PEEK: usize = 4 << 10;

/// Errors from the socket, as the session sees them.
pub(crate) fn link_error(what: &str, e: &std::io::Error) -> SessionError {
    SessionError::LinkFailed(format!("{what}: {e}"))
}

/// A socket's receive side and what it keeps between reads.
#[derive(Debug)]
pub(crate) struct Reader {
    /// The link's socket (its only descriptor, non-blocking), as a std stream: std's
    /// `read_to_end` reads it into a `Vec`'s spare capacity without zeroing it. The link
    /// writes, registers and shuts it down through this field too.
    pub(crate) sock: std::net::TcpStream,
    /// Zeroed space right after the session's buffer in the same allocation: reads land here
    /// and are joined to the buffer without a copy; each byte is zeroed once.
    spare: BytesMut,
    /// Size of the next receive allocation: grows while reads fill it, shrinks while large
    /// reads find little.
    read_size: usize,
    /// Large receive buffers handed to the session, oldest first, each as an empty handle at
    /// the end of its allocation: once the messages sliced from one are all dropped the handle
    /// is its only owner and the allocation is read into again (already paged in).
    recycle: VecDeque<BytesMut>,
    /// Large reads in a row that found little (see [`read_large`]).
    small_bursts: u8,
    /// The last frame had a large body: read the next frame's start alone (see [`read_peek`]).
    after_large_body: bool,
    /// The poller reported the peer's end closed: read until EOF.
    pub peer_closed: bool,
}

impl Reader {
    pub fn new(sock: std::net::TcpStream) -> Self {
        Reader {
            sock,
            spare: BytesMut::new(),
            read_size: MIN_READ,
            recycle: VecDeque::new(),
            small_bursts: 0,
            after_large_body: false,
            peer_closed: false,
        }
    }
}

/// Make room to read: when the spare space is nearly used up, move the unconsumed bytes into a
/// fresh allocation with `read_size` (or, for a large message being assembled, as much again)
/// zeroed bytes after them.
fn ensure_spare(r: &mut Reader, buf: &mut BytesMut) {
    if r.spare.len() >= MIN_READ {
        return;
    }
    let keep = buf.len();
    let size = r.read_size.max(keep);
    let mut fresh = BytesMut::with_capacity(keep + size);
    fresh.extend_from_slice(&buf[..]);
    fresh.resize(keep + size, 0);
    r.spare = fresh.split_off(keep);
    *buf = fresh;
}

/// One large read burst: the unconsumed bytes and up to about `read_size` new ones go into a
/// `Vec` (recycled when one is free, see [`large_buffer`]), read through the std socket's
/// `read_to_end`, which fills spare capacity without zeroing it first (std reads sockets into
/// uninitialised memory; safe code cannot). Costs one copy of the unconsumed tail (a partial
/// frame) per burst instead of zeroing every byte, and a few more `recv` calls (std starts each
/// `read_to_end` at 8 KiB and doubles). The `Vec` becomes the buffer without a copy; its unused
/// capacity is where the decoder's reservation for the rest of a partial frame lands.
fn read_large(r: &mut Reader, buf: &mut BytesMut) -> (usize, ReadEnd) {
    let keep = buf.len();
    let mut v = large_buffer(&mut r.recycle, keep, r.read_size);
    let limit = v.capacity() - keep;
    v.extend_from_slice(&buf[..]);
    let result = (&r.sock).take(limit as u64).read_to_end(&mut v);
    let n = v.len() - keep;
    r.spare = BytesMut::new();
    // Both conversions keep the allocation (and its spare capacity): the Vec is unique.
    let mut rbuf = BytesMut::from(Bytes::from(v));
    let end_handle = rbuf.split_off(rbuf.capacity());
    r.recycle.push_back(end_handle);
    *buf = rbuf;
    let end = match result {
        // The limit was reached: more may be waiting, and larger reads would pay.
        Ok(_) if n == limit => {
            r.read_size = (limit * 2).min(MAX_READ);
            ReadEnd::Yield
        }
        Ok(_) => ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
        Err(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => {
                if n < limit / 8 {
                    r.small_bursts += 1;
                } else {
                    r.small_bursts = 0;
                }
                if r.small_bursts >= SHRINK_AFTER {
                    // The stream has become little traffic: smaller allocations (and, below
                    // LARGE_READ, back to zeroed reads, which stop at the first short read).
                    r.small_bursts = 0;
                    r.read_size = (r.read_size / 2).max(MIN_READ);
                    if r.read_size < LARGE_READ {
                        r.recycle.clear();
                    }
                }
                ReadEnd::Drained
            }
            _ => ReadEnd::Failed(link_error("read", &e)),
        },
    };
    (n, end)
}

/// The rest of a large message body: the buffer becomes a `Vec` with room for the whole body, read
/// through the std socket's `read_to_end` (no zeroing, as in [`read_large`]), and goes back
/// to the session as the same allocation. The first burst of a body copies what was received
/// of it once (or, if nothing else references the allocation, nothing); later bursts find
/// the buffer unique and unshared (the session takes nothing from it until the body is complete),
/// so the conversions copy nothing. At most `MAX_READ` bytes per call: one large message does
/// not keep the worker from other links.
fn read_body(r: &mut Reader, buf: &mut BytesMut, wanted: usize) -> (usize, ReadEnd) {
    let keep = buf.len();
    let missing = wanted - keep;
    let mut v: Vec<u8> = std::mem::take(&mut *buf).into();
    // The decoder has usually reserved exactly the body already: reading up to its end and no
    // further costs nothing (the next burst starts a fresh buffer), whereas asking for more
    // room here would reallocate and copy the partial body (up to a whole message) again.
    // Only when the body does not fit, grow once, with room for the start of what follows.
    if v.capacity() - keep < missing {
        v.reserve(missing + MIN_READ);
    }
    let limit = (v.capacity() - keep).min(MAX_READ);
    let result = (&r.sock).take(limit as u64).read_to_end(&mut v);
    let n = v.len() - keep;
    r.spare = BytesMut::new();
    *buf = BytesMut::from(Bytes::from(v));
    let end = match result {
        Ok(_) if n == limit => ReadEnd::Yield,
        Ok(_) => ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
        Err(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => ReadEnd::Drained,
            _ => ReadEnd::Failed(link_error("read", &e)),
        },
    };
    (n, end)
}

/// At the frame boundary after a large body: read at most [`PEEK`] bytes, so that a large
/// body that follows is read by [`read_body`] straight into its own buffer. A burst read
/// here instead would take most of that body into a shared buffer, and the decoder would copy
/// it out (the "partial-body copy", up to a whole message). Costs one small read per large
/// message; a stream that turns small again stops peeking after one frame.
fn read_peek(r: &mut Reader, buf: &mut BytesMut) -> (usize, ReadEnd) {
    debug_assert!(buf.is_empty(), "peek only at a frame boundary");
    let mut head = [0u8; PEEK];
    loop {
        return match (&r.sock).read(&mut head) {
            Ok(0) => (
                0,
                ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
            ),
            Ok(n) => {
                // Once per boundary: nothing arrived yet means peek again next time.
                r.after_large_body = false;
                // A fresh buffer: the empty one left by the body still points into that body's
                // allocation, and growing it would copy the whole allocation.
                *buf = BytesMut::from(&head[..n]);
                // A full peek: more is waiting, read it once the session has seen the header.
                // A short one emptied the receive queue, but if the peer also closed, read on
                // to see the end of the stream: its readiness event is spent, no other comes.
                let end = match n {
                    PEEK => ReadEnd::Again,
                    _ if r.peer_closed => ReadEnd::Again,
                    _ => ReadEnd::Drained,
                };
                (n, end)
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => {
                    (0, ReadEnd::Drained)
                }
                std::io::ErrorKind::Interrupted => continue,
                _ => (0, ReadEnd::Failed(link_error("read", &e))),
            },
        };
    }
}

/// A buffer with room for `keep` bytes and about `size` more: the oldest recycled allocation
/// that nothing references any more and is big enough, else a new one. When `RECYCLE`
/// buffers are all still in use, the oldest is given up on (freed when its messages go).
fn large_buffer(recycle: &mut VecDeque<BytesMut>, keep: usize, size: usize) -> Vec<u8> {
    let need = keep + size / 2;
    // `try_reclaim` is true only for a handle that is its allocation's sole owner (every
    // message sliced from it was dropped) and big enough; for others it is one atomic load.
    if let Some(i) = recycle.iter_mut().position(|h| h.try_reclaim(need)) {
        let v: Vec<u8> = recycle.remove(i).expect("position is in range").into();
        if v.capacity() >= need {
            tracing::trace!(capacity = v.capacity(), "receive buffer reused");
            return v;
        }
    } else if recycle.len() >= RECYCLE {
        recycle.pop_front();
    }
    Vec::with_capacity(keep + size)
}

/// Read until the socket is drained or the budget is spent. Returns bytes read and why it
/// stopped.
pub(crate) fn read_link(r: &mut Reader, buf: &mut BytesMut, wanted: usize) -> (usize, ReadEnd) {
    let mut total = 0;
    loop {
        if wanted >= LARGE_READ && wanted > buf.len() {
            // The rest of a large message, however little: straight into the buffer that will
            // hold it (the paths below would copy the whole partial body to a new buffer).
            r.after_large_body = true;
            let (n, end) = read_body(r, buf, wanted);
            return (total + n, end);
        }
        if r.after_large_body && buf.is_empty() {
            let (n, end) = read_peek(r, buf);
            return (total + n, end);
        }
        if r.read_size >= LARGE_READ && buf.len() <= r.read_size / 2 {
            // One burst per drive: the session consumes it before the next burst, which would
            // otherwise copy it again as "unconsumed". Each burst here copies the unconsumed
            // bytes once, so a large partial frame whose size is not known yet takes the
            // zeroed path below, whose allocations double with it.
            let (n, end) = read_large(r, buf);
            return (total + n, end);
        }
        ensure_spare(r, buf);
        let want = r.spare.len();
        match (&r.sock).read(&mut r.spare[..]) {
            Ok(0) => {
                return (
                    total,
                    ReadEnd::Failed(SessionError::LinkFailed("connection closed by peer".into())),
                );
            }
            Ok(n) => {
                // Contiguous with the buffer: joining is O(1).
                let got = r.spare.split_to(n);
                buf.unsplit(got);
                total += n;
                if n == want {
                    r.read_size = (r.read_size * 2).min(MAX_READ);
                } else if !r.peer_closed {
                    // A short read emptied the socket's receive queue; anything arriving later
                    // raises a new readiness event (saves one EAGAIN read per wake-up). When
                    // the peer also closed, read on to see the end of the stream.
                    return (total, ReadEnd::Drained);
                }
                if total >= READ_BUDGET {
                    return (total, ReadEnd::Yield);
                }
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => {
                    return (total, ReadEnd::Drained)
                }
                std::io::ErrorKind::Interrupted => continue,
                _ => return (total, ReadEnd::Failed(link_error("read", &e))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// Reads until `f` says stop; panics on a failure (a socket pair on loopback cannot fail).
    fn read_until(
        r: &mut Reader,
        buf: &mut BytesMut,
        wanted: usize,
        stop: impl Fn(usize, &BytesMut) -> bool,
    ) -> (usize, ReadEnd) {
        loop {
            let (n, end) = read_link(r, buf, wanted);
            if let ReadEnd::Failed(e) = &end {
                panic!("read failed: {e}");
            }
            if stop(n, buf) {
                return (n, end);
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// A connected loopback pair: a blocking sender and a non-blocking receiving end (what a
    /// link reads from).
    fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (rx, _) = l.accept().unwrap();
        rx.set_nonblocking(true).unwrap();
        (tx, rx)
    }

    /// The peer sends a small frame and closes right after a large body: the peek that takes
    /// the frame must not report "drained", or the close (whose readiness event is already
    /// spent) goes unseen and a lossless session waits forever (found by the starved repeat
    /// of the msgr2 stress test).
    #[test]
    fn a_close_right_after_the_peeked_frame_is_seen() {
        let (mut tx, rx) = socket_pair();
        tx.write_all(&[5u8; 100]).unwrap();
        drop(tx);
        std::thread::sleep(Duration::from_millis(50));
        let mut r = Reader::new(rx);
        r.after_large_body = true;
        // The poller reported the close with the data (what `Link::on_ready` records).
        r.peer_closed = true;
        let mut buf = BytesMut::new();
        let (n, end) = read_link(&mut r, &mut buf, 0);
        assert_eq!(n, 100);
        assert!(matches!(end, ReadEnd::Again), "{end:?}");
        let (n, end) = read_link(&mut r, &mut buf, 0);
        assert_eq!(n, 0);
        assert!(matches!(end, ReadEnd::Failed(_)), "{end:?}");
    }

    #[test]
    fn after_a_large_body_the_next_frame_start_is_read_alone() {
        let (mut tx, rx) = socket_pair();
        let body = 256 << 10;
        // The writer keeps its end open (returns it): an end of stream is not what is tested.
        let writer = std::thread::spawn(move || {
            tx.write_all(&vec![7u8; 2 * body]).unwrap();
            tx
        });
        let mut r = Reader::new(rx);
        // A link that has been streaming: bursts would be as large as they come.
        r.read_size = MAX_READ;
        // The decoder reserved exactly the body: it is read into that buffer, no further.
        let mut buf = BytesMut::with_capacity(body);
        read_until(&mut r, &mut buf, body, |_, b| b.len() >= body);
        assert_eq!(buf.len(), body);
        let message = buf.split().freeze();
        // At the boundary: one peek, however much is waiting.
        let (n, end) = read_until(&mut r, &mut buf, 0, |n, _| n > 0);
        assert!(n <= PEEK, "read {n} bytes after a large body");
        // In a fresh small buffer: growing it for the next body copies only what was peeked.
        let room = buf.capacity();
        assert!(room <= PEEK, "peeked into {room} bytes");
        assert_eq!(matches!(end, ReadEnd::Again), n == PEEK);
        // Then bursts again (the next frame turned out not to be large).
        let before = buf.len();
        read_until(&mut r, &mut buf, 0, |_, b| b.len() > before);
        let _tx = writer.join().unwrap();
        read_until(&mut r, &mut buf, 0, |_, b| b.len() == body);
        assert!(buf.iter().chain(message.iter()).all(|&b| b == 7));
    }
}
