//! The models the server knows, the version each one serves, and the
//! versions it keeps ready for rollback.
//!
//! A model is a directory `models_dir/<name>/` of integer-named version
//! directories holding `model.vtr`. Start-up serves the newest version that
//! validates; afterwards the lifecycle (`crate::lifecycle`) discovers,
//! gates and promotes new versions. The serving version sits behind an
//! `ArcSwapOption`: a request takes one `Arc` for its whole life, so a swap
//! never tears a request, and a version's memory is released when the last
//! request holding it finishes.
//!
//! Verdicts outlive the process: the gates' `shadow-report.json` and an
//! operator's `rollback.json` sit next to the version with the fingerprint
//! of the file they judged, and start-up does not serve a version they
//! still apply to while another version validates (a restarted pod must
//! not bring back what the gates or an operator took out).
//!
//! Model names come from the configuration or from directory names checked
//! by [`crate::config::valid_model_name`]; a name from a URL is only ever
//! looked up in this map, never joined into a path.

use crate::config::{Config, ModelConfig, valid_model_name};
use crate::model::ServedModel;
use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use vitrine_core::Artifact;

/// What happened to one version directory.
#[derive(Clone, Debug, Serialize)]
pub struct VersionStatus {
    pub version: u64,
    /// `serving`, `retained` (loaded, ready for rollback), `candidate`
    /// (in shadow evaluation), `ready` (valid, not loaded), `rejected` (a
    /// gate said no), `failed` (did not validate), `rolled_back`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The shadow report, when the version went through the gates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// Identity of the files last tried (size, modification time): a
    /// failed version is tried again only when this changes.
    #[serde(skip)]
    pub fingerprint: Option<(u64, SystemTime)>,
}

#[derive(Debug)]
pub struct ModelSlot {
    pub name: String,
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub serving: ArcSwapOption<ServedModel>,
    /// Earlier versions kept loaded for instant rollback, newest first.
    pub retained: Mutex<Vec<Arc<ServedModel>>>,
    /// A version in online shadow: live requests are mirrored to it.
    pub candidate: ArcSwapOption<crate::lifecycle::Shadow>,
    pub versions: Mutex<BTreeMap<u64, VersionStatus>>,
}

impl ModelSlot {
    pub fn new(name: &str, config: &Config) -> Self {
        Self {
            dir: config.models_dir.join(name),
            config: config.model(name),
            name: name.to_string(),
            serving: ArcSwapOption::empty(),
            retained: Mutex::new(Vec::new()),
            candidate: ArcSwapOption::empty(),
            versions: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn current(&self) -> Option<Arc<ServedModel>> {
        self.serving.load_full()
    }

    pub fn set_status(&self, status: VersionStatus) {
        self.versions
            .lock()
            .expect("status lock")
            .insert(status.version, status);
    }

    pub fn status(&self, version: u64) -> Option<VersionStatus> {
        self.versions
            .lock()
            .expect("status lock")
            .get(&version)
            .cloned()
    }

    /// Version statuses, newest first.
    pub fn statuses(&self) -> Vec<VersionStatus> {
        self.versions
            .lock()
            .expect("status lock")
            .values()
            .rev()
            .cloned()
            .collect()
    }

    /// Makes `model` the serving version; the previous one is retained (up
    /// to `keep` of them) for rollback.
    pub fn promote(&self, model: Arc<ServedModel>, keep: usize) {
        let previous = self.serving.swap(Some(model.clone()));
        crate::metrics::model_info(&model, true);
        self.mark(model.version, "serving");
        if let Some(prev) = previous {
            crate::metrics::model_info(&prev, false);
            let mut retained = self.retained.lock().expect("retained lock");
            retained.insert(0, prev.clone());
            self.mark(prev.version, "retained");
            while retained.len() > keep {
                if let Some(old) = retained.pop() {
                    self.mark(old.version, "ready");
                }
            }
        }
    }

    fn mark(&self, version: u64, state: &str) {
        let mut v = self.versions.lock().expect("status lock");
        let entry = v.entry(version).or_insert_with(|| VersionStatus {
            version,
            state: String::new(),
            error: None,
            report: None,
            fingerprint: None,
        });
        entry.state = state.to_string();
    }

    /// Serves the newest retained version again; the version it replaces is
    /// marked `rolled_back` and is not promoted again until its files change.
    pub fn rollback(&self) -> Result<(u64, u64), String> {
        let mut retained = self.retained.lock().expect("retained lock");
        if retained.is_empty() {
            return Err("no earlier version is loaded to roll back to".into());
        }
        let target = retained.remove(0);
        let from = self.serving.swap(Some(target.clone()));
        crate::metrics::model_info(&target, true);
        self.mark(target.version, "serving");
        let from_version = from.as_ref().map_or(0, |m| m.version);
        if let Some(f) = from {
            crate::metrics::model_info(&f, false);
            self.mark(f.version, "rolled_back");
        }
        crate::metrics::reload(&self.name, "rolled_back");
        Ok((from_version, target.version))
    }

    /// Records a rollback next to the version rolled back from, so that a
    /// restarted process does not serve it again either (see
    /// [`recorded_verdict`]); the fingerprint is that of the file the
    /// version was validated from.
    pub fn record_rollback(&self, from: u64, to: u64) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(from.to_string());
        let fp = self
            .status(from)
            .and_then(|s| s.fingerprint)
            .or_else(|| fingerprint(&dir.join("model.vtr")));
        let record = serde_json::json!({
            "model": self.name,
            "version": from,
            "outcome": "rolled_back",
            "rolled_back_to": to,
            "at": vitrine_core::rfc3339_now(),
            "model_file": fingerprint_json(fp),
        });
        let path = dir.join(ROLLBACK_FILE);
        let bytes = serde_json::to_vec_pretty(&record).expect("serialisable");
        vitrine_core::artifact::write_atomically(&path, &bytes)?;
        Ok(path)
    }
}

#[derive(Debug)]
pub struct Registry {
    models: ArcSwap<BTreeMap<String, Arc<ModelSlot>>>,
    /// Serve every valid directory found (no `[models.*]` in the config).
    pub discover: bool,
}

/// Integer-named subdirectories of `dir`, newest first. Anything else
/// (temporary names, files) is ignored.
pub fn version_dirs(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u64 = name.parse().ok()?;
            (n > 0 && name == n.to_string()).then(|| (n, e.path()))
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v
}

/// Model directory names under `models_dir`.
pub fn model_dirs(models_dir: &Path) -> Vec<String> {
    std::fs::read_dir(models_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_model_name(n))
        .collect()
}

/// (size, mtime) of a version's model file.
pub fn fingerprint(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// The gates' verdict on a version, written next to it.
pub const REPORT_FILE: &str = "shadow-report.json";
/// Written next to a version an operator rolled back from.
pub const ROLLBACK_FILE: &str = "rollback.json";

/// A fingerprint as recorded in verdict files (`model_file`), so that a
/// verdict applies only to the very file it judged.
pub fn fingerprint_json(fp: Option<(u64, SystemTime)>) -> serde_json::Value {
    match fp {
        Some((bytes, modified)) => serde_json::json!({
            "bytes": bytes,
            "modified_ns": modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }),
        None => serde_json::Value::Null,
    }
}

/// A verdict an earlier process recorded that still applies to the version
/// in `dir` (whose model file has fingerprint `fp`): the state it puts the
/// version in (`rolled_back` or `rejected`) and the recorded JSON. A
/// verdict on other bytes (the file was replaced since) does not apply.
pub fn recorded_verdict(
    dir: &Path,
    fp: Option<(u64, SystemTime)>,
) -> Option<(&'static str, serde_json::Value)> {
    let current = fingerprint_json(Some(fp?));
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
    };
    if let Some(v) = read(ROLLBACK_FILE)
        && v["model_file"] == current
    {
        return Some(("rolled_back", v));
    }
    if let Some(v) = read(REPORT_FILE)
        && v["outcome"] == "rejected"
        && v["model_file"] == current
    {
        return Some(("rejected", v));
    }
    None
}

impl Registry {
    /// Builds the registry and loads the newest valid version of each model
    /// (no gates: at start-up there is nothing to compare against).
    pub fn load(config: &Config) -> Self {
        let names: Vec<String> = if config.models.is_empty() {
            model_dirs(&config.models_dir)
        } else {
            config.models.keys().cloned().collect()
        };
        let mut models = BTreeMap::new();
        for name in names {
            let slot = Arc::new(ModelSlot::new(&name, config));
            load_newest(&slot);
            models.insert(name, slot);
        }
        Self {
            models: ArcSwap::from_pointee(models),
            discover: config.models.is_empty(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<ModelSlot>> {
        self.models.load().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ModelSlot>> {
        self.models.load().values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.models.load().is_empty()
    }

    /// Adds a model found at run time (discovery mode).
    pub fn add(&self, slot: Arc<ModelSlot>) {
        self.models.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.entry(slot.name.clone()).or_insert_with(|| slot.clone());
            m
        });
    }

    /// Ready when every model serves a version (and there is at least one).
    pub fn not_serving(&self) -> Vec<String> {
        self.models
            .load()
            .values()
            .filter(|s| s.serving.load().is_none())
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Opens one version; the error says why it cannot serve.
pub fn open_version(slot: &ModelSlot, version: u64, dir: &Path) -> Result<ServedModel, String> {
    let path = dir.join("model.vtr");
    let art = Artifact::open(&path).map_err(|e| e.to_string())?;
    let engine = crate::ranker::EngineKind::parse(&slot.config.ranker_engine)?;
    let ranker = crate::ranker::Ranker::load(dir, &art, engine)
        .map_err(|e| format!("ranker bundle: {e}"))?;
    Ok(ServedModel::new(&slot.name, version, path, art).with_ranker(ranker))
}

/// Start-up: opens versions newest first (or the pinned one) until one
/// validates; records every attempt. A version that an earlier process's
/// gates rejected or an operator rolled back (and whose file has not changed
/// since) is passed over, and served only if no other version validates —
/// better an answer from it than none, and said loudly. A pin overrides
/// verdicts: the operator named the version.
fn load_newest(slot: &ModelSlot) {
    let mut passed_over = Vec::new();
    for (version, dir) in version_dirs(&slot.dir) {
        let fp = fingerprint(&dir.join("model.vtr"));
        if slot.config.pin.is_none()
            && let Some((state, recorded)) = recorded_verdict(&dir, fp)
        {
            slot.set_status(VersionStatus {
                version,
                state: state.into(),
                error: None,
                report: Some(recorded),
                fingerprint: fp,
            });
            passed_over.push((version, dir, fp, state));
            continue;
        }
        if slot.serving.load().is_some() || slot.config.pin.is_some_and(|p| p != version) {
            slot.set_status(VersionStatus {
                version,
                state: "ready".into(),
                error: None,
                report: None,
                fingerprint: None,
            });
            continue;
        }
        serve_at_start(slot, version, &dir, fp, None);
    }
    for (version, dir, fp, verdict) in passed_over {
        if slot.serving.load().is_some() {
            break;
        }
        let why =
            format!("serving despite the earlier verdict ({verdict}): no other version validates");
        serve_at_start(slot, version, &dir, fp, Some(why));
    }
    if slot.serving.load().is_none() {
        tracing::warn!(model = %slot.name, dir = %slot.dir.display(), "no valid version to serve");
    }
}

/// Opens `version` (whose model file has fingerprint `fp`) and serves it,
/// or records why it failed. `caveat` (logged as a warning, shown as the
/// version's `error`) says why serving it needs a second look.
fn serve_at_start(
    slot: &ModelSlot,
    version: u64,
    dir: &Path,
    fp: Option<(u64, SystemTime)>,
    caveat: Option<String>,
) {
    match open_version(slot, version, dir) {
        Ok(model) => {
            let meta = model.artifact.metadata();
            let (kind, dtype, items) = (meta.kind.name(), meta.dtype.name(), model.n_items());
            match &caveat {
                None => tracing::info!(model = %slot.name, version, kind, dtype, items, "serving"),
                Some(why) => {
                    tracing::warn!(model = %slot.name, version, kind, dtype, items, "{why}")
                }
            }
            slot.set_status(VersionStatus {
                version,
                state: "serving".into(),
                error: caveat,
                // A passed-over version keeps its recorded report.
                report: slot.status(version).and_then(|s| s.report),
                fingerprint: fp,
            });
            slot.promote(Arc::new(model), 0);
        }
        Err(e) => {
            tracing::warn!(model = %slot.name, version, error = %e, "version rejected");
            crate::metrics::reload(&slot.name, "failed");
            slot.set_status(VersionStatus {
                version,
                state: "failed".into(),
                error: Some(e),
                report: None,
                fingerprint: fp,
            });
        }
    }
}
