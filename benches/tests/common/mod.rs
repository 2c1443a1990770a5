//! Running a baseline binary as the bench harness does: `serve` announces `LISTENING <peer>` on
//! its first line, `ping --peer <peer> --json` prints one JSON line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use msgr_benches::report::RunResult;

/// A `serve` process, killed when dropped.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `bin serve`; returns it and the peer string it announced.
pub fn start_server(bin: &str) -> (Server, String) {
    let mut child = Command::new(bin)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin} serve: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let peer = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("first line is not LISTENING: {line:?}"))
        .to_string();
    (Server(child), peer)
}

/// `bin ping --peer <peer> --json <args>`: must succeed and print exactly one JSON line.
pub fn ping(bin: &str, peer: &str, args: &[&str]) -> RunResult {
    let out = Command::new(bin)
        .args(["ping", "--peer", peer, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap()
}
