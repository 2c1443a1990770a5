//! One driving contract for every protocol's session state machine, so a node driver runs
//! msgr1 and msgr2 sessions (and learns which one an accepted peer speaks) without
//! protocol-specific code.
//!
//! - [`ProtocolSession`]: the contract (the numbered steps at the top of [`crate::session`]),
//!   implemented by [`Session`] (msgr1) and [`SessionV2`] (msgr2.1).
//! - [`AnySession`]: what a driver holds: one of them, or, on an accepted link that may carry
//!   either, a detector that reads the peer's banner (`ceph v027` or `ceph v2\n`; clients of both
//!   protocols write theirs first) and then becomes the right one.
//! - [`Protocol`]: which one; peers' addresses say it as `v1:` / `v2:` prefixes.
//!
//! Module map: this file (the protocol names and the contract), `any` (`AnySession`, the
//! configurations it creates sessions from, the msgr2-to-msgr1 fallback), `detect` (reading an
//! accepted peer's banner).

mod any;
mod detect;
#[cfg(test)]
mod tests;

pub use any::{AnySession, Configs};
pub use detect::Detect;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::message::Message;
use crate::policy::Policy;
use crate::session::{Session, SessionError, SessionEvent, SessionState};
use crate::session_v2::SessionV2;
use crate::wire::{EntityAddr, EntityName};

/// A messenger protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Ceph's messenger v1 (`ceph v027`), what every Ceph release speaks on port 6789.
    #[default]
    V1,
    /// Ceph's messenger v2.1 (`ceph v2`), Nautilus and later, port 3300 by convention.
    V2,
}

impl Protocol {
    /// `"v1"` or `"v2"`, as address prefixes and config files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }

    /// Splits a `v1:` / `v2:` prefix off a peer address: the protocol it names (None without a
    /// prefix) and the rest.
    pub fn split_prefix(addr: &str) -> (Option<Protocol>, &str) {
        if let Some(rest) = addr.strip_prefix("v2:") {
            (Some(Protocol::V2), rest)
        } else if let Some(rest) = addr.strip_prefix("v1:") {
            (Some(Protocol::V1), rest)
        } else {
            (None, addr)
        }
    }
}

/// A peer address as command lines and config files write it: `v2:IP:PORT/NONCE` or
/// `v1:IP:PORT/NONCE` (the protocol to speak), or `IP:PORT/NONCE` (None: the messenger's
/// preference).
pub fn parse_peer_addr(
    s: &str,
) -> Result<(Option<Protocol>, EntityAddr), crate::wire::ParseEntityError> {
    let (protocol, rest) = Protocol::split_prefix(s);
    let addr = rest.parse::<EntityAddr>().map_err(|mut e| {
        e.got = s.to_string();
        e
    })?;
    Ok((protocol, addr))
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "msgr1" => Ok(Protocol::V1),
            "v2" | "msgr2" => Ok(Protocol::V2),
            _ => Err(format!(
                "unknown protocol \"{s}\": expected \"v1\" or \"v2\""
            )),
        }
    }
}

/// The driving contract every protocol's session keeps (see [`crate::session`]'s module docs
/// for the order of calls). Accept resolution is protocol-specific and lives on
/// [`AnySession::resolve_accept`].
pub trait ProtocolSession {
    /// Which protocol this is.
    fn protocol(&self) -> Protocol;
    /// A fresh link is established: (re)start the handshake.
    fn link_up(&mut self, now: Instant);
    /// The link failed (read or write error, EOF).
    fn link_down(&mut self, error: SessionError, now: Instant);
    /// Feed received bytes; complete frames are consumed from `buf`.
    fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), SessionError>;
    /// Bytes the receive buffer must hold to finish the message body in progress (0: none).
    fn input_wanted(&self) -> usize;
    /// Append chunks to write, in order; returns how many.
    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize;
    /// The next event for the owner.
    fn poll_event(&mut self) -> Option<SessionEvent>;
    /// Every pending event, appended to `out` in order (what repeated `poll_event` returns).
    /// Sessions hand their whole queue over when `out` is empty, moving no event: a driver
    /// that queues events for its dispatcher anyway takes a burst of messages in one step.
    fn poll_events(&mut self, out: &mut VecDeque<SessionEvent>) {
        while let Some(ev) = self.poll_event() {
            out.push_back(ev);
        }
    }
    /// When [`ProtocolSession::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The session wants a new link (dial with backoff, then `link_up`).
    fn wants_reconnect(&self) -> bool;
    /// Queue a message.
    fn send_message(&mut self, msg: Message);
    /// Ask for a keepalive on the open link.
    fn send_keepalive(&mut self, now: Instant);
    /// End the session at once (undelivered messages come back in `Reset`).
    fn mark_down(&mut self);
    /// Send what is queued, then end.
    fn close(&mut self);
    /// The public state.
    fn state(&self) -> SessionState;
    /// The session has a link (handshaking or open).
    fn has_link(&self) -> bool;
    /// Messages queued or sent but not acknowledged.
    fn pending_messages(&self) -> usize;
    /// The policy in force.
    fn policy(&self) -> &Policy;
    /// Negotiated feature bits (0 before the first open).
    fn features(&self) -> u64;
    /// The peer's name, once known.
    fn peer_name(&self) -> Option<EntityName>;
}

/// Forwards the contract to the inherent methods of the same names.
macro_rules! forward_contract {
    ($t:ty, $proto:expr) => {
        impl ProtocolSession for $t {
            fn protocol(&self) -> Protocol {
                $proto
            }
            fn link_up(&mut self, now: Instant) {
                <$t>::link_up(self, now)
            }
            fn link_down(&mut self, error: SessionError, now: Instant) {
                <$t>::link_down(self, error, now)
            }
            fn handle_input(
                &mut self,
                buf: &mut BytesMut,
                now: Instant,
            ) -> Result<(), SessionError> {
                <$t>::handle_input(self, buf, now)
            }
            fn input_wanted(&self) -> usize {
                <$t>::input_wanted(self)
            }
            fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
                <$t>::poll_transmit(self, out)
            }
            fn poll_event(&mut self) -> Option<SessionEvent> {
                <$t>::poll_event(self)
            }
            fn poll_events(&mut self, out: &mut VecDeque<SessionEvent>) {
                <$t>::poll_events(self, out)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn wants_reconnect(&self) -> bool {
                <$t>::wants_reconnect(self)
            }
            fn send_message(&mut self, msg: Message) {
                <$t>::send_message(self, msg)
            }
            fn send_keepalive(&mut self, now: Instant) {
                <$t>::send_keepalive(self, now)
            }
            fn mark_down(&mut self) {
                <$t>::mark_down(self)
            }
            fn close(&mut self) {
                <$t>::close(self)
            }
            fn state(&self) -> SessionState {
                <$t>::state(self)
            }
            fn has_link(&self) -> bool {
                <$t>::has_link(self)
            }
            fn pending_messages(&self) -> usize {
                <$t>::pending_messages(self)
            }
            fn policy(&self) -> &Policy {
                <$t>::policy(self)
            }
            fn features(&self) -> u64 {
                <$t>::features(self)
            }
            fn peer_name(&self) -> Option<EntityName> {
                <$t>::peer_name(self)
            }
        }
    };
}

forward_contract!(Session, Protocol::V1);
forward_contract!(SessionV2, Protocol::V2);
