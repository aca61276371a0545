//! The HTTP admin endpoint and the Prometheus exporter.
//!
//! This module owns the process-wide metrics recorder
//! ([`install_recorder`], idempotent), the gauges derived from a proxy's
//! topology snapshot ([`update_gauges`]: lag, eligibility, health,
//! read-only, replication source, backend and client connections), and the
//! HTTP server, built on hyper's HTTP/1.1 server: one request per
//! connection (no keep-alive), the request head bounded in size
//! ([`MAX_HEAD`], larger heads get 431) and time ([`HEADER_TIMEOUT`]), the
//! whole exchange bounded by [`REQUEST_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed at accept).
//! The JSON bodies of `/api/*` are built in `api`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | 200, Prometheus text format (gauges refreshed first) |
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 `ready` when a topology is loaded, the proxy is not shutting down and the monitor has measured the primary as reachable; otherwise 503 with the reason |
//! | `GET /api/backends` | 200, JSON array: one object per backend (state, lag, GTIDs, safety facts, connections) |
//! | `GET /api/sessions` | 200, JSON: connected clients and sessions counted per user and state |
//! | `GET /api/config` | 200, JSON: the configuration in force, passwords redacted |
//! | `GET /api/digests?limit=N&order=COLUMN` | 200, JSON array: the rows of `SHOW CAUSEWAY DIGESTS`, sorted descending by a numeric column (default `sum_us`), at most N (default all); 400 for an unknown column or a bad limit; 404 when `[digests]` is disabled |
//! | other path | 404; other method than GET / HEAD 405; malformed request 400 |
//!
//! The `metrics` facade needs one global recorder per process; everything
//! else here is per proxy, so tests run several proxies in one process.
//! Gauges carry only a `backend` label, so two proxies in one process with
//! backends of the same name overwrite each other's gauges; a scrape
//! refreshes the scraping proxy's gauges right before rendering.

pub mod api;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics as m;
use crate::shared::Shared;
use crate::topology::Topology;

/// Errors of the admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin listener could not bind.
    #[error("cannot listen for the admin endpoint ([admin] listen) on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// HTTP serving failed (malformed or oversized request, client gone).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The exchange took longer than [`REQUEST_TIMEOUT`].
    #[error("request not completed within {0:?}")]
    Timeout(Duration),
}

/// Gauges of backends that left the topology disappear from `/metrics`
/// after this long without an update.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the admin task refreshes gauges and runs exporter upkeep.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// Largest request head accepted (hyper's read buffer limit; its minimum).
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client gets to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a whole exchange (head, answer, the client reading it) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; more are closed when accepted.
/// Prometheus, probes and operators need a handful.
pub const MAX_CONNECTIONS: usize = 1024;

/// Installs the Prometheus recorder as the `metrics` global recorder, once
/// per process, and returns its handle (the same handle on every call).
/// If some other recorder was installed first, the handle still works but
/// renders only what this recorder saw (nothing); that is logged.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
                .build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Sets the topology-derived gauges from `proxy`'s current snapshot.
pub fn update_gauges(shared: &Shared) {
    let topo = shared.topology.load();
    backend_gauges(&topo);
    writer_gauges(&topo, &shared.failover.status());
    metrics::gauge!(m::CLIENT_CONNECTIONS).set(shared.clients.load(Ordering::Relaxed) as f64);
    if let Some(d) = &shared.digests {
        metrics::gauge!(m::DIGESTS).set(d.len() as f64);
        metrics::gauge!(m::DIGEST_EVICTIONS).set(d.evictions() as f64);
    }
}

fn backend_gauges(topo: &Topology) {
    for b in topo.backends() {
        let name = b.name().to_string();
        let v = b.state.view.load();
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        metrics::gauge!(m::BACKEND_UP, "backend" => name.clone()).set(flag(v.reachable));
        metrics::gauge!(m::BACKEND_ELIGIBLE, "backend" => name.clone()).set(flag(v.eligible));
        metrics::gauge!(m::BACKEND_CONNECTIONS, "backend" => name.clone())
            .set(b.pool.open_connections() as f64);
        metrics::gauge!(m::BACKEND_CONNECTIONS_IN_USE, "backend" => name.clone())
            .set(b.pool.in_use_connections() as f64);
        metrics::gauge!(m::BACKEND_CONNECTIONS_IDLE, "backend" => name.clone())
            .set(b.pool.idle_connections() as f64);
        if v.server_uuid.is_some() {
            metrics::gauge!(m::BACKEND_READ_ONLY, "backend" => name.clone()).set(flag(v.read_only));
        }
        if b.role == crate::topology::Role::Replica {
            if let Some(on) = v.source_mismatch {
                metrics::gauge!(m::BACKEND_SOURCE_MISMATCH, "backend" => name.clone())
                    .set(flag(on));
            }
            if let Some(lag) = v.lag_ms {
                metrics::gauge!(m::REPLICA_LAG_MS, "backend" => name).set(lag as f64);
            }
        }
    }
}

/// `causeway_writer{backend}` and `causeway_split_brain`.
fn writer_gauges(topo: &Topology, status: &crate::failover::Status) {
    let writer = status.writer(topo);
    for b in topo.backends() {
        let on = writer == Some(b.name());
        metrics::gauge!(m::WRITER, "backend" => b.name().to_string()).set(if on {
            1.0
        } else {
            0.0
        });
    }
    let split = matches!(status.writers, crate::failover::Writers::Split(_));
    metrics::gauge!(m::SPLIT_BRAIN).set(if split { 1.0 } else { 0.0 });
}

/// Whether the proxy is ready for traffic, with the reason when it is not.
pub fn readiness(shared: &Shared) -> Result<(), String> {
    if shared.is_shutting_down() {
        return Err("shutting down".to_string());
    }
    let topo = shared.topology.load();
    let p = &topo.primary;
    let v = p.state.view.load();
    if v.measured_at.is_none() {
        return Err(format!(
            "primary '{}' ({}) not measured by the monitor yet",
            p.name(),
            p.config.address
        ));
    }
    if !v.reachable {
        let why = v.last_error.as_deref().unwrap_or("unreachable");
        return Err(format!(
            "primary '{}' ({}) unreachable: {why}",
            p.name(),
            p.config.address
        ));
    }
    Ok(())
}

/// Binds `addr` for the admin endpoint.
pub async fn bind(addr: &str) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Without the admin endpoint: runs only the exporter's upkeep every
/// [`GAUGE_INTERVAL`] until `shared` shuts down. The recorder keeps every
/// histogram sample until upkeep folds it in, so without this a proxy with
/// `[admin] enabled = false` grew by ~30 bytes per statement, forever.
pub async fn upkeep(shared: Arc<Shared>) {
    let handle = install_recorder();
    let mut stop = shared.shutdown_signal();
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = stop.changed() => break,
        }
    }
}

/// Serves the admin endpoint on `listener` for `proxy` until it shuts
/// down, refreshing gauges every [`GAUGE_INTERVAL`].
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let handle = install_recorder();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut stop = shared.shutdown_signal();
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::debug!(%peer, "admin connection limit reached; closing");
                        continue;
                    };
                    let (shared, handle) = (Arc::clone(&shared), handle.clone());
                    tokio::spawn(async move {
                        if let Err(e) = answer(shared, handle, stream).await {
                            tracing::debug!(%peer, error = %e, "admin request failed");
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = tick.tick() => {
                update_gauges(&shared);
                handle.run_upkeep();
            }
            _ = stop.changed() => break,
        }
    }
    tracing::info!("admin endpoint closed");
}

/// Serves one connection: one request, then close.
async fn answer(
    shared: Arc<Shared>,
    handle: PrometheusHandle,
    stream: TcpStream,
) -> Result<(), AdminError> {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let uri = req.uri();
        let resp = respond(&shared, &handle, req.method(), uri.path(), uri.query());
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(REQUEST_TIMEOUT, conn).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AdminError::Timeout(REQUEST_TIMEOUT)),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// The status, content type and body for `method` on `path`.
fn route(
    shared: &Shared,
    handle: &PrometheusHandle,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> (StatusCode, &'static str, String) {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed\n".into(),
        );
    }
    match path {
        "/metrics" => {
            update_gauges(shared);
            handle.run_upkeep();
            let mut text = handle.render();
            if let Some(d) = &shared.digests {
                let top = shared.topology.load().config.digests.export_top;
                text.push_str(&crate::digest::export::render(d, top));
            }
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        "/healthz" => (StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => match readiness(shared) {
            Ok(()) => (StatusCode::OK, TEXT, "ready\n".into()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        "/api/backends" => (
            StatusCode::OK,
            JSON,
            api::backends(&shared.topology.load(), &shared.failover.status()),
        ),
        "/api/sessions" => (StatusCode::OK, JSON, api::sessions(shared)),
        "/api/digests" => match api::digests(shared, query.unwrap_or("")) {
            Ok(body) => (StatusCode::OK, JSON, body),
            Err((status, why)) => (status, TEXT, format!("{why}\n")),
        },
        "/api/config" => (
            StatusCode::OK,
            JSON,
            api::config(&shared.topology.load().config),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// The response: `Content-Length` always set (also for HEAD, whose body is
/// left out), `Connection: close`.
fn respond(
    shared: &Shared,
    handle: &PrometheusHandle,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = route(shared, handle, method, path, query);
    let len = body.len();
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_is_installed_once() {
        let a = install_recorder();
        metrics::counter!("causeway_admin_selftest_total").increment(1);
        let b = install_recorder();
        assert!(b.render().contains("causeway_admin_selftest_total"));
        assert!(a.render().contains("causeway_admin_selftest_total"));
    }
}
