//! The transport: a tokio accept loop serving HTTP/1.1 (keep-alive) and
//! HTTP/2 (h2c) with hyper, and the limits that keep a bad client from
//! hurting the others:
//!
//! - connections beyond `max_connections` are closed at accept (counted);
//! - clients get `header_timeout_ms` to send headers (HTTP/1) and
//!   `body_timeout_ms` to send the body, else 408;
//! - bodies beyond `max_body_bytes` get 413 (from Content-Length before
//!   reading, or while reading);
//! - more than `max_inflight` requests at once get 503 + `Retry-After`
//!   instead of queueing without bound;
//! - on shutdown the listener closes, in-flight requests finish (bounded by
//!   `drain_timeout_ms`), then `serve` returns.

use crate::api::{self, ApiError, ApiRequest, ApiResponse, AppState, Prepared};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Shared by every connection.
#[derive(Debug)]
struct Shared {
    state: Arc<AppState>,
    batcher: Option<Arc<crate::batch::Batcher>>,
    inflight: AtomicUsize,
    next_id: AtomicU64,
}

/// Serves until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::metrics::install();
    let limits = state.config.limits.clone();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let batcher = state
        .config
        .micro_batching
        .then(|| crate::batch::Batcher::start(workers));
    let shared = Arc::new(Shared {
        batcher,
        state,
        inflight: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
    });
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    crate::lifecycle::spawn(shared.state.clone());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    crate::metrics::shed();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(Duration::from_millis(limits.drain_timeout_ms)) => {
            tracing::warn!("drain timeout: closing remaining connections");
        }
    }
    Ok(())
}

/// Decrements the in-flight count however the request ends.
struct InflightGuard<'a>(&'a AtomicUsize);
impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        crate::metrics::inflight(n);
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", shared.next_id.fetch_add(1, Ordering::Relaxed)));
    let limits = &shared.state.config.limits;
    let n = shared.inflight.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = InflightGuard(&shared.inflight);
    crate::metrics::inflight(n);
    let (route, response) = if n > limits.max_inflight {
        let mut r = ApiError::new(
            503,
            "overloaded",
            format!(
                "more than {} requests in flight; retry shortly",
                limits.max_inflight
            ),
        )
        .response();
        r.content_type = "application/json";
        ("overloaded", r)
    } else {
        match read_body(req, limits.max_body_bytes, limits.body_timeout_ms).await {
            Ok((parts, body)) => {
                let api_req = ApiRequest {
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    authorization: parts
                        .headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok()),
                    body,
                };
                match api::prepare(&shared.state, api_req) {
                    Prepared::Answered(route, response) => (route, response),
                    Prepared::Scan(job) => {
                        let (job, items) = match &shared.batcher {
                            Some(b) => b.scan(job).await,
                            None => {
                                let items = job
                                    .model
                                    .recommend_users(std::slice::from_ref(&job.query))
                                    .pop()
                                    .unwrap_or_default();
                                (job, items)
                            }
                        };
                        api::finish_scan(&job, items)
                    }
                }
            }
            Err(e) => ("unknown", e.response()),
        }
    };
    let status = response.status;
    let elapsed = start.elapsed();
    crate::metrics::request(route, status, elapsed.as_secs_f64());
    if status >= 500 {
        tracing::warn!(request_id = %request_id, route, status, micros = elapsed.as_micros() as u64, "request failed");
    } else {
        tracing::debug!(request_id = %request_id, route, status, micros = elapsed.as_micros() as u64, "request");
    }
    to_hyper(response, &request_id, status == 503)
}

async fn read_body(
    req: Request<Incoming>,
    max: usize,
    timeout_ms: u64,
) -> Result<(hyper::http::request::Parts, Vec<u8>), ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "body_too_large",
            format!("request body larger than {max} bytes (limits.max_body_bytes)"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        Limited::new(body, max).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            408,
            "body_timeout",
            format!("request body not received within {timeout_ms} ms"),
        )
    })?;
    match collected {
        Ok(c) => Ok((parts, c.to_bytes().to_vec())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::new(
            400,
            "bad_body",
            format!("reading the request body: {e}"),
        )),
    }
}

fn to_hyper(r: ApiResponse, request_id: &str, retry: bool) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(r.status)
        .header(hyper::header::CONTENT_TYPE, r.content_type)
        .header("x-request-id", request_id);
    if retry {
        b = b.header(hyper::header::RETRY_AFTER, "1");
    }
    b.body(Full::new(Bytes::from(r.body)))
        .expect("valid response parts")
}
