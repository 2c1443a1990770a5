//! [`MemLink`]: one end of an in-process link. Both ends share a [`Wire`]: per direction a
//! queue of delivered bytes under the wire's mutex, the reader's [`Notify`], and whether the
//! link is broken. Bytes a link flushes go through its [`MemNetwork`] (straight to the peer's
//! queue, or in flight until the simulation delivers them).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;

use msgr_core::session::SessionError;
use msgr_node::{Link, Notify, ReadEnd, Registration};

use crate::network::MemNetwork;

/// Bytes one `read` hands to the session at most (more when the session waits for a larger
/// message body); more waiting: [`ReadEnd::Yield`].
pub const READ_BUDGET: usize = 256 << 10;

/// Why a wire broke, and who broke it (the side, or the network).
#[derive(Clone, Copy, Debug)]
struct Broken {
    by: Option<usize>,
    why: &'static str,
}

/// Bytes delivered to one side and not read yet.
#[derive(Default)]
struct Inbox {
    data: VecDeque<Bytes>,
    len: usize,
    /// The peer closed its end: after `data`, the end of the stream.
    fin: bool,
}

#[derive(Default)]
struct WireState {
    /// `inbox[i]`: what side `i` reads.
    inbox: [Inbox; 2],
    notify: [Option<Notify>; 2],
    /// Side `i` closed its end (what still arrives for it is dropped).
    closed: [bool; 2],
    broken: Option<Broken>,
}

/// The shared middle of a link. Side 0 dialed, side 1 accepted.
pub(crate) struct Wire {
    pub id: u64,
    /// The node addresses of the ends: the dialer's listening address (if it listens), the
    /// listener's.
    pub ends: [Option<SocketAddr>; 2],
    st: Mutex<WireState>,
}

impl Wire {
    pub fn new(id: u64, ends: [Option<SocketAddr>; 2]) -> Arc<Wire> {
        Arc::new(Wire {
            id,
            ends,
            st: Mutex::new(WireState::default()),
        })
    }

    /// Bytes (or, `None`, the end of the stream) arrive for side `to`.
    pub fn arrive(&self, to: usize, data: Option<Bytes>) {
        let notify = {
            let mut st = self.st.lock();
            if st.broken.is_some() || st.closed[to] {
                return;
            }
            let inbox = &mut st.inbox[to];
            match data {
                Some(b) => {
                    inbox.len += b.len();
                    inbox.data.push_back(b);
                }
                None => inbox.fin = true,
            }
            st.notify[to].clone()
        };
        if let Some(n) = notify {
            n.notify();
        }
    }

    /// Break both directions now: what was not read is lost, both ends fail (and are
    /// notified). `by`: the side that broke it, None: the network. False if it was already
    /// broken.
    pub fn break_link(&self, by: Option<usize>, why: &'static str) -> bool {
        let notify = {
            let mut st = self.st.lock();
            if st.broken.is_some() || st.closed == [true, true] {
                return false;
            }
            st.broken = Some(Broken { by, why });
            st.inbox = Default::default();
            st.notify.clone()
        };
        for n in notify.into_iter().flatten() {
            n.notify();
        }
        true
    }

    /// Whether side `from` may send: Err when broken or closed by `from` itself; Ok(false)
    /// when the peer closed its end (the bytes are dropped, as a socket's would be).
    fn can_send(&self, from: usize) -> Result<bool, SessionError> {
        let st = self.st.lock();
        if let Some(b) = st.broken {
            return Err(b.error(from));
        }
        if st.closed[from] {
            return Err(SessionError::LinkFailed("mem link already closed".into()));
        }
        Ok(!st.closed[1 - from])
    }

    fn failure(&self, side: usize) -> Option<SessionError> {
        self.st.lock().broken.map(|b| b.error(side))
    }

    fn set_notify(&self, side: usize, notify: Option<Notify>) {
        let pending = {
            let mut st = self.st.lock();
            st.notify[side] = notify.clone();
            st.broken.is_some() || st.inbox[side].len > 0 || st.inbox[side].fin
        };
        if let (true, Some(n)) = (pending, notify) {
            n.notify();
        }
    }

    /// Move up to `budget` bytes for `side` into `buf`.
    fn take(&self, side: usize, buf: &mut BytesMut, budget: usize) -> (usize, ReadEnd) {
        let (n, end, again) = {
            let mut st = self.st.lock();
            if let Some(b) = st.broken {
                return (0, ReadEnd::Failed(b.error(side)));
            }
            let inbox = &mut st.inbox[side];
            let mut n = 0;
            while n < budget {
                let Some(front) = inbox.data.front_mut() else {
                    break;
                };
                let k = front.len().min(budget - n);
                buf.extend_from_slice(&front[..k]);
                if k == front.len() {
                    inbox.data.pop_front();
                } else {
                    front.advance(k);
                }
                n += k;
            }
            inbox.len -= n;
            if inbox.len > 0 {
                // More is waiting: ask for another turn ourselves too, so a simulation that
                // steps until no command is queued sees there is work left.
                (n, ReadEnd::Yield, st.notify[side].clone())
            } else if inbox.fin {
                let e = SessionError::LinkFailed("mem peer closed the link".into());
                (n, ReadEnd::Failed(e), None)
            } else {
                (n, ReadEnd::Drained, None)
            }
        };
        if let Some(a) = again {
            a.notify();
        }
        (n, end)
    }

    /// Side `side` closes its end. Returns whether the peer must be sent the end of the stream.
    fn close(&self, side: usize) -> bool {
        let mut st = self.st.lock();
        if st.closed[side] {
            return false;
        }
        st.closed[side] = true;
        st.notify[side] = None;
        st.inbox[side] = Inbox::default();
        st.broken.is_none() && !st.closed[1 - side]
    }

    /// Both ends closed or the link broke: nothing will flow again.
    pub fn is_dead(&self) -> bool {
        let st = self.st.lock();
        st.broken.is_some() || st.closed == [true, true]
    }
}

impl Broken {
    /// The error side `side` sees.
    fn error(self, side: usize) -> SessionError {
        let text = match self.by {
            Some(s) if s == side => format!("mem link broken: {}", self.why),
            Some(_) => format!("mem peer closed the link: {}", self.why),
            None => format!("mem link broken by the network: {}", self.why),
        };
        SessionError::LinkFailed(text)
    }
}

/// One end of an in-process link (see the module docs). Closing it (or dropping it) lets what
/// was flushed reach the peer, which then reads the end of the stream; [`Link::inject_failure`]
/// breaks both directions at once.
pub struct MemLink {
    net: Arc<MemNetwork>,
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
    pub(crate) fn new(net: Arc<MemNetwork>, wire: Arc<Wire>, side: usize) -> MemLink {
        MemLink {
            net,
            wire,
            side,
            out: VecDeque::new(),
            queued: 0,
            closed: false,
        }
    }

    /// The two ends of a new link between `a` and `b` (node addresses, for partitions and
    /// kills), outside any listener: for unit tests of code that takes a [`Link`].
    pub fn pair(
        net: &Arc<MemNetwork>,
        a: Option<SocketAddr>,
        b: Option<SocketAddr>,
    ) -> (MemLink, MemLink) {
        let wire = net.new_wire([a, b]);
        (
            MemLink::new(net.clone(), wire.clone(), 0),
            MemLink::new(net.clone(), wire, 1),
        )
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
                .carry(&self.wire, self.side, chunks.into_iter().map(Some));
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
                self.net.carry(&self.wire, self.side, std::iter::once(None));
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
