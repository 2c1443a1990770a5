//! Reconnect delay: starts at `initial`, doubles after every failed attempt, never above `max`,
//! back to `initial` once a link reaches the open state.

use std::time::Duration;

/// Capped exponential backoff. The first [`Backoff::next_delay`] after a reset is zero, so the
/// first reconnect after a healthy link failed is immediate (as Ceph does).
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Delay handed out by the next call; `None` right after a reset.
    next: Option<Duration>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            next: None,
        }
    }

    /// Delay before the next attempt; advances the backoff.
    pub fn next_delay(&mut self) -> Duration {
        match self.next {
            None => {
                self.next = Some(self.initial);
                Duration::ZERO
            }
            Some(d) => {
                self.next = Some((d * 2).min(self.max));
                d
            }
        }
    }

    /// The link is healthy again.
    pub fn reset(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps_then_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(35));
        let got: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(got, vec![ms(0), ms(10), ms(20), ms(35), ms(35)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(0));
        assert_eq!(b.next_delay(), ms(10));
    }
}
