//! Credit-based flow control for SEND/RECV (sans-IO).
//!
//! Each side posts `window` receives up front and tells the peer in the connect private data.
//! A SEND is only posted when the peer is known to have a receive for it, so receiver-not-ready
//! (RNR) never happens in normal operation.
//!
//! Every SEND carries, as its 32-bit immediate, the cumulative number of receives its sender has
//! re-posted (wrapping). Reliable-connected QPs deliver in order, so the latest immediate is
//! all the peer needs: `credits = window + peer_reposted - sent`.
//!
//! Rules that keep both sides live:
//! - data needs 2 credits, so one is always left for a credit update;
//! - a credit-only message (zero-length SEND) goes out when at least `threshold` re-posted
//!   receives are unreported and one credit is left. `threshold >= 2` means a credit-only
//!   message (which itself consumes one receive) can never make the peer answer with another
//!   one, so credit messages die out instead of ping-ponging.

/// Flow-control state of one connection. All counters wrap (u32 arithmetic).
#[derive(Debug, Clone)]
pub struct Credits {
    /// Receives the peer posted before connecting.
    peer_window: u32,
    /// SENDs we posted (data and credit-only).
    sent: u32,
    /// The peer's cumulative re-post count, from the latest immediate we received.
    peer_reposted: u32,
    /// Receives we re-posted after they completed.
    reposted: u32,
    /// `reposted` as of our last SEND (what the peer knows).
    reported: u32,
    threshold: u32,
}

impl Credits {
    /// `our_window`: receives we posted; `peer_window`: receives the peer posted.
    pub fn new(our_window: u32, peer_window: u32) -> Self {
        Credits {
            peer_window,
            sent: 0,
            peer_reposted: 0,
            reposted: 0,
            reported: 0,
            threshold: (our_window / 2).max(2),
        }
    }

    /// SENDs the peer has a receive for.
    pub fn available(&self) -> u32 {
        self.peer_window
            .wrapping_add(self.peer_reposted)
            .wrapping_sub(self.sent)
    }

    /// A data SEND may be posted now.
    pub fn can_send_data(&self) -> bool {
        self.available() >= 2
    }

    /// Re-posted receives the peer does not know about yet.
    pub fn unreported(&self) -> u32 {
        self.reposted.wrapping_sub(self.reported)
    }

    /// A credit-only SEND should be posted now.
    pub fn wants_credit_message(&self) -> bool {
        self.unreported() >= self.threshold && self.available() >= 1
    }

    /// Account for a SEND about to be posted; returns the immediate to put on it.
    pub fn on_send(&mut self) -> u32 {
        debug_assert!(self.available() >= 1, "send without credit");
        self.sent = self.sent.wrapping_add(1);
        self.reported = self.reposted;
        self.reposted
    }

    /// A SEND from the peer arrived carrying `imm`.
    pub fn on_receive(&mut self, imm: u32) {
        self.peer_reposted = imm;
    }

    /// We re-posted one receive.
    pub fn on_repost(&mut self) {
        self.reposted = self.reposted.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// One side of the simulated link.
    struct Side {
        credits: Credits,
        /// Receives posted and empty.
        posted: u32,
        /// Completed receives the application has not consumed yet (not re-posted).
        unconsumed: u32,
        /// Data messages still to send.
        to_send: u32,
        data_received: u32,
        credit_msgs_sent: u32,
    }

    struct Xs(u64);
    impl Xs {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random interleavings of sends, deliveries and (slow) consumption; asserts that no SEND
    /// ever finds the receiver without a posted receive, and that everything is delivered
    /// (no deadlock) with a bounded number of credit-only messages.
    fn simulate(seed: u64, window: u32, msgs: [u32; 2]) {
        let mut rng = Xs(seed | 1);
        let mut sides: Vec<Side> = (0..2)
            .map(|i| Side {
                credits: Credits::new(window, window),
                posted: window,
                unconsumed: 0,
                to_send: msgs[i],
                data_received: 0,
                credit_msgs_sent: 0,
            })
            .collect();
        // wire[i]: messages from side i to side 1-i: (is_data, imm)
        let mut wire: [VecDeque<(bool, u32)>; 2] = [VecDeque::new(), VecDeque::new()];
        let mut idle_rounds = 0;
        for _step in 0..1_000_000 {
            let i = (rng.next() % 2) as usize;
            let action = rng.next() % 4;
            let mut progressed = false;
            match action {
                0 => {
                    let s = &mut sides[i];
                    if s.to_send > 0 && s.credits.can_send_data() {
                        let imm = s.credits.on_send();
                        s.to_send -= 1;
                        wire[i].push_back((true, imm));
                        progressed = true;
                    }
                }
                1 => {
                    if let Some((is_data, imm)) = wire[i].pop_front() {
                        let r = &mut sides[1 - i];
                        assert!(
                            r.posted > 0,
                            "seed {seed}: SEND arrived with no receive posted (RNR)"
                        );
                        r.posted -= 1;
                        r.credits.on_receive(imm);
                        if is_data {
                            r.data_received += 1;
                            r.unconsumed += 1;
                        } else {
                            r.posted += 1;
                            r.credits.on_repost();
                        }
                        progressed = true;
                    }
                }
                2 => {
                    // slow consumer: consumes only sometimes
                    let s = &mut sides[i];
                    if s.unconsumed > 0 && rng.next() % 3 == 1 {
                        s.unconsumed -= 1;
                        s.posted += 1;
                        s.credits.on_repost();
                        progressed = true;
                    }
                }
                _ => {
                    let s = &mut sides[i];
                    if s.credits.wants_credit_message() {
                        let imm = s.credits.on_send();
                        s.credit_msgs_sent += 1;
                        wire[i].push_back((false, imm));
                        progressed = true;
                    }
                }
            }
            let done = sides[0].data_received == msgs[1]
                && sides[1].data_received == msgs[0]
                && wire.iter().all(|w| w.is_empty());
            if done {
                // credit-only messages stay a fraction of the data
                for s in &sides {
                    let total = msgs[0] + msgs[1];
                    assert!(
                        s.credit_msgs_sent <= total / 2 + 2,
                        "seed {seed}: {} credit-only messages for {total} data messages",
                        s.credit_msgs_sent
                    );
                }
                return;
            }
            idle_rounds = if progressed { 0 } else { idle_rounds + 1 };
            // a consumer that consumes eventually: if nothing moved for long, force consumption
            if idle_rounds > 200 {
                let stuck =
                    sides.iter().all(|s| s.unconsumed == 0) && wire.iter().all(|w| w.is_empty());
                assert!(
                    !stuck,
                    "seed {seed}: deadlock: {:?} {:?}",
                    sides[0].credits, sides[1].credits
                );
            }
        }
        panic!("seed {seed}: did not finish");
    }

    #[test]
    fn no_rnr_and_no_deadlock_under_random_interleavings() {
        for seed in 1..400u64 {
            let window = [4, 5, 8, 16][(seed % 4) as usize];
            let a = (seed * 7 % 200) as u32;
            let b = (seed * 13 % 150) as u32;
            simulate(seed, window, [a, b]);
        }
    }

    #[test]
    fn one_way_stream_returns_credits_without_ping_pong() {
        for seed in 1..50u64 {
            simulate(seed, 4, [500, 0]);
            simulate(seed, 16, [0, 300]);
        }
    }

    #[test]
    fn counters_wrap() {
        let mut c = Credits::new(4, 4);
        c.sent = u32::MAX - 1;
        c.peer_reposted = u32::MAX - 1;
        assert_eq!(c.available(), 4);
        c.on_send();
        c.on_send();
        assert_eq!(c.available(), 2);
        c.on_receive(u32::MAX.wrapping_add(2)); // peer re-posted 3 more, wrapped
        assert_eq!(c.available(), 5);
    }
}
