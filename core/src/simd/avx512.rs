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

use super::{BLOCK, I8_GROUP, Isa, Kernels, QueryI8, avx2, scalar};
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

#[inline]
#[target_feature(enable = "avx512f")]
fn store_i32x16(out: &mut [i32; 16], v: __m512i) {
    // SAFETY: `out` is 64 writable bytes; storeu has no alignment requirement.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) }
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

#[target_feature(enable = "avx512f")]
fn block_f32(queries: &[&[f32]], block: &[f32], out: &mut [[f32; BLOCK]]) {
    for_batch_size!(queries.len(), block_f32_n, queries, block, out)
}

#[target_feature(enable = "avx512f")]
fn block_f32_n<const N: usize>(queries: &[&[f32]], block: &[f32], out: &mut [[f32; BLOCK]]) {
    let (dims, _) = block.as_chunks::<BLOCK>();
    let mut acc = [_mm512_setzero_ps(); N];
    for (d, items) in dims.iter().enumerate() {
        let x = load_f32x16(items);
        for q in 0..N {
            acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(queries[q][d]), x, acc[q]);
        }
    }
    for q in 0..N {
        store_f32x16(&mut out[q], acc[q]);
    }
}

#[target_feature(enable = "avx512f")]
fn block_f16(queries: &[&[f32]], block: &[f16], out: &mut [[f32; BLOCK]]) {
    for_batch_size!(queries.len(), block_f16_n, queries, block, out)
}

#[target_feature(enable = "avx512f")]
fn block_f16_n<const N: usize>(queries: &[&[f32]], block: &[f16], out: &mut [[f32; BLOCK]]) {
    let (dims, _) = block.as_chunks::<BLOCK>();
    let mut acc = [_mm512_setzero_ps(); N];
    for (d, items) in dims.iter().enumerate() {
        let x = load_f16x16(items);
        for q in 0..N {
            acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(queries[q][d]), x, acc[q]);
        }
    }
    for q in 0..N {
        store_f32x16(&mut out[q], acc[q]);
    }
}

#[target_feature(enable = "avx512f,avx512vnni")]
fn block_u8(queries: &[QueryI8<'_>], block: &[u8], out: &mut [[i32; BLOCK]]) {
    for_batch_size!(queries.len(), block_u8_n, queries, block, out)
}

/// One `vpdpbusd` scores 4 dims of all 16 items of the block: it multiplies the
/// stored unsigned bytes (item + 128) with the broadcast signed query bytes and
/// sums each group of 4 into the item's i32 lane. The +128 offset adds exactly
/// 128·Σq to every lane, which is subtracted at the end.
#[target_feature(enable = "avx512f,avx512vnni")]
fn block_u8_n<const N: usize>(queries: &[QueryI8<'_>], block: &[u8], out: &mut [[i32; BLOCK]]) {
    const GROUP_BYTES: usize = BLOCK * I8_GROUP;
    let (groups, _) = block.as_chunks::<GROUP_BYTES>();
    let q4: [&[[i8; I8_GROUP]]; N] = std::array::from_fn(|q| queries[q].values.as_chunks().0);
    let mut acc = [_mm512_setzero_si512(); N];
    for (g, items) in groups.iter().enumerate() {
        let x = load_u8x64(items);
        for q in 0..N {
            let w = _mm512_set1_epi32(i32::from_le_bytes(q4[q][g].map(|b| b as u8)));
            acc[q] = _mm512_dpbusd_epi32(acc[q], x, w);
        }
    }
    for q in 0..N {
        let offset = _mm512_set1_epi32(128 * queries[q].sum);
        store_i32x16(&mut out[q], _mm512_sub_epi32(acc[q], offset));
    }
}
