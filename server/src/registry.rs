//! The models the server knows and the version each one serves.
//!
//! A model is a directory `models_dir/<name>/` of integer-named version
//! directories holding `model.vtr`. At start-up each model serves the newest
//! version that opens and validates; versions that fail are recorded with
//! the reason (shown by `GET /v1/models/{model}`). The serving version sits
//! behind an `ArcSwapOption`: a request takes one `Arc` for its whole life,
//! so swapping versions (issue 6's lifecycle) never tears a request.
//!
//! Model names come from the configuration or from directory names checked
//! by [`crate::config::valid_model_name`]; a name from a URL is only ever
//! looked up in this map, never joined into a path.

use crate::config::{Config, ModelConfig, valid_model_name};
use crate::model::ServedModel;
use arc_swap::ArcSwapOption;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vitrine_core::Artifact;

/// What happened to one version directory.
#[derive(Clone, Debug, Serialize)]
pub struct VersionStatus {
    pub version: u64,
    /// `serving`, `ready` (loadable, not serving) or `failed`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct ModelSlot {
    pub name: String,
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub serving: ArcSwapOption<ServedModel>,
    pub versions: Mutex<Vec<VersionStatus>>,
}

impl ModelSlot {
    pub fn current(&self) -> Option<Arc<ServedModel>> {
        self.serving.load_full()
    }
}

#[derive(Debug)]
pub struct Registry {
    pub models: BTreeMap<String, Arc<ModelSlot>>,
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

impl Registry {
    /// Builds the registry and loads the newest valid version of each model.
    pub fn load(config: &Config) -> Self {
        let names: Vec<String> = if config.models.is_empty() {
            std::fs::read_dir(&config.models_dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| valid_model_name(n))
                .collect()
        } else {
            config.models.keys().cloned().collect()
        };
        let mut models = BTreeMap::new();
        for name in names {
            let slot = Arc::new(ModelSlot {
                dir: config.models_dir.join(&name),
                config: config.model(&name),
                name: name.clone(),
                serving: ArcSwapOption::empty(),
                versions: Mutex::new(Vec::new()),
            });
            load_newest(&slot);
            models.insert(name, slot);
        }
        Self { models }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ModelSlot>> {
        self.models.get(name)
    }

    /// Ready when every model serves a version (and there is at least one).
    pub fn not_serving(&self) -> Vec<&str> {
        self.models
            .values()
            .filter(|s| s.serving.load().is_none())
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// Opens versions newest first until one validates; records every attempt.
fn load_newest(slot: &ModelSlot) {
    let mut statuses = Vec::new();
    for (version, dir) in version_dirs(&slot.dir) {
        if slot.serving.load().is_some() {
            statuses.push(VersionStatus {
                version,
                state: "ready".into(),
                error: None,
            });
            continue;
        }
        let path = dir.join("model.vtr");
        match Artifact::open(&path) {
            Ok(art) => {
                let model = ServedModel::new(&slot.name, version, path, art);
                tracing::info!(
                    model = %slot.name,
                    version,
                    kind = model.artifact.metadata().kind.name(),
                    dtype = model.artifact.metadata().dtype.name(),
                    items = model.n_items(),
                    "serving"
                );
                crate::metrics::model_info(&model, true);
                slot.serving.store(Some(Arc::new(model)));
                statuses.push(VersionStatus {
                    version,
                    state: "serving".into(),
                    error: None,
                });
            }
            Err(e) => {
                tracing::warn!(model = %slot.name, version, error = %e, "version rejected");
                crate::metrics::reload(&slot.name, "failed");
                statuses.push(VersionStatus {
                    version,
                    state: "failed".into(),
                    error: Some(e.to_string()),
                });
            }
        }
    }
    if slot.serving.load().is_none() {
        tracing::warn!(model = %slot.name, dir = %slot.dir.display(), "no valid version to serve");
    }
    *slot.versions.lock().expect("status lock") = statuses;
}
