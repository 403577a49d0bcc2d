//! Optimizers written over tch tensors, so their state (momentum buffers,
//! Adam moments) is ours to save and restore on resume; tch's built-in
//! optimizers keep it inside libtorch where a checkpoint cannot reach it.
//!
//! The learning rate is an argument of every step, not a field: the
//! schedule ([`crate::schedule`]) is a pure function of the step count, so
//! a resumed run computes the same rates without saving them.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

/// Every name in an optimizer's [`Optimizer::state`] starts with this, so a
/// resume file can hold optimizer, EMA and other state side by side.
pub const STATE_PREFIX: &str = "optim.";

/// An optimizer whose state can be checkpointed.
///
/// `params` are `(tensor, weight decay applies)` pairs, always in the same
/// order (the state is indexed by position). Parameters without a gradient
/// are left alone, as PyTorch does. Steps use the gradients as scratch
/// space: they are garbage afterwards, until the next [`zero_grad`].
pub trait Optimizer {
    /// One update from the parameters' gradients at learning rate `lr`.
    fn step(&mut self, params: &[(&Tensor, bool)], lr: f64);
    /// Internal state as named tensors (momentum buffers, Adam moments,
    /// step counts), for checkpoints; names start with [`STATE_PREFIX`].
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores what `state` returned (same parameter order), on the
    /// parameters' devices. Nothing changes when it does not fit.
    fn load_state(
        &mut self,
        state: Vec<(String, Tensor)>,
        params: &[(&Tensor, bool)],
    ) -> Result<(), OptimError>;
}

/// Saved optimizer state that does not fit this optimizer and these parameters.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error(
        "optimizer state '{name}' is not {expected} state: was it saved with another optimizer? \
         resume with the optimizer the run was started with"
    )]
    Foreign {
        name: String,
        expected: &'static str,
    },
    #[error(
        "optimizer state '{name}' is for parameter {index}, but the model has {count}: \
         was it saved for another model?"
    )]
    NoSuchParam {
        name: String,
        index: usize,
        count: usize,
    },
    #[error(
        "optimizer state '{name}' has shape {found:?}, parameter {index} has {expected:?}: \
         was it saved for another model?"
    )]
    Shape {
        name: String,
        index: usize,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("optimizer state for parameter {index} is incomplete: {missing} missing")]
    Incomplete { index: usize, missing: &'static str },
    #[error("optimizer state '{name}': {message}")]
    Tensor { name: String, message: String },
}

/// Whether weight decay applies to a parameter: not to biases and norm
/// weights (1-D tensors), as timm's `param_groups_weight_decay` decides.
pub fn decays(shape: &[usize]) -> bool {
    shape.len() >= 2
}

/// Clears the gradients of `params`.
pub fn zero_grad(params: &[(&Tensor, bool)]) {
    for (p, _) in params {
        let mut grad = p.grad();
        if grad.defined() {
            let _ = grad.detach_().zero_();
        }
    }
}

/// A 0-dim f32 tensor: the multiplier of `addcmul_`, which tch exposes
/// without its `value` argument. Broadcasting it costs no temporary.
fn scalar(v: f64) -> Tensor {
    Tensor::from(v as f32)
}

/// Saved state grouped by parameter index: `optim.<kind>.<index>.<field>`.
type Grouped = BTreeMap<usize, BTreeMap<String, (String, Tensor)>>;

/// Splits state names of optimizer `kind`, checking indices and fields.
fn group_state(
    state: Vec<(String, Tensor)>,
    kind: &'static str,
    fields: &[&str],
    count: usize,
) -> Result<Grouped, OptimError> {
    let prefix = format!("{STATE_PREFIX}{kind}.");
    let mut grouped = Grouped::new();
    for (name, tensor) in state {
        let parsed = name.strip_prefix(&prefix).and_then(|rest| {
            let (index, field) = rest.split_once('.')?;
            let index: usize = index.parse().ok()?;
            fields.contains(&field).then(|| (index, field.to_string()))
        });
        let Some((index, field)) = parsed else {
            return Err(OptimError::Foreign {
                name,
                expected: kind,
            });
        };
        if index >= count {
            return Err(OptimError::NoSuchParam { name, index, count });
        }
        grouped
            .entry(index)
            .or_default()
            .insert(field, (name, tensor));
    }
    Ok(grouped)
}

/// A saved moment as a fresh tensor shaped, typed and laid out like `param`.
fn like_param(
    param: &Tensor,
    index: usize,
    entry: &(String, Tensor),
) -> Result<Tensor, OptimError> {
    let (name, saved) = entry;
    if saved.size() != param.size() {
        return Err(OptimError::Shape {
            name: name.clone(),
            index,
            found: saved.size(),
            expected: param.size(),
        });
    }
    let error = |e: tch::TchError| OptimError::Tensor {
        name: name.clone(),
        message: e.to_string(),
    };
    // zeros_like keeps the parameter's memory layout (channels last).
    let mut out = param
        .f_detach()
        .and_then(|p| p.f_zeros_like())
        .map_err(error)?;
    let src = saved.f_to_kind(param.kind()).map_err(error)?;
    out.f_copy_(&src).map_err(error)?;
    Ok(out)
}

/// Takes `field` of parameter `index` out of its group.
fn take<'a>(
    group: &'a BTreeMap<String, (String, Tensor)>,
    index: usize,
    field: &'static str,
) -> Result<&'a (String, Tensor), OptimError> {
    group.get(field).ok_or(OptimError::Incomplete {
        index,
        missing: field,
    })
}

/// SGD with momentum and optional Nesterov, matching `torch.optim.SGD`
/// (dampening 0).
pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            nesterov,
            weight_decay,
            buffers: Vec::new(),
        }
    }
}

impl Optimizer for Sgd {
    /// Every operation is in place (gradients are scratch space until the
    /// next `zero_grad`): a full-size temporary per parameter and operation
    /// made this step 4x slower than PyTorch's fused multi-tensor SGD.
    fn step(&mut self, params: &[(&Tensor, bool)], lr: f64) {
        self.buffers.resize_with(params.len(), || None);
        tch::no_grad(|| {
            let (wd, momentum, lr) = (
                scalar(self.weight_decay),
                scalar(self.momentum),
                scalar(-lr),
            );
            for ((p, decay), buffer) in params.iter().zip(&mut self.buffers) {
                let mut d_p = p.grad();
                if !d_p.defined() {
                    continue;
                }
                if *decay && self.weight_decay > 0.0 {
                    let _ = d_p.addcmul_(p, &wd);
                }
                if self.momentum > 0.0 {
                    match buffer {
                        Some(buf) => {
                            let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d_p);
                        }
                        None => *buffer = Some(d_p.copy()),
                    }
                    let buf = buffer.as_ref().expect("set above");
                    if self.nesterov {
                        let _ = d_p.addcmul_(buf, &momentum);
                    } else {
                        d_p.copy_(buf);
                    }
                }
                let _ = p.shallow_clone().addcmul_(&d_p, &lr);
            }
        });
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let name = |i: usize| format!("{STATE_PREFIX}sgd.{i}.momentum_buffer");
        self.buffers
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((name(i), b.as_ref()?.detach().copy())))
            .collect()
    }

    fn load_state(
        &mut self,
        state: Vec<(String, Tensor)>,
        params: &[(&Tensor, bool)],
    ) -> Result<(), OptimError> {
        let grouped = group_state(state, "sgd", &["momentum_buffer"], params.len())?;
        let mut buffers: Vec<Option<Tensor>> = (0..params.len()).map(|_| None).collect();
        for (index, group) in &grouped {
            let entry = take(group, *index, "momentum_buffer")?;
            buffers[*index] = Some(like_param(params[*index].0, *index, entry)?);
        }
        self.buffers = buffers;
        Ok(())
    }
}

/// Adam with decoupled weight decay, matching `torch.optim.AdamW` (no
/// amsgrad): `p *= 1 - lr * wd` where decay applies, then the Adam update
/// with bias correction. Each parameter counts its own steps, as PyTorch's
/// per-parameter `state['step']` does.
///
/// All work is in place, with the gradient as scratch for the denominator;
/// tch lacks the `value` argument of `addcmul_`/`addcdiv_`, so two products
/// are rounded in another order than PyTorch's (results agree to about one
/// float32 ulp per step).
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    moments: Vec<Option<Moments>>,
}

/// Per-parameter AdamW state (PyTorch's `step`, `exp_avg`, `exp_avg_sq`).
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

const ADAMW_FIELDS: [&str; 3] = ["step", "exp_avg", "exp_avg_sq"];

impl AdamW {
    /// `betas` and `eps` as in PyTorch (defaults there: (0.9, 0.999), 1e-8).
    pub fn new(betas: (f64, f64), eps: f64, weight_decay: f64) -> Self {
        AdamW {
            beta1: betas.0,
            beta2: betas.1,
            eps,
            weight_decay,
            moments: Vec::new(),
        }
    }

    /// The update of one parameter whose gradient is `grad`.
    fn update(&self, p: &Tensor, decay: bool, mut grad: Tensor, m: &mut Moments, lr: f64) {
        m.step += 1;
        if decay && self.weight_decay != 0.0 {
            let _ = p
                .shallow_clone()
                .g_mul_scalar_(1.0 - lr * self.weight_decay);
        }
        let _ = m.exp_avg.lerp_(&grad, 1.0 - self.beta1);
        let _ = m.exp_avg_sq.g_mul_scalar_(self.beta2);
        let _ = grad.square_();
        let _ = m.exp_avg_sq.addcmul_(&grad, &scalar(1.0 - self.beta2));
        let step = m.step as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - self.beta2.powf(step)).sqrt();
        let step_size = lr / bias_correction1;
        // grad <- denom / -step_size, so that addcdiv_ (value 1) applies
        // -step_size * exp_avg / denom.
        let _ = m.exp_avg_sq.sqrt_out(&grad);
        let _ = grad
            .g_div_scalar_(bias_correction2_sqrt)
            .g_add_scalar_(self.eps)
            .g_div_scalar_(-step_size);
        let _ = p.shallow_clone().addcdiv_(&m.exp_avg, &grad);
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &[(&Tensor, bool)], lr: f64) {
        self.moments.resize_with(params.len(), || None);
        let mut moments = std::mem::take(&mut self.moments);
        tch::no_grad(|| {
            for ((p, decay), slot) in params.iter().zip(&mut moments) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let m = slot.get_or_insert_with(|| Moments {
                    step: 0,
                    exp_avg: p.zeros_like(),
                    exp_avg_sq: p.zeros_like(),
                });
                self.update(p, *decay, grad, m, lr);
            }
        });
        self.moments = moments;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = Vec::new();
        for (i, m) in self.moments.iter().enumerate() {
            let Some(m) = m else { continue };
            let name = |field: &str| format!("{STATE_PREFIX}adamw.{i}.{field}");
            state.push((name("step"), Tensor::from(m.step as i64)));
            state.push((name("exp_avg"), m.exp_avg.detach().copy()));
            state.push((name("exp_avg_sq"), m.exp_avg_sq.detach().copy()));
        }
        state
    }

    fn load_state(
        &mut self,
        state: Vec<(String, Tensor)>,
        params: &[(&Tensor, bool)],
    ) -> Result<(), OptimError> {
        let grouped = group_state(state, "adamw", &ADAMW_FIELDS, params.len())?;
        let mut moments: Vec<Option<Moments>> = (0..params.len()).map(|_| None).collect();
        for (index, group) in &grouped {
            let p = params[*index].0;
            moments[*index] = Some(Moments {
                step: saved_step(take(group, *index, "step")?)?,
                exp_avg: like_param(p, *index, take(group, *index, "exp_avg")?)?,
                exp_avg_sq: like_param(p, *index, take(group, *index, "exp_avg_sq")?)?,
            });
        }
        self.moments = moments;
        Ok(())
    }
}

/// A saved step count: a non-negative integer scalar.
fn saved_step((name, t): &(String, Tensor)) -> Result<u64, OptimError> {
    let bad = |message: String| OptimError::Tensor {
        name: name.clone(),
        message,
    };
    if t.dim() != 0 || t.kind() != Kind::Int64 {
        return Err(bad(format!(
            "a step count must be one int64, found {:?} {:?}",
            t.kind(),
            t.size()
        )));
    }
    let step = t.f_int64_value(&[]).map_err(|e| bad(e.to_string()))?;
    u64::try_from(step).map_err(|_| bad(format!("negative step count {step}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on f(p) = sum(p^2) / 2 (gradient p), checked by hand
    /// against torch.optim.SGD's update rule.
    #[test]
    fn nesterov_momentum_follows_pytorch() {
        let p = Tensor::from_slice(&[1.0f32, -2.0])
            .reshape([1, 2])
            .set_requires_grad(true);
        let mut sgd = Sgd::new(0.9, true, 0.0);
        for _ in 0..2 {
            zero_grad(&[(&p, true)]);
            (&p * &p).sum(tch::Kind::Float).g_mul_scalar(0.5).backward();
            sgd.step(&[(&p, true)], 0.1);
        }
        // step 1: g=1, buf=1, d=1+0.9=1.9, p=1-0.19=0.81
        // step 2: g=0.81, buf=0.9+0.81=1.71, d=0.81+1.539=2.349, p=0.81-0.2349=0.5751
        let got = p.double_value(&[0, 0]);
        assert!((got - 0.5751).abs() < 1e-6, "{got}");
    }

    /// A decaying matrix `p` and a non-decaying vector `b`.
    fn problem() -> (Tensor, Tensor) {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 0.5])
            .reshape([1, 3])
            .set_requires_grad(true);
        let b = Tensor::from_slice(&[0.3f32, -0.1]).set_requires_grad(true);
        (p, b)
    }

    /// One optimizer step on sum(p^2)/2 + sum((b-1)^2)/2.
    fn step(opt: &mut dyn Optimizer, p: &Tensor, b: &Tensor, lr: f64) {
        let params = [(p, true), (b, false)];
        zero_grad(&params);
        let loss = (p * p).sum(Kind::Float) / 2.0 + (b - 1.0).square().sum(Kind::Float) / 2.0;
        loss.backward();
        opt.step(&params, lr);
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.detach().flatten(0, -1)).unwrap()
    }

    /// Reference from torch 2.13: param groups [p] (weight_decay 0.05) and
    /// [b] (weight_decay 0), betas (0.9, 0.999), eps 1e-8, lr set to 0.1,
    /// 0.05, 0.02 before each of three steps.
    #[test]
    fn adamw_follows_pytorch() {
        let (p, b) = problem();
        let mut adamw = AdamW::new((0.9, 0.999), 1e-8, 0.05);
        for lr in [0.1, 0.05, 0.02] {
            step(&mut adamw, &p, &b, lr);
        }
        let close = |got: Vec<f32>, want: &[f32]| {
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{got:?} vs {want:?}"
                );
            }
        };
        close(values(&p), &[0.822_309_8, -1.813_605_7, 0.327_260_35]);
        close(values(&b), &[0.469_385_1, 0.069_680_45]);
        let state: BTreeMap<String, Tensor> = adamw.state().into_iter().collect();
        close(
            values(&state["optim.adamw.0.exp_avg"]),
            &[0.245_848_33, -0.515_636_86, 0.110_987_51],
        );
        close(
            values(&state["optim.adamw.0.exp_avg_sq"]),
            &[0.002_508_846, 0.010_929_11, 0.000_527_844_3],
        );
        assert_eq!(state["optim.adamw.0.step"].int64_value(&[]), 3);
    }

    /// Three steps, state saved into a fresh optimizer, a fourth step:
    /// bit-for-bit the uninterrupted run.
    fn resumes_exactly(make: impl Fn() -> Box<dyn Optimizer>) {
        let lrs = [0.1, 0.05, 0.02, 0.01];
        let (p1, b1) = problem();
        let mut straight = make();
        for lr in lrs {
            step(straight.as_mut(), &p1, &b1, lr);
        }
        let (p2, b2) = problem();
        let mut first = make();
        for lr in &lrs[..3] {
            step(first.as_mut(), &p2, &b2, *lr);
        }
        let mut resumed = make();
        resumed
            .load_state(first.state(), &[(&p2, true), (&b2, false)])
            .unwrap();
        step(resumed.as_mut(), &p2, &b2, lrs[3]);
        assert_eq!(values(&p1), values(&p2));
        assert_eq!(values(&b1), values(&b2));
        let (s1, s2) = (straight.state(), resumed.state());
        assert_eq!(s1.len(), s2.len());
        for ((n1, t1), (n2, t2)) in s1.iter().zip(&s2) {
            assert_eq!(n1, n2);
            assert!(t1.equal(t2), "{n1}");
        }
    }

    #[test]
    fn adamw_resumes_exactly() {
        resumes_exactly(|| Box::new(AdamW::new((0.9, 0.999), 1e-8, 0.05)));
    }

    #[test]
    fn sgd_resumes_exactly() {
        resumes_exactly(|| Box::new(Sgd::new(0.9, true, 1e-4)));
    }

    #[test]
    fn state_of_another_optimizer_or_model_is_refused() {
        let (p, b) = problem();
        let mut sgd = Sgd::new(0.9, false, 0.0);
        step(&mut sgd, &p, &b, 0.1);
        let mut adamw = AdamW::new((0.9, 0.999), 1e-8, 0.0);
        let err = adamw.load_state(sgd.state(), &[(&p, true), (&b, false)]);
        assert!(matches!(err, Err(OptimError::Foreign { .. })), "{err:?}");
        // Parameters in another order: shapes differ.
        let err = sgd.load_state(sgd.state(), &[(&b, false), (&p, true)]);
        assert!(matches!(err, Err(OptimError::Shape { .. })), "{err:?}");
        let err = sgd.load_state(sgd.state(), &[(&p, true)]).unwrap_err();
        assert!(err.to_string().contains("parameter 1"), "{err}");
        let mut partial = AdamW::new((0.9, 0.999), 1e-8, 0.0);
        step(&mut partial, &p, &b, 0.1);
        let mut state = partial.state();
        state.retain(|(n, _)| !n.ends_with("0.step"));
        let err = adamw.load_state(state, &[(&p, true), (&b, false)]);
        assert!(matches!(err, Err(OptimError::Incomplete { .. })), "{err:?}");
    }
}
