//! Scalar kernels: the oracle every SIMD kernel is tested against, and the
//! fallback on CPUs without a SIMD path. Written for clarity, not speed.

use super::{BLOCK, BlockOutput, Epilogue, I8_GROUP, QueryI8};
use half::f16;

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// Position of (lane, dim) inside an int8 block.
pub fn u8_block_index(lane: usize, dim: usize) -> usize {
    (dim / I8_GROUP) * BLOCK * I8_GROUP + lane * I8_GROUP + dim % I8_GROUP
}

/// Shared shape of the float block kernels: `item(block, d, lane)` reads one
/// stored value as f32.
fn block_float(
    queries: &[&[f32]],
    n_blocks: usize,
    item: impl Fn(usize, usize, usize) -> f32,
    bias: Option<&[f32]>,
    out: BlockOutput<'_>,
) {
    let n = queries.len();
    for b in 0..n_blocks {
        for (q, query) in queries.iter().enumerate() {
            for lane in 0..BLOCK {
                let dot: f32 = query
                    .iter()
                    .enumerate()
                    .map(|(d, w)| w * item(b, d, lane))
                    .sum();
                out.scores[b * n + q][lane] = dot + bias.map_or(0.0, |v| v[b * BLOCK + lane]);
            }
        }
    }
    fill_masks(out.thresholds, out.scores, out.masks);
}

pub fn block_f32(queries: &[&[f32]], blocks: &[f32], bias: Option<&[f32]>, out: BlockOutput<'_>) {
    let block_len = BLOCK * queries[0].len();
    let item = |b: usize, d: usize, lane: usize| blocks[b * block_len + d * BLOCK + lane];
    block_float(queries, blocks.len() / block_len, item, bias, out);
}

pub fn block_f16(queries: &[&[f32]], blocks: &[f16], bias: Option<&[f32]>, out: BlockOutput<'_>) {
    let block_len = BLOCK * queries[0].len();
    let item = |b: usize, d: usize, lane: usize| blocks[b * block_len + d * BLOCK + lane].to_f32();
    block_float(queries, blocks.len() / block_len, item, bias, out);
}

pub fn block_u8(
    queries: &[QueryI8<'_>],
    blocks: &[u8],
    epilogue: Epilogue<'_>,
    out: BlockOutput<'_>,
) {
    let n = queries.len();
    let block_len = BLOCK * queries[0].values.len();
    for (b, block) in blocks.chunks_exact(block_len).enumerate() {
        for (q, query) in queries.iter().enumerate() {
            for lane in 0..BLOCK {
                let raw: i32 = query
                    .values
                    .iter()
                    .enumerate()
                    .map(|(d, &w)| i32::from(w) * (i32::from(block[u8_block_index(lane, d)]) - 128))
                    .sum();
                let slot = b * BLOCK + lane;
                let mut score = raw as f32 * (query.scale * epilogue.item_scales[slot]);
                if let Some(bias) = epilogue.bias {
                    score += bias[slot];
                }
                out.scores[b * n + q][lane] = score;
            }
        }
    }
    fill_masks(out.thresholds, out.scores, out.masks);
}

/// Bit `lane` of `masks[r]` is set iff `scores[r][lane] > thresholds[r % n]`.
pub fn fill_masks(thresholds: &[f32], scores: &[[f32; BLOCK]], masks: &mut [u16]) {
    for (r, (row, mask)) in scores.iter().zip(masks.iter_mut()).enumerate() {
        let t = thresholds[r % thresholds.len()];
        *mask = row
            .iter()
            .enumerate()
            .fold(0, |m, (lane, &s)| m | (u16::from(s > t) << lane));
    }
}
