//! The outgoing side of a session: messages waiting to be sent, and messages sent but not yet
//! acknowledged by the peer.
//!
//! Order rules (msgr1): a message gets its sequence number when it is first written, so the
//! receiver sees messages in write order. New messages are written highest priority first,
//! FIFO within one priority. After a link failure, unacknowledged messages go back to the
//! *front* of the queue ("replay"), keep their original sequence numbers and are written before
//! anything new, in seq order; the peer drops the ones it already has (seq <= its in_seq).

use std::collections::{BTreeMap, VecDeque};

use crate::message::{Message, Priority};

/// Messages not yet written on the current link.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Unacknowledged messages from an earlier link, in seq order; all have a seq already.
    replay: VecDeque<Message>,
    /// New messages by priority; iterated highest first.
    by_priority: BTreeMap<Priority, VecDeque<Message>>,
    len: usize,
}

impl OutQueue {
    pub fn push(&mut self, msg: Message) {
        self.by_priority
            .entry(msg.priority)
            .or_default()
            .push_back(msg);
        self.len += 1;
    }

    /// The next message to write: replays first, then the highest priority's oldest.
    pub fn pop(&mut self) -> Option<Message> {
        if let Some(m) = self.replay.pop_front() {
            self.len -= 1;
            return Some(m);
        }
        let mut entry = self.by_priority.last_entry()?;
        let m = entry.get_mut().pop_front();
        if entry.get().is_empty() {
            entry.remove();
        }
        if m.is_some() {
            self.len -= 1;
        }
        m
    }

    /// Put `sent` (oldest first) back in front of everything, for replay on the next link.
    pub fn requeue_front(&mut self, sent: impl DoubleEndedIterator<Item = Message>) {
        for m in sent.rev() {
            self.replay.push_front(m);
            self.len += 1;
        }
    }

    /// The peer already has every message up to `acked`: drop those waiting for replay.
    /// Returns how many were dropped.
    pub fn discard_replayed_up_to(&mut self, acked: u64) -> usize {
        let mut n = 0;
        while self.replay.front().is_some_and(|m| m.seq <= acked) {
            self.replay.pop_front();
            n += 1;
        }
        self.len -= n;
        n
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Everything, replays first then in send order (for reporting undelivered messages).
    pub fn drain_all(&mut self) -> Vec<Message> {
        let mut out = Vec::with_capacity(self.len);
        out.extend(self.replay.drain(..));
        while let Some((_, e)) = self.by_priority.pop_last() {
            out.extend(e);
        }
        self.len = 0;
        out
    }
}

/// Messages written on a link and not yet acknowledged, in seq order.
#[derive(Debug, Default)]
pub struct SentList {
    msgs: VecDeque<Message>,
}

impl SentList {
    pub fn push(&mut self, msg: Message) {
        debug_assert!(self.msgs.back().is_none_or(|b| b.seq < msg.seq));
        self.msgs.push_back(msg);
    }

    /// The peer acknowledged everything up to `acked`. Returns how many were released.
    pub fn trim(&mut self, acked: u64) -> usize {
        let mut n = 0;
        while self.msgs.front().is_some_and(|m| m.seq <= acked) {
            self.msgs.pop_front();
            n += 1;
        }
        n
    }

    /// Forget the oldest entries beyond `limit` (lossy sessions whose peer never ACKs).
    pub fn cap(&mut self, limit: usize) {
        while self.msgs.len() > limit {
            self.msgs.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn take(&mut self) -> VecDeque<Message> {
        std::mem::take(&mut self.msgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(prio: u16, tid: u64) -> Message {
        Message::new(1, &b"x"[..])
            .with_priority(Priority(prio))
            .with_tid(tid)
    }

    fn tids(v: &[Message]) -> Vec<u64> {
        v.iter().map(|m| m.tid).collect()
    }

    #[test]
    fn higher_priority_first_fifo_within() {
        let mut q = OutQueue::default();
        for (p, t) in [(127, 1), (196, 2), (127, 3), (64, 4), (196, 5), (255, 6)] {
            q.push(m(p, t));
        }
        assert_eq!(q.len(), 6);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|m| m.tid).collect();
        assert_eq!(order, vec![6, 2, 5, 1, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn replays_go_first_in_seq_order_and_keep_seq() {
        let mut q = OutQueue::default();
        q.push(m(255, 10));
        let mut sent = SentList::default();
        for seq in 1..=3 {
            let mut x = m(64, seq);
            x.seq = seq;
            sent.push(x);
        }
        q.requeue_front(sent.take().into_iter());
        let out: Vec<Message> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(tids(&out), vec![1, 2, 3, 10]);
        assert_eq!(
            out.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 0]
        );
    }

    #[test]
    fn discard_replayed_stops_at_first_newer() {
        let mut q = OutQueue::default();
        let v: Vec<Message> = (5..=8)
            .map(|s| {
                let mut x = m(1, s);
                x.seq = s;
                x
            })
            .collect();
        q.requeue_front(v.into_iter());
        q.push(m(1, 100));
        assert_eq!(q.discard_replayed_up_to(6), 2);
        assert_eq!(q.len(), 3);
        assert_eq!(tids(&q.drain_all()), vec![7, 8, 100]);
    }

    #[test]
    fn ack_trims_sent_list() {
        let mut s = SentList::default();
        for seq in 1..=5 {
            let mut x = m(1, seq);
            x.seq = seq;
            s.push(x);
        }
        assert_eq!(s.trim(0), 0);
        assert_eq!(s.trim(3), 3);
        assert_eq!(s.len(), 2);
        // An old (smaller) ack changes nothing.
        assert_eq!(s.trim(2), 0);
        assert_eq!(s.trim(99), 2);
        assert!(s.is_empty());
    }
}
