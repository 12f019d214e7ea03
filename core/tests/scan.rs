//! Top-K scans agree with brute force, for every element type, kernel table,
//! batch size and filter.

mod common;

use common::small_model;
use vitrine_core::scan::{
    ItemFilter, ItemScanner, ScoredItem, TopK, similar_by_neighbors, top_k_neighbors,
};
use vitrine_core::simd::Kernels;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model, neighbors_model};
use vitrine_core::{Artifact, ElementType};

fn artifact(dtype: ElementType) -> Artifact {
    Artifact::from_bytes(&small_model(dtype).encode().unwrap()).unwrap()
}

fn user_query(
    art: &Artifact,
    scanner: &ItemScanner<'_>,
    user: usize,
) -> vitrine_core::scan::PreparedQuery {
    let users = art.user_factors().unwrap();
    let mut q = vec![0.0; users.padded_dims];
    users.row_f32(user, &mut q);
    let offset = art.user_bias().map_or(0.0, |b| b[user]) + art.metadata().global_bias;
    scanner.prepare(&q, offset)
}

/// Every accepted item scored one by one, sorted best first (ties: lower index).
fn brute_force(
    scanner: &ItemScanner<'_>,
    q: &vitrine_core::scan::PreparedQuery,
    k: usize,
    accept: impl Fn(u32) -> bool,
) -> Vec<ScoredItem> {
    let mut all: Vec<ScoredItem> = (0..scanner.items().rows as u32)
        .filter(|&i| accept(i))
        .map(|i| ScoredItem {
            item: i,
            score: scanner.score(q, i),
        })
        .collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    all.truncate(k);
    all
}

fn leaked_tables() -> Vec<&'static Kernels> {
    Kernels::all_available()
        .into_iter()
        .map(|t| &*Box::leak(Box::new(t)))
        .collect()
}

#[test]
fn top_k_matches_brute_force_for_every_dtype_and_kernel() {
    for dtype in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let art = artifact(dtype);
        let seen = art.seen_items().unwrap();
        for table in leaked_tables() {
            let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded())
                .with_kernels(table);
            for user in [0, 7, 39] {
                let q = user_query(&art, &scanner, user);
                let filter = ItemFilter::new().exclude_sorted(seen.row(user));
                let got = scanner.top_k(&q, 10, |i| filter.accepts(i));
                let want = brute_force(&scanner, &q, 10, |i| filter.accepts(i));
                assert_eq!(got, want, "{dtype:?} {} user {user}", table.describe());
                assert!(got.iter().all(|s| !seen.contains(user, s.item)));
            }
        }
    }
}

#[test]
fn int8_kernels_agree_exactly_and_floats_closely() {
    for dtype in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let art = artifact(dtype);
        let results: Vec<Vec<ScoredItem>> = leaked_tables()
            .into_iter()
            .map(|t| {
                let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded())
                    .with_kernels(t);
                let q = user_query(&art, &scanner, 3);
                scanner.top_k(&q, 20, |_| true)
            })
            .collect();
        for r in &results[1..] {
            for (a, b) in r.iter().zip(&results[0]) {
                if dtype == ElementType::Int8 {
                    assert_eq!(a, b);
                } else {
                    assert!((a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
                }
            }
        }
    }
}

#[test]
fn batched_scan_equals_single_scans() {
    for dtype in [ElementType::F32, ElementType::Int8] {
        let art = artifact(dtype);
        let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded());
        // 11 queries: one full batch of 8 and a ragged batch of 3.
        let queries: Vec<_> = (0..11).map(|u| user_query(&art, &scanner, u)).collect();
        let seen = art.seen_items().unwrap();
        let batched = scanner.top_k_batch(&queries, 7, |j, i| !seen.contains(j, i));
        for (u, q) in queries.iter().enumerate() {
            let single = scanner.top_k(q, 7, |i| !seen.contains(u, i));
            if dtype == ElementType::Int8 {
                assert_eq!(batched[u], single, "int8 user {u}: exact");
            } else {
                // Float sums are ordered differently per batch size.
                for (a, b) in batched[u].iter().zip(&single) {
                    assert_eq!(a.item, b.item, "{dtype:?} user {u}");
                    assert!((a.score - b.score).abs() <= 1e-5 * b.score.abs().max(1.0));
                }
            }
        }
    }
}

#[test]
fn filters_never_make_an_answer_short() {
    let art = artifact(ElementType::Int8);
    let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded());
    let attrs = art.item_attributes().unwrap();
    let sale = art.attribute_names().unwrap().index_of("tag=sale").unwrap();
    let on_sale: Vec<u32> = (0..150)
        .filter(|&i| attrs.contains(i as usize, sale))
        .collect();
    assert!(
        on_sale.len() > 10,
        "fixture has {} sale items",
        on_sale.len()
    );
    let q = user_query(&art, &scanner, 1);
    let filter = ItemFilter::new().require(attrs, vec![sale]);
    let got = scanner.top_k(&q, 10, |i| filter.accepts(i));
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|s| on_sale.contains(&s.item)));
    assert_eq!(got, brute_force(&scanner, &q, 10, |i| filter.accepts(i)));

    // Fewer qualify than asked for: all of them, best first.
    let excluded: Vec<u32> = on_sale[3..].to_vec();
    let filter = ItemFilter::new()
        .require(attrs, vec![sale])
        .exclude(excluded);
    let got = scanner.top_k(&q, 10, |i| filter.accepts(i));
    assert_eq!(got.len(), 3);
}

#[test]
fn k_edge_cases() {
    let art = artifact(ElementType::F32);
    let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded());
    let q = user_query(&art, &scanner, 0);
    assert!(scanner.top_k(&q, 0, |_| true).is_empty());
    let all = scanner.top_k(&q, 1000, |_| true);
    assert_eq!(
        all.len(),
        150,
        "k above the catalogue size returns every item"
    );
    assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(scanner.top_k(&q, 5, |_| false).is_empty());
}

#[test]
fn scan_scores_equal_point_scores_bit_for_bit() {
    for dtype in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let art = artifact(dtype);
        let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded());
        let q = user_query(&art, &scanner, 5);
        for s in scanner.top_k(&q, 30, |_| true) {
            assert_eq!(s.score.to_bits(), scanner.score(&q, s.item).to_bits());
        }
    }
}

#[test]
fn quantised_models_rank_like_the_f32_model() {
    let spec = SyntheticSpec {
        users: 50,
        items: 2000,
        dims: 64,
        ..SyntheticSpec::demo()
    };
    let overlap = |dtype: ElementType| -> f64 {
        let f32_art = Artifact::from_bytes(&embedding_model(&spec).encode().unwrap()).unwrap();
        let q_art = Artifact::from_bytes(
            &embedding_model(&SyntheticSpec {
                dtype,
                ..spec.clone()
            })
            .encode()
            .unwrap(),
        )
        .unwrap();
        let a = ItemScanner::new(f32_art.item_factors().unwrap(), f32_art.item_bias_padded());
        let b = ItemScanner::new(q_art.item_factors().unwrap(), q_art.item_bias_padded());
        let mut shared = 0;
        for u in 0..spec.users {
            let ta = a.top_k(&user_query(&f32_art, &a, u), 10, |_| true);
            let tb = b.top_k(&user_query(&q_art, &b, u), 10, |_| true);
            shared += ta
                .iter()
                .filter(|x| tb.iter().any(|y| y.item == x.item))
                .count();
        }
        shared as f64 / (10 * spec.users) as f64
    };
    let (f16, int8) = (overlap(ElementType::F16), overlap(ElementType::Int8));
    assert!(f16 >= 0.98, "f16 top-10 overlap {f16}");
    assert!(int8 >= 0.85, "int8 top-10 overlap {int8}");
}

proptest::proptest! {
    /// TopK against sorting everything: any push order, many ties, any k
    /// (including k above the number of items and the 2k cut points).
    #[test]
    fn top_k_equals_sorting_everything(
        scores in proptest::collection::vec(0u8..12, 0..600),
        order_seed in 0u64..1000,
        k in 0usize..80,
    ) {
        let mut items: Vec<(u32, f32)> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| (i as u32, f32::from(s) * 0.5 - 2.0))
            .collect();
        let mut oracle = items.clone();
        oracle.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        oracle.truncate(k);
        // Push in a seeded shuffled order.
        let mut state = order_seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        for i in (1..items.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            items.swap(i, (state >> 33) as usize % (i + 1));
        }
        let mut top = TopK::new(k);
        for (i, s) in &items {
            top.push(*i, *s);
        }
        let got: Vec<(u32, f32)> = top.into_sorted().iter().map(|s| (s.item, s.score)).collect();
        proptest::prop_assert_eq!(got, oracle);
    }
}

#[test]
fn top_k_breaks_ties_by_lower_index() {
    let mut top = TopK::new(2);
    for (i, s) in [(5, 1.0), (3, 1.0), (9, 2.0), (1, 1.0)] {
        top.push(i, s);
    }
    let got: Vec<u32> = top.into_sorted().iter().map(|s| s.item).collect();
    assert_eq!(got, vec![9, 1]);
}

#[test]
fn neighbor_scoring_matches_brute_force() {
    let spec = SyntheticSpec {
        items: 300,
        ..common::small_spec(ElementType::F32)
    };
    let art = Artifact::from_bytes(&neighbors_model(&spec).encode().unwrap()).unwrap();
    let n = art.item_neighbors().unwrap();
    let history = [3u32, 17, 42, 99];
    let got = top_k_neighbors(&n, &history, None, 10, |i| !history.contains(&i));
    let mut dense = vec![0.0f32; 300];
    let mut touched = vec![false; 300];
    for &j in &history {
        for (&i, &w) in n
            .row(j as usize)
            .iter()
            .zip(n.row_weights(j as usize).unwrap())
        {
            dense[i as usize] += w;
            touched[i as usize] = true;
        }
    }
    let mut want: Vec<ScoredItem> = (0..300u32)
        .filter(|&i| touched[i as usize] && !history.contains(&i))
        .map(|i| ScoredItem {
            item: i,
            score: dense[i as usize],
        })
        .collect();
    want.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    want.truncate(10);
    assert_eq!(got, want);

    let similar = similar_by_neighbors(&n, 3, 3);
    assert!(similar.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(similar.iter().all(|s| n.contains(3, s.item)));
}
