//! Per-tick timing statistics: wake-up lateness (period error), work time, overruns.
//! Histograms are fixed-size, so recording never allocates on the loop's hot path.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:>8.1} us   p99 {:>8.1} us   max {:>9.1} us   (n={})",
            self.p50_us, self.p99_us, self.max_us, self.count
        )
    }
}

/// A microsecond histogram from 1 us to 60 s with 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // Bounds are constants known to be valid for hdrhistogram.
        match Histogram::new_with_bounds(1, 60_000_000, 3) {
            Ok(h) => Self(h),
            Err(_) => Self(
                Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid")),
            ),
        }
    }

    pub fn record_s(&mut self, seconds: f64) {
        let us = (seconds * 1e6).round().max(0.0) as u64;
        // saturating_record clamps to the histogram's range instead of failing.
        self.0.saturating_record(us.max(1));
    }

    pub fn summary(&self) -> Summary {
        let h = &self.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            max_us: h.max() as f64,
            mean_us: h.mean(),
        }
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }
}

/// The loop's timing, as reported in status, diagnostics and `bench loop`.
#[derive(Debug, Clone, Default)]
pub struct LoopTiming {
    pub period_error: LatencyHistogram,
    pub work: LatencyHistogram,
    pub overruns: u64,
    pub ticks: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LoopTimingSummary {
    pub ticks: u64,
    pub overruns: u64,
    pub period_error: Summary,
    pub work: Summary,
}

impl LoopTiming {
    pub fn summary(&self) -> LoopTimingSummary {
        LoopTimingSummary {
            ticks: self.ticks,
            overruns: self.overruns,
            period_error: self.period_error.summary(),
            work: self.work.summary(),
        }
    }
}

/// Percentile summary of a list of samples in seconds (benchmarks outside the loop).
pub fn summarize_s(samples: &[f64]) -> Summary {
    let mut h = LatencyHistogram::new();
    for s in samples {
        h.record_s(*s);
    }
    h.summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let samples: Vec<f64> = (1..=1000).map(|i| i as f64 * 1e-6).collect();
        let s = summarize_s(&samples);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{s:?}");
        assert_eq!(s.max_us, 1000.0);
    }
}
