//! The registered dispatchers, and how session events become dispatcher callbacks.
//!
//! Rules (the same for every transport):
//! - a message goes to the first registered dispatcher only (it consumes the message);
//! - connect / accept / fault / reset / remote-reset notifications go to every dispatcher, in
//!   registration order; on a reset every dispatcher gets the same undelivered list (clones of
//!   `Bytes` are cheap); a remote reset that dropped messages is followed, per dispatcher, by
//!   `ms_handle_remote_reset_undelivered` with them;
//! - the accept hook admits a peer only if every dispatcher admits it;
//! - `AcceptRequest` is not for the application: [`Dispatchers::deliver`] hands it back to the
//!   transport, which resolves it (see [`super::registry::resolve_accept`]).

use std::sync::Arc;

use parking_lot::Mutex;

use msgr_core::api::{ConnectionRef, Dispatcher};
use msgr_core::message::Message;
use msgr_core::session::{ConnectRequest, SessionError, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityType};

/// The dispatchers of one messenger. Cheap to read from many threads: callers take a snapshot
/// (one `Arc` clone) and call without holding any lock, so a dispatcher may call back into the
/// messenger.
#[derive(Default)]
pub struct Dispatchers {
    list: Mutex<Arc<Vec<Arc<dyn Dispatcher>>>>,
}

impl std::fmt::Debug for Dispatchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatchers({})", self.list.lock().len())
    }
}

impl Dispatchers {
    pub fn add(&self, d: Arc<dyn Dispatcher>) {
        let mut list = self.list.lock();
        let mut v: Vec<_> = list.iter().cloned().collect();
        v.push(d);
        *list = Arc::new(v);
    }

    pub fn is_empty(&self) -> bool {
        self.list.lock().is_empty()
    }

    /// The dispatchers now (a later `add` does not change it).
    pub fn snapshot(&self) -> Arc<Vec<Arc<dyn Dispatcher>>> {
        self.list.lock().clone()
    }

    /// The accept hook: every dispatcher must admit the peer.
    pub fn verify_accept(&self, peer_addr: &EntityAddr, peer_type: EntityType) -> bool {
        self.snapshot()
            .iter()
            .all(|d| d.ms_verify_accept(peer_addr, peer_type))
    }

    /// Hand one message to the first dispatcher. Returns false when none is registered (the
    /// message is dropped; transports refuse to start without a dispatcher).
    pub fn dispatch(&self, conn: &ConnectionRef, msg: Message) -> bool {
        match self.snapshot().first() {
            Some(d) => {
                d.ms_dispatch(conn, msg);
                true
            }
            None => false,
        }
    }

    /// Map one session event to callbacks. `AcceptRequest` is returned to the caller untouched;
    /// `KeepaliveAck` has no callback.
    pub fn deliver(&self, conn: &ConnectionRef, event: SessionEvent) -> Option<ConnectRequest> {
        let all = self.snapshot();
        match event {
            SessionEvent::Message(m) => {
                self.dispatch(conn, m);
            }
            SessionEvent::Connected { .. } => all.iter().for_each(|d| d.ms_handle_connect(conn)),
            SessionEvent::Accepted { .. } => all.iter().for_each(|d| d.ms_handle_accept(conn)),
            SessionEvent::AcceptRequest(req) => return Some(req),
            SessionEvent::KeepaliveAck { .. } => {}
            SessionEvent::Faulted { error, .. } => {
                all.iter().for_each(|d| d.ms_handle_fault(conn, &error))
            }
            SessionEvent::Reset { undelivered, error } => {
                // A failure that ends the session (lossy, or not fixed by retrying, as a wrong
                // key) is a fault the application hears about, with its cause, first.
                let failed = !matches!(
                    error,
                    SessionError::MarkedDown | SessionError::Closed | SessionError::Replaced
                );
                for d in all.iter() {
                    if failed {
                        d.ms_handle_fault(conn, &error);
                    }
                    d.ms_handle_reset(conn, undelivered.clone());
                }
            }
            SessionEvent::RemoteReset { undelivered } => {
                for d in all.iter() {
                    d.ms_handle_remote_reset(conn);
                    if !undelivered.is_empty() {
                        d.ms_handle_remote_reset_undelivered(conn, undelivered.clone());
                    }
                }
            }
            // Driver-level events (link handling, replaced session, learned address).
            SessionEvent::CloseLink | SessionEvent::Replaced | SessionEvent::LearnedAddr(_) => {}
            // `SessionEvent` is non-exhaustive: no callback for an event not known here.
            _ => {}
        }
        None
    }
}

/// A connection that does nothing, for tests of the dispatch path.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use msgr_core::api::{Connection, ConnectionCounters, MessengerError};
    use msgr_core::wire::{EntityName, EntityType};

    pub(crate) struct NoConn;
    impl Connection for NoConn {
        fn peer_addr(&self) -> EntityAddr {
            EntityAddr::blank()
        }
        fn peer_type(&self) -> EntityType {
            EntityType::OSD
        }
        fn peer_name(&self) -> Option<EntityName> {
            None
        }
        fn features(&self) -> u64 {
            0
        }
        fn send_message(&self, _msg: Message) -> Result<(), MessengerError> {
            Ok(())
        }
        fn send_keepalive(&self) -> Result<(), MessengerError> {
            Ok(())
        }
        fn is_connected(&self) -> bool {
            true
        }
        fn mark_down(&self) {}
        fn counters(&self) -> ConnectionCounters {
            ConnectionCounters::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::NoConn;
    use super::*;

    /// Records the callbacks it gets, in order.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl Dispatcher for Log {
        fn ms_dispatch(&self, _conn: &ConnectionRef, msg: Message) {
            self.0.lock().push(format!("msg {}", msg.tid));
        }
        fn ms_handle_remote_reset(&self, _conn: &ConnectionRef) {
            self.0.lock().push("remote_reset".into());
        }
        fn ms_handle_remote_reset_undelivered(&self, _conn: &ConnectionRef, u: Vec<Message>) {
            let tids: Vec<_> = u.iter().map(|m| m.tid.to_string()).collect();
            self.0
                .lock()
                .push(format!("undelivered {}", tids.join(",")));
        }
    }

    /// Implements only `ms_dispatch`: the defaults must swallow every other event.
    struct Minimal;
    impl Dispatcher for Minimal {
        fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
    }

    #[test]
    fn remote_reset_hands_undelivered_messages_to_every_dispatcher() {
        let ds = Dispatchers::default();
        let (a, b) = (Arc::new(Log::default()), Arc::new(Log::default()));
        ds.add(a.clone());
        ds.add(b.clone());
        ds.add(Arc::new(Minimal));
        let conn: ConnectionRef = Arc::new(NoConn);
        let undelivered = vec![
            Message::new(1, &b"x"[..]).with_tid(7),
            Message::new(1, &b"y"[..]).with_tid(8),
        ];
        assert!(ds
            .deliver(&conn, SessionEvent::RemoteReset { undelivered })
            .is_none());
        // A reset that dropped nothing is announced without an empty list.
        ds.deliver(
            &conn,
            SessionEvent::RemoteReset {
                undelivered: Vec::new(),
            },
        );
        let want = ["remote_reset", "undelivered 7,8", "remote_reset"];
        assert_eq!(*a.0.lock(), want);
        assert_eq!(*b.0.lock(), want);
        // Messages still go to the first dispatcher only.
        ds.deliver(
            &conn,
            SessionEvent::Message(Message::new(1, &b"z"[..]).with_tid(9)),
        );
        assert_eq!(a.0.lock().last().map(String::as_str), Some("msg 9"));
        assert_eq!(b.0.lock().len(), 3);
    }
}
