//! Serving exported packages from inside the studio: `semiclass-serve`'s
//! own state, routes and listener (the `serving` crate), on a loopback
//! port of its own, with its token file; started and stopped from the
//! Deploy page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use semiclass_serve::engine::EngineError;
use semiclass_serve::threads::ThreadBudget;
use semiclass_serve::tokens::TokenStore;
use semiclass_serve::{AppState, BatchSettings, Limits, ServeConfig, StartError};
use tokio::sync::oneshot;

use crate::error::StudioError;

/// A server this studio started.
pub struct Served {
    pub addr: SocketAddr,
    pub packages: Vec<PathBuf>,
    pub state: Arc<AppState>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The studio's server, when one runs, and its token file.
pub struct Serving {
    tokens: PathBuf,
    served: Mutex<Option<Served>>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// What the pages show of a running server.
#[derive(Debug, Clone)]
pub struct ServedView {
    pub addr: SocketAddr,
    pub packages: Vec<PathBuf>,
    /// Model id and role, in id order.
    pub models: Vec<(String, String)>,
}

impl Serving {
    /// Tokens are kept in `tokens` (created on the first token).
    pub fn new(tokens: PathBuf) -> Serving {
        Serving {
            tokens,
            served: Mutex::new(None),
        }
    }

    /// The token file, as `semiclass-serve --tokens` reads it.
    pub fn token_store(&self) -> TokenStore {
        TokenStore::new(&self.tokens)
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Option<Served>> {
        self.served.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self) -> Option<ServedView> {
        self.served().as_ref().map(|s| ServedView {
            addr: s.addr,
            packages: s.packages.clone(),
            models: s
                .state
                .models
                .iter()
                .map(|(id, m)| {
                    (
                        id.clone(),
                        format!("{:?}", m.manifest.model.role).to_lowercase(),
                    )
                })
                .collect(),
        })
    }

    /// The running server's state (for the try-out page).
    pub fn state(&self) -> Option<Arc<AppState>> {
        self.served().as_ref().map(|s| s.state.clone())
    }

    /// Loads `packages` (checked by the package reader, warmed up) and
    /// serves them on 127.0.0.1:`port` (0: any free port).
    pub async fn start(
        &self,
        packages: Vec<PathBuf>,
        port: u16,
    ) -> Result<SocketAddr, StudioError> {
        if self.served().is_some() {
            return Err(StudioError::Conflict(
                "already serving; stop it first to serve other packages".into(),
            ));
        }
        if packages.is_empty() {
            return Err(StudioError::Invalid(
                "choose at least one package to serve".into(),
            ));
        }
        let config = config(packages.clone(), self.tokens.clone());
        let state = tokio::task::spawn_blocking(move || AppState::load(&config))
            .await
            .map_err(|e| StudioError::Internal(format!("loading the packages stopped: {e}")))?
            .map_err(|e| StudioError::Invalid(start_error_message(&e)))?;
        let state = Arc::new(state);
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            StudioError::Invalid(format!("{listen}: cannot listen: {e}; choose another port"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| StudioError::Internal(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = semiclass_serve::serve::serve(listener, serve_state, shutdown).await {
                tracing::error!("serving on {addr}: {e}");
            }
        });
        let mut served = self.served();
        if served.is_some() {
            // Another start won the race: this one gives way.
            let _ = stop.send(());
            return Err(StudioError::Conflict("already serving".into()));
        }
        *served = Some(Served {
            addr,
            packages,
            state,
            stop,
            task,
        });
        Ok(addr)
    }

    /// Stops taking connections, lets requests in flight finish (at most a
    /// few seconds), and unloads the models.
    pub async fn stop(&self) -> Result<(), StudioError> {
        let served = self
            .served()
            .take()
            .ok_or_else(|| StudioError::Conflict("nothing is being served".into()))?;
        let _ = served.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), served.task).await;
        Ok(())
    }
}

/// Why the packages could not be served, in the studio's terms: where
/// `semiclass-serve` would point at its `--onnxruntime` flag, the studio
/// (which has no such flag: it reads `ORT_DYLIB_PATH`) says what to set.
fn start_error_message(error: &StartError) -> String {
    const SET_ORT: &str = "set ORT_DYLIB_PATH to ONNX Runtime's library (libonnxruntime.so) and start the studio again";
    match error {
        StartError::NoRuntime => {
            format!(
                "no ONNX Runtime library: none of the packages ships one as a folder; {SET_ORT}"
            )
        }
        StartError::Engine {
            path,
            source: EngineError::Runtime { path: lib, reason },
        } => format!(
            "{}: cannot load ONNX Runtime from {}: {reason}; {SET_ORT}",
            path.display(),
            lib.display()
        ),
        other => other.to_string(),
    }
}

/// `semiclass-serve`'s defaults for this machine; no license issuer.
fn config(packages: Vec<PathBuf>, tokens: PathBuf) -> ServeConfig {
    let budget = ThreadBudget::here();
    let sessions = budget.sessions.max(1);
    ServeConfig {
        packages,
        tokens,
        onnxruntime: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        limits: Limits::default(),
        batch: BatchSettings {
            max_batch: 16,
            max_wait: Duration::from_millis(2),
            sessions,
            threads: (budget.cores / sessions).max(1),
        },
        decode_threads: budget.decode_threads.max(1),
        issuer: None,
        allow_cpu_fallback: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_runtime_names_what_the_studio_reads_not_a_cli_flag() {
        let missing = start_error_message(&StartError::NoRuntime);
        let unloadable = start_error_message(&StartError::Engine {
            path: PathBuf::from("pkg.zip"),
            source: EngineError::Runtime {
                path: PathBuf::from("/opt/ort/libonnxruntime.so"),
                reason: "not an ELF file".into(),
            },
        });
        for message in [&missing, &unloadable] {
            assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
            assert!(!message.contains("--onnxruntime"), "{message}");
        }
        assert!(unloadable.starts_with("pkg.zip: "), "{unloadable}");
        assert!(
            unloadable.contains("from /opt/ort/libonnxruntime.so: not an ELF file"),
            "{unloadable}"
        );
    }
}
