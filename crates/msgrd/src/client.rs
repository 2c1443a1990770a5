//! The ping client's side of one connection: the dispatcher that counts answers (echoes, or a
//! stream's end-marker answers) and measures round trips, and the messenger it belongs to.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use msgr::{Connection, ConnectionRef, Dispatcher, ErrorClass, Message, NodeConnection};
use msgr_core::session::SessionError;

use crate::common::log_event;
use crate::measure::Latencies;
use crate::proto::{decode_count, MSG_STREAM_END};
use crate::AnyError;

/// One connection's client: the closed loop's state, or a stream's end-marker answers.
pub(crate) struct Driver {
    state: Mutex<DriverState>,
    done: Condvar,
    front: Bytes,
    data: Bytes,
    msg_type: u16,
}

struct DriverState {
    /// Answers (echoes, or end-marker answers when streaming) this phase waits for.
    total: u64,
    sent: u64,
    received: u64,
    sent_at: VecDeque<Instant>,
    latencies: Latencies,
    /// The session sequence number the server saw on the latest end marker (streaming).
    server_seq: Option<u64>,
    errors: u64,
    fatal: Option<String>,
}

impl DriverState {
    fn phase(total: u64, window: u64) -> Self {
        DriverState {
            total,
            sent: 0,
            received: 0,
            sent_at: VecDeque::with_capacity(window as usize),
            latencies: Latencies::new(),
            server_seq: None,
            errors: 0,
            fatal: None,
        }
    }
}

impl Driver {
    /// A client sending `msg_type` messages of `front` + `data`; its first phase waits for one
    /// answer (the warm-up).
    pub(crate) fn new(front: Bytes, data: Bytes, msg_type: u16) -> Arc<Driver> {
        Arc::new(Driver {
            state: Mutex::new(DriverState::phase(1, 1)),
            done: Condvar::new(),
            front,
            data,
            msg_type,
        })
    }

    /// Start the measured closed-loop phase: `total` echoes, `window` in flight.
    pub(crate) fn start_phase(&self, total: u64, window: u64) {
        *self.state.lock() = DriverState::phase(total, window);
    }

    /// Add this client's round-trip latencies to `into`.
    pub(crate) fn merge_latencies_into(&self, into: &mut Latencies) {
        into.merge(&self.state.lock().latencies);
    }

    /// The payload message this client sends (with tid `tid`).
    pub(crate) fn message(&self, tid: u64) -> Message {
        Message::new(self.msg_type, self.front.clone())
            .with_data(self.data.clone())
            .with_tid(tid)
    }

    /// Start a phase that ends after `total` answers.
    pub(crate) fn expect(&self, total: u64) {
        *self.state.lock() = DriverState::phase(total, 0);
    }

    /// The sequence number the server reported on the last end marker.
    pub(crate) fn server_seq(&self) -> Option<u64> {
        self.state.lock().server_seq
    }

    /// Queue up to `n` more echo messages (bounded by the phase's total) on `conn`.
    pub(crate) fn send_more(&self, conn: &NodeConnection, n: u64) {
        for _ in 0..n {
            let tid = {
                let mut s = self.state.lock();
                if s.sent >= s.total {
                    return;
                }
                s.sent += 1;
                s.sent_at.push_back(Instant::now());
                s.sent
            };
            if let Err(e) = conn.send_message(self.message(tid)) {
                self.note_send_error(&e);
                return;
            }
        }
    }

    pub(crate) fn note_send_error(&self, e: &msgr::MessengerError) {
        tracing::error!(error = %e, "send failed");
        self.state.lock().errors += 1;
        self.done.notify_all();
    }

    /// Block until the phase's answers are in, or say why they will not come.
    pub(crate) fn wait_done(&self) -> Result<(), AnyError> {
        let mut s = self.state.lock();
        while s.received < s.total {
            if let Some(why) = &s.fatal {
                return Err(format!("cannot talk to the peer: {why}").into());
            }
            if s.errors > 0 {
                return Err("sending failed (see the log above)".into());
            }
            if self
                .done
                .wait_for(&mut s, Duration::from_secs(120))
                .timed_out()
            {
                return Err(format!(
                    "no answer for 120 s ({} of {} received): is the server running?",
                    s.received, s.total
                )
                .into());
            }
        }
        Ok(())
    }
}

impl Dispatcher for Driver {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        if msg.msg_type == MSG_STREAM_END {
            let mut s = self.state.lock();
            s.server_seq = decode_count(&msg.front);
            s.received += 1;
            self.done.notify_all();
            return;
        }
        let next_tid = {
            let mut s = self.state.lock();
            if let Some(t) = s.sent_at.pop_front() {
                s.latencies.record_ns(t.elapsed().as_nanos() as u64);
            }
            s.received += 1;
            if s.received >= s.total {
                self.done.notify_all();
            }
            (s.sent < s.total).then(|| {
                s.sent += 1;
                s.sent_at.push_back(Instant::now());
                s.sent
            })
        };
        if let Some(tid) = next_tid {
            if let Err(e) = conn.send_message(self.message(tid)) {
                self.note_send_error(&e);
            }
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        log_event("connected", conn);
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        tracing::warn!(peer = %conn.peer_addr(), undelivered = undelivered.len(), "session reset");
        self.state.lock().errors += 1;
        self.done.notify_all();
    }
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        tracing::info!(peer = %conn.peer_addr(), %error, "link fault");
        // A peer that is not the one we asked for (wrong nonce, not msgr1 ...) will not
        // become it by retrying: stop with the reason.
        if ErrorClass::of(error) == ErrorClass::Protocol {
            let hint = if matches!(error, SessionError::AddressMismatch { .. }) {
                " (give --peer exactly as `msgrd serve` printed it: IP:PORT/NONCE)"
            } else {
                ""
            };
            self.state.lock().fatal = Some(format!("{error}{hint}"));
            self.done.notify_all();
        }
    }
}

/// One client messenger, its dispatcher and its connection to the server.
pub(crate) struct Client {
    pub(crate) node: msgr::Node,
    pub(crate) driver: Arc<Driver>,
    pub(crate) conn: Arc<NodeConnection>,
    /// Messages this connection must carry in the measured phase.
    pub(crate) share: u64,
    /// Streaming: the session sequence number of the warm-up's end marker.
    pub(crate) warm_seq: u64,
}
