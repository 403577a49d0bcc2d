//! Learning from a frozen teacher: distillation of the small model and the
//! large model's self-training round share it.

mod shards;
pub mod soft_labels;
pub mod teacher;

use tch::Tensor;

use soft_labels::SoftLabels;
use teacher::{InputAdapter, Teacher};

/// Where a step's `soft_targets` come from.
pub enum TargetSource {
    /// Cached per image: looked up by store index.
    Offline(SoftLabels),
    /// The teacher runs on the student's own augmented batch.
    Online {
        teacher: Box<Teacher>,
        adapter: InputAdapter,
        t: f64,
    },
}

impl TargetSource {
    /// Teacher probabilities `[batch, classes]` for the batch `x` (student
    /// input) made of the store images `indices`.
    pub fn targets(&self, x: &Tensor, indices: &[usize]) -> Tensor {
        match self {
            TargetSource::Offline(labels) => labels.targets(indices, x.device()),
            TargetSource::Online {
                teacher,
                adapter,
                t,
            } => teacher.probs(&adapter.apply(x), *t),
        }
    }
}
