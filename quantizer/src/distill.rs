//! Distillation: a D-dimensional embedding student fitted to a teacher's
//! scores. The student minimises the squared error against every
//! teacher score s(u, i) = soft label, over all users and items; its optimum
//! is the truncated SVD of the teacher's score matrix ([`crate::lowrank`]),
//! computed without ever materialising that users × items matrix.
//!
//! - item-neighbour teachers (EASE, item-kNN, user-kNN): S = X W with X the
//!   users' seen items and W the item→item weights;
//! - embedding teachers (e.g. 256-dimension MF): S = U Vᵀ; the student is
//!   exactly `--dims D` pruning, biases carried over.
//!
//! Why this student and not another: on the ML-1M recbole split with an
//! EASE teacher (NDCG@10 0.2878, training history), numpy measured
//! (scripts/experiments/distill_variants.py): rank-64 SVD of the score matrix
//! 0.2832, the same by randomised SVD 0.2832; rank-64 SVD of the weights B
//! 0.2817; ALS (`implicit`, the trainer's algorithm) fitted to each user's
//! top-50 teacher scores 0.2679; the SVD with seen items masked out of the
//! soft labels 0.2116. The least-squares optimum over all soft labels won.

use crate::lowrank::{Block, LowRank, ScoreOperator, project_embedding, randomized_svd};
use rayon::prelude::*;
use vitrine_core::artifact::ModelParts;
use vitrine_core::csr::CsrParts;

/// S = X W for an item-neighbour model: row u of X lists the items u has
/// seen (weight 1); row j of W lists items i with weight w(j → i).
#[derive(Debug)]
pub struct NeighborScores<'a> {
    seen: &'a CsrParts,
    weights: &'a CsrParts,
    /// Wᵀ and Xᵀ, for Sᵀ y.
    weights_t: CsrParts,
    seen_t: CsrParts,
    n_items: usize,
}

fn transpose(m: &CsrParts, cols: usize) -> CsrParts {
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); cols];
    for r in 0..m.rows() {
        let range = m.indptr[r] as usize..m.indptr[r + 1] as usize;
        for k in range {
            let w = m.weights.as_ref().map_or(1.0, |w| w[k]);
            rows[m.indices[k] as usize].push((r as u32, w));
        }
    }
    CsrParts::from_rows(rows, true)
}

/// y = M x for CSR M (rows × n) and dense x (n × l).
fn csr_times(m: &CsrParts, x: &Block) -> Block {
    let l = x.cols;
    let mut out = Block::zeros(m.rows(), l);
    out.data
        .par_chunks_mut(l.max(1))
        .enumerate()
        .for_each(|(r, o)| {
            for k in m.indptr[r] as usize..m.indptr[r + 1] as usize {
                let w = m.weights.as_ref().map_or(1.0, |w| f64::from(w[k]));
                for (a, b) in o.iter_mut().zip(x.row(m.indices[k] as usize)) {
                    *a += w * b;
                }
            }
        });
    out
}

impl<'a> NeighborScores<'a> {
    pub fn new(seen: &'a CsrParts, weights: &'a CsrParts, n_items: usize) -> Self {
        Self {
            seen,
            weights,
            weights_t: transpose(weights, n_items),
            seen_t: transpose(seen, n_items),
            n_items,
        }
    }
}

impl ScoreOperator for NeighborScores<'_> {
    fn users(&self) -> usize {
        self.seen.rows()
    }
    fn items(&self) -> usize {
        self.n_items
    }
    fn apply(&self, x: &Block) -> Block {
        csr_times(self.seen, &csr_times(self.weights, x))
    }
    fn apply_t(&self, y: &Block) -> Block {
        csr_times(&self.weights_t, &csr_times(&self.seen_t, y))
    }
}

/// Power iterations of the randomised SVD (numpy: 3 already matched the
/// exact SVD's NDCG@10 on ML-1M to four decimals; one more for margin).
pub const POWER_ITERATIONS: usize = 4;

/// Fits the student's factors to the teacher's scores.
pub fn distill(teacher: &ModelParts, dims: usize, seed: u64) -> Result<LowRank, String> {
    if let Some(f) = &teacher.factors {
        return project_embedding(&f.users, &f.items, f.dims, dims);
    }
    let weights = teacher
        .neighbors
        .as_ref()
        .ok_or("the teacher has neither factors nor item neighbours")?;
    let seen = teacher.seen_items.as_ref().ok_or(
        "an item-neighbour teacher needs its seen-items section: a user's scores are the sum of \
         the neighbours of what they have seen",
    )?;
    let n_items = teacher.item_ids.len();
    if dims == 0 || dims > n_items.min(seen.rows()) {
        return Err(format!(
            "--dims {dims}: need 1 ≤ D ≤ min(users, items) = {}",
            n_items.min(seen.rows())
        ));
    }
    let op = NeighborScores::new(seen, weights, n_items);
    Ok(randomized_svd(&op, dims, POWER_ITERATIONS, seed))
}
