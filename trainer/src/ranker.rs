//! The in-house second-stage ranker (docs/RANKER.md).
//!
//! A degree-2 logistic regression over the features the server assembles
//! for each retrieved candidate — the first stage's score, the item's
//! popularity and the user's activity — standardised, with every pairwise
//! product (so that, e.g., light users can lean towards popular items):
//!
//! ```text
//! z = (x − mean) / scale;   score = b + w·z + Σᵢⱼ Qᵢⱼ zᵢ zⱼ
//! ```
//!
//! It is fitted by Newton's method (IRLS, L2-regularised) on the first
//! stage's top-N candidates of each validation user, labelled 1 if the user
//! interacted with the item in the validation slice. Chosen over an MLP or a
//! factorisation machine because with three features the full quadratic is
//! both exact and tiny (13 weights), fits in a second, and has one optimum.
//! It is exported as a standard ONNX graph (opset 13: Sub, Div, Unsqueeze,
//! Mul, Reshape, Concat, MatMul, Add) that tract and onnxruntime load; the
//! protobuf is written by hand below (field numbers from onnx.proto).

// Index loops read like the algebra they implement (Newton steps,
// elimination); iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

use vitrine_core::Artifact;
use vitrine_core::evaluate::{UserCase, rank_cases_scored};
use vitrine_core::metrics::RankingMetrics;

/// The features, in the order bundle.toml lists them.
pub const FEATURES: [&str; 3] = ["retrieval_score", "item_popularity", "user_activity"];
const F: usize = FEATURES.len();
/// Weights: bias, linear, the F×F products (symmetric; L2 splits them).
const D: usize = 1 + F + F * F;

/// A fitted ranker.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranker {
    pub mean: [f32; F],
    pub scale: [f32; F],
    pub bias: f32,
    pub linear: [f32; F],
    pub quadratic: [f32; F * F],
}

/// One candidate's features and label, grouped by user.
#[derive(Debug, Default)]
pub struct Examples {
    pub features: Vec<[f32; F]>,
    pub labels: Vec<bool>,
    /// `features[groups[u]..groups[u + 1]]` belong to user case `u`, in the
    /// first stage's order (best first).
    pub groups: Vec<usize>,
    /// The item of each row.
    pub items: Vec<u32>,
}

impl Examples {
    /// The groups (user cases, by index) that `keep` accepts, in order.
    pub fn select(&self, keep: impl Fn(usize) -> bool) -> Examples {
        let mut out = Examples {
            groups: vec![0],
            ..Examples::default()
        };
        for u in (0..self.groups.len() - 1).filter(|&u| keep(u)) {
            let rows = self.groups[u]..self.groups[u + 1];
            out.features.extend_from_slice(&self.features[rows.clone()]);
            out.labels.extend_from_slice(&self.labels[rows.clone()]);
            out.items.extend_from_slice(&self.items[rows]);
            out.groups.push(out.features.len());
        }
        out
    }
}

/// The first stage's top `n` for each case, with the features the server
/// would assemble: activity is the length of the case's exclusion list,
/// which is what the server's seen-items section holds for the user.
pub fn examples(art: &Artifact, cases: &[UserCase<'_>], n: usize) -> Examples {
    let pop = art.item_popularity();
    let mut ex = Examples {
        groups: vec![0],
        ..Examples::default()
    };
    for (case, top) in cases.iter().zip(rank_cases_scored(art, cases, n)) {
        for s in top {
            let p = pop.map_or(0.0, |p| p[s.item as usize]);
            ex.features.push([s.score, p, case.exclude.len() as f32]);
            ex.labels.push(case.relevant.binary_search(&s.item).is_ok());
            ex.items.push(s.item);
        }
        ex.groups.push(ex.features.len());
    }
    ex
}

impl Ranker {
    fn phi(&self, x: &[f32; F]) -> [f64; D] {
        let mut z = [0f64; F];
        for i in 0..F {
            z[i] = f64::from((x[i] - self.mean[i]) / self.scale[i]);
        }
        expand(&z)
    }

    /// The score the exported ONNX graph computes (in f32, as it does).
    pub fn score(&self, x: &[f32; F]) -> f32 {
        let mut z = [0f32; F];
        for i in 0..F {
            z[i] = (x[i] - self.mean[i]) / self.scale[i];
        }
        let mut s = self.bias;
        for i in 0..F {
            s += self.linear[i] * z[i];
            for j in 0..F {
                s += self.quadratic[i * F + j] * z[i] * z[j];
            }
        }
        s
    }

    /// Fits on `ex` with L2 penalty `l2` (per example) by Newton's method.
    pub fn fit(ex: &Examples, l2: f64) -> Result<Self, String> {
        let n = ex.features.len();
        let positives = ex.labels.iter().filter(|&&l| l).count();
        if positives == 0 || positives == n {
            return Err(format!(
                "ranker training needs both outcomes among the candidates: {positives} of {n} candidates were interacted with"
            ));
        }
        let mut mean = [0f64; F];
        let mut sq = [0f64; F];
        for x in &ex.features {
            for i in 0..F {
                mean[i] += f64::from(x[i]);
                sq[i] += f64::from(x[i]) * f64::from(x[i]);
            }
        }
        let mut ranker = Ranker {
            mean: [0.0; F],
            scale: [1.0; F],
            bias: 0.0,
            linear: [0.0; F],
            quadratic: [0.0; F * F],
        };
        for i in 0..F {
            let m = mean[i] / n as f64;
            let var = (sq[i] / n as f64 - m * m).max(0.0);
            ranker.mean[i] = m as f32;
            // A constant feature (e.g. no popularity section) gets scale 1
            // and so contributes nothing but a constant.
            ranker.scale[i] = if var > 1e-12 { var.sqrt() as f32 } else { 1.0 };
        }
        let rows: Vec<[f64; D]> = ex.features.iter().map(|x| ranker.phi(x)).collect();
        let mut w = [0f64; D];
        // Start from the base rate so the first steps are small.
        let rate = positives as f64 / n as f64;
        w[0] = (rate / (1.0 - rate)).ln();
        let lambda = l2 * n as f64;
        for _ in 0..50 {
            let mut grad = [0f64; D];
            let mut hess = [[0f64; D]; D];
            for (phi, &label) in rows.iter().zip(&ex.labels) {
                let t: f64 = phi.iter().zip(&w).map(|(a, b)| a * b).sum();
                let p = 1.0 / (1.0 + (-t).exp());
                let r = p - f64::from(u8::from(label));
                let v = (p * (1.0 - p)).max(1e-12);
                for a in 0..D {
                    grad[a] += r * phi[a];
                    for b in a..D {
                        hess[a][b] += v * phi[a] * phi[b];
                    }
                }
            }
            for a in 0..D {
                for b in 0..a {
                    hess[a][b] = hess[b][a];
                }
                // The bias is not penalised.
                if a > 0 {
                    grad[a] += lambda * w[a];
                    hess[a][a] += lambda;
                }
            }
            let step = solve(hess, grad).ok_or("ranker training: singular Hessian")?;
            // Damped Newton: halve the step until the penalised loss drops
            // (a full step can overshoot on heavy-tailed scores).
            let before = loss(&rows, &ex.labels, &w, lambda);
            let mut t = 1.0;
            let mut next = w;
            loop {
                for a in 0..D {
                    next[a] = w[a] - t * step[a];
                }
                if loss(&rows, &ex.labels, &next, lambda) <= before || t < 1e-6 {
                    break;
                }
                t *= 0.5;
            }
            let largest = (0..D).map(|a| (next[a] - w[a]).abs()).fold(0.0, f64::max);
            w = next;
            if largest < 1e-7 {
                break;
            }
        }
        if w.iter().any(|x| !x.is_finite()) {
            return Err("ranker training diverged (non-finite weights)".into());
        }
        ranker.bias = w[0] as f32;
        for i in 0..F {
            ranker.linear[i] = w[1 + i] as f32;
        }
        for k in 0..F * F {
            ranker.quadratic[k] = w[1 + F + k] as f32;
        }
        Ok(ranker)
    }

    /// Metrics at `k` when each group is re-sorted by the ranker (`None`:
    /// in the first stage's order), stable like the server's sort.
    pub fn evaluate(
        ranker: Option<&Ranker>,
        ex: &Examples,
        cases: &[UserCase<'_>],
        k: usize,
        n_items: usize,
    ) -> RankingMetrics {
        let mut metrics = RankingMetrics::new(k, n_items);
        for (u, case) in cases.iter().enumerate() {
            let range = ex.groups[u]..ex.groups[u + 1];
            let mut order: Vec<(u32, f32)> = range
                .clone()
                .map(|r| {
                    let s = ranker.map_or(0.0, |m| m.score(&ex.features[r]));
                    (ex.items[r], s)
                })
                .collect();
            if ranker.is_some() {
                order.sort_by(|a, b| b.1.total_cmp(&a.1));
            }
            let ranked: Vec<u32> = order.iter().take(k).map(|p| p.0).collect();
            metrics.add(&ranked, case.relevant);
        }
        metrics
    }

    /// bundle.toml for this ranker with `candidates` retrieved per request.
    pub fn bundle_toml(&self, candidates: usize) -> String {
        let features: Vec<String> = FEATURES.iter().map(|f| format!("\"{f}\"")).collect();
        format!(
            "# Written by vitrine-train --ranker: degree-2 logistic regression (docs/RANKER.md).\n\
             [ranker]\nfile = \"ranker.onnx\"\ncandidates = {candidates}\ninput = \"features\"\n\
             output = \"score\"\nfeatures = [{}]\n",
            features.join(", ")
        )
    }

    /// The ONNX model: input `features` float32 [n, 3], output `score`
    /// float32 [n, 1].
    pub fn to_onnx(&self) -> Vec<u8> {
        let mut weights = Vec::with_capacity(F + F * F);
        weights.extend_from_slice(&self.linear);
        weights.extend_from_slice(&self.quadratic);
        let mut graph = Vec::new();
        let nodes: [Node<'_>; 9] = [
            ("Sub", &["features", "mean"], "centred", None),
            ("Div", &["centred", "scale"], "z", None),
            ("Unsqueeze", &["z", "axis2"], "z_col", None),
            ("Unsqueeze", &["z", "axis1"], "z_row", None),
            ("Mul", &["z_col", "z_row"], "outer", None),
            ("Reshape", &["outer", "flat_shape"], "products", None),
            ("Concat", &["z", "products"], "expanded", Some(("axis", 1))),
            ("MatMul", &["expanded", "weights"], "logit", None),
            ("Add", &["logit", "bias"], "score", None),
        ];
        for (i, (op, inputs, output, attr)) in nodes.iter().enumerate() {
            let mut node = Vec::new();
            for input in *inputs {
                pb::string(&mut node, 1, input);
            }
            pb::string(&mut node, 2, output);
            pb::string(&mut node, 3, &format!("{}_{i}", op.to_lowercase()));
            pb::string(&mut node, 4, op);
            if let Some((name, value)) = attr {
                let mut a = Vec::new();
                pb::string(&mut a, 1, name);
                pb::varint_field(&mut a, 3, *value as u64);
                pb::varint_field(&mut a, 20, 2); // AttributeType INT
                pb::message(&mut node, 5, &a);
            }
            pb::message(&mut graph, 1, &node);
        }
        pb::string(&mut graph, 2, "vitrine_ranker");
        for t in [
            pb::float_tensor("mean", &[F as i64], &self.mean),
            pb::float_tensor("scale", &[F as i64], &self.scale),
            pb::int_tensor("axis2", &[1], &[2]),
            pb::int_tensor("axis1", &[1], &[1]),
            pb::int_tensor("flat_shape", &[2], &[0, (F * F) as i64]),
            pb::float_tensor("weights", &[(F + F * F) as i64, 1], &weights),
            pb::float_tensor("bias", &[1], &[self.bias]),
        ] {
            pb::message(&mut graph, 5, &t);
        }
        pb::message(
            &mut graph,
            11,
            &pb::value_info("features", &[pb::Dim::Param("n"), pb::Dim::Value(F as i64)]),
        );
        pb::message(
            &mut graph,
            12,
            &pb::value_info("score", &[pb::Dim::Param("n"), pb::Dim::Value(1)]),
        );
        let mut model = Vec::new();
        pb::varint_field(&mut model, 1, 7); // ir_version
        pb::string(&mut model, 2, "vitrine-train");
        pb::string(&mut model, 3, env!("CARGO_PKG_VERSION"));
        pb::message(&mut model, 7, &graph);
        let mut opset = Vec::new();
        pb::string(&mut opset, 1, "");
        pb::varint_field(&mut opset, 2, 13);
        pb::message(&mut model, 8, &opset);
        model
    }
}

/// Penalised negative log-likelihood (the bias is not penalised).
fn loss(rows: &[[f64; D]], labels: &[bool], w: &[f64; D], lambda: f64) -> f64 {
    let data: f64 = rows
        .iter()
        .zip(labels)
        .map(|(phi, &y)| {
            let t: f64 = phi.iter().zip(w).map(|(a, b)| a * b).sum();
            // log(1 + e^t) − y·t, computed without overflow.
            let softplus = if t > 0.0 {
                t + (-t).exp().ln_1p()
            } else {
                t.exp().ln_1p()
            };
            softplus - if y { t } else { 0.0 }
        })
        .sum();
    data + 0.5 * lambda * w[1..].iter().map(|x| x * x).sum::<f64>()
}

/// An ONNX node: operator, inputs, output, an optional integer attribute.
type Node<'a> = (&'a str, &'a [&'a str], &'a str, Option<(&'a str, i64)>);

/// [1, z, vec(z zᵀ)]
fn expand(z: &[f64; F]) -> [f64; D] {
    let mut out = [0f64; D];
    out[0] = 1.0;
    out[1..=F].copy_from_slice(z);
    for i in 0..F {
        for j in 0..F {
            out[1 + F + i * F + j] = z[i] * z[j];
        }
    }
    out
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: [[f64; D]; D], mut b: [f64; D]) -> Option<[f64; D]> {
    for c in 0..D {
        let pivot = (c..D).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[pivot][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, pivot);
        b.swap(c, pivot);
        for r in c + 1..D {
            let f = a[r][c] / a[c][c];
            for k in c..D {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0f64; D];
    for c in (0..D).rev() {
        let s: f64 = (c + 1..D).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    Some(x)
}

/// The protobuf wire format, just enough for an ONNX ModelProto.
mod pb {
    pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    pub fn varint_field(buf: &mut Vec<u8>, field: u64, v: u64) {
        varint(buf, field << 3);
        varint(buf, v);
    }

    pub fn bytes(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(buf, (field << 3) | 2);
        varint(buf, data.len() as u64);
        buf.extend_from_slice(data);
    }

    pub fn string(buf: &mut Vec<u8>, field: u64, s: &str) {
        bytes(buf, field, s.as_bytes());
    }

    pub fn message(buf: &mut Vec<u8>, field: u64, m: &[u8]) {
        bytes(buf, field, m);
    }

    /// TensorProto: dims = 1, data_type = 2 (FLOAT 1, INT64 7), name = 8,
    /// raw_data = 9 (little-endian).
    fn tensor(name: &str, dims: &[i64], data_type: u64, raw: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            varint_field(&mut t, 1, d as u64);
        }
        varint_field(&mut t, 2, data_type);
        string(&mut t, 8, name);
        bytes(&mut t, 9, raw);
        t
    }

    pub fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> Vec<u8> {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensor(name, dims, 1, &raw)
    }

    pub fn int_tensor(name: &str, dims: &[i64], values: &[i64]) -> Vec<u8> {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensor(name, dims, 7, &raw)
    }

    pub enum Dim<'a> {
        Value(i64),
        Param(&'a str),
    }

    /// ValueInfoProto { name = 1, type = 2 { tensor_type = 1 { elem_type = 1,
    /// shape = 2 { dim = 1 { dim_value = 1 | dim_param = 2 } } } } }, float.
    pub fn value_info(name: &str, dims: &[Dim<'_>]) -> Vec<u8> {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            match d {
                Dim::Value(v) => varint_field(&mut dim, 1, *v as u64),
                Dim::Param(p) => string(&mut dim, 2, p),
            }
            message(&mut shape, 1, &dim);
        }
        let mut tensor_type = Vec::new();
        varint_field(&mut tensor_type, 1, 1);
        message(&mut tensor_type, 2, &shape);
        let mut ty = Vec::new();
        message(&mut ty, 1, &tensor_type);
        let mut vi = Vec::new();
        string(&mut vi, 1, name);
        message(&mut vi, 2, &ty);
        vi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded data where the label depends on score and popularity, with a
    /// product term: the fit must recover a ranker that orders better than
    /// the score alone.
    fn synthetic() -> Examples {
        let mut ex = Examples {
            groups: vec![0],
            ..Examples::default()
        };
        let mut state = 7u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _user in 0..300 {
            let activity = (uniform() * 100.0).floor() as f32 + 1.0;
            for i in 0..50 {
                let score = uniform() as f32 * 2.0;
                let pop = uniform() as f32 * 500.0;
                let t = 2.0 * f64::from(score) + 0.004 * f64::from(pop)
                    - 0.00004 * f64::from(pop) * f64::from(activity)
                    - 4.0;
                let label = uniform() < 1.0 / (1.0 + (-t).exp());
                ex.features.push([score, pop, activity]);
                ex.labels.push(label);
                ex.items.push(i);
            }
            ex.groups.push(ex.features.len());
        }
        ex
    }

    #[test]
    fn newton_fit_is_a_likelihood_optimum_with_the_expected_signs() {
        let ex = synthetic();
        let r = Ranker::fit(&ex, 1e-4).unwrap();
        // Gradient of the penalised log-likelihood is ~0 at the optimum:
        // nudging any weight lowers the objective.
        let loglik = |r: &Ranker| -> f64 {
            ex.features
                .iter()
                .zip(&ex.labels)
                .map(|(x, &y)| {
                    let p = 1.0 / (1.0 + (-f64::from(r.score(x))).exp());
                    if y { p.ln() } else { (1.0 - p).ln() }
                })
                .sum()
        };
        let best = loglik(&r);
        for i in 0..F {
            for delta in [-0.05f32, 0.05] {
                let mut other = r.clone();
                other.linear[i] += delta;
                assert!(loglik(&other) < best, "linear {i} {delta}");
            }
        }
        // Positive weight on the score, the product pop×activity negative.
        assert!(r.linear[0] > 0.0);
        assert!(r.quadratic[F + 2] + r.quadratic[2 * F + 1] < 0.0);
    }

    #[test]
    fn fitting_refuses_one_sided_labels() {
        let mut ex = synthetic();
        ex.labels.iter_mut().for_each(|l| *l = false);
        let err = Ranker::fit(&ex, 1e-4).unwrap_err();
        assert!(err.contains("both outcomes"), "{err}");
    }
}
