//! What `ping` measures besides rates: round-trip latencies in an HDR histogram (bounded
//! memory whatever the count, 3 significant digits) and the process's CPU time from
//! `getrusage` (user + system, all threads).

use hdrhistogram::Histogram;

/// Shortest round trip told apart from zero, in nanoseconds: below it values share a bucket.
const LOWEST_NS: u64 = 100;
/// Longest round trip recorded as itself (ping gives up after 120 s); longer ones saturate.
const HIGHEST_NS: u64 = 120_000_000_000;

/// Round-trip times of one connection (merged over all of them at the end).
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Self {
        Latencies(
            Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    pub(crate) fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(LOWEST_NS));
    }

    pub(crate) fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0..=1) in microseconds; None without samples.
    pub(crate) fn quantile_us(&self, q: f64) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q) as f64 / 1e3)
    }

    pub(crate) fn max_us(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.max() as f64 / 1e3)
    }
}

/// User + system CPU seconds this process has used so far (every thread, live and joined).
pub(crate) fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            s(u.user_time()) + s(u.system_time())
        }
        Err(e) => {
            tracing::warn!(error = %e, "getrusage failed: CPU time reported as 0");
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_within_its_precision() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for us in 1..=500u64 {
            a.record_ns(us * 1000);
        }
        for us in 501..=1000u64 {
            b.record_ns(us * 1000);
        }
        let near = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() <= want / 1000.0;
        assert!(near(a.quantile_us(0.5), 250.0), "{:?}", a.quantile_us(0.5));
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert!(near(a.quantile_us(0.5), 500.0), "{:?}", a.quantile_us(0.5));
        assert!(
            near(a.quantile_us(0.99), 990.0),
            "{:?}",
            a.quantile_us(0.99)
        );
        assert!(
            near(a.quantile_us(0.999), 999.0),
            "{:?}",
            a.quantile_us(0.999)
        );
        assert!(near(a.max_us(), 1000.0));
        // Out of range: clamped, not lost.
        a.record_ns(1);
        a.record_ns(u64::MAX);
        assert_eq!(a.count(), 1002);
        assert_eq!(Latencies::new().quantile_us(0.5), None);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 30 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_seconds() > before, "30 ms of spinning used no CPU time");
    }
}
