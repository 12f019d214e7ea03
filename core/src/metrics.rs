//! Evaluation metrics, shared by the trainer's reports and the server's
//! shadow gate, so both compute the very same numbers.
//!
//! Ranking metrics at K follow RecBole's definitions (so figures on the
//! `recbole` protocol compare with published ones). For one user with ranked
//! list `r` (best first) and relevant set `R`, `hit_i = [r_i ∈ R]`, i < K:
//!
//! | key | per-user value |
//! |---|---|
//! | `precision@K` | Σ hit / K |
//! | `recall@K` | Σ hit / \|R\| |
//! | `f1@K` | 2·P·R / (P + R) (0 when both are 0) |
//! | `ndcg@K` | Σ hit_i / log2(i + 2)  ÷  Σ_{i < min(\|R\|, K)} 1 / log2(i + 2) |
//! | `map@K` | Σ hit_i · (hits in r_0..=r_i) / (i + 1)  ÷  min(\|R\|, K) |
//! | `mrr@K` | 1 / (rank of the first hit), 0 without a hit |
//! | `hr@K` | 1 if any hit, else 0 |
//!
//! Each is averaged over users with at least one relevant item.
//! `coverage@K` is catalogue-wide: distinct items in all top-K lists ÷ items.
//! Rating errors: `rmse` and `mae` over (prediction, truth) pairs.

use std::collections::BTreeMap;

/// Metric names, in report order.
pub const RANKING_METRICS: [&str; 7] = ["precision", "recall", "f1", "ndcg", "map", "mrr", "hr"];

/// One user's ranking metrics at K, in the order of [`RANKING_METRICS`].
pub fn user_metrics(ranked: &[u32], relevant_sorted: &[u32], k: usize) -> [f64; 7] {
    debug_assert!(relevant_sorted.windows(2).all(|w| w[0] < w[1]));
    let n_rel = relevant_sorted.len();
    if n_rel == 0 || k == 0 {
        return [0.0; 7];
    }
    let (mut hits, mut dcg, mut ap, mut rr) = (0usize, 0.0f64, 0.0f64, 0.0f64);
    for (i, item) in ranked.iter().take(k).enumerate() {
        if relevant_sorted.binary_search(item).is_ok() {
            hits += 1;
            dcg += 1.0 / ((i + 2) as f64).log2();
            ap += hits as f64 / (i + 1) as f64;
            if rr == 0.0 {
                rr = 1.0 / (i + 1) as f64;
            }
        }
    }
    let idcg: f64 = (0..n_rel.min(k))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let precision = hits as f64 / k as f64;
    let recall = hits as f64 / n_rel as f64;
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let ndcg = dcg / idcg;
    let map = ap / n_rel.min(k) as f64;
    let hr = f64::from(u8::from(hits > 0));
    [precision, recall, f1, ndcg, map, rr, hr]
}

/// Accumulates ranking metrics over users.
#[derive(Clone, Debug)]
pub struct RankingMetrics {
    k: usize,
    n_items: usize,
    sums: [f64; 7],
    users: usize,
    recommended: Vec<bool>,
}

impl RankingMetrics {
    pub fn new(k: usize, n_items: usize) -> Self {
        Self {
            k,
            n_items,
            sums: [0.0; 7],
            users: 0,
            recommended: vec![false; n_items],
        }
    }

    /// Adds one user: `ranked` best first (at least K long when the catalogue
    /// allows), `relevant_sorted` their held-out items. Users with nothing
    /// relevant still count towards coverage but not the averages.
    pub fn add(&mut self, ranked: &[u32], relevant_sorted: &[u32]) {
        for &item in ranked.iter().take(self.k) {
            if let Some(seen) = self.recommended.get_mut(item as usize) {
                *seen = true;
            }
        }
        if relevant_sorted.is_empty() {
            return;
        }
        let m = user_metrics(ranked, relevant_sorted, self.k);
        for (sum, v) in self.sums.iter_mut().zip(m) {
            *sum += v;
        }
        self.users += 1;
    }

    /// Users counted in the averages.
    pub fn users(&self) -> usize {
        self.users
    }

    /// Merges another accumulator (e.g. from another thread).
    pub fn merge(&mut self, other: &RankingMetrics) {
        assert_eq!(
            (self.k, self.n_items),
            (other.k, other.n_items),
            "merging metrics of different K or catalogue"
        );
        for (a, b) in self.sums.iter_mut().zip(other.sums) {
            *a += b;
        }
        self.users += other.users;
        for (a, b) in self.recommended.iter_mut().zip(&other.recommended) {
            *a |= *b;
        }
    }

    /// The averages, keyed like `"ndcg@10"`, plus `"coverage@10"`.
    pub fn finish(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (name, sum) in RANKING_METRICS.iter().zip(self.sums) {
            let mean = if self.users > 0 {
                sum / self.users as f64
            } else {
                0.0
            };
            out.insert(format!("{name}@{}", self.k), mean);
        }
        let covered = self.recommended.iter().filter(|&&r| r).count();
        let coverage = if self.n_items > 0 {
            covered as f64 / self.n_items as f64
        } else {
            0.0
        };
        out.insert(format!("coverage@{}", self.k), coverage);
        out
    }
}

/// Root mean squared error of (prediction, truth) pairs (0 for none).
pub fn rmse(pairs: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (sum, n) = pairs.into_iter().fold((0.0, 0usize), |(s, n), (p, t)| {
        (s + (p - t) * (p - t), n + 1)
    });
    if n == 0 { 0.0 } else { (sum / n as f64).sqrt() }
}

/// Mean absolute error of (prediction, truth) pairs (0 for none).
pub fn mae(pairs: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (sum, n) = pairs
        .into_iter()
        .fold((0.0, 0usize), |(s, n), (p, t)| (s + (p - t).abs(), n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}
