//! AVX2 + FMA + F16C kernels (x86-64 since 2013).
//!
//! # Safety
//! Every function here is compiled with `#[target_feature(enable =
//! "avx2,fma,f16c")]`. [`kernels`] hands out the table only after
//! `is_x86_feature_detected!` confirmed all three features, so no function can
//! run on a CPU without them. Memory is read only through the `load_*` helpers,
//! each of which takes a reference to an array of exactly the width it reads,
//! so every load is in bounds by construction.
#![allow(unsafe_code)]

use super::{BLOCK, BlockOutput, Epilogue, I8_GROUP, Isa, Kernels, QueryI8, scalar};
use half::f16;
use std::arch::x86_64::*;

pub fn kernels() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    ok.then_some(Kernels {
        float_isa: Isa::Avx2,
        int8_isa: Isa::Avx2,
        dot_f32,
        dot_f16,
        dot_i8,
        block_f32,
        block_f16,
        block_u8,
    })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32x8(v: &[f32; 8]) -> __m256 {
    // SAFETY: `v` is 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f16x8(v: &[f16; 8]) -> __m256 {
    // SAFETY: `v` is 16 readable bytes; loadu has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(v.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_i8x16_as_i16(v: &[i8; 16]) -> __m256i {
    // SAFETY: `v` is 16 readable bytes; loadu has no alignment requirement.
    _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(v.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x32(v: &[u8]) -> __m256i {
    let v: &[u8; 32] = v.try_into().expect("32 bytes");
    // SAFETY: `v` is 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_f32x8(out: &mut [f32], v: __m256) {
    let out: &mut [f32; 8] = out.try_into().expect("8 floats");
    // SAFETY: `out` is 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32x16_as_2x8(v: &[f32; BLOCK]) -> (__m256, __m256) {
    let (lo, hi) = v.split_at(8);
    (
        load_f32x8(lo.try_into().expect("8")),
        load_f32x8(hi.try_into().expect("8")),
    )
}

/// Bit `lane` set iff lane `lane` of (lo, hi) is above `t`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn above(lo: __m256, hi: __m256, t: __m256) -> u16 {
    let lo = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(lo, t)) as u16;
    let hi = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(hi, t)) as u16;
    lo | (hi << 8)
}

/// The 16 per-item values of block `b`.
fn block_slice(values: &[f32], b: usize) -> &[f32; BLOCK] {
    values[b * BLOCK..(b + 1) * BLOCK]
        .try_into()
        .expect("whole block")
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_f32x8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_i32x8(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ta) = a.as_chunks::<8>();
    let (cb, tb) = b.as_chunks::<8>();
    // Two accumulators hide the FMA latency.
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (pa, pb) = (ca.chunks_exact(2), cb.chunks_exact(2));
    let (ra, rb) = (pa.remainder(), pb.remainder());
    for (x, y) in pa.zip(pb) {
        acc0 = _mm256_fmadd_ps(load_f32x8(&x[0]), load_f32x8(&y[0]), acc0);
        acc1 = _mm256_fmadd_ps(load_f32x8(&x[1]), load_f32x8(&y[1]), acc1);
    }
    for (x, y) in ra.iter().zip(rb) {
        acc0 = _mm256_fmadd_ps(load_f32x8(x), load_f32x8(y), acc0);
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y).sum();
    sum_f32x8(_mm256_add_ps(acc0, acc1)) + tail
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    let (ca, ta) = a.as_chunks::<8>();
    let (cb, tb) = b.as_chunks::<8>();
    let mut acc = _mm256_setzero_ps();
    for (x, y) in ca.iter().zip(cb) {
        acc = _mm256_fmadd_ps(load_f32x8(x), load_f16x8(y), acc);
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y.to_f32()).sum();
    sum_f32x8(acc) + tail
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let (ca, ta) = a.as_chunks::<16>();
    let (cb, tb) = b.as_chunks::<16>();
    let mut acc = _mm256_setzero_si256();
    for (x, y) in ca.iter().zip(cb) {
        let products = _mm256_madd_epi16(load_i8x16_as_i16(x), load_i8x16_as_i16(y));
        acc = _mm256_add_epi32(acc, products);
    }
    sum_i32x8(acc) + scalar::dot_i8(ta, tb)
}

/// The f32 and f16 block kernels are one kernel: they differ only in how a
/// row of item values is loaded (`$load` widens f16 to f32).
macro_rules! float_block_kernel {
    ($entry:ident, $blocks:ident, $elem:ty, $load:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $entry(
            queries: &[&[f32]],
            blocks: &[$elem],
            bias: Option<&[f32]>,
            out: BlockOutput<'_>,
        ) {
            for_batch_size!(queries.len(), $blocks, queries, blocks, bias, out)
        }

        /// 16 lanes = two 8-float registers per query ("lo", "hi"), so even P = 1
        /// has two independent chains per query.
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $blocks<const N: usize, const P: usize>(
            queries: &[&[f32]],
            blocks: &[$elem],
            bias: Option<&[f32]>,
            out: BlockOutput<'_>,
        ) {
            let dims = queries[0].len();
            // Query values interleaved per dimension: one array, no bounds checks
            // or spilled slice pointers in the inner loop.
            let packed = super::pack_float_queries::<N>(queries);
            let thresholds: [__m256; N] =
                std::array::from_fn(|j| _mm256_set1_ps(out.thresholds[j]));
            for (b, (block, (out, masks))) in blocks
                .chunks_exact(BLOCK * dims)
                .zip(
                    out.scores
                        .chunks_exact_mut(N)
                        .zip(out.masks.chunks_exact_mut(N)),
                )
                .enumerate()
            {
                let (rows, _) = block.as_chunks::<BLOCK>();
                let mut lo = [[_mm256_setzero_ps(); N]; P];
                let mut hi = [[_mm256_setzero_ps(); N]; P];
                for (rows, w) in rows.chunks_exact(P).zip(packed.chunks_exact(P)) {
                    for p in 0..P {
                        let (x_lo, x_hi) = rows[p].split_at(8);
                        let x_lo = $load(x_lo.try_into().expect("8"));
                        let x_hi = $load(x_hi.try_into().expect("8"));
                        for j in 0..N {
                            let w = _mm256_set1_ps(w[p][j]);
                            lo[p][j] = _mm256_fmadd_ps(w, x_lo, lo[p][j]);
                            hi[p][j] = _mm256_fmadd_ps(w, x_hi, hi[p][j]);
                        }
                    }
                }
                let bias = bias.map(|v| load_f32x16_as_2x8(block_slice(v, b)));
                for j in 0..N {
                    let (mut l, mut h) = (lo[0][j], hi[0][j]);
                    for p in 1..P {
                        l = _mm256_add_ps(l, lo[p][j]);
                        h = _mm256_add_ps(h, hi[p][j]);
                    }
                    if let Some((b_lo, b_hi)) = bias {
                        l = _mm256_add_ps(l, b_lo);
                        h = _mm256_add_ps(h, b_hi);
                    }
                    store_f32x8(&mut out[j][..8], l);
                    store_f32x8(&mut out[j][8..], h);
                    masks[j] = above(l, h, thresholds[j]);
                }
            }
        }
    };
}

float_block_kernel!(block_f32, block_f32_blocks, f32, load_f32x8);
float_block_kernel!(block_f16, block_f16_blocks, f16, load_f16x8);

#[target_feature(enable = "avx2,fma,f16c")]
fn block_u8(queries: &[QueryI8<'_>], blocks: &[u8], epilogue: Epilogue<'_>, out: BlockOutput<'_>) {
    for_batch_size!(
        queries.len(),
        block_u8_blocks,
        queries,
        blocks,
        epilogue,
        out
    )
}

/// Without VNNI: undo the +128 offset (xor 0x80 turns the stored byte into the
/// signed value), then the sign trick: |q| · sign(x, q) = q · x with an
/// unsigned first operand, as `maddubs` wants. No i16 pair can saturate
/// because both sides are within -127..=127 (2 · 127² < 2¹⁵).
#[target_feature(enable = "avx2,fma,f16c")]
fn block_u8_blocks<const N: usize, const P: usize>(
    queries: &[QueryI8<'_>],
    blocks: &[u8],
    epilogue: Epilogue<'_>,
    out: BlockOutput<'_>,
) {
    const GROUP_BYTES: usize = BLOCK * I8_GROUP;
    let dims = queries[0].values.len();
    // Query bytes interleaved per 4-dim group, as the i32 each broadcast
    // wants: one array, no bounds checks in the inner loop.
    let packed = super::pack_int8_queries::<N>(queries);
    let flip = _mm256_set1_epi8(i8::MIN);
    let ones = _mm256_set1_epi16(1);
    let q_scales: [__m256; N] = std::array::from_fn(|j| _mm256_set1_ps(queries[j].scale));
    let thresholds: [__m256; N] = std::array::from_fn(|j| _mm256_set1_ps(out.thresholds[j]));
    for (b, (block, (out, masks))) in blocks
        .chunks_exact(BLOCK * dims)
        .zip(
            out.scores
                .chunks_exact_mut(N)
                .zip(out.masks.chunks_exact_mut(N)),
        )
        .enumerate()
    {
        let (groups, _) = block.as_chunks::<GROUP_BYTES>();
        let mut lo = [[_mm256_setzero_si256(); N]; P];
        let mut hi = [[_mm256_setzero_si256(); N]; P];
        for (groups, w) in groups.chunks_exact(P).zip(packed.chunks_exact(P)) {
            for p in 0..P {
                _mm_prefetch::<_MM_HINT_T0>(groups[p].as_ptr().wrapping_add(2048).cast::<i8>());
                let x_lo = _mm256_xor_si256(load_u8x32(&groups[p][..32]), flip);
                let x_hi = _mm256_xor_si256(load_u8x32(&groups[p][32..]), flip);
                for j in 0..N {
                    let w = _mm256_set1_epi32(w[p][j]);
                    let w_abs = _mm256_abs_epi8(w);
                    let p_lo = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x_lo, w));
                    let p_hi = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x_hi, w));
                    lo[p][j] = _mm256_add_epi32(lo[p][j], _mm256_madd_epi16(p_lo, ones));
                    hi[p][j] = _mm256_add_epi32(hi[p][j], _mm256_madd_epi16(p_hi, ones));
                }
            }
        }
        let (s_lo, s_hi) = load_f32x16_as_2x8(block_slice(epilogue.item_scales, b));
        let bias = epilogue.bias.map(|v| load_f32x16_as_2x8(block_slice(v, b)));
        for j in 0..N {
            let (mut l, mut h) = (lo[0][j], hi[0][j]);
            for p in 1..P {
                l = _mm256_add_epi32(l, lo[p][j]);
                h = _mm256_add_epi32(h, hi[p][j]);
            }
            // Same operations, same order as the scalar oracle: bit-exact.
            let mut l = _mm256_mul_ps(_mm256_cvtepi32_ps(l), _mm256_mul_ps(q_scales[j], s_lo));
            let mut h = _mm256_mul_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(q_scales[j], s_hi));
            if let Some((b_lo, b_hi)) = bias {
                l = _mm256_add_ps(l, b_lo);
                h = _mm256_add_ps(h, b_hi);
            }
            store_f32x8(&mut out[j][..8], l);
            store_f32x8(&mut out[j][8..], h);
            masks[j] = above(l, h, thresholds[j]);
        }
    }
}
