//! [`Wire`]: the shared middle of an in-process link, below both [`crate::MemLink`] (its two
//! ends) and [`crate::MemNetwork`] (which makes wires, carries bytes between their sides and
//! breaks them): per direction a queue of delivered bytes under the wire's mutex, the
//! reader's [`Notify`], and whether the link is broken. [`Carrier`] is what the network is to
//! a link: where its flushed bytes go.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;

use msgr_core::session::SessionError;
use msgr_node::{Notify, ReadEnd};

/// Carries the bytes one side of a wire sends to the other side: the network the wire belongs
/// to (straight to the peer's queue, or in flight until the simulation delivers them).
pub(crate) trait Carrier: Send + Sync {
    /// Side `from` of `wire` sends `segs` (bytes, or `None` for the end of the stream).
    fn carry(&self, wire: &Arc<Wire>, from: usize, segs: &mut dyn Iterator<Item = Option<Bytes>>);
}

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

/// A wire's mutable half, under its mutex.
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
    /// Unique in its network (the id of the link, [`crate::MemLink::id`]).
    pub id: u64,
    /// The node addresses of the ends: the dialer's listening address (if it listens), the
    /// listener's.
    pub ends: [Option<SocketAddr>; 2],
    st: Mutex<WireState>,
}

impl Wire {
    /// A wire with nothing delivered and neither side closed.
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
    pub fn can_send(&self, from: usize) -> Result<bool, SessionError> {
        let st = self.st.lock();
        if let Some(b) = st.broken {
            return Err(b.error(from));
        }
        if st.closed[from] {
            return Err(SessionError::LinkFailed("mem link already closed".into()));
        }
        Ok(!st.closed[1 - from])
    }

    /// The error side `side` sees if the wire is broken.
    pub fn failure(&self, side: usize) -> Option<SessionError> {
        self.st.lock().broken.map(|b| b.error(side))
    }

    /// Who to notify when something arrives for `side` (None: nobody); notified now if
    /// something waits already.
    pub fn set_notify(&self, side: usize, notify: Option<Notify>) {
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
    pub fn take(&self, side: usize, buf: &mut BytesMut, budget: usize) -> (usize, ReadEnd) {
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
    pub fn close(&self, side: usize) -> bool {
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
