//! Opening (with full validation) and id lookups: 100,000 users and items ×
//! 64 int8 dims. `vitrine-loadtest open` measures the 1M × 1M case.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model, item_id};
use vitrine_core::{Artifact, ElementType};

fn open_and_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.vtr");
    embedding_model(&SyntheticSpec::bare(
        100_000,
        100_000,
        64,
        ElementType::Int8,
        3,
    ))
    .write(&path)
    .unwrap();
    let mut group = c.benchmark_group("artifact_100k");
    group.bench_function("open_snapshot", |b| {
        b.iter(|| Artifact::open(black_box(&path)).unwrap())
    });
    #[allow(unsafe_code)]
    group.bench_function("open_in_place", |b| {
        // SAFETY: the benchmark owns the file and never writes it while open.
        b.iter(|| unsafe { Artifact::open_in_place(black_box(&path)) }.unwrap())
    });
    let art = Artifact::open(&path).unwrap();
    let ids: Vec<String> = (0..1000).map(|i| item_id(i * 97 % 100_000)).collect();
    group.bench_function("item_id_lookup_x1000", |b| {
        b.iter(|| {
            ids.iter()
                .filter_map(|id| art.item_ids().index_of(black_box(id)))
                .count()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = open_and_lookup
}
criterion_main!(benches);
