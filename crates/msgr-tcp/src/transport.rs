//! [`TcpTransport`]: a mio listener and non-blocking connects.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use parking_lot::Mutex;

use msgr_node::{DialError, DialId, Dialing, Registration, Transport, TransportEvent};

use crate::link::TcpLink;
use crate::options::TcpOptions;
use crate::reserve::Reserve;

/// The TCP transport: listens on one address, dials with non-blocking connects (a refused or
/// failed connect shows as the link failing, which the node retries with backoff).
pub struct TcpTransport {
    opts: TcpOptions,
    listener: Mutex<Option<TcpListener>>,
    /// A spare descriptor, given up to accept-and-close peers while descriptors run out.
    reserve: Mutex<Reserve>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("opts", &self.opts)
            .finish()
    }
}

impl TcpTransport {
    /// A transport whose links use `opts`; it listens once the node starts.
    pub fn new(opts: TcpOptions) -> Arc<TcpTransport> {
        Arc::new(TcpTransport {
            opts,
            listener: Mutex::new(None),
            reserve: Mutex::new(Reserve::new()),
        })
    }
}

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, String> {
        let l = TcpListener::bind(addr).map_err(|e| {
            format!("cannot listen on {addr}: {e} (is another daemon using the port? change `bind` in the config)")
        })?;
        let bound = l.local_addr().map_err(|e| format!("{addr}: {e}"))?;
        self.reserve.lock().refill();
        *self.listener.lock() = Some(l);
        Ok(bound)
    }

    fn register(&self, reg: &Registration<'_>) -> std::io::Result<()> {
        match self.listener.lock().as_mut() {
            Some(l) => reg.registry.register(l, reg.token, Interest::READABLE),
            None => Ok(()),
        }
    }

    fn poll(&self, accepting: bool, out: &mut Vec<TransportEvent>) {
        let guard = self.listener.lock();
        let Some(listener) = guard.as_ref() else {
            return;
        };
        // The listener is edge-triggered: accept until the backlog is empty, or a peer left in
        // it would wait for the next arrival.
        loop {
            match listener.accept() {
                Ok((sock, peer)) => {
                    self.reserve.lock().recovered();
                    if !accepting {
                        continue;
                    }
                    match TcpLink::new(sock, &self.opts) {
                        Ok(link) => out.push(TransportEvent::Accepted {
                            link: Box::new(link),
                            peer,
                        }),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "cannot set up an accepted socket")
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Gone before we took it (reset in the backlog): on to the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) if Reserve::is_exhaustion(&e) => {
                    // Out of descriptors: close what waits at once (each peer sees its
                    // connection closed, not a hang) until the backlog is empty.
                    let mut reserve = self.reserve.lock();
                    match reserve.shed_one(listener, &e) {
                        Some(peer) => out.push(TransportEvent::Shed { peer }),
                        None => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn dial(&self, peer: SocketAddr, _dial: DialId) -> Result<Dialing, DialError> {
        let sock = TcpStream::connect(peer).map_err(|e| {
            let msg = format!("connect to {peer}: {e}");
            match e.kind() {
                ErrorKind::NetworkUnreachable
                | ErrorKind::HostUnreachable
                | ErrorKind::AddrNotAvailable => DialError::unreachable(msg),
                _ => DialError::transient(msg),
            }
        })?;
        let link = TcpLink::new(sock, &self.opts)
            .map_err(|e| DialError::transient(format!("connect to {peer}: {e}")))?;
        Ok(Dialing::Ready(Box::new(link)))
    }

    fn stop(&self) {
        // Closing the descriptor takes it out of the poller.
        self.listener.lock().take();
    }
}
