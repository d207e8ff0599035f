//! Latency percentiles (nearest rank), rates and ratios.
//!
//! Percentiles use the nearest-rank definition: the `p`-th percentile of `n` sorted samples is
//! the sample at rank `⌈p·n/100⌉` (1-based), i.e. the smallest sample such that at least `p`%
//! of the samples are less than or equal to it. It is always one of the samples (never
//! interpolated), so a p99.9 of 1,000 samples is the largest one but one.

use serde::Serialize;
use std::time::Duration;

/// A percentile given in thousandths: 500 is the median, 990 is p99, 999 is p99.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMille(u32);

impl PerMille {
    /// The median.
    pub const P50: PerMille = PerMille(500);
    /// The 99th percentile.
    pub const P99: PerMille = PerMille(990);
    /// The 99.9th percentile.
    pub const P999: PerMille = PerMille(999);

    /// `q` thousandths, for 1 ≤ `q` ≤ 1000.
    pub fn new(q: u32) -> Option<PerMille> {
        (1..=1000).contains(&q).then_some(PerMille(q))
    }
}

/// The nearest-rank percentile of samples sorted ascending; `None` when there are none.
pub fn percentile_sorted<T: Copy>(sorted: &[T], q: PerMille) -> Option<T> {
    let n = u128::try_from(sorted.len()).ok()?;
    if n == 0 {
        return None;
    }
    // rank = ceil(q·n / 1000), in 1..=n because 1 ≤ q ≤ 1000 and n ≥ 1.
    let rank = (u128::from(q.0) * n).div_ceil(1000).max(1);
    let index = usize::try_from(rank - 1).ok()?;
    sorted.get(index).copied()
}

/// Latency summary of one step, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest sample, ms.
    pub max_ms: f64,
    /// Arithmetic mean, ms.
    pub mean_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Latency {
    /// Sorts `samples` and summarizes them; `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Latency> {
        samples.sort_unstable();
        let p50 = percentile_sorted(samples, PerMille::P50)?;
        let p99 = percentile_sorted(samples, PerMille::P99)?;
        let p999 = percentile_sorted(samples, PerMille::P999)?;
        let max = *samples.last()?;
        let total: Duration = samples.iter().sum();
        let n = u32::try_from(samples.len()).ok()?;
        Some(Latency {
            count: samples.len(),
            p50_ms: ms(p50),
            p99_ms: ms(p99),
            p999_ms: ms(p999),
            max_ms: ms(max),
            mean_ms: ms(total / n),
        })
    }
}

/// Events per second; `None` for a window that is not positive.
pub fn per_second(count: u64, seconds: f64) -> Option<f64> {
    (seconds > 0.0 && seconds.is_finite()).then(|| count as f64 / seconds)
}

/// `measured / baseline` (e.g. 0.62 for 62% of raw `C_Sign`); `None` when the baseline is not
/// positive.
pub fn ratio(measured: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0 && baseline.is_finite() && measured.is_finite()).then(|| measured / baseline)
}

/// CPU seconds per operation; `None` when no operation completed.
pub fn per_op(cpu_seconds: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_seconds / ops as f64)
}
