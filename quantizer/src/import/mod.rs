//! The door for models trained elsewhere: factor matrices from NumPy files
//! (`implicit`, PyTorch) or Spark's Parquet layout become an f32 embedding
//! artifact that serves exactly what the source library ranks.

pub mod npy;
pub mod parquet;

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;
use vitrine_core::ElementType;
use vitrine_core::artifact::{FactorParts, ModelMetadata, ModelParts};

/// Reads an id file: one id per line, UTF-8; a final newline is optional.
pub fn read_ids(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read as UTF-8 text", path.display()))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.trim_end_matches('\r');
        if id.is_empty() {
            bail!("{}:{}: empty id", path.display(), n + 1);
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// Fails on the first id that appears twice, naming both positions.
pub fn check_unique(ids: &[String], what: &str) -> Result<()> {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(j) = first.insert(id, i) {
            bail!(
                "{what}: id {id:?} appears twice (line {} and line {})",
                j + 1,
                i + 1
            );
        }
    }
    Ok(())
}

/// One side of an imported model.
#[derive(Debug)]
pub struct Side {
    pub ids: Vec<String>,
    pub rows: usize,
    pub dims: usize,
    pub values: Vec<f32>,
}

/// Builds an f32 embedding model from both sides after checking that they
/// agree (row counts against ids, equal dimensions, unique ids).
pub fn embedding_from_sides(users: Side, items: Side, algorithm: &str) -> Result<ModelParts> {
    for (side, what) in [(&users, "users"), (&items, "items")] {
        if side.rows != side.ids.len() {
            bail!(
                "{what}: {} factor rows but {} ids",
                side.rows,
                side.ids.len()
            );
        }
        if side.rows == 0 || side.dims == 0 {
            bail!("{what}: no factors ({} × {})", side.rows, side.dims);
        }
        check_unique(&side.ids, what)?;
    }
    if users.dims != items.dims {
        bail!(
            "user factors have {} dimensions, item factors {}",
            users.dims,
            items.dims
        );
    }
    let mut meta = ModelMetadata::new("imported", algorithm);
    meta.trained_at = vitrine_train::protocol::rfc3339_now();
    Ok(ModelParts {
        metadata: meta,
        user_ids: Some(users.ids),
        item_ids: items.ids,
        factors: Some(FactorParts {
            dims: users.dims,
            dtype: ElementType::F32,
            users: users.values,
            items: items.values,
            user_bias: None,
            item_bias: None,
        }),
        neighbors: None,
        seen_items: None,
        item_popularity: None,
        attributes: None,
        holdout: None,
    })
}
