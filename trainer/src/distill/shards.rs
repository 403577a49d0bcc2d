//! The soft-label work of a data-parallel run, split over its ranks.
//!
//! Rank 0 alone reads and writes the cache files (on several machines the
//! others may not see its disk): it tells the others how many rows are
//! already done and sends them those rows. The rest is labeled chunk by
//! chunk; in each chunk every rank runs its contiguous share of whole
//! teacher batches, and one all-reduce (sum) of the zero-padded chunk gives
//! every rank all of it. A row plus zeros is that row exactly, and every
//! image is labeled in the same batch as on one process (CPU kernels may
//! pick another algorithm, or summation order, for another batch size), so
//! the table is bit for bit the one a single process computes.
//!
//! One process is a world of one: no collective, the same chunks.

use std::ops::Range;

use tch::{Kind, Tensor};

use super::teacher::Teacher;
use crate::engine::TrainError;
use crate::engine::dist::{Dist, tensor_error};

/// The teacher's top-k rows computed so far, flat, `k` values per row.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Rows {
    pub probs: Vec<f32>,
    pub classes: Vec<i64>,
}

impl Rows {
    pub fn count(&self, k: usize) -> usize {
        self.probs.len() / k
    }

    pub fn extend(&mut self, more: Rows) {
        self.probs.extend(more.probs);
        self.classes.extend(more.classes);
    }
}

/// What every rank must agree on before sharing the work: rank 0's rows
/// done, and the job itself (a rank that sees other images or settings
/// would fill the table with rows of another job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Start {
    pub done: usize,
    pub total: usize,
    pub topk: usize,
    /// Of the images, the settings and the batch size, without the teacher
    /// file (a rank other than 0 loads its own copy of a checkpoint, whose
    /// metadata differs; [`Ranks::same_teacher`] makes the weights equal).
    pub fingerprint: u64,
}

/// This process's part in the soft-label work.
pub(super) struct Ranks<'a> {
    dist: Option<&'a Dist>,
}

impl<'a> Ranks<'a> {
    pub fn new(dist: Option<&'a Dist>) -> Self {
        Ranks { dist }
    }

    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    fn rank(&self) -> usize {
        self.dist.map_or(0, Dist::rank)
    }

    fn world(&self) -> usize {
        self.dist.map_or(1, Dist::world_size)
    }

    /// Rank 0's `start` everywhere; an error on every rank when any rank's
    /// own job (`own`; its `done` is not looked at) differs from rank 0's.
    pub fn agree_on_start(&self, own: Start) -> Result<Start, TrainError> {
        let Some(dist) = self.dist else {
            return Ok(own);
        };
        let header = [Tensor::from_slice(&[
            own.done as i64,
            own.total as i64,
            own.topk as i64,
            // The bits as they are: an i64 carries the u64 unchanged.
            own.fingerprint as i64,
        ])];
        dist.broadcast_tensors(&header)?;
        let h: Vec<i64> = Vec::try_from(&header[0]).map_err(tensor_error)?;
        let root = Start {
            done: h[0] as usize,
            total: h[1] as usize,
            topk: h[2] as usize,
            fingerprint: h[3] as u64,
        };
        let differs =
            (own.total, own.topk, own.fingerprint) != (root.total, root.topk, root.fingerprint);
        let ranks = self.ranks_where(dist, differs)?;
        if ranks.is_empty() {
            return Ok(root);
        }
        let here = match differs {
            true => format!(
                "; rank {}: {} images, top-{}; rank 0: {} images, top-{}",
                self.rank(),
                own.total,
                own.topk,
                root.total,
                root.topk
            ),
            false => String::new(),
        };
        let list: Vec<String> = ranks.iter().map(usize::to_string).collect();
        let who = match list.len() {
            1 => format!("rank {} sees", list[0]),
            _ => format!("ranks {} see", list.join(", ")),
        };
        Err(TrainError::Distributed(format!(
            "teacher predictions: {who} another job than rank 0 (other images, T, top-k, flip, teacher preprocessing or batch size){here}; every rank must read the same dataset and configuration"
        )))
    }

    /// The ranks whose `flag` is set (one collective).
    fn ranks_where(&self, dist: &Dist, flag: bool) -> Result<Vec<usize>, TrainError> {
        let mut flags = Tensor::zeros([self.world() as i64], (Kind::Int64, tch::Device::Cpu));
        if flag {
            let _ = flags.get(self.rank() as i64).fill_(1);
        }
        dist.group.all_reduce_sum(&mut flags)?;
        let flags: Vec<i64> = Vec::try_from(&flags).map_err(tensor_error)?;
        Ok((0..flags.len()).filter(|&r| flags[r] != 0).collect())
    }

    /// Rank 0's first `count` rows in `rows` on every rank.
    pub fn share_rows(&self, rows: &mut Rows, count: usize, k: usize) -> Result<(), TrainError> {
        let Some(dist) = self.dist else {
            return Ok(());
        };
        if count == 0 {
            return Ok(());
        }
        let shape = [count as i64, k as i64];
        let table = if self.is_root() {
            [
                Tensor::from_slice(&rows.probs).reshape(shape),
                Tensor::from_slice(&rows.classes).reshape(shape),
            ]
        } else {
            [
                Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu)),
                Tensor::zeros(shape, (Kind::Int64, tch::Device::Cpu)),
            ]
        };
        dist.broadcast_tensors(&table)?;
        *rows = to_rows(&table[0], &table[1])?;
        Ok(())
    }

    /// Rank 0's teacher weights and buffers everywhere: each rank loaded
    /// its own copy of the checkpoint, and the rows they label together
    /// must come from one network.
    pub fn same_teacher(&self, teacher: &Teacher) -> Result<(), TrainError> {
        match self.dist {
            Some(dist) => dist.broadcast_network(&teacher.net),
            None => Ok(()),
        }
    }

    /// Whether any rank was asked to stop: all stop at the same chunk, so
    /// that none waits in a collective for a rank that has gone.
    pub fn any_stop(&self, own: bool) -> Result<bool, TrainError> {
        match self.dist {
            Some(dist) => Ok(!self.ranks_where(dist, own)?.is_empty()),
            None => Ok(own),
        }
    }

    /// Rows per chunk: whole teacher batches, about `target` rows, and at
    /// least one batch for every rank. Batches then start at multiples of
    /// `batch` on any number of ranks (chunks start at such multiples).
    pub fn chunk_rows(&self, batch: usize, target: usize) -> usize {
        batch * target.div_ceil(batch).max(self.world())
    }

    /// This rank's rows of a chunk of `len` rows: a contiguous run of whole
    /// batches (the chunk's last batch may be short).
    pub fn share(&self, len: usize, batch: usize) -> Range<usize> {
        share(len, batch, self.rank(), self.world())
    }

    /// Every rank's share of a chunk of `len` rows, on every rank, from
    /// this rank's `mine` (its rows `range` of the chunk).
    pub fn assemble(
        &self,
        len: usize,
        k: usize,
        range: Range<usize>,
        mine: Rows,
    ) -> Result<Rows, TrainError> {
        let Some(dist) = self.dist else {
            return Ok(mine);
        };
        let mut probs = pad(&mine.probs, len, k, &range);
        let mut classes = pad(&mine.classes, len, k, &range);
        dist.group.all_reduce_sum(&mut probs)?;
        dist.group.all_reduce_sum(&mut classes)?;
        to_rows(&probs, &classes)
    }
}

/// Rank `rank` of `world`'s rows of a chunk of `len` rows in batches of
/// `batch`.
fn share(len: usize, batch: usize, rank: usize, world: usize) -> Range<usize> {
    let batches = len.div_ceil(batch);
    let first = batches * rank / world;
    let end = batches * (rank + 1) / world;
    (first * batch).min(len)..(end * batch).min(len)
}

/// `[len, k]` zeros holding `values` (rows `range`) in their place.
fn pad<T: tch::kind::Element + Copy + Default>(
    values: &[T],
    len: usize,
    k: usize,
    range: &Range<usize>,
) -> Tensor {
    let mut flat = vec![T::default(); len * k];
    flat[range.start * k..range.end * k].copy_from_slice(values);
    Tensor::from_slice(&flat)
}

fn to_rows(probs: &Tensor, classes: &Tensor) -> Result<Rows, TrainError> {
    Ok(Rows {
        probs: Vec::try_from(probs.reshape([-1])).map_err(tensor_error)?,
        classes: Vec::try_from(classes.reshape([-1])).map_err(tensor_error)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_whole_batches_that_tile_the_chunk() {
        // 10 rows in batches of 3: batches [0,3) [3,6) [6,9) [9,10).
        let shares: Vec<Range<usize>> = (0..2).map(|r| share(10, 3, r, 2)).collect();
        assert_eq!(shares, [0..6, 6..10]);
        let shares: Vec<Range<usize>> = (0..3).map(|r| share(10, 3, r, 3)).collect();
        assert_eq!(shares, [0..3, 3..6, 6..10]);
        // More ranks than batches: some ranks have nothing to do.
        let shares: Vec<Range<usize>> = (0..3).map(|r| share(4, 3, r, 3)).collect();
        assert_eq!(shares, [0..0, 0..3, 3..4]);
        assert_eq!(share(0, 3, 0, 1), 0..0);
    }

    #[test]
    fn chunks_are_whole_batches_with_one_for_every_rank() {
        let one = Ranks::new(None);
        assert_eq!(one.chunk_rows(128, 2048), 2048);
        assert_eq!(one.chunk_rows(384, 2048), 2304);
        assert_eq!(one.chunk_rows(4096, 2048), 4096);
    }

    #[test]
    fn one_process_keeps_its_own_rows() {
        let one = Ranks::new(None);
        let rows = Rows {
            probs: vec![0.5, 0.25],
            classes: vec![1, 0],
        };
        assert_eq!(one.assemble(1, 2, 0..1, rows.clone()).unwrap(), rows);
        assert!(one.any_stop(true).unwrap() && !one.any_stop(false).unwrap());
    }

    #[test]
    fn padding_puts_a_share_in_its_place() {
        let t = pad(&[7i64, 8], 3, 2, &(1..2));
        assert_eq!(Vec::<i64>::try_from(&t).unwrap(), [0, 0, 7, 8, 0, 0]);
    }
}
