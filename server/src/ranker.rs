//! The second stage: an ONNX model that re-ranks retrieved candidates.
//!
//! A version directory may hold `bundle.toml` next to `model.vtr`:
//!
//! ```toml
//! [ranker]
//! file = "ranker.onnx"      # default
//! candidates = 200          # N retrieved per request, then re-ranked to k
//! input = "features"        # ONNX input name: float32 [N, F]
//! output = "score"          # ONNX output name: float32 [N] or [N, 1]
//! features = ["retrieval_score", "item_popularity", "user_activity",
//!             "attribute:category=c3", "user_factors", "item_factors"]
//! ```
//!
//! Features, in order, one column each except the factor blocks (`dims`
//! columns each): the first stage's score, the item's popularity, the
//! user's activity (items seen, or the session's length), 1/0 for an item
//! attribute, the user's vector (stored, or folded in for a session) and the
//! item's vector. Everything is checked when the version loads — file,
//! names, shapes, attribute names — and a mismatch rejects the version.
//! Inference runs with tract (pure Rust): one batched run per request,
//! [N, F] in, [N] out; each request writes its features into its own
//! buffer (a shared one serialised ranked requests across cores), which
//! becomes the input tensor without a copy.

use serde::Deserialize;
use std::path::Path;
use tract_onnx::prelude::*;
use vitrine_core::{Artifact, ModelKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    ranker: RankerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RankerSpec {
    #[serde(default = "default_file")]
    file: String,
    #[serde(default = "default_candidates")]
    candidates: usize,
    #[serde(default = "default_input")]
    input: String,
    #[serde(default = "default_output")]
    output: String,
    features: Vec<String>,
}

fn default_file() -> String {
    "ranker.onnx".into()
}
fn default_candidates() -> usize {
    200
}
fn default_input() -> String {
    "features".into()
}
fn default_output() -> String {
    "score".into()
}

/// One feature block.
#[derive(Clone, Debug, PartialEq)]
pub enum Feature {
    RetrievalScore,
    ItemPopularity,
    UserActivity,
    Attribute(u32),
    UserFactors,
    ItemFactors,
}

type Plan = std::sync::Arc<TypedSimplePlan>;

/// Which inference engine runs the ranker (`ranker_engine` in the server
/// configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// tract-onnx, pure Rust, always built.
    Tract,
    /// ONNX Runtime loaded at run time from `ORT_DYLIB_PATH` (cargo feature
    /// `ort`).
    Ort,
}

impl EngineKind {
    /// The configuration value (`tract`, `ort`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::Ort => "ort",
        }
    }

    /// Parses the configuration value; `ort` needs a build with the feature.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "tract" => Ok(Self::Tract),
            "ort" if cfg!(feature = "ort") => Ok(Self::Ort),
            "ort" => Err(
                "ranker_engine = \"ort\": this binary was built without ONNX Runtime; rebuild with `--features ort`"
                    .into(),
            ),
            other => Err(format!(
                "ranker_engine = {other:?}: use \"tract\" or \"ort\""
            )),
        }
    }
}

/// A loaded model in one of the engines.
enum Engine {
    Tract(Plan),
    #[cfg(feature = "ort")]
    Ort(ort_engine::OrtRanker),
}

pub struct Ranker {
    pub features: Vec<Feature>,
    pub width: usize,
    pub candidates: usize,
    pub names: Vec<String>,
    pub engine: EngineKind,
    plan: Engine,
}

impl std::fmt::Debug for Ranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranker")
            .field("features", &self.names)
            .field("width", &self.width)
            .field("candidates", &self.candidates)
            .field("engine", &self.engine)
            .finish()
    }
}

/// What the ranker sees of the user.
#[derive(Debug)]
pub struct UserContext<'a> {
    pub activity: f32,
    /// Stored or folded-in user vector (`dims` long), if the model has one.
    pub vector: Option<&'a [f32]>,
}

impl Ranker {
    /// Loads `dir/bundle.toml` (if present) for `art`; `Ok(None)` without a
    /// bundle.
    pub fn load(dir: &Path, art: &Artifact, engine: EngineKind) -> Result<Option<Self>, String> {
        let path = dir.join("bundle.toml");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("bundle.toml: {e}"))?;
        let spec: BundleFile = toml::from_str(&text).map_err(|e| format!("bundle.toml: {e}"))?;
        let spec = spec.ranker;
        if spec.candidates == 0 || spec.candidates > 10_000 {
            return Err(format!(
                "bundle.toml: candidates = {}: need 1..=10000",
                spec.candidates
            ));
        }
        if spec.file.contains('/') || spec.file.contains("..") {
            return Err(format!(
                "bundle.toml: file = {:?} must name a file in the version directory",
                spec.file
            ));
        }
        let meta = art.metadata();
        let dims = if meta.kind == ModelKind::Embedding {
            meta.dims
        } else {
            0
        };
        let mut features = Vec::new();
        let mut width = 0;
        for name in &spec.features {
            let f = match name.as_str() {
                "retrieval_score" => Feature::RetrievalScore,
                "item_popularity" => Feature::ItemPopularity,
                "user_activity" => Feature::UserActivity,
                "user_factors" | "item_factors" if dims == 0 => {
                    return Err(format!(
                        "bundle.toml: feature {name:?} needs an embedding model"
                    ));
                }
                "user_factors" => Feature::UserFactors,
                "item_factors" => Feature::ItemFactors,
                other => match other.strip_prefix("attribute:") {
                    Some(attr) => {
                        let idx = art
                            .attribute_names()
                            .and_then(|t| t.index_of(attr))
                            .ok_or_else(|| {
                                format!("bundle.toml: the model has no item attribute {attr:?}")
                            })?;
                        Feature::Attribute(idx)
                    }
                    None => return Err(format!("bundle.toml: unknown feature {other:?}")),
                },
            };
            width += match f {
                Feature::UserFactors | Feature::ItemFactors => dims,
                _ => 1,
            };
            features.push(f);
        }
        if width == 0 {
            return Err("bundle.toml: no features".into());
        }
        let onnx_path = dir.join(&spec.file);
        let plan = match engine {
            EngineKind::Tract => Engine::Tract(
                load_plan(&onnx_path, &spec, width).map_err(|e| format!("{}: {e}", spec.file))?,
            ),
            #[cfg(feature = "ort")]
            EngineKind::Ort => Engine::Ort(
                ort_engine::OrtRanker::load(
                    &onnx_path,
                    &spec.input,
                    &spec.output,
                    spec.candidates,
                    width,
                )
                .map_err(|e| format!("{} (ONNX Runtime): {e}", spec.file))?,
            ),
            #[cfg(not(feature = "ort"))]
            EngineKind::Ort => return Err(EngineKind::parse("ort").unwrap_err()),
        };
        Ok(Some(Self {
            features,
            width,
            candidates: spec.candidates,
            names: spec.features,
            engine,
            plan,
        }))
    }

    /// Scores `items` (at most `candidates`): returns one score per item.
    pub fn score(
        &self,
        art: &Artifact,
        user: &UserContext<'_>,
        items: &[(u32, f32)],
    ) -> Result<Vec<f32>, String> {
        let n = self.candidates;
        let w = self.width;
        let mut buf = vec![0f32; n * w];
        let pop = art.item_popularity();
        let attrs = art.item_attributes();
        let item_factors = art.item_factors();
        let mut row = vec![0f32; item_factors.as_ref().map_or(0, |m| m.padded_dims)];
        for (r, &(item, score)) in items.iter().take(n).enumerate() {
            let out = &mut buf[r * w..(r + 1) * w];
            let mut c = 0;
            for f in &self.features {
                match f {
                    Feature::RetrievalScore => {
                        out[c] = score;
                        c += 1;
                    }
                    Feature::ItemPopularity => {
                        out[c] = pop.map_or(0.0, |p| p[item as usize]);
                        c += 1;
                    }
                    Feature::UserActivity => {
                        out[c] = user.activity;
                        c += 1;
                    }
                    Feature::Attribute(a) => {
                        out[c] = f32::from(u8::from(
                            attrs
                                .as_ref()
                                .is_some_and(|t| t.contains(item as usize, *a)),
                        ));
                        c += 1;
                    }
                    Feature::UserFactors => {
                        let d = art.metadata().dims;
                        if let Some(v) = user.vector {
                            out[c..c + d].copy_from_slice(&v[..d]);
                        }
                        c += d;
                    }
                    Feature::ItemFactors => {
                        let d = art.metadata().dims;
                        if let Some(m) = &item_factors {
                            m.row_f32(item as usize, &mut row);
                            out[c..c + d].copy_from_slice(&row[..d]);
                        }
                        c += d;
                    }
                }
            }
        }
        let take = items.len().min(n);
        let scores = match &self.plan {
            Engine::Tract(plan) => {
                let input: Tensor = tract_ndarray::Array2::from_shape_vec((n, w), buf)
                    .map_err(|e| e.to_string())?
                    .into();
                let out = plan
                    .run(tvec!(input.into()))
                    .map_err(|e| format!("ranker: {e}"))?;
                let view = out[0]
                    .to_plain_array_view::<f32>()
                    .map_err(|e| format!("ranker output: {e}"))?;
                view.iter().copied().take(take).collect::<Vec<f32>>()
            }
            #[cfg(feature = "ort")]
            Engine::Ort(session) => {
                let mut all = session.run(&buf)?;
                all.truncate(take);
                all
            }
        };
        if scores.iter().any(|s| !s.is_finite()) {
            return Err("ranker produced a non-finite score".into());
        }
        Ok(scores)
    }
}

/// Loads the ONNX file with the input fixed to [candidates, width] and
/// checks names and the output shape.
fn load_plan(path: &Path, spec: &RankerSpec, width: usize) -> TractResult<Plan> {
    let model = tract_onnx::onnx().model_for_path(path)?;
    let inputs = model.input_outlets()?.to_vec();
    let outputs = model.output_outlets()?.to_vec();
    if inputs.len() != 1 {
        anyhow::bail!(
            "the ranker must have exactly one input, it has {}",
            inputs.len()
        );
    }
    let in_name = model.node(inputs[0].node).name.clone();
    if in_name != spec.input {
        anyhow::bail!(
            "input is named {in_name:?}, bundle.toml says {:?}",
            spec.input
        );
    }
    let out_ix = outputs
        .iter()
        .position(|o| {
            model.node(o.node).name == spec.output
                || model.outlet_label(*o) == Some(spec.output.as_str())
        })
        .ok_or_else(|| {
            let names: Vec<String> = outputs
                .iter()
                .map(|o| model.node(o.node).name.clone())
                .collect();
            anyhow::anyhow!("no output named {:?} (outputs: {names:?})", spec.output)
        })?;
    let shape_error = |e: anyhow::Error| {
        let text = format!("{e:#}");
        if let Some(op) = text
            .split("Unimplemented(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
        {
            // E.g. TreeEnsembleRegressor (LightGBM/XGBoost exports).
            return anyhow::anyhow!(
                "tract does not implement the ONNX operator {op}; ranker_engine = \"ort\" runs the model on ONNX Runtime (docs/RANKER.md)"
            );
        }
        anyhow::anyhow!(
            "the model does not accept float32 [{}, {width}] (candidates × the {width} columns bundle.toml's features make): {e}",
            spec.candidates
        )
    };
    let mut model = model
        .with_input_fact(0, f32::fact([spec.candidates, width]).into())
        .map_err(shape_error)?;
    model.select_output_outlets(&[outputs[out_ix]])?;
    let typed = model.into_optimized().map_err(shape_error)?;
    let fact = typed.output_fact(0)?;
    let shape: Vec<usize> = fact
        .shape
        .as_concrete()
        .map(<[usize]>::to_vec)
        .ok_or_else(|| anyhow::anyhow!("output shape is not concrete"))?;
    let n = spec.candidates;
    if fact.datum_type != f32::datum_type() || !(shape == [n] || shape == [n, 1]) {
        anyhow::bail!(
            "output {:?} is {:?} {shape:?}; need float32 [{n}] or [{n}, 1] for input [{n}, {width}]",
            spec.output,
            fact.datum_type
        );
    }
    typed.into_runnable()
}

/// Runs an ONNX file on a `rows × cols` input through the same loading path
/// (tests and tools compare engines with it).
pub fn run_onnx(
    path: &Path,
    input: &str,
    output: &str,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<Vec<f32>, String> {
    let spec = RankerSpec {
        file: String::new(),
        candidates: rows,
        input: input.into(),
        output: output.into(),
        features: Vec::new(),
    };
    let plan = load_plan(path, &spec, cols).map_err(|e| e.to_string())?;
    let t = Tensor::from_shape(&[rows, cols], data).map_err(|e| e.to_string())?;
    let out = plan.run(tvec!(t.into())).map_err(|e| e.to_string())?;
    let view = out[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| e.to_string())?;
    Ok(view.iter().copied().collect())
}

/// The same computation on ONNX Runtime (cargo feature `ort`), loading the
/// library from `lib` (e.g. `$ORT_DYLIB_PATH`) if no ranker loaded it yet.
#[cfg(feature = "ort")]
pub fn run_onnx_ort(
    lib: &Path,
    path: &Path,
    input: &str,
    output: &str,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<Vec<f32>, String> {
    ort_engine::environment(Some(lib))?;
    let ranker = ort_engine::OrtRanker::load(path, input, output, rows, cols)?;
    ranker.run(data)
}

/// ONNX Runtime as a ranker engine: one process-wide environment, one
/// session per ranker, validated by a probe run at load.
#[cfg(feature = "ort")]
mod ort_engine {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

    /// The process's ONNX Runtime, loaded on first use from `lib` or else
    /// `$ORT_DYLIB_PATH`. The library can be loaded once per process, so a
    /// failure is remembered and reported to every later ranker.
    pub fn environment(
        lib: Option<&Path>,
    ) -> Result<&'static ort::environment::Environment, String> {
        ENVIRONMENT
            .get_or_init(|| {
                let lib = match lib {
                    Some(p) => p.to_path_buf(),
                    None => std::env::var_os("ORT_DYLIB_PATH")
                        .map(std::path::PathBuf::from)
                        .ok_or("ranker_engine = \"ort\" needs ORT_DYLIB_PATH (the path of libonnxruntime.so)")?,
                };
                ort::init_from(&lib)
                    .map_err(|e| format!("loading ONNX Runtime from {}: {e}", lib.display()))?
                    .with_name("vitrine")
                    .build()
                    .map_err(|e| format!("ONNX Runtime environment: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    pub struct OrtRanker {
        /// One session per core: `Session::run` takes `&mut self`, so one
        /// shared session made ranked requests on different cores wait
        /// for each other. A request takes the first free session.
        sessions: Vec<Mutex<ort::session::Session>>,
        next: AtomicUsize,
        input: String,
        output: String,
        rows: usize,
        cols: usize,
    }

    impl OrtRanker {
        /// Opens the model once per core the process may run on (one
        /// intra-op thread each: the server runs one request per core) and
        /// runs each session once on zeros, so that a wrong input or output
        /// name, type or shape rejects the version here, not at request
        /// time.
        pub fn load(
            path: &Path,
            input: &str,
            output: &str,
            rows: usize,
            cols: usize,
        ) -> Result<Self, String> {
            let env = environment(None)?;
            let open = || {
                ort::session::Session::builder(env)
                    .map_err(|e| e.to_string())?
                    .with_intra_threads(1)
                    .map_err(|e| e.to_string())?
                    .commit_from_file(path)
                    .map_err(|e| e.to_string())
            };
            let session = open()?;
            let inputs: Vec<String> = session
                .inputs()
                .iter()
                .map(|o| o.name().to_string())
                .collect();
            if inputs != [input] {
                return Err(format!(
                    "the model's inputs are {inputs:?}; bundle.toml says {input:?}"
                ));
            }
            if !session.outputs().iter().any(|o| o.name() == output) {
                let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
                return Err(format!("no output named {output:?} (outputs: {names:?})"));
            }
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut sessions = vec![Mutex::new(session)];
            for _ in 1..cores {
                sessions.push(Mutex::new(open()?));
            }
            let ranker = Self {
                sessions,
                next: AtomicUsize::new(0),
                input: input.into(),
                output: output.into(),
                rows,
                cols,
            };
            let zeros = vec![0.0; rows * cols];
            for session in &ranker.sessions {
                let mut session = session.lock().map_err(|_| "ranker session poisoned")?;
                ranker.infer(&mut session, &zeros).map_err(|e| {
                    format!("the model does not accept float32 [{rows}, {cols}] or give float32 [{rows}] or [{rows}, 1]: {e}")
                })?;
            }
            Ok(ranker)
        }

        /// Scores a row-major `rows × cols` input on the first free session
        /// (searching from a rotating start; waits on one only if all are
        /// busy, i.e. more concurrent requests than cores).
        pub fn run(&self, data: &[f32]) -> Result<Vec<f32>, String> {
            let n = self.sessions.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let free = (0..n).find_map(|k| self.sessions[(start + k) % n].try_lock().ok());
            let mut session = match free {
                Some(session) => session,
                None => self.sessions[start]
                    .lock()
                    .map_err(|_| "ranker session poisoned")?,
            };
            self.infer(&mut session, data)
        }

        fn infer(
            &self,
            session: &mut ort::session::Session,
            data: &[f32],
        ) -> Result<Vec<f32>, String> {
            let tensor = ort::value::TensorRef::from_array_view(([self.rows, self.cols], data))
                .map_err(|e| e.to_string())?;
            let outputs = session
                .run(ort::inputs![self.input.as_str() => tensor])
                .map_err(|e| format!("ranker: {e}"))?;
            let value = outputs
                .get(self.output.as_str())
                .ok_or_else(|| format!("no output {:?}", self.output))?;
            let (shape, scores) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            let dims: Vec<i64> = shape.iter().copied().collect();
            let n = self.rows as i64;
            if !(dims == [n] || dims == [n, 1]) {
                return Err(format!("output {:?} has shape {dims:?}", self.output));
            }
            Ok(scores.to_vec())
        }
    }
}
