//! Configuration: built-in defaults < `--config FILE` (TOML) < environment
//! (`VITRINE_<KEY>` for top-level keys, `VITRINE_<SECTION>_<KEY>` inside
//! `[limits]` and `[defaults]`) < command-line flags. `configs/vitrine.toml`
//! documents every key.
//!
//! Layering works on the TOML value tree: the defaults are serialised, each
//! layer overrides leaves, and the result is deserialised once — so an
//! unknown key or a wrong type is an error naming the key and the layer.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Directory holding `<model>/<version>/model.vtr`.
    pub models_dir: PathBuf,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Log level filter: error, warn, info, debug, trace.
    pub log_level: String,
    /// Bearer token for admin endpoints; empty = admin endpoints off.
    pub admin_token: String,
    /// Worker threads of the async runtime (0 = one per core).
    pub threads: usize,
    /// Batch concurrent hot-path recommend requests onto one scan.
    pub micro_batching: bool,
    pub limits: Limits,
    pub lifecycle: Lifecycle,
    /// Defaults for every model; `[models.<name>]` overrides them.
    pub defaults: ModelConfig,
    /// Models to serve. Empty: every directory under `models_dir` found at
    /// start-up.
    #[serde(default)]
    pub models: BTreeMap<String, ModelOverrides>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Time a client has to send the request headers.
    pub header_timeout_ms: u64,
    /// Time a client has to send the request body.
    pub body_timeout_ms: u64,
    /// Requests being handled at once; more get 503 with Retry-After.
    pub max_inflight: usize,
    /// Open connections; more are closed at accept.
    pub max_connections: usize,
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// Largest `recommend:batch` request count.
    pub max_batch: usize,
    /// Largest `history`, `exclude` or `items` list.
    pub max_list: usize,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish.
    pub drain_timeout_ms: u64,
}

/// Discovery, gates and promotion of new versions (`crate::lifecycle`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// Watch models_dir with inotify for new versions.
    pub watch: bool,
    /// Full rescan period (the safety net for missed events); 0 = never.
    pub rescan_interval_ms: u64,
    /// Quiet time after a filesystem event before scanning (a rename
    /// yields several events).
    pub debounce_ms: u64,
    /// Earlier versions kept loaded for instant rollback.
    pub keep_versions: usize,
    /// Queries run on a candidate before it sees traffic.
    pub warmup_queries: usize,
    /// K of the offline gate's NDCG@K and Recall@K.
    pub offline_k: usize,
    /// Holdout users evaluated per holdout (an evenly spaced sample).
    pub offline_max_users: usize,
    /// The candidate passes if its NDCG@K and Recall@K are each at least
    /// the serving version's minus this (absolute).
    pub offline_tolerance: f64,
    /// Share of live recommend requests mirrored to a candidate (0 turns
    /// the online gate off).
    pub online_fraction: f64,
    /// Mirrored requests needed for an online verdict.
    pub online_min_samples: usize,
    /// Longest online shadow; with fewer samples by then the offline gate
    /// decides alone (and the report says so).
    pub online_max_duration_ms: u64,
    /// Lowest mean top-K overlap with the serving version.
    pub online_min_overlap: f64,
    /// Highest share of mirrored requests the candidate may fail while the
    /// serving version answers them.
    pub online_max_error_rate: f64,
    /// Highest candidate p99 / serving p99 on the mirrored requests.
    pub online_max_p99_ratio: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `k` when a request does not say.
    pub k: usize,
    /// Largest `k` for this model (capped by limits.max_k).
    pub max_k: usize,
    /// Unknown user without history: `popular` (answer from popularity,
    /// `"fallback": "popular"`) or `error` (404).
    pub fallback: String,
    /// Filter keys requests may use (`category`, `brand`, `tags`, …).
    pub filters: Vec<String>,
    /// Exclude the user's seen items unless the request says otherwise.
    pub exclude_seen: bool,
    /// Serve exactly this version (no automatic promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<u64>,
    /// Reject versions of another kind (`embedding`, `item_neighbors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Reject embedding versions with other dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<usize>,
    /// Engine for a version's ranker.onnx: `tract` or `ort` (needs the
    /// `ort` cargo feature and ORT_DYLIB_PATH).
    pub ranker_engine: String,
}

/// Per-model overrides of [`ModelConfig`]; unset keys inherit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    pub k: Option<usize>,
    pub max_k: Option<usize>,
    pub fallback: Option<String>,
    pub filters: Option<Vec<String>>,
    pub exclude_seen: Option<bool>,
    pub pin: Option<u64>,
    pub kind: Option<String>,
    pub dims: Option<usize>,
    pub ranker_engine: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            models_dir: "models".into(),
            log_format: "text".into(),
            log_level: "info".into(),
            admin_token: String::new(),
            threads: 0,
            micro_batching: true,
            limits: Limits {
                max_body_bytes: 1 << 20,
                header_timeout_ms: 5_000,
                body_timeout_ms: 10_000,
                max_inflight: 1024,
                max_connections: 10_000,
                max_k: 1000,
                max_batch: 256,
                max_list: 10_000,
                drain_timeout_ms: 10_000,
            },
            lifecycle: Lifecycle {
                watch: true,
                rescan_interval_ms: 5_000,
                debounce_ms: 200,
                keep_versions: 2,
                warmup_queries: 100,
                offline_k: 10,
                offline_max_users: 1000,
                offline_tolerance: 0.005,
                online_fraction: 0.05,
                online_min_samples: 200,
                online_max_duration_ms: 30_000,
                online_min_overlap: 0.1,
                online_max_error_rate: 0.01,
                online_max_p99_ratio: 2.0,
            },
            defaults: ModelConfig {
                k: 10,
                max_k: 1000,
                fallback: "popular".into(),
                filters: vec!["category".into(), "brand".into(), "tags".into()],
                exclude_seen: true,
                pin: None,
                kind: None,
                dims: None,
                ranker_engine: "tract".into(),
            },
            models: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The settings of one model: defaults overridden by its table.
    pub fn model(&self, name: &str) -> ModelConfig {
        let mut m = self.defaults.clone();
        if let Some(o) = self.models.get(name) {
            if let Some(v) = o.k {
                m.k = v;
            }
            if let Some(v) = o.max_k {
                m.max_k = v;
            }
            if let Some(v) = &o.fallback {
                m.fallback = v.clone();
            }
            if let Some(v) = &o.filters {
                m.filters = v.clone();
            }
            if let Some(v) = o.exclude_seen {
                m.exclude_seen = v;
            }
            m.pin = o.pin.or(m.pin);
            m.kind = o.kind.clone().or(m.kind);
            m.dims = o.dims.or(m.dims);
            if let Some(v) = &o.ranker_engine {
                m.ranker_engine = v.clone();
            }
        }
        m.max_k = m.max_k.min(self.limits.max_k);
        m
    }

    fn check(&self) -> Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("listen = {:?} is not ADDRESS:PORT", self.listen))?;
        if !["text", "json"].contains(&self.log_format.as_str()) {
            bail!(
                "log_format = {:?}: use \"text\" or \"json\"",
                self.log_format
            );
        }
        for name in std::iter::once("defaults").chain(self.models.keys().map(String::as_str)) {
            let m = if name == "defaults" {
                self.defaults.clone()
            } else {
                self.model(name)
            };
            if !["popular", "error"].contains(&m.fallback.as_str()) {
                bail!(
                    "[{name}] fallback = {:?}: use \"popular\" or \"error\"",
                    m.fallback
                );
            }
            crate::ranker::EngineKind::parse(&m.ranker_engine)
                .map_err(|e| anyhow::anyhow!("[{name}] {e}"))?;
            if m.k == 0 || m.k > m.max_k {
                bail!("[{name}] k = {}: need 1 ≤ k ≤ max_k ({})", m.k, m.max_k);
            }
        }
        for name in self.models.keys() {
            if !valid_model_name(name) {
                bail!(
                    "[models.{name}]: model names are letters, digits, '-', '_' and '.', not starting with '.'"
                );
            }
        }
        let lc = &self.lifecycle;
        for (key, v) in [
            ("online_fraction", lc.online_fraction),
            ("online_min_overlap", lc.online_min_overlap),
            ("online_max_error_rate", lc.online_max_error_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("[lifecycle] {key} = {v}: need a value between 0 and 1");
            }
        }
        if !(lc.offline_tolerance >= 0.0 && lc.online_max_p99_ratio > 0.0) {
            bail!("[lifecycle] offline_tolerance must be ≥ 0 and online_max_p99_ratio > 0");
        }
        let l = &self.limits;
        for (key, v) in [
            ("max_body_bytes", l.max_body_bytes),
            ("max_inflight", l.max_inflight),
            ("max_connections", l.max_connections),
            ("max_k", l.max_k),
            ("max_batch", l.max_batch),
            ("max_list", l.max_list),
        ] {
            if v == 0 {
                bail!("[limits] {key} must be positive");
            }
        }
        Ok(())
    }
}

/// Model names usable as directory names and in URLs.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Flag values that override everything else.
#[derive(Clone, Debug, Default)]
pub struct FlagOverrides {
    pub listen: Option<String>,
    pub models_dir: Option<PathBuf>,
}

/// Builds the configuration from all layers.
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &FlagOverrides,
) -> Result<Config> {
    let mut tree = toml::Value::try_from(Config::default()).context("serialising defaults")?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let layer: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        merge(&mut tree, layer);
        // Validate the file on its own terms first, so that its errors
        // name the file.
        tree.clone()
            .try_into::<Config>()
            .with_context(|| format!("{}", path.display()))?;
    }
    apply_env(&mut tree, env)?;
    let mut config: Config = tree.try_into().context("configuration")?;
    if let Some(v) = &flags.listen {
        config.listen = v.clone();
    }
    if let Some(v) = &flags.models_dir {
        config.models_dir = v.clone();
    }
    config.check()?;
    Ok(config)
}

fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(b), toml::Value::Table(l)) => {
            for (k, v) in l {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Overrides scalar and list leaves of the top level, `[limits]` and
/// `[defaults]` from `VITRINE_…` variables, parsed as the leaf's type
/// (lists: comma-separated).
fn apply_env(tree: &mut toml::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let toml::Value::Table(top) = tree else {
        return Ok(());
    };
    for (key, value) in top.iter_mut() {
        match value {
            toml::Value::Table(section)
                if ["limits", "defaults", "lifecycle"].contains(&key.as_str()) =>
            {
                for (inner, leaf) in section.iter_mut() {
                    let name = format!("VITRINE_{}_{}", key.to_uppercase(), inner.to_uppercase());
                    if let Some(text) = env(&name) {
                        *leaf =
                            parse_like(leaf, &text).with_context(|| format!("{name}={text:?}"))?;
                    }
                }
            }
            toml::Value::Table(_) => {}
            leaf => {
                let name = format!("VITRINE_{}", key.to_uppercase());
                if let Some(text) = env(&name) {
                    *leaf = parse_like(leaf, &text).with_context(|| format!("{name}={text:?}"))?;
                }
            }
        }
    }
    Ok(())
}

fn parse_like(like: &toml::Value, text: &str) -> Result<toml::Value> {
    Ok(match like {
        toml::Value::Integer(_) => toml::Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("not an integer"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match text.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => bail!("not true/false"),
        }),
        toml::Value::Array(_) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        ),
        _ => toml::Value::String(text.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\n[limits]\nmax_k = 50\n[models.shop]\nk = 20\nfilters = [\"category\"]\n",
        )
        .unwrap();
        let c = load(Some(&file), &no_env, &FlagOverrides::default()).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.limits.max_k, 50);
        assert_eq!(c.limits.max_batch, 256);
        let shop = c.model("shop");
        assert_eq!((shop.k, shop.max_k, shop.filters.len()), (20, 50, 1));
        let env = |k: &str| match k {
            "VITRINE_LISTEN" => Some("127.0.0.1:7000".to_string()),
            "VITRINE_LIMITS_MAX_K" => Some("30".to_string()),
            "VITRINE_DEFAULTS_FILTERS" => Some("category, tags".to_string()),
            _ => None,
        };
        let c = load(Some(&file), &env, &FlagOverrides::default()).unwrap();
        assert_eq!((c.listen.as_str(), c.limits.max_k), ("127.0.0.1:7000", 30));
        assert_eq!(c.defaults.filters, vec!["category", "tags"]);
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:7001".into()),
            models_dir: Some("/srv/models".into()),
        };
        let c = load(Some(&file), &env, &flags).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7001");
        assert_eq!(c.models_dir, PathBuf::from("/srv/models"));
    }

    /// configs/vitrine.toml documents every key with its default value.
    #[test]
    fn the_shipped_config_file_lists_every_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/vitrine.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let file: toml::Value = toml::from_str(&text).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        // Same keys and values (the models table aside, empty by default).
        let strip = |v: &toml::Value| {
            let mut t = v.as_table().unwrap().clone();
            t.remove("models");
            t
        };
        assert_eq!(strip(&file), strip(&defaults));
        let loaded = load(Some(&path), &no_env, &FlagOverrides::default()).unwrap();
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn mistakes_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.toml");
        let err = |text: &str| {
            std::fs::write(&file, text).unwrap();
            format!(
                "{:#}",
                load(Some(&file), &no_env, &FlagOverrides::default()).unwrap_err()
            )
        };
        assert!(err("[limits]\nmax_kk = 3\n").contains("max_kk"));
        assert!(err("[limits]\nmax_k = \"many\"\n").contains("v.toml"));
        assert!(err("listen = \"nowhere\"\n").contains("listen"));
        assert!(err("[defaults]\nfallback = \"random\"\n").contains("fallback"));
        assert!(err("[models.\"../etc\"]\nk = 3\n").contains("model names"));
        assert!(err("listen = [\n").contains("v.toml"));
        assert!(err("[lifecycle]\nonline_fraction = 2.0\n").contains("online_fraction"));
        let env = |k: &str| (k == "VITRINE_LIMITS_MAX_K").then(|| "lots".to_string());
        let e = format!(
            "{:#}",
            load(None, &env, &FlagOverrides::default()).unwrap_err()
        );
        assert!(e.contains("VITRINE_LIMITS_MAX_K"), "{e}");
    }
}
