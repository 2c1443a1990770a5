//! Socket failure injection (Ceph's `ms_inject_socket_failures`): about one I/O call in N fails.

/// A tiny xorshift generator per worker: no shared state, no locking, deterministic per seed.
#[derive(Debug)]
pub struct FaultInjector {
    one_in: u64,
    state: u64,
}

impl FaultInjector {
    pub fn new(one_in: u64, seed: u64) -> Self {
        FaultInjector {
            one_in,
            state: seed | 1,
        }
    }

    /// True when this I/O call should fail.
    pub fn fire(&mut self) -> bool {
        if self.one_in == 0 {
            return false;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x.is_multiple_of(self.one_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_about_one_in_n() {
        let mut f = FaultInjector::new(30, 42);
        let n = (0..30_000).filter(|_| f.fire()).count();
        assert!((700..1300).contains(&n), "{n}");
        let mut off = FaultInjector::new(0, 42);
        assert!(!(0..1000).any(|_| off.fire()));
    }
}
