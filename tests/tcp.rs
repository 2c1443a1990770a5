//! Every scenario of `msgr_tests`, over TCP.

const T: &str = "tcp";

macro_rules! scenarios {
    ($($module:ident :: $name:ident),* $(,)?) => {
        $( #[test] fn $name() { msgr_tests::$module::$name(T) } )*
    };
}

scenarios! {
    scenarios::simple_round_trip,
    scenarios::loopback_delivery,
    scenarios::mark_down_and_reconnect,
    scenarios::racing_connects,
    scenarios::stateful_server_resetcheck,
    scenarios::remote_reset_reports_undelivered,
    scenarios::stateless_server,
    scenarios::client_standby,
    scenarios::reconnect_counts,
    scenarios::large_messages,
    scenarios::streaming_large_messages,
    scenarios::throttle_backpressure,
    scenarios::send_queue_limit,
    scenarios::accept_hook_refuses,
    scenarios::shutdown_reports_undelivered,
    scenarios::keepalive_keeps_idle_link,
    hostile::hostile_peers,
    hostile::short_wrong_banner,
    stress::stress_plain,
    stress::stress_inject_600,
    stress::stress_inject_30,
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
