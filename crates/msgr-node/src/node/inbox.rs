//! [`Inbox`]: a connection's ordered queue of session events waiting for the dispatcher, and the
//! throttled loop that hands them over.
//!
//! A transport moves each event the application must see into the inbox while it holds the
//! connection's lock, then calls [`Inbox::drain`] after unlocking, so dispatcher callbacks never
//! run under a lock. Events are delivered in order and by one thread at a time. A message is
//! handed over only when its policy throttle has budget; otherwise the inbox is `paused`: the
//! transport stops reading from the peer (back-pressure) until the throttle's wake-up calls the
//! transport, which calls [`Inbox::resume`] and drains again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::node::counters::CounterPair;
use crate::node::{Dispatchers, PolicyThrottle};
use msgr_core::api::ConnectionRef;
use msgr_core::session::SessionEvent;

/// Events of one connection waiting for the dispatcher. See the module docs.
#[derive(Debug, Default)]
pub struct Inbox {
    events: Mutex<VecDeque<SessionEvent>>,
    /// Held while events are handed over, so only one thread dispatches (keeps the order).
    dispatching: Mutex<()>,
    /// A message waits for throttle budget.
    paused: AtomicBool,
}

impl Inbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue an event behind those already waiting.
    pub fn push(&self, ev: SessionEvent) {
        self.events.lock().push_back(ev);
    }

    /// A message waits for throttle budget: the transport must not read more from the peer.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Throttle budget came back; the caller then arranges for [`Inbox::drain`] to run again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }

    /// Hand waiting events to `dispatchers`, in order; returns at once if another thread is
    /// dispatching, and stops (paused) when a message finds `throttle` full. `waker` makes the
    /// callback the throttle runs when budget is released (it must call [`Inbox::resume`] and
    /// drain again, on a thread of the transport's choosing). Holds no lock while a dispatcher
    /// runs.
    pub fn drain<W>(
        &self,
        conn: &ConnectionRef,
        dispatchers: &Dispatchers,
        throttle: Option<&PolicyThrottle>,
        counters: &CounterPair,
        waker: impl Fn() -> W,
    ) where
        W: FnOnce() + Send + 'static,
    {
        // The dispatcher list and whether its first one keeps throttle budget, once per drain
        // rather than once per message (each look takes the list's lock).
        let list = dispatchers.snapshot();
        let first = list.first();
        let defer = first.is_some_and(|d| d.defer_release());
        loop {
            let Some(order) = self.dispatching.try_lock() else {
                return;
            };
            loop {
                if self.is_paused() {
                    return;
                }
                let ev = {
                    let mut events = self.events.lock();
                    let Some(front) = events.front() else { break };
                    if let (SessionEvent::Message(m), Some(t)) = (front, throttle) {
                        // Paused is set before asking, so a wake-up racing with us always wins.
                        self.paused.store(true, Ordering::Release);
                        if t.try_acquire_or_wait(m.payload_len() as u64, waker()) {
                            self.paused.store(false, Ordering::Release);
                        } else {
                            counters.add_throttle_waits(1);
                            return;
                        }
                    }
                    events.pop_front().expect("front was Some")
                };
                match ev {
                    SessionEvent::Message(m) => {
                        let len = m.payload_len() as u64;
                        // No dispatcher: dropped (a node refuses to start without one).
                        if let Some(d) = first {
                            d.ms_dispatch(conn, m);
                        }
                        if let Some(t) = throttle {
                            if !defer {
                                t.release(len);
                            }
                        }
                    }
                    other => {
                        dispatchers.deliver(conn, other);
                    }
                }
            }
            drop(order);
            // An event pushed after the inner loop saw the queue empty, but before the lock was
            // dropped, would otherwise wait for the next drain.
            if self.events.lock().is_empty() {
                return;
            }
        }
    }
}
