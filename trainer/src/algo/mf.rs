//! Biased matrix factorisation for explicit ratings, trained by SGD (Funk;
//! Koren 2008; the model of scikit-surprise's SVD):
//! r̂ = μ + b_u + b_i + p_u·q_i, one pass over the ratings per epoch in a
//! seeded random order, single-threaded (so bit-for-bit deterministic).

use super::{Model, OnIteration, Params, dot};
use crate::sparse::Sparse;
use vitrine_core::split::shuffle;
use vitrine_core::synthetic::SplitMix64;

pub fn fit(train: &Sparse, p: &Params, on_iteration: OnIteration<'_>) -> Model {
    let k = p.factors;
    let mut rng = SplitMix64::new(p.seed);
    // Normal(0, 0.1) initial factors via the sum of uniforms (Irwin–Hall).
    let mut normal = || (0..12).map(|_| rng.next_f32()).sum::<f32>() - 6.0;
    let mut users: Vec<f32> = (0..train.rows * k).map(|_| 0.1 * normal()).collect();
    let mut items: Vec<f32> = (0..train.cols * k).map(|_| 0.1 * normal()).collect();
    let mut bu = vec![0.0f32; train.rows];
    let mut bi = vec![0.0f32; train.cols];
    let mut triplets: Vec<(u32, u32, f32)> = Vec::with_capacity(train.nnz());
    for u in 0..train.rows {
        let (cols, vals) = train.row(u);
        triplets.extend(cols.iter().zip(vals).map(|(&i, &r)| (u as u32, i, r)));
    }
    let mu =
        triplets.iter().map(|t| f64::from(t.2)).sum::<f64>() as f32 / triplets.len().max(1) as f32;
    let (lr, reg) = (p.lr, p.reg);
    for done in 1..=p.iterations {
        shuffle(&mut triplets, &mut rng);
        for &(u, i, r) in &triplets {
            let (u, i) = (u as usize, i as usize);
            let pu = &mut users[u * k..(u + 1) * k];
            let qi = &mut items[i * k..(i + 1) * k];
            let err = r - (mu + bu[u] + bi[i] + dot(pu, qi));
            bu[u] += lr * (err - reg * bu[u]);
            bi[i] += lr * (err - reg * bi[i]);
            for (pf, qf) in pu.iter_mut().zip(qi.iter_mut()) {
                let (pv, qv) = (*pf, *qf);
                *pf += lr * (err * qv - reg * pv);
                *qf += lr * (err * pv - reg * qv);
            }
        }
        on_iteration(done);
    }
    Model::Embedding {
        dims: k,
        users,
        items,
        user_bias: Some(bu),
        item_bias: Some(bi),
        global: mu,
    }
}
