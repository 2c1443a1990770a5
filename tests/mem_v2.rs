//! Every scenario of `msgr_tests`, over the in-process `mem` transport, speaking msgr2.

const T: &str = "mem@v2";

msgr_tests::shared_scenarios!(T, || ();
    scenarios::streaming_large_messages, stress::stress_plain, stress::stress_inject_600);
