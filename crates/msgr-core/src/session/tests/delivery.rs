//! Messages on an open session: priority order and numbering, data crc, ACK coalescing and
//! duplicate suppression.

use bytes::Bytes;

use crate::wire::frame;

use super::*;

#[test]
fn priority_order_seq_numbers_and_ack_trim() {
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    for (prio, tid) in [(127, 1), (196, 2), (64, 3), (196, 4), (127, 5)] {
        p.a.s.send_message(msg(prio, tid, 10));
    }
    p.link_up();
    p.exchange();
    let got: Vec<(u64, u64)> = p.b.messages().iter().map(|m| (m.tid, m.seq)).collect();
    assert_eq!(got, vec![(2, 1), (4, 2), (1, 3), (5, 4), (3, 5)]);
    assert_eq!(
        p.b.messages()[0].src,
        EntityName::new(EntityType::OSD, 6800)
    );
    // The server acknowledged everything: nothing left to replay.
    assert_eq!(p.a.s.pending_messages(), 0);
    assert_eq!(p.b.s.in_seq(), 5);
}

/// The footer of the one MSG frame `s` transmits next (after the handshake is done).
fn next_footer(s: &mut Session) -> (crate::wire::MsgFooter, BytesMut) {
    let mut out = Vec::new();
    while s.poll_transmit(&mut out) > 0 {}
    let mut wire = BytesMut::new();
    for c in &out {
        wire.put_slice(c);
    }
    assert_eq!(wire[0], crate::wire::Tag::Msg as u8);
    let f = crate::wire::MsgFooter::decode(&wire[wire.len() - 21..], true).unwrap();
    (f, wire)
}

#[test]
fn crc_data_default_on_and_nocrc_flag_when_off() {
    use crate::wire::crc::ceph_crc32c;
    use crate::wire::MsgFooter;
    let data = Bytes::from(vec![0xa5u8; 3000]);

    // Default (what a Ceph monitor expects): data crc computed, no NOCRC flag.
    assert!(SessionConfig::new(EntityName::new(EntityType::MON, 0), addr(1, 0)).crc_data);
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 10).with_data(data.clone()));
    let (f, _) = next_footer(&mut p.a.s);
    assert_eq!(f.flags, MsgFooter::FLAG_COMPLETE);
    assert_eq!(f.data_crc, ceph_crc32c(0, &data));

    // crc_data = false: NOCRC set, data crc 0, front crc still there; the peer accepts it.
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    let mut c = SessionConfig::new(EntityName::new(EntityType::OSD, 6800), addr(6800, 42));
    c.policies = PolicySet::new(Policy::lossless_peer());
    c.ack_delay = Duration::ZERO;
    c.crc_data = false;
    p.a.s = Session::connect(
        Arc::new(c),
        addr(6900, 42),
        EntityType::OSD,
        Policy::lossless_peer(),
        p.now,
    );
    p.link_up();
    p.exchange();
    assert_eq!(p.a.s.state(), SessionState::Open);
    let m = msg(127, 2, 10).with_data(data.clone());
    let front_crc = ceph_crc32c(0, &m.front);
    p.a.s.send_message(m);
    let (f, wire) = next_footer(&mut p.a.s);
    assert_eq!(f.flags, MsgFooter::FLAG_COMPLETE | MsgFooter::FLAG_NOCRC);
    assert_eq!(f.data_crc, 0);
    assert_eq!(f.front_crc, front_crc);
    p.b.inbox.put_slice(&wire);
    p.b.s.handle_input(&mut p.b.inbox, p.now).unwrap();
    p.b.drain_events();
    let got = p.b.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, data);
}

#[test]
fn deferred_ack_waits_for_timer_or_outgoing() {
    let now = Instant::now();
    let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
    let mut cfg = SessionConfig::new(EntityName::new(EntityType::OSD, 1), addr(6900, 42));
    cfg.ack_delay = Duration::from_millis(5);
    cfg.ack_every = 1000;
    p.b.s = Session::accept(Arc::new(cfg), SocketAddr::from(([127, 0, 0, 1], 1)), now);
    p.link_up();
    p.exchange();
    p.a.s.send_message(msg(127, 1, 4));
    p.a.s.send_message(msg(127, 2, 4));
    p.exchange();
    assert_eq!(p.b.messages().len(), 2);
    // No ACK yet: the server holds it back.
    assert_eq!(p.a.s.pending_messages(), 2);
    let t = p.b.s.poll_timeout().expect("ack timer armed");
    assert_eq!(t, p.now + Duration::from_millis(5));
    p.now = t;
    p.b.s.handle_timeout(t);
    p.exchange();
    assert_eq!(p.a.s.pending_messages(), 0, "one coalesced ACK for both");
    // An ACK rides along with an outgoing message without waiting.
    p.a.s.send_message(msg(127, 3, 4));
    p.exchange();
    p.b.s.send_message(msg(127, 9, 4));
    p.exchange();
    assert_eq!(p.a.s.pending_messages(), 0);
}

#[test]
fn duplicate_is_dropped() {
    let mut p = Pair::open(Policy::lossless_peer(), Policy::lossless_peer());
    p.a.s.send_message(msg(127, 1, 3));
    p.exchange();
    // Replay message 1 by hand (what a peer that missed our ACK does after reconnecting).
    let mut m = msg(127, 1, 3);
    m.seq = 1;
    let mut raw = BytesMut::new();
    frame::encode_message_into(
        &m,
        1,
        EntityName::new(EntityType::OSD, 6800),
        true,
        &mut raw,
    );
    p.b.s.handle_input(&mut raw, p.now).unwrap();
    p.b.drain_events();
    assert_eq!(p.b.messages().len(), 1);
    assert_eq!(p.b.s.duplicates_dropped(), 1);
}
