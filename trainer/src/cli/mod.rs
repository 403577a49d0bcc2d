//! Command-line interface: one module per subcommand.

mod check;
mod demo_data;
mod export;
mod models;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Turn a folder of partly labeled images into deployed image classifiers.
#[derive(Debug, Parser)]
#[command(name = "semiclass", version, about)]
pub struct Cli {
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
    /// Train: the large model semi-supervised (--mode large).
    Train(train::TrainArgs),
}

/// Runs one subcommand; `Err` means it could not run (exit status 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::DemoData(args) => demo_data::run(args),
        Command::Export(args) => export::run(args),
        Command::Models => models::run(),
        Command::Train(args) => train::run(args),
    }
}
