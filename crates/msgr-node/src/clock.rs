//! Where the driver reads the time: the system clock, or a virtual clock a simulation moves.
//!
//! Every decision the driver takes (timers, backoff, handshake and idle deadlines, shutdown
//! flush) reads [`Clock::now`], so a node stepped by hand ([`crate::NodeConfig::threads`] =
//! false) over a [`Clock::Virtual`] runs the same code on simulated time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The time source of a node.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// `Instant::now()`.
    #[default]
    System,
    /// Time that moves only when the owner advances it.
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// The current time of this clock.
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Virtual(v) => v.now(),
        }
    }
}

/// A clock for simulations: starts at the real time of its creation and moves only by
/// [`VirtualClock::advance`] / [`VirtualClock::advance_to`].
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<Instant>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock {
            now: Mutex::new(Instant::now()),
        }
    }
}

impl VirtualClock {
    /// A clock at the real time now, shared (give clones to nodes and networks).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// The clock's current time.
    pub fn now(&self) -> Instant {
        *self.now.lock()
    }
    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.now.lock() += d;
    }
    /// Move to `t` (never backwards).
    pub fn advance_to(&self, t: Instant) {
        let mut n = self.now.lock();
        if t > *n {
            *n = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_moves_only_when_told() {
        let v = VirtualClock::new();
        let c = Clock::Virtual(v.clone());
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.now(), t0);
        v.advance(Duration::from_secs(3));
        assert_eq!(c.now(), t0 + Duration::from_secs(3));
        v.advance_to(t0);
        assert_eq!(c.now(), t0 + Duration::from_secs(3), "never backwards");
    }
}
