//! What a transformation cost: top-10 agreement with the source model, the
//! largest score change, and ranking quality before and after on held-out
//! interactions — computed with the core's evaluation code, the same that
//! the trainer reports and the server's shadow gate uses.

use serde::Serialize;
use std::collections::BTreeMap;
use vitrine_core::evaluate::{UserCase, evaluate_ranking, rank_cases};
use vitrine_core::scan::ItemScanner;
use vitrine_core::{Artifact, ModelKind};

/// Per-user inputs of an evaluation, indexed by the *source* model's users.
#[derive(Debug, Default)]
pub struct EvalSet {
    /// What the user has seen (history for neighbour models, excluded).
    pub history: Vec<Vec<u32>>,
    /// Held-out items (source item indices).
    pub relevant: Vec<Vec<u32>>,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct Quality {
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
    #[serde(rename = "recall@10")]
    pub recall: f64,
    pub users: usize,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    #[serde(rename = "overlap@10")]
    pub overlap: f64,
    pub users_compared: usize,
    pub max_score_error: f64,
    pub score_error_users: usize,
    pub before: Option<Quality>,
    pub after: Option<Quality>,
    pub eval: String,
}

/// Maps `result`'s items to `source`'s item indices (by id).
fn item_map(source: &Artifact, result: &Artifact) -> Vec<u32> {
    let ids = source.item_ids();
    result
        .item_ids()
        .iter()
        .map(|id| {
            ids.index_of(id)
                .expect("result items are a subset of the source's")
        })
        .collect()
}

/// Dense scores of one user over every item of `art` (for the error bound).
fn all_scores(art: &Artifact, user: usize, history: &[u32]) -> Vec<f32> {
    let n = art.metadata().n_items;
    match art.metadata().kind {
        ModelKind::Embedding => {
            let (Some(users), Some(items)) = (art.user_factors(), art.item_factors()) else {
                return vec![0.0; n];
            };
            let scanner = ItemScanner::new(items, art.item_bias_padded());
            let mut q = vec![0.0; users.padded_dims];
            users.row_f32(user, &mut q);
            let offset = art.user_bias().map_or(0.0, |b| b[user]) + art.metadata().global_bias;
            let query = scanner.prepare(&q, offset);
            (0..n as u32).map(|i| scanner.score(&query, i)).collect()
        }
        ModelKind::ItemNeighbors => {
            let mut s = vec![0.0f32; n];
            if let Some(nb) = art.item_neighbors() {
                for &j in history {
                    let w = nb.row_weights(j as usize).unwrap_or(&[]);
                    for (&i, &x) in nb.row(j as usize).iter().zip(w) {
                        s[i as usize] += x;
                    }
                }
            }
            s
        }
    }
}

/// Users of the comparison sample: evenly spaced over users with a history,
/// at most `n`.
fn sample(users: usize, n: usize) -> Vec<u32> {
    if users <= n {
        return (0..users as u32).collect();
    }
    (0..n).map(|k| (k * users / n) as u32).collect()
}

fn quality(art: &Artifact, cases: &[UserCase<'_>], threads: usize) -> Option<Quality> {
    if cases.is_empty() {
        return None;
    }
    let m: BTreeMap<String, f64> = evaluate_ranking(art, cases, 10, threads).finish();
    Some(Quality {
        ndcg: m["ndcg@10"],
        recall: m["recall@10"],
        users: cases.len(),
    })
}

/// Compares `result` with `source`: both have the same users in the same
/// order; `result`'s items are a subset of `source`'s. `history` of the
/// result side is mapped to its own item indices.
pub fn compare(
    source: &Artifact,
    result: &Artifact,
    eval: &EvalSet,
    sample_users: usize,
    threads: usize,
) -> Comparison {
    let map = item_map(source, result);
    let n_source = source.metadata().n_items;
    let mut back = vec![u32::MAX; n_source];
    for (new, &old) in map.iter().enumerate() {
        back[old as usize] = new as u32;
    }
    // Items the result dropped are excluded on the source side too, so the
    // overlap measures ranking changes, not catalogue changes.
    let dropped: Vec<u32> = (0..n_source as u32)
        .filter(|&i| back[i as usize] == u32::MAX)
        .collect();
    let users = source.metadata().n_users;
    let to_result = |list: &[u32]| -> Vec<u32> {
        let mut v: Vec<u32> = list
            .iter()
            .map(|&i| back[i as usize])
            .filter(|&i| i != u32::MAX)
            .collect();
        v.sort_unstable();
        v
    };
    let empty = Vec::new();
    let hist = |u: usize| eval.history.get(u).unwrap_or(&empty);
    let source_excl: Vec<Vec<u32>> = (0..users)
        .map(|u| {
            let mut v: Vec<u32> = hist(u).iter().chain(&dropped).copied().collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let result_hist: Vec<Vec<u32>> = (0..users).map(|u| to_result(hist(u))).collect();
    let chosen = sample(users, sample_users);
    let src_cases: Vec<UserCase<'_>> = chosen
        .iter()
        .map(|&u| UserCase {
            user: u,
            history: hist(u as usize),
            exclude: &source_excl[u as usize],
            relevant: &[],
        })
        .collect();
    let res_cases: Vec<UserCase<'_>> = chosen
        .iter()
        .map(|&u| UserCase {
            user: u,
            history: &result_hist[u as usize],
            exclude: &result_hist[u as usize],
            relevant: &[],
        })
        .collect();
    let a = rank_cases(source, &src_cases, 10);
    let b = rank_cases(result, &res_cases, 10);
    let mut overlap = 0.0;
    for (x, y) in a.iter().zip(&b) {
        let y: Vec<u32> = y.iter().map(|&i| map[i as usize]).collect();
        let common = x.iter().filter(|i| y.contains(i)).count();
        overlap += common as f64 / x.len().max(1) as f64;
    }
    // Largest |Δscore| over all items for a bounded number of users (all
    // items × users ≤ 2·10⁷ score evaluations).
    let error_users = chosen.len().min((20_000_000 / map.len().max(1)).max(1));
    let mut max_err = 0.0f64;
    for &u in &chosen[..error_users] {
        let s = all_scores(source, u as usize, hist(u as usize));
        let r = all_scores(result, u as usize, &result_hist[u as usize]);
        for (new, &old) in map.iter().enumerate() {
            max_err = max_err.max(f64::from((s[old as usize] - r[new]).abs()));
        }
    }
    // Quality on held-out items.
    let rel_result: Vec<Vec<u32>> = eval.relevant.iter().map(|l| to_result(l)).collect();
    let eval_users: Vec<usize> = (0..eval.relevant.len().min(users))
        .filter(|&u| !rel_result[u].is_empty())
        .collect();
    let before_cases: Vec<UserCase<'_>> = eval_users
        .iter()
        .map(|&u| UserCase {
            user: u as u32,
            history: hist(u),
            exclude: hist(u),
            relevant: &eval.relevant[u],
        })
        .collect();
    let after_cases: Vec<UserCase<'_>> = eval_users
        .iter()
        .map(|&u| UserCase {
            user: u as u32,
            history: &result_hist[u],
            exclude: &result_hist[u],
            relevant: &rel_result[u],
        })
        .collect();
    Comparison {
        overlap: overlap / chosen.len().max(1) as f64,
        users_compared: chosen.len(),
        max_score_error: max_err,
        score_error_users: error_users,
        before: quality(source, &before_cases, threads),
        after: quality(result, &after_cases, threads),
        eval: eval.description.clone(),
    }
}
