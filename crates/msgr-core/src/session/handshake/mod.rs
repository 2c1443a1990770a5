//! The msgr1 handshake, both sides, as steps of [`State::Connecting`](super::State::Connecting) /
//! [`State::Accepting`](super::State::Accepting).
//!
//! ```text
//! client                                   server
//!   banner  ------------------------------>
//!           <------------------------------  banner, server addr, client addr as seen
//!   client addr, connect (+authorizer) --->
//!           <------------------------------  reply (+authorizer reply)
//!                                             READY: open
//!                                             SEQ: + u64 server's in_seq
//!   u64 client's in_seq (after SEQ) ------>
//! ```
//! Error replies (BADPROTOVER, FEATURES, BADAUTHORIZER) and RETRY_SESSION / RETRY_GLOBAL /
//! RESETSESSION leave the link up: the client sends another connect on it. WAIT ends it.
//!
//! Every length a peer announces (authorizers) is checked against the config before we wait
//! for or keep its bytes.
//!
//! This file holds the step types and what both sides share; `client` is the connecting side,
//! `server` the accepting side.

mod client;
mod server;

use bytes::{Bytes, BytesMut};

use crate::wire::{ConnectMsg, ConnectReply, EntityAddr, EntityType, WireError, BANNER};

use super::{Session, SessionError};

const ADDR_LEN: usize = EntityAddr::LEGACY_LEN;

/// Where a client handshake is.
#[derive(Debug, Clone)]
pub(super) enum ClientStep {
    /// Banner sent; waiting for the server's banner, its address and ours as it sees it.
    Banner,
    /// Our address and a connect sent; waiting for the 26-byte reply.
    Reply,
    /// Reply read; waiting for its `authorizer_len` bytes.
    ReplyAuth(ConnectReply),
    /// Reply was SEQ: waiting for the server's le64 acked seq.
    AckSeq(ConnectReply),
}

/// Where a server handshake is.
#[derive(Debug, Clone)]
pub(super) enum ServerStep {
    /// Made by `Session::accept`, link not up yet.
    AwaitLink,
    /// Our banner and addresses sent; waiting for the client's banner and address.
    Banner,
    /// Waiting for a 33-byte connect (first one, or another after an error / retry reply).
    Connect,
    /// Connect read; waiting for its `authorizer_len` bytes.
    ConnectAuth(ConnectMsg),
    /// Connect checked; `AcceptRequest` emitted, waiting for `resolve_accept`.
    Decision { msg: ConnectMsg, auth_reply: Bytes },
    /// SEQ reply sent; waiting for the client's le64 in_seq.
    PeerSeq,
}

/// No IP (family 0) or the unspecified IP: the sender does not know its address.
fn is_blank_ip(a: &EntityAddr) -> bool {
    a.ip().is_none_or(|ip| ip.is_unspecified())
}

/// Same endpoint: address and nonce (the type field is not part of the identity).
fn same_endpoint(a: &EntityAddr, b: &EntityAddr) -> bool {
    a.nonce == b.nonce && a.addr == b.addr
}

/// Fails as soon as the bytes received so far (up to the banner's length) differ from the
/// banner, so a peer speaking another protocol (say a short HTTP request) is dropped at once
/// instead of holding the link until the handshake timeout while we wait for a full banner
/// and address.
fn check_banner_prefix(buf: &[u8]) -> Result<(), SessionError> {
    let n = buf.len().min(BANNER.len());
    if buf[..n] != BANNER[..n] {
        return Err(WireError::BadBanner(buf[..n].to_vec()).into());
    }
    Ok(())
}

/// Takes `n` bytes off the front of `buf` if they are all there.
fn take(buf: &mut BytesMut, n: usize) -> Option<BytesMut> {
    if buf.len() < n {
        buf.reserve(n - buf.len());
        return None;
    }
    Some(buf.split_to(n))
}

impl Session {
    fn my_type(&self) -> EntityType {
        self.config.my_name.kind
    }

    fn required_features(&self) -> u64 {
        self.config.features_required | self.policy.features_required
    }

    fn check_authorizer_len(&self, len: u32) -> Result<(), SessionError> {
        if len > self.config.max_authorizer_len {
            return Err(WireError::LimitExceeded {
                what: "authorizer",
                len: len.into(),
                limit: self.config.max_authorizer_len.into(),
            }
            .into());
        }
        Ok(())
    }
}
