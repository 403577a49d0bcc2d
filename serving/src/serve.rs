//! Listening: the loopback rule, the connection cap and the header-read
//! timeout, and serving until a signal asks to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::app;
use crate::state::AppState;
use crate::tokens::TokenSet;

/// Open files kept free for everything but connections: ONNX Runtime, the
/// token and issuer files, logs, the listener itself.
const RESERVED_FILES: u64 = 64;

/// Why the server refused an address.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {addr}: no access token exists, so anyone who can reach it would be refused anyway while it stays exposed; create one with `semiclass-serve token create`, or listen on 127.0.0.1"
)]
pub struct ExposedWithoutTokens {
    pub addr: SocketAddr,
}

/// Loopback addresses are always allowed; any other address only once a
/// token exists.
pub fn check_listen(addr: SocketAddr, tokens: &TokenSet) -> Result<(), ExposedWithoutTokens> {
    if semiclass_access::may_listen(addr, !tokens.is_empty()) {
        Ok(())
    } else {
        Err(ExposedWithoutTokens { addr })
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then stops
/// taking connections (readiness turns 503) and lets the requests in
/// flight finish. At most [`connection_cap`] connections are open at once
/// (more wait in the listen backlog), and a connection that does not send
/// a whole request head within `limits.header_timeout` (a slow or idle
/// client) is closed.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(connection_cap(state.limits.max_connections)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_timeout);
    let service = TowerToHyperService::new(app(state.clone()));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, slot) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection: {err}");
            }
            drop(slot);
        });
    }
    state.ready.store(false, Ordering::Release);
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The next connection, once a slot of the connection cap is free.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let Ok(slot) = slots.clone().acquire_owned().await else {
        // The semaphore is never closed.
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Answers are written whole; waiting to coalesce only adds latency.
                let _ = stream.set_nodelay(true);
                return (stream, slot);
            }
            // One client's failed handshake concerns nobody else.
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                // Out of files or memory: waiting lets connections close.
                tracing::error!("cannot accept connections: {err}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        err.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    )
}

/// How many connections may be open at once: `configured`, but never so
/// many that the open-file limit (`ulimit -n`) would be reached, whatever
/// it is: a flood of connections must not leave the server unable to open
/// a file or accept the health probe once they go.
pub fn connection_cap(configured: usize) -> usize {
    let (soft, _) = open_file_limits();
    let room = soft.saturating_sub(RESERVED_FILES).max(8);
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Raises this process's open-file limit to the most it may have (the hard
/// limit), as servers do: the default soft limit (often 1024) would cap
/// connections needlessly. Returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let (soft, hard) = open_file_limits();
    if soft < hard {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return hard;
        }
    }
    soft
}

/// (soft, hard) open-file limits.
fn open_file_limits() -> (u64, u64) {
    let mut limits = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limits) } != 0 {
        return (u64::MAX, u64::MAX);
    }
    (limits.rlim_cur, limits.rlim_max)
}

/// Completes on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("stopping: finishing the requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::TokenRecord;

    #[test]
    fn public_addresses_need_a_token() {
        let none = TokenSet::default();
        assert!(check_listen("127.0.0.1:8080".parse().unwrap(), &none).is_ok());
        assert!(check_listen("[::1]:8080".parse().unwrap(), &none).is_ok());
        let err = check_listen("0.0.0.0:8080".parse().unwrap(), &none).unwrap_err();
        assert!(err.to_string().contains("token create"), "{err}");
        let record = TokenRecord {
            id: "00000000".into(),
            name: "x".into(),
            created: 0,
            revoked: None,
            sha256: "ab".repeat(32),
        };
        let one = crate::tokens::active_tokens(&[record]);
        assert!(check_listen("0.0.0.0:8080".parse().unwrap(), &one).is_ok());
    }

    #[test]
    fn connections_stay_below_the_open_file_limit() {
        let (soft, _) = open_file_limits();
        let cap = connection_cap(usize::MAX);
        assert!(
            (cap as u64) < soft.max(RESERVED_FILES + 9),
            "{cap} vs {soft}"
        );
        assert_eq!(connection_cap(3), 3);
        assert_eq!(connection_cap(0), 1);
    }
}
