//! What a netfault node checks about what it receives and what comes back undelivered: pure
//! bookkeeping, unit-tested here, reported by `node.rs` and judged by `scenario.rs`.
//!
//! Every payload names its sender, the sender's incarnation (restarts count up) and its
//! sequence number, and its data is a pattern derived from those three, so a receiver can tell
//! a lost, duplicated, reordered or corrupted message from a good one.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use msgr::Message;
use msgr_tests::harness::pattern;

/// The message type netfault nodes send ("NF").
pub const MSG_TYPE: u16 = 0x4e46;

/// The end-of-stream marker ("NG"): the sender repeats it after its last payload until the
/// driver stops it, so a receiver that restarted (and cannot know where the stream was) learns
/// the stream is over. It carries the sender, its incarnation and its count.
pub const FIN_TYPE: u16 = 0x4e47;

/// The end-of-stream marker of a sender that sent `count` payloads.
pub fn fin(sender: u32, inc: u32, count: u64) -> Message {
    let mut m = payload(sender, inc, count, 0);
    m.msg_type = FIN_TYPE;
    m
}

/// A marker's header, if `m` is one.
pub fn parse_fin(m: &Message) -> Option<(u32, u32, u64)> {
    let mut p = m.clone();
    p.msg_type = MSG_TYPE;
    (m.msg_type == FIN_TYPE).then(|| parse(&p)).flatten()
}

/// One numbered, checksummed payload of `size` data bytes.
pub fn payload(sender: u32, inc: u32, seq: u64, size: usize) -> Message {
    let mut front = BytesMut::with_capacity(16);
    front.put_u32_le(sender);
    front.put_u32_le(inc);
    front.put_u64_le(seq);
    Message::new(MSG_TYPE, front.freeze())
        .with_data(pattern(data_seed(sender, inc, seq), size))
        .with_tid(seq)
}

fn data_seed(sender: u32, inc: u32, seq: u64) -> u64 {
    seq ^ (u64::from(sender) << 56) ^ (u64::from(inc) << 40)
}

/// A payload's header, if it is one of ours with its data intact.
pub fn parse(m: &Message) -> Option<(u32, u32, u64)> {
    if m.msg_type != MSG_TYPE || m.front.len() != 16 {
        return None;
    }
    let mut f: Bytes = m.front.clone();
    let (sender, inc, seq) = (f.get_u32_le(), f.get_u32_le(), f.get_u64_le());
    (m.data == pattern(data_seed(sender, inc, seq), m.data.len())).then_some((sender, inc, seq))
}

/// The stream from one sender, as one receiver saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    /// The sender incarnation now being received.
    pub inc: u32,
    /// The first sequence number seen from that incarnation (0 unless this receiver restarted
    /// and the sender's earlier messages went to the previous receiver), None before any.
    pub first: Option<u64>,
    /// The next sequence number expected.
    pub next: u64,
    /// Messages delivered in order, all incarnations.
    pub delivered: u64,
    /// A sequence number seen again.
    pub duplicated: u64,
    /// A sequence number ahead of the next expected (one was lost or reordered).
    pub gaps: u64,
    /// An incarnation older than the current one.
    pub stale: u64,
    /// The current incarnation's end-of-stream marker arrived.
    pub fin: bool,
}

impl Stream {
    /// Account for message `seq` of incarnation `inc`.
    pub fn receive(&mut self, inc: u32, seq: u64) {
        if self.first.is_some() && inc < self.inc {
            self.stale += 1;
            return;
        }
        if self.first.is_none() || inc > self.inc {
            // A new incarnation numbers from 0; a stream may start later only at a receiver
            // that restarted (the judge checks `first` against the sender's report).
            self.inc = inc;
            self.first = Some(seq);
            self.next = seq;
            self.fin = false;
        }
        if seq == self.next {
            self.next += 1;
            self.delivered += 1;
        } else if seq < self.next {
            self.duplicated += 1;
        } else {
            self.gaps += 1;
            self.delivered += 1;
            self.next = seq + 1;
        }
    }

    /// Account for an end-of-stream marker of incarnation `inc`.
    pub fn finished(&mut self, inc: u32) {
        if inc > self.inc || self.first.is_none() {
            // Everything this incarnation sent went to an earlier incarnation of this receiver.
            self.inc = inc;
            self.first = None;
            self.next = 0;
        }
        if inc == self.inc {
            self.fin = true;
        }
    }
}

/// Messages the messenger handed back to one sender for one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Undelivered {
    pub count: u64,
    /// First and last sequence number handed back (over all hand-backs).
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Each hand-back was a contiguous, ascending run of our own payloads.
    pub in_order: bool,
}

impl Undelivered {
    pub fn new() -> Self {
        Undelivered {
            in_order: true,
            ..Default::default()
        }
    }

    /// Account for one hand-back (`ms_handle_reset` or `ms_handle_remote_reset_undelivered`).
    pub fn handed_back(&mut self, msgs: &[Message]) {
        // End markers queued behind the payloads are not part of the stream.
        let msgs: Vec<&Message> = msgs.iter().filter(|m| m.msg_type != FIN_TYPE).collect();
        let seqs: Vec<Option<u64>> = msgs.iter().map(|m| parse(m).map(|h| h.2)).collect();
        let contiguous = seqs.windows(2).all(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => b == a + 1,
            _ => false,
        });
        if seqs.iter().any(Option::is_none) || !contiguous {
            self.in_order = false;
        }
        if let (Some(Some(f)), Some(Some(l))) = (seqs.first(), seqs.last()) {
            self.first = Some(self.first.map_or(*f, |x| x.min(*f)));
            self.last = Some(self.last.map_or(*l, |x| x.max(*l)));
        }
        self.count += msgs.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_corruption_is_caught() {
        let m = payload(2, 1, 77, 40);
        assert_eq!(parse(&m), Some((2, 1, 77)));
        let mut bad = m.clone();
        let mut d = bad.data.to_vec();
        d[3] ^= 1;
        bad.data = d.into();
        assert_eq!(parse(&bad), None);
    }

    #[test]
    fn in_order_stream_is_clean_and_faults_are_counted() {
        let mut s = Stream::default();
        for seq in 0..5 {
            s.receive(0, seq);
        }
        assert_eq!((s.duplicated, s.gaps, s.stale), (0, 0, 0));
        assert_eq!((s.first, s.next, s.delivered), (Some(0), 5, 5));
        s.receive(0, 3);
        assert_eq!(s.duplicated, 1);
        s.receive(0, 7);
        assert_eq!(s.gaps, 1);
        // A restarted sender numbers from 0 again: a new stream, not a duplicate.
        s.receive(1, 0);
        assert_eq!((s.inc, s.first, s.next), (1, Some(0), 1));
        s.receive(0, 8);
        assert_eq!(s.stale, 1);
        assert!(!s.fin);
        s.finished(0);
        assert!(!s.fin, "an old incarnation's marker ends nothing");
        s.finished(1);
        assert!(s.fin);
        assert_eq!(parse_fin(&fin(1, 2, 30)), Some((1, 2, 30)));
        assert_eq!(parse_fin(&payload(1, 2, 30, 0)), None);
    }

    #[test]
    fn hand_backs_must_be_contiguous_runs() {
        let mut u = Undelivered::new();
        u.handed_back(&[payload(0, 0, 4, 1), payload(0, 0, 5, 1), fin(0, 0, 6)]);
        assert!(u.in_order);
        assert_eq!((u.count, u.first, u.last), (2, Some(4), Some(5)));
        u.handed_back(&[payload(0, 0, 9, 1), payload(0, 0, 8, 1)]);
        assert!(!u.in_order);
    }
}
