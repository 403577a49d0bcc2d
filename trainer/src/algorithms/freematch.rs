//! FreeMatch (Wang et al. 2023): FixMatch with a self-adaptive threshold.
//! A global threshold follows the teacher's mean confidence (low early,
//! rising as it learns) and is scaled per class by the class's mean
//! predicted probability, so rare or hard classes get a lower bar: what an
//! imbalanced dataset needs. (The paper's fairness regulariser is left out.)

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Algorithm, StateError, StepLogits, StepLosses, masked_consistency, teacher_probs};

/// The adaptive state, saved with checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreeMatchState {
    /// Global threshold: EMA of the mean max probability.
    pub time_p: f64,
    /// Per class: EMA of the mean predicted probability.
    pub p_model: Vec<f64>,
    /// Per class: EMA of the share of pseudo-labels.
    pub label_hist: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct FreeMatch {
    pub lambda_u: f64,
    pub t: f64,
    /// EMA momentum of the adaptive state (0.999 in the paper).
    pub ema_p: f64,
    pub state: FreeMatchState,
}

impl FreeMatch {
    pub fn new(num_classes: usize, lambda_u: f64, t: f64, ema_p: f64) -> Self {
        let uniform = 1.0 / num_classes as f64;
        FreeMatch {
            lambda_u,
            t,
            ema_p,
            state: FreeMatchState {
                time_p: uniform,
                p_model: vec![uniform; num_classes],
                label_hist: vec![uniform; num_classes],
            },
        }
    }

    /// Folds one batch of teacher probabilities into the state.
    fn update(&mut self, probs: &Tensor, max_probs: &Tensor, max_idx: &Tensor) {
        let m = self.ema_p;
        let s = &mut self.state;
        s.time_p = s.time_p * m + (1.0 - m) * max_probs.mean(Kind::Float).double_value(&[]);
        let mean_probs = Vec::<f64>::try_from(probs.mean_dim(0, false, Kind::Double)).expect("1-D");
        let classes = s.p_model.len() as i64;
        let counts = Vec::<f64>::try_from(
            max_idx
                .bincount::<Tensor>(None, classes)
                .to_kind(Kind::Double),
        )
        .expect("1-D");
        let total: f64 = counts.iter().sum::<f64>().max(1.0);
        for c in 0..s.p_model.len() {
            s.p_model[c] = s.p_model[c] * m + (1.0 - m) * mean_probs[c];
            s.label_hist[c] = s.label_hist[c] * m + (1.0 - m) * counts[c] / total;
        }
    }

    /// Per-class thresholds: `time_p * p_model / max(p_model)`.
    pub fn thresholds(&self) -> Vec<f64> {
        let max = self.state.p_model.iter().copied().fold(f64::MIN, f64::max);
        self.state
            .p_model
            .iter()
            .map(|p| self.state.time_p * p / max)
            .collect()
    }
}

impl Algorithm for FreeMatch {
    fn name(&self) -> &'static str {
        "freematch"
    }

    fn uses_unlabeled(&self) -> bool {
        true
    }

    fn losses(&mut self, logits: &StepLogits) -> StepLosses {
        let probs_x_ulb_w = teacher_probs(logits, self.t);
        let (max_probs, pseudo_label) = probs_x_ulb_w.max_dim(-1, false);
        self.update(&probs_x_ulb_w, &max_probs, &pseudo_label);
        let thresholds = Tensor::from_slice(&self.thresholds())
            .to_kind(Kind::Float)
            .to_device(max_probs.device());
        let mask = max_probs
            .ge_tensor(&thresholds.index_select(0, &pseudo_label))
            .to_kind(Kind::Float);
        masked_consistency(logits, &pseudo_label, &mask, self.lambda_u)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).expect("state serialises")
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        let error = |message: String| StateError {
            algorithm: "freematch",
            message,
        };
        let loaded: FreeMatchState =
            serde_json::from_value(state.clone()).map_err(|e| error(e.to_string()))?;
        if loaded.p_model.len() != self.state.p_model.len() {
            return Err(error(format!(
                "{} classes saved, {} now",
                loaded.p_model.len(),
                self.state.p_model.len()
            )));
        }
        self.state = loaded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(fm: &mut FreeMatch, weak: &[f32]) -> StepLosses {
        let n = weak.len() as i64 / 2;
        let logits_x_lb = Tensor::from_slice(&[1.0f32, 0.0]).reshape([1, 2]);
        let y_lb = Tensor::from_slice(&[0i64]);
        let weak = Tensor::from_slice(weak).reshape([n, 2]);
        let strong = weak.copy();
        fm.losses(&StepLogits {
            logits_x_lb: &logits_x_lb,
            y_lb: &y_lb,
            logits_x_ulb_w: Some(&weak),
            logits_x_ulb_s: Some(&strong),
            soft_targets: None,
        })
    }

    #[test]
    fn the_threshold_starts_low_and_rises_with_confidence() {
        let mut fm = FreeMatch::new(2, 1.0, 1.0, 0.9);
        // At start time_p = 0.5: a 0.6-confident prediction already passes.
        let first = step(&mut fm, &[0.4, 0.0]);
        assert_eq!(first.mask_ratio, 1.0);
        for _ in 0..100 {
            step(&mut fm, &[8.0, 0.0, 0.0, 8.0]);
        }
        assert!(fm.state.time_p > 0.99, "{}", fm.state.time_p);
        assert_eq!(step(&mut fm, &[0.4, 0.0]).mask_ratio, 0.0);
    }

    #[test]
    fn a_rarely_predicted_class_gets_a_lower_threshold() {
        let mut fm = FreeMatch::new(2, 1.0, 1.0, 0.9);
        for _ in 0..50 {
            step(&mut fm, &[3.0, 0.0, 3.0, 0.0, 3.0, 0.0, 0.0, 1.0]);
        }
        let [t0, t1] = fm.thresholds()[..] else {
            panic!()
        };
        assert!(t1 < t0, "rare class 1: {t1} vs {t0}");
    }

    #[test]
    fn state_round_trips_and_refuses_another_class_count() {
        let mut fm = FreeMatch::new(2, 1.0, 1.0, 0.9);
        step(&mut fm, &[2.0, 0.0]);
        let mut other = FreeMatch::new(2, 1.0, 1.0, 0.9);
        other.load_state(&fm.state()).unwrap();
        assert_eq!(other.state, fm.state);
        let err = FreeMatch::new(3, 1.0, 1.0, 0.9)
            .load_state(&fm.state())
            .unwrap_err();
        assert!(err.to_string().contains("2 classes saved, 3 now"), "{err}");
    }
}
