//! SyncBatchNorm: BatchNorm in training mode with the statistics of the
//! whole global batch rather than of this rank's slice, as
//! `torch.nn.SyncBatchNorm` computes them. Each rank sends its slice's
//! per-channel mean, centred sum of squares and count; one differentiable
//! sum over ranks ([`ProcessGroup::sum_over_ranks`]) gives every rank all of
//! them, and autograd carries the gradient back through it to every rank.
//!
//! Everything is centred before it is squared or summed against the
//! gradient: with sums of x and x² (var = E[x²] − E[x]²), a channel whose
//! mean is large against its spread, as convolution outputs often are,
//! cancels in float to noise, forward and backward (measured: 1% off in
//! the first layers' gradients of LCNet after one step).

use semiclass_distributed::ProcessGroup;
use semiclass_models::backend::BatchNormParams;
use tch::{Kind, Tensor};

/// BatchNorm's running-statistics momentum, as in [`super::TchBackend`].
const MOMENTUM: f64 = 0.1;

/// `x` (N, C, ...) normalised per channel with the global batch's mean and
/// biased variance; the running statistics move towards the global mean and
/// unbiased variance, as one process with the whole batch would move them.
pub fn sync_batch_norm(
    x: &Tensor,
    p: &BatchNormParams<Tensor>,
    eps: f64,
    group: &ProcessGroup,
) -> Tensor {
    let local = Local::of(x);
    let global = Global::over_ranks(&local, x.size()[1], group);
    update_running(p, &global);
    let mut shape = vec![1i64; x.dim()];
    shape[1] = -1;
    let alpha = (&global.var + eps).rsqrt() * p.weight.to_kind(Kind::Double);
    // (x − mean)·alpha + bias, written from x centred on this rank's own
    // mean: the two means differ by little, so nothing large cancels.
    let beta = p.bias.to_kind(Kind::Double) + (&local.mean - &global.mean) * &alpha;
    let kind = x.kind();
    local.centred * alpha.to_kind(kind).view(shape.as_slice())
        + beta.to_kind(kind).view(shape.as_slice())
}

/// This rank's slice, per channel.
struct Local {
    /// Mean, in double.
    mean: Tensor,
    /// `x` minus `mean`.
    centred: Tensor,
    /// Sum of `centred`², in double.
    m2: Tensor,
    count: f64,
}

impl Local {
    fn of(x: &Tensor) -> Local {
        let dims = reduced_dims(x);
        let count = (x.numel() as i64 / x.size()[1].max(1)) as f64;
        let mean = x.sum_dim_intlist(dims.as_slice(), false, Kind::Double) / count.max(1.0);
        let mut shape = vec![1i64; x.dim()];
        shape[1] = -1;
        let centred = x - mean.to_kind(x.kind()).view(shape.as_slice());
        let m2 = (&centred * &centred).sum_dim_intlist(dims.as_slice(), false, Kind::Double);
        Local {
            mean,
            centred,
            m2,
            count,
        }
    }
}

/// The whole global batch, per channel.
struct Global {
    mean: Tensor,
    /// Biased (divided by `count`), as BatchNorm normalises.
    var: Tensor,
    count: f64,
}

impl Global {
    /// Every rank's [`Local`] figures, combined with Chan et al.'s parallel
    /// formula: M2 = Σ_r M2_r + n_r (mean_r − mean)², no difference of
    /// large sums anywhere.
    fn over_ranks(local: &Local, channels: i64, group: &ProcessGroup) -> Global {
        let (rank, world) = (group.rank() as i64, group.world_size() as i64);
        let count = Tensor::full([channels], local.count, (Kind::Double, local.mean.device()));
        let mine = Tensor::stack(&[&local.mean, &local.m2, &count], 0).unsqueeze(0);
        // This rank's row of a [world, 3, C] table, zeros elsewhere: summed
        // over ranks, every rank holds every row (an all-gather that
        // autograd differentiates). A failure comes back from
        // `check_passes` after the step; meanwhile the table holds this
        // rank's row alone, which keeps the pass well defined.
        let table = mine.constant_pad_nd([0, 0, 0, 0, rank, world - rank - 1]);
        let table = group.sum_over_ranks(&table);
        let (means, m2s, counts) = (table.select(1, 0), table.select(1, 1), table.select(1, 2));
        let n = counts
            .sum_dim_intlist(0, false, Kind::Double)
            .clamp_min(1.0);
        let mean = (&counts * &means).sum_dim_intlist(0, false, Kind::Double) / &n;
        let spread = (&means - &mean).square() * &counts;
        let var = (m2s + spread).sum_dim_intlist(0, false, Kind::Double) / &n;
        let count = tch::no_grad(|| n.double_value(&[0]));
        Global { mean, var, count }
    }
}

/// Every dimension but the channels' (1).
fn reduced_dims(x: &Tensor) -> Vec<i64> {
    (0..x.dim() as i64).filter(|&d| d != 1).collect()
}

fn update_running(p: &BatchNormParams<Tensor>, global: &Global) {
    // torch keeps the unbiased variance (n / (n - 1)) in the running one.
    let unbiased = global.count / (global.count - 1.0).max(1.0);
    tch::no_grad(|| {
        let kind = p.running_mean.kind();
        let mut rm = p.running_mean.shallow_clone();
        let mut rv = p.running_var.shallow_clone();
        let _ = rm.g_mul_scalar_(1.0 - MOMENTUM);
        let _ = rm.g_add_(&(&global.mean * MOMENTUM).to_kind(kind));
        let _ = rv.g_mul_scalar_(1.0 - MOMENTUM);
        let _ = rv.g_add_(&(&global.var * (MOMENTUM * unbiased)).to_kind(kind));
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tch::Device;

    use super::*;
    use semiclass_distributed::testing as two_ranks;

    const EPS: f64 = 1e-5;

    /// The global batch (8 images, 4 channels), the loss's weights, and
    /// BatchNorm's parameters: the same on every rank. Channels whose mean
    /// is 20 times their spread, as a convolution's output often has: float
    /// sums of x and x² (and of dy·x and dy) then cancel to noise, which
    /// libtorch's kernel avoids by centring first.
    fn inputs() -> (Tensor, Tensor, BatchNormParams<Tensor>) {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([8, 4, 5, 5], opts) * 0.5 + 100;
        let w = Tensor::randn([8, 4, 5, 5], opts);
        let p = BatchNormParams {
            weight: (Tensor::rand([4], opts) + 0.5).set_requires_grad(true),
            bias: Tensor::randn([4], opts).set_requires_grad(true),
            running_mean: Tensor::zeros([4], opts),
            running_var: Tensor::ones([4], opts),
        };
        (x, w, p)
    }

    /// libtorch's own BatchNorm over the whole batch, a loss that is a mean
    /// over images: [y, dx, dweight, dbias, running mean, running var].
    fn one_process() -> [Tensor; 6] {
        let (x, w, p) = inputs();
        let x = x.set_requires_grad(true);
        let y = x.batch_norm(
            Some(&p.weight),
            Some(&p.bias),
            Some(&p.running_mean),
            Some(&p.running_var),
            true,
            MOMENTUM,
            EPS,
            true,
        );
        ((&y * &w).sum(Kind::Float) / 8).backward();
        let grads = [x.grad(), p.weight.grad(), p.bias.grad()];
        let [dx, dw, db] = grads;
        [y.detach(), dx, dw, db, p.running_mean, p.running_var]
    }

    /// The same on this rank's slice of the batch with [`sync_batch_norm`],
    /// each rank's loss the mean over its own images and the parameters'
    /// gradients averaged over ranks (as the trainer does), in the same
    /// order, sliced where the value is per image.
    fn this_rank(group: &ProcessGroup) -> [Tensor; 6] {
        let (x, w, p) = inputs();
        let (rank, world) = (group.rank() as i64, group.world_size() as i64);
        let share = 8 / world;
        let x = x.narrow(0, rank * share, share).set_requires_grad(true);
        let w = w.narrow(0, rank * share, share);
        let y = sync_batch_norm(&x, &p, EPS, group);
        ((&y * &w).sum(Kind::Float) / share).backward();
        group.check_passes().unwrap();
        let mut grads = [p.weight.grad(), p.bias.grad()];
        group.all_reduce_mean(&mut grads).unwrap();
        let [dw, db] = grads;
        // d(mean over ranks of the ranks' losses) / dx = dx / world.
        let dx = x.grad() / world;
        [y.detach(), dx, dw, db, p.running_mean, p.running_var]
    }

    fn assert_matches_one_process(group: &ProcessGroup) {
        let (rank, world) = (group.rank() as i64, group.world_size() as i64);
        let share = 8 / world;
        let mut want = one_process();
        for t in &mut want[..2] {
            *t = t.narrow(0, rank * share, share);
        }
        let names = ["y", "dx", "dweight", "dbias", "running mean", "running var"];
        for ((name, a), b) in names.iter().zip(&want).zip(&this_rank(group)) {
            // Relative to the values' size: x near 100 carries float steps
            // of 8e-6, in libtorch's kernel as in ours.
            let scale = a.abs().max().double_value(&[]).max(1.0);
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(
                diff <= 1e-5 * scale,
                "rank {rank} of {world}: {name} differs by {diff:e} (largest value {scale:e})"
            );
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(20);

    #[test]
    fn one_rank_is_libtorchs_batch_norm() {
        let port = two_ranks::free_port();
        assert_matches_one_process(&two_ranks::group(0, 1, port, TIMEOUT));
    }

    #[test]
    fn two_ranks_give_one_process_values_and_gradients() {
        two_ranks::run("nn::sync_bn::tests::rank_1", TIMEOUT, |group| {
            assert_matches_one_process(&group)
        });
    }

    #[test]
    #[ignore = "rank 1 of two_ranks_give_one_process_values_and_gradients, which runs it"]
    fn rank_1() {
        two_ranks::rank_1(TIMEOUT, |group| assert_matches_one_process(&group));
    }
}
