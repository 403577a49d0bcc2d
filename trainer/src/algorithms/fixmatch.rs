//! FixMatch (Sohn et al. 2020), as USB's `fixmatch.py`: the confident
//! predictions on weak views (softmax at temperature 1, hard labels) are
//! pseudo-labels the model must reproduce on strong views of the same
//! images. Where the weak-view logits come from (the live model or its
//! EMA) is the step's business, not the algorithm's.

use tch::Kind;

use super::{Algorithm, StepLogits, StepLosses, masked_consistency, teacher_probs};

#[derive(Debug, Clone)]
pub struct FixMatch {
    /// Confidence a pseudo-label needs (0.95 from scratch; 0.5-0.7 for
    /// pretrained models, per Semi-ViT).
    pub p_cutoff: f64,
    /// Weight of the unsupervised loss.
    pub lambda_u: f64,
}

impl Algorithm for FixMatch {
    fn name(&self) -> &'static str {
        "fixmatch"
    }

    fn uses_unlabeled(&self) -> bool {
        true
    }

    fn losses(&mut self, logits: &StepLogits) -> StepLosses {
        let probs_x_ulb_w = teacher_probs(logits);
        let (max_probs, pseudo_label) = probs_x_ulb_w.max_dim(-1, false);
        let mask = max_probs.ge(self.p_cutoff).to_kind(Kind::Float);
        masked_consistency(logits, &pseudo_label, &mask, self.lambda_u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn only_confident_pseudo_labels_count() {
        let mut fixmatch = FixMatch {
            p_cutoff: 0.9,
            lambda_u: 2.0,
        };
        let logits_x_lb = Tensor::from_slice(&[2.0f32, 0.0]).reshape([1, 2]);
        let y_lb = Tensor::from_slice(&[0i64]);
        // Teacher: first sample confident (class 1), second not.
        let weak = Tensor::from_slice(&[0.0f32, 10.0, 0.2, 0.0]).reshape([2, 2]);
        let strong = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 3.0]).reshape([2, 2]);
        let losses = fixmatch.losses(&StepLogits {
            logits_x_lb: &logits_x_lb,
            y_lb: &y_lb,
            logits_x_ulb_w: Some(&weak),
            logits_x_ulb_s: Some(&strong),
            soft_targets: None,
        });
        assert_eq!(losses.mask_ratio, 0.5);
        let ce = |a: f64, b: f64| -(b - (a.exp() + b.exp()).ln());
        let sup = -(2.0 - (2f64.exp() + 1.0).ln());
        assert!((losses.sup_loss - sup).abs() < 1e-6);
        // Only sample 0 (pseudo-label 1, strong logits [1, 0]) counts; mean over 2.
        let unsup = ce(1.0, 0.0) / 2.0;
        assert!(
            (losses.unsup_loss - unsup).abs() < 1e-6,
            "{}",
            losses.unsup_loss
        );
        let total = losses.total.double_value(&[]);
        assert!((total - (sup + 2.0 * unsup)).abs() < 1e-5);
    }
}
