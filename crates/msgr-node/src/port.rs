//! The way into one worker: its command queue and its poller's waker.
//!
//! Application threads, dispatchers and other workers hand work to a worker as a [`Cmd`];
//! the first command of a batch wakes the worker (unless it is the calling thread, which
//! drains its queue before it polls again).

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::connection::NodeConnection;
use crate::transport::{Link, Wake};

/// Work handed to a worker.
pub(crate) enum Cmd {
    /// A link to run for `conn` (dialed for it, or accepted: then `conn` is a temporary
    /// connection until the peer's connect is resolved).
    Adopt {
        link: Box<dyn Link>,
        conn: Arc<NodeConnection>,
        outgoing: bool,
    },
    /// Open a link for this connection (first connect or reconnect).
    Dial(Arc<NodeConnection>),
    /// Run the session and write, for the link `token` (if still generation `gen`).
    Drive { token: usize, gen: u64 },
    /// Close the link `token` (if still generation `gen`) without touching its session.
    Close { token: usize, gen: u64 },
    /// Break the link `token` as a network fault would (tests).
    Fault { token: usize, gen: u64 },
    /// A link or transport asked for a turn ([`crate::Notify`]); the key is its token.
    Ready(usize),
    /// Run this connection's dispatch (events queued by another thread, throttle released).
    Dispatch(Arc<NodeConnection>),
    /// Deliver loopback messages.
    Loopback,
    /// Stop accepting, flush, fail what is left, exit.
    Shutdown,
}

thread_local! {
    /// (node id, worker index) of the worker running on this thread, if any.
    static CURRENT: Cell<(u64, usize)> = const { Cell::new((u64::MAX, 0)) };
}

/// Mark this thread as running worker `idx` of node `node` (or none, `u64::MAX`).
pub(crate) fn set_current(node: u64, idx: usize) {
    CURRENT.with(|c| c.set((node, idx)));
}

/// One worker's inbox.
pub(crate) struct Port {
    node: u64,
    idx: usize,
    cmds: Mutex<Vec<Cmd>>,
    waker: OnceLock<mio::Waker>,
}

impl Port {
    pub fn new(node: u64, idx: usize) -> Self {
        Port {
            node,
            idx,
            cmds: Mutex::new(Vec::new()),
            waker: OnceLock::new(),
        }
    }

    pub fn set_waker(&self, w: mio::Waker) {
        let _ = self.waker.set(w);
    }

    /// Queue a command and wake the worker if needed.
    pub fn send(&self, cmd: Cmd) {
        let was_empty = {
            let mut q = self.cmds.lock();
            let e = q.is_empty();
            q.push(cmd);
            e
        };
        let on_it = CURRENT.with(|c| c.get() == (self.node, self.idx));
        if was_empty && !on_it {
            if let Some(w) = self.waker.get() {
                if let Err(e) = w.wake() {
                    tracing::error!(error = %e, "cannot wake a worker");
                }
            }
        }
    }

    /// Move every queued command into `into` (which must be empty).
    pub fn take(&self, into: &mut Vec<Cmd>) {
        std::mem::swap(&mut *self.cmds.lock(), into);
    }

    pub fn has_cmds(&self) -> bool {
        !self.cmds.lock().is_empty()
    }
}

impl Wake for Port {
    fn wake(&self, key: usize) {
        self.send(Cmd::Ready(key));
    }
}
