//! Listening: the loopback rule, and serving until a signal asks to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

use crate::app::app;
use crate::state::AppState;
use crate::tokens::TokenSet;

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
    if addr.ip().is_loopback() || !tokens.is_empty() {
        Ok(())
    } else {
        Err(ExposedWithoutTokens { addr })
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then stops
/// taking connections (readiness turns 503) and lets the requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = state.clone();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.ready.store(false, Ordering::Release);
        })
        .await
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
        let one = TokenSet::from_records(&[record]);
        assert!(check_listen("0.0.0.0:8080".parse().unwrap(), &one).is_ok());
    }
}
