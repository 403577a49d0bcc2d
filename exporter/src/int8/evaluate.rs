//! Both graphs on the same labeled images: each one's top-1 accuracy and
//! how often they agree.

use std::path::{Path, PathBuf};

use semiclass_manifest::PreprocessSpec;

use super::Int8Error;
use super::session::{Runner, load_batch};
use crate::export::OUTPUT_NAME;

const BATCH: usize = 16;

/// Top-1 results of both graphs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    pub images: usize,
    pub fp32_correct: usize,
    pub int8_correct: usize,
    pub agreeing: usize,
}

/// Runs `fp32` and `int8` on `images` (path, class id).
pub fn compare(
    library: &Path,
    (fp32, int8): (&[u8], &[u8]),
    images: &[(PathBuf, usize)],
    spec: &PreprocessSpec,
) -> Result<Scores, Int8Error> {
    let mut float = Runner::new(library, fp32, super::THREADS)?;
    let mut quantized = Runner::new(library, int8, super::THREADS)?;
    let mut scores = Scores::default();
    for chunk in images.chunks(BATCH) {
        let paths: Vec<&PathBuf> = chunk.iter().map(|(p, _)| p).collect();
        let a = top1(&mut float, load_batch(&paths, spec)?)?;
        let b = top1(&mut quantized, load_batch(&paths, spec)?)?;
        for (((_, label), a), b) in chunk.iter().zip(a).zip(b) {
            scores.images += 1;
            scores.fp32_correct += usize::from(a == *label);
            scores.int8_correct += usize::from(b == *label);
            scores.agreeing += usize::from(a == b);
        }
    }
    Ok(scores)
}

/// The top-1 class of every image of `batch`.
fn top1(runner: &mut Runner, batch: super::session::Batch) -> Result<Vec<usize>, Int8Error> {
    let n = batch.shape[0];
    let mut classes = Vec::with_capacity(n);
    runner.run(batch, &[OUTPUT_NAME.to_string()], |_, logits| {
        let width = logits.len() / n.max(1);
        classes.extend(logits.chunks(width.max(1)).map(argmax));
    })?;
    Ok(classes)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}
