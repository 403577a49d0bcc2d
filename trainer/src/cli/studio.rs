//! `semiclass studio [--listen ADDR] [--token-file PATH] [--jobs N]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use semiclass_studio::StudioOptions;
use semiclass_studio::listen::{TOKEN_ENV, default_program, serve, studio_token};

#[derive(Debug, Args)]
pub struct StudioArgs {
    /// Address to listen on; another than loopback needs a configured token.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// A file (mode 0600) holding the login token [default: $SEMICLASS_STUDIO_TOKEN, else a new one, printed].
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Jobs running at once (trainings on one CPU only slow each other down).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

pub fn run(args: StudioArgs, registry: PathBuf) -> anyhow::Result<ExitCode> {
    let token = studio_token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
    // Absolute: the jobs get it on their command line.
    let registry = std::path::absolute(&registry)
        .with_context(|| format!("{}: cannot make it absolute", registry.display()))?;
    let options = StudioOptions {
        registry,
        program: default_program()?,
        max_running: args.jobs,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the studio's runtime")?;
    runtime.block_on(serve(options, args.listen, token, stop_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM: stop taking requests, stop the jobs with a
/// resumable state, exit.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("semiclass studio: stopping");
}
