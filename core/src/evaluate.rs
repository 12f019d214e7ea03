//! Ranking evaluation of an artifact: for each user, rank the whole catalogue
//! the way the server would (the artifact's own scoring, exclusions inside
//! the scan) and score the list against held-out items with
//! [`crate::metrics`]. The trainer's reports and the server's shadow gate
//! both call this, so they compute the very same numbers.

use crate::metrics::RankingMetrics;
use crate::scan::{ItemScanner, PreparedQuery, top_k_neighbors};
use crate::simd::MAX_BATCH;
use crate::{Artifact, ModelKind};

/// One user to evaluate: dense user index, the items that form their history
/// (input to item-neighbour models), the items never to recommend (e.g.
/// train + validation), and the held-out relevant items. Lists are sorted.
#[derive(Clone, Copy, Debug)]
pub struct UserCase<'a> {
    pub user: u32,
    pub history: &'a [u32],
    pub exclude: &'a [u32],
    pub relevant: &'a [u32],
}

/// Ranks the catalogue for every case and accumulates metrics at `k`,
/// using up to `threads` threads (results do not depend on it).
pub fn evaluate_ranking(
    art: &Artifact,
    cases: &[UserCase<'_>],
    k: usize,
    threads: usize,
) -> RankingMetrics {
    let n_items = art.metadata().n_items;
    let threads = threads.clamp(1, 16);
    let chunk = cases.len().div_ceil(threads).max(1);
    let partials: Vec<RankingMetrics> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .map(|part| s.spawn(move || evaluate_part(art, part, k)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("evaluation thread panicked"))
            .collect()
    });
    let mut total = RankingMetrics::new(k, n_items);
    for p in &partials {
        total.merge(p);
    }
    total
}

fn evaluate_part(art: &Artifact, cases: &[UserCase<'_>], k: usize) -> RankingMetrics {
    let mut metrics = RankingMetrics::new(k, art.metadata().n_items);
    for (case, ranked) in cases.iter().zip(rank_cases(art, cases, k)) {
        metrics.add(&ranked, case.relevant);
    }
    metrics
}

/// The top `k` items of each case (best first, exclusions applied), ranked
/// as the server ranks them: the artifact's own scoring, batched scans for
/// embedding models.
pub fn rank_cases(art: &Artifact, cases: &[UserCase<'_>], k: usize) -> Vec<Vec<u32>> {
    rank_cases_scored(art, cases, k)
        .into_iter()
        .map(|top| top.iter().map(|s| s.item).collect())
        .collect()
}

/// [`rank_cases`] with the scores the server's first stage reports (the
/// trainer fits second-stage rankers on them).
pub fn rank_cases_scored(
    art: &Artifact,
    cases: &[UserCase<'_>],
    k: usize,
) -> Vec<Vec<crate::scan::ScoredItem>> {
    let mut lists = Vec::with_capacity(cases.len());
    match art.metadata().kind {
        ModelKind::Embedding => {
            let (Some(users), Some(items)) = (art.user_factors(), art.item_factors()) else {
                return lists;
            };
            let scanner = ItemScanner::new(items, art.item_bias_padded());
            let mut row = vec![0.0; users.padded_dims];
            for batch in cases.chunks(MAX_BATCH) {
                let queries: Vec<PreparedQuery> = batch
                    .iter()
                    .map(|c| {
                        users.row_f32(c.user as usize, &mut row);
                        let offset = art.user_bias().map_or(0.0, |b| b[c.user as usize])
                            + art.metadata().global_bias;
                        scanner.prepare(&row, offset)
                    })
                    .collect();
                let results = scanner.top_k_batch(&queries, k, |j, item| {
                    batch[j].exclude.binary_search(&item).is_err()
                });
                lists.extend(results);
            }
        }
        ModelKind::ItemNeighbors => {
            let Some(neighbors) = art.item_neighbors() else {
                return lists;
            };
            for case in cases {
                let top = top_k_neighbors(&neighbors, case.history, None, k, |item| {
                    case.exclude.binary_search(&item).is_err()
                });
                lists.push(top);
            }
        }
    }
    lists
}
