//! `--mode small`: the small model learns from a frozen teacher over the
//! labeled and unlabeled images (offline from cached predictions, or online
//! on its own augmented views), then fine-tunes briefly on the labels; the
//! best by val is the result.

use std::path::Path;

use semiclass_manifest::checkpoint::Role;

use super::TrainError;
use super::large::{measure_references, prepare_model, soft_label_job, stage_length};
use super::pipeline::{BuildStage, Built, ModelOutcome, StageResult, run_pipeline};
use super::setup::{ModelRun, RunData};
use super::stage::{Length, Stage, StageContext, StageObserver, Warmup};
use super::worth::{Worth, judge, what_to_try};
use crate::algorithms::Distill;
use crate::baseline::Baseline;
use crate::config::DistillMode;
use crate::config::budget;
use crate::distill::TargetSource;
use crate::distill::soft_labels::{SoftLabelJob, SoftLabels};
use crate::distill::teacher::{InputAdapter, Teacher};

/// Runs the small-model recipe of DESIGN.md section 6.
pub fn train_small(
    job: &ModelRun,
    teacher: &Path,
    observer: &mut dyn StageObserver,
) -> Result<ModelOutcome, TrainError> {
    let cfg = &job.cfg.small;
    let (mut net, mut data) =
        prepare_model(job.cfg, &cfg.train, job.dataset, job.device, job.on_image)?;
    let baseline = measure_references(job.cfg, &mut data, "small")?;
    let teacher = Teacher::load(teacher, &data.classes, job.device)?;
    let teacher_val = teacher.meta.metrics.get("val_top1").copied();
    crate::notice!(
        "teacher: {} ({} at {} px, val top-1 {})",
        teacher.path.display(),
        teacher.meta.model,
        teacher.meta.input_size,
        teacher_val.map_or("unknown".into(), |v| format!("{:.2}%", 100.0 * v))
    );
    if let Some(val) = teacher_val {
        check_teacher(
            &teacher.path,
            val,
            &data,
            &baseline,
            cfg.distill.check_teacher,
        )?;
    }
    let ctx = StageContext {
        cfg: &cfg.train,
        data: &data,
        run: job.run,
        role: Role::Small,
        seed: job.cfg.run.seed,
        workers: job.cfg.data.workers,
        prefetch: job.cfg.data.prefetch,
        stop: job.stop,
        dist: job.dist,
        teacher: Some(teacher.reference()),
        baseline: Some(&baseline),
    };
    let mut stages: Vec<(&str, BuildStage)> = vec![(
        "distill",
        Box::new(|_: &[StageResult]| distill_stage(job, &data, teacher)),
    )];
    if cfg.distill.finetune_epochs > 0 {
        let length = Length::Epochs(cfg.distill.finetune_epochs);
        stages.push((
            "finetune",
            Box::new(move |_: &[StageResult]| {
                Ok(Built::Run(Box::new(
                    Stage {
                        lr: cfg.distill.finetune_lr,
                        warmup: Warmup::Share(0.0),
                        ..Stage::new("finetune", 2, length, &cfg.train)
                    }
                    .to_the_end(),
                )))
            }),
        ));
    }
    run_pipeline(&ctx, &mut net, stages, job.resume.as_deref(), observer)
}

/// Refuses a teacher too close to chance to teach anything (unless
/// `check` is off) and warns about one below the baseline.
fn check_teacher(
    path: &Path,
    val_top1: f64,
    data: &RunData,
    baseline: &Baseline,
    check: bool,
) -> Result<(), TrainError> {
    match judge(val_top1, data.classes.len(), baseline) {
        Worth::Follow => Ok(()),
        Worth::Weak { reason } => {
            crate::notice!(
                "small: warning: the teacher {} is below the baseline ({reason}): the small model will copy its mistakes",
                path.display()
            );
            Ok(())
        }
        Worth::Noise { reason } if check => Err(TrainError::Teacher(format!(
            "{}: too close to chance to distill from ({reason}): the small model would copy noise; train a better teacher ({}), or set small.distill.check_teacher=false to distill anyway",
            path.display(),
            what_to_try("large")
        ))),
        Worth::Noise { reason } => {
            crate::notice!(
                "small: warning: distilling from {} although it is close to chance ({reason}; small.distill.check_teacher=false)",
                path.display()
            );
            Ok(())
        }
    }
}

/// Distillation over labeled (with their labels) and unlabeled images.
fn distill_stage(job: &ModelRun, data: &RunData, teacher: Teacher) -> Result<Built, TrainError> {
    let cfg = &job.cfg.small;
    let distill = &cfg.distill;
    let items: Vec<(usize, i64)> = data
        .train
        .iter()
        .copied()
        .chain(data.unlabeled.iter().map(|&i| (i, -1)))
        .collect();
    let batch = cfg.train.batch_size;
    let Some(length) = stage_length(cfg.train.steps, cfg.train.epochs, || {
        budget::distill_steps(items.len(), batch)
    }) else {
        return Ok(Built::Skip);
    };
    let targets = match distill.mode {
        DistillMode::Offline => {
            let indices: Vec<usize> = items.iter().map(|&(i, _)| i).collect();
            let labels = SoftLabels::compute_or_load(&SoftLabelJob {
                t: distill.t,
                topk: distill.topk.clamp(1, data.classes.len()),
                ..soft_label_job(
                    job,
                    data,
                    &teacher,
                    &indices,
                    (cfg.train.batch_size, distill.flip),
                )
            })?;
            let Some(labels) = labels else {
                return Ok(Built::Stopped);
            };
            crate::notice!(
                "teacher predictions: {} ({})",
                labels.file.display(),
                if labels.reused { "reused" } else { "computed" }
            );
            TargetSource::Offline(labels)
        }
        DistillMode::Online => TargetSource::Online {
            adapter: InputAdapter::new(&data.transform.eval, &teacher.meta.preprocess),
            teacher: Box::new(teacher),
            t: distill.t,
        },
    };
    Ok(Built::Run(Box::new(Stage {
        algorithm: Box::new(Distill {
            t: distill.t,
            alpha: distill.alpha,
        }),
        items: Some(items),
        targets: Some(targets),
        ..Stage::new("distill", 1, length, &cfg.train)
    })))
}
