//! Seeded synthetic models: shoppers with category tastes, a catalogue of
//! SKU-like string ids, popularity, attributes, seen items and a holdout.
//! Used by the demo, the tests and the benchmarks; identical output for the
//! same spec on every machine (SplitMix64 and plain arithmetic only).

use crate::artifact::{AttributeParts, FactorParts, ModelMetadata, ModelParts};
use crate::csr::CsrParts;
use crate::matrix::ElementType;

/// SplitMix64: small, fast and with a fixed output sequence.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        self.next_f32() * 2.0 - 1.0
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Shape of a synthetic model.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub name: String,
    pub users: usize,
    pub items: usize,
    pub dims: usize,
    pub dtype: ElementType,
    pub categories: usize,
    /// Items each user has seen (0: no seen-items section).
    pub seen_per_user: usize,
    /// Held-out items per user (0: no holdout section).
    pub holdout_per_user: usize,
    /// Item attributes (category, brand, sale tag) and popularity.
    pub with_catalog: bool,
    pub with_bias: bool,
    pub seed: u64,
}

impl SyntheticSpec {
    /// A small, complete model: the demo and most tests.
    pub fn demo() -> Self {
        Self {
            name: "demo".into(),
            users: 1000,
            items: 5000,
            dims: 32,
            dtype: ElementType::F32,
            categories: 12,
            seen_per_user: 20,
            holdout_per_user: 5,
            with_catalog: true,
            with_bias: true,
            seed: 42,
        }
    }

    /// Bare factors of the given size (benchmarks).
    pub fn bare(users: usize, items: usize, dims: usize, dtype: ElementType, seed: u64) -> Self {
        Self {
            name: "bench".into(),
            users,
            items,
            dims,
            dtype,
            categories: 16,
            seen_per_user: 0,
            holdout_per_user: 0,
            with_catalog: false,
            with_bias: false,
            seed,
        }
    }
}

pub fn item_id(i: usize) -> String {
    const SIZES: [&str; 4] = ["S", "M", "L", "XL"];
    format!("SKU-{:05}-{}", i / 4, SIZES[i % 4])
}

pub fn user_id(u: usize) -> String {
    format!("user-{u}")
}

/// Category of item `i` (a fixed, scattered assignment).
fn category_of(i: usize, categories: usize) -> usize {
    (i.wrapping_mul(2_654_435_761) >> 7) % categories.max(1)
}

/// An embedding model following `spec`.
pub fn embedding_model(spec: &SyntheticSpec) -> ModelParts {
    let mut rng = SplitMix64::new(spec.seed);
    let d = spec.dims;
    let centers: Vec<f32> = (0..spec.categories * d).map(|_| rng.symmetric()).collect();
    let mut items = vec![0.0f32; spec.items * d];
    for (i, row) in items.chunks_mut(d).enumerate() {
        let c = category_of(i, spec.categories);
        for (x, center) in row.iter_mut().zip(&centers[c * d..]) {
            *x = center + 0.35 * rng.symmetric();
        }
    }
    let mut tastes = Vec::with_capacity(spec.users);
    let mut users = vec![0.0f32; spec.users * d];
    for row in users.chunks_mut(d) {
        let (a, b) = (rng.below(spec.categories), rng.below(spec.categories));
        tastes.push((a, b));
        for (k, x) in row.iter_mut().enumerate() {
            *x = 0.7 * centers[a * d + k] + 0.3 * centers[b * d + k] + 0.2 * rng.symmetric();
        }
    }
    let factors = FactorParts {
        dims: d,
        dtype: spec.dtype,
        users,
        items,
        user_bias: spec
            .with_bias
            .then(|| (0..spec.users).map(|_| 0.1 * rng.symmetric()).collect()),
        item_bias: spec
            .with_bias
            .then(|| (0..spec.items).map(|_| 0.1 * rng.symmetric()).collect()),
    };
    let mut parts = base_parts(spec, "synthetic-embedding", &mut rng, &tastes);
    parts.factors = Some(factors);
    parts.metadata.global_bias = if spec.with_bias { 0.5 } else { 0.0 };
    parts
}

/// An item-neighbour model following `spec`: each item's neighbours are
/// items of its own category, weighted by closeness of index.
pub fn neighbors_model(spec: &SyntheticSpec) -> ModelParts {
    let mut rng = SplitMix64::new(spec.seed);
    let by_category = items_by_category(spec);
    let rows = (0..spec.items)
        .map(|i| {
            let same = &by_category[category_of(i, spec.categories)];
            let mut row = Vec::new();
            for _ in 0..10.min(same.len()) {
                let j = same[rng.below(same.len())];
                let weight = 0.05 + rng.next_f32();
                if j != i {
                    row.push((j as u32, weight));
                }
            }
            row
        })
        .collect();
    let tastes: Vec<(usize, usize)> = (0..spec.users)
        .map(|_| (rng.below(spec.categories), rng.below(spec.categories)))
        .collect();
    let mut parts = base_parts(spec, "synthetic-itemknn", &mut rng, &tastes);
    parts.neighbors = Some(CsrParts::from_rows(rows, true));
    parts
}

fn items_by_category(spec: &SyntheticSpec) -> Vec<Vec<usize>> {
    let mut by_category = vec![Vec::new(); spec.categories.max(1)];
    for i in 0..spec.items {
        by_category[category_of(i, spec.categories)].push(i);
    }
    by_category
}

/// Ids, metadata, and the optional catalogue, seen and holdout sections.
fn base_parts(
    spec: &SyntheticSpec,
    algorithm: &str,
    rng: &mut SplitMix64,
    tastes: &[(usize, usize)],
) -> ModelParts {
    let mut metadata = ModelMetadata::new(spec.name.clone(), algorithm);
    metadata.params.insert("seed".into(), spec.seed.into());
    metadata
        .params
        .insert("categories".into(), spec.categories.into());
    metadata.data_fingerprint =
        format!("synthetic:{}x{}:seed{}", spec.users, spec.items, spec.seed);
    let by_category = items_by_category(spec);
    // Each user draws from their favourite category (70%) or anywhere.
    let draw = |rng: &mut SplitMix64, (a, _b): (usize, usize)| -> u32 {
        let pool = &by_category[a];
        if rng.next_f32() < 0.7 && !pool.is_empty() {
            pool[rng.below(pool.len())] as u32
        } else {
            rng.below(spec.items) as u32
        }
    };
    let mut seen_rows = Vec::new();
    let mut holdout_rows = Vec::new();
    if spec.seen_per_user + spec.holdout_per_user > 0 {
        for &taste in tastes {
            let mut seen: Vec<(u32, f32)> = (0..spec.seen_per_user)
                .map(|_| (draw(rng, taste), 1.0))
                .collect();
            seen.sort_by_key(|e| e.0);
            seen.dedup_by_key(|e| e.0);
            let held: Vec<(u32, f32)> = (0..spec.holdout_per_user)
                .map(|_| draw(rng, taste))
                .filter(|i| seen.binary_search_by_key(i, |e| e.0).is_err())
                .map(|i| (i, 1.0))
                .collect();
            seen_rows.push(seen);
            holdout_rows.push(held);
        }
    }
    let (attributes, popularity) = if spec.with_catalog {
        let mut names: Vec<String> = (0..spec.categories)
            .map(|c| format!("category=c{c}"))
            .collect();
        names.extend((0..8).map(|b| format!("brand=b{b}")));
        names.push("tag=sale".into());
        let rows = (0..spec.items)
            .map(|i| {
                let mut row = vec![
                    (category_of(i, spec.categories) as u32, 1.0),
                    ((spec.categories + i % 8) as u32, 1.0),
                ];
                if rng.below(10) == 0 {
                    row.push(((spec.categories + 8) as u32, 1.0));
                }
                row
            })
            .collect();
        let popularity = (0..spec.items)
            .map(|i| 1000.0 / (1.0 + (i * 7919 % spec.items) as f32))
            .collect();
        (
            Some(AttributeParts {
                names,
                items: CsrParts::from_rows(rows, false),
            }),
            Some(popularity),
        )
    } else {
        (None, None)
    };
    ModelParts {
        metadata,
        user_ids: Some((0..spec.users).map(user_id).collect()),
        item_ids: (0..spec.items).map(item_id).collect(),
        factors: None,
        neighbors: None,
        seen_items: (spec.seen_per_user > 0).then(|| CsrParts::from_rows(seen_rows, false)),
        item_popularity: popularity,
        attributes,
        holdout: (spec.holdout_per_user > 0).then(|| CsrParts::from_rows(holdout_rows, false)),
    }
}
