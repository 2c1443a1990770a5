//! The stage's network: three namespaces `nf0..nf2`, each with a veth whose other end sits on
//! the bridge `nfbr` in the root namespace, addresses 10.77.0.1..3/24, and `tc netem` on the
//! veths (see [`netem`]).

use std::process::Command;

use crate::node::node_ip;

/// Runs `ip` / `tc` / `modprobe`; Err says what ran and what it printed.
pub fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (is it installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespace of node `i`.
pub fn ns(i: u32) -> String {
    format!("nf{i}")
}

fn inner(i: u32) -> String {
    format!("nf{i}n")
}

fn outer(i: u32) -> String {
    format!("nf{i}h")
}

/// Why the stage cannot run here, if it cannot: not root, no `ip` / `tc`, no netem.
pub fn preflight() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("must run as root (it creates network namespaces and netem qdiscs)".into());
    }
    for tool in ["ip", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!("`{tool}` is missing (Debian package iproute2)"));
        }
    }
    // A kernel without sch_netem (CONFIG_NET_SCH_NETEM unset) cannot run the stage: the
    // Soft-RoCE VM's Debian kernel has it.
    let _ = sh("modprobe", &["sch_netem"]);
    sh("ip", &["link", "add", "nfprobe", "type", "dummy"])?;
    let r = sh(
        "tc",
        &[
            "qdisc", "add", "dev", "nfprobe", "root", "netem", "delay", "1ms",
        ],
    );
    let _ = sh("ip", &["link", "del", "nfprobe"]);
    r.map_err(|e| {
        format!("this kernel has no netem qdisc ({e}); run the stage inside scripts/rdma-vm/run.sh")
    })
}

/// Builds the bridge, namespaces and veths for `nodes` nodes.
pub fn build(nodes: u32) -> Result<(), String> {
    teardown(nodes);
    sh("ip", &["link", "add", "nfbr", "type", "bridge"])?;
    sh("ip", &["link", "set", "nfbr", "up"])?;
    for i in 0..nodes {
        let (n, inn, out) = (ns(i), inner(i), outer(i));
        let ip = format!("{}/24", node_ip(i));
        sh("ip", &["netns", "add", &n])?;
        sh(
            "ip",
            &["link", "add", &out, "type", "veth", "peer", "name", &inn],
        )?;
        sh("ip", &["link", "set", &inn, "netns", &n])?;
        sh("ip", &["link", "set", &out, "master", "nfbr", "up"])?;
        sh("ip", &["-n", &n, "addr", "add", &ip, "dev", &inn])?;
        sh("ip", &["-n", &n, "link", "set", &inn, "up"])?;
        sh("ip", &["-n", &n, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Removes what [`build`] made (ignores what is not there).
pub fn teardown(nodes: u32) {
    for i in 0..nodes {
        let _ = sh("ip", &["netns", "del", &ns(i)]);
        let _ = sh("ip", &["link", "del", &outer(i)]);
    }
    let _ = sh("ip", &["link", "del", "nfbr"]);
}

/// Puts netem `spec` (e.g. `["delay", "10ms", "5ms", "loss", "1%"]`) on node `i`'s inner veth
/// end (what it sends; each packet crosses one such qdisc) and, with `both`, on the bridge end
/// too (what it receives: a partition); an empty spec removes them.
pub fn netem(i: u32, spec: &[&str], both: bool) -> Result<(), String> {
    let (n, inn, out) = (ns(i), inner(i), outer(i));
    if spec.is_empty() {
        let _ = sh("tc", &["-n", &n, "qdisc", "del", "dev", &inn, "root"]);
        let _ = sh("tc", &["qdisc", "del", "dev", &out, "root"]);
        return Ok(());
    }
    let mut a = vec!["-n", &n, "qdisc", "replace", "dev", &inn, "root", "netem"];
    a.extend_from_slice(spec);
    sh("tc", &a)?;
    if both {
        let mut b = vec!["qdisc", "replace", "dev", &out, "root", "netem"];
        b.extend_from_slice(spec);
        sh("tc", &b)?;
    } else {
        let _ = sh("tc", &["qdisc", "del", "dev", &out, "root"]);
    }
    Ok(())
}
