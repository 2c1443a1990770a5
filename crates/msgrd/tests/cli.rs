//! The command line: `--version`, and values refused with a message that says what is
//! expected, before anything starts.

use std::process::{Command, Output};

fn msgrd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msgrd"))
        .args(args)
        .output()
        .expect("msgrd runs")
}

/// `ping` with `extra` appended; it must fail before connecting.
fn ping_error(extra: &[&str]) -> String {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tcp.toml");
    let mut args = vec!["ping", "--config", config, "--peer", "127.0.0.1:9/1"];
    args.extend_from_slice(extra);
    let out = msgrd(&args);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn version_is_the_crates() {
    let out = msgrd(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("msgrd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn zero_or_negative_counts_are_errors() {
    for (flag, value) in [
        ("--count", "0"),
        ("--concurrency", "0"),
        ("--connections", "-1"),
        ("--count", "-5"),
    ] {
        let e = ping_error(&[flag, value]);
        assert!(
            e.contains(&format!("invalid value '{value}' for '{flag}"))
                && e.contains("expected a whole number of at least 1"),
            "{flag} {value}: {e}"
        );
    }
}

#[test]
fn peer_and_peer_type_say_what_they_take() {
    let e = ping_error(&["--peer-type", "rgw"]);
    assert!(
        e.contains("[possible values: mon, mds, osd, client, mgr]"),
        "{e}"
    );
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tcp.toml");
    let out = msgrd(&["ping", "--config", config, "--peer", "localhost:6800/1"]);
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(
        e.contains("expected an entity address IP:PORT/NONCE"),
        "{e}"
    );
}

#[test]
fn every_flag_has_help() {
    for cmd in ["serve", "ping"] {
        // `-h`: one line per flag, its help after a gap; a flag without help is bare.
        let out = msgrd(&[cmd, "-h"]);
        let help = String::from_utf8(out.stdout).unwrap();
        let flags: Vec<&str> = help
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("--"))
            .collect();
        assert!(flags.len() >= 4, "{help}");
        for line in flags {
            assert!(
                line.contains("  "),
                "`msgrd {cmd} -h`: no help for {line:?}\n{help}"
            );
        }
    }
}
