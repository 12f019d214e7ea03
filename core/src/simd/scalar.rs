//! Scalar kernels: the oracle every SIMD kernel is tested against, and the
//! fallback on CPUs without a SIMD path. Written for clarity, not speed.
//!

use super::{BLOCK, Epilogue, I8_GROUP, QueryI8};
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

pub fn block_f32(
    queries: &[&[f32]],
    blocks: &[f32],
    bias: Option<&[f32]>,
    out: &mut [[f32; BLOCK]],
) {
    let block_len = BLOCK * queries[0].len();
    for (b, (block, out)) in blocks
        .chunks_exact(block_len)
        .zip(out.chunks_exact_mut(queries.len()))
        .enumerate()
    {
        block_f32_one(queries, block, out);
        add_bias(bias, b, out);
    }
}

fn add_bias(bias: Option<&[f32]>, block: usize, out: &mut [[f32; BLOCK]]) {
    if let Some(bias) = bias {
        for row in out {
            for (s, b) in row.iter_mut().zip(&bias[block * BLOCK..]) {
                *s += b;
            }
        }
    }
}

fn block_f32_one(queries: &[&[f32]], block: &[f32], out: &mut [[f32; BLOCK]]) {
    for (query, row) in queries.iter().zip(out.iter_mut()) {
        for (lane, score) in row.iter_mut().enumerate() {
            *score = query
                .iter()
                .enumerate()
                .map(|(d, q)| q * block[d * BLOCK + lane])
                .sum();
        }
    }
}

pub fn block_f16(
    queries: &[&[f32]],
    blocks: &[f16],
    bias: Option<&[f32]>,
    out: &mut [[f32; BLOCK]],
) {
    let block_len = BLOCK * queries[0].len();
    for (b, (block, out)) in blocks
        .chunks_exact(block_len)
        .zip(out.chunks_exact_mut(queries.len()))
        .enumerate()
    {
        block_f16_one(queries, block, out);
        add_bias(bias, b, out);
    }
}

fn block_f16_one(queries: &[&[f32]], block: &[f16], out: &mut [[f32; BLOCK]]) {
    for (query, row) in queries.iter().zip(out.iter_mut()) {
        for (lane, score) in row.iter_mut().enumerate() {
            *score = query
                .iter()
                .enumerate()
                .map(|(d, q)| q * block[d * BLOCK + lane].to_f32())
                .sum();
        }
    }
}

/// Position of (lane, dim) inside an int8 block.
pub fn u8_block_index(lane: usize, dim: usize) -> usize {
    (dim / I8_GROUP) * BLOCK * I8_GROUP + lane * I8_GROUP + dim % I8_GROUP
}

pub fn block_u8(
    queries: &[QueryI8<'_>],
    blocks: &[u8],
    epilogue: Epilogue<'_>,
    out: &mut [[f32; BLOCK]],
) {
    let block_len = BLOCK * queries[0].values.len();
    for (b, (block, out)) in blocks
        .chunks_exact(block_len)
        .zip(out.chunks_exact_mut(queries.len()))
        .enumerate()
    {
        for (query, row) in queries.iter().zip(out.iter_mut()) {
            for (lane, score) in row.iter_mut().enumerate() {
                let raw: i32 = query
                    .values
                    .iter()
                    .enumerate()
                    .map(|(d, &q)| i32::from(q) * (i32::from(block[u8_block_index(lane, d)]) - 128))
                    .sum();
                let slot = b * BLOCK + lane;
                *score = raw as f32 * (query.scale * epilogue.item_scales[slot]);
                if let Some(bias) = epilogue.bias {
                    *score += bias[slot];
                }
            }
        }
    }
}
