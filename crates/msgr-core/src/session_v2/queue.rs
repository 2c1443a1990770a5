//! Outgoing messages: waiting to be written (highest priority first, FIFO within one; replays
//! first, in seq order) and written but not acknowledged. The same rules as msgr1's queue: a
//! message gets its seq when first written and keeps it when replayed.

use std::collections::{BTreeMap, VecDeque};

use crate::message::{Message, Priority};

/// Messages not yet written on the current link.
#[derive(Debug, Default)]
pub(super) struct OutQueue {
    replay: VecDeque<Message>,
    by_priority: BTreeMap<Priority, VecDeque<Message>>,
}

impl OutQueue {
    pub(super) fn push(&mut self, msg: Message) {
        self.by_priority
            .entry(msg.priority)
            .or_default()
            .push_back(msg);
    }

    pub(super) fn pop(&mut self) -> Option<Message> {
        if let Some(m) = self.replay.pop_front() {
            return Some(m);
        }
        let mut entry = self.by_priority.last_entry()?;
        let m = entry.get_mut().pop_front();
        if entry.get().is_empty() {
            entry.remove();
        }
        m
    }

    /// Puts unacknowledged messages (oldest first) back in front, for replay.
    pub(super) fn requeue_front(&mut self, sent: Vec<Message>) {
        for m in sent.into_iter().rev() {
            self.replay.push_front(m);
        }
    }

    /// The peer already has every message up to `seq`: drop those waiting for replay.
    pub(super) fn discard_replayed_up_to(&mut self, seq: u64) {
        while self.replay.front().is_some_and(|m| m.seq <= seq) {
            self.replay.pop_front();
        }
    }

    /// A new session numbers everything again.
    pub(super) fn forget_seqs(&mut self) {
        for m in &mut self.replay {
            m.seq = 0;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.replay.len() + self.by_priority.values().map(VecDeque::len).sum::<usize>()
    }

    /// Everything, replays first.
    pub(super) fn drain(&mut self) -> Vec<Message> {
        let mut out: Vec<Message> = self.replay.drain(..).collect();
        while let Some(m) = self.pop() {
            out.push(m);
        }
        out
    }
}

/// Written, not yet acknowledged, in seq order.
#[derive(Debug, Default)]
pub(super) struct SentList(VecDeque<Message>);

impl SentList {
    pub(super) fn push(&mut self, m: Message, limit: Option<usize>) {
        self.0.push_back(m);
        if let Some(limit) = limit {
            while self.0.len() > limit {
                self.0.pop_front();
            }
        }
    }

    /// The peer has everything up to `seq`.
    pub(super) fn ack(&mut self, seq: u64) {
        while self.0.front().is_some_and(|m| m.seq <= seq) {
            self.0.pop_front();
        }
    }

    pub(super) fn take(&mut self) -> Vec<Message> {
        self.0.drain(..).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_first_then_priority_then_fifo() {
        let mut q = OutQueue::default();
        q.push(Message::new(1, vec![]).with_priority(Priority::LOW));
        q.push(Message::new(2, vec![]).with_priority(Priority::HIGH));
        q.push(Message::new(3, vec![]).with_priority(Priority::HIGH));
        let mut old = Message::new(9, vec![]);
        old.seq = 4;
        q.requeue_front(vec![old]);
        assert_eq!(q.len(), 4);
        let order: Vec<u16> = std::iter::from_fn(|| q.pop()).map(|m| m.msg_type).collect();
        assert_eq!(order, [9, 2, 3, 1]);
    }

    #[test]
    fn ack_trims_up_to_seq() {
        let mut s = SentList::default();
        for seq in 1..=5 {
            let mut m = Message::new(0, vec![]);
            m.seq = seq;
            s.push(m, Some(4));
        }
        assert_eq!(s.len(), 4, "the limit drops the oldest");
        s.ack(3);
        assert_eq!(s.take().iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
    }
}
