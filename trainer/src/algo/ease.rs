//! EASE (Steck 2019): the closed-form item–item model
//! B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0, with X the
//! binary user × item training matrix and λ = `reg`. Score: x_u·B. Dense in
//! items (n² memory, n³/3 time), so for catalogues where that fits; served
//! as item→item weights keeping the `neighbors` largest |B_ji| of each row.

use super::{Model, Params, top_n_row};
use crate::sparse::Sparse;
use faer::Mat;
use faer::linalg::solvers::DenseSolveCore;
use rayon::prelude::*;
use vitrine_core::csr::CsrParts;

pub fn fit(train: &Sparse, p: &Params) -> Model {
    let n = train.cols;
    let gram = gram_matrix(train);
    let g = Mat::<f64>::from_fn(n, n, |i, j| {
        gram[i * n + j] + if i == j { f64::from(p.reg) } else { 0.0 }
    });
    let llt = g
        .llt(faer::Side::Lower)
        .expect("XᵀX + λI is positive definite for λ > 0");
    let inv = llt.inverse();
    // B_ij = −P_ij / P_jj, diag 0; row i of B: contributions of item i.
    let rows: Vec<Vec<(u32, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let row: Vec<f32> = (0..n)
                .map(|j| {
                    if i == j {
                        0.0
                    } else {
                        (-inv[(i, j)] / inv[(j, j)]) as f32
                    }
                })
                .collect();
            top_n_row(&row, p.neighbors, i)
        })
        .collect();
    Model::ItemItem {
        neighbors: CsrParts::from_rows(rows, true),
    }
}

/// XᵀX as a dense row-major f64 matrix (co-occurrence counts for binary X).
fn gram_matrix(train: &Sparse) -> Vec<f64> {
    let n = train.cols;
    let by_item = train.transpose();
    let mut g = vec![0.0f64; n * n];
    g.par_chunks_mut(n).enumerate().for_each(|(j, row)| {
        let (users, xj) = by_item.row(j);
        for (&u, &a) in users.iter().zip(xj) {
            let (items, xs) = train.row(u as usize);
            for (&i, &b) in items.iter().zip(xs) {
                row[i as usize] += f64::from(a) * f64::from(b);
            }
        }
    });
    g
}
