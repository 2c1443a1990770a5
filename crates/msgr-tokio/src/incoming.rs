//! [`Incoming`]: what a messenger receives, as a [`Stream`] of [`Event`]s; [`Received`]: one
//! message, holding its throttle budget until dropped or released.
//!
//! Back-pressure: the adapter's dispatcher keeps each message's policy throttle budget
//! (`Dispatcher::defer_release`) until the [`Received`] item is dropped or released. While a
//! peer type's budget is spent, the node stops reading from those peers, and their TCP (or
//! RDMA credit) flow control stops the senders. So the stream's queue never holds more
//! messages than the throttles admit ([`crate::Options::max_held_messages`] per peer type at
//! most): a slow consumer stops the readers instead of growing memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use parking_lot::Mutex;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use msgr_core::api::{ConnectionRef, Dispatcher};
use msgr_core::session::SessionError;
use msgr_core::Message;

use crate::AsyncConnection;

/// Something that happened on one of the messenger's connections, in the order the
/// connection saw it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A message arrived (in order, once).
    Message(Received),
    /// Our outgoing connection finished its handshake.
    Connected(AsyncConnection),
    /// A peer's connection to us finished its handshake.
    Accepted(AsyncConnection),
    /// A link failed; a lossless session reconnects and replays.
    Fault {
        /// The connection whose link failed.
        conn: AsyncConnection,
        /// Why.
        error: SessionError,
    },
    /// The session is gone (lossy fault, mark-down, shutdown); `undelivered` never reached
    /// the peer for sure.
    Reset {
        /// The connection, now closed.
        conn: AsyncConnection,
        /// Messages queued or sent without acknowledgement.
        undelivered: Vec<Message>,
    },
    /// The peer lost its session state with us: numbering restarts on the same connection.
    RemoteReset(AsyncConnection),
    /// Follows [`Event::RemoteReset`] when that reset dropped messages (see
    /// `Dispatcher::ms_handle_remote_reset_undelivered`): resend what still matters.
    RemoteResetUndelivered {
        /// The connection that was reset.
        conn: AsyncConnection,
        /// Messages that will not be sent again.
        undelivered: Vec<Message>,
    },
}

impl Event {
    /// The connection the event is about.
    pub fn connection(&self) -> &AsyncConnection {
        match self {
            Event::Message(r) => r.connection(),
            Event::Connected(c) | Event::Accepted(c) | Event::RemoteReset(c) => c,
            Event::Fault { conn, .. }
            | Event::Reset { conn, .. }
            | Event::RemoteResetUndelivered { conn, .. } => conn,
        }
    }
}

/// One received message. Its throttle budget is handed back when the item is dropped, on
/// [`Received::release`], or on [`Received::into_message`]: until then the messenger counts
/// it as held by the application.
pub struct Received {
    conn: AsyncConnection,
    msg: Message,
    /// Payload bytes still held from the throttle (None once released).
    held: Option<usize>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("conn", &self.conn)
            .field("msg_type", &self.msg.msg_type)
            .field("tid", &self.msg.tid)
            .field("payload_len", &self.msg.payload_len())
            .field("held", &self.held.is_some())
            .finish()
    }
}

impl Received {
    /// The connection it came on (to reply on).
    pub fn connection(&self) -> &AsyncConnection {
        &self.conn
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// Hand the throttle budget back now, keeping the message (idempotent).
    pub fn release(&mut self) {
        if let Some(len) = self.held.take() {
            self.conn.inner().release(len);
        }
    }

    /// The message, its budget handed back.
    pub fn into_message(mut self) -> Message {
        self.release();
        std::mem::take(&mut self.msg)
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.release();
    }
}

/// The messenger's incoming events, a [`Stream`] (also [`Incoming::recv`] without
/// `StreamExt`). Ends after [`crate::AsyncMessenger::shutdown`] once the events left are
/// taken. Dropping it drops (and releases) every message that arrives afterwards.
#[derive(Debug)]
pub struct Incoming {
    rx: UnboundedReceiver<Event>,
}

impl Incoming {
    /// The next event; None once the messenger is shut down and every event was taken.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for Incoming {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// The dispatcher that feeds an [`Incoming`]. Dispatcher callbacks run on the node's
/// workers: they only queue (an unbounded channel, bounded by the throttles, see the module
/// docs), never block.
pub(crate) struct Feed {
    tx: Mutex<Option<UnboundedSender<Event>>>,
}

impl Feed {
    /// A feed and the stream it feeds.
    pub fn new() -> (Arc<Feed>, Incoming) {
        let (tx, rx) = unbounded_channel();
        let feed = Feed {
            tx: Mutex::new(Some(tx)),
        };
        (Arc::new(feed), Incoming { rx })
    }

    /// No more events (the node is shut down): the stream ends after those queued.
    pub fn close(&self) {
        self.tx.lock().take();
    }

    /// Queue `ev`; when the stream is gone it is dropped (a message's budget comes back).
    fn push(&self, ev: Event) {
        let tx = self.tx.lock();
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(ev);
        }
    }
}

fn wrap(conn: &ConnectionRef) -> AsyncConnection {
    AsyncConnection::new(conn.clone())
}

impl Dispatcher for Feed {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        let held = Some(msg.payload_len());
        let conn = wrap(conn);
        self.push(Event::Message(Received { conn, msg, held }));
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        self.push(Event::Connected(wrap(conn)));
    }
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        self.push(Event::Accepted(wrap(conn)));
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        let conn = wrap(conn);
        self.push(Event::Reset { conn, undelivered });
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        self.push(Event::RemoteReset(wrap(conn)));
    }
    fn ms_handle_remote_reset_undelivered(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        let conn = wrap(conn);
        self.push(Event::RemoteResetUndelivered { conn, undelivered });
    }
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        let conn = wrap(conn);
        let error = error.clone();
        self.push(Event::Fault { conn, error });
    }
    fn defer_release(&self) -> bool {
        true
    }
}
