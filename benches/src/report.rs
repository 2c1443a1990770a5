//! The one-line JSON result every bench client prints (the same fields as `msgrd ping --json`),
//! and the small statistics behind it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One client run. Latencies are round trips in microseconds; `None` where the mode has no
/// per-message round trip (stream). Byte rates count payload bytes in one direction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub transport: String,
    pub mode: String,
    pub size: u64,
    pub count: u64,
    pub concurrency: u64,
    pub connections: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub msgs_per_s: f64,
    pub gbytes_per_s: f64,
    pub cpu_s_client: f64,
    pub wall_s: f64,
}

/// The value at quantile `q` (0..=1) of `sorted`, nearest-rank; `None` when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1].as_secs_f64() * 1e6)
}

/// Linux reports process times in /proc in units of USER_HZ, which is 100 on every
/// architecture the kernel exposes to user space this way (it is fixed, unlike CONFIG_HZ).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of process `pid` (all its threads, live and exited) from
/// `/proc/<pid>/stat`. Resolution is 10 ms, so callers measure runs of a few hundred ms.
pub fn proc_cpu_seconds(pid: &str) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

/// CPU seconds of this process.
pub fn self_cpu_seconds() -> f64 {
    proc_cpu_seconds("self").unwrap_or(f64::NAN)
}

/// utime + stime from the text of a `/proc/<pid>/stat` file. The command name (field 2) is in
/// parentheses and may itself hold spaces or parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// A memory figure of process `pid` in bytes, from the `field` line of `/proc/<pid>/status`
/// (`VmHWM`: peak resident set; `VmRSS`: resident set now).
pub fn proc_status_bytes(pid: &str, field: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_bytes(&status, field).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no `{field}:` line in /proc/{pid}/status"),
        )
    })
}

/// The value of `field` in the text of a `/proc/<pid>/status` file, in bytes (the kernel
/// writes these in kB, meaning KiB).
pub fn parse_status_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") => Some(n * 1024),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[Duration::from_micros(7)], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn stat_cpu_fields_are_found_after_the_command_name() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 9 0 0";
        assert_eq!(parse_stat_cpu(line), Some(4.0));
        assert_eq!(parse_stat_cpu("4242 (x) S 1 2"), None);
        assert!(self_cpu_seconds() >= 0.0);
    }

    #[test]
    fn status_memory_fields_are_read_in_bytes() {
        let text = "Name:\tmsgrd\nVmPeak:\t  300 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_bytes(text, "VmHWM"), Some(1234 * 1024));
        assert_eq!(parse_status_bytes(text, "VmRSS"), Some(1000 * 1024));
        // A field that is only a prefix of another must not match it.
        assert_eq!(parse_status_bytes(text, "VmP"), None);
        assert_eq!(parse_status_bytes("VmHWM:\t12\n", "VmHWM"), None);
        assert!(proc_status_bytes("self", "VmHWM").unwrap() > 0);
    }
}
