//! Per-policy throttles on received messages not yet released by the application, as Ceph's
//! policy throttlers (`ms_policy_throttler_*`): one budget in bytes, one in messages, shared by
//! every connection whose peer type maps to the policy.
//!
//! A transport takes budget before handing a received message to the dispatcher
//! ([`PolicyThrottle::try_acquire_or_wait`]); when the budget is spent it stops reading from that
//! peer and registers a wake-up callback, which [`PolicyThrottle::release`] runs once budget comes
//! back. Back-pressure, never loss.
//!
//! Like Ceph, a message is admitted when the throttle is empty even if it alone exceeds the limit,
//! so one large message cannot block a connection forever.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use msgr_core::policy::Policy;
use msgr_core::wire::EntityType;

/// Called once, when budget was released after a failed acquire.
pub type Wake = Box<dyn FnOnce() + Send>;

struct State {
    bytes: u64,
    messages: u64,
    waiters: Vec<Wake>,
}

/// The two budgets of one policy. Check, take and the waiter list share one lock, so a release
/// can never slip between a failed check and the registration of its waiter (no lost wake-up).
pub struct PolicyThrottle {
    max_bytes: Option<u64>,
    max_messages: Option<u64>,
    state: Mutex<State>,
}

impl std::fmt::Debug for PolicyThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("PolicyThrottle")
            .field("max_bytes", &self.max_bytes)
            .field("max_messages", &self.max_messages)
            .field("bytes", &s.bytes)
            .field("messages", &s.messages)
            .field("waiters", &s.waiters.len())
            .finish()
    }
}

impl PolicyThrottle {
    pub fn new(max_bytes: Option<u64>, max_messages: Option<u64>) -> Self {
        PolicyThrottle {
            max_bytes,
            max_messages,
            state: Mutex::new(State {
                bytes: 0,
                messages: 0,
                waiters: Vec::new(),
            }),
        }
    }

    fn fits(&self, s: &State, len: u64) -> bool {
        let bytes_ok = match self.max_bytes {
            None => true,
            Some(max) => s.bytes == 0 || s.bytes.saturating_add(len) <= max,
        };
        let msgs_ok = match self.max_messages {
            None => true,
            Some(max) => s.messages == 0 || s.messages < max,
        };
        bytes_ok && msgs_ok
    }

    /// Take budget for one message of `len` payload bytes, or register `wake` to be run once
    /// budget is released and return false.
    pub fn try_acquire_or_wait(&self, len: u64, wake: impl FnOnce() + Send + 'static) -> bool {
        let mut s = self.state.lock();
        if self.fits(&s, len) {
            s.bytes += len;
            s.messages += 1;
            true
        } else {
            s.waiters.push(Box::new(wake));
            false
        }
    }

    /// Hold the throttle to take budget for a run of messages with one lock (see
    /// [`ThrottleRun::take`]); a message that does not fit goes through
    /// [`PolicyThrottle::try_acquire_or_wait`] once the run is dispatched.
    pub fn run(&self) -> ThrottleRun<'_> {
        ThrottleRun {
            throttle: self,
            state: self.state.lock(),
        }
    }

    /// Take budget without waiting (returns false when full).
    #[cfg(test)]
    pub fn try_acquire(&self, len: u64) -> bool {
        let mut s = self.state.lock();
        if self.fits(&s, len) {
            s.bytes += len;
            s.messages += 1;
            true
        } else {
            false
        }
    }

    /// Give one message of `len` bytes back; runs (outside the lock) every waiter registered.
    pub fn release(&self, len: u64) {
        self.release_many(len, 1);
    }

    /// Give `messages` messages of `bytes` in all back at once; runs (outside the lock) every
    /// waiter registered.
    pub fn release_many(&self, bytes: u64, messages: u64) {
        let waiters = {
            let mut s = self.state.lock();
            s.bytes = s.bytes.saturating_sub(bytes);
            s.messages = s.messages.saturating_sub(messages);
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            w();
        }
    }

    /// (bytes, messages) currently held.
    #[cfg(test)]
    pub fn in_flight(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.bytes, s.messages)
    }
}

/// A throttle held while budget is taken for a run of messages (see [`PolicyThrottle::run`]).
pub struct ThrottleRun<'a> {
    throttle: &'a PolicyThrottle,
    state: parking_lot::MutexGuard<'a, State>,
}

impl ThrottleRun<'_> {
    /// Take budget for one message of `len` payload bytes if it fits now.
    pub fn take(&mut self, len: u64) -> bool {
        if !self.throttle.fits(&self.state, len) {
            return false;
        }
        self.state.bytes += len;
        self.state.messages += 1;
        true
    }
}

/// One throttle per peer type that has a limited policy.
#[derive(Debug, Default)]
pub struct Throttles {
    by_type: Mutex<HashMap<EntityType, Arc<PolicyThrottle>>>,
}

impl Throttles {
    /// The throttle for `peer_type` under `policy`, created on first use; None when the policy
    /// sets no limit. Policies should not change after start (the first one seen wins).
    pub fn for_peer(&self, peer_type: EntityType, policy: &Policy) -> Option<Arc<PolicyThrottle>> {
        if policy.throttle_bytes.is_none() && policy.throttle_messages.is_none() {
            return None;
        }
        let mut map = self.by_type.lock();
        Some(
            map.entry(peer_type)
                .or_insert_with(|| {
                    Arc::new(PolicyThrottle::new(
                        policy.throttle_bytes,
                        policy.throttle_messages,
                    ))
                })
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn message_limit_blocks_then_wakes() {
        let t = PolicyThrottle::new(None, Some(2));
        let woken = Arc::new(AtomicUsize::new(0));
        assert!(t.try_acquire(10));
        assert!(t.try_acquire(10));
        let w = woken.clone();
        assert!(!t.try_acquire_or_wait(10, move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        t.release(10);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        // Waiters run once.
        t.release(10);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(t.in_flight(), (0, 0));
    }

    #[test]
    fn byte_limit_admits_one_oversized_message_when_empty() {
        let t = PolicyThrottle::new(Some(100), None);
        assert!(t.try_acquire(1000));
        assert!(!t.try_acquire(1));
        t.release(1000);
        assert!(t.try_acquire(60));
        assert!(t.try_acquire(40));
        assert!(!t.try_acquire(1));
    }

    #[test]
    fn a_run_takes_what_fits_and_a_batch_release_wakes_waiters() {
        let t = PolicyThrottle::new(Some(100), Some(3));
        {
            let mut run = t.run();
            assert!(run.take(40));
            assert!(run.take(40));
            // 120 bytes would exceed the byte budget.
            assert!(!run.take(40));
            assert!(run.take(20));
            // The message budget is spent.
            assert!(!run.take(0));
        }
        assert_eq!(t.in_flight(), (100, 3));
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        assert!(!t.try_acquire_or_wait(10, move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        t.release_many(80, 2);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(t.in_flight(), (20, 1));
        // Like a single acquire, a run admits one oversized message into an empty throttle.
        t.release(20);
        assert!(t.run().take(1000));
    }

    #[test]
    fn unlimited_policies_get_no_throttle() {
        let ts = Throttles::default();
        assert!(ts
            .for_peer(EntityType::OSD, &Policy::lossless_peer())
            .is_none());
        let mut p = Policy::lossless_peer();
        p.throttle_messages = Some(3);
        let a = ts.for_peer(EntityType::OSD, &p).unwrap();
        let b = ts.for_peer(EntityType::OSD, &p).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
