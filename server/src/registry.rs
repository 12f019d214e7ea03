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
/// validates; records every attempt.
fn load_newest(slot: &ModelSlot) {
    for (version, dir) in version_dirs(&slot.dir) {
        let fp = fingerprint(&dir.join("model.vtr"));
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
        match open_version(slot, version, &dir) {
            Ok(model) => {
                tracing::info!(
                    model = %slot.name,
                    version,
                    kind = model.artifact.metadata().kind.name(),
                    dtype = model.artifact.metadata().dtype.name(),
                    items = model.n_items(),
                    "serving"
                );
                slot.set_status(VersionStatus {
                    version,
                    state: "serving".into(),
                    error: None,
                    report: None,
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
    if slot.serving.load().is_none() {
        tracing::warn!(model = %slot.name, dir = %slot.dir.display(), "no valid version to serve");
    }
}
