//! [`RdmaLink`]: one established queue pair ([`crate::link::Link`]) as a link of the node
//! driver ([`msgr_node::Link`]).
//!
//! The worker that adopts it polls its completion channel fd; completions are drained on
//! readiness (or by busy-polling, [`msgr_node::Link::poll`]), received bytes go into the
//! session's buffer, the session's output is queued and flushed as credits allow. An rdma_cm
//! DISCONNECTED, seen by the transport on worker 0, reaches the owning worker through
//! [`LinkSignal`]: a flag the link checks in `failure`, and a notify that makes the worker
//! drive it.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mio::unix::SourceFd;
use mio::Interest;
use parking_lot::Mutex;

use msgr_core::session::SessionError;
use msgr_node::{Notify, ReadEnd, Ready, Registration};

use crate::counters::{LinkSlot, RdmaCounters, Stats};
use crate::link::Link;

/// How long a closed link's queue pair is kept: until the peer has seen the disconnect (and
/// finished any READ of a payload we exposed), so nothing it still does hits freed memory.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What rdma_cm (on worker 0) tells the link's own worker: the peer disconnected.
#[derive(Default)]
pub(crate) struct LinkSignal {
    disconnected: AtomicBool,
    /// The owning worker's way to drive the link; set at `register`, cleared at `close`.
    notify: Mutex<Option<Notify>>,
}

impl LinkSignal {
    /// rdma_cm reported DISCONNECTED: flag it, then make the owning worker look.
    pub fn disconnect(&self) {
        self.disconnected.store(true, Ordering::Release);
        if let Some(n) = self.notify.lock().as_ref() {
            n.notify();
        }
    }

    fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Acquire)
    }
}

/// How many bytes to read when the session wants `wanted` bytes in a buffer holding `have`:
/// within a message body just up to its end (after a spliced READ payload that is the footer,
/// which fits the buffer's spare room; more could make the buffer grow and copy the payload),
/// else everything.
fn read_limit(have: usize, wanted: usize) -> usize {
    if wanted > have {
        wanted - have
    } else {
        usize::MAX
    }
}

/// An established RDMA connection, driven by a node worker.
pub struct RdmaLink {
    link: Link,
    signal: Arc<LinkSignal>,
    stats: Arc<Stats>,
    slot: Arc<LinkSlot>,
    /// The completion channel fd (registered with the worker's poller).
    fd: RawFd,
    /// Counters handed over to the transport's past (closed or dropped).
    retired: bool,
}

impl RdmaLink {
    pub(crate) fn new(link: Link, signal: Arc<LinkSignal>, stats: &Arc<Stats>) -> RdmaLink {
        RdmaLink {
            fd: link.fd(),
            link,
            signal,
            slot: stats.slot(),
            stats: Arc::clone(stats),
            retired: false,
        }
    }

    /// The queue pair's byte stream (counters, credits, the rdma_cm id).
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Make the link's counters visible to [`crate::RdmaTransport::counters`].
    fn publish(&self) {
        if !self.retired {
            *self.slot.lock() = RdmaCounters::of_link(&self.link);
        }
    }

    /// Hand the link's totals to the transport's past; it no longer counts as live.
    fn retire(&mut self) {
        if !self.retired {
            self.publish();
            self.retired = true;
            self.stats.retire(&self.slot);
        }
    }

    fn failed(why: impl Into<String>) -> SessionError {
        SessionError::LinkFailed(why.into())
    }
}

impl msgr_node::Link for RdmaLink {
    fn transport(&self) -> &'static str {
        "rdma"
    }

    fn register(&mut self, reg: &Registration<'_>) -> io::Result<()> {
        reg.registry
            .register(&mut SourceFd(&self.fd), reg.token, Interest::READABLE)?;
        *self.signal.notify.lock() = Some(reg.notify.clone());
        Ok(())
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.fd));
    }

    fn on_ready(&mut self, _ready: Ready, busy: bool) {
        // While busy-polling the CQ stays unarmed (no event per completion): the worker re-arms
        // every link through `arm` when its busy window ends, before it blocks in the poller.
        let r = if busy {
            self.link.on_readable_unarmed()
        } else {
            self.link.on_readable()
        };
        if let Err(e) = r {
            self.link.fail(format!("completion queue: {e}"));
        }
        self.publish();
    }

    fn read(&mut self, buf: &mut BytesMut, wanted: usize) -> (usize, ReadEnd) {
        let r = self.link.read_into(buf, read_limit(buf.len(), wanted));
        self.publish();
        match r {
            // A READ payload (or the end of the wanted body) ended the read and more is
            // waiting: let the session decode first, so the rest is not appended behind it.
            Ok(n) if n > 0 && self.link.has_input() => (n, ReadEnd::Again),
            Ok(n) => (n, ReadEnd::Drained),
            Err(e) => (0, ReadEnd::Failed(Self::failed(e.to_string()))),
        }
    }

    fn failure(&self) -> Option<SessionError> {
        // The disconnect says more than the flushed work requests it causes.
        if self.signal.is_disconnected() {
            return Some(Self::failed(
                "RDMA peer disconnected (rdma_cm DISCONNECTED)",
            ));
        }
        self.link.failure().map(|f| Self::failed(f.0.clone()))
    }

    fn queue(&mut self, chunk: Bytes) {
        self.link.queue(chunk);
    }

    /// The stream bytes waiting, plus one when credits or a READ done are due: the driver
    /// flushes only a link with something queued, and a receiver with no output of its own
    /// must still return credits, or its peer stalls.
    fn queued(&self) -> usize {
        self.link.queued_bytes() + usize::from(self.link.control_due())
    }

    fn flush(&mut self) -> Result<usize, SessionError> {
        let before = self.link.counters.bytes_out;
        let r = self.link.flush();
        self.publish();
        r.map_err(|e| Self::failed(e.to_string()))?;
        if let Some(f) = self.link.failure() {
            return Err(Self::failed(f.0.clone()));
        }
        Ok((self.link.counters.bytes_out - before) as usize)
    }

    fn poll(&mut self) -> bool {
        match self.link.poll_completions() {
            Ok(0) => false,
            Ok(_) => {
                self.publish();
                true
            }
            Err(e) => {
                self.link.fail(format!("completion queue: {e}"));
                true
            }
        }
    }

    fn polls_itself(&self) -> bool {
        true
    }

    fn arm(&mut self) -> bool {
        if self.link.is_armed() {
            return false;
        }
        match self.link.arm() {
            Ok(n) => n > 0,
            Err(e) => {
                self.link
                    .fail(format!("cannot arm the completion queue: {e}"));
                true
            }
        }
    }

    fn inject_failure(&mut self) {
        if let Err(e) = self.link.force_error() {
            self.link.fail(format!(
                "injected failure (the QP refused the error state: {e})"
            ));
        }
        // The flushed receives fail the link now, as a real QP error would.
        let _ = self.link.poll_completions();
        self.publish();
    }

    fn close(&mut self) -> Duration {
        let _ = self.link.flush();
        self.link.disconnect();
        *self.signal.notify.lock() = None;
        self.retire();
        CLOSE_LINGER
    }
}

impl Drop for RdmaLink {
    fn drop(&mut self) {
        self.retire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end_of_the_wanted_body() {
        assert_eq!(read_limit(0, 0), usize::MAX, "no body in progress");
        assert_eq!(read_limit(100, 4096), 3996);
        assert_eq!(read_limit(4096, 4096), usize::MAX, "the body is complete");
        assert_eq!(read_limit(5000, 4096), usize::MAX);
    }

    #[test]
    fn a_disconnect_before_register_is_kept() {
        let s = LinkSignal::default();
        assert!(!s.is_disconnected());
        s.disconnect();
        assert!(
            s.is_disconnected(),
            "no notify yet: the flag alone carries it"
        );
    }
}
