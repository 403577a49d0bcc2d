//! `semiclass`: from a folder of partly labeled images to deployed classifiers.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_out_of_memory_panics();
    let args = cli::Cli::parse();
    if args.computes_with_libtorch() {
        semiclass_trainer::openmp::bound_spinning();
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // The whole chain on one line, path first, as ripgrep does.
            eprintln!(
                "semiclass: {}error: {}",
                cli::error_label(),
                semiclass_manifest::error_line(err.as_ref())
            );
            ExitCode::from(2)
        }
    }
}

/// libtorch reports running out of memory as a panic that training turns
/// into an error with advice; the default hook would first print it with a
/// backtrace hint, which is noise there.
fn quiet_out_of_memory_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = semiclass_trainer::engine::oom::panic_text(info.payload());
        if !semiclass_trainer::engine::oom::is_out_of_memory(&text) {
            default(info);
        }
    }));
}
