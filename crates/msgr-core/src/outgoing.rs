//! The outgoing side of a session, msgr1's and msgr2's alike: messages waiting to be sent, and
//! messages sent but not yet acknowledged by the peer.
//!
//! Order rules (both protocols): a message gets its sequence number when it is first written, so the
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
    /// New messages by priority; iterated highest first. A priority's queue stays when it
    /// empties (its allocation serves the next burst; a node uses a handful of priorities).
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

    /// The queue the next message comes from: replays first, then the highest priority's.
    fn next_run(&mut self) -> Option<&mut VecDeque<Message>> {
        if !self.replay.is_empty() {
            return Some(&mut self.replay);
        }
        self.by_priority.values_mut().rev().find(|q| !q.is_empty())
    }

    /// The next message to write: replays first, then the highest priority's oldest.
    #[cfg(test)]
    pub fn pop(&mut self) -> Option<Message> {
        let m = self.next_run()?.pop_front();
        self.len -= 1;
        m
    }

    /// Write queued messages in order until `budget` payload bytes went out (each message
    /// counts at least one; the one that crosses the budget is written too) or the queue is
    /// empty; returns how many were written. A message gets its seq (`out_seq` + 1) when first
    /// written, a replay keeps its own; then `encode` writes it, where it lies in the queue, and
    /// written runs move to `sent` (see [`OutQueue::write_run`]). Both protocols' transmit.
    pub fn write(
        &mut self,
        sent: &mut SentList,
        out_seq: &mut u64,
        budget: usize,
        mut encode: impl FnMut(&mut Message),
    ) -> usize {
        let mut left = budget;
        let mut written = 0;
        while left > 0 {
            let n = self.write_run(sent, |m| {
                if m.seq == 0 {
                    *out_seq += 1;
                    m.seq = *out_seq;
                }
                encode(m);
                left = left.saturating_sub(m.payload_len().max(1));
                left > 0
            });
            if n == 0 {
                break;
            }
            written += n;
        }
        written
    }

    /// Write a run of messages in place and move them to `sent` in one step: `write` is called
    /// on each message in the order [`OutQueue::pop`] would return them, from one queue (the
    /// replays, or one priority), until it returns false (it wrote that message, and wants no
    /// more) or that queue is empty. Returns how many were written. Saves moving each message
    /// out of the queue and into `sent` separately; a run that empties its queue while
    /// nothing waits for an ACK moves as the whole queue.
    fn write_run(
        &mut self,
        sent: &mut SentList,
        mut write: impl FnMut(&mut Message) -> bool,
    ) -> usize {
        let Some(run) = self.next_run() else {
            return 0;
        };
        let mut n = 0;
        for m in run.iter_mut() {
            n += 1;
            if !write(m) {
                break;
            }
        }
        sent.take_run(run, n);
        self.len -= n;
        n
    }

    /// Everything `sent` holds goes back in front of everything, for replay on the next link.
    pub fn requeue_unacked(&mut self, sent: &mut SentList) {
        self.requeue_front(sent.take().into_iter());
    }

    /// Sent-but-unacked (seq order) then queued messages, emptying both: what a session that
    /// ends reports as undelivered.
    pub fn take_undelivered(&mut self, sent: &mut SentList) -> Vec<Message> {
        let mut v: Vec<Message> = sent.take().into();
        v.extend(self.drain_all());
        v
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

    /// A new session (msgr2's peer reset) numbers everything again.
    pub fn forget_seqs(&mut self) {
        for m in &mut self.replay {
            m.seq = 0;
        }
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
        while let Some((_, q)) = self.by_priority.pop_last() {
            out.extend(q);
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
    #[cfg(test)]
    pub fn push(&mut self, msg: Message) {
        debug_assert!(self.msgs.back().is_none_or(|b| b.seq < msg.seq));
        self.msgs.push_back(msg);
    }

    /// Append the first `n` messages of `from` (written, in seq order).
    fn take_run(&mut self, from: &mut VecDeque<Message>, n: usize) {
        debug_assert!(self
            .msgs
            .back()
            .is_none_or(|b| from.front().is_none_or(|f| b.seq < f.seq)));
        if n < from.len() {
            self.msgs.extend(from.drain(..n));
        } else if self.msgs.is_empty() {
            std::mem::swap(&mut self.msgs, from);
        } else {
            // Copies the run as (at most two) slices, not message by message.
            self.msgs.append(from);
        }
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
    fn runs_write_in_pop_order_and_land_in_sent_in_seq_order() {
        let mut q = OutQueue::default();
        let mut sent = SentList::default();
        let mut seq = 0;
        for (p, t) in [(127, 1), (196, 2), (127, 3), (64, 4), (196, 5), (255, 6)] {
            q.push(m(p, t));
        }
        // A budget of 4 one-byte messages stops inside the 127 run.
        assert_eq!(q.write(&mut sent, &mut seq, 4, |_| {}), 4);
        assert_eq!(q.len(), 2);
        let first = sent.take();
        assert_eq!(
            first.iter().map(|m| m.tid).collect::<Vec<_>>(),
            vec![6, 2, 5, 1]
        );
        assert_eq!(
            first.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        // The unacknowledged run is replayed first, with its seqs, before the rest.
        q.requeue_front(first.into_iter());
        q.push(m(255, 7));
        assert_eq!(q.write(&mut sent, &mut seq, 100, |_| {}), 7);
        assert!(q.is_empty());
        let all: Vec<Message> = sent.take().into_iter().collect();
        assert_eq!(tids(&all), vec![6, 2, 5, 1, 7, 3, 4]);
        assert_eq!(
            all.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6, 7]
        );
        // Emptied priority queues are kept and serve again.
        q.push(m(127, 8));
        q.write(&mut sent, &mut seq, 100, |_| {});
        assert_eq!(sent.len(), 1);
        assert_eq!(sent.trim(8), 1);
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
