//! One served model version: an open artifact plus what start-up derives from
//! it (popularity order, the fold-in Gram matrix, a coverage bitmap), and the
//! four operations the API exposes. No HTTP here: handlers translate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use vitrine_core::csr::Csr;
use vitrine_core::scan::{ItemFilter, ItemScanner, ScoredItem, TopK, top_k_neighbors};
use vitrine_core::{Artifact, ModelKind};

/// Why a request cannot be answered (mapped to 4xx by the API).
#[derive(Debug, PartialEq)]
pub enum QueryError {
    UnknownUser(String),
    UnknownItem(String),
    /// 400: a filter the model does not know or the config does not allow.
    BadFilter(String),
}

/// Attribute filters: every listed `key=value` is required.
#[derive(Debug, Default)]
pub struct Filter {
    pub required: Vec<String>,
}

/// A recommendation request, ids as given.
#[derive(Debug, Default)]
pub struct Query<'a> {
    pub user: Option<&'a str>,
    /// Session items (anonymous users, or added to a known user's history).
    pub history: &'a [String],
    pub exclude: &'a [String],
    pub filter: Filter,
    pub exclude_seen: bool,
    pub k: usize,
    /// Unknown user without history: answer from popularity (`true`) or
    /// fail with [`QueryError::UnknownUser`].
    pub popular_fallback: bool,
}

/// Items with scores, best first, and the fallback used, if any.
#[derive(Debug)]
pub struct Answer {
    pub items: Vec<ScoredItem>,
    pub fallback: Option<&'static str>,
}

/// The hot path in owned form: a known user of an embedding model, no
/// session. Batches of these share one pass over the items
/// ([`ServedModel::recommend_users`]), which is what micro-batching feeds.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub user: usize,
    pub k: usize,
    pub exclude_seen: bool,
    /// Sorted, unique item indices.
    pub exclude: Vec<u32>,
    /// Required attribute indices.
    pub required: Vec<u32>,
}

/// Implicit-ALS fold-in (Hu et al.): for a session history H, the user
/// vector solves (VᵀV + (α−1) Σ_{i∈H} v_i v_iᵀ + λI) x = α Σ_{i∈H} v_i —
/// one exact ALS user step. α and λ are the model's own for ALS, the
/// trainer's ALS defaults (3, 0.5) for other embedding models.
#[derive(Debug)]
struct FoldIn {
    dims: usize,
    gram: Vec<f64>,
    alpha: f64,
    reg: f64,
}

#[derive(Debug)]
pub struct ServedModel {
    pub name: String,
    pub version: u64,
    pub path: PathBuf,
    pub artifact: Artifact,
    /// Item indices, most popular first (fallback and fill-up order).
    popular: Vec<u32>,
    /// Computed on the first session request: items × d² work that would
    /// otherwise delay start-up (1M items × 64 dims ≈ 4·10⁹ operations).
    fold_in: std::sync::OnceLock<Option<FoldIn>>,
    /// Items ever returned by this version (coverage estimate).
    served: Vec<AtomicU64>,
    served_count: AtomicUsize,
    /// Second stage (`bundle.toml` + ONNX), if the version has one.
    pub ranker: Option<crate::ranker::Ranker>,
}

impl ServedModel {
    pub fn new(name: &str, version: u64, path: PathBuf, artifact: Artifact) -> Self {
        let n = artifact.metadata().n_items;
        let mut popular: Vec<u32> = (0..n as u32).collect();
        if let Some(p) = artifact.item_popularity() {
            popular.sort_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
        }
        Self {
            name: name.to_string(),
            version,
            path,
            artifact,
            popular,
            fold_in: std::sync::OnceLock::new(),
            served: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            served_count: AtomicUsize::new(0),
            ranker: None,
        }
    }

    pub fn with_ranker(mut self, ranker: Option<crate::ranker::Ranker>) -> Self {
        self.ranker = ranker;
        self
    }

    /// How many items the first stage retrieves for a final `k`.
    fn retrieve(&self, k: usize) -> usize {
        self.ranker.as_ref().map_or(k, |r| r.candidates.max(k))
    }

    /// Re-ranks retrieved items with the second stage (when there is one)
    /// and keeps `k`. A ranker failure keeps the first-stage order (and is
    /// logged): a broken second stage must not fail requests.
    fn rerank(
        &self,
        mut items: Vec<ScoredItem>,
        user: &crate::ranker::UserContext<'_>,
        k: usize,
    ) -> Vec<ScoredItem> {
        if let Some(r) = &self.ranker {
            let n = items.len().min(r.candidates);
            let pairs: Vec<(u32, f32)> = items[..n].iter().map(|s| (s.item, s.score)).collect();
            match r.score(&self.artifact, user, &pairs) {
                Ok(scores) => {
                    items.truncate(n);
                    for (s, v) in items.iter_mut().zip(scores) {
                        s.score = v;
                    }
                    // Stable: equal ranker scores keep the first-stage order.
                    items.sort_by(|a, b| b.score.total_cmp(&a.score));
                }
                Err(e) => tracing::warn!(model = %self.name, version = self.version, error = %e,
                                         "ranker failed; first-stage order kept"),
            }
        }
        items.truncate(k);
        items
    }

    fn user_vector(&self, u: usize) -> Option<Vec<f32>> {
        let users = self.artifact.user_factors()?;
        let mut row = vec![0.0; users.padded_dims];
        users.row_f32(u, &mut row);
        Some(row)
    }

    pub fn n_items(&self) -> usize {
        self.artifact.metadata().n_items
    }

    /// Share of the catalogue this version has returned at least once.
    pub fn coverage(&self) -> f64 {
        self.served_count.load(Ordering::Relaxed) as f64 / self.n_items().max(1) as f64
    }

    fn note_served(&self, items: &[ScoredItem]) {
        for s in items {
            let (word, bit) = (s.item as usize / 64, 1u64 << (s.item % 64));
            if self.served[word].fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                self.served_count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn item_index(&self, id: &str) -> Option<u32> {
        self.artifact.item_ids().index_of(id)
    }

    pub fn item_id(&self, index: u32) -> &str {
        self.artifact.item_ids().id(index as usize)
    }

    fn user_index(&self, id: &str) -> Option<usize> {
        self.artifact
            .user_ids()
            .and_then(|t| t.index_of(id))
            .map(|u| u as usize)
    }

    fn seen(&self, user: usize) -> &[u32] {
        self.artifact.seen_items().map_or(&[][..], |s| s.row(user))
    }

    /// Known item indices of `ids` (unknown ids are skipped: a new product
    /// in a session or exclusion list is not an error), sorted, unique.
    fn known_items(&self, ids: &[String]) -> Vec<u32> {
        let mut v: Vec<u32> = ids.iter().filter_map(|id| self.item_index(id)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn required_attributes(
        &self,
        filter: &Filter,
    ) -> Result<Option<(Csr<'_>, Vec<u32>)>, QueryError> {
        if filter.required.is_empty() {
            return Ok(None);
        }
        let (Some(names), Some(attrs)) = (
            self.artifact.attribute_names(),
            self.artifact.item_attributes(),
        ) else {
            return Err(QueryError::BadFilter(format!(
                "model {} has no item attributes to filter on",
                self.name
            )));
        };
        let mut ids = Vec::new();
        for r in &filter.required {
            ids.push(names.index_of(r).ok_or_else(|| {
                QueryError::BadFilter(format!(
                    "no item of model {} has attribute {r:?}",
                    self.name
                ))
            })?);
        }
        Ok(Some((attrs, ids)))
    }

    /// The owned hot-path form of `q`, when it is one (embedding model,
    /// known user, no session).
    pub fn user_query(&self, q: &Query<'_>) -> Result<Option<UserQuery>, QueryError> {
        if self.artifact.metadata().kind != ModelKind::Embedding || !q.history.is_empty() {
            return Ok(None);
        }
        let Some(user) = q.user.and_then(|id| self.user_index(id)) else {
            return Ok(None);
        };
        let required = match self.required_attributes(&q.filter)? {
            Some((_, ids)) => ids,
            None => Vec::new(),
        };
        Ok(Some(UserQuery {
            user,
            k: q.k,
            exclude_seen: q.exclude_seen,
            exclude: self.known_items(q.exclude),
            required,
        }))
    }

    /// Answers several hot-path queries with one pass over the items per
    /// [`vitrine_core::simd::MAX_BATCH`] queries. Same results as answering
    /// each alone (int8 scores identical; float scores may differ in the
    /// last bits through summation order).
    pub fn recommend_users(&self, queries: &[UserQuery]) -> Vec<Vec<ScoredItem>> {
        let scanner = self.scanner();
        let users = self.artifact.user_factors().expect("embedding model");
        let mut row = vec![0.0; users.padded_dims];
        let prepared: Vec<_> = queries
            .iter()
            .map(|q| {
                users.row_f32(q.user, &mut row);
                let offset = self.artifact.user_bias().map_or(0.0, |b| b[q.user])
                    + self.artifact.metadata().global_bias;
                scanner.prepare(&row, offset)
            })
            .collect();
        let filters: Vec<ItemFilter<'_>> = queries
            .iter()
            .map(|q| {
                let mut f = ItemFilter::new();
                if q.exclude_seen {
                    f = f.exclude_sorted(self.seen(q.user));
                }
                if !q.exclude.is_empty() {
                    f = f.exclude_sorted(&q.exclude);
                }
                if !q.required.is_empty()
                    && let Some(attrs) = self.artifact.item_attributes()
                {
                    f = f.require(attrs, q.required.clone());
                }
                f
            })
            .collect();
        let k = queries
            .iter()
            .map(|q| self.retrieve(q.k))
            .max()
            .unwrap_or(0);
        let results = scanner.top_k_batch(&prepared, k, |j, item| filters[j].accepts(item));
        results
            .into_iter()
            .zip(queries)
            .map(|(mut r, q)| {
                r.truncate(self.retrieve(q.k));
                let v = self.ranker.as_ref().and_then(|_| self.user_vector(q.user));
                let ctx = crate::ranker::UserContext {
                    activity: self.seen(q.user).len() as f32,
                    vector: v.as_deref(),
                };
                let r = self.rerank(r, &ctx, q.k);
                self.note_served(&r);
                r
            })
            .collect()
    }

    pub fn recommend(&self, q: &Query<'_>) -> Result<Answer, QueryError> {
        let user = match q.user {
            Some(id) => match self.user_index(id) {
                Some(u) => Some(u),
                None if q.history.is_empty() && !q.popular_fallback => {
                    return Err(QueryError::UnknownUser(id.to_string()));
                }
                None => None,
            },
            None => None,
        };
        let session = self.known_items(q.history);
        let mut filter = ItemFilter::new();
        if let Some(u) = user
            && q.exclude_seen
        {
            filter = filter.exclude_sorted(self.seen(u));
        }
        let mut excluded = self.known_items(q.exclude);
        if q.exclude_seen {
            excluded.extend_from_slice(&session);
        }
        filter = filter.exclude(excluded);
        if let Some((attrs, ids)) = self.required_attributes(&q.filter)? {
            filter = filter.require(attrs, ids);
        }
        let k = q.k;
        let answer = match (self.artifact.metadata().kind, user, session.is_empty()) {
            (_, None, true) => {
                if !q.popular_fallback {
                    return Err(QueryError::UnknownUser(q.user.unwrap_or("").to_string()));
                }
                Answer {
                    items: self.popular_top(k, &filter, &[]),
                    fallback: Some("popular"),
                }
            }
            (ModelKind::Embedding, Some(u), _) if session.is_empty() => {
                let (scanner, query) = self.prepared_user(u);
                let items = scanner.top_k(&query, self.retrieve(k), |i| filter.accepts(i));
                let v = self.ranker.as_ref().and_then(|_| self.user_vector(u));
                let ctx = crate::ranker::UserContext {
                    activity: self.seen(u).len() as f32,
                    vector: v.as_deref(),
                };
                Answer {
                    items: self.rerank(items, &ctx, k),
                    fallback: None,
                }
            }
            (ModelKind::Embedding, _, _) => {
                // A session (with or without a known user): fold the
                // history in; a known user's seen items join it.
                let mut history = session.clone();
                if let Some(u) = user {
                    history.extend_from_slice(self.seen(u));
                    history.sort_unstable();
                    history.dedup();
                }
                let scanner = self.scanner();
                let x = self.fold_in_vector(&history);
                let query = scanner.prepare(&x, self.artifact.metadata().global_bias);
                let items = scanner.top_k(&query, self.retrieve(k), |i| filter.accepts(i));
                let ctx = crate::ranker::UserContext {
                    activity: history.len() as f32,
                    vector: Some(&x),
                };
                Answer {
                    items: self.rerank(items, &ctx, k),
                    fallback: None,
                }
            }
            (ModelKind::ItemNeighbors, _, _) => {
                let mut history = session.clone();
                if let Some(u) = user {
                    history.extend_from_slice(self.seen(u));
                    history.sort_unstable();
                    history.dedup();
                }
                let neighbors = self.artifact.item_neighbors().expect("validated");
                let items = top_k_neighbors(&neighbors, &history, None, self.retrieve(k), |i| {
                    filter.accepts(i)
                });
                let ctx = crate::ranker::UserContext {
                    activity: history.len() as f32,
                    vector: None,
                };
                let mut items = self.rerank(items, &ctx, k);
                // Fewer than k connected items qualify: fill with the most
                // popular qualifying items (score 0), so k come back
                // whenever k items qualify.
                if items.len() < k {
                    let have: Vec<u32> = items.iter().map(|s| s.item).collect();
                    items.extend(
                        self.popular_top(k - items.len(), &filter, &have)
                            .into_iter()
                            .map(|mut s| {
                                s.score = 0.0;
                                s
                            }),
                    );
                }
                Answer {
                    items,
                    fallback: None,
                }
            }
        };
        self.note_served(&answer.items);
        Ok(answer)
    }

    /// Items most similar to `item`: nearest by dot product of item factors
    /// (embedding models) or heaviest neighbour weights (item-neighbour
    /// models), the item itself excluded.
    pub fn similar(
        &self,
        item: &str,
        k: usize,
        exclude: &[String],
        filter: &Filter,
    ) -> Result<Answer, QueryError> {
        let i = self
            .item_index(item)
            .ok_or_else(|| QueryError::UnknownItem(item.to_string()))?;
        let mut excluded = self.known_items(exclude);
        excluded.push(i);
        let mut f = ItemFilter::new().exclude(excluded);
        if let Some((attrs, ids)) = self.required_attributes(filter)? {
            f = f.require(attrs, ids);
        }
        let items = match self.artifact.metadata().kind {
            ModelKind::Embedding => {
                let scanner = self.scanner();
                let m = scanner.items();
                let mut v = vec![0.0; m.padded_dims];
                m.row_f32(i as usize, &mut v);
                let query = scanner.prepare(&v, 0.0);
                scanner.top_k(&query, k, |j| f.accepts(j))
            }
            ModelKind::ItemNeighbors => {
                let nb = self.artifact.item_neighbors().expect("validated");
                let mut top = TopK::new(k);
                if let Some(w) = nb.row_weights(i as usize) {
                    for (&j, &w) in nb.row(i as usize).iter().zip(w) {
                        if f.accepts(j) {
                            top.push(j, w);
                        }
                    }
                }
                top.into_sorted()
            }
        };
        Ok(Answer {
            items,
            fallback: None,
        })
    }

    /// Scores of `items` for the user (or session), in the given order.
    pub fn score(
        &self,
        user: Option<&str>,
        history: &[String],
        items: &[String],
        popular_fallback: bool,
    ) -> Result<(Vec<f32>, Option<&'static str>), QueryError> {
        let idx: Vec<u32> = items
            .iter()
            .map(|id| {
                self.item_index(id)
                    .ok_or_else(|| QueryError::UnknownItem(id.clone()))
            })
            .collect::<Result<_, _>>()?;
        let u = match user {
            Some(id) => match self.user_index(id) {
                Some(u) => Some(u),
                None if history.is_empty() && !popular_fallback => {
                    return Err(QueryError::UnknownUser(id.to_string()));
                }
                None => None,
            },
            None => None,
        };
        let session = self.known_items(history);
        if u.is_none() && session.is_empty() {
            if !popular_fallback {
                return Err(QueryError::UnknownUser(user.unwrap_or("").to_string()));
            }
            let p = self.artifact.item_popularity();
            return Ok((
                idx.iter()
                    .map(|&i| p.map_or(0.0, |p| p[i as usize]))
                    .collect(),
                Some("popular"),
            ));
        }
        let mut history = session;
        if let Some(u) = u {
            history.extend_from_slice(self.seen(u));
            history.sort_unstable();
            history.dedup();
        }
        let scores = match self.artifact.metadata().kind {
            ModelKind::Embedding => {
                let scanner = self.scanner();
                let query = match u {
                    Some(u) if history.len() == self.seen(u).len() => self.prepared_user(u).1,
                    _ => scanner.prepare(
                        &self.fold_in_vector(&history),
                        self.artifact.metadata().global_bias,
                    ),
                };
                idx.iter().map(|&i| scanner.score(&query, i)).collect()
            }
            ModelKind::ItemNeighbors => {
                let nb = self.artifact.item_neighbors().expect("validated");
                idx.iter()
                    .map(|&i| {
                        history
                            .iter()
                            .filter_map(|&j| {
                                let row = nb.row(j as usize);
                                row.binary_search(&i)
                                    .ok()
                                    .map(|p| nb.row_weights(j as usize).map_or(0.0, |w| w[p]))
                            })
                            .sum()
                    })
                    .collect()
            }
        };
        Ok((scores, None))
    }

    fn scanner(&self) -> ItemScanner<'_> {
        ItemScanner::new(
            self.artifact.item_factors().expect("embedding model"),
            self.artifact.item_bias_padded(),
        )
    }

    fn prepared_user(&self, u: usize) -> (ItemScanner<'_>, vitrine_core::scan::PreparedQuery) {
        let scanner = self.scanner();
        let users = self.artifact.user_factors().expect("embedding model");
        let mut row = vec![0.0; users.padded_dims];
        users.row_f32(u, &mut row);
        let offset =
            self.artifact.user_bias().map_or(0.0, |b| b[u]) + self.artifact.metadata().global_bias;
        let query = scanner.prepare(&row, offset);
        (scanner, query)
    }

    /// The fold-in user vector for `history` (see [`FoldIn`]), clamped to
    /// the format's magnitude bound so scores stay finite.
    fn fold_in_vector(&self, history: &[u32]) -> Vec<f32> {
        let f = self
            .fold_in
            .get_or_init(|| fold_in_for(&self.artifact))
            .as_ref()
            .expect("embedding model");
        let d = f.dims;
        let items = self.artifact.item_factors().expect("embedding model");
        let mut a = f.gram.clone();
        for i in 0..d {
            a[i * d + i] += f.reg;
        }
        let mut b = vec![0.0f64; d];
        let mut v = vec![0.0f32; items.padded_dims];
        for &i in history {
            items.row_f32(i as usize, &mut v);
            for r in 0..d {
                let vr = f64::from(v[r]);
                b[r] += f.alpha * vr;
                for c in 0..d {
                    a[r * d + c] += (f.alpha - 1.0) * vr * f64::from(v[c]);
                }
            }
        }
        let x = solve_spd(&mut a, &mut b, d);
        let bound = f64::from(vitrine_core::matrix::MAX_ABS_VALUE);
        x.iter().map(|&v| v.clamp(-bound, bound) as f32).collect()
    }

    fn popular_top(&self, k: usize, filter: &ItemFilter<'_>, skip: &[u32]) -> Vec<ScoredItem> {
        let p = self.artifact.item_popularity();
        self.popular
            .iter()
            .copied()
            .filter(|i| filter.accepts(*i) && !skip.contains(i))
            .take(k)
            .map(|item| ScoredItem {
                item,
                score: p.map_or(0.0, |p| p[item as usize]),
            })
            .collect()
    }
}

fn fold_in_for(art: &Artifact) -> Option<FoldIn> {
    let items = art.item_factors()?;
    let d = items.dims;
    let mut gram = vec![0.0f64; d * d];
    let mut v = vec![0.0f32; items.padded_dims];
    for i in 0..art.metadata().n_items {
        items.row_f32(i, &mut v);
        for r in 0..d {
            let vr = f64::from(v[r]);
            for c in 0..d {
                gram[r * d + c] += vr * f64::from(v[c]);
            }
        }
    }
    let meta = art.metadata();
    let param = |key: &str, default: f64| {
        if meta.algorithm == "als" {
            meta.params
                .get(key)
                .and_then(|v| v.as_f64())
                .unwrap_or(default)
        } else {
            default
        }
    };
    Some(FoldIn {
        dims: d,
        gram,
        alpha: param("alpha", 3.0),
        reg: param("reg", 0.5).max(1e-6),
    })
}

/// Solves A x = b for symmetric positive definite A (d × d, row-major) by
/// Cholesky; A and b are overwritten. A is positive definite here because
/// λ > 0 is on its diagonal and every other term is a Gram matrix.
fn solve_spd(a: &mut [f64], b: &mut [f64], d: usize) -> Vec<f64> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        let l = s.max(1e-12).sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / l;
        }
    }
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * d + k] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= a[k * d + i] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], x = [1, -1] → b = [2, -1].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, -1.0];
        let x = solve_spd(&mut a, &mut b, 2);
        assert!(
            (x[0] - 1.0).abs() < 1e-12 && (x[1] + 1.0).abs() < 1e-12,
            "{x:?}"
        );
    }
}
