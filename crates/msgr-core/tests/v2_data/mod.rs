//! Loads the golden vectors under `tests/data/v2/`.
#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;

/// The crc-mode streams, both connections, both directions.
pub const CRC_STREAMS: [&str; 8] = [
    "crc-none.0.c2s",
    "crc-none.0.s2c",
    "crc-none.1.c2s",
    "crc-none.1.s2c",
    "crc-cephx.0.c2s",
    "crc-cephx.0.s2c",
    "crc-cephx.1.c2s",
    "crc-cephx.1.s2c",
];

/// Path of a file under `tests/data/v2/`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/v2")
        .join(name)
}

/// The bytes of `tests/data/v2/NAME.hex`.
pub fn load(name: &str) -> Vec<u8> {
    let p = path(&format!("{name}.hex"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}
