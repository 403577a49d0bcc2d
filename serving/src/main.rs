//! `semiclass-serve`: serve exported packages over HTTP, and manage the
//! access tokens that guard them.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use semiclass_licensing::unix_now;
use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_serve::serve::{
    check_listen, connection_cap, raise_open_file_limit, serve, stop_signal,
};
use semiclass_serve::threads::{SPARE_BLOCKING_THREADS, ThreadBudget};
use semiclass_serve::tokens::{TokenStore, active_tokens};
use semiclass_serve::{AppState, BatchSettings, Limits, ServeConfig};

#[derive(Parser)]
#[command(
    name = "semiclass-serve",
    version,
    about = "Serve exported semiclass packages over an authenticated HTTP API"
)]
struct Cli {
    /// The token file (mode 0600; created by `token create`).
    #[arg(long, global = true, default_value = "semiclass-tokens.json")]
    tokens: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one or more packages.
    Serve(Box<ServeArgs>),
    /// Create, list or revoke access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it, once: only its hash is kept.
    Create {
        /// What the token is for, shown by `list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (ids, names, dates; never the tokens).
    List,
    /// Revoke a token by its id: it stops working at the next request.
    Revoke { id: String },
}

#[derive(Args)]
struct ServeArgs {
    /// A package folder or zip; repeat for several.
    #[arg(long = "package", required = true)]
    packages: Vec<PathBuf>,
    /// Address to listen on; another than loopback needs a token to exist.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// ONNX Runtime library (default: ORT_DYLIB_PATH, else the package's own).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Most images per inference batch; below it the server keeps to the
    /// batch size that has been cheapest per image.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Longest a batch waits for more images, in milliseconds (only while
    /// bigger batches pay).
    #[arg(long, default_value_t = 2)]
    max_wait_ms: u64,
    /// ONNX Runtime sessions per model (default: 2, or 1 on one CPU): small
    /// models scale better over sessions running side by side than over
    /// the threads of one session.
    #[arg(long)]
    sessions: Option<usize>,
    /// Intra-op threads per session (default: the CPUs divided by --sessions).
    #[arg(long)]
    threads: Option<usize>,
    /// Async runtime workers (HTTP, auth, JSON; default: a quarter of the
    /// CPUs, at least 1).
    #[arg(long)]
    async_threads: Option<usize>,
    /// Prediction requests running at once.
    #[arg(long, default_value_t = Limits::default().max_concurrent)]
    max_concurrent: usize,
    /// Requests waiting beyond that (429 when full).
    #[arg(long, default_value_t = Limits::default().max_queue)]
    queue: usize,
    /// Longest wait in the queue in milliseconds (503 after).
    #[arg(long, default_value_t = 2000)]
    queue_timeout_ms: u64,
    /// Longest request in milliseconds (503 after).
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest image in pixels, checked from the header (413 beyond).
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    max_pixels: u64,
    /// Largest sum of the pixels of one request's images (413 beyond).
    #[arg(long, default_value_t = Limits::default().max_request_pixels)]
    max_request_pixels: u64,
    /// Longest a request body may take to arrive, in milliseconds (408 after).
    #[arg(long, default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// Connections open at once (kept below the open-file limit).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Longest a client may take to send a request head, and an idle
    /// keep-alive connection may stay open, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Images decoded at once over all requests (default: one a CPU).
    #[arg(long)]
    decode_threads: Option<usize>,
    /// Most images per request.
    #[arg(long, default_value_t = Limits::default().max_images)]
    max_images: usize,
    /// The license issuer's database: enables POST /v1/activate (with --issuer-key).
    #[arg(long, requires = "issuer_key")]
    issuer_db: Option<PathBuf>,
    /// The issuer's private key file (from `semiclass-license keygen`).
    #[arg(long, requires = "issuer_db")]
    issuer_key: Option<PathBuf>,
    /// Run a cuda-x86_64 package on the CPU when its GPU cannot be used
    /// (logged as a warning); without it, the server refuses to start and
    /// says what the GPU lacks.
    #[arg(long)]
    allow_cpu_fallback: bool,
    /// Log level: error, warn, info (one line per request) or debug.
    #[arg(long, default_value = "info")]
    log: tracing::Level,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", semiclass_manifest::error_line(err.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let store = TokenStore::new(&cli.tokens);
    match cli.command {
        Command::Serve(args) => run_server(*args, cli.tokens),
        Command::Token(TokenCommand::Create { name }) => {
            let (record, token) = store.create(&name, unix_now())?;
            eprintln!(
                "created token {} in {}; it is shown once, keep it secret:",
                record.id,
                store.path().display()
            );
            println!("{token}");
            Ok(())
        }
        Command::Token(TokenCommand::List) => {
            println!("{:<10} {:<22} {:<22} name", "id", "created", "revoked");
            for r in store.read()? {
                let revoked = r.revoked.map_or("-".to_string(), rfc3339_utc);
                println!(
                    "{:<10} {:<22} {:<22} {}",
                    r.id,
                    rfc3339_utc(r.created),
                    revoked,
                    r.name
                );
            }
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let record = store.revoke(&id, unix_now())?;
            println!("revoked {} ({})", record.id, record.name);
            Ok(())
        }
    }
}

fn run_server(args: ServeArgs, tokens: PathBuf) -> Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(args.log)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let active = active_tokens(&TokenStore::new(&tokens).read()?);
    check_listen(args.listen, &active)?;
    if active.is_empty() {
        tracing::warn!(
            "{}: no access token yet, every API call will answer 401; run `semiclass-serve token create`",
            tokens.display()
        );
    }
    let open_files = raise_open_file_limit();
    let budget = ThreadBudget::here();
    let config = serve_config(&args, tokens, &budget);
    let state = Arc::new(AppState::load(&config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.async_threads.unwrap_or(budget.async_workers).max(1))
        // The decodes hold permits (at most decode_threads at once); the
        // pool is bounded too, so nothing else piles threads up.
        .max_blocking_threads(config.decode_threads + SPARE_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("{}: cannot listen", args.listen))?;
        for (id, model) in &state.models {
            let m = &model.manifest.model;
            tracing::info!(
                "model {id}: {} ({:?}), {} classes",
                m.arch,
                m.role,
                m.class_names.len()
            );
        }
        tracing::info!(
            "at most {} connections (open-file limit {open_files})",
            connection_cap(config.limits.max_connections)
        );
        tracing::info!("listening on http://{}", listener.local_addr()?);
        serve(listener, state, stop_signal()).await?;
        Ok(())
    })
}

fn serve_config(args: &ServeArgs, tokens: PathBuf, budget: &ThreadBudget) -> ServeConfig {
    let sessions = args.sessions.unwrap_or(budget.sessions).max(1);
    ServeConfig {
        packages: args.packages.clone(),
        tokens,
        onnxruntime: args
            .onnxruntime
            .clone()
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_pixels: args.max_pixels,
            max_images: args.max_images.max(1),
            max_concurrent: args.max_concurrent.max(1),
            max_queue: args.queue,
            queue_timeout: Duration::from_millis(args.queue_timeout_ms),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_request_pixels: args.max_request_pixels,
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            max_connections: args.max_connections,
            header_timeout: Duration::from_millis(args.header_timeout_ms),
        },
        batch: BatchSettings {
            max_batch: args.max_batch.max(1),
            max_wait: Duration::from_millis(args.max_wait_ms),
            sessions,
            threads: args.threads.unwrap_or((budget.cores / sessions).max(1)),
        },
        decode_threads: args.decode_threads.unwrap_or(budget.decode_threads).max(1),
        issuer: args.issuer_db.clone().zip(args.issuer_key.clone()),
        allow_cpu_fallback: args.allow_cpu_fallback,
    }
}
