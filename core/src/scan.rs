//! Top-K catalog scans over the item factor matrix.
//!
//! A scan walks the 16-item blocks once, scores each block with the SIMD block
//! kernel for up to [`MAX_BATCH`] queries at a time, and keeps the best `k` per
//! query. Exclusions and filters are a predicate consulted *inside* the scan,
//! only for items that would enter the top K, so an answer is never short
//! because of filtering when at least `k` items qualify.
//!
//! Score of item i for a prepared query q (identical in every path, so scan and
//! [`ItemScanner::score`] agree to the bit):
//! - f32/f16: `dot(q, item_i) + item_bias_i + q.offset`
//! - int8: `(dot_i8(q8, item8_i) as f32 · (q.scale · scale_i) + item_bias_i) + q.offset`
//!
//! where `offset` is the per-query constant (user bias + global bias).
//!
//! int8 scores are exact integer dot products followed by the same float
//! operations everywhere, so they are identical across kernels and batch
//! sizes. f32/f16 sums are accumulated in a different order per batch size
//! (to hide multiply-add latency), so the same item can differ in the last
//! bits between a batched and a single scan; rankings only differ on near-ties.

use crate::matrix::{Matrix, MatrixData, quantize_row};
use crate::simd::{BLOCK, BlockOutput, Epilogue, Kernels, MAX_BATCH, QueryI8, kernels};
use std::cmp::Ordering;

/// One recommended item: dense index and score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredItem {
    pub item: u32,
    pub score: f32,
}

/// Best first: higher score, then (on equal scores) the lower item index.
fn best_first(a: &ScoredItem, b: &ScoredItem) -> Ordering {
    b.score.total_cmp(&a.score).then(a.item.cmp(&b.item))
}

/// The best `k` items seen so far. Ties break towards the lower item index,
/// so results are deterministic.
///
/// Candidates are appended to a buffer; when it holds `2k` they are cut
/// back to the best `k` by selection (O(k)), which also raises the
/// threshold. Pushing is O(1) amortised whatever `k` is — a binary heap
/// costs O(log k) per entering item, which dominated re-ranking requests
/// that retrieve 200 candidates (docs/BENCHMARKS.md).
#[derive(Debug)]
pub struct TopK {
    k: usize,
    kept: Vec<ScoredItem>,
    /// The worst kept score after the last cut (or once `k` are held);
    /// anything below it can never enter.
    floor: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            kept: Vec::with_capacity(2 * k),
            floor: f32::NEG_INFINITY,
        }
    }

    /// A score must reach this to enter (a tie with the worst kept item
    /// enters only with a lower index).
    pub fn threshold(&self) -> f32 {
        if self.k == 0 {
            f32::INFINITY
        } else {
            self.floor
        }
    }

    pub fn push(&mut self, item: u32, score: f32) {
        if self.k == 0 || score < self.floor {
            return;
        }
        self.kept.push(ScoredItem { item, score });
        if self.kept.len() == self.k && self.floor == f32::NEG_INFINITY {
            // First time full: the worst of the k is a valid floor.
            self.floor = self
                .kept
                .iter()
                .map(|s| s.score)
                .fold(f32::INFINITY, f32::min);
        } else if self.kept.len() >= 2 * self.k {
            self.cut();
        }
    }

    /// Keeps the best `k` and raises the floor to the worst of them.
    fn cut(&mut self) {
        if self.kept.len() > self.k {
            self.kept.select_nth_unstable_by(self.k - 1, best_first);
            self.kept.truncate(self.k);
            self.floor = self.kept[self.k - 1].score;
        }
    }

    /// Best first.
    pub fn into_sorted(mut self) -> Vec<ScoredItem> {
        self.kept.sort_unstable_by(best_first);
        self.kept.truncate(self.k);
        self.kept
    }
}

/// A query vector prepared for one scanner: padded, and quantised when the
/// items are int8.
#[derive(Clone, Debug)]
pub struct PreparedQuery {
    values: Vec<f32>,
    values_i8: Vec<i8>,
    scale: f32,
    offset: f32,
}

/// Scores queries against an item factor matrix (block layout).
#[derive(Clone, Copy, Debug)]
pub struct ItemScanner<'a> {
    items: Matrix<'a>,
    /// Item biases padded to whole blocks.
    bias: Option<&'a [f32]>,
    kernels: &'static Kernels,
}

impl<'a> ItemScanner<'a> {
    pub fn new(items: Matrix<'a>, bias_padded: Option<&'a [f32]>) -> Self {
        assert!(items.blocked, "item scanner needs the block layout");
        if let Some(b) = bias_padded {
            assert_eq!(
                b.len(),
                items.blocks() * BLOCK,
                "bias must be padded to whole blocks"
            );
        }
        Self {
            items,
            bias: bias_padded,
            kernels: kernels(),
        }
    }

    /// Uses a specific kernel table (benches and tests compare them).
    pub fn with_kernels(mut self, kernels: &'static Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    pub fn items(&self) -> &Matrix<'a> {
        &self.items
    }

    /// Prepares `query` (`dims` or `padded_dims` long); `offset` is added to
    /// every score (user bias + global bias). Scores are finite when the
    /// query's values lie within ±[`crate::matrix::MAX_ABS_VALUE`], as every
    /// stored user row does; callers folding in their own vectors check that.
    pub fn prepare(&self, query: &[f32], offset: f32) -> PreparedQuery {
        let padded = self.items.padded_dims;
        assert!(
            query.len() == self.items.dims || query.len() == padded,
            "query length"
        );
        let mut values = vec![0.0f32; padded];
        values[..query.len()].copy_from_slice(query);
        let (values_i8, scale) = match self.items.data {
            MatrixData::Int8 { .. } => {
                let mut q = vec![0i8; padded];
                let scale = quantize_row(&values, &mut q);
                (q, scale)
            }
            _ => (Vec::new(), 1.0),
        };
        PreparedQuery {
            values,
            values_i8,
            scale,
            offset,
        }
    }

    /// The best `k` items for one query among those `accept` lets through.
    pub fn top_k(
        &self,
        query: &PreparedQuery,
        k: usize,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Vec<ScoredItem> {
        let mut out = self.top_k_batch(std::slice::from_ref(query), k, |_, item| accept(item));
        out.pop().unwrap_or_default()
    }

    /// The best `k` items for each query, scoring up to [`MAX_BATCH`] queries
    /// per pass over the items. `accept(query_index, item)` filters.
    pub fn top_k_batch(
        &self,
        queries: &[PreparedQuery],
        k: usize,
        mut accept: impl FnMut(usize, u32) -> bool,
    ) -> Vec<Vec<ScoredItem>> {
        let mut results = Vec::with_capacity(queries.len());
        let mut buffer = Scores::new(CHUNK_BLOCKS, MAX_BATCH.min(queries.len()));
        for (c, chunk) in queries.chunks(MAX_BATCH).enumerate() {
            let refs = QueryRefs::new(chunk);
            let n = chunk.len();
            let mut tops: Vec<TopK> = chunk.iter().map(|_| TopK::new(k)).collect();
            let blocks = self.items.blocks();
            // The first chunk runs with no threshold, so every item in it is
            // offered to the top-K (and its filter); keep it just large
            // enough to fill k, so the threshold is real from the second
            // chunk on. Matters for small catalogues (10k items: 1,024
            // items offered per query instead of ~k).
            let mut first = 0;
            while first < blocks {
                let size = if first == 0 {
                    (k.div_ceil(BLOCK) + 1).min(CHUNK_BLOCKS)
                } else {
                    CHUNK_BLOCKS
                };
                let count = size.min(blocks - first);
                // A threshold from the start of the chunk is a valid lower
                // bound for all of it: thresholds only rise.
                let mut thresholds = [0.0f32; MAX_BATCH];
                for (t, top) in thresholds.iter_mut().zip(&tops) {
                    *t = top.threshold();
                }
                self.score_blocks(&refs, first, count, &thresholds[..n], &mut buffer);
                for (r, &mask) in buffer.masks[..count * n].iter().enumerate() {
                    if mask != 0 {
                        let (b, j) = (first + r / n, r % n);
                        collect(
                            b,
                            mask,
                            &buffer.rows[r],
                            self.items.rows,
                            &mut tops[j],
                            |item| accept(c * MAX_BATCH + j, item),
                        );
                    }
                }
                first += count;
            }
            for (top, q) in tops.into_iter().zip(chunk) {
                let mut items = top.into_sorted();
                items.iter_mut().for_each(|s| s.score += q.offset);
                results.push(items);
            }
        }
        results
    }

    /// Score of one item (bit-identical to the score a scan reports).
    pub fn score(&self, query: &PreparedQuery, item: u32) -> f32 {
        let item = item as usize;
        assert!(item < self.items.rows, "item index out of range");
        let mut buffer = Scores::new(1, 1);
        let refs = QueryRefs::new(std::slice::from_ref(query));
        self.score_blocks(&refs, item / BLOCK, 1, &[f32::INFINITY], &mut buffer);
        buffer.rows[0][item % BLOCK] + query.offset
    }

    /// Scores blocks `first..first + count` into `buffer.rows[b·n + q]`
    /// (item scale and bias applied inside the kernel) and marks the lanes
    /// above each query's threshold in `buffer.masks`.
    fn score_blocks(
        &self,
        refs: &QueryRefs<'_>,
        first: usize,
        count: usize,
        thresholds: &[f32],
        buffer: &mut Scores,
    ) {
        let len = BLOCK * self.items.padded_dims;
        let range = first * len..(first + count) * len;
        let slots = first * BLOCK..(first + count) * BLOCK;
        let bias = self.bias.map(|b| &b[slots.clone()]);
        let rows = count * refs.len();
        let out = BlockOutput {
            thresholds,
            scores: &mut buffer.rows[..rows],
            masks: &mut buffer.masks[..rows],
        };
        match (self.items.data, refs) {
            (MatrixData::F32(v), QueryRefs::Float(q)) => {
                self.kernels.block_f32(q, &v[range], bias, out)
            }
            (MatrixData::F16(v), QueryRefs::Float(q)) => {
                self.kernels.block_f16(q, &v[range], bias, out)
            }
            (MatrixData::Int8 { values, scales }, QueryRefs::Int8(q)) => {
                let epilogue = Epilogue {
                    item_scales: &scales[slots],
                    bias,
                };
                self.kernels.block_u8(q, &values[range], epilogue, out);
            }
            _ => unreachable!("queries are prepared for this scanner's element type"),
        }
    }
}

/// Blocks per kernel call: 1,024 items, small enough that the scores of 8
/// queries (32 KiB) stay in L1/L2 before they are collected.
const CHUNK_BLOCKS: usize = 64;

/// Query slices in the form the kernels take, built once per pass.
enum QueryRefs<'q> {
    Float(Vec<&'q [f32]>),
    Int8(Vec<QueryI8<'q>>),
}

impl<'q> QueryRefs<'q> {
    fn new(queries: &'q [PreparedQuery]) -> Self {
        if queries.first().is_some_and(|q| !q.values_i8.is_empty()) {
            QueryRefs::Int8(
                queries
                    .iter()
                    .map(|q| QueryI8::new(&q.values_i8, q.scale))
                    .collect(),
            )
        } else {
            QueryRefs::Float(queries.iter().map(|q| q.values.as_slice()).collect())
        }
    }

    fn len(&self) -> usize {
        match self {
            QueryRefs::Float(q) => q.len(),
            QueryRefs::Int8(q) => q.len(),
        }
    }
}

/// Per-chunk score buffer: scores and above-threshold masks.
struct Scores {
    rows: Vec<[f32; BLOCK]>,
    masks: Vec<u16>,
}

impl Scores {
    fn new(blocks: usize, queries: usize) -> Self {
        Self {
            rows: vec![[0.0; BLOCK]; blocks * queries],
            masks: vec![0; blocks * queries],
        }
    }
}

/// Offers the lanes of one block that the kernel marked as above the
/// chunk's threshold to a top-K, rechecking each against the current one.
#[inline]
fn collect(
    block: usize,
    mut mask: u16,
    scores: &[f32; BLOCK],
    n_items: usize,
    top: &mut TopK,
    mut accept: impl FnMut(u32) -> bool,
) {
    while mask != 0 {
        let lane = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let item = block * BLOCK + lane;
        if item < n_items && scores[lane] > top.threshold() && accept(item as u32) {
            top.push(item as u32, scores[lane]);
        }
    }
}

/// Common filters: sorted exclusion lists (seen items, an explicit list) and
/// required attributes (an item qualifies only if it has every one).
#[derive(Debug, Default)]
pub struct ItemFilter<'a> {
    excluded: Vec<&'a [u32]>,
    owned_excluded: Vec<u32>,
    required: Vec<u32>,
    attributes: Option<crate::csr::Csr<'a>>,
}

impl<'a> ItemFilter<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Excludes a sorted list (e.g. a user's seen-items row).
    pub fn exclude_sorted(mut self, items: &'a [u32]) -> Self {
        debug_assert!(items.windows(2).all(|w| w[0] < w[1]));
        self.excluded.push(items);
        self
    }

    /// Excludes items in any order.
    pub fn exclude(mut self, mut items: Vec<u32>) -> Self {
        items.sort_unstable();
        items.dedup();
        self.owned_excluded = items;
        self
    }

    /// Keeps only items having all of `required` (attribute indices).
    pub fn require(mut self, attributes: crate::csr::Csr<'a>, mut required: Vec<u32>) -> Self {
        required.sort_unstable();
        required.dedup();
        self.attributes = Some(attributes);
        self.required = required;
        self
    }

    pub fn accepts(&self, item: u32) -> bool {
        if self.owned_excluded.binary_search(&item).is_ok()
            || self.excluded.iter().any(|l| l.binary_search(&item).is_ok())
        {
            return false;
        }
        match &self.attributes {
            Some(attrs) => self
                .required
                .iter()
                .all(|&a| attrs.contains(item as usize, a)),
            None => true,
        }
    }
}

/// Item-neighbour scoring: `score(i) = Σ_{j ∈ history} weight_j · w(j → i)`,
/// accumulated densely over the catalogue, then the best `k` that `accept`
/// lets through. `history_weights` defaults to 1 per item.
pub fn top_k_neighbors(
    neighbors: &crate::csr::Csr<'_>,
    history: &[u32],
    history_weights: Option<&[f32]>,
    k: usize,
    mut accept: impl FnMut(u32) -> bool,
) -> Vec<ScoredItem> {
    let mut scores = vec![0.0f32; neighbors.rows()];
    let mut touched = vec![false; neighbors.rows()];
    for (h, &j) in history.iter().enumerate() {
        let Some(row) = neighbors.row_weights(j as usize) else {
            continue;
        };
        let wj = history_weights.map_or(1.0, |w| w[h]);
        for (&i, &w) in neighbors.row(j as usize).iter().zip(row) {
            scores[i as usize] += wj * w;
            touched[i as usize] = true;
        }
    }
    let mut top = TopK::new(k);
    for (i, (&s, &t)) in scores.iter().zip(&touched).enumerate() {
        if t && s > top.threshold() && accept(i as u32) {
            top.push(i as u32, s);
        }
    }
    top.into_sorted()
}

/// The `k` heaviest neighbours of `item` ("similar items").
pub fn similar_by_neighbors(
    neighbors: &crate::csr::Csr<'_>,
    item: u32,
    k: usize,
) -> Vec<ScoredItem> {
    let mut top = TopK::new(k);
    if let Some(weights) = neighbors.row_weights(item as usize) {
        for (&j, &w) in neighbors.row(item as usize).iter().zip(weights) {
            top.push(j, w);
        }
    }
    top.into_sorted()
}
