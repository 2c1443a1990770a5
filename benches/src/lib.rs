//! Baselines the bench matrix (`cargo xtask bench`) compares msgr against.
//!
//! `tcp-baseline` is the floor for the TCP transport: the simplest thing that can move
//! length-prefixed messages over a loopback socket (blocking std sockets, one thread per
//! connection and direction, no protocol beyond a 4-byte length). Whatever msgr adds on top
//! (framing, CRCs, sequencing, acks, a reactor) shows up as the ratio to it.
//!
//! The library part holds the wire format and the statistics so both roles and the tests
//! share them.

pub mod proto;
pub mod report;
