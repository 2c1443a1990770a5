//! Rule-by-rule tests of the session: two sessions wired back to back in memory.
//!
//! This file holds the shared harness (a client / server [`Pair`] and its helpers); the tests
//! are grouped by topic in the submodules.

mod bad_input;
mod delivery;
mod fuzz;
mod handshake;
mod reconnect;
mod teardown;
mod timeouts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::*;
use crate::message::Priority;
use crate::policy::PolicySet;

fn addr(port: u16, nonce: u32) -> EntityAddr {
    EntityAddr::new(SocketAddr::from(([127, 0, 0, 1], port)), nonce)
}

fn config(kind: EntityType, port: u16, policy: Policy) -> Arc<SessionConfig> {
    let mut c = SessionConfig::new(EntityName::new(kind, port.into()), addr(port, 42));
    c.policies = PolicySet::new(policy);
    c.ack_delay = Duration::ZERO;
    Arc::new(c)
}

/// One side: its session and what it received.
struct End {
    s: Session,
    inbox: BytesMut,
    events: Vec<SessionEvent>,
}

impl End {
    fn new(s: Session) -> Self {
        End {
            s,
            inbox: BytesMut::new(),
            events: Vec::new(),
        }
    }
    fn drain_events(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
    }
    fn messages(&self) -> Vec<&Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }
    fn has(&self, f: impl Fn(&SessionEvent) -> bool) -> bool {
        self.events.iter().any(f)
    }
}

/// Client `a` dialed server `b`. `exchange` moves bytes until nothing moves, resolving accept
/// requests with `decide` against `b_existing` (the server's session table of one entry).
struct Pair {
    a: End,
    b: End,
    b_existing: Option<Session>,
    now: Instant,
}

impl Pair {
    fn new(a_policy: Policy, b_policy: Policy) -> Self {
        let now = Instant::now();
        let ca = config(EntityType::OSD, 6800, a_policy.clone());
        let cb = config(EntityType::OSD, 6900, b_policy);
        let a = Session::connect(ca, addr(6900, 42), EntityType::OSD, a_policy, now);
        let b = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 40000)), now);
        Pair::from_sessions(a, b, now)
    }

    /// `new`, then the handshake: link up and `exchange` (its result is not checked here).
    fn open(a_policy: Policy, b_policy: Policy) -> Self {
        let mut p = Pair::new(a_policy, b_policy);
        p.link_up();
        p.exchange();
        p
    }

    /// Client session `a` and server session `b`, made by the test.
    fn from_sessions(a: Session, b: Session, now: Instant) -> Self {
        Pair {
            a: End::new(a),
            b: End::new(b),
            b_existing: None,
            now,
        }
    }

    fn link_up(&mut self) {
        self.a.inbox.clear();
        self.b.inbox.clear();
        self.a.s.link_up(self.now);
        self.b.s.link_up(self.now);
    }

    /// Move bytes both ways until quiet. Returns errors seen by (a, b).
    fn exchange(&mut self) -> (Option<SessionError>, Option<SessionError>) {
        let (mut ea, mut eb) = (None, None);
        for _ in 0..100 {
            let mut moved = false;
            let mut out = Vec::new();
            while self.a.s.poll_transmit(&mut out) > 0 {}
            for c in out.drain(..) {
                moved = true;
                self.b.inbox.put_slice(&c);
            }
            while self.b.s.poll_transmit(&mut out) > 0 {}
            for c in out.drain(..) {
                moved = true;
                self.a.inbox.put_slice(&c);
            }
            if !self.a.inbox.is_empty() {
                if let Err(e) = self.a.s.handle_input(&mut self.a.inbox, self.now) {
                    ea = Some(e);
                }
            }
            if !self.b.inbox.is_empty() {
                if let Err(e) = self.b.s.handle_input(&mut self.b.inbox, self.now) {
                    eb = Some(e);
                }
            }
            self.a.drain_events();
            while let Some(e) = self.b.s.poll_event() {
                if let SessionEvent::AcceptRequest(req) = &e {
                    let my = self.b.s.my_addr();
                    let pol = self.b.s.policy().clone();
                    let d = accept::decide(self.b_existing.as_ref(), req, &my, &pol);
                    self.b
                        .s
                        .resolve_accept(d, self.b_existing.as_mut(), self.now);
                    moved = true;
                }
                self.b.events.push(e);
            }
            if !moved {
                break;
            }
        }
        (ea, eb)
    }

    /// The server side lost its link object: keep its session as "existing" and make a fresh
    /// accepting session for the next link (what a driver does).
    fn server_new_link(&mut self) {
        let cb = self.b.s.config.clone();
        let fresh = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 40001)), self.now);
        let old = std::mem::replace(&mut self.b.s, fresh);
        if old.state() != SessionState::Closed {
            self.b_existing = Some(old);
        }
    }

    /// The server restarted: a fresh accepting session for the next link and no memory of
    /// the old one.
    fn server_restarts(&mut self) {
        let cb = self.b.s.config.clone();
        self.b.s = Session::accept(cb, SocketAddr::from(([127, 0, 0, 1], 2)), self.now);
        self.b_existing = None;
    }

    /// The client restarted: a brand new session to the server (connect_seq 0), with the same
    /// configuration and `policy`.
    fn client_restarts(&mut self, policy: Policy) {
        let ca = self.a.s.config.clone();
        self.a.s = Session::connect(ca, addr(6900, 42), EntityType::OSD, policy, self.now);
    }
}

fn msg(prio: u16, tid: u64, len: usize) -> Message {
    Message::new(42, vec![tid as u8; len])
        .with_priority(Priority(prio))
        .with_tid(tid)
}
