//! A worker's timers: a min-heap of deadlines with lazy cancellation. An entry names what to
//! check when it fires; the owner re-checks whether the deadline still holds (a session may have
//! moved its deadline, a link may be gone), so nothing is ever removed from the middle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub struct TimerHeap<T> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    payloads: std::collections::HashMap<u64, T>,
    next_id: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            payloads: std::collections::HashMap::new(),
            next_id: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    pub fn push(&mut self, at: Instant, what: T) {
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push(Reverse((at, id)));
        self.payloads.insert(id, what);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Take one entry due at `now` or earlier.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((_, id)) = self.heap.pop()?;
                self.payloads.remove(&id)
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = TimerHeap::default();
        t.push(t0 + Duration::from_millis(20), "b");
        t.push(t0 + Duration::from_millis(10), "a");
        t.push(t0 + Duration::from_millis(30), "c");
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(now), Some("a"));
        assert_eq!(t.pop_due(now), Some("b"));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }
}
