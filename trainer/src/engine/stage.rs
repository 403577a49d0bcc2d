//! One training stage: steps over a plan, evaluation every `eval_interval`
//! epochs, best and last checkpoints, exact resume, clean interruption.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use semiclass_manifest::checkpoint::{CheckpointMeta, Role, TeacherRef, WeightsKind};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::TrainError;
use super::dist::Dist;
use super::evaluate::{EvalInput, EvalResult, evaluate};
use super::oom::{OomContext, catch_oom};
use super::plan::StepPlan;
use super::setup::{RunData, RunDir};
use super::step::{backward_if_finite, clip_grad_norm, forward_losses};
use crate::algorithms::{Algorithm, Supervised};
use crate::baseline::Baseline;
use crate::checkpoint::{save_checkpoint, save_state};
use crate::config::budget::DEFAULT_EVALS;
use crate::config::{ModelTrainConfig, OptimizerKind, PseudoLabeler};
use crate::data::loader::Loader;
use crate::distill::TargetSource;
use crate::ema::Ema;
use crate::nn::Network;
use crate::optim::{AdamW, Optimizer, Sgd, decays, zero_grad};
use crate::schedule::LrSchedule;

/// What stays the same for every stage of a run.
pub struct StageContext<'a> {
    pub cfg: &'a ModelTrainConfig,
    pub data: &'a RunData,
    pub run: &'a RunDir,
    pub role: Role,
    pub seed: u64,
    pub workers: usize,
    pub prefetch: usize,
    /// Set by SIGINT/SIGTERM: save a resumable checkpoint and stop.
    pub stop: &'a AtomicBool,
    /// Recorded in every checkpoint of a distilled model.
    pub teacher: Option<TeacherRef>,
    /// The run's reference accuracy, reported beside the model's.
    pub baseline: Option<&'a Baseline>,
    /// The process group of a data-parallel run; `None` for one process.
    pub dist: Option<&'a Dist>,
}

/// One stage to run.
pub struct Stage {
    /// `supervised`, `ssl`, `selftrain`, `distill`, `finetune`: names the
    /// stage's checkpoints.
    pub name: String,
    /// Distinguishes the stages' shuffles.
    pub id: u64,
    pub length: Length,
    pub mu: usize,
    /// Where a semi-supervised stage's pseudo-labels come from.
    pub labeler: PseudoLabeler,
    pub algorithm: Box<dyn Algorithm>,
    /// Peak learning rate and warmup of this stage.
    pub lr: f64,
    pub warmup: Warmup,
    /// The images the stage iterates over, `(store index, class id or -1)`;
    /// `None`: the labeled training images.
    pub items: Option<Vec<(usize, i64)>>,
    /// A teacher's probabilities, for distilling stages.
    pub targets: Option<TargetSource>,
    /// Evaluations without a better val accuracy after which the stage
    /// stops; 0 never.
    pub patience: usize,
    /// Val top-1 of the model the stage continues: `patience` counts only
    /// once the stage has done better (`None`: from the first evaluation).
    pub patience_after: Option<f64>,
}

/// How long a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Steps(u64),
    /// Passes over the stage's images (`items`, else the labeled ones).
    Epochs(usize),
}

impl Length {
    /// `epochs` when given, else `steps`; `None` when neither is.
    pub fn from_config(steps: Option<u64>, epochs: Option<usize>) -> Option<Length> {
        epochs.map(Length::Epochs).or(steps.map(Length::Steps))
    }

    fn steps(self, per_epoch: u64) -> u64 {
        match self {
            Length::Steps(steps) => steps,
            Length::Epochs(epochs) => per_epoch * epochs as u64,
        }
    }
}

/// How long the learning rate warms up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    /// A share of the stage's steps.
    Share(f64),
    Epochs(f64),
}

impl Warmup {
    /// The model's configured warm-up (epochs win over the share).
    pub fn from_config(cfg: &ModelTrainConfig) -> Warmup {
        cfg.warmup_epochs
            .map_or(Warmup::Share(cfg.warmup), Warmup::Epochs)
    }

    fn steps(self, per_epoch: u64, total: u64) -> u64 {
        let steps = match self {
            Warmup::Share(share) => share * total as f64,
            Warmup::Epochs(epochs) => epochs * per_epoch as f64,
        };
        (steps.round().max(0.0) as u64).min(total)
    }
}

impl Stage {
    /// A supervised stage over the labeled images with the model's own
    /// learning rate, warm-up and patience.
    pub fn new(name: &str, id: u64, length: Length, cfg: &ModelTrainConfig) -> Stage {
        Stage {
            name: name.into(),
            id,
            length,
            mu: 0,
            labeler: PseudoLabeler::Live,
            algorithm: Box::new(Supervised),
            lr: cfg.lr,
            warmup: Warmup::from_config(cfg),
            items: None,
            targets: None,
            patience: cfg.patience.unwrap_or(0),
            patience_after: None,
        }
    }

    /// A stage that continues a model whose val top-1 was `start_top1`
    /// (semi-supervised): its val accuracy first dips while the restarted
    /// learning rate and the new targets shake the model, so `patience`
    /// counts only once the stage has beaten its start. Until then it runs
    /// on, to its end if it never does. (130 labeled digits, FixMatch, split
    /// 2: from 96.5%, 81.1% at its first evaluation, best 97.2% at step 66
    /// of 121, flat after.)
    pub fn continuing(self, start_top1: f64) -> Stage {
        Stage {
            patience_after: Some(start_top1),
            ..self
        }
    }

    /// Whether a stage whose best val top-1 so far is `best_top1`, reached
    /// `evals_since_best` evaluations ago, has stopped improving.
    fn plateau(&self, best_top1: f64, evals_since_best: usize) -> bool {
        let counting = self.patience_after.is_none_or(|start| best_top1 > start);
        self.patience > 0 && counting && evals_since_best >= self.patience
    }

    /// A stage that continues a trained model and runs to its end
    /// (self-training, fine-tune): short stages whose targets change the
    /// model, where a plateau says little.
    pub fn to_the_end(self) -> Stage {
        Stage {
            patience: 0,
            ..self
        }
    }
}

/// A training log line, every `log_interval` steps.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub stage: String,
    pub epoch: u64,
    pub step: u64,
    pub total_steps: u64,
    pub lr: f64,
    pub sup_loss: f64,
    pub unsup_loss: f64,
    pub mask_ratio: f64,
    pub images_per_s: f64,
    /// Share of the interval's time spent waiting for data.
    pub data_wait: f64,
}

/// Where a stage reports progress (metrics file, terminal).
pub trait StageObserver {
    fn on_log(&mut self, record: &StepRecord);
    fn on_eval(&mut self, record: &StepRecord, result: &EvalResult, best: bool);
}

/// How a stage ended.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub best_top1: f64,
    /// The best evaluated weights of this stage (a checkpoint file).
    pub best: PathBuf,
    pub interrupted: bool,
    /// Steps run.
    pub steps: u64,
}

/// Where a resumed stage continues: saved in the state file's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeInfo {
    pub stage: String,
    pub step: u64,
    /// `-inf` (written as JSON null) before the stage's first evaluation.
    #[serde(deserialize_with = "null_as_no_score")]
    pub best_top1: f64,
    #[serde(default)]
    pub evals_since_best: usize,
    pub algorithm: serde_json::Value,
}

/// JSON has no infinities: serde_json writes `-inf` as null.
fn null_as_no_score<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// Running state of a stage.
struct Progress {
    step: u64,
    best_top1: f64,
    /// Evaluations since the best one (for `patience`).
    evals_since_best: usize,
    since_log: Instant,
    waited_at_log: std::time::Duration,
    images_since_log: usize,
}

/// A stage in progress: the model and everything that updates it.
struct Runner<'a, 'n> {
    ctx: &'a StageContext<'a>,
    stage: Stage,
    net: &'n mut Network,
    optimizer: Box<dyn Optimizer>,
    ema: Option<Ema>,
    schedule: LrSchedule,
    per_epoch: u64,
    total: u64,
    /// Steps between evaluations.
    eval_every: u64,
    files: StageFiles,
    progress: Progress,
}

/// Runs `stage` on `net` from its start, or from `resume` (the state file
/// tensors and info written by an earlier interrupted run of this stage).
pub fn run_stage(
    ctx: &StageContext,
    stage: Stage,
    net: &mut Network,
    resume: Option<(Vec<(String, Tensor)>, ResumeInfo)>,
    observer: &mut dyn StageObserver,
) -> Result<StageOutcome, TrainError> {
    let plan = step_plan(ctx, &stage);
    if let Some(dist) = ctx.dist {
        // Before the EMA copies the weights: every rank starts from rank 0's.
        dist.broadcast_network(net)?;
        dist.prepare_network(net);
    }
    let mut runner = Runner::new(ctx, stage, net, plan.steps_per_epoch());
    if let Some((tensors, info)) = resume {
        runner.restore(tensors, &info)?;
    }
    if let Some(dist) = ctx.dist {
        dist.attach(runner.net)?;
    }
    let mut requests = plan.requests(runner.progress.step, runner.total);
    if let Some(dist) = ctx.dist {
        requests = dist.shard_all(requests, ctx.role)?;
    }
    let mut loader = Loader::start(
        ctx.data.store.clone(),
        ctx.data.transform.clone(),
        requests,
        ctx.workers,
        ctx.prefetch,
    );
    while runner.progress.step < runner.total {
        if ctx.stop.load(Ordering::SeqCst) {
            runner.save_resume()?;
            return Ok(runner.outcome(true));
        }
        let parts = loader.next_batch().expect("one batch per step")?;
        let oom = OomContext {
            section: match ctx.role {
                Role::Large => "large",
                Role::Small => "small",
            },
            batch_size: ctx.cfg.batch_size,
            stage: &runner.stage.name.clone(),
            step: runner.progress.step + 1,
        };
        let record = catch_oom(oom, || runner.step(&parts))?;
        let last = runner.progress.step == runner.total;
        if runner
            .progress
            .step
            .is_multiple_of(ctx.cfg.log_interval.max(1) as u64)
            || last
        {
            observer.on_log(&timed(record.clone(), &mut runner.progress, loader.waited));
        }
        if runner.eval_due() {
            let (result, best) = runner.evaluate_and_save()?;
            observer.on_eval(&record, &result, best);
            if runner.plateaued() && runner.progress.step < runner.total {
                crate::notice!(
                    "{}: stopped at step {} of {}: val top-1 has not improved for {} evaluations (patience)",
                    runner.stage.name,
                    runner.progress.step,
                    runner.total,
                    runner.stage.patience
                );
                break;
            }
        }
    }
    Ok(runner.outcome(false))
}

impl<'a, 'n> Runner<'a, 'n> {
    fn new(ctx: &'a StageContext<'a>, stage: Stage, net: &'n mut Network, per_epoch: u64) -> Self {
        let total = stage.length.steps(per_epoch);
        let warmup = stage.warmup.steps(per_epoch, total);
        let schedule = LrSchedule::new(stage.lr, warmup, total);
        let eval_every = match ctx.cfg.eval_interval {
            Some(epochs) => per_epoch * epochs.max(1) as u64,
            None => {
                let evals = ctx.cfg.evals_per_stage.unwrap_or(DEFAULT_EVALS);
                total.div_ceil(evals.max(1) as u64)
            }
        };
        let ema = (ctx.cfg.ema_decay > 0.0).then(|| Ema::new(net, ctx.cfg.ema_decay, true));
        let files = StageFiles::new(ctx.run, &stage.name);
        Runner {
            ctx,
            stage,
            net,
            optimizer: make_optimizer(ctx.cfg),
            ema,
            schedule,
            per_epoch,
            total,
            eval_every: eval_every.max(1),
            files,
            progress: Progress {
                step: 0,
                best_top1: f64::NEG_INFINITY,
                evals_since_best: 0,
                since_log: Instant::now(),
                waited_at_log: Default::default(),
                images_since_log: 0,
            },
        }
    }

    /// One optimisation step; fails on a non-finite loss.
    fn step(&mut self, parts: &[crate::data::loader::PartBatch]) -> Result<StepRecord, TrainError> {
        let step = self.progress.step;
        // Every rank takes an equal share: the global rate is the world's.
        let world = self.ctx.dist.map_or(1, Dist::world_size);
        self.progress.images_since_log +=
            world * parts.iter().map(|p| p.labels.len()).sum::<usize>();
        // Dropout and drop-path masks: a pure function of the step, for exact resume.
        tch::manual_seed(plan_seed(self.ctx.seed, self.stage.id, step));
        zero_grad(&trainable(self.net));
        let input_size = self.ctx.data.transform.input_size;
        let losses = forward_losses(
            self.net,
            self.ema.as_mut(),
            self.stage.labeler,
            &mut *self.stage.algorithm,
            self.stage.targets.as_ref(),
            parts,
            input_size,
        );
        let [total_loss, sup_loss, unsup_loss, mask_ratio] =
            backward_if_finite(&losses, self.ctx.dist)?;
        if !total_loss.is_finite() {
            return Err(self.non_finite(total_loss));
        }
        let params = trainable(self.net);
        if let Some(dist) = self.ctx.dist {
            dist.average_gradients(&params)?;
        }
        let lr = self.schedule.lr_at(step);
        if let Some(max_norm) = self.ctx.cfg.grad_clip {
            clip_grad_norm(&params, max_norm);
        }
        self.optimizer.step(&params, lr);
        if let Some(ema) = self.ema.as_mut() {
            ema.update(self.net, step);
        }
        self.progress.step += 1;
        Ok(StepRecord {
            stage: self.stage.name.clone(),
            epoch: self.progress.step.div_ceil(self.per_epoch),
            step: self.progress.step,
            total_steps: self.total,
            lr,
            sup_loss,
            unsup_loss,
            mask_ratio,
            images_per_s: 0.0,
            data_wait: 0.0,
        })
    }

    fn non_finite(&self, value: f64) -> TrainError {
        let last_good = if self.files.last_state.exists() {
            self.files.last_state.display().to_string()
        } else {
            "none yet".into()
        };
        TrainError::NonFinite {
            stage: self.stage.name.clone(),
            step: self.progress.step,
            value,
            last_good,
        }
    }

    /// Every `eval_every` steps, and at the stage's end.
    fn eval_due(&self) -> bool {
        let step = self.progress.step;
        step.is_multiple_of(self.eval_every) || step == self.total
    }

    /// `patience` evaluations in a row without a better val accuracy,
    /// counted once the stage has beaten the model it continues.
    fn plateaued(&self) -> bool {
        self.stage
            .plateau(self.progress.best_top1, self.progress.evals_since_best)
    }

    /// Val accuracy of the deployable weights, then `last` (and `best`
    /// when improved) checkpoints and the resume state.
    fn evaluate_and_save(&mut self) -> Result<(EvalResult, bool), TrainError> {
        let ctx = self.ctx;
        let result = match ctx.dist {
            None => evaluate_current(ctx, self.net, self.ema.as_mut())?,
            Some(dist) => dist.evaluate_on_rank0(self.net, self.ema.as_mut(), |net, ema| {
                evaluate_current(ctx, net, ema)
            })?,
        };
        // The step's own loss was finite, but the update that followed it
        // can still blow the weights up: never save such a checkpoint over
        // the last good one.
        if !result.loss.is_finite() {
            return Err(self.non_finite(result.loss));
        }
        let best = result.top1 > self.progress.best_top1;
        if best {
            self.progress.best_top1 = result.top1;
            self.progress.evals_since_best = 0;
        } else {
            self.progress.evals_since_best += 1;
        }
        let meta = checkpoint_meta(
            self.ctx,
            &self.stage,
            self.net,
            self.ema.is_some(),
            &result,
            self.progress.step,
            self.per_epoch,
        );
        let tensors = match &self.ema {
            Some(ema) => ema.tensors(),
            None => self.net.named_tensors(),
        };
        let sha = save_checkpoint(&self.files.last, &tensors, &meta)?;
        crate::registry_hooks::checkpoint_saved(&self.files.last, &sha, &meta);
        if best {
            let sha = save_checkpoint(&self.files.best, &tensors, &meta)?;
            crate::registry_hooks::checkpoint_saved(&self.files.best, &sha, &meta);
        }
        self.save_resume()?;
        Ok((result, best))
    }

    /// The state a resumed run needs: raw weights, optimizer, EMA, algorithm.
    fn save_resume(&self) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, Tensor)> = self
            .net
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t.shallow_clone()))
            .collect();
        tensors.extend(self.optimizer.state());
        if let Some(ema) = &self.ema {
            tensors.extend(ema.state());
        }
        let info = ResumeInfo {
            stage: self.stage.name.clone(),
            step: self.progress.step,
            best_top1: self.progress.best_top1,
            evals_since_best: self.progress.evals_since_best,
            algorithm: self.stage.algorithm.state(),
        };
        save_state(
            &self.files.last_state,
            &tensors,
            &serde_json::to_value(&info).expect("serialises"),
        )?;
        Ok(())
    }

    fn restore(
        &mut self,
        tensors: Vec<(String, Tensor)>,
        info: &ResumeInfo,
    ) -> Result<(), TrainError> {
        let resume = |e: String| TrainError::Resume(e);
        let (mut model, mut optim, mut averaged) = (Vec::new(), Vec::new(), Vec::new());
        for (name, t) in tensors {
            if let Some(n) = name.strip_prefix("model.") {
                model.push((n.to_string(), t));
            } else if name.starts_with("ema.") {
                averaged.push((name, t));
            } else {
                optim.push((name, t));
            }
        }
        self.net
            .load_tensors(model, Path::new("resume state"))
            .map_err(|e| resume(e.to_string()))?;
        self.optimizer
            .load_state(optim, &trainable(self.net))
            .map_err(|e| resume(e.to_string()))?;
        if let Some(ema) = self.ema.as_mut() {
            ema.load_state(averaged)
                .map_err(|e| resume(e.to_string()))?;
        }
        self.stage
            .algorithm
            .load_state(&info.algorithm)
            .map_err(|e| resume(e.to_string()))?;
        self.progress.step = info.step;
        self.progress.best_top1 = info.best_top1;
        self.progress.evals_since_best = info.evals_since_best;
        Ok(())
    }

    fn outcome(self, interrupted: bool) -> StageOutcome {
        StageOutcome {
            best_top1: self.progress.best_top1,
            best: self.files.best,
            interrupted,
            steps: self.progress.step,
        }
    }
}

fn trainable(net: &Network) -> Vec<(&Tensor, bool)> {
    net.trainable()
        .into_iter()
        .map(|(spec, t)| (t, decays(&spec.shape)))
        .collect()
}

/// Images per second and data-wait share since the last log line.
fn timed(
    mut record: StepRecord,
    progress: &mut Progress,
    waited: std::time::Duration,
) -> StepRecord {
    let elapsed = progress.since_log.elapsed().as_secs_f64().max(1e-9);
    record.images_per_s = progress.images_since_log as f64 / elapsed;
    record.data_wait = (waited - progress.waited_at_log).as_secs_f64() / elapsed;
    progress.since_log = Instant::now();
    progress.waited_at_log = waited;
    progress.images_since_log = 0;
    record
}

fn step_plan(ctx: &StageContext, stage: &Stage) -> StepPlan {
    let uses_unlabeled = stage.algorithm.uses_unlabeled() && stage.mu > 0;
    StepPlan {
        labeled: stage
            .items
            .clone()
            .unwrap_or_else(|| ctx.data.train.clone()),
        unlabeled: if uses_unlabeled {
            ctx.data.unlabeled.clone()
        } else {
            Vec::new()
        },
        batch_size: ctx.cfg.batch_size,
        mu: if uses_unlabeled { stage.mu } else { 0 },
        seed: ctx.seed,
        stage: stage.id,
    }
}

fn plan_seed(seed: u64, stage: u64, step: u64) -> i64 {
    (seed ^ stage.rotate_left(32) ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64 & i64::MAX
}

fn make_optimizer(cfg: &ModelTrainConfig) -> Box<dyn Optimizer> {
    match cfg.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(cfg.momentum, true, cfg.weight_decay)),
        OptimizerKind::AdamW => Box::new(AdamW::new((0.9, 0.999), 1e-8, cfg.weight_decay)),
    }
}

/// Val accuracy of the weights that would be deployed (the EMA when on).
fn evaluate_current(
    ctx: &StageContext,
    net: &mut Network,
    ema: Option<&mut Ema>,
) -> Result<EvalResult, TrainError> {
    let input = EvalInput {
        store: ctx.data.store.clone(),
        transform: ctx.data.transform.clone(),
        items: &ctx.data.val,
        batch_size: ctx.cfg.batch_size.max(64),
        workers: ctx.workers,
    };
    let result = match ema {
        Some(ema) => ema.with_weights(net, |n| evaluate(n, &input)),
        None => evaluate(net, &input),
    };
    Ok(result?)
}

/// Paths of a stage's checkpoint files.
struct StageFiles {
    best: PathBuf,
    last: PathBuf,
    last_state: PathBuf,
}

impl StageFiles {
    fn new(run: &RunDir, stage: &str) -> Self {
        StageFiles {
            best: run.checkpoint(&format!("{stage}-best.safetensors")),
            last: run.checkpoint(&format!("{stage}-last.safetensors")),
            last_state: run.checkpoint(&format!("{stage}-last.state.safetensors")),
        }
    }
}

/// What a checkpoint says about itself: model, classes, preprocessing,
/// where in training it was taken and how it scored on val.
fn checkpoint_meta(
    ctx: &StageContext,
    stage: &Stage,
    net: &Network,
    ema: bool,
    result: &EvalResult,
    step: u64,
    per_epoch: u64,
) -> CheckpointMeta {
    let metrics = [
        ("val_top1", result.top1),
        ("val_top5", result.top5),
        ("val_loss", result.loss),
    ];
    let mut meta = CheckpointMeta {
        format_version: semiclass_manifest::checkpoint::CHECKPOINT_FORMAT_VERSION,
        model: net.model.entry.name.to_string(),
        num_classes: net.model.options.num_classes,
        input_size: ctx.data.transform.input_size,
        stem: net.model.options.stem,
        class_names: ctx.data.classes.clone(),
        preprocess: ctx.data.transform.eval.clone(),
        role: ctx.role,
        stage: stage.name.clone(),
        epoch: step / per_epoch,
        step,
        metrics: metrics
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        weights: if ema {
            WeightsKind::Ema
        } else {
            WeightsKind::Raw
        },
        created: String::new(),
        created_unix: 0,
        run_id: ctx
            .run
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        run_dir: Some(ctx.run.path.display().to_string()),
        teacher: ctx.teacher.clone(),
    };
    meta.stamp_now();
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(patience: usize) -> Stage {
        let cfg = ModelTrainConfig {
            patience: Some(patience),
            ..ModelTrainConfig::default()
        };
        Stage::new("ssl", 2, Length::Steps(121), &cfg)
    }

    #[test]
    fn patience_counts_evaluations_since_the_best() {
        assert!(!stage(3).plateau(0.5, 2));
        assert!(stage(3).plateau(0.5, 3));
        assert!(!stage(0).plateau(0.5, 100), "patience 0 never stops");
        assert!(!stage(3).to_the_end().plateau(0.5, 100));
    }

    #[test]
    fn a_continuing_stage_counts_only_once_it_has_beaten_its_start() {
        // FixMatch from a 96.5% supervised model dips to 81% first: no
        // number of evaluations below the start stops it.
        let ssl = stage(3).continuing(0.965);
        assert!(!ssl.plateau(0.811, 9));
        assert!(!ssl.plateau(0.965, 9), "equal is not better");
        assert!(ssl.plateau(0.972, 3));
        assert!(!ssl.plateau(0.972, 2));
    }
}
