//! Rank-D approximations of score matrices: the arithmetic behind both
//! dimension pruning (`--dims`) and distillation (`--distill-from`).
//!
//! A model's scores form a users × items matrix S. The D-dimensional
//! embedding whose dot products are closest to S in the least-squares sense
//! (every user–item score a soft label with equal weight) is S's truncated
//! SVD, S ≈ (U_D Σ_D^½)(V_D Σ_D^½)ᵀ (Eckart–Young). Two ways to get it:
//!
//! - [`project_embedding`]: S = U Vᵀ with d ≤ a few hundred; exact, from the
//!   d × d Gram matrices, never forming S;
//! - [`randomized_svd`]: S known only through products S·x and Sᵀ·y (an
//!   item-neighbour teacher, S = X W); Halko–Martinsson–Tropp with power
//!   iterations, memory (users + items) × (D + oversampling).

use faer::Mat;
use rayon::prelude::*;
use vitrine_core::synthetic::SplitMix64;

/// A dense row-major block of `cols` columns (rows × cols).
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Block {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    fn to_mat(&self) -> Mat<f64> {
        Mat::from_fn(self.rows, self.cols, |i, j| self.data[i * self.cols + j])
    }
    fn from_mat(m: &Mat<f64>) -> Self {
        let (rows, cols) = (m.nrows(), m.ncols());
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                data.push(m[(i, j)]);
            }
        }
        Self { rows, cols, data }
    }
}

/// A users × items score matrix known through products.
pub trait ScoreOperator: Sync {
    fn users(&self) -> usize;
    fn items(&self) -> usize;
    /// S · x, x items × l → users × l.
    fn apply(&self, x: &Block) -> Block;
    /// Sᵀ · y, y users × l → items × l.
    fn apply_t(&self, y: &Block) -> Block;
}

/// Factors of a rank-D approximation, f32 row-major, and the singular values.
#[derive(Debug)]
pub struct LowRank {
    pub dims: usize,
    pub users: Vec<f32>,
    pub items: Vec<f32>,
    pub singular_values: Vec<f64>,
}

/// Splits U Σ Vᵀ into U Σ^½ and V Σ^½ (equal scale on both sides keeps
/// per-row int8 quantisation of either side equally precise).
fn split_sigma(u: &Block, s: &[f64], v: &Block, d: usize) -> LowRank {
    let side = |b: &Block| -> Vec<f32> {
        let mut out = Vec::with_capacity(b.rows * d);
        for r in 0..b.rows {
            let row = &b.row(r)[..d];
            out.extend(
                row.iter()
                    .zip(s)
                    .map(|(x, sv)| (x * sv.max(0.0).sqrt()) as f32),
            );
        }
        out
    };
    LowRank {
        dims: d,
        users: side(u),
        items: side(v),
        singular_values: s[..d].to_vec(),
    }
}

/// Truncated SVD of S = U Vᵀ (U users × d, V items × d, row-major f32) to
/// rank `dims`, exactly: with G_u = UᵀU = E_u Λ_u E_uᵀ (likewise G_v),
/// U = Q_u R_uᵀ where R_u = E_u Λ_u^½ and Q_u has orthonormal columns, so
/// S = Q_u (R_uᵀ R_v) Q_vᵀ and the SVD of the d × d middle matrix is S's.
/// Directions with (numerically) zero energy are dropped.
pub fn project_embedding(
    users: &[f32],
    items: &[f32],
    d: usize,
    dims: usize,
) -> Result<LowRank, String> {
    if dims == 0 || dims > d {
        return Err(format!(
            "--dims {dims}: need 1 ≤ D ≤ {d} (the model's dimensions)"
        ));
    }
    let gram = |m: &[f32]| -> Mat<f64> {
        let rows = m.len() / d;
        let partial = (0..rows)
            .into_par_iter()
            .fold(
                || vec![0.0f64; d * d],
                |mut g, r| {
                    let row = &m[r * d..(r + 1) * d];
                    for a in 0..d {
                        let x = f64::from(row[a]);
                        for b in 0..d {
                            g[a * d + b] += x * f64::from(row[b]);
                        }
                    }
                    g
                },
            )
            .reduce(
                || vec![0.0f64; d * d],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        Mat::from_fn(d, d, |i, j| partial[i * d + j])
    };
    // R (d × d) with G = R Rᵀ, and its pseudo-inverse transpose T = E Λ^-½
    // (so that Q = M T has orthonormal columns).
    let factor = |g: Mat<f64>| -> Result<(Mat<f64>, Mat<f64>), String> {
        let evd = g
            .self_adjoint_eigen(faer::Side::Lower)
            .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
        let (e, lam) = (evd.U(), evd.S().column_vector());
        let max = (0..d).map(|k| lam[k]).fold(0.0f64, f64::max);
        let keep = |k: usize| lam[k] > max * 1e-12;
        let r = Mat::from_fn(d, d, |i, k| {
            if keep(k) {
                e[(i, k)] * lam[k].sqrt()
            } else {
                0.0
            }
        });
        let t = Mat::from_fn(d, d, |i, k| {
            if keep(k) {
                e[(i, k)] / lam[k].sqrt()
            } else {
                0.0
            }
        });
        Ok((r, t))
    };
    let (ru, tu) = factor(gram(users))?;
    let (rv, tv) = factor(gram(items))?;
    let middle = ru.transpose() * &rv;
    let svd = middle.svd().map_err(|e| format!("SVD failed: {e:?}"))?;
    let s: Vec<f64> = (0..d).map(|k| svd.S().column_vector()[k]).collect();
    // New factors: U·(T_u P Σ^½), V·(T_v W Σ^½), with the first `dims` columns.
    let root: Vec<f64> = s.iter().map(|x| x.max(0.0).sqrt()).collect();
    let au = Mat::from_fn(d, dims, |i, k| (&tu * svd.U())[(i, k)] * root[k]);
    let av = Mat::from_fn(d, dims, |i, k| (&tv * svd.V())[(i, k)] * root[k]);
    let apply = |m: &[f32], a: &Mat<f64>| -> Vec<f32> {
        m.par_chunks(d)
            .flat_map_iter(|row| {
                (0..dims).map(move |k| {
                    row.iter()
                        .enumerate()
                        .map(|(i, &x)| f64::from(x) * a[(i, k)])
                        .sum::<f64>() as f32
                })
            })
            .collect()
    };
    Ok(LowRank {
        dims,
        users: apply(users, &au),
        items: apply(items, &av),
        singular_values: s[..dims].to_vec(),
    })
}

/// Orthonormal basis of the columns of `b` (thin QR).
fn orthonormal(b: &Block) -> Block {
    Block::from_mat(&b.to_mat().qr().compute_thin_Q())
}

/// Rank-`dims` truncated SVD of the operator's matrix by randomised range
/// finding with `power` power iterations (Halko et al. 2011, alg. 4.4);
/// seeded, so repeatable.
pub fn randomized_svd(op: &dyn ScoreOperator, dims: usize, power: usize, seed: u64) -> LowRank {
    let l = (dims + 16).min(op.items()).min(op.users());
    let mut rng = SplitMix64::new(seed);
    let mut omega = Block::zeros(op.items(), l);
    for x in &mut omega.data {
        // Uniform in [−1, 1): as good as Gaussian for range finding.
        *x = f64::from(rng.symmetric());
    }
    let mut q = orthonormal(&op.apply(&omega));
    for _ in 0..power {
        let z = orthonormal(&op.apply_t(&q));
        q = orthonormal(&op.apply(&z));
    }
    // B = Qᵀ S (l × items) = (Sᵀ Q)ᵀ; SVD of Bᵀ = (Sᵀ Q) = V̂ Σ Ûᵀ.
    let bt = op.apply_t(&q).to_mat();
    let svd = bt.thin_svd().expect("SVD of a finite matrix");
    let s: Vec<f64> = (0..l).map(|k| svd.S().column_vector()[k]).collect();
    let v = Block::from_mat(&svd.U().to_owned());
    let u = Block::from_mat(&(q.to_mat() * svd.V()));
    split_sigma(&u, &s, &v, dims.min(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// users × d and items × d factors whose product has rank `r`, mixed by
    /// a random d × d transform so no coordinate subset carries the signal.
    fn low_rank_model(users: usize, items: usize, d: usize, r: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = SplitMix64::new(7);
        let mut side = |n: usize| -> Vec<f32> {
            let core: Vec<f32> = (0..n * r).map(|_| rng.symmetric()).collect();
            let mix: Vec<f32> = (0..r * d).map(|_| rng.symmetric()).collect();
            (0..n)
                .flat_map(|i| {
                    let core = &core;
                    let mix = &mix;
                    (0..d).map(move |k| {
                        (0..r)
                            .map(|j| core[i * r + j] * mix[j * d + k])
                            .sum::<f32>()
                    })
                })
                .collect()
        };
        (side(users), side(items))
    }

    fn scores(u: &[f32], v: &[f32], d: usize) -> Vec<f64> {
        u.chunks(d)
            .flat_map(|a| {
                v.chunks(d)
                    .map(move |b| a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum())
            })
            .collect()
    }

    /// Every score within 0.1% of the largest score magnitude.
    fn assert_close(before: &[f64], after: &[f64]) {
        let scale = before.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let err = before
            .iter()
            .zip(after)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-3 * scale, "max error {err} vs scale {scale}");
    }

    #[test]
    fn projection_to_the_true_rank_keeps_every_score() {
        let (u, v) = low_rank_model(300, 200, 24, 6);
        let before = scores(&u, &v, 24);
        let p = project_embedding(&u, &v, 24, 6).unwrap();
        let after = scores(&p.users, &p.items, 6);
        assert_close(&before, &after);
        // Plain truncation to the first 6 coordinates loses most of it.
        let trunc_u: Vec<f32> = u.chunks(24).flat_map(|r| r[..6].to_vec()).collect();
        let trunc_v: Vec<f32> = v.chunks(24).flat_map(|r| r[..6].to_vec()).collect();
        let t = scores(&trunc_u, &trunc_v, 6);
        let terr = before
            .iter()
            .zip(&t)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            terr > 0.1 * before.iter().fold(0.0f64, |m, x| m.max(x.abs())),
            "truncation error {terr} unexpectedly small"
        );
    }

    #[test]
    fn projection_error_is_the_eckart_young_bound() {
        // Full-rank scores: the squared error of the rank-D approximation is
        // the sum of the dropped squared singular values.
        let mut rng = SplitMix64::new(3);
        let (n, m, d, k) = (120, 90, 10, 4);
        let u: Vec<f32> = (0..n * d).map(|_| rng.symmetric()).collect();
        let v: Vec<f32> = (0..m * d).map(|_| rng.symmetric()).collect();
        let full = project_embedding(&u, &v, d, d).unwrap();
        let p = project_embedding(&u, &v, d, k).unwrap();
        let (a, b) = (scores(&u, &v, d), scores(&p.users, &p.items, k));
        let err2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
        let dropped: f64 = full.singular_values[k..].iter().map(|s| s * s).sum();
        assert!(
            (err2 - dropped).abs() < 1e-3 * dropped,
            "{err2} vs {dropped}"
        );
    }

    /// S = U Vᵀ as an operator, for checking the randomised SVD.
    struct Dense {
        u: Vec<f32>,
        v: Vec<f32>,
        d: usize,
    }
    impl ScoreOperator for Dense {
        fn users(&self) -> usize {
            self.u.len() / self.d
        }
        fn items(&self) -> usize {
            self.v.len() / self.d
        }
        fn apply(&self, x: &Block) -> Block {
            let mut out = Block::zeros(self.users(), x.cols);
            for i in 0..self.users() {
                for j in 0..self.items() {
                    let s: f64 = (0..self.d)
                        .map(|k| f64::from(self.u[i * self.d + k] * self.v[j * self.d + k]))
                        .sum();
                    for c in 0..x.cols {
                        out.data[i * x.cols + c] += s * x.data[j * x.cols + c];
                    }
                }
            }
            out
        }
        fn apply_t(&self, y: &Block) -> Block {
            let mut out = Block::zeros(self.items(), y.cols);
            for i in 0..self.users() {
                for j in 0..self.items() {
                    let s: f64 = (0..self.d)
                        .map(|k| f64::from(self.u[i * self.d + k] * self.v[j * self.d + k]))
                        .sum();
                    for c in 0..y.cols {
                        out.data[j * y.cols + c] += s * y.data[i * y.cols + c];
                    }
                }
            }
            out
        }
    }

    #[test]
    fn randomized_svd_recovers_a_low_rank_operator() {
        let (u, v) = low_rank_model(150, 100, 16, 5);
        let op = Dense {
            u: u.clone(),
            v: v.clone(),
            d: 16,
        };
        let r = randomized_svd(&op, 5, 2, 1);
        let exact = project_embedding(&u, &v, 16, 5).unwrap();
        for (a, b) in r.singular_values.iter().zip(&exact.singular_values) {
            assert!((a - b).abs() < 1e-3 * b, "{a} vs {b}");
        }
        let before = scores(&u, &v, 16);
        let after = scores(&r.users, &r.items, 5);
        assert_close(&before, &after);
    }
}
