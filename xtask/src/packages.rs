//! Debian packages the checks need, grouped by what they are for, and installing the missing
//! ones (as root) or printing the command that would (otherwise).

use std::process::Command;

use crate::util::{is_root, output_of, run_status};

pub struct Group {
    pub why: &'static str,
    pub packages: &'static [&'static str],
}

/// Building `rdma-sys` (bindgen needs libclang; it links libibverbs and librdmacm), and the
/// libzmq sources the `zmq` crate compiles for the bench's ZeroMQ baseline (C++, through `c++`).
pub const BUILD: Group = Group {
    why: "build rdma-sys (verbs headers, libclang for bindgen) and the ZeroMQ baseline's vendored libzmq (g++)",
    packages: &[
        "libibverbs-dev",
        "librdmacm-dev",
        "libclang-dev",
        "clang",
        "pkg-config",
        "g++",
    ],
};

/// The interop tests start a real Ceph monitor through scripts/ceph-mon/start.sh.
pub const CEPH: Group = Group {
    why: "run a real Ceph monitor for the msgr1 interop tests",
    packages: &["ceph-mon", "ceph-common", "uuid-runtime", "iproute2"],
};

/// Golden vectors are read from real Ceph captures with tshark (only if a test uses it).
pub const TSHARK: Group = Group {
    why: "decode the captured Ceph traffic some tests use as golden vectors",
    packages: &["tshark"],
};

/// scripts/rdma-vm/run.sh: qemu, a busybox initramfs, the rxe user-space provider, perftest.
pub const RDMA_VM: Group = Group {
    why: "boot the Soft-RoCE VM for the RDMA tests and perftest baselines",
    packages: &[
        "qemu-system-x86",
        "busybox-static",
        "kmod",
        "cpio",
        "xz-utils",
        "rdma-core",
        "ibverbs-providers",
        "ibverbs-utils",
        "rdmacm-utils",
        "perftest",
        "qperf",
        "iperf3",
        "iproute2",
    ],
};

/// Set to 1 to skip the package check (other distributions, hand-made setups).
const SKIP_VAR: &str = "XTASK_NO_PACKAGES";

fn installed(pkg: &str) -> bool {
    output_of("dpkg-query", &["-W", "-f=${Status}", pkg])
        .is_some_and(|s| s.ends_with("install ok installed"))
}

/// Makes sure every package of `groups` is installed. Ok(text) says what was done.
pub fn ensure(groups: &[&Group]) -> Result<String, String> {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        return Ok(format!("system package check skipped ({SKIP_VAR}=1)"));
    }
    if output_of("dpkg-query", &["--version"]).is_none() {
        return Err(format!(
            "cannot check system packages: dpkg-query not found (this is not Debian/Ubuntu). \
             Install the equivalents yourself, then set {SKIP_VAR}=1: {}",
            groups
                .iter()
                .map(|g| format!("{} (to {})", g.packages.join(" "), g.why))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let mut missing: Vec<&str> = Vec::new();
    for g in groups {
        let m: Vec<&str> = g
            .packages
            .iter()
            .copied()
            .filter(|p| !missing.contains(p) && !installed(p))
            .collect();
        if !m.is_empty() {
            println!("    missing, needed to {}: {}", g.why, m.join(" "));
            missing.extend(m);
        }
    }
    if missing.is_empty() {
        return Ok("all system packages present".into());
    }
    let cmd = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "{} package(s) missing and this is not root; install them with:\n    sudo sh -c '{cmd}'\n  then run this command again",
            missing.len()
        ));
    }
    println!("    installing {} package(s) as root", missing.len());
    run_status(Command::new("apt-get").args(["update", "-q"]))?;
    run_status(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-o",
                "DPkg::Lock::Timeout=300",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
            ])
            .args(&missing),
    )
    .map_err(|e| format!("{e}; run `{cmd}` by hand to see why"))?;
    Ok(format!("installed {}", missing.join(" ")))
}
