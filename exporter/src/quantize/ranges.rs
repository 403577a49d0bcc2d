//! Activation ranges from calibration: every value seen goes into a
//! histogram per tensor, and a method turns the histogram into the range
//! that is quantized.
//!
//! The histogram covers `[-R, R]` in [`BINS`] bins; when a value beyond R
//! arrives, R doubles and neighbouring bins merge pairwise, which is exact
//! (no re-binning error), so the result does not depend on the order the
//! images came in beyond the final R.

use std::collections::HashMap;

/// Bins of each histogram: fine enough that the 99.999th percentile of
/// a 224 px activation map is resolved within 1/1024 of its range.
pub const BINS: usize = 2048;

/// How a range is chosen from the histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeMethod {
    /// Everything seen: no value saturates, but one outlier stretches the
    /// scale of all the others.
    MinMax,
    /// The `p`-th percentile on each side (e.g. 99.999): the rarest values
    /// saturate, the rest get finer steps.
    Percentile(f64),
    /// The threshold whose quantized histogram is closest to the measured
    /// one in KL divergence (TensorRT's entropy calibration).
    Entropy,
}

impl std::fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeMethod::MinMax => f.write_str("min-max"),
            RangeMethod::Percentile(p) => write!(f, "percentile {p}"),
            RangeMethod::Entropy => f.write_str("entropy"),
        }
    }
}

impl RangeMethod {
    /// Parses `min-max`, `percentile` (99.999), `percentile:P` or `entropy`.
    pub fn parse(text: &str) -> Option<RangeMethod> {
        match text {
            "min-max" => Some(RangeMethod::MinMax),
            "percentile" => Some(RangeMethod::Percentile(99.999)),
            "entropy" => Some(RangeMethod::Entropy),
            _ => {
                let p: f64 = text.strip_prefix("percentile:")?.parse().ok()?;
                (50.0..=100.0)
                    .contains(&p)
                    .then_some(RangeMethod::Percentile(p))
            }
        }
    }
}

/// What was seen of one tensor.
#[derive(Debug, Clone)]
pub struct TensorStats {
    min: f32,
    max: f32,
    /// R of the module doc; 0 before the first non-zero value.
    half_range: f32,
    bins: Vec<u64>,
}

impl Default for TensorStats {
    fn default() -> Self {
        TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            half_range: 0.0,
            bins: vec![0; BINS],
        }
    }
}

impl TensorStats {
    /// Adds the values of one batch (non-finite values are not counted).
    pub fn add(&mut self, values: &[f32]) {
        let finite = values.iter().copied().filter(|x| x.is_finite());
        let (lo, hi) = finite.fold((self.min, self.max), |(lo, hi), x| (lo.min(x), hi.max(x)));
        (self.min, self.max) = (lo, hi);
        let reach = lo.abs().max(hi.abs());
        if self.half_range == 0.0 {
            self.half_range = reach;
        }
        while reach > self.half_range {
            self.double_range();
        }
        if self.half_range == 0.0 {
            self.bins[BINS / 2] += values.len() as u64;
            return;
        }
        let per_unit = BINS as f32 / (2.0 * self.half_range);
        for x in values.iter().filter(|x| x.is_finite()) {
            let bin = ((x + self.half_range) * per_unit) as usize;
            self.bins[bin.min(BINS - 1)] += 1;
        }
    }

    /// R doubles: old bins `2k, 2k+1` of the doubled layout become bin `k`.
    fn double_range(&mut self) {
        let mut merged = vec![0; BINS];
        for (i, &count) in self.bins.iter().enumerate() {
            merged[(i + BINS / 2) / 2] += count;
        }
        self.bins = merged;
        self.half_range *= 2.0;
    }

    /// The range `method` picks; `(0, 0)` for a tensor never seen.
    pub fn range(&self, method: RangeMethod) -> (f32, f32) {
        if self.min > self.max {
            return (0.0, 0.0);
        }
        let (lo, hi) = match method {
            RangeMethod::MinMax => (self.min, self.max),
            RangeMethod::Percentile(p) => self.percentiles(p),
            RangeMethod::Entropy => self.entropy_range(),
        };
        (lo.max(self.min), hi.min(self.max))
    }

    fn bin_width(&self) -> f32 {
        2.0 * self.half_range / BINS as f32
    }

    /// The left edge of bin `i`.
    fn edge(&self, i: usize) -> f32 {
        -self.half_range + i as f32 * self.bin_width()
    }

    fn percentiles(&self, p: f64) -> (f32, f32) {
        let total: u64 = self.bins.iter().sum();
        let tail = ((1.0 - p / 100.0) * total as f64).floor() as u64;
        let mut seen = 0;
        let first = self.bins.iter().position(|&c| {
            seen += c;
            seen > tail
        });
        seen = 0;
        let last = self.bins.iter().rposition(|&c| {
            seen += c;
            seen > tail
        });
        match (first, last) {
            (Some(first), Some(last)) => (self.edge(first), self.edge(last + 1)),
            _ => (self.min, self.max),
        }
    }

    /// The entropy threshold on `|x|`, applied to both sides.
    fn entropy_range(&self) -> (f32, f32) {
        let half = BINS / 2;
        let magnitudes: Vec<u64> = (0..half)
            .map(|k| self.bins[half + k] + self.bins[half - 1 - k])
            .collect();
        // Values of one sign use all 256 levels of uint8; values of both
        // signs share them.
        let levels = if self.min >= 0.0 { 255 } else { 127 };
        let threshold_bins = super::entropy::best_threshold(&magnitudes, levels);
        let t = threshold_bins as f32 * self.bin_width();
        (-t, t)
    }
}

/// Statistics of many tensors, by name.
#[derive(Debug, Default)]
pub struct Observations {
    pub tensors: HashMap<String, TensorStats>,
}

impl Observations {
    pub fn add(&mut self, name: &str, values: &[f32]) {
        self.tensors
            .entry(name.to_string())
            .or_default()
            .add(values);
    }

    /// The range of every tensor by `method`.
    pub fn ranges(&self, method: RangeMethod) -> HashMap<String, (f32, f32)> {
        let range = |(name, stats): (&String, &TensorStats)| (name.clone(), stats.range(method));
        self.tensors.iter().map(range).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_the_range_keeps_every_count() {
        let mut s = TensorStats::default();
        s.add(&[0.1, -0.1, 0.05]);
        s.add(&[3.0, -7.5]);
        assert_eq!(s.bins.iter().sum::<u64>(), 5);
        assert_eq!(s.range(RangeMethod::MinMax), (-7.5, 3.0));
        assert!(s.half_range >= 7.5);
    }

    #[test]
    fn percentiles_cut_rare_outliers_and_min_max_keeps_them() {
        let mut s = TensorStats::default();
        // Exponentially distributed (max about 11.5), and one outlier.
        let n = 100_000;
        let mut values: Vec<f32> = (0..n)
            .map(|i| -((i as f32 + 0.5) / n as f32).ln())
            .collect();
        values.push(50.0);
        s.add(&values);
        let (lo, hi) = s.range(RangeMethod::Percentile(99.99));
        assert!(lo.abs() < 1e-4, "{lo}");
        assert!((9.0..10.0).contains(&hi), "{hi}");
        assert_eq!(s.range(RangeMethod::MinMax).1, 50.0);
        let (entropy_lo, entropy_hi) = s.range(RangeMethod::Entropy);
        assert!(entropy_lo.abs() < 1e-4, "{entropy_lo}");
        assert!((2.0..15.0).contains(&entropy_hi), "{entropy_hi}");
    }

    #[test]
    fn methods_parse_from_their_names() {
        assert_eq!(RangeMethod::parse("min-max"), Some(RangeMethod::MinMax));
        assert_eq!(
            RangeMethod::parse("percentile:99.9"),
            Some(RangeMethod::Percentile(99.9))
        );
        assert_eq!(RangeMethod::parse("percentile:120"), None);
        assert_eq!(RangeMethod::parse("kl"), None);
        let shown = RangeMethod::Percentile(99.999).to_string();
        assert_eq!(
            RangeMethod::parse(&shown.replace(' ', ":")),
            RangeMethod::parse("percentile")
        );
    }
}
