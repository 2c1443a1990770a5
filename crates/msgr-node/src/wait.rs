//! [`WaitList`]: the tasks waiting for something on a connection (send-queue room, the
//! handshake), for `Connection::poll_send` and `Connection::poll_connected`.
//!
//! Cheap when nobody waits: [`WaitList::wake_all`] is one fence and one atomic load then, no
//! lock and no allocation, so the driver calls it after every write. No lost wake-up: a
//! waiter registers (sets `waiting`), then checks its condition again; the driver changes the
//! condition, then reads `waiting`. With a SeqCst fence between the two steps on each side, at
//! least one of them sees the other's write (the store-buffer pattern).

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::task::Waker;

use parking_lot::Mutex;

/// Wakers of tasks waiting on one condition. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    waiting: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl WaitList {
    /// Wake `waker` at the next [`WaitList::wake_all`]. The caller checks its condition again
    /// afterwards (and stops waiting if it already holds).
    pub fn register(&self, waker: &Waker) {
        let mut list = self.wakers.lock();
        // A task polled again with the same waker is listed once.
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
        self.waiting.store(true, Ordering::SeqCst);
        drop(list);
        fence(Ordering::SeqCst);
    }

    /// The condition may have changed: wake every registered task (each registers again if it
    /// still has to wait). Call after changing the condition.
    pub fn wake_all(&self) {
        fence(Ordering::SeqCst);
        if !self.waiting.load(Ordering::SeqCst) {
            return;
        }
        let wakers = {
            let mut list = self.wakers.lock();
            self.waiting.store(false, Ordering::SeqCst);
            std::mem::take(&mut *list)
        };
        for w in wakers {
            w.wake();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.wakers.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_each_registered_task_once() {
        let list = WaitList::default();
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        list.wake_all();
        list.register(&wa);
        list.register(&wa);
        list.register(&wb);
        assert_eq!(list.len(), 2, "the same waker is listed once");
        list.wake_all();
        list.wake_all();
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(list.len(), 0);
    }
}
