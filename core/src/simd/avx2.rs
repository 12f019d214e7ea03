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

use super::{BLOCK, I8_GROUP, Isa, Kernels, QueryI8, scalar};
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
fn store_i32x8(out: &mut [i32], v: __m256i) {
    let out: &mut [i32; 8] = out.try_into().expect("8 ints");
    // SAFETY: `out` is 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
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

#[target_feature(enable = "avx2,fma,f16c")]
fn block_f32(queries: &[&[f32]], block: &[f32], out: &mut [[f32; BLOCK]]) {
    for_batch_size!(queries.len(), block_f32_n, queries, block, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn block_f32_n<const N: usize>(queries: &[&[f32]], block: &[f32], out: &mut [[f32; BLOCK]]) {
    let (dims, _) = block.as_chunks::<BLOCK>();
    let mut lo = [_mm256_setzero_ps(); N];
    let mut hi = [_mm256_setzero_ps(); N];
    for (d, items) in dims.iter().enumerate() {
        let (x_lo, x_hi) = items.split_at(8);
        let x_lo = load_f32x8(x_lo.try_into().expect("8"));
        let x_hi = load_f32x8(x_hi.try_into().expect("8"));
        for q in 0..N {
            let w = _mm256_set1_ps(queries[q][d]);
            lo[q] = _mm256_fmadd_ps(w, x_lo, lo[q]);
            hi[q] = _mm256_fmadd_ps(w, x_hi, hi[q]);
        }
    }
    for q in 0..N {
        store_f32x8(&mut out[q][..8], lo[q]);
        store_f32x8(&mut out[q][8..], hi[q]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn block_f16(queries: &[&[f32]], block: &[f16], out: &mut [[f32; BLOCK]]) {
    for_batch_size!(queries.len(), block_f16_n, queries, block, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn block_f16_n<const N: usize>(queries: &[&[f32]], block: &[f16], out: &mut [[f32; BLOCK]]) {
    let (dims, _) = block.as_chunks::<BLOCK>();
    let mut lo = [_mm256_setzero_ps(); N];
    let mut hi = [_mm256_setzero_ps(); N];
    for (d, items) in dims.iter().enumerate() {
        let (x_lo, x_hi) = items.split_at(8);
        let x_lo = load_f16x8(x_lo.try_into().expect("8"));
        let x_hi = load_f16x8(x_hi.try_into().expect("8"));
        for q in 0..N {
            let w = _mm256_set1_ps(queries[q][d]);
            lo[q] = _mm256_fmadd_ps(w, x_lo, lo[q]);
            hi[q] = _mm256_fmadd_ps(w, x_hi, hi[q]);
        }
    }
    for q in 0..N {
        store_f32x8(&mut out[q][..8], lo[q]);
        store_f32x8(&mut out[q][8..], hi[q]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn block_u8(queries: &[QueryI8<'_>], block: &[u8], out: &mut [[i32; BLOCK]]) {
    for_batch_size!(queries.len(), block_u8_n, queries, block, out)
}

/// Without VNNI: undo the +128 offset (xor 0x80 turns the stored byte into the
/// signed value), then the sign trick: |q| · sign(x, q) = q · x with an
/// unsigned first operand, as `maddubs` wants. No i16 pair can saturate
/// because both sides are within -127..=127 (2 · 127² < 2¹⁵).
#[target_feature(enable = "avx2,fma,f16c")]
fn block_u8_n<const N: usize>(queries: &[QueryI8<'_>], block: &[u8], out: &mut [[i32; BLOCK]]) {
    const GROUP_BYTES: usize = BLOCK * I8_GROUP;
    let (groups, _) = block.as_chunks::<GROUP_BYTES>();
    let flip = _mm256_set1_epi8(i8::MIN);
    let ones = _mm256_set1_epi16(1);
    let mut lo = [_mm256_setzero_si256(); N];
    let mut hi = [_mm256_setzero_si256(); N];
    for (g, items) in groups.iter().enumerate() {
        let x_lo = _mm256_xor_si256(load_u8x32(&items[..32]), flip);
        let x_hi = _mm256_xor_si256(load_u8x32(&items[32..]), flip);
        for q in 0..N {
            let v = &queries[q].values[g * I8_GROUP..g * I8_GROUP + I8_GROUP];
            let w = _mm256_set1_epi32(i32::from_le_bytes([
                v[0] as u8, v[1] as u8, v[2] as u8, v[3] as u8,
            ]));
            let w_abs = _mm256_abs_epi8(w);
            let p_lo = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x_lo, w));
            let p_hi = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x_hi, w));
            lo[q] = _mm256_add_epi32(lo[q], _mm256_madd_epi16(p_lo, ones));
            hi[q] = _mm256_add_epi32(hi[q], _mm256_madd_epi16(p_hi, ones));
        }
    }
    for q in 0..N {
        store_i32x8(&mut out[q][..8], lo[q]);
        store_i32x8(&mut out[q][8..], hi[q]);
    }
}
