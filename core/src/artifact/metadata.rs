use crate::matrix::ElementType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a model scores with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// score(u, i) = dot(user_u, item_i) + biases
    Embedding,
    /// score(u, i) = Σ_{j seen by u} w(j → i)
    ItemNeighbors,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Embedding => "embedding",
            ModelKind::ItemNeighbors => "item_neighbors",
        }
    }
}

/// The metadata section (JSON). Shape fields (`kind`, `dtype`, `dims`,
/// `n_users`, `n_items`) are written from the binary sections by the writer
/// and checked against them by the reader; the rest is descriptive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    pub kind: ModelKind,
    pub algorithm: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub dtype: ElementType,
    /// Factor dimensions (0 for item-neighbour models).
    pub dims: usize,
    pub n_users: usize,
    pub n_items: usize,
    /// Added to every score of an embedding model (e.g. the global mean
    /// rating of biased MF).
    #[serde(default)]
    pub global_bias: f32,
    /// Identifies the training data (e.g. a hash of the interaction log).
    #[serde(default)]
    pub data_fingerprint: String,
    /// RFC 3339 UTC time the model was trained.
    #[serde(default)]
    pub trained_at: String,
    /// Evaluation metrics from the trainer, keys like `"ndcg@10"`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Keys this version does not know are kept, not dropped.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ModelMetadata {
    /// Metadata with descriptive fields set; shape fields are filled in by
    /// [`super::ModelParts::encode`].
    pub fn new(name: impl Into<String>, algorithm: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ModelKind::Embedding,
            algorithm: algorithm.into(),
            params: Default::default(),
            dtype: ElementType::F32,
            dims: 0,
            n_users: 0,
            n_items: 0,
            global_bias: 0.0,
            data_fingerprint: String::new(),
            trained_at: String::new(),
            metrics: BTreeMap::new(),
            extra: Default::default(),
        }
    }
}
