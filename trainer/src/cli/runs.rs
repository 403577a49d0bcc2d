//! `semiclass runs`, `semiclass runs show ID`, `semiclass evals`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use semiclass_registry::{CheckpointRow, EvalRow, EvalStatus, Registry, RunRow, RunStatus};

use super::marks::open;
use super::table::{Table, percent, short_sha, time};

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: Option<RunsCommand>,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// One run: status, every checkpoint it saved, their evaluations, its configuration.
    Show {
        /// The run's id (or its directory's name).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct EvalsArgs {
    /// Only the evaluations of this checkpoint (a path, or @nickname).
    #[arg(long = "ckpt", value_name = "CKPT")]
    checkpoint: Option<String>,
}

pub fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let registry = open()?;
    if let Some(RunsCommand::Show { id }) = args.command {
        return show(&registry, &id);
    }
    let mut table = Table::new(&[
        "id",
        "name",
        "mode",
        "status",
        "started (UTC)",
        "ended",
        "best val top-1",
        "dir",
    ]);
    for run in registry.runs()? {
        let checkpoints = registry.checkpoints_of_run(run.id)?;
        table.row(vec![
            run.id.to_string(),
            run.name.clone(),
            run.mode.clone(),
            status(&run),
            time(run.started),
            run.ended.map(time).unwrap_or_default(),
            percent(best_val(&checkpoints)),
            run.run_dir.display().to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

fn show(registry: &Registry, key: &str) -> anyhow::Result<ExitCode> {
    let run = registry
        .run(key)?
        .with_context(|| format!("no run '{key}' in the registry; `semiclass runs` lists them"))?;
    println!("run {}: {}", run.id, run.name);
    println!("  dir:     {}", run.run_dir.display());
    println!("  mode:    {}", run.mode);
    println!("  status:  {}", status(&run));
    println!("  started: {} UTC", time(run.started));
    if let Some(ended) = run.ended {
        println!("  ended:   {} UTC", time(ended));
    }
    if let Some(message) = &run.message {
        println!("  error:   {message}");
    }
    let checkpoints = registry.checkpoints_of_run(run.id)?;
    println!("\ncheckpoints (every saved version, oldest first):");
    let mut table = Table::new(&[
        "id",
        "stage",
        "epoch",
        "step",
        "val top-1",
        "val top-5",
        "sha256",
        "file",
    ]);
    for c in &checkpoints {
        table.row(vec![
            c.id.to_string(),
            c.stage.clone(),
            c.epoch.to_string(),
            c.step.to_string(),
            percent(c.metrics.get("val_top1").copied()),
            percent(c.metrics.get("val_top5").copied()),
            short_sha(&c.sha256).to_string(),
            relative(&c.path, &run.run_dir),
        ]);
    }
    print!("{}", indent(&table.render()));
    let evals: Vec<EvalRow> = registry
        .evals(None)?
        .into_iter()
        .filter(|e| e.checkpoint.run_id == Some(run.id))
        .collect();
    if !evals.is_empty() {
        println!("\nevaluations:");
        print!("{}", indent(&evals_table(&evals).render()));
    }
    println!("\nconfig:\n{}", indent(&run.config));
    Ok(ExitCode::SUCCESS)
}

pub fn evals(args: EvalsArgs) -> anyhow::Result<ExitCode> {
    let registry = open()?;
    let path = match &args.checkpoint {
        None => None,
        Some(arg) => Some(checkpoint_path(&registry, arg)?),
    };
    print!(
        "{}",
        evals_table(&registry.evals(path.as_deref())?).render()
    );
    Ok(ExitCode::SUCCESS)
}

/// The file a `--ckpt` argument names; unlike a checkpoint to load, it may
/// have changed or be gone since: its history is still wanted.
fn checkpoint_path(registry: &Registry, arg: &str) -> anyhow::Result<PathBuf> {
    if arg.starts_with('@') {
        let mark = registry
            .marked(arg)?
            .with_context(|| format!("{arg}: no such nickname; `semiclass marks` lists them"))?;
        return Ok(mark.checkpoint.path);
    }
    let path = std::path::absolute(arg).with_context(|| arg.to_string())?;
    Ok(path.canonicalize().unwrap_or(path))
}

fn evals_table(evals: &[EvalRow]) -> Table {
    let mut table = Table::new(&[
        "id",
        "started (UTC)",
        "status",
        "on",
        "images",
        "top-1",
        "top-5",
        "checkpoint",
        "dataset",
        "report",
    ]);
    for e in evals {
        let number = |key: &str| e.metrics.as_ref().and_then(|m| m[key].as_f64());
        table.row(vec![
            e.id.to_string(),
            time(e.started),
            match e.status {
                EvalStatus::Running => "running".into(),
                EvalStatus::Finished => "finished".into(),
                EvalStatus::Failed => format!("failed: {}", e.message.as_deref().unwrap_or("")),
            },
            e.source.to_string(),
            number("count").map(|n| n.to_string()).unwrap_or_default(),
            percent(number("top1")),
            percent(number("top5")),
            e.checkpoint.path.display().to_string(),
            e.dataset.display().to_string(),
            e.out_dir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ]);
    }
    table
}

/// The run's status; a run recorded as running whose process is gone was
/// killed without a chance to say so.
fn status(run: &RunRow) -> String {
    match (run.status, run.pid) {
        (RunStatus::Running, Some(pid)) if !process_exists(pid) => "running (process gone)".into(),
        (status, _) => status.as_str().into(),
    }
}

fn process_exists(pid: u32) -> bool {
    // Signal 0 checks that the process exists without touching it;
    // EPERM means it exists but belongs to someone else.
    let sent = unsafe { libc::kill(pid as libc::pid_t, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn best_val(checkpoints: &[CheckpointRow]) -> Option<f64> {
    checkpoints
        .iter()
        .filter_map(|c| c.metrics.get("val_top1").copied())
        .reduce(f64::max)
}

fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_ended_is_gone() {
        assert!(process_exists(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_exists(pid));
    }
}
