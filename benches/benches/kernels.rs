//! Row dot products and block kernels, for every kernel table this CPU runs.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use std::hint::black_box;
use vitrine_core::simd::{BLOCK, BlockOutput, Epilogue, Kernels, QueryI8};

fn dots(c: &mut Criterion) {
    let mut group = c.benchmark_group("dot");
    for dims in [64usize, 256] {
        let a: Vec<f32> = (0..dims).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..dims).map(|i| (i as f32 * 0.11).cos()).collect();
        let b16: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
        let a8: Vec<i8> = (0..dims).map(|i| (i % 255) as i8 / 2).collect();
        let b8: Vec<i8> = (0..dims).map(|i| (i * 7 % 255) as i8 / 2).collect();
        group.throughput(Throughput::Elements(dims as u64));
        for t in Kernels::all_available() {
            let name = t.describe();
            group.bench_with_input(
                BenchmarkId::new(format!("f32/{name}"), dims),
                &dims,
                |bch, _| bch.iter(|| t.dot_f32(black_box(&a), black_box(&b))),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("f16/{name}"), dims),
                &dims,
                |bch, _| bch.iter(|| t.dot_f16(black_box(&a), black_box(&b16))),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("i8/{name}"), dims),
                &dims,
                |bch, _| bch.iter(|| t.dot_i8(black_box(&a8), black_box(&b8))),
            );
        }
    }
    group.finish();
}

/// 64 blocks (1,024 items) × 64 dims, the scan's unit of work.
fn blocks(c: &mut Criterion) {
    const DIMS: usize = 64;
    const BLOCKS: usize = 64;
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements((BLOCKS * BLOCK) as u64));
    let items_f32: Vec<f32> = (0..BLOCKS * BLOCK * DIMS)
        .map(|i| (i as f32 * 0.013).sin())
        .collect();
    let items_u8: Vec<u8> = (0..BLOCKS * BLOCK * DIMS)
        .map(|i| (i * 31 % 255 + 1) as u8)
        .collect();
    let scales = vec![0.01f32; BLOCKS * BLOCK];
    let queries_f32: Vec<Vec<f32>> = (0..8)
        .map(|q| (0..DIMS).map(|d| ((q * DIMS + d) as f32).cos()).collect())
        .collect();
    let queries_i8: Vec<Vec<i8>> = (0..8)
        .map(|q| {
            (0..DIMS)
                .map(|d| ((q * 13 + d * 7) % 255) as i8 / 2)
                .collect()
        })
        .collect();
    for t in Kernels::all_available() {
        for n in [1usize, 8] {
            let mut scores = vec![[0.0f32; BLOCK]; BLOCKS * n];
            let mut masks = vec![0u16; BLOCKS * n];
            let thresholds = vec![0.5f32; n];
            let qf: Vec<&[f32]> = queries_f32[..n].iter().map(Vec::as_slice).collect();
            group.bench_function(
                BenchmarkId::new(format!("f32/{}", t.describe()), n),
                |bch| {
                    bch.iter(|| {
                        let out = BlockOutput {
                            thresholds: &thresholds,
                            scores: &mut scores,
                            masks: &mut masks,
                        };
                        t.block_f32(&qf, black_box(&items_f32), None, out)
                    })
                },
            );
            let qi: Vec<QueryI8<'_>> = queries_i8[..n]
                .iter()
                .map(|q| QueryI8::new(q, 0.01))
                .collect();
            group.bench_function(
                BenchmarkId::new(format!("int8/{}", t.describe()), n),
                |bch| {
                    bch.iter(|| {
                        let out = BlockOutput {
                            thresholds: &thresholds,
                            scores: &mut scores,
                            masks: &mut masks,
                        };
                        let epilogue = Epilogue {
                            item_scales: &scales,
                            bias: None,
                        };
                        t.block_u8(&qi, black_box(&items_u8), epilogue, out)
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = dots, blocks
}
criterion_main!(benches);
