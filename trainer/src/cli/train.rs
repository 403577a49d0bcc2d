//! `semiclass train --mode large -c cfg.yaml -o large.epochs=3`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use semiclass_dataset::Dataset;
use semiclass_trainer::config::{TrainConfig, resolve, to_yaml};
use semiclass_trainer::engine::evaluate::EvalResult;
use semiclass_trainer::engine::large::{LargeRun, train_large};
use semiclass_trainer::engine::setup::{RunDir, select_device};
use semiclass_trainer::engine::stage::{StageObserver, StepRecord};
use semiclass_trainer::registry_hooks;

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
    /// Continue an interrupted run from its `checkpoints/*-last.state.safetensors`,
    /// with the run's own saved configuration.
    #[arg(long)]
    resume: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// The large model alone: supervised warm start, then semi-supervised.
    Large,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let Mode::Large = args.mode;
    semiclass_trainer::alloc::tune_for_training();
    let (cfg, run) = prepare(&args)?;
    if cfg.run.threads > 0 {
        tch::set_num_threads(cfg.run.threads as i32);
    }
    let device = select_device(&cfg.run.device)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the checkpoint is written ends the process.
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let data_dir = cfg
        .data
        .dir
        .clone()
        .context("no dataset: give --data DIR or set data.dir")?;
    let dataset = Dataset::open(&data_dir)?;
    println!("run: {}", run.path.display());
    let bar = decode_bar();
    let job = LargeRun {
        cfg: &cfg,
        dataset: &dataset,
        run: &run,
        device,
        stop: &stop,
        resume: args.resume.clone(),
        on_image: &|| bar.inc(1),
    };
    bar.set_length((dataset.train.len() + dataset.unlabeled.len() + dataset.val.len()) as u64);
    registry_hooks::start_run(&run.path, "large", &to_yaml(&cfg));
    let outcome = train_large(&job, &mut Terminal { bar: bar.clone() });
    registry_hooks::end_run(&outcome, |o| o.interrupted);
    let outcome = outcome?;
    bar.finish_and_clear();
    if outcome.interrupted {
        println!(
            "interrupted: resume with `semiclass train --mode large --resume {}/checkpoints/<stage>-last.state.safetensors`",
            run.path.display()
        );
        return Ok(ExitCode::from(130));
    }
    println!(
        "best: {} (stage {}, val top-1 {:.2}%)",
        outcome.best.display(),
        outcome.best_stage,
        100.0 * outcome.best_val_top1
    );
    if let Some(test) = &outcome.test {
        println!(
            "test.txt: top-1 {:.2}%, top-5 {:.2}% on {} images",
            100.0 * test.top1,
            100.0 * test.top5,
            test.count
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The resolved configuration and a fresh (or, resuming, the existing)
/// run directory holding it.
fn prepare(args: &TrainArgs) -> anyhow::Result<(TrainConfig, RunDir)> {
    if let Some(state) = &args.resume {
        let run_path = state
            .parent()
            .and_then(|p| p.parent())
            .context("--resume takes a run's checkpoints/*.state.safetensors")?;
        let cfg: TrainConfig = resolve(Some(&run_path.join("config.yaml")), &[])?;
        return Ok((cfg, RunDir::open(run_path)));
    }
    let mut overrides = args.overrides.clone();
    if let Some(dir) = &args.data {
        overrides.push(format!("data.dir={}", dir.display()));
    }
    let cfg: TrainConfig = resolve(args.config.as_deref(), &overrides)?;
    let name = cfg.run.name.clone().unwrap_or_else(default_run_name);
    let run = RunDir::create(&cfg.run.dir, &name)?;
    let path = run.path.join("config.yaml");
    semiclass_dataset::fsutil::write_atomic(&path, to_yaml(&cfg).as_bytes())
        .with_context(|| format!("{}", path.display()))?;
    Ok((cfg, run))
}

/// `large-20261128-094512`.
fn default_run_name() -> String {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp: String = semiclass_manifest::checkpoint::rfc3339_utc(unix)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("large-{}-{}", &stamp[..8], &stamp[8..14])
}

fn decode_bar() -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("decoding {bar:40} {pos}/{len} images ({per_sec})")
            .expect("valid template"),
    )
}

/// Log and evaluation lines on the terminal.
struct Terminal {
    bar: ProgressBar,
}

impl StageObserver for Terminal {
    fn on_log(&mut self, r: &StepRecord) {
        self.bar.finish_and_clear();
        println!(
            "[{}] epoch {} step {}/{} lr {:.5} sup_loss {:.4} unsup_loss {:.4} mask {:.2} {:.0} img/s data-wait {:.0}%",
            r.stage,
            r.epoch,
            r.step,
            r.total_steps,
            r.lr,
            r.sup_loss,
            r.unsup_loss,
            r.mask_ratio,
            r.images_per_s,
            100.0 * r.data_wait
        );
    }

    fn on_eval(&mut self, r: &StepRecord, result: &EvalResult, best: bool) {
        println!(
            "[{}] epoch {} val top-1 {:.2}% top-5 {:.2}% loss {:.4}{}",
            r.stage,
            r.epoch,
            100.0 * result.top1,
            100.0 * result.top5,
            result.loss,
            if best { " (best)" } else { "" }
        );
    }
}
