//! Every scenario of `msgr_tests`, over the in-process `mem` transport (no sockets).

const T: &str = "mem";

msgr_tests::shared_scenarios!(T, || ();
    scenarios::streaming_large_messages, stress::stress_plain, stress::stress_inject_600,
    stress::stress_inject_30);
