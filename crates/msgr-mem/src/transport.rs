//! [`MemTransport`]: the `mem` plug-in of the node driver, over a [`MemNetwork`].

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use msgr_node::{
    DialError, DialId, Dialing, Registration, Transport, TransportError, TransportEvent,
};

use crate::network::{Listener, MemNetwork};

/// In-process links to the nodes listening in the same [`MemNetwork`]. Dials complete at once
/// ([`Dialing::Ready`]); a peer that does not listen in the network is
/// [`DialError::unreachable`] (the node falls back to its next transport).
pub struct MemTransport {
    net: Arc<MemNetwork>,
    listener: Mutex<Option<Arc<Listener>>>,
}

impl std::fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl MemTransport {
    /// A transport over `net` (not listening until the node's `listen`).
    pub fn new(net: Arc<MemNetwork>) -> Arc<Self> {
        Arc::new(MemTransport {
            net,
            listener: Mutex::new(None),
        })
    }

    /// The network it listens and dials in.
    pub fn network(&self) -> &Arc<MemNetwork> {
        &self.net
    }

    /// The address we listen on (None before `listen` and after `stop`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.lock().as_ref().map(|l| l.addr)
    }
}

impl Transport for MemTransport {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        let mut slot = self.listener.lock();
        if let Some(l) = slot.as_ref() {
            return Err(format!("this mem transport already listens on {}", l.addr).into());
        }
        let l = self.net.listen(addr)?;
        let bound = l.addr;
        *slot = Some(l);
        Ok(bound)
    }

    fn register(&self, reg: &Registration<'_>) -> std::io::Result<()> {
        if let Some(l) = self.listener.lock().clone() {
            l.set_notify(reg.notify.clone());
        }
        Ok(())
    }

    fn poll(&self, accepting: bool, out: &mut Vec<TransportEvent>) {
        let Some(l) = self.listener.lock().clone() else {
            return;
        };
        for (link, peer) in l.take() {
            if accepting {
                out.push(TransportEvent::Accepted {
                    link: Box::new(link),
                    peer,
                });
            }
            // Not accepting: dropping the link closes it; the dialer reads the end.
        }
    }

    fn dial(&self, peer: SocketAddr, _dial: DialId) -> Result<Dialing, DialError> {
        let from = self.local_addr();
        let link = self.net.dial(from, peer)?;
        Ok(Dialing::Ready(Box::new(link)))
    }

    fn stop(&self) {
        if let Some(l) = self.listener.lock().take() {
            self.net.unlisten(&l);
        }
    }
}
