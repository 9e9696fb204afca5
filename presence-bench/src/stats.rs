//! A log-linear latency histogram (values in microseconds, about 1.6% precision, constant memory)
//! with exact count, sum, minimum and maximum.

use std::time::Duration;

/// Values below this are exact; above, each power of two has `SUB` buckets.
const SUB: u64 = 64;
const LINEAR: u64 = 2 * SUB;
/// Buckets for values up to 2^48 µs (about 9 years).
const BUCKETS: usize = (LINEAR + SUB * 42) as usize;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros()); // ≥ 7
        let shift = e - 6;
        let mantissa = v >> shift; // in [64, 128)
        let idx = LINEAR + (shift - 1) * SUB + (mantissa - SUB);
        (idx as usize).min(BUCKETS - 1)
    }

    /// The middle of bucket `idx`.
    fn value_of(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < LINEAR {
            return idx;
        }
        let shift = (idx - LINEAR) / SUB + 1;
        let mantissa = (idx - LINEAR) % SUB + SUB;
        let low = mantissa << shift;
        low + (1u64 << shift) / 2
    }

    pub fn record_us(&mut self, us: u64) {
        if let Some(c) = self.counts.get_mut(Self::index(us)) {
            *c += 1;
        }
        self.count += 1;
        self.sum += u128::from(us);
        self.min = self.min.min(us);
        self.max = self.max.max(us);
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value (µs) at quantile `q` (0..=1): the smallest bucket holding at least
    /// `ceil(q * count)` values, clamped to the exact minimum and maximum. None when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for (idx, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value_of(idx).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_us(0.5), None);
        for v in 1..=100_000u64 {
            h.record_us(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let got = h.quantile_us(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile_us(1.0), Some(100_000));
        assert_eq!(h.quantile_us(0.0), Some(1));
        assert_eq!(h.max_us(), Some(100_000));
        assert_eq!(h.count(), 100_000);
    }

    #[test]
    fn small_values_are_exact_and_huge_ones_fit() {
        let mut h = Histogram::new();
        h.record_us(3);
        h.record_us(3);
        h.record_us(100);
        assert_eq!(h.quantile_us(0.5), Some(3));
        assert_eq!(h.quantile_us(1.0), Some(100));
        h.record_us(u64::MAX);
        assert_eq!(h.max_us(), Some(u64::MAX));
        for v in [127u64, 128, 129, 1000, 1 << 20, (1 << 40) + 12345] {
            let idx = Histogram::index(v);
            let back = Histogram::value_of(idx);
            assert!(
                (back as f64 - v as f64).abs() / v as f64 <= 0.016,
                "{v} -> {idx} -> {back}"
            );
        }
    }
}
