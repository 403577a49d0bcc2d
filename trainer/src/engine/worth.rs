//! Whether a model is worth learning from: the semi-supervised stage takes
//! its pseudo-labels from the supervised model, distillation copies a
//! teacher. A model near chance teaches noise, so both check first, against
//! chance and against the run's baseline (see [`crate::baseline`]).

use crate::baseline::Baseline;

/// What a model's val accuracy says about its predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum Worth {
    /// At or above the baseline.
    Follow,
    /// Above chance but below the baseline: usable, with a warning.
    Weak { reason: String },
    /// Less than half-way from chance to the baseline: noise.
    Noise { reason: String },
}

/// Judges a model of `val_top1` on a `classes`-class dataset.
pub fn judge(val_top1: f64, classes: usize, baseline: &Baseline) -> Worth {
    let chance = 1.0 / classes.max(1) as f64;
    // Half-way to the baseline, and at least 5 points over chance: a
    // baseline itself near chance must not make chance look good.
    let floor = chance + ((baseline.val_top1 - chance) / 2.0).max(0.05);
    let figures = format!(
        "val top-1 {:.1}%, chance {:.1}%, {} {:.1}%",
        100.0 * val_top1,
        100.0 * chance,
        baseline.describe(),
        100.0 * baseline.val_top1
    );
    if val_top1 < floor {
        Worth::Noise { reason: figures }
    } else if val_top1 < baseline.val_top1 {
        Worth::Weak { reason: figures }
    } else {
        Worth::Follow
    }
}

/// What to try when the `large` or `small` model learned less than the
/// baseline, in that model's configuration keys.
pub fn what_to_try(model: &str) -> String {
    if model == "small" {
        "try a better teacher (the large model's own warnings say how), more distillation steps (small.steps=N), or more labeled images".into()
    } else {
        format!(
            "try more labeled images, a pretrained model ({model}.pretrained=FILE with timm weights), more steps ({model}.steps=N), or a smaller learning rate ({model}.lr)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(val_top1: f64) -> Baseline {
        Baseline {
            method: "1-nearest-neighbour on 8x8 thumbnails".into(),
            labeled: 130,
            val_top1,
            test_top1: None,
        }
    }

    #[test]
    fn the_run_that_asked_for_this_is_noise() {
        // Large at 27.6% where the baseline gave 91.6% (10 classes).
        let worth = judge(0.276, 10, &baseline(0.916));
        let Worth::Noise { reason } = worth else {
            panic!("{worth:?}")
        };
        assert!(
            reason.contains("val top-1 27.6%") && reason.contains("91.6%"),
            "{reason}"
        );
    }

    #[test]
    fn below_the_baseline_is_weak_and_above_it_is_followed() {
        assert!(matches!(
            judge(0.80, 10, &baseline(0.916)),
            Worth::Weak { .. }
        ));
        assert_eq!(judge(0.93, 10, &baseline(0.916)), Worth::Follow);
    }

    #[test]
    fn the_advice_names_the_model_s_own_keys() {
        assert!(what_to_try("large").contains("large.steps=N"));
        let small = what_to_try("small");
        assert!(
            small.contains("small.steps=N") && !small.contains("large."),
            "{small}"
        );
    }

    #[test]
    fn a_baseline_near_chance_does_not_bless_chance() {
        // 100 classes, baseline 1.5%: a model at 1.2% is still noise.
        assert!(matches!(
            judge(0.012, 100, &baseline(0.015)),
            Worth::Noise { .. }
        ));
        assert_eq!(judge(0.08, 100, &baseline(0.015)), Worth::Follow);
    }
}
