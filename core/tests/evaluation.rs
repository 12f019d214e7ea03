//! Metrics against hand-computed cases; splits: RecBole's rounding,
//! determinism, and no leakage between slices.

use std::collections::HashSet;
use vitrine_core::dataset::{Interactions, InteractionsBuilder};
use vitrine_core::metrics::{RankingMetrics, mae, rmse, user_metrics};
use vitrine_core::split::{
    kfold_assignment, kfold_round, leave_last_out, recbole, recbole_counts, temporal,
};
use vitrine_core::synthetic::SplitMix64;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn ranking_metrics_by_hand() {
    // Ranked 1..5, relevant {2, 5, 9}: hits at ranks 2 and 5.
    let [p, r, f1, ndcg, map, mrr, hr] = user_metrics(&[1, 2, 3, 4, 5], &[2, 5, 9], 5);
    assert!(close(p, 0.4));
    assert!(close(r, 2.0 / 3.0));
    assert!(close(f1, 2.0 * 0.4 * (2.0 / 3.0) / (0.4 + 2.0 / 3.0)));
    let dcg = 1.0 / 3f64.log2() + 1.0 / 6f64.log2();
    let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
    assert!(close(ndcg, dcg / idcg), "{ndcg} vs {}", dcg / idcg);
    assert!(close(map, (1.0 / 2.0 + 2.0 / 5.0) / 3.0));
    assert!(close(mrr, 0.5));
    assert!(close(hr, 1.0));
    // Hand arithmetic: 0.47763 and 0.3.
    assert!((ndcg - 0.477_63).abs() < 1e-5 && close(map, 0.3));
}

#[test]
fn ranking_metric_edge_cases() {
    // Perfect ranking of 2 relevant items at K = 5.
    let m = user_metrics(&[7, 3, 1, 2, 4], &[3, 7], 5);
    assert!(
        close(m[0], 0.4)
            && close(m[1], 1.0)
            && close(m[3], 1.0)
            && close(m[4], 1.0)
            && close(m[5], 1.0)
    );
    // No hit at all.
    assert_eq!(user_metrics(&[1, 2, 3], &[9], 3), [0.0; 7]);
    // Fewer items ranked than K: precision still divides by K.
    let m = user_metrics(&[9], &[9], 10);
    assert!(close(m[0], 0.1) && close(m[1], 1.0) && close(m[3], 1.0));
    // Items beyond K do not count.
    assert_eq!(user_metrics(&[1, 2, 9], &[9], 2), [0.0; 7]);
}

#[test]
fn accumulator_averages_users_with_relevant_items_and_merges() {
    let mut all = RankingMetrics::new(2, 10);
    all.add(&[1, 2], &[1]); // precision 0.5, recall 1, hr 1
    all.add(&[3, 4], &[9]); // nothing
    all.add(&[5, 6], &[]); // counts for coverage only
    let out = all.finish();
    assert_eq!(all.users(), 2);
    assert!(
        close(out["precision@2"], 0.25) && close(out["recall@2"], 0.5) && close(out["hr@2"], 0.5)
    );
    assert!(close(out["coverage@2"], 0.6));
    assert_eq!(out.len(), 8);

    let (mut a, mut b) = (RankingMetrics::new(2, 10), RankingMetrics::new(2, 10));
    a.add(&[1, 2], &[1]);
    b.add(&[3, 4], &[9]);
    b.add(&[5, 6], &[]);
    a.merge(&b);
    assert_eq!(a.finish(), out);
}

#[test]
fn rating_errors() {
    assert!(close(rmse([(1.0, 2.0), (3.0, 3.0)]), 0.5f64.sqrt()));
    assert!(close(mae([(1.0, 2.0), (3.0, 3.0)]), 0.5));
    assert_eq!(rmse(std::iter::empty()), 0.0);
}

#[test]
fn recbole_rounding_matches_recbole() {
    let r = [0.8, 0.1, 0.1];
    assert_eq!(recbole_counts(10, &r), vec![8, 1, 1]);
    assert_eq!(recbole_counts(20, &r), vec![16, 2, 2]);
    assert_eq!(recbole_counts(5, &r), vec![3, 1, 1]);
    assert_eq!(recbole_counts(3, &r), vec![1, 1, 1]);
    assert_eq!(recbole_counts(2, &r), vec![1, 0, 1]);
    assert_eq!(recbole_counts(1, &r), vec![1, 0, 0]);
    assert_eq!(recbole_counts(29, &r), vec![25, 2, 2]);
}

/// 300 users × a few rated, timestamped interactions over 100 items.
fn synthetic_log(seed: u64) -> Interactions {
    let mut rng = SplitMix64::new(seed);
    let mut b = InteractionsBuilder::new(true, true);
    for u in 0..300 {
        let n = 1 + rng.below(30);
        for _ in 0..n {
            let item = format!("i{}", rng.below(100));
            b.push(
                &format!("u{u}"),
                &item,
                Some((1 + rng.below(5)) as f32),
                Some(rng.below(1_000_000) as i64),
            );
        }
    }
    b.finish()
}

fn assert_partition(split: &vitrine_core::split::Split, expected: &HashSet<usize>) {
    let (train, valid, test): (HashSet<_>, HashSet<_>, HashSet<_>) = (
        split.train.iter().copied().collect(),
        split.valid.iter().copied().collect(),
        split.test.iter().copied().collect(),
    );
    assert_eq!(
        train.len() + valid.len() + test.len(),
        split.train.len() + split.valid.len() + split.test.len(),
        "a row repeats"
    );
    assert!(
        train.is_disjoint(&valid) && train.is_disjoint(&test) && valid.is_disjoint(&test),
        "slices overlap"
    );
    let union: HashSet<usize> = train.union(&valid).chain(test.iter()).copied().collect();
    assert_eq!(
        &union, expected,
        "slices do not cover exactly the kept rows"
    );
}

#[test]
fn recbole_split_is_per_user_deterministic_and_leak_free() {
    let data = synthetic_log(1);
    let split = recbole(&data, [0.8, 0.1, 0.1], Some(3.0), 42);
    let kept: HashSet<usize> = (0..data.len()).filter(|&i| data.rating(i) >= 3.0).collect();
    assert_partition(&split, &kept);
    // Per user, the slice sizes are RecBole's counts.
    for (u, rows) in data.rows_by_user().into_iter().enumerate() {
        let n = rows.iter().filter(|&&i| data.rating(i) >= 3.0).count();
        if n == 0 {
            continue;
        }
        let count = |slice: &[usize]| {
            slice
                .iter()
                .filter(|&&i| data.users[i] as usize == u)
                .count()
        };
        assert_eq!(
            vec![count(&split.train), count(&split.valid), count(&split.test)],
            recbole_counts(n, &[0.8, 0.1, 0.1])
        );
    }
    assert_eq!(
        split,
        recbole(&data, [0.8, 0.1, 0.1], Some(3.0), 42),
        "same seed, same split"
    );
    assert_ne!(
        split,
        recbole(&data, [0.8, 0.1, 0.1], Some(3.0), 43),
        "another seed, another split"
    );
}

#[test]
fn kfold_is_a_partition() {
    let data = synthetic_log(2);
    let folds = kfold_assignment(data.len(), 5, 7);
    let mut sizes = [0usize; 5];
    for &f in &folds {
        sizes[f] += 1;
    }
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    let all: HashSet<usize> = (0..data.len()).collect();
    for (f, &size) in sizes.iter().enumerate() {
        let round = kfold_round(&folds, f);
        assert_partition(&round, &all);
        assert_eq!(round.test.len(), size);
    }
    assert_eq!(folds, kfold_assignment(data.len(), 5, 7));
}

#[test]
fn leave_last_out_holds_out_each_users_latest() {
    let data = synthetic_log(3);
    let split = leave_last_out(&data).unwrap();
    assert_partition(&split, &(0..data.len()).collect());
    let times = data.timestamps.as_ref().unwrap();
    for rows in data.rows_by_user() {
        let latest = rows.iter().copied().max_by_key(|&i| (times[i], i)).unwrap();
        if rows.len() >= 2 {
            assert!(split.test.contains(&latest));
        } else {
            assert!(split.train.contains(&latest));
        }
        // Nothing in train is later than the user's held-out rows.
        let held: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|i| split.test.contains(i) || split.valid.contains(i))
            .collect();
        for &t in rows.iter().filter(|i| split.train.contains(i)) {
            assert!(held.iter().all(|&h| (times[t], t) < (times[h], h)));
        }
    }
    let mut implicit = data.clone();
    implicit.timestamps = None;
    assert!(leave_last_out(&implicit).is_err());
}

#[test]
fn temporal_split_never_trains_on_the_future() {
    let data = synthetic_log(4);
    let split = temporal(&data, 0.1, 0.2).unwrap();
    assert_partition(&split, &(0..data.len()).collect());
    let t = data.timestamps.as_ref().unwrap();
    let max_train = split.train.iter().map(|&i| t[i]).max().unwrap();
    let min_valid = split.valid.iter().map(|&i| t[i]).min().unwrap();
    let max_valid = split.valid.iter().map(|&i| t[i]).max().unwrap();
    let min_test = split.test.iter().map(|&i| t[i]).min().unwrap();
    assert!(max_train <= min_valid && max_valid <= min_test);
    assert!((split.test.len() as f64 / data.len() as f64 - 0.2).abs() < 0.01);
    assert!(temporal(&data, 0.6, 0.5).is_err());
}
