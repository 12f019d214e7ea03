//! Hyper-parameter search over a declared space: random search and
//! successive halving, seeded. Trials are scored on the validation slice only
//! (never the test slice); the protocol then evaluates the chosen parameters
//! on the test slice as usual.
//!
//! Space syntax (`--search`): comma-separated dimensions, each
//! `name=lo..hi` (uniform), `name=lo..hi:log` (log-uniform) or
//! `name=a|b|c` (choices). Names: factors, iterations, reg, alpha, lr,
//! neighbors, shrink, cg_steps (integers are rounded).

use crate::algo::Params;
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use vitrine_core::synthetic::SplitMix64;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Dim {
    Range { lo: f64, hi: f64, log: bool },
    Choice(Vec<f64>),
}

/// A parsed search space.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Space(pub Vec<(String, Dim)>);

const NAMES: [&str; 8] = [
    "factors",
    "iterations",
    "reg",
    "alpha",
    "lr",
    "neighbors",
    "shrink",
    "cg_steps",
];

impl std::str::FromStr for Space {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut dims = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, range) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=lo..hi or name=a|b"))?;
            let name = name.trim();
            if !NAMES.contains(&name) {
                return Err(format!(
                    "unknown parameter {name:?} (searchable: {})",
                    NAMES.join(", ")
                ));
            }
            let number = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{part:?}: {s:?} is not a number"))
            };
            let dim = if let Some((lo, hi)) = range.split_once("..") {
                let (hi, log) = match hi.strip_suffix(":log") {
                    Some(h) => (h, true),
                    None => (hi, false),
                };
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) || (log && lo <= 0.0) {
                    return Err(format!("{part:?}: need lo < hi (and lo > 0 for :log)"));
                }
                Dim::Range { lo, hi, log }
            } else {
                Dim::Choice(range.split('|').map(number).collect::<Result<_, _>>()?)
            };
            if dims.iter().any(|(n, _)| n == name) {
                return Err(format!("{name} appears twice"));
            }
            dims.push((name.to_string(), dim));
        }
        if dims.is_empty() {
            return Err("empty search space".into());
        }
        Ok(Space(dims))
    }
}

impl Space {
    /// One random point.
    pub fn sample(&self, rng: &mut SplitMix64) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|(name, dim)| {
                let u = f64::from(rng.next_f32());
                let v = match dim {
                    Dim::Range { lo, hi, log: false } => lo + u * (hi - lo),
                    Dim::Range { lo, hi, log: true } => (lo.ln() + u * (hi.ln() - lo.ln())).exp(),
                    Dim::Choice(values) => values[rng.below(values.len())],
                };
                (name.clone(), v)
            })
            .collect()
    }
}

/// `params` with the point applied (integers rounded, at least 1).
pub fn apply(params: &Params, point: &BTreeMap<String, f64>) -> Params {
    let mut p = params.clone();
    let int = |v: f64| (v.round() as usize).max(1);
    for (name, &v) in point {
        match name.as_str() {
            "factors" => p.factors = int(v),
            "iterations" => p.iterations = int(v),
            "reg" => p.reg = v as f32,
            "alpha" => p.alpha = v as f32,
            "lr" => p.lr = v as f32,
            "neighbors" => p.neighbors = int(v),
            "shrink" => p.shrink = v as f32,
            "cg_steps" => p.cg_steps = int(v),
            _ => {}
        }
    }
    p
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Random,
    Halving,
}

/// One evaluated configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub point: BTreeMap<String, f64>,
    pub params: Params,
    /// Iterations given to this trial (successive halving's budget).
    pub budget: usize,
    /// Validation score (higher is better).
    pub score: f64,
}

/// Runs the search; `score(params)` trains on the training slice and scores
/// on the validation slice. Returns the best parameters and every trial.
pub fn search(
    base: &Params,
    space: &Space,
    method: Method,
    trials: usize,
    eta: usize,
    iterative: bool,
    mut score: impl FnMut(&Params) -> Result<f64>,
) -> Result<(Params, Vec<Trial>)> {
    if trials == 0 {
        bail!("--trials must be positive");
    }
    let mut rng = SplitMix64::new(base.seed ^ 0x5eed);
    let points: Vec<BTreeMap<String, f64>> = (0..trials).map(|_| space.sample(&mut rng)).collect();
    let mut log = Vec::new();
    let full = |p: &BTreeMap<String, f64>| apply(base, p);
    let mut alive: Vec<usize> = (0..trials).collect();
    let halving = method == Method::Halving && iterative && eta >= 2 && trials > 1;
    if halving {
        // Rungs: budget grows by eta while survivors shrink by eta.
        let rungs = (trials as f64).log(eta as f64).floor() as u32;
        for rung in 0..=rungs {
            let mut scored = Vec::new();
            for &t in &alive {
                let mut params = full(&points[t]);
                let budget = (params.iterations / eta.pow(rungs - rung)).max(1);
                params.iterations = budget;
                let s = score(&params)?;
                log.push(Trial {
                    point: points[t].clone(),
                    params,
                    budget,
                    score: s,
                });
                scored.push((t, s));
            }
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let keep = (scored.len() / eta).max(1);
            alive = scored.into_iter().take(keep).map(|(t, _)| t).collect();
            if rung == rungs {
                break;
            }
        }
        return Ok((full(&points[alive[0]]), log));
    }
    let mut best: Option<(usize, f64)> = None;
    for (t, point) in points.iter().enumerate() {
        let params = full(point);
        let s = score(&params)?;
        log.push(Trial {
            point: point.clone(),
            params: params.clone(),
            budget: params.iterations,
            score: s,
        });
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((t, s));
        }
    }
    Ok((full(&points[best.expect("at least one trial").0]), log))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::Algo;

    #[test]
    fn parses_ranges_logs_and_choices() {
        let s: Space = "reg=100..2000:log, neighbors=200|500 ,lr=0.001..0.1"
            .parse()
            .unwrap();
        assert_eq!(s.0.len(), 3);
        assert!("bogus=1..2".parse::<Space>().is_err());
        assert!("reg=5..1".parse::<Space>().is_err());
        assert!("reg=0..1:log".parse::<Space>().is_err());
        assert!("reg=1..2,reg=3..4".parse::<Space>().is_err());
        let mut rng = SplitMix64::new(1);
        for _ in 0..100 {
            let p = s.sample(&mut rng);
            assert!((100.0..=2000.0).contains(&p["reg"]));
            assert!(p["neighbors"] == 200.0 || p["neighbors"] == 500.0);
        }
    }

    #[test]
    fn random_search_finds_the_best_point_and_logs_every_trial() {
        let space: Space = "reg=1..100".parse().unwrap();
        let base = Params::defaults(Algo::Ease);
        // Objective peaks at reg = 50.
        let (best, trials) = search(&base, &space, Method::Random, 40, 3, false, |p| {
            Ok(-(f64::from(p.reg) - 50.0).abs())
        })
        .unwrap();
        assert_eq!(trials.len(), 40);
        let top = trials.iter().map(|t| t.score).fold(f64::MIN, f64::max);
        assert_eq!(-(f64::from(best.reg) - 50.0).abs(), top);
        assert!((f64::from(best.reg) - 50.0).abs() < 10.0);
    }

    #[test]
    fn halving_gives_survivors_more_iterations() {
        let space: Space = "reg=1..100".parse().unwrap();
        let base = Params {
            iterations: 27,
            ..Params::defaults(Algo::Als)
        };
        let (_, trials) = search(&base, &space, Method::Halving, 9, 3, true, |p| {
            Ok(f64::from(p.reg))
        })
        .unwrap();
        let budgets: Vec<usize> = trials.iter().map(|t| t.budget).collect();
        // 9 trials at 3 iterations, 3 at 9, 1 at 27.
        assert_eq!(budgets.iter().filter(|&&b| b == 3).count(), 9);
        assert_eq!(budgets.iter().filter(|&&b| b == 9).count(), 3);
        assert_eq!(budgets.iter().filter(|&&b| b == 27).count(), 1);
    }
}
