//! A model's stages run one after the other: each later stage starts from
//! the best checkpoint so far, a resumed run skips the stages it finished,
//! and the best over all stages becomes `best.safetensors`, measured once
//! on test.txt (never used to pick it).

use std::path::{Path, PathBuf};

use super::TrainError;
use super::evaluate::{EvalInput, EvalResult, evaluate};
use super::record::Recorder;
use super::setup::RunDir;
use super::stage::{ResumeInfo, Stage, StageContext, StageObserver, run_stage};
use crate::baseline::Baseline;
use crate::checkpoint::{load_state, load_weights, read_meta};
use crate::metrics::summary::{self, StageSummary, Summary, SummaryError};
use crate::nn::Network;

/// The best checkpoint of a finished stage.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub name: String,
    pub val_top1: f64,
    pub best: PathBuf,
    /// Optimizer steps the stage ran (fewer than planned when it stopped
    /// on a plateau).
    pub steps: u64,
}

/// Builds a stage when its turn comes (it may need the best checkpoint
/// so far, e.g. as a teacher, or need to judge it first).
pub type BuildStage<'a> = Box<dyn FnOnce(&[StageResult]) -> Result<Built, TrainError> + 'a>;

/// What a stage builder decided.
pub enum Built {
    Run(Box<Stage>),
    /// Not worth running (the builder said why); the pipeline goes on.
    Skip,
    /// A stop was requested while preparing it.
    Stopped,
}

/// The result of a model's pipeline.
#[derive(Debug, Clone)]
pub struct ModelOutcome {
    /// `checkpoints/best.safetensors`: the best val accuracy over all stages.
    pub best: PathBuf,
    pub best_stage: String,
    pub best_val_top1: f64,
    /// Accuracy of `best` on test.txt, when the dataset has one.
    pub test: Option<EvalResult>,
    pub interrupted: bool,
    pub stages: Vec<StageResult>,
    /// The run's reference accuracy on the same labels.
    pub baseline: Option<Baseline>,
}

impl ModelOutcome {
    /// The outcome a finished pipeline recorded in `run`'s `summary.json`.
    pub fn read(run: &RunDir) -> Result<ModelOutcome, TrainError> {
        let summary = summary::read(&run.path).map_err(|e| match e {
            SummaryError::Io { .. } => TrainError::Resume(format!(
                "{e}; the model of this run did not finish, resume it instead"
            )),
            parse => TrainError::Resume(parse.to_string()),
        })?;
        let test = summary.test_top1.map(|top1| EvalResult {
            top1,
            top5: summary.test_top5.unwrap_or(f64::NAN),
            loss: f64::NAN,
            count: summary.test_images.unwrap_or(0),
            confusion: Vec::new(),
            mistakes: Vec::new(),
            predictions: Vec::new(),
        });
        Ok(ModelOutcome {
            best: summary.best,
            best_stage: summary.best_stage,
            best_val_top1: summary.val_top1.unwrap_or(f64::NAN),
            test,
            interrupted: false,
            stages: Vec::new(),
            baseline: summary.baseline,
        })
    }
}

/// Runs `stages` (name, builder) on `net`, resuming from the state file
/// `resume` when given.
pub fn run_pipeline(
    ctx: &StageContext,
    net: &mut Network,
    stages: Vec<(&str, BuildStage)>,
    resume: Option<&Path>,
    observer: &mut dyn StageObserver,
) -> Result<ModelOutcome, TrainError> {
    let mut resume = resume.map(read_resume).transpose()?;
    let mut recorder = Recorder::open(ctx.run, resume.as_ref().map(|(_, info)| info), observer)?;
    let mut results: Vec<StageResult> = Vec::new();
    for (name, build) in stages {
        let stage_resume = match &resume {
            Some((_, info)) if info.stage != name => {
                // Resuming a later stage: this one finished in the earlier run.
                results.push(finished_stage(ctx, name)?);
                continue;
            }
            _ => resume.take(),
        };
        if stage_resume.is_none()
            && let Some(best) = best_of(&results)
        {
            let (_, tensors) = load_weights(&best.best)?;
            net.load_tensors(tensors, &best.best)?;
        }
        let stage = match build(&results)? {
            Built::Run(stage) => *stage,
            Built::Skip => continue,
            Built::Stopped => return Ok(interrupted(ctx, results)),
        };
        let outcome = run_stage(ctx, stage, net, stage_resume, &mut recorder)?;
        if outcome.interrupted {
            return Ok(interrupted(ctx, results));
        }
        results.push(StageResult {
            name: name.to_string(),
            val_top1: outcome.best_top1,
            best: outcome.best,
            steps: outcome.steps,
        });
    }
    finish(ctx, net, results)
}

/// The stage with the highest val accuracy.
pub fn best_of(results: &[StageResult]) -> Option<&StageResult> {
    results
        .iter()
        .max_by(|a, b| a.val_top1.total_cmp(&b.val_top1))
}

fn read_resume(path: &Path) -> Result<(Vec<(String, tch::Tensor)>, ResumeInfo), TrainError> {
    let (tensors, json) = load_state(path)?;
    let info: ResumeInfo = serde_json::from_value(json).map_err(|e| {
        TrainError::Resume(format!("{}: not a stage state file: {e}", path.display()))
    })?;
    Ok((tensors, info))
}

/// A stage that an earlier run finished, from its best checkpoint.
fn finished_stage(ctx: &StageContext, name: &str) -> Result<StageResult, TrainError> {
    let best = ctx.run.checkpoint(&format!("{name}-best.safetensors"));
    let meta = read_meta(&best)?;
    // The stage's last evaluation is at its last step.
    let last = read_meta(&ctx.run.checkpoint(&format!("{name}-last.safetensors")))?;
    Ok(StageResult {
        name: name.to_string(),
        val_top1: meta
            .metrics
            .get("val_top1")
            .copied()
            .unwrap_or(f64::NEG_INFINITY),
        best,
        steps: last.step,
    })
}

fn interrupted(ctx: &StageContext, stages: Vec<StageResult>) -> ModelOutcome {
    ModelOutcome {
        best: ctx.run.checkpoint("best.safetensors"),
        best_stage: String::new(),
        best_val_top1: f64::NAN,
        test: None,
        interrupted: true,
        stages,
        baseline: ctx.baseline.cloned(),
    }
}

/// Copies the best stage checkpoint to `best.safetensors` and measures it
/// on test.txt.
fn finish(
    ctx: &StageContext,
    net: &mut Network,
    results: Vec<StageResult>,
) -> Result<ModelOutcome, TrainError> {
    let winner = best_of(&results)
        .cloned()
        .ok_or_else(|| TrainError::Resume("no stage ran".into()))?;
    let best = ctx.run.checkpoint("best.safetensors");
    let bytes = std::fs::read(&winner.best).map_err(|source| TrainError::Io {
        path: winner.best.clone(),
        source,
    })?;
    semiclass_dataset::fsutil::write_atomic(&best, &bytes).map_err(|source| TrainError::Io {
        path: best.clone(),
        source,
    })?;
    crate::registry_hooks::checkpoint_copied(&best);
    let test = if ctx.data.test.is_empty() {
        None
    } else {
        let (_, tensors) = load_weights(&best)?;
        net.load_tensors(tensors, &best)?;
        let input = EvalInput {
            store: ctx.data.store.clone(),
            transform: ctx.data.transform.clone(),
            items: &ctx.data.test,
            batch_size: ctx.cfg.batch_size.max(64),
            workers: ctx.workers,
        };
        Some(evaluate(net, &input)?)
    };
    let outcome = ModelOutcome {
        best,
        best_stage: winner.name,
        best_val_top1: winner.val_top1,
        test,
        interrupted: false,
        stages: results,
        baseline: ctx.baseline.cloned(),
    };
    write_summary(ctx, &outcome)?;
    Ok(outcome)
}

/// `summary.json`: the result of the run directory, readable without the
/// tool.
fn write_summary(ctx: &StageContext, outcome: &ModelOutcome) -> Result<(), TrainError> {
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    let stages = outcome
        .stages
        .iter()
        .map(|s| StageSummary {
            stage: s.name.clone(),
            val_top1: finite(s.val_top1),
            best: s.best.clone(),
            steps: s.steps,
        })
        .collect();
    let written = summary::write(
        &ctx.run.path,
        &Summary {
            best: outcome.best.clone(),
            best_stage: outcome.best_stage.clone(),
            val_top1: finite(outcome.best_val_top1),
            test_top1: outcome.test.as_ref().map(|t| t.top1),
            test_top5: outcome.test.as_ref().map(|t| t.top5),
            test_images: outcome.test.as_ref().map(|t| t.count),
            baseline: outcome.baseline.clone(),
            // What `data.flip: auto` decided (README "Mirror images").
            flip: Some(ctx.data.transform.flip),
            stages,
        },
    );
    written.map(drop).map_err(|e| match e {
        SummaryError::Io { path, source } => TrainError::Io { path, source },
        parse => TrainError::Resume(parse.to_string()),
    })
}
