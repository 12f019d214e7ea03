//! The model lifecycle (docs/LIFECYCLE.md): discover → validate → warm up →
//! offline gate → online gate → promote or reject, with rollback.
//!
//! - Discovery: inotify (the `notify` crate) on `models_dir`, debounced,
//!   plus a periodic rescan as the safety net. Only integer version
//!   directories count; a version that failed is tried again only when its
//!   `model.vtr` changes (size or modification time).
//! - Validation: `Artifact::open` (sealed snapshot: later truncation or
//!   overwrite of the file cannot reach the process) and the model's
//!   configured kind and dimensions.
//! - Warm-up: `warmup_queries` recommend queries before any traffic.
//! - Offline gate: NDCG@K and Recall@K of candidate and serving version on
//!   the candidate's holdout (users known to both; `core::evaluate`, the
//!   trainer's own metric code).
//! - Online gate: a fraction of live recommend requests is mirrored, after
//!   the answer is sent, to a task that answers it with both versions and
//!   records errors, latencies and top-K overlap.
//! - Promotion is one `ArcSwap` store; the previous version is retained for
//!   rollback. Rejection leaves the serving version untouched. Either way a
//!   `shadow-report.json` is written next to the version (if the directory
//!   is writable; the report is also kept in memory and shown by
//!   `GET /v1/models/{model}`).

use crate::api::AppState;
use crate::config::Lifecycle;
use crate::model::{Filter, Query, ServedModel};
use crate::registry::{
    ModelSlot, VersionStatus, fingerprint, model_dirs, open_version, version_dirs,
};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vitrine_core::evaluate::{UserCase, evaluate_ranking};
use vitrine_core::{Artifact, ModelKind};

/// A candidate in online shadow and what mirroring has measured.
#[derive(Debug)]
pub struct Shadow {
    pub model: Arc<ServedModel>,
    every: u64,
    seen: AtomicU64,
    stats: Mutex<ShadowStats>,
}

#[derive(Debug, Default)]
struct ShadowStats {
    samples: usize,
    candidate_errors: usize,
    overlap_sum: f64,
    candidate_us: Vec<f64>,
    serving_us: Vec<f64>,
}

impl Shadow {
    fn new(model: Arc<ServedModel>, fraction: f64) -> Self {
        Self {
            model,
            every: (1.0 / fraction.clamp(1e-6, 1.0)).round().max(1.0) as u64,
            seen: AtomicU64::new(0),
            stats: Mutex::new(ShadowStats::default()),
        }
    }

    /// Whether this request is one of the mirrored fraction.
    pub fn sample(&self) -> bool {
        self.seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.every)
    }

    fn samples(&self) -> usize {
        self.stats.lock().expect("shadow stats").samples
    }
}

/// Owned copy of a recommend request, for mirroring after the answer.
#[derive(Debug, Clone)]
pub struct Mirrored {
    pub user: Option<String>,
    pub history: Vec<String>,
    pub exclude: Vec<String>,
    pub filter: Vec<String>,
    pub exclude_seen: bool,
    pub k: usize,
    pub popular_fallback: bool,
}

/// Answers `req` with the serving version and the candidate, off the
/// response path, and records the comparison.
pub fn mirror(serving: Arc<ServedModel>, shadow: Arc<Shadow>, req: Mirrored) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        // Let the request that was mirrored write its answer first.
        tokio::task::yield_now().await;
        let query = Query {
            user: req.user.as_deref(),
            history: &req.history,
            exclude: &req.exclude,
            filter: Filter {
                required: req.filter.clone(),
            },
            exclude_seen: req.exclude_seen,
            k: req.k,
            popular_fallback: req.popular_fallback,
        };
        let t = Instant::now();
        let a = serving.recommend(&query);
        let serving_us = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let b = shadow.model.recommend(&query);
        let candidate_us = t.elapsed().as_secs_f64() * 1e6;
        let mut s = shadow.stats.lock().expect("shadow stats");
        let Ok(a) = a else {
            return; // the serving version could not answer either: no signal
        };
        s.samples += 1;
        s.serving_us.push(serving_us);
        match b {
            Ok(b) => {
                s.candidate_us.push(candidate_us);
                let ids_a: Vec<&str> = a.items.iter().map(|x| serving.item_id(x.item)).collect();
                let common = b
                    .items
                    .iter()
                    .filter(|x| ids_a.contains(&shadow.model.item_id(x.item)))
                    .count();
                s.overlap_sum += common as f64 / ids_a.len().max(1) as f64;
            }
            Err(_) => s.candidate_errors += 1,
        }
    });
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Runs `f` on a fresh thread at the lowest scheduling priority and awaits
/// it. Validation, warm-up, the offline gate and report writes (fsync) are
/// work on the cores that serve traffic; at nice 19 the scheduler gives
/// serving threads the CPU first, so a promotion takes longer instead of
/// making requests wait, and the async workers never block on disk.
/// (On Linux a nice value is per thread.)
async fn background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    type Job = Box<dyn FnOnce() + Send>;
    // One long-lived thread (not one per job): its allocator arena and
    // stack are reused, so promotions do not grow the process.
    static WORKER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("vitrine-lifecycle".into())
            .spawn(move || {
                #[cfg(target_os = "linux")]
                let _ = rustix::process::setpriority_process(None, 19);
                for job in rx {
                    job();
                }
            });
        std::sync::Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    worker.lock().ok()?.send(job).ok()?;
    rx.await.ok()
}

/// Runs discovery until the process ends: watcher events (debounced) and
/// periodic rescans trigger [`scan_all`].
pub fn spawn(state: Arc<AppState>) {
    let cfg = state.config.lifecycle.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The watcher lives as long as the task that owns it.
    let watcher = if cfg.watch {
        use notify::Watcher;
        let tx = tx.clone();
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        }) {
            Ok(mut w) => {
                match w.watch(&state.config.models_dir, notify::RecursiveMode::Recursive) {
                    Ok(()) => Some(w),
                    Err(e) => {
                        tracing::warn!(error = %e, dir = %state.config.models_dir.display(), "cannot watch; relying on rescans");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no filesystem watcher; relying on rescans");
                None
            }
        }
    } else {
        None
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let rescan =
            (cfg.rescan_interval_ms > 0).then(|| Duration::from_millis(cfg.rescan_interval_ms));
        loop {
            let woke = match rescan {
                Some(period) => tokio::time::timeout(period, rx.recv())
                    .await
                    .map(|m| m.is_some()),
                None => Ok(rx.recv().await.is_some()),
            };
            if woke == Ok(false) {
                break; // channel closed
            }
            if woke.is_ok() {
                // Debounce: wait for quiet, swallowing the burst.
                let quiet = Duration::from_millis(cfg.debounce_ms);
                while let Ok(Some(())) = tokio::time::timeout(quiet, rx.recv()).await {}
            }
            scan_all(&state).await;
        }
    });
}

/// One discovery pass over every model.
pub async fn scan_all(state: &Arc<AppState>) {
    if state.registry.discover {
        for name in model_dirs(&state.config.models_dir) {
            if state.registry.get(&name).is_none() {
                tracing::info!(model = %name, "new model directory");
                state
                    .registry
                    .add(Arc::new(ModelSlot::new(&name, &state.config)));
            }
        }
    }
    for slot in state.registry.all() {
        scan_model(state, &slot).await;
    }
}

/// Tries the newest versions that could replace the serving one, newest
/// first, until one is promoted or none is left.
async fn scan_model(state: &Arc<AppState>, slot: &Arc<ModelSlot>) {
    let serving = slot.current().map_or(0, |m| m.version);
    for (version, dir) in version_dirs(&slot.dir) {
        let pinned = slot.config.pin;
        if pinned.is_some_and(|p| p != version) || (pinned.is_none() && version <= serving) {
            continue;
        }
        if pinned == Some(serving) {
            return;
        }
        let path = dir.join("model.vtr");
        let fp = fingerprint(&path);
        if fp.is_none() {
            continue; // no model file yet: a directory being filled
        }
        if let Some(prev) = slot.status(version)
            && prev.fingerprint == fp
            && prev.state != "ready"
        {
            continue; // tried with these very files
        }
        let outcome = evaluate_version(state, slot, version, &dir, fp).await;
        if outcome == Outcome::Promoted {
            return;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Promoted,
    Rejected,
    Failed,
}

async fn evaluate_version(
    state: &Arc<AppState>,
    slot: &Arc<ModelSlot>,
    version: u64,
    dir: &std::path::Path,
    fp: Option<(u64, std::time::SystemTime)>,
) -> Outcome {
    let cfg = state.config.lifecycle.clone();
    let started = Instant::now();
    let serving = slot.current();
    let mut report = json!({
        "model": slot.name, "version": version,
        "serving_version": serving.as_ref().map(|m| m.version),
        "started_at": vitrine_core::rfc3339_now(),
    });
    // Validate (and open) off the async workers: it reads and checks the
    // whole file.
    let (slot2, dir2) = (slot.clone(), dir.to_path_buf());
    let opened = background(move || open_version(&slot2, version, &dir2))
        .await
        .unwrap_or_else(|| Err("validation thread failed".into()));
    let candidate = match opened.and_then(|m| check_compat(slot, &m).map(|()| m)) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            report["outcome"] = json!("failed");
            report["reasons"] = json!([format!("validation: {e}")]);
            return finish(
                slot,
                version,
                dir,
                fp,
                report,
                Outcome::Failed,
                Some(e),
                None,
            )
            .await;
        }
    };
    report["validated_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
    // Warm up and run the offline gate.
    let (c2, s2, cfg2) = (candidate.clone(), serving.clone(), cfg.clone());
    let offline = background(move || {
        warm_up(&c2, cfg2.warmup_queries);
        offline_gate(&c2, s2.as_deref(), &cfg2)
    })
    .await
    .unwrap_or_else(|| json!({"passed": false, "note": "offline gate thread failed"}));
    report["offline"] = offline.clone();
    report["offline_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
    let mut reasons: Vec<String> = Vec::new();
    if offline["passed"] != json!(true) {
        reasons.push(format!(
            "offline gate: {}",
            offline["note"]
                .as_str()
                .unwrap_or("candidate worse than serving")
        ));
    }
    // Online gate: only when something serves and the offline gate passed.
    if reasons.is_empty()
        && let Some(serving) = &serving
        && cfg.online_fraction > 0.0
    {
        let shadow = Arc::new(Shadow::new(candidate.clone(), cfg.online_fraction));
        slot.set_status(VersionStatus {
            version,
            state: "candidate".into(),
            error: None,
            report: None,
            fingerprint: fp,
        });
        slot.candidate.store(Some(shadow.clone()));
        let t = Instant::now();
        while shadow.samples() < cfg.online_min_samples
            && t.elapsed() < Duration::from_millis(cfg.online_max_duration_ms)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slot.candidate.store(None);
        let online = online_verdict(&shadow, &cfg, t.elapsed());
        crate::metrics::shadow_overlap(
            &slot.name,
            version,
            online["overlap"].as_f64().unwrap_or(0.0),
        );
        if online["passed"] != json!(true) {
            reasons.push(format!(
                "online gate: {}",
                online["note"].as_str().unwrap_or("")
            ));
        }
        report["online"] = online;
        let _ = serving;
    } else if serving.is_none() {
        report["online"] =
            json!({"note": "nothing serving yet: promoted after validation and the offline gate"});
    }
    report["total_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
    if reasons.is_empty() {
        report["outcome"] = json!("promoted");
        report["reasons"] = json!([]);
        tracing::info!(model = %slot.name, version, ms = started.elapsed().as_millis() as u64, "promoted");
        finish(
            slot,
            version,
            dir,
            fp,
            report,
            Outcome::Promoted,
            None,
            Some((candidate, cfg.keep_versions)),
        )
        .await
    } else {
        report["outcome"] = json!("rejected");
        report["reasons"] = json!(reasons);
        tracing::warn!(model = %slot.name, version, reasons = ?reasons, "rejected");
        finish(
            slot,
            version,
            dir,
            fp,
            report,
            Outcome::Rejected,
            None,
            None,
        )
        .await
    }
}

/// Records a verdict: the report file first (off the async workers: it
/// fsyncs), then — for a promotion — the swap, then the status.
#[allow(clippy::too_many_arguments)]
async fn finish(
    slot: &ModelSlot,
    version: u64,
    dir: &std::path::Path,
    fp: Option<(u64, std::time::SystemTime)>,
    mut report: serde_json::Value,
    outcome: Outcome,
    error: Option<String>,
    promote: Option<(Arc<ServedModel>, usize)>,
) -> Outcome {
    let label = match outcome {
        Outcome::Promoted => "promoted",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    };
    crate::metrics::reload(&slot.name, label);
    // Which file the verdict is on: a restart honours it only for that file.
    report["model_file"] = crate::registry::fingerprint_json(fp);
    let bytes = serde_json::to_vec_pretty(&report).expect("serialisable");
    let path = dir.join(crate::registry::REPORT_FILE);
    let written = background(move || vitrine_core::artifact::write_atomically(&path, &bytes))
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("report thread failed")));
    if let Err(e) = written {
        tracing::warn!(model = %slot.name, version, error = %e, "cannot write shadow-report.json (kept in memory)");
        crate::metrics::report_write_failed(&slot.name);
    }
    let state = match outcome {
        Outcome::Promoted => "serving",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    };
    if let Some((model, keep)) = promote {
        slot.promote(model, keep);
    }
    slot.set_status(VersionStatus {
        version,
        state: state.into(),
        error,
        report: Some(report),
        fingerprint: fp,
    });
    outcome
}

fn check_compat(slot: &ModelSlot, m: &ServedModel) -> Result<(), String> {
    let meta = m.artifact.metadata();
    if let Some(kind) = &slot.config.kind
        && meta.kind.name() != kind
    {
        return Err(format!(
            "kind {} but model {} expects {kind}",
            meta.kind.name(),
            slot.name
        ));
    }
    if let Some(d) = slot.config.dims
        && meta.kind == ModelKind::Embedding
        && meta.dims != d
    {
        return Err(format!(
            "{} dimensions but model {} expects {d}",
            meta.dims, slot.name
        ));
    }
    Ok(())
}

/// Runs recommend queries for the first users (pages the data in).
fn warm_up(m: &ServedModel, n: usize) {
    let Some(users) = m.artifact.user_ids() else {
        return;
    };
    for u in 0..n.min(users.len()) {
        let q = Query {
            user: Some(users.id(u)),
            k: 10,
            exclude_seen: true,
            popular_fallback: true,
            ..Query::default()
        };
        let _ = m.recommend(&q);
    }
}

/// Evaluation cases of `art` for the holdout users of `source`, mapped by
/// id (users or items unknown to `art` are skipped).
struct Cases {
    users: Vec<u32>,
    history: Vec<Vec<u32>>,
    relevant: Vec<Vec<u32>>,
}

fn cases_for(source: &Artifact, art: &Artifact, users: &[u32]) -> Cases {
    let (src_items, items) = (source.item_ids(), art.item_ids());
    let (Some(src_users), Some(art_users)) = (source.user_ids(), art.user_ids()) else {
        return Cases {
            users: vec![],
            history: vec![],
            relevant: vec![],
        };
    };
    let map = |list: &[u32]| -> Vec<u32> {
        let mut v: Vec<u32> = list
            .iter()
            .filter_map(|&i| items.index_of(src_items.id(i as usize)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (seen, holdout) = (
        source.seen_items(),
        source.holdout().expect("holdout checked"),
    );
    let mut out = Cases {
        users: vec![],
        history: vec![],
        relevant: vec![],
    };
    for &u in users {
        let Some(au) = art_users.index_of(src_users.id(u as usize)) else {
            continue;
        };
        out.users.push(au);
        out.history.push(
            seen.as_ref()
                .map_or_else(Vec::new, |s| map(s.row(u as usize))),
        );
        out.relevant.push(map(holdout.row(u as usize)));
    }
    out
}

/// Quality of a served version as it answers requests — through its ranker
/// bundle when it has one — for the holdout users of `source` (by id).
fn served_quality(
    m: &ServedModel,
    source: &Artifact,
    users: &[u32],
    k: usize,
) -> (f64, f64, usize) {
    let (Some(src_users), Some(holdout)) = (source.user_ids(), source.holdout()) else {
        return (0.0, 0.0, 0);
    };
    let src_items = source.item_ids();
    let mut metrics = vitrine_core::metrics::RankingMetrics::new(k, m.n_items());
    for &u in users {
        let mut relevant: Vec<u32> = holdout
            .row(u as usize)
            .iter()
            .filter_map(|&i| m.item_index(src_items.id(i as usize)))
            .collect();
        relevant.sort_unstable();
        relevant.dedup();
        if relevant.is_empty() {
            continue;
        }
        let q = Query {
            user: Some(src_users.id(u as usize)),
            k,
            exclude_seen: true,
            popular_fallback: false,
            ..Query::default()
        };
        let ranked: Vec<u32> = m
            .recommend(&q)
            .map(|a| a.items.iter().map(|s| s.item).collect())
            .unwrap_or_default();
        metrics.add(&ranked, &relevant);
    }
    let r = metrics.finish();
    (
        r[&format!("ndcg@{k}")],
        r[&format!("recall@{k}")],
        metrics.users(),
    )
}

fn quality(art: &Artifact, c: &Cases, k: usize) -> (f64, f64, usize) {
    let cases: Vec<UserCase<'_>> = (0..c.users.len())
        .filter(|&i| !c.relevant[i].is_empty())
        .map(|i| UserCase {
            user: c.users[i],
            history: &c.history[i],
            exclude: &c.history[i],
            relevant: &c.relevant[i],
        })
        .collect();
    let m = evaluate_ranking(art, &cases, k, 1).finish();
    (
        m[&format!("ndcg@{k}")],
        m[&format!("recall@{k}")],
        cases.len(),
    )
}

/// NDCG@K and Recall@K of candidate and serving version on each holdout
/// available — the candidate's own and the serving version's — over users
/// both know. The candidate passes if it is not worse on any of them. The
/// serving version's holdout is what catches an artifact whose ids do not
/// match its factors (e.g. shuffled item ids): its own holdout would be
/// shuffled the same way and look fine.
fn offline_gate(
    candidate: &ServedModel,
    serving: Option<&ServedModel>,
    cfg: &Lifecycle,
) -> serde_json::Value {
    let k = cfg.offline_k.max(1);
    let c = &candidate.artifact;
    let mut sources: Vec<(&str, &Artifact)> = Vec::new();
    if c.holdout().is_some() {
        sources.push(("candidate_holdout", c));
    }
    if let Some(s) = serving
        && s.artifact.holdout().is_some()
    {
        sources.push(("serving_holdout", &s.artifact));
    }
    if sources.is_empty() {
        return json!({"passed": true, "note": "no holdout section in either version: offline gate skipped"});
    }
    let mut out = serde_json::Map::new();
    let mut passed = true;
    let mut notes = Vec::new();
    for (name, source) in sources {
        let holdout = source.holdout().expect("checked");
        let (Some(src_users), Some(cu)) = (source.user_ids(), c.user_ids()) else {
            continue;
        };
        let su = serving.and_then(|s| s.artifact.user_ids());
        let users: Vec<u32> = (0..holdout.rows() as u32)
            .filter(|&u| !holdout.row(u as usize).is_empty())
            .filter(|&u| {
                let id = src_users.id(u as usize);
                cu.index_of(id).is_some() && su.as_ref().is_none_or(|t| t.index_of(id).is_some())
            })
            .collect();
        // An evenly spaced sample bounds the gate's cost on big holdouts.
        let max = cfg.offline_max_users.max(1);
        let users: Vec<u32> = if users.len() > max {
            (0..max).map(|i| users[i * users.len() / max]).collect()
        } else {
            users
        };
        if users.is_empty() {
            out.insert(
                name.into(),
                json!({"note": "no holdout user known to both versions"}),
            );
            continue;
        }
        // With a ranker bundle on either side, compare the versions as they
        // answer (first stage + ranker); otherwise the artifact evaluation
        // the trainer uses.
        let ranked = candidate.ranker.is_some() || serving.is_some_and(|s| s.ranker.is_some());
        let (cn, cr, n) = if ranked {
            served_quality(candidate, source, &users, k)
        } else {
            quality(c, &cases_for(source, c, &users), k)
        };
        let mut entry =
            json!({"users": n, "candidate": {format!("ndcg@{k}"): cn, format!("recall@{k}"): cr}});
        if let Some(s) = serving {
            let (sn, sr, _) = if ranked {
                served_quality(s, source, &users, k)
            } else {
                quality(&s.artifact, &cases_for(source, &s.artifact, &users), k)
            };
            let ok = cn >= sn - cfg.offline_tolerance && cr >= sr - cfg.offline_tolerance;
            entry["serving"] = json!({format!("ndcg@{k}"): sn, format!("recall@{k}"): sr});
            entry["passed"] = json!(ok);
            if !ok {
                passed = false;
                notes.push(format!(
                    "on the {}: NDCG@{k} {cn:.4} vs serving {sn:.4}, Recall@{k} {cr:.4} vs {sr:.4}",
                    name.replace('_', " ")
                ));
            }
        }
        out.insert(name.into(), entry);
    }
    out.insert("k".into(), json!(k));
    out.insert("tolerance".into(), json!(cfg.offline_tolerance));
    out.insert("passed".into(), json!(passed));
    out.insert(
        "note".into(),
        json!(if passed {
            if serving.is_some() {
                "candidate at least as good within tolerance".to_string()
            } else {
                "nothing serving: no comparison".to_string()
            }
        } else {
            format!("{} (tolerance {})", notes.join("; "), cfg.offline_tolerance)
        }),
    );
    serde_json::Value::Object(out)
}

fn online_verdict(shadow: &Shadow, cfg: &Lifecycle, took: Duration) -> serde_json::Value {
    let s = shadow.stats.lock().expect("shadow stats");
    let n = s.samples;
    if n < cfg.online_min_samples {
        return json!({"passed": true, "samples": n, "duration_ms": took.as_millis() as u64,
                      "overlap": if n > 0 { s.overlap_sum / n as f64 } else { 0.0 },
                      "note": format!("only {n} mirrored requests in {} ms (minimum {}): offline gate decides",
                                      took.as_millis(), cfg.online_min_samples)});
    }
    let answered = n - s.candidate_errors;
    let overlap = if answered > 0 {
        s.overlap_sum / answered as f64
    } else {
        0.0
    };
    let error_rate = s.candidate_errors as f64 / n as f64;
    let (cp50, cp99) = (
        percentile(&s.candidate_us, 0.5),
        percentile(&s.candidate_us, 0.99),
    );
    let (sp50, sp99) = (
        percentile(&s.serving_us, 0.5),
        percentile(&s.serving_us, 0.99),
    );
    let p99_ratio = if sp99 > 0.0 { cp99 / sp99 } else { 1.0 };
    let mut fails = Vec::new();
    if error_rate > cfg.online_max_error_rate {
        fails.push(format!(
            "error rate {error_rate:.3} > {}",
            cfg.online_max_error_rate
        ));
    }
    if overlap < cfg.online_min_overlap {
        fails.push(format!(
            "top-K overlap {overlap:.3} < {}",
            cfg.online_min_overlap
        ));
    }
    if p99_ratio > cfg.online_max_p99_ratio {
        fails.push(format!(
            "p99 {cp99:.0} µs is {p99_ratio:.2}× the serving {sp99:.0} µs (max {})",
            cfg.online_max_p99_ratio
        ));
    }
    json!({
        "passed": fails.is_empty(), "samples": n, "duration_ms": took.as_millis() as u64,
        "overlap": overlap, "candidate_error_rate": error_rate,
        "candidate_us": {"p50": cp50, "p99": cp99}, "serving_us": {"p50": sp50, "p99": sp99},
        "note": if fails.is_empty() { "candidate matches the serving version on live traffic".to_string() } else { fails.join("; ") },
    })
}
