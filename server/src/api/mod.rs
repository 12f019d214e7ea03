//! The HTTP API as plain functions: a parsed request in, status and JSON
//! body out. The transport (`crate::http`) reads bodies, enforces limits and
//! times; this module routes, validates and answers, so it can be tested and
//! benchmarked in-process.

pub mod types;

use crate::config::{Config, ModelConfig};
use crate::model::{Answer, Filter, Query, QueryError, ServedModel, UserQuery};
use crate::registry::Registry;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use types::*;
use vitrine_core::scan::ScoredItem;

/// Everything a handler reads.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub registry: Registry,
}

#[derive(Debug)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).expect("serialisable"),
        }
    }
}

/// An error answer: status, machine-readable code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }
    pub fn response(&self) -> ApiResponse {
        ApiResponse::json(
            self.status,
            &json!({"error": ErrorBody { code: self.code, message: &self.message }}),
        )
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::UnknownUser(u) => {
                Self::new(404, "unknown_user", format!("unknown user {u:?}"))
            }
            QueryError::UnknownItem(i) => {
                Self::new(404, "unknown_item", format!("unknown item {i:?}"))
            }
            QueryError::BadFilter(m) => Self::new(400, "invalid_filter", m),
        }
    }
}

/// Route templates: the `route` label of every metric.
pub mod routes {
    pub const RECOMMEND: &str = "/v1/models/{model}/recommend";
    pub const BATCH: &str = "/v1/models/{model}/recommend:batch";
    pub const SIMILAR: &str = "/v1/models/{model}/similar";
    pub const SCORE: &str = "/v1/models/{model}/score";
    pub const ROLLBACK: &str = "/v1/models/{model}/rollback";
    pub const MODEL: &str = "/v1/models/{model}";
    pub const MODELS: &str = "/v1/models";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    pub const METRICS: &str = "/metrics";
    pub const UNKNOWN: &str = "unknown";
}

/// A recommend request reduced to the hot path (embedding model, known
/// user, no session): the transport may batch these
/// ([`crate::batch`]) before [`finish_scan`] answers them.
#[derive(Debug)]
pub struct ScanJob {
    pub model: Arc<ServedModel>,
    pub query: UserQuery,
}

#[derive(Debug)]
pub enum Prepared {
    Answered(&'static str, ApiResponse),
    Scan(ScanJob),
}

/// Answers the request, or hands back a hot-path scan to run. Anything that
/// is not a valid hot-path recommend goes through [`handle`], so errors are
/// reported exactly as there.
pub fn prepare(state: &AppState, req: ApiRequest<'_>) -> Prepared {
    match scan_job(state, &req) {
        Some(job) => Prepared::Scan(job),
        None => {
            let (route, response) = handle(state, req);
            Prepared::Answered(route, response)
        }
    }
}

fn scan_job(state: &AppState, req: &ApiRequest<'_>) -> Option<ScanJob> {
    let rest = req.path.strip_prefix("/v1/models/")?;
    let name = rest.strip_suffix("/recommend")?;
    if name.contains('/') {
        return None;
    }
    let r: RecommendRequest = match req.method {
        "POST" => parse_json(&req.body).ok()?,
        "GET" => query_request(req.query.unwrap_or("")).ok()?,
        _ => return None,
    };
    let (slot, model) = slot_and_model(state, name).ok()?;
    let cfg = &slot.config;
    let max_list = state.config.limits.max_list;
    if r.exclude.len() > max_list {
        return None;
    }
    let query = Query {
        user: r.user.as_deref(),
        history: &r.history,
        exclude: &r.exclude,
        filter: filter_of(&r.filter, cfg).ok()?,
        exclude_seen: r.exclude_seen.unwrap_or(cfg.exclude_seen),
        k: check_k(r.k, cfg).ok()?,
        popular_fallback: cfg.fallback == "popular",
    };
    let query = model.user_query(&query).ok()??;
    maybe_mirror(&slot, &model, &r);
    Some(ScanJob { model, query })
}

/// Mirrors a sampled share of recommend requests to a candidate in online
/// shadow (issue 6); the comparison runs in its own task after this one.
fn maybe_mirror(slot: &crate::registry::ModelSlot, model: &Arc<ServedModel>, r: &RecommendRequest) {
    let Some(shadow) = slot.candidate.load_full() else {
        return;
    };
    if !shadow.sample() {
        return;
    }
    let cfg = &slot.config;
    let Ok(filter) = filter_of(&r.filter, cfg) else {
        return;
    };
    let mirrored = crate::lifecycle::Mirrored {
        user: r.user.clone(),
        history: r.history.clone(),
        exclude: r.exclude.clone(),
        filter: filter.required,
        exclude_seen: r.exclude_seen.unwrap_or(cfg.exclude_seen),
        k: r.k.map_or(cfg.k, |k| k as usize),
        popular_fallback: cfg.fallback == "popular",
    };
    crate::lifecycle::mirror(model.clone(), shadow, mirrored);
}

/// The answer to a hot-path scan.
pub fn finish_scan(job: &ScanJob, items: Vec<ScoredItem>) -> (&'static str, ApiResponse) {
    let answer = Answer {
        items,
        fallback: None,
    };
    crate::metrics::answer(&job.model, answer.items.first().map(|s| s.score));
    (
        routes::RECOMMEND,
        ApiResponse::json(200, &items_response(&job.model, &answer)),
    )
}

/// Routes and answers one request; returns the route template too.
pub fn handle(state: &AppState, req: ApiRequest<'_>) -> (&'static str, ApiResponse) {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let (route, result) = match (req.method, segments.as_slice()) {
        ("GET", ["healthz"]) => (
            routes::HEALTHZ,
            Ok(ApiResponse::json(200, &json!({"status": "ok"}))),
        ),
        ("GET", ["readyz"]) => (routes::READYZ, Ok(readyz(state))),
        ("GET", ["metrics"]) => (
            routes::METRICS,
            Ok(ApiResponse {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: crate::metrics::render().into_bytes(),
            }),
        ),
        ("GET", ["v1", "models"]) => (routes::MODELS, Ok(list_models(state))),
        (_, ["v1", "models", model, action]) => {
            let route = match *action {
                "recommend" => routes::RECOMMEND,
                "recommend:batch" => routes::BATCH,
                "similar" => routes::SIMILAR,
                "score" => routes::SCORE,
                "rollback" => routes::ROLLBACK,
                _ => routes::UNKNOWN,
            };
            (route, model_action(state, &req, model, route))
        }
        ("GET", ["v1", "models", model]) => (routes::MODEL, model_status(state, model)),
        (_, ["v1", "models", _])
        | (_, ["v1", "models"])
        | (_, ["healthz" | "readyz" | "metrics"]) => (
            routes::UNKNOWN,
            Err(ApiError::new(
                405,
                "method_not_allowed",
                format!("{} is not allowed on {}", req.method, req.path),
            )),
        ),
        _ => (
            routes::UNKNOWN,
            Err(ApiError::new(
                404,
                "not_found",
                format!("no route {}", req.path),
            )),
        ),
    };
    (route, result.unwrap_or_else(|e| e.response()))
}

fn slot_and_model(
    state: &AppState,
    name: &str,
) -> Result<(Arc<crate::registry::ModelSlot>, Arc<ServedModel>), ApiError> {
    let slot = state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::new(404, "unknown_model", format!("unknown model {name:?}")))?;
    let model = slot.current().ok_or_else(|| {
        ApiError::new(
            503,
            "model_not_ready",
            format!("model {name:?} has no version serving yet"),
        )
    })?;
    Ok((slot, model))
}

fn model_action(
    state: &AppState,
    req: &ApiRequest<'_>,
    name: &str,
    route: &'static str,
) -> Result<ApiResponse, ApiError> {
    if route == routes::UNKNOWN {
        return Err(ApiError::new(
            404,
            "not_found",
            format!("no route {}", req.path),
        ));
    }
    if route == routes::ROLLBACK {
        return rollback(state, req, name);
    }
    let method_ok = match route {
        routes::RECOMMEND => matches!(req.method, "GET" | "POST"),
        _ => req.method == "POST",
    };
    if !method_ok {
        return Err(ApiError::new(
            405,
            "method_not_allowed",
            format!("{} is not allowed on {route}", req.method),
        ));
    }
    let (slot, model) = slot_and_model(state, name)?;
    let limits = &state.config.limits;
    let cfg = &slot.config;
    match route {
        routes::RECOMMEND => {
            let r: RecommendRequest = if req.method == "GET" {
                query_request(req.query.unwrap_or(""))?
            } else {
                parse_json(&req.body)?
            };
            let answer = recommend_one(&model, cfg, limits.max_list, &r)?;
            maybe_mirror(&slot, &model, &r);
            Ok(ApiResponse::json(200, &items_response(&model, &answer)))
        }
        routes::BATCH => {
            let b: BatchRequest = parse_json(&req.body)?;
            if b.requests.len() > limits.max_batch {
                return Err(ApiError::bad(format!(
                    "{} requests in one batch; the limit is {} (limits.max_batch)",
                    b.requests.len(),
                    limits.max_batch
                )));
            }
            let outcomes: Vec<Result<Answer, ApiError>> = b
                .requests
                .iter()
                .map(|r| recommend_one(&model, cfg, limits.max_list, r))
                .collect();
            let results = outcomes
                .iter()
                .map(|o| match o {
                    Ok(a) => BatchResult::Items(items_response(&model, a)),
                    Err(e) => BatchResult::Error {
                        error: ErrorBody {
                            code: e.code,
                            message: &e.message,
                        },
                        status: e.status,
                    },
                })
                .collect();
            let body = BatchResponse {
                model: &model.name,
                version: model.version,
                results,
            };
            Ok(ApiResponse::json(200, &body))
        }
        routes::SIMILAR => {
            let r: SimilarRequest = parse_json(&req.body)?;
            let k = check_k(r.k, cfg)?;
            check_list("exclude", r.exclude.len(), limits.max_list)?;
            let filter = filter_of(&r.filter, cfg)?;
            let answer = model.similar(&r.item, k, &r.exclude, &filter)?;
            Ok(ApiResponse::json(200, &items_response(&model, &answer)))
        }
        routes::SCORE => {
            let r: ScoreRequest = parse_json(&req.body)?;
            check_list("items", r.items.len(), limits.max_list)?;
            check_list("history", r.history.len(), limits.max_list)?;
            let (scores, fallback) = model.score(
                r.user.as_deref(),
                &r.history,
                &r.items,
                cfg.fallback == "popular",
            )?;
            if let Some(reason) = fallback {
                crate::metrics::fallback(
                    &model.name,
                    if reason == "popular" {
                        "unknown_user"
                    } else {
                        reason
                    },
                );
            }
            let items = r
                .items
                .iter()
                .zip(scores)
                .map(|(id, score)| ScoredId { id, score })
                .collect();
            Ok(ApiResponse::json(
                200,
                &ItemsResponse {
                    model: &model.name,
                    version: model.version,
                    items,
                    fallback,
                },
            ))
        }
        _ => unreachable!("routes above"),
    }
}

fn recommend_one(
    model: &ServedModel,
    cfg: &ModelConfig,
    max_list: usize,
    r: &RecommendRequest,
) -> Result<Answer, ApiError> {
    let k = check_k(r.k, cfg)?;
    check_list("history", r.history.len(), max_list)?;
    check_list("exclude", r.exclude.len(), max_list)?;
    let query = Query {
        user: r.user.as_deref(),
        history: &r.history,
        exclude: &r.exclude,
        filter: filter_of(&r.filter, cfg)?,
        exclude_seen: r.exclude_seen.unwrap_or(cfg.exclude_seen),
        k,
        popular_fallback: cfg.fallback == "popular",
    };
    let answer = model.recommend(&query)?;
    if answer.fallback.is_some() {
        crate::metrics::fallback(
            &model.name,
            if r.user.is_some() {
                "unknown_user"
            } else {
                "no_user"
            },
        );
    }
    crate::metrics::answer(model, answer.items.first().map(|s| s.score));
    Ok(answer)
}

fn items_response<'a>(model: &'a ServedModel, answer: &Answer) -> ItemsResponse<'a> {
    ItemsResponse {
        model: &model.name,
        version: model.version,
        items: answer
            .items
            .iter()
            .map(|s| ScoredId {
                id: model.item_id(s.item),
                score: s.score,
            })
            .collect(),
        fallback: answer.fallback,
    }
}

fn check_k(k: Option<u64>, cfg: &ModelConfig) -> Result<usize, ApiError> {
    match k {
        None => Ok(cfg.k),
        Some(k) if k >= 1 && k <= cfg.max_k as u64 => Ok(k as usize),
        Some(k) => Err(ApiError::bad(format!(
            "k = {k} is out of range: 1 ≤ k ≤ {} (max_k)",
            cfg.max_k
        ))),
    }
}

fn check_list(what: &str, len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        return Err(ApiError::bad(format!(
            "{what} has {len} entries; the limit is {max} (limits.max_list)"
        )));
    }
    Ok(())
}

/// `{"category": "shoes", "tags": ["sale"]}` → attributes `category=shoes`,
/// `tag=sale`; keys must be allowed by the model's `filters` setting.
fn filter_of(
    filter: &BTreeMap<String, FilterValue>,
    cfg: &ModelConfig,
) -> Result<Filter, ApiError> {
    let mut required = Vec::new();
    for (key, value) in filter {
        if !cfg.filters.iter().any(|f| f == key) {
            return Err(ApiError::new(
                400,
                "invalid_filter",
                format!(
                    "filter {key:?} is not allowed (allowed: {})",
                    cfg.filters.join(", ")
                ),
            ));
        }
        let name = if key == "tags" { "tag" } else { key.as_str() };
        match value {
            FilterValue::One(v) => required.push(format!("{name}={v}")),
            FilterValue::Many(vs) => required.extend(vs.iter().map(|v| format!("{name}={v}"))),
        }
    }
    Ok(Filter { required })
}

/// Parses a JSON body: simd-json for speed; on failure, serde_json again on
/// the original bytes for an error message that says what and where.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "the request body is empty; expected a JSON object",
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            400,
            "invalid_json",
            "request body: expected a JSON object ({...})",
        ));
    }
    let mut copy = body.to_vec();
    match simd_json::serde::from_slice::<T>(&mut copy) {
        Ok(v) => Ok(v),
        Err(_) => match serde_json::from_slice::<T>(body) {
            Ok(v) => Ok(v),
            Err(e) => Err(ApiError::new(
                400,
                "invalid_json",
                format!("request body: {e}"),
            )),
        },
    }
}

/// GET recommend: `?user=u1&k=10&history=a,b&exclude=c&category=shoes&tags=sale`.
fn query_request(query: &str) -> Result<RecommendRequest, ApiError> {
    let mut r = RecommendRequest::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        let list = || {
            value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        match key.as_str() {
            "user" => r.user = Some(value.clone()),
            "k" => {
                r.k = Some(value.parse().map_err(|_| {
                    ApiError::bad(format!("k = {value:?} is not a positive integer"))
                })?)
            }
            "history" => r.history = list(),
            "exclude" => r.exclude = list(),
            "exclude_seen" => {
                r.exclude_seen = Some(match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad(format!(
                            "exclude_seen = {value:?}: use true or false"
                        )));
                    }
                })
            }
            _ => {
                r.filter.insert(key.clone(), FilterValue::Many(list()));
            }
        }
    }
    Ok(r)
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let v = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad(format!("bad percent-encoding in query: {s:?}"))
                    })?;
                out.push(v);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad("query string is not UTF-8 after percent-decoding"))
}

fn readyz(state: &AppState) -> ApiResponse {
    let missing = state.registry.not_serving();
    if state.registry.is_empty() {
        ApiResponse::json(
            503,
            &json!({"ready": false, "reason": "no models configured or found"}),
        )
    } else if missing.is_empty() {
        ApiResponse::json(200, &json!({"ready": true}))
    } else {
        ApiResponse::json(503, &json!({"ready": false, "not_serving": missing}))
    }
}

fn model_summary(slot: &crate::registry::ModelSlot) -> serde_json::Value {
    match slot.current() {
        Some(m) => {
            let meta = m.artifact.metadata();
            json!({"name": slot.name, "state": "serving", "version": m.version, "kind": meta.kind.name(),
                   "dtype": meta.dtype.name(), "dims": meta.dims, "items": meta.n_items, "users": meta.n_users,
                   "algorithm": meta.algorithm,
                   "ranker": m.ranker.as_ref().map(|r| json!({
                       "engine": r.engine.name(),
                       "candidates": r.candidates, "features": r.names}))})
        }
        None => json!({"name": slot.name, "state": "not_serving"}),
    }
}

fn list_models(state: &AppState) -> ApiResponse {
    let models: Vec<serde_json::Value> = state
        .registry
        .all()
        .iter()
        .map(|s| model_summary(s))
        .collect();
    ApiResponse::json(200, &json!({"models": models}))
}

fn model_status(state: &AppState, name: &str) -> Result<ApiResponse, ApiError> {
    let slot = state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::new(404, "unknown_model", format!("unknown model {name:?}")))?;
    let mut v = model_summary(&slot);
    v["versions"] = serde_json::to_value(slot.statuses()).expect("serialisable");
    v["retained_versions"] = json!(
        slot.retained
            .lock()
            .expect("retained lock")
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>()
    );
    if let Some(c) = slot.candidate.load_full() {
        v["candidate_version"] = json!(c.model.version);
    }
    if let Some(m) = slot.current() {
        let meta = m.artifact.metadata();
        v["metadata"] = json!({"params": meta.params, "metrics": meta.metrics, "trained_at": meta.trained_at,
                               "data_fingerprint": meta.data_fingerprint});
        v["served_item_coverage"] = json!(m.coverage());
        v["artifact_bytes"] = json!(m.artifact.size_bytes());
    }
    v["config"] = serde_json::to_value(&slot.config).expect("serialisable");
    Ok(ApiResponse::json(200, &v))
}

/// Compares in time independent of where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_admin(state: &AppState, req: &ApiRequest<'_>) -> Result<(), ApiError> {
    let token = &state.config.admin_token;
    if token.is_empty() {
        return Err(ApiError::new(
            404,
            "admin_disabled",
            "admin endpoints are off: no admin_token is configured",
        ));
    }
    let given = req
        .authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(ApiError::new(
            401,
            "unauthorized",
            "admin endpoints need Authorization: Bearer <admin_token>",
        ));
    }
    Ok(())
}

fn rollback(state: &AppState, req: &ApiRequest<'_>, name: &str) -> Result<ApiResponse, ApiError> {
    if req.method != "POST" {
        return Err(ApiError::new(405, "method_not_allowed", "rollback is POST"));
    }
    check_admin(state, req)?;
    let (slot, _) = slot_and_model(state, name)?;
    match slot.rollback() {
        Ok((from, to)) => {
            tracing::warn!(model = %name, from, to, "rolled back");
            // The swap is done; the record only keeps a restart from serving
            // `from` again. A small write, on an admin request.
            let recorded = from > 0
                && match slot.record_rollback(from, to) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(model = %name, version = from, error = %e,
                            "cannot record the rollback: a restarted server may serve this version again");
                        false
                    }
                };
            Ok(ApiResponse::json(
                200,
                &json!({"model": name, "version": to, "rolled_back_from": from, "recorded": recorded}),
            ))
        }
        Err(e) => Err(ApiError::new(
            409,
            "no_previous_version",
            format!("model {name:?}: {e}"),
        )),
    }
}
