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

use parking_lot::{Mutex, MutexGuard};

use crate::node::counters::CounterPair;
use crate::node::{Dispatchers, PolicyThrottle};
use msgr_core::api::ConnectionRef;
use msgr_core::session::SessionEvent;

/// Events handed to the dispatcher per look at the queue: the queue's lock and the throttle's
/// are taken once per run of messages rather than once per message.
const RUN_MESSAGES: usize = 64;
/// Payload bytes per run (a run holds at least one message): the throttle budget a run takes
/// is released once the whole run is dispatched, so runs of large messages stay short.
const RUN_BYTES: u64 = 256 << 10;

/// Events of one connection waiting for the dispatcher. See the module docs.
#[derive(Debug, Default)]
pub struct Inbox {
    events: Mutex<VecDeque<SessionEvent>>,
    /// Held while events are handed over, so only one thread dispatches (keeps the order); it
    /// holds the run being handed over (its allocation is reused from run to run).
    dispatching: Mutex<Vec<SessionEvent>>,
    /// A message waits for throttle budget.
    paused: AtomicBool,
}

impl Inbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue, locked: events pushed to its back are delivered after those waiting.
    pub fn events(&self) -> MutexGuard<'_, VecDeque<SessionEvent>> {
        self.events.lock()
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
            let Some(mut run) = self.dispatching.try_lock() else {
                return;
            };
            loop {
                if self.is_paused() {
                    return;
                }
                let blocked = self.take_run(&mut run, throttle);
                if run.is_empty() {
                    let (Some(len), Some(t)) = (blocked, throttle) else {
                        break;
                    };
                    // The front message does not fit. Paused is set before asking, so a
                    // wake-up racing with us always wins.
                    self.paused.store(true, Ordering::Release);
                    if !t.try_acquire_or_wait(len, waker()) {
                        counters.add_throttle_waits(1);
                        return;
                    }
                    self.paused.store(false, Ordering::Release);
                    // Only the dispatching thread takes from the front: it is still there.
                    let ev = self.events.lock().pop_front().expect("the blocked message");
                    run.push(ev);
                }
                let (mut bytes, mut messages) = (0, 0);
                for ev in run.drain(..) {
                    match ev {
                        SessionEvent::Message(m) => {
                            bytes += m.payload_len() as u64;
                            messages += 1;
                            // No dispatcher: dropped (a node refuses to start without one).
                            if let Some(d) = first {
                                d.ms_dispatch(conn, m);
                            }
                        }
                        other => {
                            dispatchers.deliver(conn, other);
                        }
                    }
                }
                if let Some(t) = throttle {
                    if !defer && messages > 0 {
                        t.release_many(bytes, messages);
                    }
                }
            }
            drop(run);
            // An event pushed after the inner loop saw the queue empty, but before the lock was
            // dropped, would otherwise wait for the next drain.
            if self.events.lock().is_empty() {
                return;
            }
        }
    }

    /// Move the next run of events to `run`: up to [`RUN_MESSAGES`] and [`RUN_BYTES`], each
    /// message with its throttle budget taken (one lock each for the queue and the throttle).
    /// Returns the size of a message at the front that found the throttle full.
    fn take_run(
        &self,
        run: &mut Vec<SessionEvent>,
        throttle: Option<&PolicyThrottle>,
    ) -> Option<u64> {
        let mut events = self.events.lock();
        let mut budget = throttle.map(PolicyThrottle::run);
        let mut bytes = 0;
        while run.len() < RUN_MESSAGES && bytes < RUN_BYTES {
            let front = events.front()?;
            if let SessionEvent::Message(m) = front {
                let len = m.payload_len() as u64;
                if budget.as_mut().is_some_and(|b| !b.take(len)) {
                    return Some(len);
                }
                bytes += len;
            }
            run.push(events.pop_front().expect("front was Some"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use crate::node::dispatch::testing::NoConn;
    use msgr_core::api::Dispatcher;
    use msgr_core::Message;

    /// A remote reset, as [`Tids`] records it.
    const RESET: u64 = u64::MAX;

    /// Records the tids it is handed, and remote resets, in order.
    #[derive(Default)]
    struct Tids(Mutex<Vec<u64>>);
    impl Dispatcher for Tids {
        fn ms_dispatch(&self, _conn: &ConnectionRef, msg: Message) {
            self.0.lock().push(msg.tid);
        }
        fn ms_handle_remote_reset(&self, _conn: &ConnectionRef) {
            self.0.lock().push(RESET);
        }
    }

    fn message(tid: u64, len: usize) -> SessionEvent {
        SessionEvent::Message(Message::new(1, vec![0u8; len]).with_tid(tid))
    }

    /// An inbox with a recording dispatcher and what `drain` needs besides.
    struct Fixture {
        inbox: Inbox,
        dispatchers: Dispatchers,
        log: Arc<Tids>,
        conn: ConnectionRef,
        counters: CounterPair,
    }

    impl Fixture {
        fn new() -> Self {
            let dispatchers = Dispatchers::default();
            let log = Arc::new(Tids::default());
            dispatchers.add(log.clone());
            Fixture {
                inbox: Inbox::new(),
                dispatchers,
                log,
                conn: Arc::new(NoConn),
                counters: CounterPair::new(Default::default()),
            }
        }

        fn drain<W: FnOnce() + Send + 'static>(
            &self,
            throttle: &PolicyThrottle,
            waker: impl Fn() -> W,
        ) {
            let (conn, counters) = (&self.conn, &self.counters);
            self.inbox
                .drain(conn, &self.dispatchers, Some(throttle), counters, waker);
        }
    }

    /// Runs of many messages stop where the throttle is full, in order, and go on from the
    /// same message once budget comes back; the budget a run took is given back.
    #[test]
    fn runs_stop_at_a_full_throttle_and_resume_in_order() {
        let f = Fixture::new();
        let (inbox, log) = (&f.inbox, &f.log);
        // 100 messages of 10 bytes against a budget of 250 bytes: not even one full run fits.
        let throttle = PolicyThrottle::new(Some(250), None);
        {
            let mut q = inbox.events();
            for tid in 0..100 {
                q.push_back(message(tid, 10));
            }
        }
        let wakes = Arc::new(AtomicUsize::new(0));
        let waker = || {
            let w = wakes.clone();
            move || {
                w.fetch_add(1, Ordering::SeqCst);
            }
        };
        // The dispatcher keeps no budget: each run is released as soon as it is dispatched, so
        // one drain goes through all of them, 25 at a time.
        f.drain(&throttle, waker);
        assert_eq!(*log.0.lock(), (0..100).collect::<Vec<_>>());
        assert_eq!(throttle.in_flight(), (0, 0));
        assert!(!inbox.is_paused());

        // Budget held elsewhere (another connection of the same policy): the next message
        // does not fit, the inbox pauses and registers a wake-up.
        assert!(throttle.run().take(250));
        inbox.events().push_back(message(100, 10));
        inbox.events().push_back(message(101, 10));
        f.drain(&throttle, waker);
        assert!(inbox.is_paused());
        assert_eq!(log.0.lock().len(), 100);
        assert_eq!(f.counters.conn.throttle_waits.load(Ordering::Relaxed), 1);
        throttle.release(250);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        inbox.resume();
        f.drain(&throttle, waker);
        assert_eq!(log.0.lock()[100..], [100, 101]);
        assert_eq!(throttle.in_flight(), (0, 0));
    }

    /// Events other than messages travel in the same runs, in order, and take no budget.
    #[test]
    fn other_events_keep_their_place_between_messages() {
        let f = Fixture::new();
        let (inbox, log) = (&f.inbox, &f.log);
        let throttle = PolicyThrottle::new(None, Some(1000));
        {
            let mut q = inbox.events();
            for tid in 0..200 {
                q.push_back(message(tid, 1));
                q.push_back(SessionEvent::RemoteReset {
                    undelivered: Vec::new(),
                });
            }
        }
        f.drain(&throttle, || || {});
        let want: Vec<u64> = (0..200).flat_map(|tid| [tid, RESET]).collect();
        assert_eq!(*log.0.lock(), want);
        assert!(inbox.events().is_empty());
        assert_eq!(throttle.in_flight(), (0, 0));
    }
}
