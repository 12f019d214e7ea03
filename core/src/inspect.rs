//! What `vitrine-inspect` reports about a file: header, sections with their
//! checksum status, metadata, and whether full validation passes. Works on
//! damaged files as far as their header allows.

use crate::artifact::header::decode_header;
use crate::artifact::{ArtifactBytes, section_checksums};
use crate::{Artifact, ArtifactError};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct SectionReport {
    pub kind: String,
    pub offset: u64,
    pub length: u64,
    pub checksum: String,
    pub checksum_ok: bool,
}

#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub file: String,
    pub size_bytes: u64,
    pub format_version: String,
    pub sections: Vec<SectionReport>,
    /// Present when the artifact validated.
    pub metadata: Option<crate::ModelMetadata>,
    pub valid: bool,
    /// The first problem found, when not valid.
    pub error: Option<String>,
    /// Kernels this machine would score with.
    pub kernels: String,
}

/// Inspects `path`. Errors only when not even the header can be read.
pub fn inspect(path: &Path) -> Result<InspectReport, ArtifactError> {
    let bytes = ArtifactBytes::snapshot(path).map_err(|e| ArtifactError::Io {
        path: path.into(),
        source: e,
    })?;
    let file = bytes.as_slice();
    let entries = decode_header(file)?;
    let sections = entries
        .iter()
        .zip(section_checksums(file, &entries))
        .map(|(e, (stored, computed))| SectionReport {
            kind: e.kind.name(),
            offset: e.offset,
            length: e.length,
            checksum: format!("{stored:#010x}"),
            checksum_ok: stored == computed,
        })
        .collect();
    let format_version = format!(
        "{}.{}",
        u16::from_le_bytes([file[8], file[9]]),
        u16::from_le_bytes([file[10], file[11]])
    );
    let size_bytes = file.len() as u64;
    let (metadata, error) = match Artifact::from_source(bytes) {
        Ok(art) => (Some(art.metadata().clone()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(InspectReport {
        file: path.display().to_string(),
        size_bytes,
        format_version,
        sections,
        valid: error.is_none(),
        metadata,
        error,
        kernels: crate::simd::kernels().describe(),
    })
}

impl InspectReport {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "file       {} ({} bytes)", self.file, self.size_bytes);
        let _ = writeln!(s, "format     v{}", self.format_version);
        if let Some(m) = &self.metadata {
            let shape = match m.kind {
                crate::ModelKind::Embedding => format!("{} dims of {}", m.dims, m.dtype.name()),
                crate::ModelKind::ItemNeighbors => "sparse item-item weights".into(),
            };
            let _ = writeln!(
                s,
                "model      {} — {}, {shape}, {} users × {} items",
                m.name,
                m.kind.name(),
                m.n_users,
                m.n_items
            );
            let _ = writeln!(
                s,
                "algorithm  {} {}",
                m.algorithm,
                serde_json::Value::Object(m.params.clone())
            );
            if !m.trained_at.is_empty() {
                let _ = writeln!(s, "trained    {}", m.trained_at);
            }
            if !m.data_fingerprint.is_empty() {
                let _ = writeln!(s, "data       {}", m.data_fingerprint);
            }
            for (k, v) in &m.metrics {
                let _ = writeln!(s, "metric     {k} = {v:.4}");
            }
        }
        let _ = writeln!(
            s,
            "sections   {:<16} {:>12} {:>12}  checksum",
            "kind", "offset", "length"
        );
        for sec in &self.sections {
            let status = if sec.checksum_ok { "ok" } else { "MISMATCH" };
            let _ = writeln!(
                s,
                "           {:<16} {:>12} {:>12}  {} {status}",
                sec.kind, sec.offset, sec.length, sec.checksum
            );
        }
        match &self.error {
            None => {
                let _ = writeln!(
                    s,
                    "status     valid (scoring kernels here: {})",
                    self.kernels
                );
            }
            Some(e) => {
                let _ = writeln!(s, "status     INVALID: {e}");
            }
        }
        s
    }
}

/// The top `k` items for `user` straight from the artifact (seen items
/// excluded), as `(item id, score)`: a quick look at what a model
/// recommends, for people and scripts. The server is the real API.
pub fn recommend_for_user(
    art: &Artifact,
    user: &str,
    k: usize,
) -> Result<Vec<(String, f32)>, String> {
    use crate::scan::{ItemFilter, ItemScanner, top_k_neighbors};
    let users = art.user_ids().ok_or("this model has no user ids")?;
    let u = users
        .index_of(user)
        .ok_or_else(|| format!("unknown user {user:?}"))? as usize;
    let seen = art.seen_items();
    let mut filter = ItemFilter::new();
    if let Some(seen) = &seen {
        filter = filter.exclude_sorted(seen.row(u));
    }
    let top = match art.metadata().kind {
        crate::ModelKind::Embedding => {
            let factors = art
                .user_factors()
                .ok_or("embedding model without user factors")?;
            let scanner = ItemScanner::new(
                art.item_factors()
                    .ok_or("embedding model without item factors")?,
                art.item_bias_padded(),
            );
            let mut q = vec![0.0; factors.padded_dims];
            factors.row_f32(u, &mut q);
            let offset = art.user_bias().map_or(0.0, |b| b[u]) + art.metadata().global_bias;
            scanner.top_k(&scanner.prepare(&q, offset), k, |i| filter.accepts(i))
        }
        crate::ModelKind::ItemNeighbors => {
            let history = seen
                .as_ref()
                .map(|s| s.row(u))
                .ok_or("item-neighbour model without seen items")?;
            top_k_neighbors(
                &art.item_neighbors().ok_or("missing item neighbours")?,
                history,
                None,
                k,
                |i| filter.accepts(i),
            )
        }
    };
    let ids = art.item_ids();
    Ok(top
        .into_iter()
        .map(|s| (ids.id(s.item as usize).to_string(), s.score))
        .collect())
}
