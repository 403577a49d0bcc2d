//! The reference every training is measured against: 1-nearest-neighbour
//! on 8x8 thumbnails of the model's own evaluation input, with the labels
//! of train.txt. It takes seconds and needs no training, so a model that
//! does not beat it has learned less than a lookup table of the labeled
//! images; the run says so instead of reporting a worthless model as a
//! result (a 130-image dataset once ended at 27% where this gave 94%).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::store::{ImageStore, LoadError};
use crate::engine::setup::RunData;

/// Side of the thumbnails compared (per channel).
const THUMBNAIL: i64 = 8;
/// At most this many labeled images are looked up, and this many images
/// of val or test are classified: enough for a figure good to about a
/// point, and seconds even for a million-image dataset.
const MAX_LABELED: usize = 20_000;
const MAX_EVALUATED: usize = 5_000;

/// What the baseline scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// How it was computed, for reports.
    pub method: String,
    pub labeled: usize,
    pub val_top1: f64,
    pub test_top1: Option<f64>,
}

impl Baseline {
    /// `1-NN on 8x8 thumbnails of the 130 labeled images`.
    pub fn describe(&self) -> String {
        format!("{} of the {} labeled images", self.method, self.labeled)
    }
}

/// The 1-nearest-neighbour baseline of a run's data (subsets drawn with
/// `seed` where the lists are longer than the caps).
pub fn nearest_neighbour(data: &RunData, seed: u64) -> Result<Baseline, LoadError> {
    let labeled = sample(&data.train, MAX_LABELED, seed);
    let (keys, key_labels) = thumbnails(&data.store, &labeled)?;
    let score = |items: &[(usize, i64)]| -> Result<f64, LoadError> {
        let items = sample(items, MAX_EVALUATED, seed ^ 1);
        let (queries, truth) = thumbnails(&data.store, &items)?;
        Ok(accuracy(&keys, &key_labels, &queries, &truth))
    };
    let val_top1 = score(&data.val)?;
    let test_top1 = if data.test.is_empty() {
        None
    } else {
        Some(score(&data.test)?)
    };
    Ok(Baseline {
        method: format!("1-nearest-neighbour on {THUMBNAIL}x{THUMBNAIL} thumbnails"),
        labeled: labeled.len(),
        val_top1,
        test_top1,
    })
}

fn sample(items: &[(usize, i64)], max: usize, seed: u64) -> Vec<(usize, i64)> {
    let mut items = items.to_vec();
    if items.len() > max {
        items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        items.truncate(max);
    }
    items
}

/// `[n, 3·8·8]` thumbnails (area averages of the evaluation tensor) and
/// the labels.
fn thumbnails(store: &ImageStore, items: &[(usize, i64)]) -> Result<(Tensor, Tensor), LoadError> {
    let tensors: Vec<Tensor> = items
        .par_iter()
        .map(|&(index, _)| {
            let data = store.eval_data(index)?;
            let side = ((data.len() / 3) as f64).sqrt() as i64;
            let image = Tensor::from_slice(&data).reshape([1, 3, side, side]);
            Ok(image
                .adaptive_avg_pool2d([THUMBNAIL, THUMBNAIL])
                .reshape([-1]))
        })
        .collect::<Result<_, LoadError>>()?;
    let labels: Vec<i64> = items.iter().map(|&(_, label)| label).collect();
    Ok((Tensor::stack(&tensors, 0), Tensor::from_slice(&labels)))
}

/// Share of `queries` whose nearest key (Euclidean) has their label.
fn accuracy(keys: &Tensor, key_labels: &Tensor, queries: &Tensor, truth: &Tensor) -> f64 {
    let n = queries.size()[0];
    if n == 0 || keys.size()[0] == 0 {
        return 0.0;
    }
    let key_norms = keys.square().sum_dim_intlist(1, false, Kind::Float);
    let mut correct = 0i64;
    for start in (0..n).step_by(1024) {
        let chunk = queries.narrow(0, start, 1024.min(n - start));
        // |q - k|² without |q|², which is the same for every key.
        let distance = key_norms.unsqueeze(0) - chunk.matmul(&keys.tr()) * 2.0;
        let nearest = distance.argmin(1, false);
        let predicted = key_labels.index_select(0, &nearest);
        let expected = truth.narrow(0, start, chunk.size()[0]);
        correct += predicted
            .eq_tensor(&expected)
            .sum(Kind::Int64)
            .int64_value(&[]);
    }
    correct as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_key_gives_the_label() {
        let keys = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0]).reshape([2, 2]);
        let key_labels = Tensor::from_slice(&[3i64, 7]);
        let queries = Tensor::from_slice(&[1.0f32, 1.0, 9.0, 8.0, 6.0, 6.0]).reshape([3, 2]);
        let truth = Tensor::from_slice(&[3i64, 7, 3]);
        let got = accuracy(&keys, &key_labels, &queries, &truth);
        assert!((got - 2.0 / 3.0).abs() < 1e-9, "{got}");
    }

    #[test]
    fn long_lists_are_sampled_the_same_way_for_the_same_seed() {
        let items: Vec<(usize, i64)> = (0..100).map(|i| (i, 0)).collect();
        assert_eq!(sample(&items, 10, 4), sample(&items, 10, 4));
        assert_eq!(sample(&items, 10, 4).len(), 10);
        assert_eq!(sample(&items, 1000, 4), items);
    }
}
