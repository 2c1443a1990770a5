//! The session's deadlines. Each is an `Option<Instant>`; the driver arms one OS timer for the
//! earliest ([`Timers::next`]) and the session checks which expired on `handle_timeout`.

use std::time::Instant;

/// One deadline per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Handshake must finish by then (armed by `link_up`).
    Handshake,
    /// Open link: nothing received since; fault it.
    Idle,
    /// Open link: time for our periodic KEEPALIVE2.
    Keepalive,
    /// Received messages waiting for a coalesced ACK.
    Ack,
    /// After WAIT: stop waiting for the peer's connect, dial again.
    WaitRetry,
}

const ALL: [Timer; 5] = [
    Timer::Handshake,
    Timer::Idle,
    Timer::Keepalive,
    Timer::Ack,
    Timer::WaitRetry,
];

#[derive(Debug, Default, Clone)]
pub struct Timers {
    at: [Option<Instant>; 5],
}

impl Timers {
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = Some(at);
    }

    /// Arm `t` unless it is already armed earlier.
    pub fn set_if_later_unset(&mut self, t: Timer, at: Instant) {
        if self.at[t as usize].is_none() {
            self.at[t as usize] = Some(at);
        }
    }

    pub fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }

    pub fn clear(&mut self) {
        self.at = [None; 5];
    }

    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarm and return the timers due at `now`, in declaration order.
    pub fn expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut out = Vec::new();
        for t in ALL {
            if self.at[t as usize].is_some_and(|at| at <= now) {
                self.at[t as usize] = None;
                out.push(t);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_and_expiry() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Idle, t0 + Duration::from_secs(5));
        t.set(Timer::Ack, t0 + Duration::from_millis(1));
        t.set_if_later_unset(Timer::Ack, t0 + Duration::from_secs(9));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(1)));
        assert_eq!(t.expired(t0), vec![]);
        assert_eq!(t.expired(t0 + Duration::from_secs(1)), vec![Timer::Ack]);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
        t.stop(Timer::Idle);
        assert_eq!(t.next(), None);
    }
}
