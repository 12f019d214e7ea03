//! Catalogue pruning: drop items (sold out, discontinued, inactive) from
//! every section at once, so ids and indices stay consistent everywhere —
//! item ids, item factors and biases, neighbour rows *and* columns, seen
//! items, popularity, attributes and the holdout.

use std::collections::HashSet;
use vitrine_core::artifact::ModelParts;
use vitrine_core::csr::CsrParts;
use vitrine_core::dataset::Interactions;

/// Which items to keep, by index; built from an allow-list or activity.
#[derive(Debug)]
pub struct Keep {
    pub keep: Vec<bool>,
    /// Allow-list ids the model does not know (reported, not an error:
    /// a new product has no factors yet).
    pub unknown_ids: usize,
}

/// Keeps the model's items named in `allowed`.
pub fn keep_listed(parts: &ModelParts, allowed: &[String]) -> Keep {
    let set: HashSet<&str> = allowed.iter().map(String::as_str).collect();
    let model: HashSet<&str> = parts.item_ids.iter().map(String::as_str).collect();
    Keep {
        keep: parts
            .item_ids
            .iter()
            .map(|id| set.contains(id.as_str()))
            .collect(),
        unknown_ids: set.iter().filter(|id| !model.contains(*id)).count(),
    }
}

/// Keeps items with at least one interaction at or after `since` (Unix
/// seconds) in `log`; items absent from the log count as inactive.
pub fn keep_active(parts: &ModelParts, log: &Interactions, since: i64) -> Result<Keep, String> {
    let times = log
        .timestamps
        .as_ref()
        .ok_or("the interaction log has no timestamps (needed for --inactive-since)")?;
    let mut active: HashSet<&str> = HashSet::new();
    for (k, &t) in times.iter().enumerate() {
        if t >= since {
            active.insert(log.item_ids[log.items[k] as usize].as_str());
        }
    }
    Ok(Keep {
        keep: parts
            .item_ids
            .iter()
            .map(|id| active.contains(id.as_str()))
            .collect(),
        unknown_ids: 0,
    })
}

/// The model restricted to the kept items.
pub fn prune(parts: &ModelParts, keep: &[bool]) -> Result<ModelParts, String> {
    assert_eq!(keep.len(), parts.item_ids.len());
    let kept = keep.iter().filter(|&&k| k).count();
    if kept == 0 {
        return Err("catalogue pruning would drop every item".into());
    }
    // Old index → new index.
    let mut new_index = vec![u32::MAX; keep.len()];
    let mut next = 0u32;
    for (i, &k) in keep.iter().enumerate() {
        if k {
            new_index[i] = next;
            next += 1;
        }
    }
    let pick = |v: &[f32], width: usize| -> Vec<f32> {
        v.chunks_exact(width)
            .zip(keep)
            .filter(|(_, k)| **k)
            .flat_map(|(row, _)| row.iter().copied())
            .collect()
    };
    // Columns remapped, dropped columns removed; rows optionally filtered.
    let remap = |m: &CsrParts, filter_rows: bool| -> CsrParts {
        let rows = (0..m.rows())
            .filter(|&r| !filter_rows || keep[r])
            .map(|r| {
                (m.indptr[r] as usize..m.indptr[r + 1] as usize)
                    .filter(|&k| keep[m.indices[k] as usize])
                    .map(|k| {
                        (
                            new_index[m.indices[k] as usize],
                            m.weights.as_ref().map_or(1.0, |w| w[k]),
                        )
                    })
                    .collect()
            })
            .collect();
        CsrParts::from_rows(rows, m.weights.is_some())
    };
    let mut out = parts.clone();
    out.item_ids = parts
        .item_ids
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(id, _)| id.clone())
        .collect();
    if let Some(f) = out.factors.as_mut() {
        f.items = pick(&f.items, f.dims);
        f.item_bias = f.item_bias.as_ref().map(|b| pick(b, 1));
    }
    out.neighbors = parts.neighbors.as_ref().map(|m| remap(m, true));
    out.seen_items = parts.seen_items.as_ref().map(|m| remap(m, false));
    out.holdout = parts.holdout.as_ref().map(|m| remap(m, false));
    out.item_popularity = parts.item_popularity.as_ref().map(|p| pick(p, 1));
    if let Some(a) = out.attributes.as_mut() {
        let rows = (0..a.items.rows())
            .filter(|&r| keep[r])
            .map(|r| {
                (a.items.indptr[r] as usize..a.items.indptr[r + 1] as usize)
                    .map(|k| {
                        let w = a.items.weights.as_ref().map_or(1.0, |w| w[k]);
                        (a.items.indices[k], w)
                    })
                    .collect()
            })
            .collect();
        a.items = CsrParts::from_rows(rows, a.items.weights.is_some());
    }
    Ok(out)
}
