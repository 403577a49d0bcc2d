//! One optimisation step: batch to tensors, forward, losses, backward.

use tch::{Device, Kind, Tensor};

use crate::algorithms::{Algorithm, StepLogits, StepLosses};
use crate::config::PseudoLabeler;
use crate::data::loader::PartBatch;
use crate::distill::TargetSource;
use crate::ema::Ema;
use crate::nn::Network;

/// An NCHW float tensor from a prepared batch part.
pub fn images(data: &[f32], input_size: u32, device: Device) -> Tensor {
    let s = input_size as i64;
    let n = data.len() as i64 / (3 * s * s);
    Tensor::from_slice(data)
        .reshape([n, 3, s, s])
        .to_device(device)
}

/// Forward and backward for one step; the gradients are left on the
/// parameters for the optimizer. Returns the logged losses.
///
/// Semi-supervised steps, `PseudoLabeler::Live` (FixMatch, USB's
/// `use_cat`): one train-mode forward pass over the labeled images, the
/// weak and the strong views together, so BatchNorm's statistics (and the
/// running ones the deployed model keeps) come from all three; the weak
/// views' logits are detached. `PseudoLabeler::Ema`: the EMA weights label
/// the weak views in eval mode, and the model sees labeled images and
/// strong views in one pass.
///
/// Distillation steps: `targets` gives the teacher's probabilities for the
/// labeled-part rows (offline by image, online from the same batch).
pub fn forward_backward(
    net: &mut Network,
    ema: Option<&mut Ema>,
    labeler: PseudoLabeler,
    algorithm: &mut dyn Algorithm,
    targets: Option<&TargetSource>,
    parts: &[PartBatch],
    input_size: u32,
) -> StepLosses {
    let device = net.device();
    let x_lb = images(&parts[0].x, input_size, device);
    let y_lb = Tensor::from_slice(&parts[0].labels).to_device(device);
    let soft_targets = targets
        .filter(|_| algorithm.uses_soft_targets())
        .map(|source| source.targets(&x_lb, &parts[0].indices));
    let n_lb = y_lb.size()[0];
    let losses = match parts.get(1).filter(|_| algorithm.uses_unlabeled()) {
        None => {
            let logits_x_lb = net.forward(&x_lb, true);
            algorithm.losses(&StepLogits {
                logits_x_lb: &logits_x_lb,
                y_lb: &y_lb,
                logits_x_ulb_w: None,
                logits_x_ulb_s: None,
                soft_targets: soft_targets.as_ref(),
            })
        }
        Some(ulb) => {
            let x_ulb_w = images(&ulb.x, input_size, device);
            let x_ulb_s = images(
                ulb.x_strong.as_deref().expect("weak+strong part"),
                input_size,
                device,
            );
            let n_ulb = x_ulb_s.size()[0];
            let (logits_x_lb, logits_x_ulb_w, logits_x_ulb_s) = match (labeler, ema) {
                (PseudoLabeler::Ema, Some(ema)) => {
                    let logits_x_ulb_w = tch::no_grad(|| {
                        ema.with_weights(net, |teacher| teacher.forward(&x_ulb_w, false))
                    });
                    let logits = net.forward(&Tensor::cat(&[&x_lb, &x_ulb_s], 0), true);
                    let lb = logits.narrow(0, 0, n_lb);
                    (lb, logits_x_ulb_w, logits.narrow(0, n_lb, n_ulb))
                }
                _ => {
                    let logits = net.forward(&Tensor::cat(&[&x_lb, &x_ulb_w, &x_ulb_s], 0), true);
                    let lb = logits.narrow(0, 0, n_lb);
                    let w = logits.narrow(0, n_lb, n_ulb).detach();
                    (lb, w, logits.narrow(0, n_lb + n_ulb, n_ulb))
                }
            };
            algorithm.losses(&StepLogits {
                logits_x_lb: &logits_x_lb,
                y_lb: &y_lb,
                logits_x_ulb_w: Some(&logits_x_ulb_w),
                logits_x_ulb_s: Some(&logits_x_ulb_s),
                soft_targets: soft_targets.as_ref(),
            })
        }
    };
    if losses.total.isfinite().all().int64_value(&[]) == 1 {
        losses.total.backward();
    }
    losses
}

/// Scales gradients so their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`).
pub fn clip_grad_norm(params: &[(&Tensor, bool)], max_norm: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|(p, _)| p.grad())
            .filter(Tensor::defined)
            .collect();
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.norm().to_kind(Kind::Double))
            .collect();
        if norms.is_empty() {
            return;
        }
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        let scale = max_norm / (total + 1e-6);
        if scale < 1.0 {
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
    });
}
