//! The HTTP admin endpoint and the Prometheus exporter.
//!
//! This module owns the process-wide metrics recorder
//! ([`install_recorder`], idempotent), the gauges derived from a proxy's
//! topology snapshot ([`update_gauges`]: lag, eligibility, health, backend
//! and client connections), and a deliberately tiny HTTP/1.1 server on
//! tokio: it reads one request head (bounded in size and time), answers it
//! and closes the connection. No keep-alive, no bodies, no hyper.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | 200, Prometheus text format (gauges refreshed first) |
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 `ready` when a topology is loaded, the proxy is not shutting down and the monitor has measured the primary as reachable; otherwise 503 with the reason |
//! | other path | 404; other method 405 |
//!
//! The `metrics` facade needs one global recorder per process; everything
//! else here is per proxy, so tests run several proxies in one process.
//! Gauges carry only a `backend` label, so two proxies in one process with
//! backends of the same name overwrite each other's gauges; a scrape
//! refreshes the scraping proxy's gauges right before rendering.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics as m;
use crate::proxy::Proxy;
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
    /// A request head was malformed, too large or too slow.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Gauges of backends that left the topology disappear from `/metrics`
/// after this long without an update.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the admin task refreshes gauges and runs exporter upkeep.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
pub fn update_gauges(proxy: &Proxy) {
    let topo = proxy.topology.load();
    backend_gauges(&topo);
    metrics::gauge!(m::CLIENT_CONNECTIONS).set(proxy.clients.load(Ordering::Relaxed) as f64);
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
        if b.role == crate::topology::Role::Replica {
            if let Some(lag) = v.lag_ms {
                metrics::gauge!(m::REPLICA_LAG_MS, "backend" => name).set(lag as f64);
            }
        }
    }
}

/// Whether the proxy is ready for traffic, with the reason when it is not.
pub fn readiness(proxy: &Proxy) -> Result<(), String> {
    if proxy.is_shutting_down() {
        return Err("shutting down".to_string());
    }
    let topo = proxy.topology.load();
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

/// Serves the admin endpoint on `listener` for `proxy` until it shuts
/// down, refreshing gauges every [`GAUGE_INTERVAL`].
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    let handle = install_recorder();
    let mut stop = proxy.shutdown_signal();
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (proxy, handle) = (Arc::clone(&proxy), handle.clone());
                    tokio::spawn(async move {
                        if let Err(e) = answer(&proxy, &handle, stream).await {
                            tracing::debug!(error = %e, "admin request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = tick.tick() => {
                update_gauges(&proxy);
                handle.run_upkeep();
            }
            _ = stop.changed() => break,
        }
    }
    tracing::info!("admin endpoint closed");
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Method, as sent.
    pub method: String,
    /// Path without the query string.
    pub path: String,
}

/// Parses the request line of an HTTP/1.x request head.
pub fn parse_request(head: &[u8]) -> Result<Request, AdminError> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(AdminError::BadRequest("no request line"))?;
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| AdminError::BadRequest("request line is not UTF-8"))?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AdminError::BadRequest("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(AdminError::BadRequest("not HTTP/1.x"));
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// The status, content type and body for `req`.
fn route(proxy: &Proxy, handle: &PrometheusHandle, req: &Request) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method != "GET" && req.method != "HEAD" {
        return (405, TEXT, "method not allowed\n".into());
    }
    match req.path.as_str() {
        "/metrics" => {
            update_gauges(proxy);
            handle.run_upkeep();
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match readiness(proxy) {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(why) => (503, TEXT, format!("not ready: {why}\n")),
        },
        _ => (404, TEXT, "not found\n".into()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, AdminError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(AdminError::BadRequest(
                    "connection closed before the head ended",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(());
            }
            if buf.len() > MAX_HEAD {
                return Err(AdminError::BadRequest("request head too large"));
            }
        }
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(r) => r.map(|()| buf),
        Err(_) => Err(AdminError::BadRequest("request head too slow")),
    }
}

async fn answer(
    proxy: &Proxy,
    handle: &PrometheusHandle,
    mut stream: TcpStream,
) -> Result<(), AdminError> {
    let (status, ctype, body, head_only) =
        match read_head(&mut stream).await.and_then(|h| parse_request(&h)) {
            Ok(req) => {
                let (s, c, b) = route(proxy, handle, &req);
                (s, c, b, req.method == "HEAD")
            }
            Err(AdminError::BadRequest(why)) => {
                (400, "text/plain; charset=utf-8", format!("{why}\n"), false)
            }
            Err(e) => return Err(e),
        };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert!(parse_request(b"GET /metrics\r\n\r\n").is_err());
        assert!(parse_request(b"GET / SPDY/3\r\n\r\n").is_err());
        assert!(parse_request(b"garbage").is_err());
    }

    #[test]
    fn recorder_is_installed_once() {
        let a = install_recorder();
        metrics::counter!("causeway_admin_selftest_total").increment(1);
        let b = install_recorder();
        assert!(b.render().contains("causeway_admin_selftest_total"));
        assert!(a.render().contains("causeway_admin_selftest_total"));
    }
}
