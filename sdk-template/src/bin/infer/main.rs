//! `infer`: the command-line face of a semiclass package. It lives in the
//! package's `bin/` folder and works on the package around it.

mod activate;
mod info;
mod predict;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use semiclass_licensing::ActivationDir;
use semiclass_sdk::Package;

#[derive(Parser)]
#[command(
    name = "infer",
    version = semiclass_sdk::VERSION,
    about = "Classify images with this package's model; activate it first with your serial"
)]
struct Cli {
    /// The package folder (default: the folder above this program's bin/).
    #[arg(long, global = true)]
    package: Option<PathBuf>,
    /// Where this package's license is kept (default:
    /// $XDG_DATA_HOME/semiclass/activations/PACKAGE-ID, else under ~/.local/share).
    #[arg(long, global = true)]
    activation_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Activate this package on this machine with your serial.
    Activate(activate::Args),
    /// Classify images: the top-k classes of each.
    Predict(predict::Args),
    /// The model, its classes and input, and the license status.
    Info,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

/// The shared one-line report (`semiclass_manifest::error_line`).
fn one_line(err: &anyhow::Error) -> String {
    semiclass_manifest::error_line(err.as_ref())
}

fn run(cli: Cli) -> Result<()> {
    let package = Package::read(&package_dir(cli.package)?)?;
    let activation = match cli.activation_dir {
        Some(dir) => ActivationDir::new(dir),
        None => package.default_activation()?,
    };
    match cli.command {
        Command::Activate(args) => activate::run(&package, &activation, args),
        Command::Predict(args) => predict::run(&package, &activation, args),
        Command::Info => info::run(&package, &activation),
    }
}

/// `--package`, else the package this program was shipped in (`bin/..`).
fn package_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    exe.parent()
        .and_then(|bin| bin.parent())
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "{}: not inside a package; pass --package DIR",
                exe.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_shown_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = semiclass_package::PackageError::Io {
            path: "/p/manifest.json".into(),
            source: io,
        };
        let err = anyhow::Error::from(err).context("opening the package");
        assert_eq!(
            one_line(&err),
            "opening the package: /p/manifest.json: no such file"
        );
    }
}
