//! `semiclass train --mode large|small|joint -c cfg.yaml -o key=value`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, ValueEnum};
use semiclass_dataset::Dataset;
use semiclass_trainer::config::budget::{DatasetSize, fill_stage_lengths};
use semiclass_trainer::config::{TrainConfig, resolve, to_yaml};
use semiclass_trainer::engine::TrainError;
use semiclass_trainer::engine::large::train_large;
use semiclass_trainer::engine::pipeline::ModelOutcome;
use semiclass_trainer::engine::setup::{ModelRun, RunDir, select_device};
use semiclass_trainer::engine::small::train_small;
use semiclass_trainer::engine::stage::StageObserver;
use semiclass_trainer::registry_hooks;
use tch::Device;

use super::progress::Terminal;
use super::ranks;
use semiclass_trainer::engine::dist::Dist;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// What to train.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The run configuration (YAML); every key has a default.
    #[arg(short = 'c', long = "config", conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// `section.key=value` overrides, applied after the file.
    #[arg(short = 'o', value_name = "KEY=VALUE", conflicts_with = "resume")]
    overrides: Vec<String>,
    /// The dataset folder (same as `-o data.dir=DIR`).
    #[arg(long, conflicts_with = "resume")]
    data: Option<PathBuf>,
    /// The teacher of `--mode small`: a checkpoint or @nick (same as `-o small.distill.teacher=CKPT`).
    #[arg(long, conflicts_with = "resume")]
    teacher: Option<PathBuf>,
    /// Continue an interrupted run from its `checkpoints/*-last.state.safetensors`,
    /// with the run's own saved configuration; @nick continues the run of
    /// that checkpoint from its latest state.
    #[arg(long, value_name = "STATE|@nick")]
    resume: Option<String>,
    /// Train data-parallel in N local processes (ranks 0..N-1 on 127.0.0.1,
    /// as `torchrun --nproc-per-node N` would start them).
    #[arg(long, value_name = "N")]
    nproc: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The large model: supervised warm start, semi-supervised, optional self-training.
    Large,
    /// The small model, distilled from a teacher checkpoint.
    Small,
    /// The large model, then the small one distilled from its best checkpoint.
    Joint,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Large => "large",
            Mode::Small => "small",
            Mode::Joint => "joint",
        }
    }

    fn trains_large(self) -> bool {
        self != Mode::Small
    }

    fn trains_small(self) -> bool {
        self != Mode::Large
    }
}

/// Everything the model pipelines share.
struct Session {
    cfg: TrainConfig,
    dataset: Dataset,
    device: Device,
    stop: Arc<AtomicBool>,
    terminal: Terminal,
    /// The process group of a data-parallel run.
    dist: Option<Dist>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let env = ranks::environment()?;
    if let Some(n) = args.nproc.filter(|&n| n > 1) {
        if let Some(env) = &env {
            anyhow::bail!(
                "--nproc {n}: this process is already rank {} of {} (RANK is set, by torchrun or srun); give --nproc or use a launcher, not both",
                env.rank,
                env.world_size
            );
        }
        return ranks::launch_local(n);
    }
    semiclass_trainer::alloc::tune_for_training();
    let secondary = ranks::is_secondary(env.as_ref());
    let scratch = match &env {
        Some(e) if secondary => Some(ranks::Scratch::create(e.rank)?),
        _ => None,
    };
    if secondary {
        ranks::silence();
    }
    let resume = args.resume.as_deref().map(resume_state).transpose()?;
    let (cfg, run, dataset) = prepare(&args, resume.as_deref(), scratch.as_ref())?;
    let resume = match (&scratch, resume) {
        (Some(_), Some(state)) => Some(in_copy(&state, args.mode, &run)?),
        (_, state) => state,
    };
    if cfg.run.threads > 0 {
        tch::set_num_threads(cfg.run.threads as i32);
    }
    let device = select_device(&cfg.run.device)?;
    let dist = env
        .as_ref()
        .map(|e| ranks::join(e, &cfg, device))
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    // A second Ctrl-C while the checkpoint is written ends the process. A
    // second SIGTERM does not: a process whose parent dies gets its
    // PR_SET_PDEATHSIG again each time it is handed to another of the
    // dying parent's threads (a killed `semiclass studio` sends several),
    // and the state must still be saved; SIGKILL is the way to force.
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        stop.clone(),
    )?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    println!("run: {}", run.path.display());
    if let (Some(d), Some(e)) = (&dist, &env) {
        println!(
            "data-parallel: {} ranks, Gloo, rendezvous at {}:{}",
            d.world_size(),
            e.master_addr,
            e.master_port
        );
    }
    println!(
        "threads: {} (OpenMP: {})",
        tch::get_num_threads(),
        semiclass_trainer::openmp::describe()
    );
    let session = Session {
        cfg,
        dataset,
        device,
        stop,
        terminal: if secondary {
            Terminal::hidden()
        } else {
            Terminal::new()
        },
        dist,
    };
    let started = std::time::Instant::now();
    let outcome = match args.mode {
        Mode::Large => large(&session, &run, resume).map(|o| vec![("large", o)]),
        Mode::Small => small(&session, &run, resume, None).map(|o| vec![("small", o)]),
        Mode::Joint => joint(&session, &run, resume),
    };
    session.terminal.clear();
    if let Some(dist) = &session.dist {
        report_averaging(dist, started.elapsed());
    }
    report(args.mode, &run, &outcome?)
}

/// What data parallelism cost this rank: the share of the run spent
/// finishing the gradient averaging after backward, the part the overlap
/// with backward did not hide (bench/ddp-scaling.sh reads this line).
fn report_averaging(dist: &Dist, run: std::time::Duration) {
    let averaging = dist.averaging_time();
    println!(
        "data-parallel: gradient all-reduce, waited for after backward: {:.1} s of {:.1} s ({:.1}%)",
        averaging.as_secs_f64(),
        run.as_secs_f64(),
        100.0 * averaging.as_secs_f64() / run.as_secs_f64().max(1e-9)
    );
}

fn large(s: &Session, run: &RunDir, resume: Option<PathBuf>) -> anyhow::Result<ModelOutcome> {
    train_recorded(s, run, resume, "large", |job, observer| {
        train_large(job, observer)
    })
}

/// `teacher` overrides the configured one (joint mode).
fn small(
    s: &Session,
    run: &RunDir,
    resume: Option<PathBuf>,
    teacher: Option<PathBuf>,
) -> anyhow::Result<ModelOutcome> {
    let teacher = match teacher {
        Some(path) => path,
        None => teacher_checkpoint(s.cfg.small.distill.teacher.as_deref())?,
    };
    train_recorded(s, run, resume, "small", |job, observer| {
        train_small(job, &teacher, observer)
    })
}

/// Trains one model with the terminal's progress, recorded in the run
/// registry from start to end.
fn train_recorded(
    s: &Session,
    run: &RunDir,
    resume: Option<PathBuf>,
    mode: &str,
    train: impl FnOnce(&ModelRun, &mut dyn StageObserver) -> Result<ModelOutcome, TrainError>,
) -> anyhow::Result<ModelOutcome> {
    s.terminal
        .decoding(s.dataset.train.len() + s.dataset.unlabeled.len() + s.dataset.val.len());
    let job = ModelRun {
        cfg: &s.cfg,
        dataset: &s.dataset,
        run,
        device: s.device,
        stop: &s.stop,
        resume,
        on_image: &|| s.terminal.image_decoded(),
        on_teacher: &|done, total| s.terminal.teacher(done, total),
        dist: s.dist.as_ref(),
    };
    // The registry is rank 0's: without a started run, nothing is recorded.
    if s.dist.as_ref().is_none_or(|d| d.rank() == 0) {
        registry_hooks::start_run(&run.path, mode, &to_yaml(&s.cfg));
    }
    let outcome = train(&job, &mut s.terminal.clone());
    registry_hooks::end_run(&outcome, |o| o.interrupted);
    Ok(outcome?)
}

/// The configured teacher: a path or `@nick`.
fn teacher_checkpoint(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    let arg = arg.context(
        "--mode small needs a teacher: give --teacher CKPT|@nick (e.g. a large run's checkpoints/best.safetensors)",
    )?;
    super::checkpoint_arg(&arg.to_string_lossy())
}

/// `large/` then `small/` in one run directory; a resume state inside
/// `small/` means the large model finished.
fn joint(
    s: &Session,
    run: &RunDir,
    resume: Option<PathBuf>,
) -> anyhow::Result<Vec<(&'static str, ModelOutcome)>> {
    let small_dir = run.path.join("small");
    let resuming_small = resume.as_ref().is_some_and(|r| r.starts_with(&small_dir));
    let large_run = RunDir::create_or_open(&run.path, "large", resume.is_some())?;
    let large_outcome = if resuming_small {
        ModelOutcome::read(&large_run)?
    } else {
        large(s, &large_run, resume.clone())?
    };
    if large_outcome.interrupted {
        return Ok(vec![("large", large_outcome)]);
    }
    let small_run = RunDir::create_or_open(&run.path, "small", resuming_small)?;
    let small_resume = resume.filter(|_| resuming_small);
    let small_outcome = small(
        s,
        &small_run,
        small_resume,
        Some(large_outcome.best.clone()),
    )?;
    Ok(vec![("large", large_outcome), ("small", small_outcome)])
}

fn report(mode: Mode, run: &RunDir, outcomes: &[(&str, ModelOutcome)]) -> anyhow::Result<ExitCode> {
    if let Some((_, interrupted)) = outcomes.iter().find(|(_, o)| o.interrupted) {
        println!(
            "interrupted: resume with `semiclass train --mode {} --resume {}/<stage>-last.state.safetensors`",
            mode.name(),
            interrupted.best.parent().unwrap_or(&run.path).display()
        );
        return Ok(ExitCode::from(130));
    }
    for (model, outcome) in outcomes {
        println!(
            "{model}: best {} (stage {}, val top-1 {:.2}%)",
            outcome.best.display(),
            outcome.best_stage,
            100.0 * outcome.best_val_top1
        );
        if let Some(test) = &outcome.test {
            println!(
                "{model}: test.txt top-1 {:.2}%, top-5 {:.2}% on {} images{}",
                100.0 * test.top1,
                100.0 * test.top5,
                test.count,
                outcome
                    .baseline
                    .as_ref()
                    .and_then(|b| b.test_top1)
                    .map_or(String::new(), |t| format!(" (baseline {:.2}%)", 100.0 * t))
            );
        }
        warn_below_baseline(model, outcome);
    }
    Ok(ExitCode::SUCCESS)
}

/// A model that learned less than the baseline gets a warning that says
/// what to try.
fn warn_below_baseline(model: &str, outcome: &ModelOutcome) {
    let Some(baseline) = &outcome.baseline else {
        return;
    };
    if outcome.best_val_top1 < baseline.val_top1 {
        println!(
            "{model}: warning: val top-1 {:.2}% is below the baseline ({}: {:.2}%): this model learned less than a lookup of the labeled images; {}",
            100.0 * outcome.best_val_top1,
            baseline.describe(),
            100.0 * baseline.val_top1,
            semiclass_trainer::engine::worth::what_to_try(model)
        );
    }
}

/// The resolved configuration and a fresh (or, resuming, the existing)
/// run directory holding it; a rank other than 0 gets its `scratch`
/// folder instead.
fn prepare(
    args: &TrainArgs,
    resume: Option<&Path>,
    scratch: Option<&ranks::Scratch>,
) -> anyhow::Result<(TrainConfig, RunDir, Dataset)> {
    if let Some(state) = resume {
        let run_path = run_of_state(state, args.mode)?;
        let mut cfg: TrainConfig = resolve(Some(&run_path.join("config.yaml")), &[])?;
        let dataset = open_dataset(&cfg)?;
        let run = match scratch {
            // A copy of rank 0's run: the finished stages' checkpoints and
            // the metrics a resume reads, and a place to write that is not rank 0's.
            Some(s) => {
                cfg.run.dir = s.0.clone();
                RunDir::open(&s.copy_of(&run_path)?)
            }
            None => RunDir::open(&run_path),
        };
        return Ok((cfg, run, dataset));
    }
    let mut overrides = args.overrides.clone();
    if let Some(dir) = &args.data {
        overrides.push(format!("data.dir={}", dir.display()));
    }
    if let Some(teacher) = &args.teacher {
        overrides.push(format!("small.distill.teacher={}", teacher.display()));
    }
    let mut cfg: TrainConfig = resolve(args.config.as_deref(), &overrides)?;
    let dataset = open_dataset(&cfg)?;
    let size = DatasetSize {
        labeled: dataset.train.len(),
        unlabeled: dataset.unlabeled.len(),
    };
    let schedule = fill_stage_lengths(&mut cfg, size);
    let name = cfg
        .run
        .name
        .clone()
        .unwrap_or_else(|| default_run_name(args.mode));
    if let Some(scratch) = scratch {
        // Everything under run.dir, the shared soft-label cache included.
        cfg.run.dir = scratch.0.clone();
    }
    let run = if args.mode == Mode::Joint {
        RunDir::create_group(&cfg.run.dir, &name)?
    } else {
        RunDir::create(&cfg.run.dir, &name)?
    };
    // Printed once the run folder exists: a refused run (the name taken)
    // shows only its error.
    for line in schedule.for_mode(args.mode.trains_large(), args.mode.trains_small()) {
        println!("schedule: {line}");
    }
    let path = run.path.join("config.yaml");
    semiclass_dataset::fsutil::write_atomic(&path, to_yaml(&cfg).as_bytes())
        .with_context(|| format!("{}", path.display()))?;
    Ok((cfg, run, dataset))
}

fn open_dataset(cfg: &TrainConfig) -> anyhow::Result<Dataset> {
    let dir = cfg
        .data
        .dir
        .as_deref()
        .context("no dataset: give --data DIR or set data.dir")?;
    Ok(Dataset::open(dir)?)
}

/// The state file `--resume` names: a path as given, or for `@nick` the
/// newest `*-last.state.safetensors` next to the checkpoint it marks.
fn resume_state(arg: &str) -> anyhow::Result<PathBuf> {
    if !arg.starts_with('@') {
        return Ok(PathBuf::from(arg));
    }
    let checkpoint = super::checkpoint_arg(arg)?;
    let folder = checkpoint.parent().unwrap_or(Path::new("."));
    let newest = semiclass_registry::resume_state::newest_in([folder]);
    newest.with_context(|| {
        format!(
            "{arg} is {}, whose folder holds no *-last.state.safetensors to resume from",
            checkpoint.display()
        )
    })
}

/// A rank other than 0 resumes from its copy of the run (`Scratch::copy_of`):
/// the same state file, inside the copy.
fn in_copy(state: &Path, mode: Mode, copy: &RunDir) -> anyhow::Result<PathBuf> {
    let run = run_of_state(state, mode)?;
    let inside = state
        .strip_prefix(&run)
        .with_context(|| format!("{} is not inside {}", state.display(), run.display()))?;
    Ok(copy.path.join(inside))
}

/// `RUN/checkpoints/x.state.safetensors` -> `RUN`; for joint runs the
/// state is in `RUN/large/` or `RUN/small/`.
fn run_of_state(state: &Path, mode: Mode) -> anyhow::Result<PathBuf> {
    let model_dir = state
        .parent()
        .and_then(|p| p.parent())
        .context("--resume takes a run's checkpoints/*.state.safetensors")?;
    let run = if mode == Mode::Joint {
        model_dir.parent().context("--mode joint --resume takes RUN/large/checkpoints/*.state.safetensors or RUN/small/...")?
    } else {
        model_dir
    };
    if !run.join("config.yaml").is_file() {
        anyhow::bail!(
            "{}: no config.yaml in the run directory {}; is this a `--mode {}` run?",
            state.display(),
            run.display(),
            mode.name()
        );
    }
    Ok(run.to_path_buf())
}

/// `large-20261128-094512`.
fn default_run_name(mode: Mode) -> String {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp: String = semiclass_manifest::checkpoint::rfc3339_utc(unix)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{}-{}-{}", mode.name(), &stamp[..8], &stamp[8..14])
}
