//! One step of one link ("drive"): read what arrived (unless the connection is paused by its
//! throttle) into the session, fire the session's timer if due, queue the session's output on
//! the link and flush it, absorb events, and hand them to the dispatcher, all outside the
//! connection lock except the session calls.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use msgr_core::protocol::ProtocolSession;
use msgr_core::session::{SessionError, SessionState};

use crate::connection::{LinkRef, NodeConnection};
use crate::driver::worker::{Timer, Worker};
use crate::node::Followup;
use crate::transport::ReadEnd;

/// Bytes collected from a session for writing before the link is flushed: while the link
/// cannot keep up, messages wait in the session's queue, where `send_queue_bytes` applies
/// back-pressure to senders.
const WRITE_BATCH: usize = 4 << 20;

impl Worker {
    /// One step for the link `token`; `read`: look for input (a readiness event or a resume).
    pub(crate) fn drive(&mut self, token: usize, read: bool) {
        if let Some(slot) = self.links.get_mut(&token) {
            if self.faults.fire() {
                tracing::debug!(token, "injecting a link failure");
                slot.link.inject_failure();
            }
        }
        let Some(mut slot) = self.links.remove(&token) else {
            return;
        };
        let now = self.now();
        let conn = slot.conn.clone();
        let this = LinkRef {
            worker: self.idx,
            token,
            gen: slot.gen,
        };

        // The first read happens outside the connection lock (senders are not held up by a
        // system call); further reads (a payload spliced in, more waiting) under it.
        let mut got = 0;
        let mut end = ReadEnd::Drained;
        if read && !conn.is_paused() {
            (got, end) = slot.link.read(&mut slot.rbuf, slot.wanted);
        }

        let mut g = conn.core.inner.lock();
        if g.link.map(|l| l.gen) != Some(slot.gen) {
            // Replaced or marked down meanwhile: this link is no longer the session's.
            drop(g);
            let gen = slot.gen;
            self.links.insert(token, slot);
            self.close_link(token, gen);
            return;
        }
        conn.flush_pending.store(false, Ordering::Release);
        let mut total_in = got;
        let mut input_err = None;
        let mut io_err = None;
        loop {
            if got > 0 {
                if let Err(e) = g.session.handle_input(&mut slot.rbuf, now) {
                    input_err = Some(e);
                    break;
                }
                slot.wanted = g.session.input_wanted();
            }
            match std::mem::replace(&mut end, ReadEnd::Drained) {
                ReadEnd::Drained => {}
                ReadEnd::Yield => self.ready.push((token, true)),
                ReadEnd::Failed(e) => io_err = Some(e),
                ReadEnd::Again if got > 0 && !conn.is_paused() => {
                    (got, end) = slot.link.read(&mut slot.rbuf, slot.wanted);
                    total_in += got;
                    continue;
                }
                ReadEnd::Again => {}
            }
            break;
        }
        conn.core.counters.add_bytes_in(total_in as u64);
        let mut dead = input_err.is_some();
        if !dead {
            if let Some(e) = io_err.take().or_else(|| slot.link.failure()) {
                if g.session.state() != SessionState::Closed {
                    g.session.link_down(e, now);
                }
                dead = true;
            }
        }
        if !dead && g.session.poll_timeout().is_some_and(|t| t <= now) {
            g.session.handle_timeout(now);
        }
        if !dead {
            while slot.link.queued() < WRITE_BATCH {
                let n = g.session.poll_transmit(&mut self.chunks);
                for c in self.chunks.drain(..) {
                    slot.link.queue(c);
                }
                if n == 0 {
                    break;
                }
            }
        }
        // The session may be done with this link (CloseLink: closed, told to wait, faulted
        // itself); what it handed out above is still flushed once before the link closes.
        let (wanted, deadline) = g.keep_link(dead);
        // Without its link the session may still have a deadline (WAIT ends): keep it.
        let unlinked = if wanted {
            None
        } else {
            g.session.poll_timeout()
        };
        let follow = conn.absorb_events(&mut g);
        drop(g);
        if let Some(e) = &input_err {
            if !follow.failure_seen {
                self.shared.counters.count_error(e);
            }
            tracing::debug!(conn = conn.id, error = %e, "closing link on input error");
        }

        let mut write_err = None;
        if slot.link.queued() > 0 && (!dead || input_err.is_some()) {
            match slot.link.flush() {
                Ok(n) => {
                    if n > 0 {
                        conn.core.counters.add_bytes_out(n as u64);
                        conn.note_written(n as u64);
                    }
                }
                Err(e) => write_err = Some(e),
            }
        }

        if let Some(at) = unlinked {
            self.timers.push(at, Timer::Unlinked(conn.clone()));
        }
        let gen = slot.gen;
        if wanted && write_err.is_none() {
            if let Some(d) = deadline {
                if slot.armed.is_none_or(|a| d < a) {
                    slot.armed = Some(d);
                    self.timers.push(d, Timer::Link { token, gen, at: d });
                }
            }
            self.links.insert(token, slot);
        } else {
            self.links.insert(token, slot);
            self.close_link(token, gen);
        }

        match write_err {
            None => self.after(&conn, follow, Some(token)),
            Some(e) => {
                // The link is dead: a pending accept is moot; report what happened so far,
                // then the failure.
                let follow = Followup {
                    accept: None,
                    ..follow
                };
                self.after(&conn, follow, Some(token));
                self.fail(&conn, Some(this), e);
            }
        }
    }

    /// What every path does after absorbing events: timers, registry, dispatch, accept.
    pub(crate) fn after(&mut self, conn: &Arc<NodeConnection>, f: Followup, token: Option<usize>) {
        if let Some(d) = f.reconnect_after {
            let at = self.now() + d;
            self.timers.push(at, Timer::Reconnect(conn.clone()));
        }
        if f.unregister {
            self.shared.registry.unregister(conn);
        }
        conn.run_dispatch();
        if let (Some(req), Some(token)) = (f.accept, token) {
            self.resolve(token, conn.clone(), req);
        }
    }

    /// The deadline of a session without a link came (see [`Timer::Unlinked`]): let the session
    /// act on it (after a WAIT it faults and wants to reconnect).
    pub(crate) fn unlinked_timeout(&mut self, conn: Arc<NodeConnection>) {
        let now = self.now();
        let follow = {
            let mut g = conn.core.inner.lock();
            if g.link.is_some() || g.session.poll_timeout().is_none_or(|t| t > now) {
                return;
            }
            g.session.handle_timeout(now);
            conn.absorb_events(&mut g)
        };
        self.after(&conn, follow, None);
    }

    /// A link failed outside the session step: tell the session its link is gone.
    pub(crate) fn fail(
        &mut self,
        conn: &Arc<NodeConnection>,
        link: Option<LinkRef>,
        e: SessionError,
    ) {
        let now = self.now();
        let follow = {
            let mut g = conn.core.inner.lock();
            if g.link != link || link.is_none() {
                return;
            }
            g.link = None;
            if g.session.state() != SessionState::Closed {
                g.session.link_down(e, now);
            }
            conn.absorb_events(&mut g)
        };
        if let Some(l) = link {
            self.close_link(l.token, l.gen);
        }
        self.after(conn, follow, None);
    }
}
