//! Every scenario of `msgr_tests`, over TCP.

const T: &str = "tcp";

msgr_tests::shared_scenarios!(T, || ();
    scenarios::streaming_large_messages, hostile::hostile_peers, hostile::short_wrong_banner,
    stress::stress_plain, stress::stress_inject_600, stress::stress_inject_30);

/// Without an RDMA device, a node configured `["rdma", "tcp"]` starts over TCP alone (a
/// warning, not an error) and talks. Where a device exists there is nothing to fall back from.
#[test]
fn rdma_then_tcp_without_a_device_runs_over_tcp() {
    if msgr_tests::harness::has_rdma_device() {
        eprintln!("an RDMA device is present: nothing to fall back from here");
        return;
    }
    msgr_tests::fallback::no_device_falls_back_to_tcp();
}

/// TCP only: `send_message_timeout` waits for room in a full send queue, then gives up with
/// `SendTimeout` (nothing listens at the peer address, so the queue never drains).
#[test]
fn send_message_timeout_gives_up() {
    use msgr::{EntityAddr, EntityType, Messenger, MessengerError};
    let mut cfg = msgr_tests::test_config(T, "client.1");
    cfg.limits.send_queue_bytes = 1024;
    let m = msgr::from_config(&cfg).unwrap();
    m.add_dispatcher(std::sync::Arc::new(msgr_tests::Recorder::default()));
    m.start().unwrap();
    let nowhere = EntityAddr::new("127.0.0.1:9".parse().unwrap(), 0);
    let conn = m.connect(EntityType::OSD, &nowhere).unwrap();
    let msg = || msgr::Message::new(1, vec![0u8; 1000]);
    conn.send_message_timeout(msg(), std::time::Duration::from_millis(10))
        .unwrap();
    assert_eq!(conn.queued_bytes(), 1000);
    match conn.send_message_timeout(msg(), std::time::Duration::from_millis(30)) {
        Err(MessengerError::SendTimeout(d)) => assert_eq!(d.as_millis(), 30),
        other => panic!("expected SendTimeout, got {other:?}"),
    }
    m.shutdown();
}
