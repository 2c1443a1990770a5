//! Loopback delivery: a message a messenger sends to its own address never touches a socket.
//!
//! [`Loopback`] is the [`Connection`] `connect_to(my_addr)` returns. `send_message` stamps the
//! message (sequence number, source) and queues it, then calls the transport's `wake` callback;
//! the transport later calls [`Loopback::deliver_pending`] on one of its own threads, so the
//! dispatcher never runs inside the sender's `send_message` call (the sender may hold locks the
//! dispatcher needs, as Ceph's local delivery queue avoids too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::counters::CounterPair;
use super::dispatch::Dispatchers;
use msgr_core::api::{Connection, ConnectionCounters, ConnectionRef, MessengerError};
use msgr_core::message::Message;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};

/// The connection of a messenger to itself.
pub struct Loopback {
    my_name: EntityName,
    my_addr: EntityAddr,
    features: u64,
    queue: Mutex<VecDeque<Message>>,
    /// Serialises deliveries so messages reach the dispatcher in send order.
    delivering: Mutex<()>,
    next_seq: AtomicU64,
    closed: AtomicBool,
    counters: CounterPair,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Loopback {
    /// `wake` must arrange for [`Loopback::deliver_pending`] to run soon on a transport thread.
    pub fn new(
        my_name: EntityName,
        my_addr: EntityAddr,
        features: u64,
        counters: CounterPair,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Loopback {
            my_name,
            my_addr,
            features,
            queue: Mutex::new(VecDeque::new()),
            delivering: Mutex::new(()),
            next_seq: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            counters,
            wake: Box::new(wake),
        })
    }

    /// Hand every queued message to the dispatcher, in order. Returns how many.
    pub fn deliver_pending(self: &Arc<Self>, dispatchers: &Dispatchers) -> usize {
        let _order = self.delivering.lock();
        let conn: ConnectionRef = self.clone();
        let mut n = 0;
        loop {
            let Some(msg) = self.queue.lock().pop_front() else {
                return n;
            };
            self.counters.add_messages_in(1);
            self.counters.add_bytes_in(msg.payload_len() as u64);
            dispatchers.dispatch(&conn, msg);
            n += 1;
        }
    }

    /// Drop what is queued (shutdown); returns it so the owner can report it.
    pub fn take_pending(&self) -> Vec<Message> {
        self.closed.store(true, Ordering::Release);
        self.queue.lock().drain(..).collect()
    }
}

impl Connection for Loopback {
    fn peer_addr(&self) -> EntityAddr {
        self.my_addr
    }
    fn peer_type(&self) -> EntityType {
        self.my_name.kind
    }
    fn peer_name(&self) -> Option<EntityName> {
        Some(self.my_name)
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn send_message(&self, mut msg: Message) -> Result<(), MessengerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(MessengerError::ShutDown);
        }
        msg.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        msg.src = self.my_name;
        self.counters.add_messages_out(1);
        self.counters.add_bytes_out(msg.payload_len() as u64);
        self.queue.lock().push_back(msg);
        (self.wake)();
        Ok(())
    }
    fn send_keepalive(&self) -> Result<(), MessengerError> {
        Ok(())
    }
    fn is_connected(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }
    /// A messenger cannot lose its session with itself: nothing to drop.
    fn mark_down(&self) {}
    fn counters(&self) -> ConnectionCounters {
        self.counters.conn.snapshot()
    }
    fn transport(&self) -> Option<&'static str> {
        Some("local")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::counters::MessengerCounterCells;
    use msgr_core::api::Dispatcher;
    use msgr_core::wire::EntityType;

    struct Collect(Mutex<Vec<(u64, Vec<u8>)>>);
    impl Dispatcher for Collect {
        fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
            assert_eq!(conn.peer_type(), EntityType::OSD);
            self.0.lock().push((msg.seq, msg.front.to_vec()));
        }
    }

    #[test]
    fn delivers_in_order_only_when_asked() {
        let name = EntityName {
            kind: EntityType::OSD,
            num: 0,
        };
        let addr = EntityAddr {
            kind: 0,
            nonce: 7,
            addr: None,
        };
        let wakes = Arc::new(AtomicU64::new(0));
        let w = wakes.clone();
        let total = Arc::new(MessengerCounterCells::default());
        let lb = Loopback::new(name, addr, 0, CounterPair::new(total.clone()), move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let d = Arc::new(Collect(Mutex::new(Vec::new())));
        let ds = Dispatchers::default();
        ds.add(d.clone());
        lb.send_message(Message::new(1, &b"a"[..])).unwrap();
        lb.send_message(Message::new(1, &b"b"[..])).unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert!(d.0.lock().is_empty(), "nothing runs inside send_message");
        assert_eq!(lb.deliver_pending(&ds), 2);
        assert_eq!(*d.0.lock(), vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        assert_eq!(total.snapshot().connections.messages_in, 2);
    }
}
