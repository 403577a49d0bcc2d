//! `semiclass`: from a folder of partly labeled images to deployed classifiers.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // The whole chain on one line, path first, as ripgrep does.
            eprintln!("semiclass: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
