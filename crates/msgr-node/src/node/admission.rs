//! [`Admission`]: the links a node holds, counted against `max_connections`.
//!
//! Every link held by a worker counts (accepted and dialed, from adoption to close). An
//! accepted peer is admitted only under the limit; a dialed link is always counted (the node
//! chose to dial). Reaching the limit is logged once per episode, leaving it once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Links held by a node's workers, and the limit for accepting more.
#[derive(Debug)]
pub struct Admission {
    max: Option<usize>,
    live: AtomicUsize,
    /// An accepted peer was turned away since the count was last under the limit.
    full: AtomicBool,
}

impl Admission {
    /// No link yet; accept up to `max` (None: no limit).
    pub fn new(max: Option<usize>) -> Self {
        Admission {
            max,
            live: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        }
    }

    /// An accepted peer wants a link: true (and counted) while under the limit.
    pub fn admit(&self) -> bool {
        let held = self.live.fetch_add(1, Ordering::AcqRel);
        match self.max {
            Some(max) if held >= max => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_connections = max,
                        "at max_connections ({max} links): closing new connections at once \
                         until some close (raise `max_connections` to serve more)"
                    );
                }
                false
            }
            _ => {
                if self.full.load(Ordering::Relaxed) && self.full.swap(false, Ordering::Relaxed) {
                    tracing::info!("below max_connections again: accepting new connections");
                }
                true
            }
        }
    }

    /// A dialed link: counted, never refused.
    pub fn add(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// A counted link closed (or was never adopted).
    pub fn release(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Links held now.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_again_after_a_release() {
        let a = Admission::new(Some(2));
        assert!(a.admit());
        a.add();
        assert!(!a.admit(), "two links held: a third peer is turned away");
        assert_eq!(a.live(), 2);
        a.release();
        assert!(a.admit());
        assert!(!a.admit());
        assert_eq!(a.live(), 2);
    }

    #[test]
    fn dialed_links_count_beyond_the_limit() {
        let a = Admission::new(Some(1));
        a.add();
        a.add();
        assert_eq!(a.live(), 2);
        assert!(!a.admit());
        a.release();
        a.release();
        assert!(a.admit());
    }

    #[test]
    fn no_limit_admits_everyone() {
        let a = Admission::new(None);
        assert!((0..10_000).all(|_| a.admit()));
        assert_eq!(a.live(), 10_000);
    }
}
