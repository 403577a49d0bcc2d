//! How long each stage runs when the configuration does not say: a number
//! of optimizer steps chosen from the dataset's size, so that 130 labeled
//! images get as sensible a run as a million. Epochs over the labeled list
//! cannot be the default unit: 10 epochs of 130 images are 20 steps, most
//! of them warm-up, and 10 epochs of a million images are days.
//!
//! The chosen numbers are written into the run's config.yaml (a resumed
//! run continues with them) and printed when the run starts.

use semiclass_models::Stem;

use super::train::{AlgorithmKind, ModelTrainConfig, StemChoice, TrainConfig};

/// The image counts a schedule is chosen from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSize {
    pub labeled: usize,
    pub unlabeled: usize,
}

/// No stage is shorter than this (unless set to 0): fewer steps do not
/// get a network from random weights anywhere, whatever the dataset. (On
/// 130 labeled digits resnet18's val accuracy stops rising after about 200
/// steps; a floor of 1,000 only cost minutes.)
pub const MIN_STEPS: u64 = 300;

/// Passes over the labeled images of the supervised stage: 30 at 5,500
/// images (where a small CNN on Fashion-MNIST converges), more for fewer
/// images and fewer for more, as `30 * sqrt(5500 / n)` within 3..=100
/// (130 labeled digits stop improving after about 100 passes).
pub fn supervised_epochs(labeled: usize) -> f64 {
    (30.0 * (5_500.0 / labeled.max(1) as f64).sqrt()).clamp(3.0, 100.0)
}

/// Steps of the supervised stage.
pub fn supervised_steps(labeled: usize, batch_size: usize) -> u64 {
    let steps = supervised_epochs(labeled) * labeled as f64 / batch_size.max(1) as f64;
    (steps.round() as u64).max(MIN_STEPS)
}

/// Passes over the unlabeled images of the semi-supervised stage.
pub const SSL_UNLABELED_PASSES: f64 = 20.0;
/// The semi-supervised stage's floor: on a small unlabeled set 20 passes
/// are only a few steps (each step takes `mu` batches of unlabeled images),
/// and the first ~50 steps only recover from the learning rate's restart
/// (130 labeled digits: val fell from 91.6% to 86.7% and was back at 90.9%
/// after 52 steps; 300 steps ended at 93.0%).
pub const SSL_MIN_STEPS: u64 = 100;

/// Steps of the semi-supervised stage: `SSL_UNLABELED_PASSES` over the
/// unlabeled images (each step takes `mu * batch_size`), at least
/// `SSL_MIN_STEPS`.
pub fn ssl_steps(unlabeled: usize, batch_size: usize, mu: usize) -> u64 {
    let per_step = (mu.max(1) * batch_size.max(1)) as f64;
    let steps = SSL_UNLABELED_PASSES * unlabeled as f64 / per_step;
    (steps.round() as u64).max(SSL_MIN_STEPS)
}

/// USB's `mu` (unlabeled images per labeled image in a step).
pub const MU: usize = 7;

/// `mu` for an unlabeled set of `unlabeled` images: USB's 7, less when a
/// step would take more than a sixth of the set (1,165 images: 3). A
/// FixMatch step costs `1 + 2 mu` batches, so on a small set a smaller
/// `mu` buys twice the steps for the same time, and those steps still see
/// every unlabeled image every few steps.
pub fn default_mu(unlabeled: usize, batch_size: usize) -> usize {
    (unlabeled / (6 * batch_size.max(1))).clamp(1, MU)
}

/// Steps of distillation over every train image (labeled and unlabeled):
/// the supervised rule applied to all of them, since the teacher labels
/// every one. (Half of it left lcnet_050 at 78% val on 130 labeled digits
/// where the whole gave 93.7%: a student from random weights needs as
/// many steps as any model.)
pub fn distill_steps(images: usize, batch_size: usize) -> u64 {
    supervised_steps(images, batch_size)
}

/// Evaluations without a better val accuracy after which a first stage
/// (supervised, distillation) whose length the schedule chose stops
/// (`patience`): the lengths above are sized for the slowest learner, and
/// many runs stop improving well before (lcnet_050 distilled on 130
/// labeled digits: val best at step 250 of 1,251, flat after). With
/// [`AUTO_EVALS`] evaluations a stage, 3 stops a stage 15% of its length
/// after its best; the best checkpoint is kept either way.
pub const AUTO_PATIENCE: usize = 3;

/// Evaluations a stage when the schedule chose the model's first stage's
/// length: the grid [`AUTO_PATIENCE`] counts on. At 10 a stage, patience 3
/// trained 30% of the stage past its best (distillation on 130 labeled
/// digits: best at step 250, stopped at 630 of 1,251). An evaluation of a
/// small val set costs about 0.5 s, mostly the checkpoints it writes.
pub const AUTO_EVALS: usize = 20;

/// Evaluations a stage when the configuration set the lengths.
pub const DEFAULT_EVALS: usize = 10;

/// What `fill_stage_lengths` chose, one line per model, for the run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub large: String,
    pub small: String,
}

impl Schedule {
    /// The lines of the models a run trains.
    pub fn for_mode(&self, large: bool, small: bool) -> Vec<&str> {
        let mut lines = Vec::new();
        if large {
            lines.push(self.large.as_str());
        }
        if small {
            lines.push(self.small.as_str());
        }
        lines
    }
}

/// Fills every stage length the configuration leaves unset (neither
/// `steps` nor `epochs`) and says what was chosen and why.
pub fn fill_stage_lengths(cfg: &mut TrainConfig, size: DatasetSize) -> Schedule {
    let large_stem = fix_stem(&mut cfg.large.train);
    let small_stem = fix_stem(&mut cfg.small.train);
    let large = &mut cfg.large;
    let batch = large.train.batch_size;
    let mu = *large
        .ssl
        .mu
        .get_or_insert_with(|| default_mu(size.unlabeled, batch));
    let sized = length_unset(large.train.steps, large.train.epochs);
    let sup = fill(&mut large.train.steps, large.train.epochs, || {
        supervised_steps(size.labeled, batch)
    });
    let ssl = fill(&mut large.ssl.steps, large.ssl.epochs, || {
        ssl_steps(size.unlabeled, batch, mu)
    });
    let large_patience = fill_patience(&mut large.train, sized, "supervised");
    let ssl_text = if large.ssl.algorithm == AlgorithmKind::Supervised {
        "no semi-supervised stage (algorithm supervised)".to_string()
    } else {
        format!(
            "{} ({}, mu {mu})",
            describe("semi-supervised", ssl, large.ssl.epochs),
            large.ssl.algorithm.name()
        )
    };
    let selftrain = match large.selftrain.epochs {
        0 => String::new(),
        e => format!(", then self-training {e} epoch(s)"),
    };
    let large_line = format!(
        "{} labeled, {} unlabeled images: large model{large_stem} {} (batch {batch}), {ssl_text}{selftrain}{large_patience}",
        size.labeled,
        size.unlabeled,
        describe("supervised", sup, large.train.epochs),
    );
    let small = &mut cfg.small;
    let all = size.labeled + size.unlabeled;
    let batch = small.train.batch_size;
    let sized = length_unset(small.train.steps, small.train.epochs);
    let distill = fill(&mut small.train.steps, small.train.epochs, || {
        distill_steps(all, batch)
    });
    let small_patience = fill_patience(&mut small.train, sized, "distillation");
    let small_line = format!(
        "small model{small_stem} {} over all {all} train images (batch {batch}), then {} fine-tune epoch(s) on the labels{small_patience}",
        describe("distillation", distill, small.train.epochs),
        small.distill.finetune_epochs,
    );
    Schedule {
        large: large_line,
        small: small_line,
    }
}

/// Replaces `stem: auto` by the stem it resolves to, so that the run's
/// config.yaml says what was built; returns `" (compact stem)"` for the
/// schedule line when the stem is not ImageNet's.
fn fix_stem(model: &mut ModelTrainConfig) -> &'static str {
    let stem = model.stem.resolve(model.input_size, &model.model);
    model.stem = match stem {
        Stem::ImageNet => StemChoice::ImageNet,
        Stem::Compact => StemChoice::Compact,
    };
    match stem {
        Stem::ImageNet => "",
        Stem::Compact => " (compact stem)",
    }
}

/// Neither a length in steps nor in epochs: the schedule chooses it.
fn length_unset(steps: Option<u64>, epochs: Option<usize>) -> bool {
    steps.is_none() && epochs.is_none()
}

/// Sets an unset `patience` (it applies to the model's first `stage`, and
/// to the semi-supervised stage once it beats its start): [`AUTO_PATIENCE`]
/// when the schedule chose that stage's length (`sized`), else 0 (a length
/// the user set runs to its end); and an unset `evals_per_stage` to the
/// grid that patience needs. Returns the schedule line's words for it.
fn fill_patience(model: &mut ModelTrainConfig, sized: bool, stage: &str) -> String {
    let patience = *model
        .patience
        .get_or_insert(if sized { AUTO_PATIENCE } else { 0 });
    model
        .evals_per_stage
        .get_or_insert(if sized { AUTO_EVALS } else { DEFAULT_EVALS });
    match patience {
        0 => String::new(),
        n => format!("; {stage} stops after {n} evaluations without a better val top-1"),
    }
}

/// Sets `steps` from `auto` when neither it nor `epochs` is given; returns
/// the steps when they were (or had been) set.
fn fill(steps: &mut Option<u64>, epochs: Option<usize>, auto: impl FnOnce() -> u64) -> Option<u64> {
    if epochs.is_none() && steps.is_none() {
        *steps = Some(auto());
    }
    if epochs.is_some() { None } else { *steps }
}

fn describe(stage: &str, steps: Option<u64>, epochs: Option<usize>) -> String {
    match (steps, epochs) {
        (_, Some(e)) => format!("{stage} {e} epoch(s)"),
        (Some(0), _) => format!("{stage} skipped"),
        (Some(s), None) => format!("{stage} {} steps", thousands(s)),
        (None, None) => format!("{stage} unset"),
    }
}

/// `12345` -> `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_dataset_gets_a_real_number_of_steps() {
        // 10 epochs of 130 images were 20 steps; now 100 epochs (at least
        // the floor).
        assert_eq!(supervised_epochs(130), 100.0);
        assert_eq!(supervised_steps(130, 64), MIN_STEPS);
        assert_eq!(supervised_steps(500, 64), 777);
    }

    #[test]
    fn steps_grow_with_the_data_but_epochs_shrink() {
        let sizes = [130, 5_500, 55_000, 1_000_000];
        let steps: Vec<u64> = sizes.iter().map(|&n| supervised_steps(n, 64)).collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
        // 30 epochs at 5,500 (2,578 steps), about 9.5 at 55,000, 3 at a million.
        assert_eq!(steps[1], 2_578);
        assert!((supervised_epochs(55_000) - 9.49).abs() < 0.01);
        assert_eq!(steps[3], 46_875);
    }

    #[test]
    fn explicit_lengths_win_and_unset_ones_are_filled_and_reported() {
        let mut cfg = TrainConfig::default();
        cfg.large.ssl.epochs = Some(2);
        let size = DatasetSize {
            labeled: 130,
            unlabeled: 1_165,
        };
        let schedule = fill_stage_lengths(&mut cfg, size);
        assert_eq!(cfg.large.train.steps, Some(300));
        assert_eq!(cfg.large.ssl.steps, None, "epochs given: steps stay unset");
        assert_eq!(cfg.small.train.steps, Some(1_251));
        assert!(
            schedule.large.starts_with(
                "130 labeled, 1165 unlabeled images: large model supervised 300 steps (batch 64), semi-supervised 2 epoch(s) (fixmatch"
            ),
            "{}",
            schedule.large
        );
        assert_eq!(
            schedule.for_mode(false, true),
            vec![schedule.small.as_str()]
        );
        // `stem: auto` is replaced by what it chose, and the line says so.
        assert_eq!(cfg.small.train.stem, StemChoice::Compact);
        assert_eq!(cfg.large.train.stem, StemChoice::ImageNet);
        assert!(
            schedule
                .small
                .starts_with("small model (compact stem) distillation 1,251 steps"),
            "{}",
            schedule.small
        );
        // Filled once: a second call (a resumed run's config) changes nothing.
        let before = cfg.clone();
        fill_stage_lengths(&mut cfg, size);
        assert_eq!(cfg, before);
    }

    #[test]
    fn stages_the_schedule_sized_stop_on_a_plateau_and_set_lengths_run_to_their_end() {
        let size = DatasetSize {
            labeled: 130,
            unlabeled: 1_165,
        };
        let mut cfg = TrainConfig::default();
        cfg.small.train.steps = Some(500);
        let schedule = fill_stage_lengths(&mut cfg, size);
        assert_eq!(cfg.large.train.patience, Some(AUTO_PATIENCE));
        assert_eq!(
            cfg.small.train.patience,
            Some(0),
            "steps set: no early stop"
        );
        // Patience counts evaluations: a sized stage gets the finer grid.
        assert_eq!(cfg.large.train.evals_per_stage, Some(AUTO_EVALS));
        assert_eq!(cfg.small.train.evals_per_stage, Some(DEFAULT_EVALS));
        assert!(
            schedule
                .large
                .ends_with("; supervised stops after 3 evaluations without a better val top-1"),
            "{}",
            schedule.large
        );
        assert!(
            !schedule.small.contains("stops after"),
            "{}",
            schedule.small
        );
        // A patience the user set wins, 0 included.
        let mut cfg = TrainConfig::default();
        cfg.large.train.patience = Some(0);
        cfg.small.train.patience = Some(5);
        cfg.small.train.evals_per_stage = Some(4);
        fill_stage_lengths(&mut cfg, size);
        assert_eq!(cfg.large.train.patience, Some(0));
        assert_eq!(cfg.small.train.patience, Some(5));
        assert_eq!(cfg.small.train.evals_per_stage, Some(4));
    }

    #[test]
    fn a_supervised_run_does_not_announce_a_semi_supervised_stage() {
        let mut cfg = TrainConfig::default();
        cfg.large.ssl.algorithm = AlgorithmKind::Supervised;
        let size = DatasetSize {
            labeled: 5_500,
            unlabeled: 49_500,
        };
        cfg.large.selftrain.epochs = 2;
        let schedule = fill_stage_lengths(&mut cfg, size);
        assert!(
            schedule.large.ends_with(
                "no semi-supervised stage (algorithm supervised), then self-training 2 epoch(s); supervised stops after 3 evaluations without a better val top-1"
            ),
            "{}",
            schedule.large
        );
    }

    #[test]
    fn mu_shrinks_only_for_a_small_unlabeled_set() {
        assert_eq!(default_mu(49_500, 64), MU);
        assert_eq!(default_mu(1_165, 64), 3);
        assert_eq!(default_mu(10, 64), 1);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(46_875), "46,875");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
