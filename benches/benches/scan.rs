//! Top-10 catalogue scans: 100,000 items × 64 dims, one query and eight per
//! pass, per element type and kernel table.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vitrine_core::scan::ItemScanner;
use vitrine_core::simd::Kernels;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};
use vitrine_core::{Artifact, ElementType};

fn scans(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_100k_x64_top10");
    for dtype in [ElementType::Int8, ElementType::F16, ElementType::F32] {
        let art = Artifact::from_bytes(
            &embedding_model(&SyntheticSpec::bare(64, 100_000, 64, dtype, 1))
                .encode()
                .unwrap(),
        )
        .unwrap();
        let users = art.user_factors().unwrap();
        for t in Kernels::all_available() {
            let t: &'static Kernels = Box::leak(Box::new(t));
            let scanner = ItemScanner::new(art.item_factors().unwrap(), None).with_kernels(t);
            let queries: Vec<_> = (0..8)
                .map(|u| {
                    let mut q = vec![0.0; users.padded_dims];
                    users.row_f32(u, &mut q);
                    scanner.prepare(&q, 0.0)
                })
                .collect();
            for batch in [1usize, 8] {
                group.throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(format!("{}/{}", dtype.name(), t.describe()), batch);
                group.bench_function(id, |b| {
                    b.iter(|| scanner.top_k_batch(black_box(&queries[..batch]), 10, |_, _| true))
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = scans
}
criterion_main!(benches);
