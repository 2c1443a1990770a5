//! [`MemLink`]: one end of an in-process link. Both ends share a [`Wire`] (see there); bytes
//! a link flushes go through its [`Carrier`], the link's [`crate::MemNetwork`] (straight to
//! the peer's queue, or in flight until the simulation delivers them). [`MemLink::pair`],
//! which makes a wire in a network, is with the network (`network.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use msgr_core::session::SessionError;
use msgr_node::{Link, ReadEnd, Registration};

use crate::wire::{Carrier, Wire};

/// Bytes one `read` hands to the session at most (more when the session waits for a larger
/// message body); more waiting: [`ReadEnd::Yield`].
pub const READ_BUDGET: usize = 256 << 10;

/// One end of an in-process link (see the module docs). Closing it (or dropping it) lets what
/// was flushed reach the peer, which then reads the end of the stream; [`Link::inject_failure`]
/// breaks both directions at once.
pub struct MemLink {
    /// The network the link belongs to.
    net: Arc<dyn Carrier>,
    wire: Arc<Wire>,
    side: usize,
    out: VecDeque<Bytes>,
    queued: usize,
    closed: bool,
}

impl std::fmt::Debug for MemLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemLink")
            .field("wire", &self.wire.id)
            .field("side", &self.side)
            .field("queued", &self.queued)
            .finish()
    }
}

impl MemLink {
    /// Side `side` of `wire` (0: the dialer), flushing through `net`.
    pub(crate) fn new(net: Arc<dyn Carrier>, wire: Arc<Wire>, side: usize) -> MemLink {
        MemLink {
            net,
            wire,
            side,
            out: VecDeque::new(),
            queued: 0,
            closed: false,
        }
    }

    /// The network-wide id of this link (both ends share it).
    pub fn id(&self) -> u64 {
        self.wire.id
    }
}

impl Link for MemLink {
    fn transport(&self) -> &'static str {
        "mem"
    }

    fn register(&mut self, reg: &Registration<'_>) -> std::io::Result<()> {
        self.wire.set_notify(self.side, Some(reg.notify.clone()));
        Ok(())
    }

    fn deregister(&mut self, _registry: &mio::Registry) {
        self.wire.set_notify(self.side, None);
    }

    fn read(&mut self, buf: &mut BytesMut, wanted: usize) -> (usize, ReadEnd) {
        if self.closed {
            let e = SessionError::LinkFailed("mem link already closed".into());
            return (0, ReadEnd::Failed(e));
        }
        self.wire.take(self.side, buf, READ_BUDGET.max(wanted))
    }

    fn failure(&self) -> Option<SessionError> {
        self.wire.failure(self.side)
    }

    fn queue(&mut self, chunk: Bytes) {
        self.queued += chunk.len();
        self.out.push_back(chunk);
    }

    fn queued(&self) -> usize {
        self.queued
    }

    fn flush(&mut self) -> Result<usize, SessionError> {
        let n = self.queued;
        if n == 0 {
            return Ok(0);
        }
        let deliver = self.wire.can_send(self.side)?;
        self.queued = 0;
        let chunks = std::mem::take(&mut self.out);
        if deliver {
            self.net
                .carry(&self.wire, self.side, &mut chunks.into_iter().map(Some));
        }
        Ok(n)
    }

    fn inject_failure(&mut self) {
        self.wire.break_link(Some(self.side), "injected failure");
    }

    fn close(&mut self) -> Duration {
        if !self.closed {
            self.closed = true;
            self.out.clear();
            self.queued = 0;
            if self.wire.close(self.side) {
                self.net
                    .carry(&self.wire, self.side, &mut std::iter::once(None));
            }
        }
        Duration::ZERO
    }
}

impl Drop for MemLink {
    fn drop(&mut self) {
        self.close();
    }
}
