//! Accuracy on a labeled list, with the shared evaluation transform.

use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::data::loader::{Loader, PartRequest, Request, Transform, View};
use crate::data::store::{ImageStore, LoadError};
use crate::nn::Network;

/// What an evaluation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub count: usize,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// The most confident mistakes, most confident first (as many as
    /// asked of [`evaluate_in_detail`]; none from [`evaluate`]).
    pub mistakes: Vec<Mistake>,
    /// Every image's top-1 answer in the order evaluated (from
    /// [`evaluate_in_detail`]; none from [`evaluate`]).
    pub predictions: Vec<ImagePrediction>,
}

/// One image's top-1 answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePrediction {
    /// Index of the image in the store.
    pub index: usize,
    pub truth: usize,
    pub predicted: usize,
    /// Softmax probability of the predicted class.
    pub score: f64,
}

/// A misclassified image.
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    /// Index of the image in the store.
    pub index: usize,
    pub truth: usize,
    pub predicted: usize,
    /// Softmax probability of the predicted class.
    pub score: f64,
}

/// Where the images come from and how to batch them.
pub struct EvalInput<'a> {
    pub store: Arc<ImageStore>,
    pub transform: Arc<Transform>,
    /// `(image index in the store, class id)`.
    pub items: &'a [(usize, i64)],
    pub batch_size: usize,
    pub workers: usize,
}

/// Runs `net` in eval mode over every item.
pub fn evaluate(net: &Network, input: &EvalInput) -> Result<EvalResult, LoadError> {
    run(net, input, None)
}

/// [`evaluate`], also keeping every image's answer and the `mistakes`
/// most confident mistakes.
pub fn evaluate_in_detail(
    net: &Network,
    input: &EvalInput,
    mistakes: usize,
) -> Result<EvalResult, LoadError> {
    run(net, input, Some(mistakes))
}

/// `details`: how many mistakes to keep, when every answer is kept.
fn run(net: &Network, input: &EvalInput, details: Option<usize>) -> Result<EvalResult, LoadError> {
    let requests: Vec<Request> = input
        .items
        .chunks(input.batch_size.max(1))
        .map(|chunk| Request {
            parts: vec![PartRequest {
                items: chunk.to_vec(),
                view: View::Eval,
                first: 0,
            }],
            seed: 0,
        })
        .collect();
    let mut loader = Loader::start(
        input.store.clone(),
        input.transform.clone(),
        requests,
        input.workers,
        4,
    );
    let classes = net.model.options.num_classes;
    let mut tally = Tally::new(classes);
    tally.details = details;
    while let Some(batch) = loader.next_batch() {
        let part = batch?.remove(0);
        let size = input.transform.input_size as i64;
        let n = part.labels.len() as i64;
        let x = Tensor::from_slice(&part.x)
            .reshape([n, 3, size, size])
            .to_device(net.device());
        let y = Tensor::from_slice(&part.labels).to_device(net.device());
        let logits = tch::no_grad(|| net.forward(&x, false)).to_kind(Kind::Float);
        tally.add(&logits, &y);
        tally.add_details(&logits, &part.labels, &part.indices);
    }
    Ok(tally.finish())
}

/// Running sums of an evaluation.
struct Tally {
    top1: f64,
    top5: f64,
    loss: f64,
    count: usize,
    confusion: Vec<Vec<u64>>,
    /// How many mistakes to keep, when every answer is kept.
    details: Option<usize>,
    mistakes: Vec<Mistake>,
    predictions: Vec<ImagePrediction>,
}

impl Tally {
    fn new(classes: usize) -> Self {
        Tally {
            top1: 0.0,
            top5: 0.0,
            loss: 0.0,
            count: 0,
            confusion: vec![vec![0; classes]; classes],
            details: None,
            mistakes: Vec::new(),
            predictions: Vec::new(),
        }
    }

    /// Keeps every answer and the most confident mistakes seen so far.
    fn add_details(&mut self, logits: &Tensor, labels: &[i64], indices: &[usize]) {
        let Some(keep) = self.details else {
            return;
        };
        let (score, predicted) = logits.softmax(-1, Kind::Float).max_dim(1, false);
        let score = Vec::<f32>::try_from(score.to_device(tch::Device::Cpu)).expect("1-D");
        let predicted = Vec::<i64>::try_from(predicted.to_device(tch::Device::Cpu)).expect("1-D");
        for (k, (&truth, &predicted)) in labels.iter().zip(&predicted).enumerate() {
            self.predictions.push(ImagePrediction {
                index: indices[k],
                truth: truth as usize,
                predicted: predicted as usize,
                score: f64::from(score[k]),
            });
            if truth != predicted {
                self.mistakes.push(Mistake {
                    index: indices[k],
                    truth: truth as usize,
                    predicted: predicted as usize,
                    score: f64::from(score[k]),
                });
            }
        }
        self.mistakes
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        self.mistakes.truncate(keep);
    }

    fn add(&mut self, logits: &Tensor, y: &Tensor) {
        let n = y.size()[0] as usize;
        let loss = logits
            .log_softmax(-1, Kind::Float)
            .nll_loss(y)
            .double_value(&[]);
        let k = logits.size()[1].min(5);
        let (_, top) = logits.topk(k, -1, true, true);
        let hits = top.eq_tensor(&y.unsqueeze(1)).to_kind(Kind::Float);
        self.top1 += hits.narrow(1, 0, 1).sum(Kind::Float).double_value(&[]);
        self.top5 += hits.sum(Kind::Float).double_value(&[]);
        self.loss += loss * n as f64;
        self.count += n;
        let predicted =
            Vec::<i64>::try_from(top.select(1, 0).to_device(tch::Device::Cpu)).expect("1-D");
        let truth = Vec::<i64>::try_from(y.to_device(tch::Device::Cpu)).expect("1-D");
        for (t, p) in truth.into_iter().zip(predicted) {
            self.confusion[t as usize][p as usize] += 1;
        }
    }

    fn finish(self) -> EvalResult {
        let n = self.count.max(1) as f64;
        EvalResult {
            top1: self.top1 / n,
            top5: self.top5 / n,
            loss: self.loss / n,
            count: self.count,
            confusion: self.confusion,
            mistakes: self.mistakes,
            predictions: self.predictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_top1_top5_and_confusion() {
        let mut tally = Tally::new(6);
        // Sample 0: class 2 ranked first; sample 1: class 0 ranked third.
        let logits = Tensor::from_slice(&[
            0.0f32, 1.0, 9.0, 0.0, 0.0, 0.0, 5.0, 9.0, 1.0, 7.0, 0.0, 0.0,
        ])
        .reshape([2, 6]);
        let y = Tensor::from_slice(&[2i64, 0]);
        tally.add(&logits, &y);
        let result = tally.finish();
        assert_eq!(result.top1, 0.5);
        assert_eq!(result.top5, 1.0);
        assert_eq!(result.confusion[2][2], 1);
        assert_eq!(result.confusion[0][1], 1);
        assert_eq!(result.count, 2);
        assert!(result.mistakes.is_empty());
    }

    #[test]
    fn the_most_confident_mistakes_are_kept_most_confident_first() {
        let mut tally = Tally::new(3);
        tally.details = Some(2);
        // Rows: right; wrong and sure (class 1); wrong and unsure; wrong and surest.
        let logits = Tensor::from_slice(&[
            9.0f32, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 9.0,
        ])
        .reshape([4, 3]);
        tally.add_details(&logits, &[0, 0, 2, 0], &[10, 11, 12, 13]);
        let kept: Vec<(usize, usize, usize)> = tally
            .mistakes
            .iter()
            .map(|m| (m.index, m.truth, m.predicted))
            .collect();
        assert_eq!(kept, [(13, 0, 2), (11, 0, 1)]);
        assert!(tally.mistakes[0].score > 0.99);
        assert!(tally.mistakes[0].score > tally.mistakes[1].score);
        let answers: Vec<(usize, usize)> = tally
            .predictions
            .iter()
            .map(|p| (p.index, p.predicted))
            .collect();
        assert_eq!(answers, [(10, 0), (11, 1), (12, 1), (13, 2)]);
    }
}
