//! Scoring kernels: dot products and block scans for f32, f16 and int8.
//!
//! This module owns every SIMD instruction in Vitrine. Each instruction set has
//! one file (`scalar.rs`, `avx2.rs`, `avx512.rs`); [`kernels()`] picks the best
//! one the CPU supports, once, on first use. `scalar.rs` is the oracle: every
//! other implementation is property-tested against it (`tests` below).
//!
//! Two kinds of kernel:
//! - *row dot products* (`dot_f32`, `dot_f16`, `dot_i8`) over two slices of any
//!   length (ragged tails handled), used to score a few given items;
//! - *block kernels* (`block_f32`, `block_f16`, `block_u8`) that score one block
//!   of [`BLOCK`] items stored interleaved (see `docs/FORMAT.md`, "item factor
//!   layout") against up to [`MAX_BATCH`] queries in one pass over the block.
//!   Catalog scans are loops over blocks (`crate::scan`).
//!
//! Kernels never see untrusted lengths: callers pass slices whose lengths were
//! validated when the artifact was opened; kernels re-check them with `assert!`
//! once per call (cheap next to the work) so that a logic error panics instead
//! of reading out of bounds.
//!
//! NEON: not written yet. This machine has no aarch64 target to compile or test
//! it, and untested intrinsics are a liability; aarch64 runs the scalar kernels.

use half::f16;
use std::sync::OnceLock;

/// Calls `$kernel::<N, P>($args)` with `N` = the number of queries (1..=8)
/// and `P` = independent partial accumulators per query, so that each batch
/// size gets its own fully unrolled instance with accumulators in registers.
/// One accumulator per query would chain every multiply-add on the one before
/// (4–5 cycles each); N·P ≥ 4 independent chains hide that latency. The caller
/// has checked 1 <= n <= MAX_BATCH.
macro_rules! for_batch_size {
    ($n:expr, $kernel:ident, $($arg:expr),*) => {
        match $n {
            1 => $kernel::<1, 4>($($arg),*),
            2 => $kernel::<2, 2>($($arg),*),
            3 => $kernel::<3, 2>($($arg),*),
            4 => $kernel::<4, 1>($($arg),*),
            5 => $kernel::<5, 1>($($arg),*),
            6 => $kernel::<6, 1>($($arg),*),
            7 => $kernel::<7, 1>($($arg),*),
            _ => $kernel::<8, 1>($($arg),*),
        }
    };
}

/// Float queries interleaved per dimension: `packed[d][j] = queries[j][d]`.
#[cfg(target_arch = "x86_64")]
fn pack_float_queries<const N: usize>(queries: &[&[f32]]) -> Vec<[f32; N]> {
    (0..queries[0].len())
        .map(|d| std::array::from_fn(|j| queries[j][d]))
        .collect()
}

/// int8 queries interleaved per group of [`I8_GROUP`] dims, each group's
/// four bytes as one little-endian i32 (what a 32-bit broadcast takes).
#[cfg(target_arch = "x86_64")]
fn pack_int8_queries<const N: usize>(queries: &[QueryI8<'_>]) -> Vec<[i32; N]> {
    (0..queries[0].values.len() / I8_GROUP)
        .map(|g| {
            std::array::from_fn(|j| {
                let v = &queries[j].values[g * I8_GROUP..(g + 1) * I8_GROUP];
                i32::from_le_bytes([v[0] as u8, v[1] as u8, v[2] as u8, v[3] as u8])
            })
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;

/// Items per interleaved block.
pub const BLOCK: usize = 16;
/// Adjacent dimensions of one item stored together in an int8 block (VNNI's
/// `vpdpbusd` multiplies and sums groups of 4 bytes).
pub const I8_GROUP: usize = 4;
/// Most queries a block kernel scores in one pass.
pub const MAX_BATCH: usize = 8;
/// Dimensions are padded with zeros to a multiple of this.
pub const DIM_ALIGN: usize = 16;

/// An int8 query prepared for [`Kernels::block_u8`].
#[derive(Clone, Copy, Debug)]
pub struct QueryI8<'a> {
    /// Quantised query, values in -127..=127, length = padded dims.
    pub values: &'a [i8],
    /// Sum of `values` (the VNNI kernel needs it to undo the +128 item offset).
    pub sum: i32,
    /// Dequantisation scale of the query.
    pub scale: f32,
}

impl<'a> QueryI8<'a> {
    pub fn new(values: &'a [i8], scale: f32) -> Self {
        let sum = values.iter().map(|&v| i32::from(v)).sum();
        Self { values, sum, scale }
    }
}

/// Where block kernels write: each block's scores per query, and per block
/// and query a bit mask of the lanes whose score is above that query's
/// threshold (bit `lane` set ⇔ `score > thresholds[q]`).
#[derive(Debug)]
pub struct BlockOutput<'a> {
    pub thresholds: &'a [f32],
    pub scores: &'a mut [[f32; BLOCK]],
    pub masks: &'a mut [u16],
}

/// Per-item numbers the block kernels fold into each score, for the blocks of
/// one call (one value per item slot, whole blocks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// int8 only: each item's dequantisation scale.
    pub item_scales: &'a [f32],
    /// Added to each item's score, if present.
    pub bias: Option<&'a [f32]>,
}

/// Which instruction set a kernel family uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Avx512Vnni,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }
}

type DotF32 = unsafe fn(&[f32], &[f32]) -> f32;
type DotF16 = unsafe fn(&[f32], &[f16]) -> f32;
type DotI8 = unsafe fn(&[i8], &[i8]) -> i32;
type BlockF32 = unsafe fn(&[&[f32]], &[f32], Option<&[f32]>, BlockOutput<'_>);
type BlockF16 = unsafe fn(&[&[f32]], &[f16], Option<&[f32]>, BlockOutput<'_>);
type BlockU8 = unsafe fn(&[QueryI8<'_>], &[u8], Epilogue<'_>, BlockOutput<'_>);

/// A table of kernels for one CPU.
///
/// The function pointers are `unsafe fn` because most are compiled with
/// `#[target_feature]`. A table is only built by [`Kernels::detect`] or
/// [`Kernels::all_available`], which put a pointer in only after the CPU was
/// seen to support its features; that is the safety argument of every call
/// below.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub float_isa: Isa,
    pub int8_isa: Isa,
    dot_f32: DotF32,
    dot_f16: DotF16,
    dot_i8: DotI8,
    block_f32: BlockF32,
    block_f16: BlockF16,
    block_u8: BlockU8,
}

/// The best kernels for this CPU, detected once.
pub fn kernels() -> &'static Kernels {
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    KERNELS.get_or_init(Kernels::detect)
}

impl Kernels {
    /// The scalar reference kernels (always available).
    pub fn scalar() -> Self {
        Self {
            float_isa: Isa::Scalar,
            int8_isa: Isa::Scalar,
            dot_f32: scalar::dot_f32,
            dot_f16: scalar::dot_f16,
            dot_i8: scalar::dot_i8,
            block_f32: scalar::block_f32,
            block_f16: scalar::block_f16,
            block_u8: scalar::block_u8,
        }
    }

    /// The fastest kernels this CPU supports.
    pub fn detect() -> Self {
        Self::all_available().pop().unwrap_or_else(Self::scalar)
    }

    /// Every kernel table this CPU can run, slowest (scalar) first. Tests run
    /// each against the scalar oracle; benches compare them.
    pub fn all_available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut tables = vec![Self::scalar()];
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = avx2::kernels() {
                tables.push(t);
            }
            if let Some(t) = avx512::kernels() {
                tables.push(t);
            }
        }
        tables
    }

    /// Names the instruction sets, e.g. `avx512/avx512-vnni`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.float_isa.name(), self.int8_isa.name())
    }

    /// Σ a[i]·b[i] over two equal-length slices.
    #[allow(unsafe_code)]
    pub fn dot_f32(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
        // SAFETY: the table holds this pointer only if the CPU has its features.
        unsafe { (self.dot_f32)(a, b) }
    }

    /// Σ a[i]·b[i] with `b` in half precision.
    #[allow(unsafe_code)]
    pub fn dot_f16(&self, a: &[f32], b: &[f16]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot_f16: length mismatch");
        // SAFETY: the table holds this pointer only if the CPU has its features.
        unsafe { (self.dot_f16)(a, b) }
    }

    /// Exact Σ a[i]·b[i] of two int8 slices (values in -127..=127).
    #[allow(unsafe_code)]
    pub fn dot_i8(&self, a: &[i8], b: &[i8]) -> i32 {
        assert_eq!(a.len(), b.len(), "dot_i8: length mismatch");
        // SAFETY: the table holds this pointer only if the CPU has its features.
        unsafe { (self.dot_i8)(a, b) }
    }

    /// Scores a run of f32 blocks (each `BLOCK × dims`, interleaved) against
    /// each query: for block `b`, `out.scores[b·n + q][lane] = Σ_d
    /// queries[q][d] · block_b[d·BLOCK + lane] + bias[b·BLOCK + lane]` where
    /// `n = queries.len()` (no bias: + 0), and bit `lane` of
    /// `out.masks[b·n + q]` is set iff that score is above
    /// `out.thresholds[q]`. Many blocks per call keep dispatch cost off the
    /// per-item budget; the masks let the caller skip blocks with nothing
    /// worth a look.
    #[allow(unsafe_code)]
    pub fn block_f32(
        &self,
        queries: &[&[f32]],
        blocks: &[f32],
        bias: Option<&[f32]>,
        out: BlockOutput<'_>,
    ) {
        let slots = check_block_args(queries.iter().map(|q| q.len()), blocks.len(), &out);
        check_item_values(bias, slots);
        // SAFETY: the table holds this pointer only if the CPU has its features;
        // lengths were checked above.
        unsafe { (self.block_f32)(queries, blocks, bias, out) }
    }

    /// As [`Self::block_f32`] with the blocks in half precision.
    #[allow(unsafe_code)]
    pub fn block_f16(
        &self,
        queries: &[&[f32]],
        blocks: &[f16],
        bias: Option<&[f32]>,
        out: BlockOutput<'_>,
    ) {
        let slots = check_block_args(queries.iter().map(|q| q.len()), blocks.len(), &out);
        check_item_values(bias, slots);
        // SAFETY: the table holds this pointer only if the CPU has its features;
        // lengths were checked above.
        unsafe { (self.block_f16)(queries, blocks, bias, out) }
    }

    /// Scores a run of int8 blocks against int8 queries. The integer dot
    /// product `raw = Σ_d queries[q].values[d] · (item[lane][d] − 128)` is
    /// exact; items are stored offset by +128 (`u8`, values 1..=255) in groups
    /// of [`I8_GROUP`] dims: `item[lane][d] = block_b[(d/4)·64 + lane·4 +
    /// d%4]`. The score is then, in this order of IEEE operations (identical in
    /// every implementation, so results are bit-exact):
    /// `raw as f32 · (query.scale · item_scale) + bias`. Output and masks as
    /// in [`Self::block_f32`].
    #[allow(unsafe_code)]
    pub fn block_u8(
        &self,
        queries: &[QueryI8<'_>],
        blocks: &[u8],
        epilogue: Epilogue<'_>,
        out: BlockOutput<'_>,
    ) {
        let slots = check_block_args(queries.iter().map(|q| q.values.len()), blocks.len(), &out);
        check_item_values(Some(epilogue.item_scales), slots);
        check_item_values(epilogue.bias, slots);
        // SAFETY: the table holds this pointer only if the CPU has its features;
        // lengths were checked above.
        unsafe { (self.block_u8)(queries, blocks, epilogue, out) }
    }
}

/// Shared argument check of the block kernels: 1..=MAX_BATCH queries of one
/// length that is a non-zero multiple of `DIM_ALIGN`, whole blocks of
/// `BLOCK × len` elements, one score row and mask per block and query, one
/// threshold per query. Returns the number of item slots (blocks × BLOCK).
fn check_block_args(
    query_lens: impl Iterator<Item = usize>,
    blocks_len: usize,
    out: &BlockOutput<'_>,
) -> usize {
    let mut n_queries = 0;
    let mut dims = 0;
    for len in query_lens {
        n_queries += 1;
        assert!(
            len > 0 && len % DIM_ALIGN == 0,
            "block kernel: dims {len} not padded"
        );
        assert!(
            dims == 0 || dims == len,
            "block kernel: queries differ in length"
        );
        dims = len;
    }
    assert!(
        (1..=MAX_BATCH).contains(&n_queries),
        "block kernel: batch size"
    );
    assert_eq!(blocks_len % (dims * BLOCK), 0, "block kernel: whole blocks");
    let rows = blocks_len / (dims * BLOCK) * n_queries;
    assert_eq!(
        out.scores.len(),
        rows,
        "block kernel: one score row per block and query"
    );
    assert_eq!(
        out.masks.len(),
        rows,
        "block kernel: one mask per block and query"
    );
    assert_eq!(
        out.thresholds.len(),
        n_queries,
        "block kernel: one threshold per query"
    );
    blocks_len / dims
}

fn check_item_values(values: Option<&[f32]>, slots: usize) {
    if let Some(v) = values {
        assert_eq!(v.len(), slots, "block kernel: one scale/bias per item slot");
    }
}

#[cfg(test)]
mod tests;
