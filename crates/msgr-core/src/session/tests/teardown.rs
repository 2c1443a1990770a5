//! How a session ends: a lossy fault, `close`, `mark_down`; undelivered messages are reported.

use super::*;

#[test]
fn lossy_fault_resets_and_reports_undelivered() {
    let mut p = Pair::open(Policy::lossy_client(), Policy::stateless_server());
    assert!(p.a.s.policy().lossy);
    p.a.s.send_message(msg(127, 1, 3));
    p.a.s.send_message(msg(127, 2, 3));
    let mut out = Vec::new();
    while p.a.s.poll_transmit(&mut out) > 0 {}
    p.a.s.send_message(msg(127, 3, 3));
    p.a.s.link_down(SessionError::LinkFailed("x".into()), p.now);
    p.a.drain_events();
    assert_eq!(p.a.s.state(), SessionState::Closed);
    let undelivered: Vec<u64> =
        p.a.events
            .iter()
            .find_map(|e| match e {
                SessionEvent::Reset { undelivered, .. } => {
                    Some(undelivered.iter().map(|m| m.tid).collect())
                }
                _ => None,
            })
            .expect("reset");
    assert_eq!(undelivered, vec![1, 2, 3]);
    assert!(!p.a.s.wants_reconnect());
}

#[test]
fn close_sends_close_and_peer_resets() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 3));
    p.a.s.close();
    p.exchange();
    assert_eq!(p.a.s.state(), SessionState::Closed);
    assert_eq!(p.b.s.state(), SessionState::Closed);
    assert_eq!(
        p.b.messages().len(),
        1,
        "queued message goes out before CLOSE"
    );
    assert!(p.b.has(|e| matches!(
        e,
        SessionEvent::Reset {
            error: SessionError::PeerClosed,
            ..
        }
    )));
    assert!(p.a.has(|e| matches!(e, SessionEvent::CloseLink)));
}

#[test]
fn mark_down_reports_everything() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 3));
    p.a.s.mark_down();
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(e, SessionEvent::Reset { error: SessionError::MarkedDown, undelivered } if undelivered.len() == 1)));
    p.a.events.clear();
    p.a.s.send_message(msg(127, 2, 3));
    assert_eq!(p.a.s.pending_messages(), 0);
    p.a.drain_events();
    assert!(p.a.has(|e| matches!(e, SessionEvent::Reset { error: SessionError::Closed, undelivered } if undelivered[0].tid == 2)));
    assert!(p.a.s.try_send_message(msg(127, 3, 3)).is_err());
}
