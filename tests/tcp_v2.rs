//! Every scenario of `msgr_tests`, over TCP, with msgr2 as the protocol nodes dial with (the
//! accepting side reads the protocol from the peer's banner).

const T: &str = "tcp@v2";

msgr_tests::shared_scenarios!(T, || ();
    scenarios::streaming_large_messages, stress::stress_plain, stress::stress_inject_600,
    stress::stress_inject_30);
