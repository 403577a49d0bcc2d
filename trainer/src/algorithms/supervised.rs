//! Supervised only: the baseline every semi-supervised result is measured
//! against, and stage 1 of the large-model recipe.

use super::{Algorithm, StepLogits, StepLosses, supervised_part};

#[derive(Debug, Default)]
pub struct Supervised;

impl Algorithm for Supervised {
    fn name(&self) -> &'static str {
        "supervised"
    }

    fn uses_unlabeled(&self) -> bool {
        false
    }

    fn losses(&mut self, logits: &StepLogits) -> StepLosses {
        let (total, sup_loss) = supervised_part(logits);
        StepLosses {
            total,
            sup_loss,
            unsup_loss: 0.0,
            mask_ratio: 0.0,
        }
    }
}
