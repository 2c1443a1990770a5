//! Links coming and going: adopting a dialed or accepted link, dialing (with fallback to the
//! next transport), the transports' events, accept resolution, closing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use msgr_core::protocol::{AnySession, ProtocolSession};
use msgr_core::session::{ConnectRequest, SessionError};
use msgr_core::wire::{EntityAddr, EntityType};

use crate::connection::{LinkRef, NodeConnection, ACCESS};
use crate::driver::worker::{Slot, Worker};
use crate::node::{attach_accepted, Accepting, Attached};
use crate::port::Cmd;
use crate::shared::PendingDial;
use crate::transport::{DialError, Dialing, Link, TransportEvent};

impl Worker {
    /// Run `link` on this worker for `conn`: register it, tell the session, drive it. The link
    /// counts against `max_connections` until [`Worker::close_link`] (an accepted one was
    /// counted when admitted).
    pub(crate) fn adopt(
        &mut self,
        mut link: Box<dyn Link>,
        conn: Arc<NodeConnection>,
        outgoing: bool,
    ) {
        let now = self.now();
        if outgoing {
            self.shared.admission.add();
        }
        if self.stop_at.is_some() || (outgoing && conn.is_closed()) {
            self.discard(link);
            if outgoing {
                conn.core.inner.lock().reconnect_pending = false;
            }
            return;
        }
        let token = self.alloc_token();
        if let Err(e) = link.register(&self.registration(token)) {
            tracing::warn!(error = %e, transport = link.transport(), "cannot register a link with the poller");
            self.discard(link);
            if outgoing {
                self.dial_failed(&conn, SessionError::LinkFailed(format!("register: {e}")));
            }
            return;
        }
        let gen = self.shared.next_id();
        let this = LinkRef {
            worker: self.idx,
            token,
            gen,
        };
        let follow = {
            let mut g = conn.core.inner.lock();
            if outgoing {
                g.reconnect_pending = false;
                if g.link.is_some() {
                    // The peer connected to us meanwhile and that link won: this one is moot.
                    drop(g);
                    link.deregister(self.poll.registry());
                    self.discard(link);
                    return;
                }
                if g.ever_linked {
                    conn.core.counters.add_reconnects(1);
                    conn.core
                        .counters
                        .add_replayed(g.session.pending_messages() as u64);
                }
            }
            g.ever_linked = true;
            g.link = Some(this);
            conn.set_transport(link.transport());
            self.shared.counters.count_link(link.transport());
            g.session.link_up(now);
            conn.absorb_events(&mut g)
        };
        tracing::debug!(
            conn = conn.id,
            token,
            outgoing,
            transport = link.transport(),
            "link up"
        );
        self.links.insert(
            token,
            Slot {
                link,
                conn: conn.clone(),
                gen,
                rbuf: BytesMut::new(),
                wanted: 0,
                armed: None,
            },
        );
        self.after(&conn, follow, Some(token));
        self.drive(token, true);
    }

    /// Open a link for `conn` (first connect or reconnect), trying the transports in order.
    pub(crate) fn dial(&mut self, conn: Arc<NodeConnection>) {
        {
            let mut g = conn.core.inner.lock();
            if conn.is_closed()
                || g.link.is_some()
                || self.stop_at.is_some()
                || (g.ever_linked && !g.session.wants_reconnect())
            {
                g.reconnect_pending = false;
                return;
            }
            g.reconnect_pending = true;
        }
        self.dial_from(conn, 0);
    }

    /// Dial with transport `i` (falling back to the next ones, see [`Worker::dial_error`]).
    fn dial_from(&mut self, conn: Arc<NodeConnection>, i: usize) {
        let Some(addr) = conn.core.peer_addr().addr else {
            let e = SessionError::LinkFailed("peer has no IP address".into());
            return self.dial_failed(&conn, e);
        };
        let Some(t) = self.shared.transports().get(i).cloned() else {
            let e = SessionError::LinkFailed("no transport to dial with".into());
            return self.dial_failed(&conn, e);
        };
        let id = self.shared.next_dial();
        tracing::debug!(conn = conn.id, %addr, transport = t.name(), "dialing");
        // Recorded before the dial starts: worker 0 may report its outcome before `dial`
        // returns here.
        let pending = PendingDial {
            conn: conn.clone(),
            transport: i,
        };
        self.shared.dials.lock().insert(id, pending);
        let r = t.dial(addr, id);
        if !matches!(r, Ok(Dialing::Pending)) {
            self.shared.dials.lock().remove(&id);
        }
        match r {
            Ok(Dialing::Ready(link)) => self.adopt(link, conn, true),
            Ok(Dialing::Pending) => {}
            Err(e) => self.dial_error(conn, i, e),
        }
    }

    /// Transport `i` could not dial (at once, or as reported later): fall back to the next
    /// transport when this one cannot reach the peer at all, else the dial failed for good
    /// (the session retries with backoff).
    fn dial_error(&mut self, conn: Arc<NodeConnection>, i: usize, e: DialError) {
        let name = |i: usize| self.shared.transports().get(i).map(|t| t.name());
        let (this, next) = (name(i).unwrap_or("?"), name(i + 1));
        if let Some(next) = next.filter(|_| e.unreachable) {
            self.note_fallback(&conn, this, next, &e);
            return self.dial_from(conn, i + 1);
        }
        tracing::debug!(conn = conn.id, transport = this, error = %e, "dial failed");
        let error = match e.source {
            Some(source) => SessionError::Transport {
                transport: this,
                message: e.message,
                source,
            },
            None => SessionError::LinkFailed(format!("connect over {this}: {}", e.message)),
        };
        self.dial_failed(&conn, error);
    }

    /// Count a fallback; log it once per connection.
    fn note_fallback(&self, conn: &NodeConnection, from: &str, to: &str, e: &DialError) {
        self.shared
            .counters
            .fallbacks
            .fetch_add(1, Ordering::Relaxed);
        let peer = conn.core.peer_label();
        if !conn.fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::info!(%peer, from, to, reason = %e, "{from} cannot reach {peer}, falling back to {to}");
        } else {
            tracing::debug!(%peer, from, to, reason = %e, "falling back");
        }
    }

    /// A dial failed for good: the session sees a link that came up and failed at once.
    fn dial_failed(&mut self, conn: &Arc<NodeConnection>, e: SessionError) {
        let now = self.now();
        let follow = {
            let mut g = conn.core.inner.lock();
            g.reconnect_pending = false;
            if conn.is_closed() || g.link.is_some() {
                return;
            }
            g.ever_linked = true;
            g.session.link_up(now);
            g.session.link_down(e, now);
            conn.absorb_events(&mut g)
        };
        self.after(conn, follow, None);
    }

    /// Transport `i`'s sources are ready (worker 0): accepted links, dial outcomes.
    pub(crate) fn transport_events(&mut self, i: usize) {
        let Some(t) = self.shared.transports().get(i).cloned() else {
            return;
        };
        let mut out = Vec::new();
        t.poll(self.stop_at.is_none(), &mut out);
        for ev in out {
            match ev {
                TransportEvent::Accepted { link, peer } => self.accepted(link, peer),
                TransportEvent::Dialed { dial, link } => {
                    let Some(p) = self.shared.dials.lock().remove(&dial) else {
                        continue;
                    };
                    let home = p.conn.home_worker();
                    if home == self.idx {
                        self.adopt(link, p.conn, true);
                    } else {
                        self.shared.send(
                            home,
                            Cmd::Adopt {
                                link,
                                conn: p.conn,
                                outgoing: true,
                            },
                        );
                    }
                }
                TransportEvent::DialFailed { dial, error } => {
                    let pending = self.shared.dials.lock().remove(&dial);
                    if let Some(p) = pending {
                        self.dial_error(p.conn, p.transport, error);
                    }
                }
                TransportEvent::Shed { .. } => {
                    self.shared.counters.shed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A peer connected: a temporary connection runs its session until its connect is
    /// resolved; workers take accepted links in turn. At `max_connections` the link is closed
    /// at once (the peer sees its connection closed rather than a hang) and counted.
    fn accepted(&mut self, link: Box<dyn Link>, peer: std::net::SocketAddr) {
        if self.stop_at.is_some() {
            return;
        }
        if !self.shared.admission.admit() {
            tracing::debug!(%peer, "at max_connections: closed a new connection at once");
            self.shared.counters.shed.fetch_add(1, Ordering::Relaxed);
            self.linger(link);
            return;
        }
        tracing::debug!(%peer, transport = link.transport(), "accepted a link");
        let s = self.shared.clone();
        let session = AnySession::accept(&s.configs(), peer, self.now());
        let addr = EntityAddr {
            kind: 0,
            nonce: 0,
            addr: Some(peer),
        };
        let conn = s.new_connection(session, addr, EntityType::CLIENT, false);
        let target = self.accept_rr % s.workers();
        self.accept_rr += 1;
        if target == self.idx {
            self.adopt(link, conn, false);
        } else {
            s.send(
                target,
                Cmd::Adopt {
                    link,
                    conn,
                    outgoing: false,
                },
            );
        }
    }

    /// Close the link `token` if it is still generation `gen`.
    pub(crate) fn close_link(&mut self, token: usize, gen: u64) {
        if self.links.get(&token).is_none_or(|l| l.gen != gen) {
            return;
        }
        if let Some(mut slot) = self.links.remove(&token) {
            slot.link.deregister(self.poll.registry());
            self.discard(slot.link);
        }
    }

    /// Close a counted link that is not (or no longer) in `links`, and uncount it.
    fn discard(&mut self, link: Box<dyn Link>) {
        self.shared.admission.release();
        self.linger(link);
    }

    /// Close `link`; keep it for the linger time its transport asks for.
    fn linger(&mut self, mut link: Box<dyn Link>) {
        let linger = link.close();
        if !linger.is_zero() {
            let until = self.now() + linger;
            self.closing.push((link, until));
        }
    }

    /// Answer an accepting session's connect (see `crate::node::attach`).
    pub(crate) fn resolve(&mut self, token: usize, temp: Arc<NodeConnection>, req: ConnectRequest) {
        let s = self.shared.clone();
        let policy = s.policy_for(req.peer_type);
        let acc = Accepting {
            req: &req,
            hook_allows: self.stop_at.is_none()
                && s.dispatchers.verify_accept(&req.peer_addr, req.peer_type),
            my_addr: s.my_addr(),
            policy: &policy,
            now: self.now(),
        };
        let is_current = |l: Option<LinkRef>| l.map(|l| l.token) == Some(token);
        let Some(Attached {
            decision,
            owner,
            old_link,
            lossy_replaced,
        }) = attach_accepted(&ACCESS, &s.registry, &s.throttles, &temp, is_current, acc)
        else {
            return;
        };
        tracing::debug!(peer = ?req.peer_addr, ?decision, "accept resolved");
        if !Arc::ptr_eq(&owner, &temp) {
            // The existing connection took the link over; the temporary one is done.
            temp.core.mark_closed();
            if let Some(l) = self.links.get_mut(&token) {
                owner.set_transport(l.link.transport());
                l.conn = owner.clone();
            }
        }
        if let Some(ol) = old_link {
            if ol.worker == self.idx {
                self.close_link(ol.token, ol.gen);
            } else {
                s.send(
                    ol.worker,
                    Cmd::Close {
                        token: ol.token,
                        gen: ol.gen,
                    },
                );
            }
        }
        if let Some((ex, follow)) = lossy_replaced {
            self.after(&ex, follow, None);
        }
        self.drive(token, false);
    }
}
