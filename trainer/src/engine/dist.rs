//! Data-parallel training over a c10d process group (PyTorch DDP's
//! semantics): every rank takes its slice of each global batch, gradients
//! are averaged over ranks before the optimizer steps, and rank 0's weights
//! and buffers are broadcast at the start of every stage. The global batch
//! and its order come from `StepPlan` (seed, stage, step) alone, so a run on
//! N ranks sees the same images in the same steps as a run on one.
//!
//! What each rank's slice gives is exact only where the per-sample
//! computation does not look at the rest of the batch: BatchNorm in train
//! mode normalises by the rank's own slice (PyTorch DDP's default too), so
//! models with BatchNorm match a one-process run only approximately.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use semiclass_distributed::{DistError, ProcessGroup, Reducer};
use tch::{Kind, Tensor};

use super::TrainError;
use super::evaluate::EvalResult;
use semiclass_manifest::checkpoint::Role;

use crate::data::loader::{PartRequest, Request};
use crate::ema::Ema;
use crate::nn::Network;

/// This process's place in a data-parallel run.
pub struct Dist {
    pub group: Arc<ProcessGroup>,
    /// `run.sync_bn`: BatchNorm's training statistics over the global batch.
    sync_bn: bool,
    /// Nanoseconds spent after backward finishing the gradient averaging
    /// (what the overlap with backward did not hide), for the run's report
    /// of what communication costs.
    averaging_ns: AtomicU64,
    /// The current stage's parameters, hooked so that their gradients are
    /// all-reduced while backward runs ([`Dist::attach`]).
    reducer: Mutex<Option<Reducer>>,
}

impl From<DistError> for TrainError {
    fn from(e: DistError) -> Self {
        TrainError::Distributed(e.to_string())
    }
}

impl Dist {
    pub fn new(group: ProcessGroup, sync_bn: bool) -> Dist {
        Dist {
            group: Arc::new(group),
            sync_bn,
            averaging_ns: AtomicU64::new(0),
            reducer: Mutex::new(None),
        }
    }

    /// Time spent averaging gradients so far.
    pub fn averaging_time(&self) -> Duration {
        Duration::from_nanos(self.averaging_ns.load(Ordering::Relaxed))
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// This rank's slices of a stage's global requests.
    pub fn shard_all(
        &self,
        requests: Vec<Request>,
        role: Role,
    ) -> Result<Vec<Request>, TrainError> {
        let section = match role {
            Role::Large => "large",
            Role::Small => "small",
        };
        requests
            .into_iter()
            .map(|r| self.shard(r, section))
            .collect()
    }

    /// Rank 0's evaluation (`evaluate` runs there only), shared with every
    /// rank. BatchNorm's running statistics (and the EMA of them) are per
    /// rank, so every rank first takes rank 0's: what a later stage reads
    /// from its own files (the best checkpoint, a self-training or
    /// distillation teacher) is then the same on all ranks.
    pub fn evaluate_on_rank0(
        &self,
        net: &mut Network,
        ema: Option<&mut Ema>,
        evaluate: impl FnOnce(&mut Network, Option<&mut Ema>) -> Result<EvalResult, TrainError>,
    ) -> Result<EvalResult, TrainError> {
        self.broadcast_network(net)?;
        if let Some(ema) = &ema {
            self.broadcast_tensors(ema.tensors().into_iter().map(|(_, t)| t))?;
        }
        let own = (self.rank() == 0).then(|| evaluate(net, ema)).transpose()?;
        self.share_eval(own)
    }

    /// This rank's contiguous slice of every part of a global request.
    pub fn shard(&self, request: Request, section: &str) -> Result<Request, TrainError> {
        let parts = request
            .parts
            .into_iter()
            .map(|part| shard_part(part, self.rank(), self.world_size(), section))
            .collect::<Result<_, _>>()?;
        Ok(Request {
            parts,
            seed: request.seed,
        })
    }

    /// Readies a stage's network: SyncBatchNorm over this group when
    /// `run.sync_bn` asks for it.
    pub fn prepare_network(&self, net: &mut Network) {
        net.set_sync_batch_norm(self.sync_bn.then(|| self.group.clone()));
    }

    /// Hooks `net`'s trainable parameters (replacing an earlier stage's
    /// hooks): from here on each step's backward starts their all-reduce
    /// bucket by bucket, and [`Dist::average_gradients`] completes it.
    pub fn attach(&self, net: &Network) -> Result<(), TrainError> {
        let params: Vec<&Tensor> = net.trainable().into_iter().map(|(_, t)| t).collect();
        let mut slot = self.reducer.lock().unwrap_or_else(|e| e.into_inner());
        // The old hooks go first: a tensor keeps one post-accumulate hook.
        *slot = None;
        *slot = Some(Reducer::new(self.group.clone(), &params)?);
        Ok(())
    }

    /// Rank 0's weights and buffers everywhere (DDP's broadcast at start).
    pub fn broadcast_network(&self, net: &Network) -> Result<(), TrainError> {
        self.broadcast_tensors(net.named_tensors().into_iter().map(|(_, t)| t))
    }

    /// Rank 0's values in these tensors everywhere, in place.
    pub fn broadcast_tensors<'t>(
        &self,
        tensors: impl IntoIterator<Item = &'t Tensor>,
    ) -> Result<(), TrainError> {
        // Shallow clones share storage: writing them writes the originals.
        let mut tensors: Vec<Tensor> = tensors.into_iter().map(Tensor::shallow_clone).collect();
        Ok(self.group.broadcast(&mut tensors, 0)?)
    }

    /// The mean over ranks of a step's logged values (one collective).
    /// A value that is not finite on any rank makes its mean not finite on
    /// every rank, which is how all ranks skip a step together
    /// ([`super::step::backward_if_finite`]).
    pub fn mean_over_ranks(&self, values: [f64; 4]) -> Result<[f64; 4], TrainError> {
        let mut t = [Tensor::from_slice(&values.map(|v| v as f32))];
        self.group.all_reduce_mean(&mut t)?;
        let mean: Vec<f32> = Vec::try_from(&t[0]).map_err(tensor_error)?;
        Ok([0, 1, 2, 3].map(|i| f64::from(mean[i])))
    }

    /// Averages the parameters' gradients over ranks in place, after
    /// backward. With [`Dist::attach`]'s hooks most buckets are already
    /// under way; without, every gradient goes now.
    pub fn average_gradients(&self, params: &[(&Tensor, bool)]) -> Result<(), TrainError> {
        // A collective that failed inside the passes (SyncBatchNorm) first.
        self.group.check_passes()?;
        let start = Instant::now();
        let reducer = self.reducer.lock().unwrap_or_else(|e| e.into_inner());
        match reducer.as_ref() {
            Some(reducer) => {
                let params: Vec<&Tensor> = params.iter().map(|(p, _)| *p).collect();
                reducer.finish(&params)?;
            }
            // The buckets write the means into the gradients.
            None => self
                .group
                .all_reduce_mean(&mut gradients_or_zeros(params))?,
        }
        let spent = start.elapsed().as_nanos() as u64;
        self.averaging_ns.fetch_add(spent, Ordering::Relaxed);
        Ok(())
    }

    /// Rank 0's evaluation (the only one run) given to every rank, so that
    /// all take the same best-checkpoint and early-stopping decisions.
    pub fn share_eval(&self, result: Option<EvalResult>) -> Result<EvalResult, TrainError> {
        let numbers = result
            .as_ref()
            .map_or([0.0; 4], |r| [r.top1, r.top5, r.loss, r.count as f64]);
        let mut t = [Tensor::from_slice(&numbers).to_kind(Kind::Double)];
        self.group.broadcast(&mut t, 0)?;
        if let Some(result) = result {
            return Ok(result);
        }
        let n: Vec<f64> = Vec::try_from(&t[0]).map_err(tensor_error)?;
        Ok(EvalResult {
            top1: n[0],
            top5: n[1],
            loss: n[2],
            count: n[3] as usize,
            confusion: Vec::new(),
            mistakes: Vec::new(),
            predictions: Vec::new(),
        })
    }
}

/// A tensor conversion that failed around a collective.
pub(crate) fn tensor_error(e: tch::TchError) -> TrainError {
    TrainError::Distributed(e.to_string())
}

/// Every rank must send the same buffers: a gradient that is undefined
/// here (a skipped backward) goes as zeros, and stays undefined.
fn gradients_or_zeros(params: &[(&Tensor, bool)]) -> Vec<Tensor> {
    params
        .iter()
        .map(|(p, _)| {
            let g = p.grad();
            if g.defined() { g } else { p.zeros_like() }
        })
        .collect()
}

/// Rank `rank`'s contiguous share of one part; the part must split evenly
/// (each rank's loss is a mean over its share, and the mean of equal
/// shares' means is the global batch's mean).
fn shard_part(
    part: PartRequest,
    rank: usize,
    world: usize,
    section: &str,
) -> Result<PartRequest, TrainError> {
    let n = part.items.len();
    if !n.is_multiple_of(world) {
        return Err(TrainError::Distributed(format!(
            "a global batch part of {n} images does not split over {world} ranks; set {section}.batch_size to a multiple of {world}"
        )));
    }
    let share = n / world;
    Ok(PartRequest {
        items: part.items[rank * share..(rank + 1) * share].to_vec(),
        view: part.view,
        first: part.first + rank * share,
    })
}

#[cfg(test)]
mod tests {
    use crate::data::loader::View;

    use super::*;

    fn part(n: usize) -> PartRequest {
        PartRequest {
            items: (0..n).map(|i| (i, i as i64 % 3)).collect(),
            view: View::WeakStrong,
            first: 0,
        }
    }

    #[test]
    fn shards_tile_the_batch_and_keep_global_positions() {
        let shards: Vec<PartRequest> = (0..2)
            .map(|r| shard_part(part(8), r, 2, "large").unwrap())
            .collect();
        let joined: Vec<(usize, i64)> = shards.iter().flat_map(|s| s.items.clone()).collect();
        assert_eq!(joined, part(8).items);
        assert_eq!((shards[0].first, shards[1].first), (0, 4));
        assert_eq!(shards[1].view, View::WeakStrong);
    }

    #[test]
    fn an_uneven_batch_names_the_setting() {
        let err = shard_part(part(6), 0, 4, "small").unwrap_err().to_string();
        assert!(
            err.contains("set small.batch_size to a multiple of 4"),
            "{err}"
        );
    }
}
