//! [`Reserve`]: a spare descriptor for running out of them at `accept`.
//!
//! At EMFILE / ENFILE the kernel keeps new connections in the listener's backlog, where their
//! peers wait for a banner that never comes. With one descriptor kept in reserve the listener
//! can still answer them: give the spare up, accept one peer, close it at once (the peer sees
//! its connection closed and may retry elsewhere or later), take the spare back. Sessions
//! already open are untouched, and accepting resumes by itself once descriptors free up.

use std::fs::File;
use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;

/// EMFILE (this process) and ENFILE (the whole system): out of descriptors.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// The spare descriptor and the state of an exhaustion episode.
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    spare: Option<File>,
    /// Peers closed at once since descriptors ran out; None while they have not.
    shed: Option<u64>,
}

impl Reserve {
    pub fn new() -> Self {
        Reserve::default()
    }

    /// True for the errors that mean "out of descriptors".
    pub fn is_exhaustion(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
    }

    /// Take a spare descriptor if none is held (it fails quietly while none is free).
    pub fn refill(&mut self) {
        if self.spare.is_none() {
            self.spare = File::open("/dev/null").ok();
        }
    }

    /// `accept` failed with `e` (an exhaustion): accept the next waiting peer on the spare
    /// descriptor and close it at once. Returns the peer; None when the backlog is empty or
    /// no spare could be had (the next arrival tries again).
    pub fn shed_one(&mut self, listener: &TcpListener, e: &io::Error) -> Option<SocketAddr> {
        if self.shed.is_none() {
            tracing::warn!(
                error = %e,
                "out of file descriptors: closing new connections at once until some free up \
                 (open sessions keep working); each TCP session holds one descriptor: raise the \
                 limit (`ulimit -n`, systemd LimitNOFILE) or set `max_connections` below it"
            );
            self.shed = Some(0);
        }
        self.refill();
        drop(self.spare.take()?);
        // The peer's socket is closed before the spare is taken back: the other order would
        // leave no spare (and a free descriptor for the next peer to wait on).
        let peer = listener.accept().ok().map(|(sock, peer)| {
            drop(sock);
            peer
        });
        self.refill();
        let peer = peer?;
        if let Some(n) = self.shed.as_mut() {
            *n += 1;
        }
        tracing::debug!(%peer, "out of file descriptors: closed a new connection at once");
        Some(peer)
    }

    /// An `accept` succeeded: an exhaustion episode, if any, is over.
    pub fn recovered(&mut self) {
        if let Some(n) = self.shed.take() {
            tracing::info!(
                closed = n,
                "file descriptors available again: accepting new connections \
                 ({n} closed at once meanwhile)"
            );
            self.refill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_errors_are_recognised() {
        assert!(Reserve::is_exhaustion(&io::Error::from_raw_os_error(
            EMFILE
        )));
        assert!(Reserve::is_exhaustion(&io::Error::from_raw_os_error(
            ENFILE
        )));
        assert!(!Reserve::is_exhaustion(&io::Error::from(
            io::ErrorKind::WouldBlock
        )));
    }

    /// With the spare descriptor, a waiting peer is accepted and closed: it reads EOF at once.
    #[test]
    fn shedding_closes_a_waiting_peer() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut r = Reserve::new();
        r.refill();
        let e = io::Error::from_raw_os_error(EMFILE);
        // The connection may take a moment to reach the backlog of a non-blocking listener.
        let shed = (0..1000).find_map(|_| {
            r.shed_one(&listener, &e).or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                None
            })
        });
        assert_eq!(shed, Some(peer.local_addr().unwrap()));
        assert!(r.spare.is_some(), "the spare descriptor is taken back");
        peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 8];
        match peer.read(&mut b) {
            Ok(n) => assert_eq!(n, 0, "a shed peer reads nothing but EOF"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }
        assert_eq!(r.shed, Some(1));
        r.recovered();
        assert_eq!(r.shed, None);
    }
}
