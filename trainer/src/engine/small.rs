//! `--mode small`: the small model learns from a frozen teacher over the
//! labeled and unlabeled images (offline from cached predictions, or online
//! on its own augmented views), then fine-tunes briefly on the labels; the
//! best by val is the result.

use std::path::Path;

use semiclass_manifest::checkpoint::Role;

use super::TrainError;
use super::large::{prepare_model, soft_label_job};
use super::pipeline::{BuildStage, ModelOutcome, StageResult, run_pipeline};
use super::setup::{ModelRun, RunData};
use super::stage::{Stage, StageContext, StageObserver};
use crate::algorithms::Distill;
use crate::config::DistillMode;
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
    let (mut net, data) =
        prepare_model(job.cfg, &cfg.train, job.dataset, job.device, job.on_image)?;
    let teacher = Teacher::load(teacher, &data.classes, job.device)?;
    eprintln!(
        "teacher: {} ({} at {} px, val top-1 {})",
        teacher.path.display(),
        teacher.meta.model,
        teacher.meta.input_size,
        teacher
            .meta
            .metrics
            .get("val_top1")
            .map_or("unknown".into(), |v| format!("{:.2}%", 100.0 * v))
    );
    let ctx = StageContext {
        cfg: &cfg.train,
        data: &data,
        run: job.run,
        role: Role::Small,
        seed: job.cfg.run.seed,
        workers: job.cfg.data.workers,
        prefetch: job.cfg.data.prefetch,
        stop: job.stop,
        teacher: Some(teacher.reference()),
    };
    let mut stages: Vec<(&str, BuildStage)> = vec![(
        "distill",
        Box::new(|_: &[StageResult]| distill_stage(job, &data, teacher)),
    )];
    if cfg.distill.finetune_epochs > 0 {
        stages.push((
            "finetune",
            Box::new(|_: &[StageResult]| {
                Ok(Some(Stage {
                    lr: cfg.distill.finetune_lr,
                    warmup_epochs: 0.0,
                    ..Stage::new("finetune", 2, cfg.distill.finetune_epochs, &cfg.train)
                }))
            }),
        ));
    }
    run_pipeline(&ctx, &mut net, stages, job.resume.as_deref(), observer)
}

/// Distillation over labeled (with their labels) and unlabeled images.
fn distill_stage(
    job: &ModelRun,
    data: &RunData,
    teacher: Teacher,
) -> Result<Option<Stage>, TrainError> {
    let cfg = &job.cfg.small;
    let distill = &cfg.distill;
    let items: Vec<(usize, i64)> = data
        .train
        .iter()
        .copied()
        .chain(data.unlabeled.iter().map(|&i| (i, -1)))
        .collect();
    let targets = match distill.mode {
        DistillMode::Offline => {
            let indices: Vec<usize> = items.iter().map(|&(i, _)| i).collect();
            let labels = SoftLabels::compute_or_load(&SoftLabelJob {
                t: distill.t,
                topk: distill.topk.clamp(1, data.classes.len()),
                flip: distill.flip,
                ..soft_label_job(job, data, &teacher, &indices, cfg.train.batch_size)
            })?;
            let Some(labels) = labels else {
                return Ok(None);
            };
            eprintln!(
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
    Ok(Some(Stage {
        algorithm: Box::new(Distill {
            t: distill.t,
            alpha: distill.alpha,
        }),
        items: Some(items),
        targets: Some(targets),
        ..Stage::new("distill", 1, cfg.train.epochs, &cfg.train)
    }))
}
