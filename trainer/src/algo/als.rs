//! ALS for implicit feedback (Hu, Koren & Volinsky 2008) with the conjugate
//! gradient solver of Takács et al., as in the `implicit` library, so the two
//! are comparable parameter for parameter:
//!
//! - an observed interaction with value r has confidence c = alpha·r and
//!   preference 1; unobserved cells have confidence 1 and preference 0;
//! - each half-iteration solves, for every user (then every item),
//!   (YᵀY + Σ_{i∈I(u)} (c_ui − 1) y_i y_iᵀ + reg·I) x_u = Σ_{i∈I(u)} c_ui y_i
//!   with `cg_steps` CG steps warm-started from the current x_u;
//! - factors start uniform in [0, 0.01) from the seed.
//!
//! Users are independent within a half-iteration, so the result does not
//! depend on the number of threads.

use super::{Model, OnIteration, Params, dot};
use crate::sparse::Sparse;
use rayon::prelude::*;
use vitrine_core::synthetic::SplitMix64;

pub fn fit(train: &Sparse, p: &Params, on_iteration: OnIteration<'_>) -> Model {
    let k = p.factors;
    let mut rng = SplitMix64::new(p.seed);
    let mut users: Vec<f32> = (0..train.rows * k).map(|_| rng.next_f32() * 0.01).collect();
    let mut items: Vec<f32> = (0..train.cols * k).map(|_| rng.next_f32() * 0.01).collect();
    let by_item = train.transpose();
    for done in 1..=p.iterations {
        solve_side(&mut users, &items, train, k, p);
        solve_side(&mut items, &users, &by_item, k, p);
        on_iteration(done);
    }
    Model::Embedding {
        dims: k,
        users,
        items,
        user_bias: None,
        item_bias: None,
        global: 0.0,
    }
}

/// YᵀY + reg·I, k × k row-major.
fn gram(y: &[f32], k: usize, reg: f32) -> Vec<f32> {
    let mut g = vec![0.0f32; k * k];
    for row in y.chunks_exact(k) {
        for a in 0..k {
            let ra = row[a];
            if ra != 0.0 {
                for (gb, &rb) in g[a * k..(a + 1) * k].iter_mut().zip(row) {
                    *gb += ra * rb;
                }
            }
        }
    }
    for a in 0..k {
        g[a * k + a] += reg;
    }
    g
}

fn solve_side(x: &mut [f32], y: &[f32], confidence: &Sparse, k: usize, p: &Params) {
    let yty = gram(y, k, p.reg);
    x.par_chunks_mut(k).enumerate().for_each_init(
        || (vec![0.0f32; k], vec![0.0f32; k], vec![0.0f32; k]),
        |(r, dir, ap), (u, xu)| {
            let (cols, vals) = confidence.row(u);
            if cols.is_empty() {
                xu.fill(0.0);
                return;
            }
            // r = b − A·x = Σ c·y_i − YᵀY·x − Σ (c − 1)(y_i·x) y_i
            mat_vec(&yty, xu, k, r);
            r.iter_mut().for_each(|v| *v = -*v);
            for (&i, &v) in cols.iter().zip(vals) {
                let c = p.alpha * v;
                let yi = &y[i as usize * k..(i as usize + 1) * k];
                let w = c - (c - 1.0) * dot(yi, xu);
                axpy(w, yi, r);
            }
            dir.copy_from_slice(r);
            let mut rs_old = dot(r, r);
            for _ in 0..p.cg_steps {
                if rs_old < 1e-20 {
                    break;
                }
                mat_vec(&yty, dir, k, ap);
                for (&i, &v) in cols.iter().zip(vals) {
                    let c = p.alpha * v;
                    let yi = &y[i as usize * k..(i as usize + 1) * k];
                    axpy((c - 1.0) * dot(yi, dir), yi, ap);
                }
                let step = rs_old / dot(dir, ap);
                axpy(step, dir, xu);
                axpy(-step, ap, r);
                let rs_new = dot(r, r);
                let beta = rs_new / rs_old;
                for (d, &rv) in dir.iter_mut().zip(r.iter()) {
                    *d = rv + beta * *d;
                }
                rs_old = rs_new;
            }
        },
    );
}

fn mat_vec(a: &[f32], v: &[f32], k: usize, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(a.chunks_exact(k)) {
        *o = dot(row, v);
    }
}

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}
