//! Losing a link and getting a new one: replay of unacknowledged messages, the SEQ exchange,
//! standby, and peers that forgot the session (RESETSESSION, resetcheck).

use super::*;

#[test]
fn lossless_reconnect_replays_unacked_with_original_seq() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3));
    p.exchange();
    // Messages 2 and 3 are written but the link dies before they arrive.
    p.a.s.send_message(msg(127, 2, 3));
    p.a.s.send_message(msg(196, 3, 3));
    let mut lost = Vec::new();
    while p.a.s.poll_transmit(&mut lost) > 0 {}
    assert!(!lost.is_empty());
    p.a.s
        .link_down(SessionError::LinkFailed("test".into()), p.now);
    p.b.s
        .link_down(SessionError::LinkFailed("test".into()), p.now);
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(
        e,
        SessionEvent::Faulted {
            will_reconnect: true,
            ..
        }
    )));
    assert!(p.a.s.wants_reconnect());
    assert_eq!(p.b.s.state(), SessionState::Standby);
    p.server_new_link();
    p.b.events.clear();
    p.link_up();
    let (ea, eb) = p.exchange();
    assert_eq!((ea, eb), (None, None));
    assert!(p.b_existing.as_ref().unwrap().state() == SessionState::Closed);
    let got: Vec<(u64, u64)> =
        p.b.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some((m.tid, m.seq)),
                _ => None,
            })
            .collect();
    // Replayed in seq order with their original numbers (3 had the higher priority).
    assert_eq!(got, vec![(3, 2), (2, 3)]);
    assert_eq!(p.b.s.in_seq(), 3);
    assert_eq!(p.a.s.connect_seq(), p.b.s.connect_seq());
}

#[test]
fn seq_exchange_drops_what_the_peer_already_has() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3));
    // Delivered, but the ACK is lost with the link.
    let mut out = Vec::new();
    while p.a.s.poll_transmit(&mut out) > 0 {}
    for c in out {
        p.b.inbox.put_slice(&c);
    }
    p.b.s.handle_input(&mut p.b.inbox, p.now).unwrap();
    p.b.drain_events();
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.b.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    assert_eq!(p.a.s.pending_messages(), 1);
    p.server_new_link();
    p.link_up();
    p.exchange();
    assert_eq!(p.b.s.state(), SessionState::Open);
    // The SEQ exchange told the client message 1 arrived: not resent, not redelivered.
    assert_eq!(p.a.s.pending_messages(), 0);
    assert_eq!(p.b.s.duplicates_dropped(), 0);
    assert_eq!(p.b.messages().len(), 1, "delivered once, on the first link");
}

#[test]
fn server_that_forgot_answers_resetsession() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3)); // delivered and acked: numbering in use
    p.exchange();
    p.a.s.send_message(msg(127, 2, 3)); // queued for the lost session
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    // The server restarted: no existing session.
    p.server_restarts();
    p.link_up();
    p.exchange();
    let dropped = p.a.events.iter().find_map(|e| match e {
        SessionEvent::RemoteReset { undelivered } => Some(undelivered.len()),
        _ => None,
    });
    assert_eq!(dropped, Some(1));
    assert_eq!(p.a.s.state(), SessionState::Open);
    assert_eq!(p.a.s.connect_seq(), 1);
    assert_eq!(p.b.s.in_seq(), 0, "nothing reached the new server session");
}

#[test]
fn peer_restart_is_detected_by_resetcheck() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.b.s.send_message(msg(127, 6, 3)); // delivered: numbering is in use
    p.exchange();
    p.b.s.send_message(msg(127, 7, 3)); // queued for the old incarnation of a
    p.b.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.b.drain_events();
    // a restarts: a brand new session, connect_seq 0.
    p.client_restarts(Policy::lossless_peer());
    p.a.events.clear();
    p.server_new_link();
    p.link_up();
    p.exchange();
    assert_eq!(p.b.s.state(), SessionState::Open);
    let dropped = p.b.events.iter().find_map(|e| match e {
        SessionEvent::RemoteReset { undelivered } => Some(undelivered.len()),
        _ => None,
    });
    assert_eq!(dropped, Some(1));
    assert!(p.a.messages().is_empty());
    // Numbering restarted on both sides.
    assert_eq!((p.b.s.in_seq(), p.b.s.out_seq()), (0, 0));
}

#[test]
fn peer_reset_before_any_message_keeps_the_queue() {
    // Our session never numbered a message: a peer starting over loses nothing of it.
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.b.s.send_message(msg(127, 7, 3));
    p.b.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.client_restarts(Policy::lossless_peer());
    p.server_new_link();
    p.link_up();
    p.exchange();
    assert!(!p.b.has(|e| matches!(e, SessionEvent::RemoteReset { .. })));
    assert_eq!(p.a.messages().len(), 1);
}

#[test]
fn standby_then_send_wants_reconnect() {
    let mut p = Pair::open(Policy::lossless_peer_reuse(), Policy::lossless_peer());
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    assert_eq!(p.a.s.state(), SessionState::Standby);
    assert!(!p.a.s.wants_reconnect());
    p.a.s.send_message(msg(127, 1, 1));
    assert!(p.a.s.wants_reconnect());
}

#[test]
fn resetsession_before_any_message_keeps_the_queue() {
    let mut p = Pair::open(Policy::lossless_client(), Policy::stateful_server());
    p.a.s.send_message(msg(127, 1, 3)); // never written
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.server_restarts();
    p.link_up();
    p.exchange();
    assert!(!p.a.has(|e| matches!(e, SessionEvent::RemoteReset { .. })));
    assert_eq!(p.a.s.state(), SessionState::Open);
    assert_eq!(p.b.messages().len(), 1);
    assert_eq!(p.b.s.in_seq(), 1);
}
