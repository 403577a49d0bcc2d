//! Per-class precision, recall and F1 from a confusion matrix.

use semiclass_manifest::eval_report::{Averages, ClassScores};

/// Scores of every class of `confusion[true][predicted]`.
pub fn class_scores(names: &[String], confusion: &[Vec<u64>]) -> Vec<ClassScores> {
    names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let tp = confusion[c][c];
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
            let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
            ClassScores {
                id: c,
                name: name.clone(),
                support,
                predicted,
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                // 2PR/(P+R) written with counts: defined whenever either is.
                f1: ratio(2 * tp, support + predicted),
            }
        })
        .collect()
}

/// Unweighted mean over the classes with images; a class never predicted
/// counts with precision 0 (scikit-learn's `zero_division=0`).
pub fn macro_average(scores: &[ClassScores]) -> Averages {
    average(scores, |_| 1.0)
}

/// Mean over the classes weighted by their number of images.
pub fn weighted_average(scores: &[ClassScores]) -> Averages {
    average(scores, |s| s.support as f64)
}

fn average(scores: &[ClassScores], weight: impl Fn(&ClassScores) -> f64) -> Averages {
    let present: Vec<&ClassScores> = scores.iter().filter(|s| s.support > 0).collect();
    let total: f64 = present.iter().map(|s| weight(s)).sum();
    let mean = |value: &dyn Fn(&ClassScores) -> Option<f64>| {
        if total == 0.0 {
            return 0.0;
        }
        present
            .iter()
            .map(|s| weight(s) * value(s).unwrap_or(0.0))
            .sum::<f64>()
            / total
    };
    Averages {
        precision: mean(&|s| s.precision),
        recall: mean(&|s| s.recall),
        f1: mean(&|s| s.f1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn scores_follow_scikit_learns_definitions() {
        // y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,0,1], worked by hand as
        // precision_recall_fscore_support(..., zero_division=0) defines them:
        // precision [2/3, 1/3, 0], recall [2/3, 1/2, 0], f1 [2/3, 0.4, 0].
        let confusion = vec![vec![2, 1, 0], vec![1, 1, 0], vec![0, 1, 0]];
        let s = class_scores(&names(3), &confusion);
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(s[0].precision, 2.0 / 3.0) && close(s[0].recall, 2.0 / 3.0));
        assert!(close(s[1].precision, 1.0 / 3.0) && close(s[1].recall, 0.5));
        assert!(close(s[1].f1, 0.4));
        assert_eq!((s[2].support, s[2].predicted), (1, 0));
        assert_eq!(s[2].precision, None);
        assert_eq!((s[2].recall, s[2].f1), (Some(0.0), Some(0.0)));
        // Macro: precision 1/3, recall 7/18, f1 (2/3 + 0.4) / 3.
        let m = macro_average(&s);
        assert!((m.precision - 1.0 / 3.0).abs() < 1e-9);
        assert!((m.recall - 7.0 / 18.0).abs() < 1e-9);
        assert!((m.f1 - (2.0 / 3.0 + 0.4) / 3.0).abs() < 1e-9);
        // Weighted by support 3, 2, 1: f1 (3 * 2/3 + 2 * 0.4) / 6.
        assert!((weighted_average(&s).f1 - 2.8 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn a_class_without_images_is_left_out_of_the_averages() {
        let confusion = vec![vec![3, 0], vec![0, 0]];
        let s = class_scores(&names(2), &confusion);
        assert_eq!(s[1].recall, None);
        assert_eq!(s[1].f1, None);
        assert_eq!(macro_average(&s).f1, 1.0);
        assert_eq!(macro_average(&class_scores(&names(1), &[vec![0]])).f1, 0.0);
    }
}
