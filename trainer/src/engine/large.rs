//! `--mode large`: supervised warm start, semi-supervised from the warm
//! start's best checkpoint, then an optional self-training round; the best
//! over all stages is the result.

use std::sync::Arc;

use semiclass_dataset::Dataset;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::Role;
use semiclass_models::{Model, ModelOptions};
use tch::Device;

use super::TrainError;
use super::pipeline::{BuildStage, Built, ModelOutcome, StageResult, best_of, run_pipeline};
use super::setup::{ModelRun, RunData, load_data};
use super::stage::{Length, Stage, StageContext, StageObserver, Warmup};
use super::worth::{Worth, judge};
use crate::algorithms::{Algorithm, Distill, FixMatch, FreeMatch};
use crate::baseline::{Baseline, LabeledThumbnails, mirror_test, nearest_neighbour};
use crate::config::budget;
use crate::config::{AlgorithmKind, MirrorChoice, ModelTrainConfig, SslConfig, TrainConfig};
use crate::distill::TargetSource;
use crate::distill::soft_labels::{SoftLabelJob, SoftLabels};
use crate::distill::teacher::Teacher;
use crate::nn::Network;

/// Builds the model, loads pretrained weights when configured.
pub fn build_network(
    cfg: &ModelTrainConfig,
    classes: usize,
    device: Device,
) -> Result<Network, TrainError> {
    if let Some(n) = cfg.num_classes.filter(|&n| n != classes) {
        return Err(TrainError::ClassCount {
            config: n,
            dataset: classes,
        });
    }
    let options = ModelOptions {
        num_classes: classes,
        input_size: cfg.input_size,
        drop_rate: cfg.drop_rate,
        drop_path_rate: cfg.drop_path_rate,
        stem: cfg.stem.resolve(cfg.input_size, &cfg.model),
    };
    let mut net = Network::new(Model::new(&cfg.model, options)?, device);
    if let Some(path) = &cfg.pretrained {
        let report = net.load_safetensors(path)?;
        crate::notice!(
            "pretrained: {} tensors from {}{}",
            report.loaded,
            path.display(),
            if report.skipped_head.is_empty() {
                String::new()
            } else {
                "; new classifier for this dataset's classes".into()
            }
        );
    }
    Ok(net)
}

/// Builds the model (its initial weights a function of the run's seed)
/// and decodes the images for its evaluation transform.
pub fn prepare_model(
    cfg: &TrainConfig,
    model: &ModelTrainConfig,
    dataset: &Dataset,
    device: Device,
    on_image: &(dyn Fn() + Sync),
) -> Result<(Network, RunData), TrainError> {
    tch::manual_seed(cfg.run.seed as i64);
    let net = build_network(model, dataset.classes.len(), device)?;
    let entry = net.model.entry;
    let eval = PreprocessSpec::for_input(model.input_size as u32, entry.mean, entry.std);
    let data = load_data(dataset, eval, cfg.data.cache_mb, on_image)?;
    Ok((net, data))
}

/// Runs the large-model recipe of DESIGN.md section 6.
pub fn train_large(
    job: &ModelRun,
    observer: &mut dyn StageObserver,
) -> Result<ModelOutcome, TrainError> {
    let cfg = &job.cfg.large;
    let (mut net, mut data) =
        prepare_model(job.cfg, &cfg.train, job.dataset, job.device, job.on_image)?;
    let baseline = measure_references(job.cfg, &mut data, "large")?;
    let ctx = StageContext {
        cfg: &cfg.train,
        data: &data,
        run: job.run,
        role: Role::Large,
        seed: job.cfg.run.seed,
        workers: job.cfg.data.workers,
        prefetch: job.cfg.data.prefetch,
        stop: job.stop,
        dist: job.dist,
        teacher: None,
        baseline: Some(&baseline),
    };
    let stages = stages(job, &data, &baseline);
    run_pipeline(&ctx, &mut net, stages, job.resume.as_deref(), observer)
}

/// The run's measurements on thumbnails, printed for `model`, from one set
/// of thumbnails of the labeled images: settles `data.flip` (as
/// configured, or for `auto` by the mirror test) and measures the
/// 1-nearest-neighbour baseline.
pub fn measure_references(
    cfg: &TrainConfig,
    data: &mut RunData,
    model: &str,
) -> Result<Baseline, TrainError> {
    let seed = cfg.run.seed;
    let labeled = LabeledThumbnails::of(data, seed)?;
    Arc::make_mut(&mut data.transform).flip = settle_mirrors(cfg.data.flip, &labeled, seed, model);
    let baseline = nearest_neighbour(data, &labeled, seed)?;
    crate::notice!(
        "{model}: baseline: {}: val top-1 {:.2}%{}",
        baseline.describe(),
        100.0 * baseline.val_top1,
        baseline
            .test_top1
            .map_or(String::new(), |t| format!(", test top-1 {:.2}%", 100.0 * t))
    );
    Ok(baseline)
}

/// Whether the training views are flipped: as configured, or for `auto`
/// by the mirror test, printed with its figures.
fn settle_mirrors(
    choice: MirrorChoice,
    labeled: &LabeledThumbnails,
    seed: u64,
    model: &str,
) -> bool {
    match choice {
        MirrorChoice::Always => true,
        MirrorChoice::Never => false,
        MirrorChoice::Auto => {
            let test = mirror_test(labeled, seed);
            let flip = test.mirrors_keep_their_class();
            crate::notice!(
                "{model}: mirror images: {:.0}% of the mirrored labeled images find their class by nearest neighbour, {:.0}% unmirrored ({} images): {} (data.flip={} to change)",
                100.0 * test.mirrored,
                100.0 * test.unmirrored,
                test.images,
                if flip {
                    "training with horizontal flips"
                } else {
                    "classes change in a mirror, so training without horizontal flips"
                },
                if flip { "never" } else { "always" }
            );
            flip
        }
    }
}

/// A stage's length from its `steps` / `epochs`, `auto` when neither is
/// set (the CLI has usually filled them in already); `None`: skipped.
pub fn stage_length(
    steps: Option<u64>,
    epochs: Option<usize>,
    auto: impl FnOnce() -> u64,
) -> Option<Length> {
    match Length::from_config(steps, epochs).unwrap_or_else(|| Length::Steps(auto())) {
        Length::Steps(0) | Length::Epochs(0) => None,
        length => Some(length),
    }
}

/// Stage 1 unless its length is 0; stage 2 unless the algorithm is
/// `supervised`, its length is 0 or the best model so far is not worth
/// following; stage 3 when `selftrain.epochs` > 0.
fn stages<'a>(
    job: &'a ModelRun,
    data: &'a RunData,
    baseline: &'a Baseline,
) -> Vec<(&'static str, BuildStage<'a>)> {
    let cfg = &job.cfg.large;
    let (batch, labeled) = (cfg.train.batch_size, data.train.len());
    let mut stages: Vec<(&'static str, BuildStage<'a>)> = Vec::new();
    if let Some(length) = stage_length(cfg.train.steps, cfg.train.epochs, || {
        budget::supervised_steps(labeled, batch)
    }) {
        stages.push((
            "supervised",
            Box::new(move |_: &[StageResult]| {
                Ok(Built::Run(Box::new(Stage::new(
                    "supervised",
                    1,
                    length,
                    &cfg.train,
                ))))
            }),
        ));
    }
    let mu = cfg
        .ssl
        .mu
        .unwrap_or_else(|| budget::default_mu(data.unlabeled.len(), batch));
    let ssl_length = stage_length(cfg.ssl.steps, cfg.ssl.epochs, || {
        budget::ssl_steps(data.unlabeled.len(), batch, mu)
    });
    if let Some((algorithm, length)) = ssl_algorithm(&cfg.ssl, data.classes.len()).zip(ssl_length) {
        stages.push((
            "ssl",
            Box::new(move |results: &[StageResult]| {
                if !worth_following(results, data.classes.len(), baseline) {
                    return Ok(Built::Skip);
                }
                let stage = Stage {
                    mu,
                    labeler: cfg.ssl.teacher,
                    algorithm,
                    ..Stage::new("ssl", 2, length, &cfg.train)
                };
                Ok(Built::Run(Box::new(match best_of(results) {
                    Some(start) => stage.continuing(start.val_top1),
                    None => stage,
                })))
            }),
        ));
    }
    if cfg.selftrain.epochs > 0 {
        stages.push((
            "selftrain",
            Box::new(move |results: &[StageResult]| selftrain_stage(job, data, results)),
        ));
    }
    stages
}

/// Whether the best model so far makes pseudo-labels worth learning from;
/// says why not on stderr.
fn worth_following(results: &[StageResult], classes: usize, baseline: &Baseline) -> bool {
    let Some(best) = best_of(results) else {
        return true;
    };
    match judge(best.val_top1, classes, baseline) {
        Worth::Follow => true,
        Worth::Weak { reason } => {
            crate::notice!(
                "ssl: warning: the {} model is below the baseline ({reason}); its pseudo-labels will be noisy",
                best.name
            );
            true
        }
        Worth::Noise { reason } => {
            crate::notice!(
                "ssl: skipped: the {} model is too close to chance to make pseudo-labels ({reason}); {}",
                best.name,
                super::worth::what_to_try("large")
            );
            false
        }
    }
}

fn ssl_algorithm(ssl: &SslConfig, classes: usize) -> Option<Box<dyn Algorithm>> {
    match ssl.algorithm {
        AlgorithmKind::Supervised => None,
        AlgorithmKind::FixMatch => Some(Box::new(FixMatch {
            p_cutoff: ssl.p_cutoff,
            lambda_u: ssl.lambda_u,
        })),
        AlgorithmKind::FreeMatch => Some(Box::new(FreeMatch::new(
            classes,
            ssl.lambda_u,
            ssl.lambda_e,
            ssl.ema_p,
        ))),
    }
}

/// Stage 3: the best model so far labels the labeled and unlabeled images
/// (soft, flip-averaged); the labeled ones and the confident unlabeled ones
/// are learned by distillation at T = 1 plus cross-entropy on true labels.
fn selftrain_stage(
    job: &ModelRun,
    data: &RunData,
    results: &[StageResult],
) -> Result<Built, TrainError> {
    let cfg = &job.cfg.large;
    let best = best_of(results)
        .ok_or_else(|| TrainError::Resume("no stage before self-training".into()))?;
    let teacher = Teacher::load(&best.best, &data.classes, job.device)?;
    let indices: Vec<usize> = data
        .train
        .iter()
        .map(|&(i, _)| i)
        .chain(data.unlabeled.iter().copied())
        .collect();
    let labels = SoftLabels::compute_or_load(&soft_label_job(
        job,
        data,
        &teacher,
        &indices,
        (cfg.train.batch_size, cfg.selftrain.flip),
    ))?;
    let Some(labels) = labels else {
        return Ok(Built::Stopped);
    };
    let confident: Vec<(usize, i64)> = data
        .unlabeled
        .iter()
        .filter(|&&i| labels.top(i).0 >= cfg.selftrain.p_cutoff)
        .map(|&i| (i, -1))
        .collect();
    crate::notice!(
        "selftrain: {} of {} unlabeled images at confidence >= {} join {} labeled ones (teacher: {}, stage {})",
        confident.len(),
        data.unlabeled.len(),
        cfg.selftrain.p_cutoff,
        data.train.len(),
        best.best.display(),
        best.name
    );
    let items = data.train.iter().copied().chain(confident).collect();
    Ok(Built::Run(Box::new(
        Stage {
            algorithm: Box::new(Distill {
                t: 1.0,
                alpha: cfg.selftrain.alpha,
            }),
            warmup: Warmup::Epochs(0.1),
            items: Some(items),
            targets: Some(TargetSource::Offline(labels)),
            ..Stage::new(
                "selftrain",
                3,
                Length::Epochs(cfg.selftrain.epochs),
                &cfg.train,
            )
        }
        .to_the_end(),
    )))
}

/// The teacher's predictions on `indices` for this run: in batches twice
/// the training batch (at least 128), cached next to the runs so that later
/// runs with the same teacher and images reuse them, stopped by the run's
/// signal flag, with its progress bar. Averaged with the mirror image when
/// the stage asks (`flip`) and the run's mirrors keep their class
/// (`data.flip`). Distillation sets `t` and `topk` on it (defaults: 1, at
/// most 10).
pub fn soft_label_job<'a>(
    job: &'a ModelRun,
    data: &'a RunData,
    teacher: &'a Teacher,
    indices: &'a [usize],
    (train_batch_size, flip): (usize, bool),
) -> SoftLabelJob<'a> {
    SoftLabelJob {
        teacher,
        store: &data.store,
        indices,
        t: 1.0,
        topk: data.classes.len().min(10),
        flip: flip && data.transform.flip,
        batch_size: train_batch_size.max(64) * 2,
        cache_dir: job.cfg.run.dir.join(".soft-labels"),
        stop: job.stop,
        on_progress: job.on_teacher,
        dist: job.dist,
    }
}
