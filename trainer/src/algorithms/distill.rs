//! Knowledge distillation (Hinton et al. 2015): the student matches the
//! teacher's softened predictions on every image, labeled or not, plus the
//! true labels where there are some:
//! `T² · KL(p_teacher ‖ softmax(z_student / T)) + alpha · CE(z_student, y_lb)`.
//!
//! Rows whose label is -1 (unlabeled images in the same batch) only count
//! in the KL term. The self-training stage uses the same objective with
//! the model's own earlier best as the teacher and T = 1.

use tch::{Kind, Tensor};

use super::{Algorithm, StepLogits, StepLosses, cross_entropy_each};

#[derive(Debug, Clone)]
pub struct Distill {
    /// Temperature: the teacher's probabilities are given at it, and the
    /// student's logits are divided by it.
    pub t: f64,
    /// Weight of the cross-entropy on labeled rows.
    pub alpha: f64,
}

impl Algorithm for Distill {
    fn name(&self) -> &'static str {
        "distill"
    }

    fn uses_unlabeled(&self) -> bool {
        false
    }

    fn uses_soft_targets(&self) -> bool {
        true
    }

    fn losses(&mut self, logits: &StepLogits) -> StepLosses {
        let p_teacher = logits
            .soft_targets
            .expect("distillation step without soft targets");
        let log_p_student = (logits.logits_x_lb / self.t).log_softmax(-1, Kind::Float);
        // Σ p (log p - log q); p log p is 0 where p is 0.
        let kl = (p_teacher * (p_teacher.clamp_min(1e-12).log() - &log_p_student))
            .sum_dim_intlist(-1, false, Kind::Float)
            .mean(Kind::Float);
        let labeled = logits.y_lb.ge(0);
        let n_labeled = labeled.sum(Kind::Int64).int64_value(&[]);
        let ce = if n_labeled > 0 {
            let y = logits.y_lb.clamp_min(0);
            let each = cross_entropy_each(logits.logits_x_lb, &y);
            (each * labeled.to_kind(Kind::Float)).sum(Kind::Float) / n_labeled as f64
        } else {
            Tensor::zeros([], (Kind::Float, logits.logits_x_lb.device()))
        };
        let (kl_value, ce_value) = (kl.double_value(&[]), ce.double_value(&[]));
        StepLosses {
            total: kl * (self.t * self.t) + ce * self.alpha,
            sup_loss: ce_value,
            unsup_loss: kl_value,
            // Share of the batch that has a true label.
            mask_ratio: n_labeled as f64 / logits.y_lb.size()[0].max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn losses(t: f64, alpha: f64, labels: &[i64]) -> (StepLosses, Tensor) {
        let student = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.5, 0.5, 2.0])
            .reshape([2, 3])
            .set_requires_grad(true);
        let teacher = Tensor::from_slice(&[0.7f32, 0.2, 0.1, 0.0, 0.5, 0.5]).reshape([2, 3]);
        let y = Tensor::from_slice(labels);
        let out = Distill { t, alpha }.losses(&StepLogits {
            logits_x_lb: &student,
            y_lb: &y,
            logits_x_ulb_w: None,
            logits_x_ulb_s: None,
            soft_targets: Some(&teacher),
        });
        (out, student)
    }

    /// KL and CE computed by hand in f64.
    fn reference(t: f64, alpha: f64, labels: &[i64]) -> f64 {
        let student: [[f64; 3]; 2] = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]];
        let teacher: [[f64; 3]; 2] = [[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]];
        let log_softmax = |z: &[f64; 3], t: f64| {
            let lse = z.iter().map(|v| (v / t).exp()).sum::<f64>().ln();
            z.map(|v| v / t - lse)
        };
        let mut kl = 0.0;
        for (z, p) in student.iter().zip(teacher) {
            let q = log_softmax(z, t);
            kl += (0..3)
                .filter(|&c| p[c] > 0.0)
                .map(|c| p[c] * (p[c].ln() - q[c]))
                .sum::<f64>();
        }
        kl /= 2.0;
        let ce: Vec<f64> = labels
            .iter()
            .zip(student)
            .filter(|(y, _)| **y >= 0)
            .map(|(&y, z)| -log_softmax(&z, 1.0)[y as usize])
            .collect();
        let ce = if ce.is_empty() {
            0.0
        } else {
            ce.iter().sum::<f64>() / ce.len() as f64
        };
        t * t * kl + alpha * ce
    }

    #[test]
    fn loss_matches_the_formula_with_and_without_labels() {
        for (t, alpha, labels) in [
            (1.0, 0.5, [0i64, -1]),
            (4.0, 1.0, [-1, -1]),
            (2.0, 0.3, [2, 1]),
        ] {
            let (out, _) = losses(t, alpha, &labels);
            let total = out.total.double_value(&[]);
            let expected = reference(t, alpha, &labels);
            assert!((total - expected).abs() < 1e-5, "{total} vs {expected}");
        }
    }

    #[test]
    fn gradients_reach_the_student() {
        let (out, student) = losses(2.0, 0.5, &[1, -1]);
        out.total.backward();
        let grad = student.grad();
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
