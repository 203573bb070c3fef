//! `/metrics`, `/healthz` and `/readyz` over HTTP/1.1, for services that have no HTTP API of
//! their own. Ingress reuses [`admin_response`] on its main port.

use crate::health::Readiness;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Backs `/readyz`.
    pub readiness: Readiness,
}

/// Answers `GET /metrics`, `/healthz` and `/readyz`; `None` for any other path.
pub fn admin_response(
    state: &AdminState,
    method: &Method,
    path: &str,
) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET {
        return None;
    }
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.prometheus.render(),
        ),
        "/healthz" => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_string(),
        ),
        "/readyz" => {
            let ready = state.readiness.is_ready();
            let body = serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "checks": state.readiness.report(),
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", body.to_string())
        }
        _ => return None,
    };
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid");
    Some(response)
}

/// A bound admin server; call [`AdminServer::run`] to serve until `shutdown`.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    state: AdminState,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, state: AdminState) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled. Admin traffic is tiny (scrapes and probes), so
    /// each connection gets its own task without a pool; a header timeout guards against idle
    /// sockets.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let response = admin_response(&state, req.method(), req.uri().path())
                            .unwrap_or_else(not_found);
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

fn not_found() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::new(Bytes::from_static(b"not found")))
        .expect("static response parts are valid")
}
