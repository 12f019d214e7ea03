//! The model artifact (`model.vtr`): writer, validating reader, typed views.
//!
//! Open = validate once: header, section table, every checksum, every value,
//! and the agreement between sections (docs/FORMAT.md, "Validation"). After
//! that the views hand out slices without further checks beyond Rust's bounds
//! checks, which cannot fail on a validated file.

mod bytes;
mod error;
pub mod header;
mod metadata;
pub mod section;

pub use bytes::{ArtifactBytes, Origin};
pub use error::ArtifactError;
pub use header::{FORMAT_MAJOR, FORMAT_MINOR, SectionEntry, SectionKind};
pub use metadata::{ModelKind, ModelMetadata};

use crate::csr::{Csr, CsrLayout, CsrParts, parse_csr};
use crate::ids::{IdTable, IdTableLayout, encode_id_table, parse_id_table};
use crate::matrix::{
    ElementType, MAX_ABS_VALUE, Matrix, MatrixLayout, encode_block_matrix, encode_row_matrix,
    in_range, parse_matrix,
};
use crate::simd::BLOCK;
use header::{ALIGN, SectionEntry as Entry, align_up, crc32, decode_header, encode_header};
use section::{Fixed, SectionBuilder, SectionCursor, cast};
use std::io::Write;
use std::ops::Range;
use std::path::Path;

/// Factor matrices of an embedding model, as f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct FactorParts {
    pub dims: usize,
    /// Element type to store (f32 is kept exactly; f16/int8 are quantised).
    pub dtype: ElementType,
    pub users: Vec<f32>,
    pub items: Vec<f32>,
    pub user_bias: Option<Vec<f32>>,
    pub item_bias: Option<Vec<f32>>,
}

/// Item attributes: names like `category=shoes`, and per item the sorted
/// indices of its attribute names.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeParts {
    pub names: Vec<String>,
    pub items: CsrParts,
}

/// Everything an artifact holds, owned, as the trainer and quantizer build it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelParts {
    pub metadata: ModelMetadata,
    pub user_ids: Option<Vec<String>>,
    pub item_ids: Vec<String>,
    /// Embedding models.
    pub factors: Option<FactorParts>,
    /// Item-neighbour models: row i = items similar to i, weighted.
    pub neighbors: Option<CsrParts>,
    pub seen_items: Option<CsrParts>,
    pub item_popularity: Option<Vec<f32>>,
    pub attributes: Option<AttributeParts>,
    pub holdout: Option<CsrParts>,
}

fn vector_section(values: &[f32], padded_len: usize) -> Vec<u8> {
    let mut padded = values.to_vec();
    padded.resize(padded_len, 0.0);
    let fixed = Fixed::default()
        .u64(values.len() as u64)
        .u64(padded_len as u64);
    SectionBuilder::new(&fixed.0).array(&padded).finish()
}

impl ModelParts {
    /// Encodes the artifact bytes. Fills the metadata's shape fields from the
    /// parts and rejects inconsistent or non-finite parts with a clear error.
    pub fn encode(&self) -> Result<Vec<u8>, ArtifactError> {
        let invalid = |m: String| ArtifactError::InvalidModel(m);
        let n_items = self.item_ids.len();
        let n_users = self.user_ids.as_ref().map_or(0, Vec::len);
        let mut meta = self.metadata.clone();
        meta.n_items = n_items;
        meta.n_users = n_users;
        let mut sections: Vec<(SectionKind, Vec<u8>)> = Vec::new();

        match (&self.factors, &self.neighbors) {
            (Some(f), None) => {
                meta.kind = ModelKind::Embedding;
                meta.dtype = f.dtype;
                meta.dims = f.dims;
                if self.user_ids.is_none() {
                    return Err(invalid("an embedding model needs user ids".into()));
                }
            }
            (None, Some(_)) => {
                meta.kind = ModelKind::ItemNeighbors;
                meta.dtype = ElementType::F32;
                meta.dims = 0;
            }
            _ => {
                return Err(invalid(
                    "a model has either factors or item neighbours, not both or neither".into(),
                ));
            }
        }
        if !in_range(meta.global_bias) {
            return Err(invalid(format!(
                "global bias is not finite or outside ±{MAX_ABS_VALUE}"
            )));
        }
        let json = serde_json::to_vec(&meta).map_err(|e| invalid(format!("metadata: {e}")))?;
        sections.push((
            SectionKind::Metadata,
            SectionBuilder::new(&Fixed::default().u64(json.len() as u64).0)
                .array(&json)
                .finish(),
        ));
        if let Some(ids) = &self.user_ids {
            sections.push((SectionKind::UserIds, encode_id_table(ids)?));
        }
        sections.push((SectionKind::ItemIds, encode_id_table(&self.item_ids)?));
        if let Some(f) = &self.factors {
            sections.push((
                SectionKind::UserFactors,
                encode_row_matrix(&f.users, n_users, f.dims, f.dtype)?,
            ));
            sections.push((
                SectionKind::ItemFactors,
                encode_block_matrix(&f.items, n_items, f.dims, f.dtype)?,
            ));
            let check = |v: &[f32], n: usize, what: &str| -> Result<(), ArtifactError> {
                if v.len() != n || v.iter().any(|x| !in_range(*x)) {
                    return Err(invalid(format!(
                        "{what}: need {n} finite values, got {}",
                        v.len()
                    )));
                }
                Ok(())
            };
            if let Some(b) = &f.user_bias {
                check(b, n_users, "user bias")?;
                sections.push((SectionKind::UserBias, vector_section(b, n_users)));
            }
            if let Some(b) = &f.item_bias {
                check(b, n_items, "item bias")?;
                sections.push((
                    SectionKind::ItemBias,
                    vector_section(b, n_items.div_ceil(BLOCK) * BLOCK),
                ));
            }
        }
        let rows_match = |csr: &CsrParts, rows: usize, what: &str| -> Result<(), ArtifactError> {
            if csr.rows() != rows {
                return Err(invalid(format!(
                    "{what} has {} rows, expected {rows}",
                    csr.rows()
                )));
            }
            Ok(())
        };
        if let Some(n) = &self.neighbors {
            rows_match(n, n_items, "item neighbours")?;
            sections.push((SectionKind::ItemNeighbors, n.encode(n_items)?));
        }
        if let Some(s) = &self.seen_items {
            rows_match(s, n_users, "seen items")?;
            sections.push((SectionKind::SeenItems, s.encode(n_items)?));
        }
        if let Some(p) = &self.item_popularity {
            if p.len() != n_items || p.iter().any(|x| !x.is_finite()) {
                return Err(invalid(format!(
                    "item popularity: need {n_items} finite values"
                )));
            }
            sections.push((SectionKind::ItemPopularity, vector_section(p, n_items)));
        }
        if let Some(a) = &self.attributes {
            rows_match(&a.items, n_items, "item attributes")?;
            sections.push((SectionKind::AttributeNames, encode_id_table(&a.names)?));
            sections.push((SectionKind::ItemAttributes, a.items.encode(a.names.len())?));
        }
        if let Some(h) = &self.holdout {
            rows_match(h, n_users, "holdout")?;
            sections.push((SectionKind::Holdout, h.encode(n_items)?));
        }
        Ok(assemble(&sections))
    }

    /// Encodes and writes to `path` atomically: a temporary file in the same
    /// directory, fsync, rename.
    pub fn write(&self, path: &Path) -> Result<(), ArtifactError> {
        let bytes = self.encode()?;
        write_atomically(path, &bytes).map_err(|e| ArtifactError::io(path, e))
    }
}

/// Lays sections out one after another at 64-byte boundaries behind the
/// header and table.
pub fn assemble(sections: &[(SectionKind, Vec<u8>)]) -> Vec<u8> {
    let table_end = header::HEADER_LEN + sections.len() * header::ENTRY_LEN;
    let mut entries = Vec::with_capacity(sections.len());
    let mut offset = align_up(table_end);
    for (kind, bytes) in sections {
        entries.push(Entry {
            kind: *kind,
            offset: offset as u64,
            length: bytes.len() as u64,
            checksum: crc32(bytes),
        });
        offset = align_up(offset + bytes.len());
    }
    let file_len = entries
        .last()
        .map_or(table_end as u64, |e| e.offset + e.length);
    let mut out = encode_header(&entries, file_len);
    for ((_, bytes), e) in sections.iter().zip(&entries) {
        out.resize(e.offset as usize, 0);
        out.extend_from_slice(bytes);
    }
    debug_assert_eq!(out.len() as u64, file_len);
    debug_assert_eq!(ALIGN, 64);
    out
}

/// Writes `bytes` to `path` so that readers see either the old file or the
/// whole new one: temporary file in the same directory, fsync, rename, fsync
/// of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("artifact");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where each section's validated contents are.
#[derive(Clone, Debug, Default)]
struct ModelLayout {
    user_ids: Option<IdTableLayout>,
    item_ids: Option<IdTableLayout>,
    user_factors: Option<MatrixLayout>,
    item_factors: Option<MatrixLayout>,
    user_bias: Option<Range<usize>>,
    item_bias: Option<Range<usize>>,
    neighbors: Option<CsrLayout>,
    seen_items: Option<CsrLayout>,
    item_popularity: Option<Range<usize>>,
    attribute_names: Option<IdTableLayout>,
    item_attributes: Option<CsrLayout>,
    holdout: Option<CsrLayout>,
}

/// An open, validated artifact.
#[derive(Debug)]
pub struct Artifact {
    bytes: ArtifactBytes,
    entries: Vec<SectionEntry>,
    metadata: ModelMetadata,
    layout: ModelLayout,
}

impl Artifact {
    /// Opens `path` as an immutable snapshot (safe against the file being
    /// truncated or overwritten later; see [`ArtifactBytes::snapshot`]) and
    /// validates it.
    pub fn open(path: &Path) -> Result<Self, ArtifactError> {
        let bytes = ArtifactBytes::snapshot(path).map_err(|e| ArtifactError::io(path, e))?;
        Self::from_source(bytes)
    }

    /// Opens by mapping the file itself (no copy) and validates it.
    ///
    /// # Safety
    /// As [`ArtifactBytes::map_in_place`]: the file must not be truncated or
    /// written while the artifact is open.
    #[allow(unsafe_code)]
    pub unsafe fn open_in_place(path: &Path) -> Result<Self, ArtifactError> {
        // SAFETY: passed up to the caller.
        let bytes =
            unsafe { ArtifactBytes::map_in_place(path) }.map_err(|e| ArtifactError::io(path, e))?;
        Self::from_source(bytes)
    }

    /// Validates artifact bytes held in memory (copied to aligned memory).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let bytes = ArtifactBytes::copy_of(bytes).map_err(|e| ArtifactError::io("<memory>", e))?;
        Self::from_source(bytes)
    }

    pub fn from_source(bytes: ArtifactBytes) -> Result<Self, ArtifactError> {
        let file = bytes.as_slice();
        let entries = decode_header(file)?;
        verify_checksums(file, &entries)?;
        let (metadata, layout) = parse_model(file, &entries)?;
        Ok(Self {
            bytes,
            entries,
            metadata,
            layout,
        })
    }

    fn file(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }
    pub fn sections(&self) -> &[SectionEntry] {
        &self.entries
    }
    pub fn origin(&self) -> Origin {
        self.bytes.origin()
    }
    pub fn size_bytes(&self) -> usize {
        self.file().len()
    }

    pub fn item_ids(&self) -> IdTable<'_> {
        IdTable::new(
            self.file(),
            self.layout
                .item_ids
                .as_ref()
                .expect("validated: item ids present"),
        )
    }
    pub fn user_ids(&self) -> Option<IdTable<'_>> {
        self.layout
            .user_ids
            .as_ref()
            .map(|l| IdTable::new(self.file(), l))
    }
    /// User factors, row layout.
    pub fn user_factors(&self) -> Option<Matrix<'_>> {
        self.layout
            .user_factors
            .as_ref()
            .map(|l| Matrix::new(self.file(), l, false))
    }
    /// Item factors, block layout.
    pub fn item_factors(&self) -> Option<Matrix<'_>> {
        self.layout
            .item_factors
            .as_ref()
            .map(|l| Matrix::new(self.file(), l, true))
    }
    pub fn user_bias(&self) -> Option<&[f32]> {
        self.layout.user_bias.clone().map(|r| cast(self.file(), r))
    }
    /// Item biases padded with zeros to a whole number of 16-item blocks.
    pub fn item_bias_padded(&self) -> Option<&[f32]> {
        self.layout.item_bias.clone().map(|r| cast(self.file(), r))
    }
    pub fn item_neighbors(&self) -> Option<Csr<'_>> {
        self.layout
            .neighbors
            .as_ref()
            .map(|l| Csr::new(self.file(), l))
    }
    pub fn seen_items(&self) -> Option<Csr<'_>> {
        self.layout
            .seen_items
            .as_ref()
            .map(|l| Csr::new(self.file(), l))
    }
    pub fn item_popularity(&self) -> Option<&[f32]> {
        self.layout
            .item_popularity
            .clone()
            .map(|r| cast(self.file(), r))
    }
    pub fn attribute_names(&self) -> Option<IdTable<'_>> {
        self.layout
            .attribute_names
            .as_ref()
            .map(|l| IdTable::new(self.file(), l))
    }
    pub fn item_attributes(&self) -> Option<Csr<'_>> {
        self.layout
            .item_attributes
            .as_ref()
            .map(|l| Csr::new(self.file(), l))
    }
    pub fn holdout(&self) -> Option<Csr<'_>> {
        self.layout
            .holdout
            .as_ref()
            .map(|l| Csr::new(self.file(), l))
    }
}

impl ModelParts {
    /// Reads an open artifact back into owned parts: the inverse of
    /// [`ModelParts::encode`] up to quantisation (f16/int8 factors come back
    /// as the f32 values they stand for, and `dtype` says what they were).
    /// Re-encoding the result with the same dtype reproduces every section.
    pub fn from_artifact(art: &Artifact) -> Self {
        let ids = |t: IdTable<'_>| t.iter().map(str::to_owned).collect::<Vec<_>>();
        let meta = art.metadata();
        let factors = match (art.user_factors(), art.item_factors()) {
            (Some(u), Some(v)) => {
                let dims = meta.dims;
                let dense = |m: &Matrix<'_>, rows: usize| {
                    let mut out = Vec::with_capacity(rows * dims);
                    let mut row = vec![0f32; crate::matrix::padded_dims(dims)];
                    for r in 0..rows {
                        m.row_f32(r, &mut row);
                        out.extend_from_slice(&row[..dims]);
                    }
                    out
                };
                Some(FactorParts {
                    dims,
                    dtype: meta.dtype,
                    users: dense(&u, meta.n_users),
                    items: dense(&v, meta.n_items),
                    user_bias: art.user_bias().map(<[f32]>::to_vec),
                    item_bias: art.item_bias_padded().map(|b| b[..meta.n_items].to_vec()),
                })
            }
            _ => None,
        };
        ModelParts {
            metadata: meta.clone(),
            user_ids: art.user_ids().map(ids),
            item_ids: ids(art.item_ids()),
            factors,
            neighbors: art.item_neighbors().map(|c| c.to_parts()),
            seen_items: art.seen_items().map(|c| c.to_parts()),
            item_popularity: art.item_popularity().map(<[f32]>::to_vec),
            attributes: art.attribute_names().and_then(|names| {
                art.item_attributes().map(|items| AttributeParts {
                    names: ids(names),
                    items: items.to_parts(),
                })
            }),
            holdout: art.holdout().map(|c| c.to_parts()),
        }
    }
}

/// Stored and computed checksum of every section, in table order (for tools
/// that report on damaged files too).
pub fn section_checksums(file: &[u8], entries: &[SectionEntry]) -> Vec<(u32, u32)> {
    entries
        .iter()
        .map(|e| {
            (
                e.checksum,
                crc32(&file[e.offset as usize..(e.offset + e.length) as usize]),
            )
        })
        .collect()
}

fn verify_checksums(file: &[u8], entries: &[SectionEntry]) -> Result<(), ArtifactError> {
    for (e, (stored, computed)) in entries.iter().zip(section_checksums(file, entries)) {
        if stored != computed {
            return Err(ArtifactError::SectionChecksum {
                section: e.kind.name(),
                offset: e.offset,
                stored,
                computed,
            });
        }
    }
    Ok(())
}

fn parse_vector(
    file: &[u8],
    mut cur: SectionCursor<'_>,
    len: usize,
    padded: usize,
    bounded: bool,
) -> Result<Range<usize>, ArtifactError> {
    let (n, p) = (cur.u64_at(0), cur.u64_at(8));
    cur.reserved_from(16)?;
    if n != len as u64 || p != padded as u64 {
        return Err(cur.error(
            0,
            format!("holds {n} values padded to {p}; expected {len} padded to {padded}"),
        ));
    }
    let r = cur.array::<f32>(p, "values")?;
    let v: &[f32] = cast(file, r.clone());
    let ok = |x: f32| if bounded { in_range(x) } else { x.is_finite() };
    if let Some(i) = v.iter().position(|x| !ok(*x)) {
        let limit = if bounded {
            format!(" or outside ±{MAX_ABS_VALUE}")
        } else {
            String::new()
        };
        return Err(cur.error_abs(
            r.start + 4 * i,
            format!("value #{i} ({}) is not finite{limit}", v[i]),
        ));
    }
    if let Some(i) = (len..padded).find(|&i| v[i] != 0.0) {
        return Err(cur.error_abs(r.start + 4 * i, "padding value is not zero"));
    }
    cur.finish()?;
    Ok(r)
}

fn parse_model(
    file: &[u8],
    entries: &[SectionEntry],
) -> Result<(ModelMetadata, ModelLayout), ArtifactError> {
    let find = |kind: SectionKind| entries.iter().find(|e| e.kind == kind).copied();
    let cursor = |e: Entry| SectionCursor::new(file, e);
    let missing = |section, why| ArtifactError::MissingSection { section, why };

    let meta_entry =
        find(SectionKind::Metadata).ok_or(missing("metadata", "every artifact has one"))?;
    let mut cur = cursor(meta_entry)?;
    let json_len = cur.u64_at(0);
    cur.reserved_from(8)?;
    let json_r = cur.array::<u8>(json_len, "JSON")?;
    cur.finish()?;
    let meta: ModelMetadata = serde_json::from_slice(&file[json_r]).map_err(|e| {
        ArtifactError::Metadata(format!("invalid JSON at offset {}: {e}", meta_entry.offset))
    })?;
    let meta_err = |m: String| Err(ArtifactError::Metadata(m));

    let mut l = ModelLayout::default();
    let item_ids = parse_id_table(
        file,
        cursor(find(SectionKind::ItemIds).ok_or(missing("item_ids", "every artifact has one"))?)?,
    )?;
    let n_items = item_ids.len();
    l.item_ids = Some(item_ids);
    if let Some(e) = find(SectionKind::UserIds) {
        l.user_ids = Some(parse_id_table(file, cursor(e)?)?);
    }
    let n_users = l.user_ids.as_ref().map_or(0, IdTableLayout::len);
    if meta.n_items != n_items || meta.n_users != n_users {
        return meta_err(format!(
            "says {} users and {} items; the id sections hold {n_users} and {n_items}",
            meta.n_users, meta.n_items
        ));
    }
    if !in_range(meta.global_bias) {
        return meta_err(format!(
            "global_bias is not finite or outside ±{MAX_ABS_VALUE}"
        ));
    }
    let present = |kind| find(kind).is_some();
    let csr =
        |kind: SectionKind, rows: usize, cols: usize| -> Result<Option<CsrLayout>, ArtifactError> {
            let Some(e) = find(kind) else { return Ok(None) };
            let layout = parse_csr(file, cursor(e)?)?;
            if layout.rows != rows || layout.cols != cols {
                return Err(cursor(e)?.error(
                    0,
                    format!(
                        "is {} × {}, expected {rows} × {cols}",
                        layout.rows, layout.cols
                    ),
                ));
            }
            Ok(Some(layout))
        };

    match meta.kind {
        ModelKind::Embedding => {
            if present(SectionKind::ItemNeighbors) {
                return meta_err("an embedding model must not hold item_neighbors".into());
            }
            if l.user_ids.is_none() {
                return Err(missing("user_ids", "embedding models need user ids"));
            }
            let ue = find(SectionKind::UserFactors)
                .ok_or(missing("user_factors", "embedding models need them"))?;
            let ie = find(SectionKind::ItemFactors)
                .ok_or(missing("item_factors", "embedding models need them"))?;
            let users = parse_matrix(file, cursor(ue)?, false)?;
            let items = parse_matrix(file, cursor(ie)?, true)?;
            if users.rows != n_users || items.rows != n_items {
                return meta_err(format!(
                    "factor rows ({} users, {} items) do not match the ids ({n_users}, {n_items})",
                    users.rows, items.rows
                ));
            }
            if users.dims != meta.dims
                || items.dims != meta.dims
                || users.dtype != meta.dtype
                || items.dtype != meta.dtype
            {
                return meta_err(format!(
                    "says {} dims of {}; user factors are {} × {}, item factors {} × {}",
                    meta.dims,
                    meta.dtype.name(),
                    users.dims,
                    users.dtype.name(),
                    items.dims,
                    items.dtype.name()
                ));
            }
            l.user_factors = Some(users);
            l.item_factors = Some(items);
            if let Some(e) = find(SectionKind::UserBias) {
                l.user_bias = Some(parse_vector(file, cursor(e)?, n_users, n_users, true)?);
            }
            if let Some(e) = find(SectionKind::ItemBias) {
                l.item_bias = Some(parse_vector(
                    file,
                    cursor(e)?,
                    n_items,
                    n_items.div_ceil(BLOCK) * BLOCK,
                    true,
                )?);
            }
        }
        ModelKind::ItemNeighbors => {
            for kind in [
                SectionKind::UserFactors,
                SectionKind::ItemFactors,
                SectionKind::UserBias,
                SectionKind::ItemBias,
            ] {
                if present(kind) {
                    return meta_err(format!(
                        "an item-neighbour model must not hold {}",
                        kind.name()
                    ));
                }
            }
            if meta.dims != 0 || meta.dtype != ElementType::F32 {
                return meta_err("an item-neighbour model has dims 0 and dtype f32".into());
            }
            l.neighbors = csr(SectionKind::ItemNeighbors, n_items, n_items)?;
            if l.neighbors.is_none() {
                return Err(missing("item_neighbors", "item-neighbour models need them"));
            }
        }
    }
    if (present(SectionKind::SeenItems)
        || present(SectionKind::Holdout)
        || present(SectionKind::UserBias))
        && l.user_ids.is_none()
    {
        return Err(missing(
            "user_ids",
            "seen_items, holdout and user_bias are indexed by user",
        ));
    }
    l.seen_items = csr(SectionKind::SeenItems, n_users, n_items)?;
    l.holdout = csr(SectionKind::Holdout, n_users, n_items)?;
    if let Some(e) = find(SectionKind::ItemPopularity) {
        l.item_popularity = Some(parse_vector(file, cursor(e)?, n_items, n_items, false)?);
    }
    match (
        find(SectionKind::AttributeNames),
        find(SectionKind::ItemAttributes),
    ) {
        (None, None) => {}
        (Some(names), Some(_)) => {
            let names = parse_id_table(file, cursor(names)?)?;
            l.item_attributes = csr(SectionKind::ItemAttributes, n_items, names.len())?;
            l.attribute_names = Some(names);
        }
        (None, Some(_)) => {
            return Err(missing("attribute_names", "item_attributes refers to them"));
        }
        (Some(_), None) => {
            return Err(missing(
                "item_attributes",
                "attribute_names comes with them",
            ));
        }
    }
    Ok((meta, l))
}
