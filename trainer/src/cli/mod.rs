//! Command-line interface: one module per subcommand.

mod check;
mod demo_data;
mod eval;
mod export;
mod export_int8;
mod marks;
mod models;
mod progress;
mod ranks;
mod runs;
mod studio;
mod table;
mod train;

pub use ranks::error_label;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Turn a folder of partly labeled images into deployed image classifiers.
#[derive(Debug, Parser)]
#[command(name = "semiclass", version, about)]
pub struct Cli {
    /// The run registry (runs, checkpoints, evaluations, nicknames)
    /// [default: $SEMICLASS_REGISTRY, else $XDG_DATA_HOME/semiclass/registry.sqlite].
    #[arg(long, global = true, value_name = "PATH")]
    registry: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a dataset folder: every list line, every image; writes a JSON report and a class histogram.
    Check(check::CheckArgs),
    /// Build a real dataset folder from data installed on this machine.
    DemoData(demo_data::DemoDataArgs),
    /// Export a checkpoint as an ONNX package for a target runtime (<model>-<target>.zip).
    Export(export::ExportArgs),
    /// List the model zoo: names, family, parameter count, default input size.
    Models,
    /// Train: the large model semi-supervised (--mode large), the small one distilled (--mode small), or both (--mode joint).
    Train(train::TrainArgs),
    /// Evaluate a checkpoint (path or @nickname) on test.txt, val.txt or a list of your own.
    Eval(eval::EvalArgs),
    /// List the recorded training runs; `runs show ID` shows one.
    Runs(runs::RunsArgs),
    /// List evaluation tasks, the latest first.
    Evals(runs::EvalsArgs),
    /// Give a checkpoint a nickname, usable as @NICK wherever a checkpoint goes.
    Mark(marks::MarkArgs),
    /// Remove a nickname (its history stays).
    Unmark(marks::UnmarkArgs),
    /// List the nicknames and the checkpoints they name.
    Marks(marks::MarksArgs),
    /// The workflow in the browser: datasets, the training form, the job queue (prints the URL to open).
    Studio(studio::StudioArgs),
}

/// Runs one subcommand; `Err` means it could not run (exit status 2).
impl Cli {
    /// Whether the command trains or evaluates with libtorch's threads
    /// (those re-execute with a bounded OpenMP spin: `openmp`).
    pub fn computes_with_libtorch(&self) -> bool {
        matches!(self.command, Command::Train(_) | Command::Eval(_))
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let location = semiclass_registry::location::registry_path(cli.registry);
    semiclass_trainer::registry_hooks::set_location(location.clone());
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::DemoData(args) => demo_data::run(args),
        Command::Export(args) => export::run(args),
        Command::Models => models::run(),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Runs(args) => runs::runs(args),
        Command::Evals(args) => runs::evals(args),
        Command::Mark(args) => marks::mark(args),
        Command::Unmark(args) => marks::unmark(args),
        Command::Marks(args) => marks::marks(args),
        Command::Studio(args) => studio::run(args, location.map_err(anyhow::Error::msg)?),
    }
}

/// A checkpoint given on the command line: a path, or `@nick` from the run
/// registry; a file changed since the registry recorded it is refused.
fn checkpoint_arg(arg: &str) -> anyhow::Result<PathBuf> {
    let registry = semiclass_trainer::registry_hooks::open_registry();
    let resolved =
        semiclass_registry::resolve_checkpoint(arg, registry.as_ref().map_err(String::as_str))?;
    Ok(resolved.path)
}
