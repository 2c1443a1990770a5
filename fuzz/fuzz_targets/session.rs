//! Fuzzes whole sessions: a client and a server `Session` driven by a script of link traffic,
//! injected and corrupted bytes, time steps and API calls (send, keepalive, mark down, close,
//! cut, reconnect, restart), for each policy pair. The interpreter and its invariants (no
//! panic, bounded buffers and output, monotonic sequence numbers, nothing delivered twice or
//! never sent) are msgr-core's `tests/session_fuzz/world.rs`, shared with the bounded CI run
//! `tests/session_fuzz.rs`; see its docs for the script layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/msgr-core/tests/session_fuzz/world.rs"]
mod world;

fuzz_target!(|script: &[u8]| {
    world::World::run(script);
});
