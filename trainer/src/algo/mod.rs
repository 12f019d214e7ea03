//! The algorithms. Each fits on a training [`Sparse`] matrix and yields a
//! [`Model`] in one of the two servable forms: factors (embedding artifact)
//! or item→item weights (item-neighbour artifact).

mod als;
mod bpr;
mod ease;
mod knn;
mod mf;
mod popular;

use crate::sparse::Sparse;
use serde::Serialize;
use vitrine_core::csr::CsrParts;

/// Algorithm names as on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Popular,
    Itemknn,
    Userknn,
    Mf,
    Als,
    Bpr,
    Ease,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Popular => "popular",
            Algo::Itemknn => "itemknn",
            Algo::Userknn => "userknn",
            Algo::Mf => "mf",
            Algo::Als => "als",
            Algo::Bpr => "bpr",
            Algo::Ease => "ease",
        }
    }

    /// Whether it models explicit ratings (biased MF) rather than implicit
    /// feedback (everything else).
    pub fn predicts_ratings(self) -> bool {
        self == Algo::Mf
    }
}

/// Hyper-parameters; every algorithm reads the ones it uses.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Params {
    pub factors: usize,
    pub iterations: usize,
    /// L2 regularisation (ALS: added to the normal equations; MF, BPR: SGD
    /// weight decay; EASE: λ on the diagonal of the Gram matrix).
    pub reg: f32,
    /// ALS confidence of an observed interaction: c = alpha · value.
    pub alpha: f32,
    /// SGD learning rate (MF, BPR).
    pub lr: f32,
    /// Neighbours kept per item (kNN, EASE sparsification).
    pub neighbors: usize,
    /// Cosine shrinkage (item-kNN): sim = a·b / (|a||b| + shrink).
    pub shrink: f32,
    /// ALS conjugate-gradient steps per solve.
    pub cg_steps: usize,
    pub seed: u64,
}

impl Params {
    /// Defaults per algorithm (measured on MovieLens; docs/ACCURACY.md).
    pub fn defaults(algo: Algo) -> Self {
        let base = Params {
            factors: 64,
            iterations: 15,
            reg: 0.5,
            alpha: 3.0,
            lr: 0.01,
            neighbors: 100,
            shrink: 10.0,
            cg_steps: 3,
            seed: 42,
        };
        match algo {
            Algo::Mf => Params {
                factors: 100,
                iterations: 30,
                reg: 0.05,
                lr: 0.007,
                ..base
            },
            Algo::Bpr => Params {
                factors: 64,
                iterations: 40,
                reg: 0.00025,
                lr: 0.025,
                ..base
            },
            Algo::Ease => Params {
                reg: 800.0,
                neighbors: 500,
                ..base
            },
            _ => base,
        }
    }
}

/// A trained model in servable form.
#[derive(Clone, Debug)]
pub enum Model {
    /// score(u, i) = users[u]·items[i] + user_bias[u] + item_bias[i] + global.
    Embedding {
        dims: usize,
        users: Vec<f32>,
        items: Vec<f32>,
        user_bias: Option<Vec<f32>>,
        item_bias: Option<Vec<f32>>,
        global: f32,
    },
    /// score(u, i) = Σ_{j ∈ history(u)} weight(j → i); row j lists i.
    ItemItem { neighbors: CsrParts },
}

/// Called after each training iteration (iterative algorithms) with the
/// number of iterations done; drives progress bars.
pub type OnIteration<'a> = &'a (dyn Fn(usize) + Sync);

/// Fits `algo` on `train` (users × items; values are ratings for MF, 1 for
/// implicit algorithms), on the current rayon thread pool.
pub fn fit(algo: Algo, train: &Sparse, params: &Params) -> Model {
    fit_with_progress(algo, train, params, &|_| {})
}

/// As [`fit`], reporting each finished iteration.
pub fn fit_with_progress(
    algo: Algo,
    train: &Sparse,
    params: &Params,
    on_iteration: OnIteration<'_>,
) -> Model {
    match algo {
        Algo::Popular => popular::fit(train),
        Algo::Itemknn => knn::item_knn(train, params),
        Algo::Userknn => knn::user_knn(train, params),
        Algo::Mf => mf::fit(train, params, on_iteration),
        Algo::Als => als::fit(train, params, on_iteration),
        Algo::Bpr => bpr::fit(train, params, on_iteration),
        Algo::Ease => ease::fit(train, params),
    }
}

/// Whether `fit` runs iterations (what successive halving budgets).
pub fn is_iterative(algo: Algo) -> bool {
    matches!(algo, Algo::Als | Algo::Mf | Algo::Bpr)
}

/// Keeps the `n` largest-magnitude weights of a dense row (excluding
/// `skip`), sorted by column.
pub(crate) fn top_n_row(row: &[f32], n: usize, skip: usize) -> Vec<(u32, f32)> {
    let mut entries: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .filter(|&(j, &w)| j != skip && w != 0.0 && w.is_finite())
        .map(|(j, &w)| (j as u32, w))
        .collect();
    if entries.len() > n {
        entries.select_nth_unstable_by(n, |a, b| {
            b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0))
        });
        entries.truncate(n);
    }
    entries.sort_unstable_by_key(|e| e.0);
    entries
}

/// Dot product of two equal-length f32 slices with the SIMD kernels.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    vitrine_core::simd::kernels().dot_f32(a, b)
}
