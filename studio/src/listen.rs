//! Starting the studio: where its token comes from, the loopback rule,
//! serving until asked to stop, and stopping the jobs with it.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::StudioError;
use crate::state::{Studio, StudioOptions};

/// The environment variable that sets the studio's token.
pub const TOKEN_ENV: &str = "SEMICLASS_STUDIO_TOKEN";

/// A configured token shorter than this is refused: it must resist guessing.
const MIN_TOKEN_LEN: usize = 24;

/// The studio's login token and whether the user configured it.
#[derive(Debug, Clone)]
pub struct StudioToken {
    pub token: String,
    /// Set in a file or the environment (else made at start and printed).
    pub configured: bool,
}

/// The token from `file`, else from `env` (the value of
/// [`TOKEN_ENV`]), else a new random one.
pub fn studio_token(file: Option<&Path>, env: Option<String>) -> Result<StudioToken, StudioError> {
    let (token, source) = match (file, env.filter(|v| !v.is_empty())) {
        (Some(path), _) => (read_token_file(path)?, path.display().to_string()),
        (None, Some(value)) => (value.trim().to_string(), TOKEN_ENV.to_string()),
        (None, None) => {
            return Ok(StudioToken {
                token: semiclass_access::new_secret(),
                configured: false,
            });
        }
    };
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(StudioError::Invalid(format!(
            "{source}: the token is shorter than {MIN_TOKEN_LEN} characters; use a random one (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(StudioToken {
        token,
        configured: true,
    })
}

fn read_token_file(path: &Path) -> Result<String, StudioError> {
    let fail = |what: String| StudioError::Invalid(format!("{}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "is readable by others (mode {:o}): run `chmod 600` on it",
            meta.mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    Ok(text.trim().to_string())
}

/// Loopback always; another address only with a configured token, which
/// the people meant to reach it were given (a printed one is in a
/// terminal's scrollback, not a secret to expose a machine with).
pub fn check_listen(addr: SocketAddr, token: &StudioToken) -> Result<(), StudioError> {
    if semiclass_access::may_listen(addr, token.configured) {
        return Ok(());
    }
    Err(StudioError::Invalid(format!(
        "refusing to listen on {addr}: other machines could reach it; set a token first (--token-file PATH or {TOKEN_ENV}), or listen on 127.0.0.1"
    )))
}

/// The address to open in a browser: with the token when it was made now.
pub fn start_url(addr: SocketAddr, token: &StudioToken) -> String {
    if token.configured {
        format!("http://{addr}/ (log in with your configured token)")
    } else {
        format!("http://{addr}/?token={}", token.token)
    }
}

/// Serves the studio on `addr` until `shutdown` completes; the jobs it
/// runs are then stopped with a resumable state (they show as interrupted).
pub async fn serve(
    options: StudioOptions,
    addr: SocketAddr,
    token: StudioToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StudioError> {
    check_listen(addr, &token)?;
    let studio = Studio::new(&options, &token.token)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StudioError::Invalid(format!("{addr}: cannot listen: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    println!("semiclass studio: {}", start_url(bound, &token));
    println!("registry: {}", options.registry.display());
    let runner = studio.jobs.clone();
    let queue = tokio::spawn(runner.clone().run_queue());
    axum::serve(listener, crate::app(studio.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| StudioError::Internal(format!("{addr}: {e}")))?;
    queue.abort();
    // The packages it served: requests in flight finish first.
    if studio.serving.stop().await.is_ok() {
        println!("stopped serving");
    }
    let stopped = tokio::task::spawn_blocking(move || runner.stop_all())
        .await
        .unwrap_or(0);
    if stopped > 0 {
        println!("stopped {stopped} job(s); resume them from the studio's Jobs page");
    }
    Ok(())
}

/// The binary that runs the jobs: the running `semiclass` itself.
pub fn default_program() -> Result<PathBuf, StudioError> {
    std::env::current_exe().map_err(|e| {
        StudioError::Internal(format!("cannot find the running semiclass binary: {e}"))
    })
}
