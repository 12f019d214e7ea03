//! Bayesian personalised ranking (Rendle et al. 2009) by SGD: per step, a
//! random observed (u, i) and a random item j the user has not interacted
//! with; ascend ln σ(x_ui − x_uj) with x_ui = p_u·q_i + b_i. One epoch draws
//! as many triples as there are interactions. Single-threaded, seeded.

use super::{Model, OnIteration, Params, dot};
use crate::sparse::Sparse;
use vitrine_core::synthetic::SplitMix64;

pub fn fit(train: &Sparse, p: &Params, on_iteration: OnIteration<'_>) -> Model {
    let k = p.factors;
    let mut rng = SplitMix64::new(p.seed);
    let mut users: Vec<f32> = (0..train.rows * k)
        .map(|_| (rng.next_f32() - 0.5) * 0.1)
        .collect();
    let mut items: Vec<f32> = (0..train.cols * k)
        .map(|_| (rng.next_f32() - 0.5) * 0.1)
        .collect();
    let mut bias = vec![0.0f32; train.cols];
    let nnz = train.nnz();
    // Row of each stored interaction, to draw (u, i) uniformly.
    let mut row_of = Vec::with_capacity(nnz);
    for u in 0..train.rows {
        row_of.extend(std::iter::repeat_n(u as u32, train.row(u).0.len()));
    }
    let (lr, reg) = (p.lr, p.reg);
    let mut grad_u = vec![0.0f32; k];
    for done in 1..=p.iterations {
        for _ in 0..nnz {
            let e = rng.below(nnz);
            let u = row_of[e] as usize;
            let i = train.indices[e] as usize;
            let seen = train.row(u).0;
            if seen.len() == train.cols {
                continue; // a user who has everything has no negative
            }
            let j = loop {
                let j = rng.below(train.cols);
                if seen.binary_search(&(j as u32)).is_err() {
                    break j;
                }
            };
            let pu = &users[u * k..(u + 1) * k];
            let (qi, qj) = (&items[i * k..(i + 1) * k], &items[j * k..(j + 1) * k]);
            let x = dot(pu, qi) - dot(pu, qj) + bias[i] - bias[j];
            let g = 1.0 / (1.0 + x.exp()); // σ(−x)
            for f in 0..k {
                grad_u[f] = g * (qi[f] - qj[f]) - reg * pu[f];
            }
            for f in 0..k {
                let pf = users[u * k + f];
                items[i * k + f] += lr * (g * pf - reg * items[i * k + f]);
                items[j * k + f] += lr * (-g * pf - reg * items[j * k + f]);
                users[u * k + f] += lr * grad_u[f];
            }
            bias[i] += lr * (g - reg * bias[i]);
            bias[j] += lr * (-g - reg * bias[j]);
        }
        on_iteration(done);
    }
    Model::Embedding {
        dims: k,
        users,
        items,
        user_bias: None,
        item_bias: Some(bias),
        global: 0.0,
    }
}
