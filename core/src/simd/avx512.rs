//! AVX-512 kernels (F + BW + VL for floats and int8 dots; VNNI for the int8
//! block scan).
//!
//! # Safety
//! Every function here is compiled with `#[target_feature]` naming the AVX-512
//! subsets it uses. [`kernels`] puts a function in the table only after
//! `is_x86_feature_detected!` confirmed those subsets (and falls back to the
//! AVX2 int8 block kernel where VNNI is missing). Memory is read only through
//! the `load_*` helpers, each taking a reference to exactly the bytes it reads.
#![allow(unsafe_code)]

use super::{BLOCK, BlockOutput, Epilogue, I8_GROUP, Isa, Kernels, QueryI8, avx2, scalar};
use half::f16;
use std::arch::x86_64::*;

pub fn kernels() -> Option<Kernels> {
    let base = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl");
    if !base {
        return None;
    }
    let vnni = is_x86_feature_detected!("avx512vnni");
    // Without VNNI the AVX2 int8 block kernel is as good as a 512-bit one.
    let avx2 = avx2::kernels();
    let (int8_isa, block_u8_kernel) = match (vnni, avx2) {
        (true, _) => (Isa::Avx512Vnni, block_u8 as super::BlockU8),
        (false, Some(t)) => (t.int8_isa, t.block_u8),
        (false, None) => (Isa::Scalar, scalar::block_u8 as super::BlockU8),
    };
    Some(Kernels {
        float_isa: Isa::Avx512,
        int8_isa,
        dot_f32,
        dot_f16,
        dot_i8,
        block_f32,
        block_f16,
        block_u8: block_u8_kernel,
    })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_f32x16(v: &[f32; 16]) -> __m512 {
    // SAFETY: `v` is 64 readable bytes; loadu has no alignment requirement.
    unsafe { _mm512_loadu_ps(v.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_f16x16(v: &[f16; 16]) -> __m512 {
    // SAFETY: `v` is 32 readable bytes; loadu has no alignment requirement.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(v.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn load_i8x32_as_i16(v: &[i8; 32]) -> __m512i {
    // SAFETY: `v` is 32 readable bytes; loadu has no alignment requirement.
    _mm512_cvtepi8_epi16(unsafe { _mm256_loadu_si256(v.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_u8x64(v: &[u8; 64]) -> __m512i {
    // SAFETY: `v` is 64 readable bytes; loadu has no alignment requirement.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store_f32x16(out: &mut [f32; 16], v: __m512) {
    // SAFETY: `out` is 64 writable bytes; storeu has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) }
}

/// Asks for the cache line two blocks (of 64-dim int8, 2 KiB) ahead of
/// `line`. With several queries per pass the kernel spends long enough on each
/// line that the hardware prefetcher alone falls behind.
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_ahead(line: &[u8; 64]) {
    // A prefetch is only a hint (never faults, whatever the address), so the
    // intrinsic is safe; wrapping_add keeps the pointer arithmetic defined.
    _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().wrapping_add(2048).cast::<i8>());
}

/// The 16 per-item values of block `b`.
fn block_slice(values: &[f32], b: usize) -> &[f32; BLOCK] {
    values[b * BLOCK..(b + 1) * BLOCK]
        .try_into()
        .expect("whole block")
}

#[target_feature(enable = "avx512f")]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ta) = a.as_chunks::<16>();
    let (cb, tb) = b.as_chunks::<16>();
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let (pa, pb) = (ca.chunks_exact(2), cb.chunks_exact(2));
    let (ra, rb) = (pa.remainder(), pb.remainder());
    for (x, y) in pa.zip(pb) {
        acc0 = _mm512_fmadd_ps(load_f32x16(&x[0]), load_f32x16(&y[0]), acc0);
        acc1 = _mm512_fmadd_ps(load_f32x16(&x[1]), load_f32x16(&y[1]), acc1);
    }
    for (x, y) in ra.iter().zip(rb) {
        acc0 = _mm512_fmadd_ps(load_f32x16(x), load_f32x16(y), acc0);
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y).sum();
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail
}

#[target_feature(enable = "avx512f")]
fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    let (ca, ta) = a.as_chunks::<16>();
    let (cb, tb) = b.as_chunks::<16>();
    let mut acc = _mm512_setzero_ps();
    for (x, y) in ca.iter().zip(cb) {
        acc = _mm512_fmadd_ps(load_f32x16(x), load_f16x16(y), acc);
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y.to_f32()).sum();
    _mm512_reduce_add_ps(acc) + tail
}

#[target_feature(enable = "avx512f,avx512bw")]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let (ca, ta) = a.as_chunks::<32>();
    let (cb, tb) = b.as_chunks::<32>();
    let mut acc = _mm512_setzero_si512();
    for (x, y) in ca.iter().zip(cb) {
        let products = _mm512_madd_epi16(load_i8x32_as_i16(x), load_i8x32_as_i16(y));
        acc = _mm512_add_epi32(acc, products);
    }
    _mm512_reduce_add_epi32(acc) + scalar::dot_i8(ta, tb)
}

/// The f32 and f16 block kernels are one kernel: they differ only in how a
/// row of item values is loaded (`$load` widens f16 to f32).
macro_rules! float_block_kernel {
    ($entry:ident, $blocks:ident, $elem:ty, $load:ident) => {
        #[target_feature(enable = "avx512f")]
        fn $entry(
            queries: &[&[f32]],
            blocks: &[$elem],
            bias: Option<&[f32]>,
            out: BlockOutput<'_>,
        ) {
            for_batch_size!(queries.len(), $blocks, queries, blocks, bias, out)
        }

        #[target_feature(enable = "avx512f")]
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
            let thresholds: [__m512; N] =
                std::array::from_fn(|j| _mm512_set1_ps(out.thresholds[j]));
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
                let mut acc = [[_mm512_setzero_ps(); N]; P];
                for (rows, w) in rows.chunks_exact(P).zip(packed.chunks_exact(P)) {
                    for p in 0..P {
                        let x = $load(&rows[p]);
                        for j in 0..N {
                            acc[p][j] = _mm512_fmadd_ps(_mm512_set1_ps(w[p][j]), x, acc[p][j]);
                        }
                    }
                }
                let bias = bias.map(|v| load_f32x16(block_slice(v, b)));
                for j in 0..N {
                    let mut sum = acc[0][j];
                    for partial in &acc[1..] {
                        sum = _mm512_add_ps(sum, partial[j]);
                    }
                    if let Some(bias) = bias {
                        sum = _mm512_add_ps(sum, bias);
                    }
                    store_f32x16(&mut out[j], sum);
                    masks[j] = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(sum, thresholds[j]);
                }
            }
        }
    };
}

float_block_kernel!(block_f32, block_f32_blocks, f32, load_f32x16);
float_block_kernel!(block_f16, block_f16_blocks, f16, load_f16x16);

#[target_feature(enable = "avx512f,avx512vnni")]
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

/// One `vpdpbusd` scores 4 dims of all 16 items of a block: it multiplies the
/// stored unsigned bytes (item + 128) with the broadcast signed query bytes and
/// sums each group of 4 into the item's i32 lane. The +128 offset adds exactly
/// 128·Σq to every lane, which is subtracted at the end.
#[target_feature(enable = "avx512f,avx512vnni")]
fn block_u8_blocks<const N: usize, const P: usize>(
    queries: &[QueryI8<'_>],
    blocks: &[u8],
    epilogue: Epilogue<'_>,
    out: BlockOutput<'_>,
) {
    const GROUP_BYTES: usize = BLOCK * I8_GROUP;
    let dims = queries[0].values.len();
    // Each query's 4-byte groups as i32, ready to broadcast.
    // Query bytes interleaved per 4-dim group, as the i32 each broadcast
    // wants: one array, no bounds checks in the inner loop.
    let packed = super::pack_int8_queries::<N>(queries);
    let offsets: [__m512i; N] = std::array::from_fn(|j| _mm512_set1_epi32(128 * queries[j].sum));
    let q_scales: [__m512; N] = std::array::from_fn(|j| _mm512_set1_ps(queries[j].scale));
    let thresholds: [__m512; N] = std::array::from_fn(|j| _mm512_set1_ps(out.thresholds[j]));
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
        let mut acc = [[_mm512_setzero_si512(); N]; P];
        for (groups, w) in groups.chunks_exact(P).zip(packed.chunks_exact(P)) {
            for p in 0..P {
                let x = load_u8x64(&groups[p]);
                prefetch_ahead(&groups[p]);
                for j in 0..N {
                    let w = _mm512_set1_epi32(w[p][j]);
                    acc[p][j] = _mm512_dpbusd_epi32(acc[p][j], x, w);
                }
            }
        }
        let item_scales = load_f32x16(block_slice(epilogue.item_scales, b));
        let bias = epilogue.bias.map(|v| load_f32x16(block_slice(v, b)));
        for j in 0..N {
            let mut sum = acc[0][j];
            for partial in &acc[1..] {
                sum = _mm512_add_epi32(sum, partial[j]);
            }
            let raw = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, offsets[j]));
            // Same operations, same order as the scalar oracle: bit-exact.
            let mut score = _mm512_mul_ps(raw, _mm512_mul_ps(q_scales[j], item_scales));
            if let Some(bias) = bias {
                score = _mm512_add_ps(score, bias);
            }
            store_f32x16(&mut out[j], score);
            masks[j] = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(score, thresholds[j]);
        }
    }
}
