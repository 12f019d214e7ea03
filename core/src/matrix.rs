//! Factor matrices: element types, quantisation, and the two layouts.
//!
//! - *Row layout* (user factors): row-major, each row `padded_dims` elements.
//! - *Block layout* (item factors): items in blocks of 16, interleaved so a
//!   block kernel reads each block once, front to back (docs/FORMAT.md, "Item
//!   factor layout"). f32/f16: `block[d·16 + lane]`. int8: groups of 4 dims,
//!   `block[(d/4)·64 + lane·4 + d%4]`, each value stored as `q + 128` (u8),
//!   which is what AVX-512 VNNI's unsigned×signed multiply wants.
//!
//! int8 is symmetric per row: `x ≈ q · scale`, `scale = max|x| / 127`,
//! `q ∈ -127..=127` (never -128, so the AVX2 sign trick cannot overflow).

use crate::artifact::ArtifactError;
use crate::artifact::section::{Fixed, SectionBuilder, SectionCursor, cast};
use crate::simd::{BLOCK, DIM_ALIGN, I8_GROUP};
use half::f16;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Largest number of dimensions the format accepts.
pub const MAX_DIMS: usize = 4096;

/// Largest magnitude of a factor value, bias or weight (the f16 range). With
/// at most [`MAX_DIMS`] dimensions every score then stays below ~2·10¹³:
/// finite by construction, so no scan can meet an infinity or a NaN.
pub const MAX_ABS_VALUE: f32 = 65504.0;

/// Finite and within ±[`MAX_ABS_VALUE`] (false for NaN).
pub fn in_range(x: f32) -> bool {
    x.abs() <= MAX_ABS_VALUE
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    F32,
    F16,
    Int8,
}

impl ElementType {
    pub fn code(self) -> u32 {
        match self {
            ElementType::F32 => 1,
            ElementType::F16 => 2,
            ElementType::Int8 => 3,
        }
    }
    pub fn from_code(code: u32) -> Option<Self> {
        [ElementType::F32, ElementType::F16, ElementType::Int8]
            .into_iter()
            .find(|t| t.code() == code)
    }
    pub fn size(self) -> usize {
        match self {
            ElementType::F32 => 4,
            ElementType::F16 => 2,
            ElementType::Int8 => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "f32",
            ElementType::F16 => "f16",
            ElementType::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for ElementType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(ElementType::F32),
            "f16" => Ok(ElementType::F16),
            "int8" | "i8" => Ok(ElementType::Int8),
            other => Err(format!(
                "unknown element type {other:?} (expected f32, f16 or int8)"
            )),
        }
    }
}

pub fn padded_dims(dims: usize) -> usize {
    dims.div_ceil(DIM_ALIGN) * DIM_ALIGN
}

/// Symmetric int8 quantisation of one row: returns the scale.
pub fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
    for (q, &x) in out.iter_mut().zip(row) {
        *q = if scale > 0.0 {
            (x / scale).round().clamp(-127.0, 127.0) as i8
        } else {
            0
        };
    }
    scale
}

/// Index of (slot, dim) in a matrix's element array, for either layout.
pub fn element_index(
    blocked: bool,
    dtype: ElementType,
    padded: usize,
    slot: usize,
    d: usize,
) -> usize {
    match (blocked, dtype) {
        (false, _) => slot * padded + d,
        (true, ElementType::Int8) => {
            (slot / BLOCK) * BLOCK * padded + crate::simd::scalar::u8_block_index(slot % BLOCK, d)
        }
        (true, _) => (slot / BLOCK) * BLOCK * padded + d * BLOCK + slot % BLOCK,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Rows,
    Blocks,
}

impl Layout {
    fn code(self) -> u32 {
        match self {
            Layout::Rows => 1,
            Layout::Blocks => 2,
        }
    }
}

/// Encodes a row-major f32 matrix (`rows × dims`) in the row layout.
pub fn encode_row_matrix(
    values: &[f32],
    rows: usize,
    dims: usize,
    dtype: ElementType,
) -> Result<Vec<u8>, ArtifactError> {
    encode(values, rows, dims, dtype, Layout::Rows)
}

/// Encodes a row-major f32 matrix (`rows × dims`) in the block layout.
pub fn encode_block_matrix(
    values: &[f32],
    rows: usize,
    dims: usize,
    dtype: ElementType,
) -> Result<Vec<u8>, ArtifactError> {
    encode(values, rows, dims, dtype, Layout::Blocks)
}

fn encode(
    values: &[f32],
    rows: usize,
    dims: usize,
    dtype: ElementType,
    layout: Layout,
) -> Result<Vec<u8>, ArtifactError> {
    let invalid = |m: String| Err(ArtifactError::InvalidModel(m));
    if dims == 0 || dims > MAX_DIMS {
        return invalid(format!("{dims} dimensions is outside 1..={MAX_DIMS}"));
    }
    if values.len() != rows * dims {
        return invalid(format!(
            "factor matrix has {} values, expected {rows} × {dims}",
            values.len()
        ));
    }
    if let Some(i) = values.iter().position(|v| !in_range(*v)) {
        return invalid(format!(
            "factor value at row {}, dim {} is {}: not finite or outside ±{MAX_ABS_VALUE}",
            i / dims,
            i % dims,
            values[i]
        ));
    }
    let padded = padded_dims(dims);
    let slots = match layout {
        Layout::Rows => rows,
        Layout::Blocks => rows.div_ceil(BLOCK) * BLOCK,
    };
    let position =
        |r: usize, d: usize| element_index(layout == Layout::Blocks, dtype, padded, r, d);
    let fixed = Fixed::default()
        .u64(rows as u64)
        .u32(dims as u32)
        .u32(padded as u32)
        .u32(dtype.code())
        .u32(layout.code());
    let mut section = SectionBuilder::new(&fixed.0);
    match dtype {
        ElementType::F32 => {
            let mut data = vec![0.0f32; slots * padded];
            for r in 0..rows {
                for d in 0..dims {
                    data[position(r, d)] = values[r * dims + d];
                }
            }
            section.array(&data);
        }
        ElementType::F16 => {
            let mut data = vec![f16::ZERO; slots * padded];
            for r in 0..rows {
                for d in 0..dims {
                    data[position(r, d)] = f16::from_f32(values[r * dims + d]);
                }
            }
            section.array(&data);
        }
        ElementType::Int8 => {
            let mut scales = vec![0.0f32; slots];
            let mut q = vec![0i8; dims];
            let mut data_i8 = vec![
                0i8;
                if layout == Layout::Rows {
                    slots * padded
                } else {
                    0
                }
            ];
            let mut data_u8 = vec![
                128u8;
                if layout == Layout::Blocks {
                    slots * padded
                } else {
                    0
                }
            ];
            for r in 0..rows {
                scales[r] = quantize_row(&values[r * dims..(r + 1) * dims], &mut q);
                for (d, &v) in q.iter().enumerate() {
                    match layout {
                        Layout::Rows => data_i8[position(r, d)] = v,
                        Layout::Blocks => data_u8[position(r, d)] = (i16::from(v) + 128) as u8,
                    }
                }
            }
            match layout {
                Layout::Rows => section.array(&data_i8),
                Layout::Blocks => section.array(&data_u8),
            };
            section.array(&scales);
        }
    }
    Ok(section.finish())
}

/// Where a matrix's arrays are in the file, and its shape.
#[derive(Clone, Debug)]
pub struct MatrixLayout {
    pub rows: usize,
    pub dims: usize,
    pub padded_dims: usize,
    pub dtype: ElementType,
    data: Range<usize>,
    scales: Option<Range<usize>>,
}

/// Parses a matrix section and checks every value once: finite floats,
/// int8 in range, zero padding, non-negative finite scales.
pub fn parse_matrix(
    file: &[u8],
    mut cur: SectionCursor<'_>,
    blocked: bool,
) -> Result<MatrixLayout, ArtifactError> {
    let rows = cur.u64_at(0);
    let dims = cur.u32_at(8) as usize;
    let padded = cur.u32_at(12) as usize;
    let dtype = ElementType::from_code(cur.u32_at(16))
        .ok_or_else(|| cur.error(16, format!("unknown element type code {}", cur.u32_at(16))))?;
    let want_layout = if blocked {
        Layout::Blocks
    } else {
        Layout::Rows
    };
    if cur.u32_at(20) != want_layout.code() {
        return Err(cur.error(
            20,
            format!(
                "layout code {} (expected {})",
                cur.u32_at(20),
                want_layout.code()
            ),
        ));
    }
    cur.reserved_from(24)?;
    if dims == 0 || dims > MAX_DIMS {
        return Err(cur.error(8, format!("{dims} dimensions is outside 1..={MAX_DIMS}")));
    }
    if padded != padded_dims(dims) {
        return Err(cur.error(
            12,
            format!("padded dims {padded} should be {}", padded_dims(dims)),
        ));
    }
    if rows >= u64::from(u32::MAX) {
        return Err(cur.error(0, format!("{rows} rows is more than the format allows")));
    }
    let rows = rows as usize;
    let slots = if blocked {
        rows.div_ceil(BLOCK) * BLOCK
    } else {
        rows
    };
    let elements = (slots as u64).saturating_mul(padded as u64);
    let data = match dtype {
        ElementType::F32 => cur.array::<f32>(elements, "factor values")?,
        ElementType::F16 => cur.array::<f16>(elements, "factor values")?,
        ElementType::Int8 => cur.array::<u8>(elements, "factor values")?,
    };
    let scales = match dtype {
        ElementType::Int8 => Some(cur.array::<f32>(slots as u64, "row scales")?),
        _ => None,
    };
    let layout = MatrixLayout {
        rows,
        dims,
        padded_dims: padded,
        dtype,
        data,
        scales,
    };
    check_values(file, &layout, blocked, &cur)?;
    cur.finish()?;
    Ok(layout)
}

/// Element indices of the padding (dims beyond `dims`, slots beyond `rows`).
fn padding_indices(m: &MatrixLayout, blocked: bool) -> impl Iterator<Item = usize> + '_ {
    let slots = if blocked {
        m.rows.div_ceil(BLOCK) * BLOCK
    } else {
        m.rows
    };
    (0..slots).flat_map(move |slot| {
        let first_pad = if slot < m.rows { m.dims } else { 0 };
        (first_pad..m.padded_dims)
            .map(move |d| element_index(blocked, m.dtype, m.padded_dims, slot, d))
    })
}

/// (slot, dim) of element `i`, for error messages.
fn coords(m: &MatrixLayout, blocked: bool, i: usize) -> (usize, usize) {
    let p = m.padded_dims;
    if !blocked {
        return (i / p, i % p);
    }
    let (block, within) = (i / (BLOCK * p), i % (BLOCK * p));
    let (lane, d) = if m.dtype == ElementType::Int8 {
        let (group, rest) = (within / (BLOCK * I8_GROUP), within % (BLOCK * I8_GROUP));
        (rest / I8_GROUP, group * I8_GROUP + rest % I8_GROUP)
    } else {
        (within % BLOCK, within / BLOCK)
    };
    (block * BLOCK + lane, d)
}

/// Whether all values pass `ok`, checked branch-free in chunks so the
/// compiler vectorises it (an early-exit loop would run one value at a time).
fn all_in_chunks<T: Copy>(values: &[T], ok: impl Fn(T) -> bool) -> bool {
    values
        .chunks(1024)
        .all(|c| c.iter().fold(true, |acc, &x| acc & ok(x)))
}

fn check_values(
    file: &[u8],
    m: &MatrixLayout,
    blocked: bool,
    cur: &SectionCursor<'_>,
) -> Result<(), ArtifactError> {
    let at = |i: usize| m.data.start + i * m.dtype.size();
    let not_finite = |i: usize| {
        let (r, d) = coords(m, blocked, i);
        cur.error_abs(
            at(i),
            format!("row {r}, dim {d} is not finite or outside ±{MAX_ABS_VALUE}"),
        )
    };
    let bad_padding = |i: usize| cur.error_abs(at(i), "padding value is not zero");
    match m.dtype {
        ElementType::F32 => {
            let v: &[f32] = cast(file, m.data.clone());
            if !all_in_chunks(v, in_range) {
                return Err(not_finite(
                    v.iter().position(|x| !in_range(*x)).unwrap_or(0),
                ));
            }
            if let Some(i) = padding_indices(m, blocked).find(|&i| v[i] != 0.0) {
                return Err(bad_padding(i));
            }
        }
        ElementType::F16 => {
            let v: &[f16] = cast(file, m.data.clone());
            let bits: &[u16] = bytemuck::cast_slice(v);
            // f16 is not finite iff its exponent bits are all ones.
            if !all_in_chunks(bits, |b| b & 0x7c00 != 0x7c00) {
                return Err(not_finite(
                    v.iter().position(|x| !x.is_finite()).unwrap_or(0),
                ));
            }
            if let Some(i) = padding_indices(m, blocked).find(|&i| v[i].to_f32() != 0.0) {
                return Err(bad_padding(i));
            }
        }
        ElementType::Int8 => {
            let v: &[u8] = &file[m.data.clone()];
            // Stored bytes: the row layout holds i8 (-128 = 0x80 is forbidden);
            // the block layout holds q + 128 (0 is forbidden, padding is 128).
            let (forbidden, zero) = if blocked { (0u8, 128u8) } else { (0x80u8, 0u8) };
            // `contains` on bytes is memchr: tens of GB/s.
            if v.contains(&forbidden) {
                let i = v.iter().position(|&b| b == forbidden).unwrap_or(0);
                let (r, d) = coords(m, blocked, i);
                return Err(cur.error_abs(
                    at(i),
                    format!("row {r}, dim {d} holds -128, outside the symmetric int8 range"),
                ));
            }
            if let Some(i) = padding_indices(m, blocked).find(|&i| v[i] != zero) {
                return Err(bad_padding(i));
            }
            let scales_r = m.scales.clone().expect("int8 has scales");
            let scales: &[f32] = cast(file, scales_r.clone());
            let scale_ok = |s: f32| (0.0..=MAX_ABS_VALUE / 127.0).contains(&s);
            if !all_in_chunks(scales, scale_ok)
                && let Some(r) = scales.iter().position(|s| !scale_ok(*s))
            {
                return Err(cur.error_abs(
                    scales_r.start + 4 * r,
                    format!(
                        "row {r} has scale {}, not a finite non-negative number",
                        scales[r]
                    ),
                ));
            }
            if let Some(r) = (m.rows..scales.len()).find(|&r| scales[r] != 0.0) {
                return Err(cur.error_abs(scales_r.start + 4 * r, "padding scale is not zero"));
            }
        }
    }
    Ok(())
}

/// Typed element storage of a matrix.
#[derive(Clone, Copy, Debug)]
pub enum MatrixData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Row layout: signed values. Block layout: values + 128.
    Int8 {
        values: &'a [u8],
        scales: &'a [f32],
    },
}

/// A zero-copy view of a factor matrix.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub rows: usize,
    pub dims: usize,
    pub padded_dims: usize,
    pub blocked: bool,
    pub data: MatrixData<'a>,
}

impl<'a> Matrix<'a> {
    pub fn new(file: &'a [u8], l: &MatrixLayout, blocked: bool) -> Self {
        let data = match l.dtype {
            ElementType::F32 => MatrixData::F32(cast(file, l.data.clone())),
            ElementType::F16 => MatrixData::F16(cast(file, l.data.clone())),
            ElementType::Int8 => MatrixData::Int8 {
                values: &file[l.data.clone()],
                scales: cast(file, l.scales.clone().expect("int8 has scales")),
            },
        };
        Self {
            rows: l.rows,
            dims: l.dims,
            padded_dims: l.padded_dims,
            blocked,
            data,
        }
    }

    pub fn dtype(&self) -> ElementType {
        match self.data {
            MatrixData::F32(_) => ElementType::F32,
            MatrixData::F16(_) => ElementType::F16,
            MatrixData::Int8 { .. } => ElementType::Int8,
        }
    }

    /// Number of 16-item blocks (block layout).
    pub fn blocks(&self) -> usize {
        self.rows.div_ceil(BLOCK)
    }

    fn position(&self, r: usize, d: usize) -> usize {
        element_index(self.blocked, self.dtype(), self.padded_dims, r, d)
    }

    /// Row `r` dequantised to f32, `padded_dims` long (padding zero).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows && out.len() == self.padded_dims);
        out.fill(0.0);
        let dims = self.dims;
        // One loop per storage case, so the element type and layout are not
        // re-decided per value (the ranker decodes hundreds of rows per
        // request).
        match (self.data, self.blocked) {
            (MatrixData::Int8 { values, scales }, true) => {
                use crate::simd::I8_GROUP;
                // A row's values are contiguous within each group of
                // I8_GROUP dimensions (simd::scalar::u8_block_index).
                for (g, chunk) in out[..dims].chunks_mut(I8_GROUP).enumerate() {
                    let at = self.position(r, g * I8_GROUP);
                    for (o, &v) in chunk.iter_mut().zip(&values[at..at + I8_GROUP]) {
                        *o = f32::from((i16::from(v) - 128) as i8) * scales[r];
                    }
                }
            }
            (MatrixData::F32(v), false) => {
                out[..dims].copy_from_slice(&v[r * self.padded_dims..][..dims]);
            }
            (data, _) => {
                for (d, o) in out.iter_mut().enumerate().take(dims) {
                    let i = self.position(r, d);
                    *o = match data {
                        MatrixData::F32(v) => v[i],
                        MatrixData::F16(v) => v[i].to_f32(),
                        MatrixData::Int8 { values, scales } => {
                            f32::from(self.signed(values[i])) * scales[r]
                        }
                    };
                }
            }
        }
    }

    /// Row `r` of an int8 matrix as signed values (`padded_dims` long) and its
    /// scale; `None` for float matrices.
    pub fn row_i8(&self, r: usize, out: &mut [i8]) -> Option<f32> {
        let MatrixData::Int8 { values, scales } = self.data else {
            return None;
        };
        assert!(r < self.rows && out.len() == self.padded_dims);
        for (d, o) in out.iter_mut().enumerate() {
            *o = self.signed(values[self.position(r, d)]);
        }
        Some(scales[r])
    }

    fn signed(&self, stored: u8) -> i8 {
        if self.blocked {
            (i16::from(stored) - 128) as i8
        } else {
            stored as i8
        }
    }
}
