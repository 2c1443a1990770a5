//! Messenger scenarios after Ceph's `src/test/msgr/test_msgr.cc`, written against the public API
//! only and parameterised by the transport name (`"tcp"`, `"rdma"`): a test target calls each
//! scenario with its transport (see `tests/tcp.rs`), so every transport runs the same checks.
//!
//! Waits use generous deadlines only as a safety net (a hung transport fails instead of hanging
//! CI); no assertion is about how long anything took.

pub mod fallback;
pub mod harness;
pub mod hostile;
pub mod scenarios;
pub mod stress;

pub use harness::{node, test_config, Node, Recorder};

/// One `#[test]` per transport-independent scenario, for the transport `$t` (a `&str` constant
/// such as `"tcp"`); `$guard` runs first in each (e.g. a check that the hardware is present).
/// Every transport's test target lists the same suite this way, plus its own extras after a
/// `;` (`module::scenario`, each taking the transport name). A leading `ignore = "why";` marks
/// every generated test `#[ignore = "why"]` (for suites that need hardware).
#[macro_export]
macro_rules! shared_scenarios {
    (ignore = $why:literal; $t:expr, $guard:expr $(; $($module:ident :: $extra:ident),* $(,)?)?) => {
        $crate::shared_scenarios!(@all [#[ignore = $why]] $t, $guard $(; $($module::$extra),*)?);
    };
    ($t:expr, $guard:expr $(; $($module:ident :: $extra:ident),* $(,)?)?) => {
        $crate::shared_scenarios!(@all [] $t, $guard $(; $($module::$extra),*)?);
    };
    (@all $attrs:tt $t:expr, $guard:expr $(; $($module:ident :: $extra:ident),*)?) => {
        $crate::shared_scenarios!(@each $attrs $t, $guard;
            scenarios::simple_round_trip, scenarios::loopback_delivery,
            scenarios::mark_down_and_reconnect, scenarios::racing_connects,
            scenarios::stateful_server_resetcheck, scenarios::remote_reset_reports_undelivered,
            scenarios::stateless_server, scenarios::client_standby, scenarios::reconnect_counts,
            scenarios::large_messages, scenarios::throttle_backpressure,
            scenarios::send_queue_limit, scenarios::accept_hook_refuses,
            scenarios::shutdown_reports_undelivered, scenarios::keepalive_keeps_idle_link
            $($(, $module::$extra)*)?);
    };
    (@each $attrs:tt $t:expr, $guard:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $( $crate::shared_scenarios!(@one $attrs $t, $guard, $module :: $name); )*
    };
    (@one [$($attrs:tt)*] $t:expr, $guard:expr, $module:ident :: $name:ident) => {
        #[test]
        $($attrs)*
        fn $name() {
            $guard();
            $crate::$module::$name($t)
        }
    };
}
