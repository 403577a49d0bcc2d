//! Entropy calibration: of the thresholds a histogram of magnitudes could
//! be cut at, the one whose `levels`-step quantization keeps the most of
//! the distribution (least KL divergence between the histogram, outliers
//! clamped into its last bin, and its quantized version). Learnt from
//! TensorRT's description of INT8 calibration; written here for our
//! histograms.

/// The number of leading bins of `hist` to keep (the threshold, in bins).
pub fn best_threshold(hist: &[u64], levels: usize) -> usize {
    let used = hist.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    if used <= levels {
        return used.max(1);
    }
    let mut best = (f64::INFINITY, used);
    for t in levels..=used {
        let kl = divergence(hist, t, levels);
        if kl < best.0 {
            best = (kl, t);
        }
    }
    best.1
}

/// KL(P || Q) for the threshold `t` (see the module doc).
fn divergence(hist: &[u64], t: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = hist[..t].iter().map(|&c| c as f64).collect();
    p[t - 1] += hist[t..].iter().sum::<u64>() as f64;
    let q = quantized(&hist[..t], levels);
    let (sum_p, sum_q) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    p.iter()
        .zip(&q)
        .filter(|(p, _)| **p > 0.0)
        .map(|(p, q)| {
            let (p, q) = (p / sum_p, (q / sum_q).max(1e-12));
            p * (p / q).ln()
        })
        .sum()
}

/// `hist` merged into `levels` groups of neighbouring bins, each group's
/// count spread evenly over its non-empty bins (an empty bin stays empty:
/// quantizing does not invent values).
fn quantized(hist: &[u64], levels: usize) -> Vec<f64> {
    let t = hist.len();
    let mut q = vec![0.0; t];
    for level in 0..levels {
        let (start, end) = (level * t / levels, (level + 1) * t / levels);
        let group = &hist[start..end];
        let filled = group.iter().filter(|&&c| c > 0).count();
        if filled == 0 {
            continue;
        }
        let share = group.iter().sum::<u64>() as f64 / filled as f64;
        for (q, &c) in q[start..end].iter_mut().zip(group) {
            if c > 0 {
                *q = share;
            }
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_outlier_far_out_is_cut_off() {
        // A decaying distribution over the first 300 bins, one value at 1000.
        let mut hist: Vec<u64> = (0..1024)
            .map(|i| if i < 300 { 10_000 >> (i / 30) } else { 0 })
            .collect();
        hist[1000] = 1;
        let t = best_threshold(&hist, 127);
        assert!((127..=320).contains(&t), "{t}");
    }

    #[test]
    fn a_histogram_that_fits_the_levels_is_kept_whole() {
        let hist = [5, 0, 3, 1];
        assert_eq!(best_threshold(&hist, 127), 4);
    }
}
