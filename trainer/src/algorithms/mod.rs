//! Semi-supervised algorithms, one small file each, behind one trait.
//!
//! Vocabulary as in USB (microsoft/Semi-supervised-learning): `x_lb`,
//! `y_lb`, `x_ulb_w` / `x_ulb_s` (weak / strong views of unlabeled images),
//! `logits_x_ulb_w`, `probs_x_ulb_w`, `mask`, `sup_loss`, `unsup_loss`,
//! `lambda_u`, `p_cutoff`, `T`. Adaptive state (thresholds, class
//! histograms) lives inside the algorithm and is saved with every
//! checkpoint, so a resumed run continues with the same thresholds.

mod distill;
mod fixmatch;
mod freematch;
mod supervised;

pub use distill::Distill;
pub use fixmatch::FixMatch;
pub use freematch::FreeMatch;
pub use supervised::Supervised;

use tch::{Kind, Tensor};

/// The logits one training step produced.
pub struct StepLogits<'a> {
    /// Student logits on the labeled batch, and its labels.
    pub logits_x_lb: &'a Tensor,
    pub y_lb: &'a Tensor,
    /// Logits on the weak views of the unlabeled batch (the live model's or
    /// the EMA's; never differentiated). `None` for supervised-only steps.
    pub logits_x_ulb_w: Option<&'a Tensor>,
    /// Student logits on the strong views of the same unlabeled images.
    pub logits_x_ulb_s: Option<&'a Tensor>,
    /// A teacher's probabilities for every row of `logits_x_lb`, at the
    /// distillation temperature. `None` unless the stage distills.
    pub soft_targets: Option<&'a Tensor>,
}

/// Losses of one step: `total` is what backpropagates; the rest is logged.
pub struct StepLosses {
    pub total: Tensor,
    pub sup_loss: f64,
    pub unsup_loss: f64,
    /// Share of unlabeled samples whose pseudo-label passed the threshold.
    pub mask_ratio: f64,
}

/// Why saved algorithm state cannot be restored.
#[derive(Debug, thiserror::Error)]
#[error("algorithm state does not fit {algorithm}: {message}")]
pub struct StateError {
    pub algorithm: &'static str,
    pub message: String,
}

/// A training objective over labeled and (optionally) unlabeled batches.
pub trait Algorithm {
    fn name(&self) -> &'static str;
    /// Whether steps need unlabeled batches (weak and strong views).
    fn uses_unlabeled(&self) -> bool;
    /// Whether steps need a teacher's `soft_targets`.
    fn uses_soft_targets(&self) -> bool {
        false
    }
    fn losses(&mut self, logits: &StepLogits) -> StepLosses;
    /// Adaptive state for checkpoints (JSON, small); none by default.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<(), StateError> {
        Ok(())
    }
}

/// Mean cross-entropy of `logits` against class indices `targets`.
fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    logits.log_softmax(-1, Kind::Float).nll_loss(targets)
}

/// Per-sample cross-entropy (no reduction).
fn cross_entropy_each(logits: &Tensor, targets: &Tensor) -> Tensor {
    let log_probs = logits.log_softmax(-1, Kind::Float);
    -log_probs
        .gather(1, &targets.unsqueeze(1), false)
        .squeeze_dim(1)
}

/// The supervised part every algorithm shares.
fn supervised_part(logits: &StepLogits) -> (Tensor, f64) {
    let sup_loss = cross_entropy(logits.logits_x_lb, logits.y_lb);
    let value = sup_loss.double_value(&[]);
    (sup_loss, value)
}

/// `probs_x_ulb_w`: the probabilities on the weak views (temperature 1:
/// thresholds apply to these, as in USB), without gradient.
fn teacher_probs(logits: &StepLogits) -> Tensor {
    let logits_w = logits
        .logits_x_ulb_w
        .expect("unlabeled step without weak logits");
    tch::no_grad(|| logits_w.detach().softmax(-1, Kind::Float))
}

/// `sup_loss + lambda_u * mean(mask * CE(logits_s, pseudo_label))`.
fn masked_consistency(
    logits: &StepLogits,
    pseudo_label: &Tensor,
    mask: &Tensor,
    lambda_u: f64,
) -> StepLosses {
    let (sup_loss, sup_value) = supervised_part(logits);
    let logits_s = logits
        .logits_x_ulb_s
        .expect("unlabeled step without strong logits");
    let unsup_loss = (cross_entropy_each(logits_s, pseudo_label) * mask).mean(Kind::Float);
    let unsup_value = unsup_loss.double_value(&[]);
    StepLosses {
        total: sup_loss + unsup_loss * lambda_u,
        sup_loss: sup_value,
        unsup_loss: unsup_value,
        mask_ratio: mask.mean(Kind::Float).double_value(&[]),
    }
}
