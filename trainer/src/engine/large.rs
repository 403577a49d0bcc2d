//! `--mode large`: supervised warm start, then semi-supervised from the
//! warm start's best checkpoint; the best over both stages is the result.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use semiclass_dataset::Dataset;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::Role;
use semiclass_models::{Model, ModelOptions};
use tch::Device;

use super::TrainError;
use super::evaluate::{EvalInput, EvalResult, evaluate};
use super::record::Recorder;
use super::setup::{RunData, RunDir, load_data};
use super::stage::{ResumeInfo, Stage, StageContext, StageObserver, run_stage};
use crate::algorithms::{Algorithm, FixMatch, FreeMatch, Supervised};
use crate::checkpoint::{load_state, load_weights};
use crate::config::{AlgorithmKind, TrainConfig};
use crate::nn::Network;

/// The result of a large-model run.
#[derive(Debug, Clone)]
pub struct LargeOutcome {
    /// `checkpoints/best.safetensors`: the best val accuracy over all stages.
    pub best: PathBuf,
    pub best_stage: String,
    pub best_val_top1: f64,
    /// Accuracy of `best` on test.txt, when the dataset has one.
    pub test: Option<EvalResult>,
    pub interrupted: bool,
}

/// What the caller provides besides the configuration.
pub struct LargeRun<'a> {
    pub cfg: &'a TrainConfig,
    pub dataset: &'a Dataset,
    pub run: &'a RunDir,
    pub device: Device,
    pub stop: &'a AtomicBool,
    /// A `*-last.state.safetensors` file to continue from.
    pub resume: Option<PathBuf>,
    pub on_image: &'a (dyn Fn() + Sync),
}

/// Builds the model, loads pretrained weights when configured.
pub fn build_network(
    cfg: &crate::config::ModelTrainConfig,
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
    };
    let mut net = Network::new(Model::new(&cfg.model, options)?, device);
    if let Some(path) = &cfg.pretrained {
        let report = net.load_safetensors(path)?;
        eprintln!(
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

/// Runs the large-model recipe of DESIGN.md section 6 (stages 1 and 2).
pub fn train_large(
    job: &LargeRun,
    observer: &mut dyn StageObserver,
) -> Result<LargeOutcome, TrainError> {
    let cfg = &job.cfg.large;
    // The initial weights too are a function of the run's seed.
    tch::manual_seed(job.cfg.run.seed as i64);
    let mut net = build_network(&cfg.train, job.dataset.classes.len(), job.device)?;
    let entry = net.model.entry;
    let eval = PreprocessSpec::for_input(cfg.train.input_size as u32, entry.mean, entry.std);
    let data = load_data(job.dataset, eval, job.cfg.data.cache_mb, job.on_image)?;
    let ctx = StageContext {
        cfg: &cfg.train,
        data: &data,
        run: job.run,
        role: Role::Large,
        seed: job.cfg.run.seed,
        workers: job.cfg.data.workers,
        prefetch: job.cfg.data.prefetch,
        stop: job.stop,
    };
    let mut resume = job.resume.as_deref().map(read_resume).transpose()?;
    let mut recorder = Recorder::open(job.run, resume.as_ref().map(|(_, info)| info), observer)?;
    let mut results: Vec<(String, f64, PathBuf)> = Vec::new();
    for stage in stages(job.cfg, data.classes.len()) {
        let name = stage.name.clone();
        let stage_resume = match &resume {
            Some((_, info)) if info.stage != name => {
                // Resuming a later stage: this one finished in the earlier run.
                finished_stage(job.run, &name, &mut results)?;
                continue;
            }
            _ => resume.take(),
        };
        if stage_resume.is_none() && name == "ssl" {
            start_from_best(&mut net, &results)?;
        }
        let outcome = run_stage(&ctx, stage, &mut net, stage_resume, &mut recorder)?;
        if outcome.interrupted {
            return Ok(interrupted(job.run));
        }
        results.push((name, outcome.best_top1, outcome.best));
    }
    finish(job.run, &mut net, &data, &ctx, results)
}

/// Stage 1 always; stage 2 unless the algorithm is `supervised`.
fn stages(cfg: &TrainConfig, classes: usize) -> Vec<Stage> {
    let ssl = &cfg.large.ssl;
    let mut stages = vec![Stage {
        name: "supervised".into(),
        id: 1,
        epochs: cfg.large.train.epochs,
        mu: 0,
        algorithm: Box::new(Supervised),
    }];
    let algorithm: Option<Box<dyn Algorithm>> = match ssl.algorithm {
        AlgorithmKind::Supervised => None,
        AlgorithmKind::FixMatch => Some(Box::new(FixMatch {
            p_cutoff: ssl.p_cutoff,
            lambda_u: ssl.lambda_u,
            t: ssl.t,
        })),
        AlgorithmKind::FreeMatch => Some(Box::new(FreeMatch::new(
            classes,
            ssl.lambda_u,
            ssl.t,
            ssl.ema_p,
        ))),
    };
    if let Some(algorithm) = algorithm.filter(|_| ssl.epochs > 0) {
        stages.push(Stage {
            name: "ssl".into(),
            id: 2,
            epochs: ssl.epochs,
            mu: ssl.mu,
            algorithm,
        });
    }
    stages
}

fn read_resume(path: &Path) -> Result<(Vec<(String, tch::Tensor)>, ResumeInfo), TrainError> {
    let (tensors, json) = load_state(path)?;
    let info: ResumeInfo = serde_json::from_value(json).map_err(|e| {
        TrainError::Resume(format!("{}: not a stage state file: {e}", path.display()))
    })?;
    Ok((tensors, info))
}

/// Records a stage that an earlier run finished, from its best checkpoint.
fn finished_stage(
    run: &RunDir,
    name: &str,
    results: &mut Vec<(String, f64, PathBuf)>,
) -> Result<(), TrainError> {
    let best = run.checkpoint(&format!("{name}-best.safetensors"));
    let meta = crate::checkpoint::read_meta(&best)?;
    results.push((
        name.to_string(),
        meta.metrics
            .get("val_top1")
            .copied()
            .unwrap_or(f64::NEG_INFINITY),
        best,
    ));
    Ok(())
}

/// Stage 2 starts from stage 1's best weights (Semi-ViT's recipe).
fn start_from_best(
    net: &mut Network,
    results: &[(String, f64, PathBuf)],
) -> Result<(), TrainError> {
    if let Some((_, _, best)) = results.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        let (_, tensors) = load_weights(best)?;
        net.load_tensors(tensors, best)?;
    }
    Ok(())
}

fn interrupted(run: &RunDir) -> LargeOutcome {
    LargeOutcome {
        best: run.checkpoint("best.safetensors"),
        best_stage: String::new(),
        best_val_top1: f64::NAN,
        test: None,
        interrupted: true,
    }
}

/// Copies the best stage checkpoint to `best.safetensors` and measures it
/// on test.txt (never used to pick it).
fn finish(
    run: &RunDir,
    net: &mut Network,
    data: &RunData,
    ctx: &StageContext,
    results: Vec<(String, f64, PathBuf)>,
) -> Result<LargeOutcome, TrainError> {
    let (stage, top1, path) = results
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or_else(|| TrainError::Resume("no stage ran".into()))?;
    let best = run.checkpoint("best.safetensors");
    let bytes = std::fs::read(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    semiclass_dataset::fsutil::write_atomic(&best, &bytes).map_err(|source| TrainError::Io {
        path: best.clone(),
        source,
    })?;
    crate::registry_hooks::checkpoint_copied(&best);
    let test = if data.test.is_empty() {
        None
    } else {
        let (_, tensors) = load_weights(&best)?;
        net.load_tensors(tensors, &best)?;
        let input = EvalInput {
            store: data.store.clone(),
            transform: data.transform.clone(),
            items: &data.test,
            batch_size: ctx.cfg.batch_size.max(64),
            workers: ctx.workers,
        };
        Some(evaluate(net, &input)?)
    };
    Ok(LargeOutcome {
        best,
        best_stage: stage,
        best_val_top1: top1,
        test,
        interrupted: false,
    })
}
