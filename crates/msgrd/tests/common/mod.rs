//! Running `msgrd serve` in tests: a guard that kills it, and its first stdout lines.

#![allow(dead_code)] // each including test uses part of it

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Kills the server when the test ends, passed or not.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `msgrd serve` with `args` (logs at warn, stderr dropped): the server and its stdout lines.
pub fn serve(args: &[&std::ffi::OsStr]) -> (Server, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msgrd"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("msgrd runs");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    (Server(child), lines)
}

/// The next line, which must be `PREFIX rest`: the rest.
pub fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    let line = lines.next().expect("a line from msgrd").expect("utf-8");
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?} first, got {line:?}"))
        .to_string()
}
