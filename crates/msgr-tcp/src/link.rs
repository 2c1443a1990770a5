//! [`TcpLink`]: one socket as a [`msgr_node::Link`]: registered with a worker's poller,
//! read with [`crate::read`]'s strategies, written with vectored writes (small frames
//! coalesced into one buffer).

use std::collections::VecDeque;
use std::io::{IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use bytes::{Buf, Bytes, BytesMut};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::Interest;

use msgr_core::session::SessionError;
use msgr_node::{Link, ReadEnd, Ready, Registration};

use crate::options::TcpOptions;
use crate::read::{link_error, read_link, Reader};

/// Chunks per vectored write.
const MAX_IOV: usize = 64;
/// Queued chunks totalling at most this many bytes are copied into one write.
const COALESCE_MAX: usize = 8 << 10;

/// A connected socket and what its reader and writer keep. The socket is one descriptor,
/// owned by the reader (`reader.sock`): a session costs one descriptor, not two.
pub struct TcpLink {
    reader: Reader,
    wq: VecDeque<Bytes>,
    wq_bytes: usize,
    /// Set by fault injection: every later read or write fails.
    injected: bool,
}

impl std::fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpLink")
            .field("peer", &self.reader.sock.peer_addr().ok())
            .field("queued", &self.wq_bytes)
            .finish()
    }
}

fn injected() -> SessionError {
    SessionError::LinkFailed("injected socket failure".into())
}

impl TcpLink {
    /// Wrap a connected (or connecting) socket, tuned as `opts` says.
    pub fn new(sock: TcpStream, opts: &TcpOptions) -> std::io::Result<TcpLink> {
        if let Err(e) = sock.set_nodelay(opts.nodelay) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let s = socket2::SockRef::from(&sock);
        if let Some(n) = opts.send_buffer {
            let _ = s.set_send_buffer_size(n);
        }
        if let Some(n) = opts.recv_buffer {
            let _ = s.set_recv_buffer_size(n);
        }
        // The std stream takes the descriptor over (still non-blocking): std reads into
        // uninitialised memory (see `read`); mio only needs the raw descriptor to register.
        Ok(TcpLink {
            reader: Reader::new(std::net::TcpStream::from(sock)),
            wq: VecDeque::new(),
            wq_bytes: 0,
            injected: false,
        })
    }
}

impl Link for TcpLink {
    fn transport(&self) -> &'static str {
        "tcp"
    }

    fn register(&mut self, reg: &Registration<'_>) -> std::io::Result<()> {
        reg.registry.register(
            &mut SourceFd(&self.reader.sock.as_raw_fd()),
            reg.token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.reader.sock.as_raw_fd()));
    }

    fn on_ready(&mut self, ready: Ready, _busy: bool) {
        if ready.closed {
            self.reader.peer_closed = true;
        }
    }

    fn read(&mut self, buf: &mut BytesMut, wanted: usize) -> (usize, ReadEnd) {
        if self.injected {
            return (0, ReadEnd::Failed(injected()));
        }
        read_link(&mut self.reader, buf, wanted)
    }

    fn queue(&mut self, chunk: Bytes) {
        self.wq_bytes += chunk.len();
        self.wq.push_back(chunk);
    }

    fn queued(&self) -> usize {
        self.wq_bytes
    }

    fn flush(&mut self) -> Result<usize, SessionError> {
        if self.injected {
            return Err(injected());
        }
        write_link(self)
    }

    fn inject_failure(&mut self) {
        self.injected = true;
        let _ = self.reader.sock.shutdown(Shutdown::Both);
    }

    fn close(&mut self) -> std::time::Duration {
        let _ = self.reader.sock.shutdown(Shutdown::Both);
        std::time::Duration::ZERO
    }
}

thread_local! {
    /// Buffer for coalescing small writes, one per worker thread rather than one per link
    /// (8 KiB per idle connection otherwise).
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(COALESCE_MAX));
}

/// Write queued chunks with vectored writes until done or the socket would block.
fn write_link(link: &mut TcpLink) -> Result<usize, SessionError> {
    let mut total = 0;
    while !link.wq.is_empty() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        let mut bytes = 0;
        for c in link.wq.iter().take(MAX_IOV) {
            iov[n] = IoSlice::new(c);
            n += 1;
            bytes += c.len();
        }
        // Small frames (header, front, footer, ACK ...) are cheaper copied into one buffer than
        // handed to the kernel as many tiny iovecs; payloads go vectored, uncopied.
        let result = if n > 1 && bytes <= COALESCE_MAX {
            SCRATCH.with_borrow_mut(|scratch| {
                scratch.clear();
                for c in &iov[..n] {
                    scratch.extend_from_slice(c);
                }
                link.reader.sock.write(scratch)
            })
        } else {
            link.reader.sock.write_vectored(&iov[..n])
        };
        match result {
            Ok(0) => return Err(SessionError::LinkFailed("socket wrote nothing".into())),
            Ok(mut w) => {
                total += w;
                link.wq_bytes -= w;
                while w > 0 {
                    let front = link.wq.front_mut().expect("wrote more than queued");
                    if front.len() <= w {
                        w -= front.len();
                        link.wq.pop_front();
                    } else {
                        front.advance(w);
                        w = 0;
                    }
                }
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => break,
                std::io::ErrorKind::Interrupted => continue,
                _ => return Err(link_error("write", &e)),
            },
        }
    }
    Ok(total)
}
