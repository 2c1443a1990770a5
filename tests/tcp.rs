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
    scenarios::stateless_server,
    scenarios::client_standby,
    scenarios::reconnect_counts,
    scenarios::large_messages,
    scenarios::throttle_backpressure,
    scenarios::send_queue_limit,
    scenarios::accept_hook_refuses,
    scenarios::shutdown_reports_undelivered,
    hostile::hostile_peers,
    stress::stress_plain,
    stress::stress_inject_600,
    stress::stress_inject_30,
}
