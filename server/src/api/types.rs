//! Request and response bodies (JSON), and the error body every failure
//! uses: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A filter value: one string or a list (all required).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum FilterValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    pub user: Option<String>,
    pub k: Option<u64>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub filter: BTreeMap<String, FilterValue>,
    #[serde(default)]
    pub history: Vec<String>,
    /// Exclude the user's seen items and the session's items (default from
    /// the model's config, normally true).
    pub exclude_seen: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarRequest {
    pub item: String,
    pub k: Option<u64>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub filter: BTreeMap<String, FilterValue>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    pub user: Option<String>,
    #[serde(default)]
    pub history: Vec<String>,
    pub items: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub requests: Vec<RecommendRequest>,
}

#[derive(Debug, Serialize)]
pub struct ScoredId<'a> {
    pub id: &'a str,
    pub score: f32,
}

#[derive(Debug, Serialize)]
pub struct ItemsResponse<'a> {
    pub model: &'a str,
    pub version: u64,
    pub items: Vec<ScoredId<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// One `recommend:batch` result: an answer or an error, serialised
/// directly (scores keep their f32 text, as in single answers).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchResult<'a> {
    Items(ItemsResponse<'a>),
    Error { error: ErrorBody<'a>, status: u16 },
}

#[derive(Debug, Serialize)]
pub struct BatchResponse<'a> {
    pub model: &'a str,
    pub version: u64,
    pub results: Vec<BatchResult<'a>>,
}
