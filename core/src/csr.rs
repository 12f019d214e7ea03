//! Sparse rows (CSR): item neighbours, items each user has seen, item
//! attributes and the holdout (docs/FORMAT.md, "CSR section").
//!
//! Column indices within a row are strictly increasing, so membership is a
//! binary search and rows merge cheaply.

use crate::artifact::ArtifactError;
use crate::artifact::section::{Fixed, SectionBuilder, SectionCursor, cast};
use crate::matrix::{MAX_ABS_VALUE, in_range};
use std::ops::Range;

/// Owned CSR rows, as the writer takes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsrParts {
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub weights: Option<Vec<f32>>,
}

impl CsrParts {
    /// Builds from per-row (column, weight) lists; sorts each row by column
    /// and keeps the last weight of a repeated column.
    pub fn from_rows(rows: Vec<Vec<(u32, f32)>>, weighted: bool) -> Self {
        let mut parts = CsrParts {
            indptr: vec![0],
            indices: Vec::new(),
            weights: weighted.then(Vec::new),
        };
        for mut row in rows {
            row.sort_by_key(|e| e.0);
            row.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    earlier.1 = later.1;
                }
                same
            });
            for (c, w) in row {
                parts.indices.push(c);
                if let Some(ws) = parts.weights.as_mut() {
                    ws.push(w);
                }
            }
            parts.indptr.push(parts.indices.len() as u64);
        }
        parts
    }

    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    pub fn encode(&self, cols: usize) -> Result<Vec<u8>, ArtifactError> {
        let invalid = |m: String| Err(ArtifactError::InvalidModel(m));
        if self.indptr.first() != Some(&0)
            || self.indptr.last() != Some(&(self.indices.len() as u64))
        {
            return invalid("CSR row pointers must start at 0 and end at the entry count".into());
        }
        for r in 0..self.rows() {
            let row = &self.indices[self.indptr[r] as usize..self.indptr[r + 1] as usize];
            if row.windows(2).any(|w| w[0] >= w[1]) || row.iter().any(|&c| c as usize >= cols) {
                return invalid(format!(
                    "CSR row {r} is not strictly increasing within 0..{cols}"
                ));
            }
        }
        if let Some(w) = &self.weights
            && (w.len() != self.indices.len() || w.iter().any(|x| !in_range(*x)))
        {
            return invalid(format!(
                "CSR weights must be finite, within ±{MAX_ABS_VALUE}, one per entry"
            ));
        }
        let fixed = Fixed::default()
            .u64(self.rows() as u64)
            .u64(cols as u64)
            .u64(self.indices.len() as u64)
            .u32(u32::from(self.weights.is_some()));
        let mut section = SectionBuilder::new(&fixed.0);
        section.array(&self.indptr).array(&self.indices);
        if let Some(w) = &self.weights {
            section.array(w);
        }
        Ok(section.finish())
    }
}

#[derive(Clone, Debug)]
pub struct CsrLayout {
    pub rows: usize,
    pub cols: usize,
    indptr: Range<usize>,
    indices: Range<usize>,
    weights: Option<Range<usize>>,
}

/// Parses a CSR section and checks it once: pointers monotonic and in range,
/// columns strictly increasing within each row and below `cols`, weights finite.
pub fn parse_csr(file: &[u8], mut cur: SectionCursor<'_>) -> Result<CsrLayout, ArtifactError> {
    let (rows, cols, nnz, flags) = (cur.u64_at(0), cur.u64_at(8), cur.u64_at(16), cur.u32_at(24));
    cur.reserved_from(28)?;
    if flags > 1 {
        return Err(cur.error(24, format!("unknown flags {flags:#x}")));
    }
    if rows >= u64::from(u32::MAX) || cols > u64::from(u32::MAX) {
        return Err(cur.error(
            0,
            format!("{rows} rows × {cols} columns exceeds the format's limits"),
        ));
    }
    let indptr_r = cur.array::<u64>(rows + 1, "row pointers")?;
    let indices_r = cur.array::<u32>(nnz, "column indices")?;
    let weights_r = if flags == 1 {
        Some(cur.array::<f32>(nnz, "weights")?)
    } else {
        None
    };
    let indptr: &[u64] = cast(file, indptr_r.clone());
    let indices: &[u32] = cast(file, indices_r.clone());
    if indptr[0] != 0 || indptr[rows as usize] != nnz {
        return Err(cur.error_abs(
            indptr_r.start,
            "row pointers must start at 0 and end at the entry count",
        ));
    }
    for r in 0..rows as usize {
        if indptr[r + 1] < indptr[r] || indptr[r + 1] > nnz {
            return Err(cur.error_abs(
                indptr_r.start + 8 * (r + 1),
                format!("row pointer {} decreases or exceeds {nnz}", r + 1),
            ));
        }
        let (a, b) = (indptr[r] as usize, indptr[r + 1] as usize);
        let row = &indices[a..b];
        if let Some(j) = row.windows(2).position(|w| w[0] >= w[1]) {
            return Err(cur.error_abs(
                indices_r.start + 4 * (a + j + 1),
                format!("row {r}: columns not strictly increasing"),
            ));
        }
        if let Some(&last) = row.last()
            && u64::from(last) >= cols
        {
            return Err(cur.error_abs(
                indices_r.start + 4 * (b - 1),
                format!("row {r}: column {last} is not below {cols}"),
            ));
        }
    }
    if let Some(wr) = &weights_r {
        let w: &[f32] = cast(file, wr.clone());
        if let Some(i) = w.iter().position(|x| !in_range(*x)) {
            return Err(cur.error_abs(
                wr.start + 4 * i,
                format!("weight #{i} is not finite or outside ±{MAX_ABS_VALUE}"),
            ));
        }
    }
    cur.finish()?;
    Ok(CsrLayout {
        rows: rows as usize,
        cols: cols as usize,
        indptr: indptr_r,
        indices: indices_r,
        weights: weights_r,
    })
}

/// A zero-copy view of CSR rows.
#[derive(Clone, Copy, Debug)]
pub struct Csr<'a> {
    pub cols: usize,
    indptr: &'a [u64],
    indices: &'a [u32],
    weights: Option<&'a [f32]>,
}

impl<'a> Csr<'a> {
    pub fn new(file: &'a [u8], l: &CsrLayout) -> Self {
        Self {
            cols: l.cols,
            indptr: cast(file, l.indptr.clone()),
            indices: cast(file, l.indices.clone()),
            weights: l.weights.clone().map(|w| cast(file, w)),
        }
    }

    pub fn rows(&self) -> usize {
        self.indptr.len() - 1
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    fn range(&self, row: usize) -> Range<usize> {
        self.indptr[row] as usize..self.indptr[row + 1] as usize
    }

    /// Columns of `row`, strictly increasing.
    pub fn row(&self, row: usize) -> &'a [u32] {
        &self.indices[self.range(row)]
    }

    /// Weights of `row`, if the section has weights.
    pub fn row_weights(&self, row: usize) -> Option<&'a [f32]> {
        self.weights.map(|w| &w[self.range(row)])
    }

    /// An owned copy, as the writer takes it.
    pub fn to_parts(&self) -> CsrParts {
        CsrParts {
            indptr: self.indptr.to_vec(),
            indices: self.indices.to_vec(),
            weights: self.weights.map(<[f32]>::to_vec),
        }
    }

    pub fn contains(&self, row: usize, col: u32) -> bool {
        self.row(row).binary_search(&col).is_ok()
    }
}
