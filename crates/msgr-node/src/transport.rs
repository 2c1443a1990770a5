//! The plug-in contract: what a transport (TCP, RDMA, in-process ...) gives the node driver.
//!
//! A [`Transport`] listens and dials; what it hands over is a [`Link`]: one ordered,
//! reliable byte stream to one peer. The driver never names a socket or a queue pair: it
//! registers a link with a worker's poller, reads what arrived into the session's buffer,
//! queues what the session produced and flushes it, and asks whether the link failed.
//!
//! Driving order on a worker, per link (the contract both sides keep):
//! 1. `register` once, when the link is adopted by a worker; readiness of the sources it
//!    registered under the given token, or a [`Notify::notify`], makes the worker drive it.
//! 2. Each drive: `on_ready` for the readiness that woke it (if any), `read` until it says
//!    [`ReadEnd::Drained`] / [`ReadEnd::Yield`] (never while the connection is paused by its
//!    throttle), `failure`, then `queue` + `flush` of the session's output.
//! 3. `close` once, when the session is done with it; the driver drops the link after the
//!    linger time `close` returned (RDMA keeps queue pairs until the peer saw the disconnect).
//!
//! Links are moved between threads only before `register` (an accepted or dialed link is
//! handed to its worker); afterwards only the owning worker touches them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msgr_core::session::SessionError;

/// How a link or transport asks its worker for a turn without a poller event (an in-process
/// peer wrote, a connection manager saw a disconnect). Cheap to clone; valid for the life of
/// the node.
#[derive(Clone)]
pub struct Notify {
    target: Arc<dyn Wake>,
    key: usize,
}

/// Where a [`Notify`] lands: a worker's inbox (implemented by the driver).
pub(crate) trait Wake: Send + Sync {
    fn wake(&self, key: usize);
}

impl Notify {
    pub(crate) fn new(target: Arc<dyn Wake>, key: usize) -> Self {
        Notify { target, key }
    }

    /// Make the worker drive this link (or poll this transport) soon. Callable from any thread.
    pub fn notify(&self) {
        self.target.wake(self.key);
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify").field("key", &self.key).finish()
    }
}

/// What a worker gives a link or transport when adopting it.
pub struct Registration<'a> {
    /// The worker's poller; register event sources under `token`.
    pub registry: &'a mio::Registry,
    /// The token the worker knows this link or transport by.
    pub token: mio::Token,
    /// Asks the same worker for a turn from anywhere.
    pub notify: Notify,
}

/// Readiness reported by the poller for a link's sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// A source can be read.
    pub readable: bool,
    /// A source can be written.
    pub writable: bool,
    /// The peer closed its end or the source reported an error: read until the end.
    pub closed: bool,
}

/// Why [`Link::read`] stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// Nothing more now; a poller event or notify comes when there is.
    Drained,
    /// Hand what was read to the session, then call `read` again in the same drive (a large
    /// payload was spliced in and more input is already waiting).
    Again,
    /// The read budget is spent: more is waiting; drive this link again soon (after others).
    Yield,
    /// The link is dead.
    Failed(SessionError),
}

/// One reliable, ordered byte stream to one peer. See the module docs for the driving order.
pub trait Link: Send + 'static {
    /// The transport's name ("tcp", "rdma", "mem"), for logs, counters and
    /// `Connection::transport`.
    fn transport(&self) -> &'static str;

    /// Register the link's event sources with the adopting worker's poller.
    fn register(&mut self, reg: &Registration<'_>) -> io::Result<()>;

    /// Remove them again (the link is being closed).
    fn deregister(&mut self, registry: &mio::Registry);

    /// The poller reported readiness for this link. `busy`: the worker is busy-polling (a
    /// link whose completions need re-arming may leave that until [`Link::arm`]).
    fn on_ready(&mut self, ready: Ready, busy: bool) {
        let _ = (ready, busy);
    }

    /// Append what arrived to `buf`. `wanted` is how many bytes the session said it needs in
    /// `buf` to finish the message body it is receiving (0: none in progress); a link may use
    /// it to read a large body straight into place. Returns the bytes appended and why it
    /// stopped.
    fn read(&mut self, buf: &mut BytesMut, wanted: usize) -> (usize, ReadEnd);

    /// A failure seen outside `read` / `flush` (an asynchronous disconnect, a completion with
    /// error). Checked once per drive.
    fn failure(&self) -> Option<SessionError> {
        None
    }

    /// Take a chunk of session output to send, in order.
    fn queue(&mut self, chunk: Bytes);

    /// Bytes queued and not yet handed to the kernel or device.
    fn queued(&self) -> usize;

    /// Hand as much of the queue as possible to the kernel / device now. Returns how many
    /// queued bytes left the queue.
    fn flush(&mut self) -> Result<usize, SessionError>;

    /// Busy-polling: look for progress without waiting for an event. True when something
    /// happened (the worker then drives the link).
    fn poll(&mut self) -> bool {
        false
    }

    /// True when [`Link::poll`] sees everything this link's poller sources would report (so a
    /// busy-polling worker may skip the poller for a while).
    fn polls_itself(&self) -> bool {
        false
    }

    /// The worker is about to sleep: make sure the next arrival raises a poller event. True
    /// when something arrived meanwhile (the worker drives the link instead of sleeping).
    fn arm(&mut self) -> bool {
        false
    }

    /// Fault injection: break the link now, as a network failure would (the next read, write
    /// or `failure` check reports it).
    fn inject_failure(&mut self);

    /// Begin closing (best effort: what was flushed may still reach the peer). Returns how long
    /// the driver must keep the object before dropping it.
    fn close(&mut self) -> Duration {
        Duration::ZERO
    }
}

/// A dial attempt's id, chosen by the driver, echoed in [`TransportEvent`]s.
pub type DialId = u64;

/// How a dial went wrong, to choose between retrying later and falling back to the next
/// transport.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DialError {
    /// True when this transport cannot reach the peer at all (no device on the route, address
    /// resolution failed, the peer does not listen on this transport): the driver tries the
    /// next transport at once. False: a transient failure, retried later with backoff.
    pub unreachable: bool,
    /// What failed, for the log and for the connection's fault.
    pub message: String,
}

impl DialError {
    /// This transport cannot reach the peer (see [`DialError::unreachable`]).
    pub fn unreachable(message: impl Into<String>) -> Self {
        DialError {
            unreachable: true,
            message: message.into(),
        }
    }
    /// A failure worth retrying on the same transport.
    pub fn transient(message: impl Into<String>) -> Self {
        DialError {
            unreachable: false,
            message: message.into(),
        }
    }
}

/// The result of [`Transport::dial`].
pub enum Dialing {
    /// Connected (or connecting, with the link reporting the outcome itself, as a
    /// non-blocking TCP connect does).
    Ready(Box<dyn Link>),
    /// The outcome comes later as [`TransportEvent::Dialed`] or [`TransportEvent::DialFailed`].
    Pending,
}

/// What a transport reports from [`Transport::poll`].
#[non_exhaustive]
pub enum TransportEvent {
    /// A peer connected to our listener.
    Accepted {
        /// The new link.
        link: Box<dyn Link>,
        /// The peer's socket address.
        peer: SocketAddr,
    },
    /// A dial that returned [`Dialing::Pending`] connected.
    Dialed {
        /// The id the driver gave [`Transport::dial`].
        dial: DialId,
        /// The new link.
        link: Box<dyn Link>,
    },
    /// A dial that returned [`Dialing::Pending`] failed.
    DialFailed {
        /// The id the driver gave [`Transport::dial`].
        dial: DialId,
        /// Why, and whether the next transport should be tried.
        error: DialError,
    },
    /// A peer connected but was closed at once: the transport ran out of resources for it
    /// (file descriptors). The transport logs why; the node counts it
    /// (`MessengerCounters::shed`).
    Shed {
        /// The peer whose connection was closed.
        peer: SocketAddr,
    },
}

/// A way to reach peers. Shared by the node's workers (`&self` everywhere); its own event
/// sources (listener, connection manager) are registered on worker 0, which calls
/// [`Transport::poll`] when they are ready or notified.
pub trait Transport: Send + Sync + 'static {
    /// "tcp", "rdma", "mem": the name the config's `transports` list uses.
    fn name(&self) -> &'static str;

    /// Listen on `addr` (port 0: any free port). Returns the bound address. Called once by
    /// `start`; an error here drops the transport from the node (or fails `start` when it was
    /// the only one), so say what to do about it.
    fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, String>;

    /// Register the transport's own event sources with worker 0's poller.
    fn register(&self, reg: &Registration<'_>) -> io::Result<()>;

    /// The sources are ready (or were notified): report what happened. `accepting`: false
    /// while the node shuts down (refuse new peers).
    fn poll(&self, accepting: bool, out: &mut Vec<TransportEvent>);

    /// Start connecting to `peer`. Called on any worker.
    fn dial(&self, peer: SocketAddr, dial: DialId) -> Result<Dialing, DialError>;

    /// Forget a pending dial (the node gave up on it).
    fn cancel(&self, dial: DialId) {
        let _ = dial;
    }

    /// Stop listening (shutdown). Links already handed out are closed by the driver.
    fn stop(&self) {}
}
