//! Every scenario of `msgr_tests`, over TCP, with msgr2 as the protocol nodes dial with (the
//! accepting side reads the protocol from the peer's banner).

const T: &str = "tcp@v2";

msgr_tests::shared_scenarios!(T, || ();
    scenarios::streaming_large_messages, stress::stress_plain, stress::stress_inject_600,
    stress::stress_inject_30);

/// A msgr2-preferring node dialing a msgr1-only peer (no prefix on the address): the peer
/// answers the msgr2 banner with msgr1's, the node dials again with msgr1 and every message
/// queued meanwhile arrives, in order.
#[test]
fn a_v2_node_falls_back_to_v1_for_a_v1_only_peer() {
    use msgr::{EntityType, Messenger as _, Protocol};
    use msgr_tests::harness::{check_payload, numbered};
    let server =
        msgr_tests::node("tcp", "osd.0", |c| c.protocol.accept = vec![Protocol::V1]).echo();
    let client = msgr_tests::node(T, "client.1", |_| {});
    let conn = client
        .msgr
        .connect_to(EntityType::OSD, &server.addr())
        .unwrap();
    for tid in 0..20 {
        conn.send_message(numbered(tid, 100, 1000)).unwrap();
    }
    client.rec.wait("20 echoes", |s| s.messages.len() >= 20);
    let got = client.rec.take_messages();
    let tids: Vec<u64> = got.iter().map(|(_, m)| m.tid).collect();
    assert_eq!(tids, (0..20).collect::<Vec<_>>());
    assert!(got.iter().all(|(_, m)| check_payload(m)));
    assert_eq!(conn.protocol(), Protocol::V1);
    assert_eq!(server.msgr.counters().connections.messages_in, 20);
}
