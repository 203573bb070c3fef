//! The HTTP/1.1 accept loop: bounded connections, header timeout, graceful drain.

use crate::app::AppState;
use crate::routes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Accepts connections until `shutdown`, then waits (bounded by `http.shutdown_grace_ms`) for
/// in-flight requests to finish. A request that was already publishing completes and gets its
/// 202; no new request starts. Connections still open when the grace period ends are closed:
/// their clients get a reset, never a response that will not come.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let http = &state.settings.http;
    // At the cap we stop calling accept(): new clients wait in the kernel's backlog instead of
    // costing memory here.
    let connections = Arc::new(Semaphore::new(http.connections_max));
    let graceful = GracefulShutdown::new();
    // Hyper's graceful shutdown only asks a connection to finish; one that never does (a client
    // that stalls mid-request, or hyper waiting on a half-read head) would outlive the grace
    // period in its own task. Cancelling this drops every such connection, closing its socket.
    let closed = CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(http.header_read_timeout_ms))
        .keep_alive(http.keep_alive);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(routes::handle(state, req).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let closed = closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                _ = closed.cancelled() => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(state.settings.http.shutdown_grace_ms);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "grace period over; closing remaining connections");
            closed.cancel();
        }
    }
}
