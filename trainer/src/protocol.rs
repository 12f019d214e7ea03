//! The evaluation protocols, end to end: split, fit, build the artifact, and
//! evaluate that very artifact (what will be served is what was measured).
//!
//! - `kfold`: random k-fold over ratings; RMSE and MAE of rating prediction
//!   (models that predict ratings: `mf`), averaged over folds.
//! - `recbole`: ratings below `min_rating` (default 3) dropped, per-user random
//!   80/10/10, full-catalogue ranking with train + valid items masked, @K
//!   metrics on the test slice.
//! - `leave-last-out`: each user's latest interaction is the test slice, the
//!   one before it validation.
//! - `temporal`: one global time cut: the newest 20% test, the 10% before
//!   validation.
//! - `none`: no evaluation; the model is fitted on every interaction (what a
//!   scheduled retraining job publishes once a protocol has chosen its
//!   parameters). The artifact then has no holdout.
//!
//! The artifact produced is the model of the (first) split, with its
//! training + validation items as `seen_items` (excluded when serving) and a
//! sample of the test slice as `holdout` (the server's shadow gate).

use crate::algo::{self, Algo, Model, Params};
use crate::search;
use crate::sparse::Sparse;
use anyhow::{Result, bail};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;
use vitrine_core::artifact::{FactorParts, ModelMetadata, ModelParts};
use vitrine_core::csr::CsrParts;
use vitrine_core::dataset::Interactions;
use vitrine_core::evaluate::{UserCase, evaluate_ranking, rank_cases};
use vitrine_core::metrics::{mae, rmse};
use vitrine_core::split::{self, Split};
use vitrine_core::{Artifact, ElementType};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// No evaluation: fit on every interaction (production retraining).
    None,
    Kfold,
    Recbole,
    LeaveLastOut,
    Temporal,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::None => "none",
            Protocol::Kfold => "kfold",
            Protocol::Recbole => "recbole",
            Protocol::LeaveLastOut => "leave-last-out",
            Protocol::Temporal => "temporal",
        }
    }
}

/// Everything a run needs besides the data.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub name: String,
    pub algo: Algo,
    pub params: Params,
    pub protocol: Protocol,
    pub folds: usize,
    pub min_rating: Option<f32>,
    pub k: usize,
    pub threads: usize,
    /// Users whose test items are kept in the artifact's holdout section.
    pub holdout_users: usize,
    pub quiet: bool,
    /// Hyper-parameter search before the final fit.
    pub search: Option<SearchConfig>,
    /// `Interactions::fingerprint()` of the data, computed once by the caller.
    pub fingerprint: String,
    /// Fit a second-stage ranker on the validation slice (ranking protocols).
    pub ranker: Option<RankerOptions>,
}

/// `--ranker` settings.
#[derive(Clone, Copy, Debug)]
pub struct RankerOptions {
    /// First-stage candidates per user (the bundle's `candidates`).
    pub candidates: usize,
    pub export: RankerExport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RankerExport {
    /// Only if it did not lower NDCG@K on the held-out validation users.
    IfBetter,
    Always,
}

/// `--search` settings.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    pub space: search::Space,
    pub method: search::Method,
    pub trials: usize,
    pub eta: usize,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub metrics: BTreeMap<String, f64>,
    pub fit_seconds: f64,
    pub eval_seconds: f64,
    pub details: serde_json::Value,
    /// The artifact bytes (metrics included in its metadata).
    pub artifact: Vec<u8>,
    pub split: Split,
    /// Top-K item indices per evaluated user (ranking protocols).
    pub top_k: Vec<(u32, Vec<u32>)>,
    /// The second-stage ranker, when one was asked for and it did not make
    /// the held-out validation users' ranking worse.
    pub ranker: Option<TrainedRanker>,
}

/// Files for a version directory's ranker bundle.
#[derive(Debug)]
pub struct TrainedRanker {
    pub onnx: Vec<u8>,
    pub bundle_toml: String,
}

fn log(_cfg: &RunConfig, message: impl AsRef<str>) {
    tracing::info!("{}", message.as_ref());
}

/// Fits with a progress bar over the iterations (hidden when stderr is not a
/// terminal, or with --quiet).
fn fit_model(cfg: &RunConfig, train: &Sparse, params: &Params) -> Model {
    if cfg.quiet || !algo::is_iterative(cfg.algo) {
        return algo::fit(cfg.algo, train, params);
    }
    let bar = indicatif::ProgressBar::new(params.iterations as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} iterations, {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("fitting {}", cfg.algo.name()));
    let model = algo::fit_with_progress(cfg.algo, train, params, &|done| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    model
}

pub fn run(data: &Interactions, cfg: &RunConfig) -> Result<Outcome> {
    let Some(sc) = &cfg.search else {
        return match cfg.protocol {
            Protocol::None => run_fit_only(data, cfg),
            Protocol::Kfold => run_kfold(data, cfg),
            _ => run_ranking(data, cfg),
        };
    };
    // Search on the validation slice, then run the protocol with the winner.
    let iterative = algo::is_iterative(cfg.algo);
    let start = Instant::now();
    let mut scorer = validation_scorer(data, cfg)?;
    let (best, trials) = search::search(
        &cfg.params,
        &sc.space,
        sc.method,
        sc.trials,
        sc.eta,
        iterative,
        |p| scorer(p),
    )?;
    let objective = if cfg.protocol == Protocol::Kfold {
        "-rmse (validation)"
    } else {
        "ndcg@k (validation)"
    };
    log(
        cfg,
        format!(
            "search: {} trials in {:.1}s, best {:?}",
            trials.len(),
            start.elapsed().as_secs_f64(),
            trials.iter().map(|t| t.score).fold(f64::MIN, f64::max)
        ),
    );
    let final_cfg = RunConfig {
        params: best.clone(),
        search: None,
        ..cfg.clone()
    };
    let mut outcome = run(data, &final_cfg)?;
    outcome.details["search"] = json!({
        "method": sc.method, "space": sc.space, "objective": objective, "trials": trials,
        "best_params": best, "iterative": iterative,
        "note": if iterative || sc.method == search::Method::Random { "" } else { "successive halving needs an iterative algorithm; ran random search" },
    });
    Ok(outcome)
}

fn run_fit_only(data: &Interactions, cfg: &RunConfig) -> Result<Outcome> {
    let rows: Vec<usize> = (0..data.len())
        .filter(|&i| cfg.min_rating.is_none_or(|m| data.rating(i) >= m))
        .collect();
    if rows.is_empty() {
        bail!(
            "no interactions rated {} or more",
            cfg.min_rating.unwrap_or(0.0)
        );
    }
    let train = Sparse::from_interactions(data, &rows, !cfg.algo.predicts_ratings());
    let start = Instant::now();
    let model = fit_model(cfg, &train, &cfg.params);
    let fit_seconds = start.elapsed().as_secs_f64();
    log(
        cfg,
        format!(
            "{} fitted on all {} interactions in {fit_seconds:.2}s",
            cfg.algo.name(),
            rows.len()
        ),
    );
    let seen = train.row_lists();
    drop(train);
    let artifact = build_artifact(
        &model,
        data,
        cfg,
        &rows,
        seen,
        vec![Vec::new(); data.n_users()],
        &BTreeMap::new(),
    )?;
    Ok(Outcome {
        metrics: BTreeMap::new(),
        fit_seconds,
        eval_seconds: 0.0,
        details: json!({"split": {"train": rows.len(), "valid": 0, "test": 0}}),
        artifact,
        split: Split {
            train: rows,
            valid: Vec::new(),
            test: Vec::new(),
        },
        top_k: Vec::new(),
        ranker: None,
    })
}

/// Scores parameters on the validation slice (higher is better).
pub type ValidationScorer<'a> = Box<dyn FnMut(&Params) -> Result<f64> + 'a>;

/// A function scoring parameters on the validation slice only (higher is
/// better): NDCG@K of the served artifact for ranking protocols, −RMSE on a
/// 10% carve-out of the first fold's training rows for kfold. Used by
/// `--search` and `--curve`; the test slice is never touched.
pub fn validation_scorer<'a>(
    data: &'a Interactions,
    cfg: &'a RunConfig,
) -> Result<ValidationScorer<'a>> {
    match cfg.protocol {
        Protocol::None => bail!("protocol none has no validation slice"),
        Protocol::Kfold => {
            let (train_rows, valid) = kfold_validation_rows(data, cfg)?;
            let train = Sparse::from_interactions(data, &train_rows, false);
            Ok(Box::new(move |p: &Params| {
                let model = algo::fit(cfg.algo, &train, p);
                let pairs = valid.iter().map(|&i| {
                    (
                        f64::from(predict(&model, data.users[i], data.items[i])),
                        f64::from(data.rating(i)),
                    )
                });
                Ok(-rmse(pairs))
            }))
        }
        _ => {
            let (split, _) = ranking_split(data, cfg)?;
            if split.valid.is_empty() {
                bail!("the {} split has no validation slice", cfg.protocol.name());
            }
            let train = Sparse::from_interactions(data, &split.train, !cfg.algo.predicts_ratings());
            let history = train.row_lists();
            let relevant = user_lists(data, &split.valid);
            Ok(Box::new(move |p: &Params| {
                let model = algo::fit(cfg.algo, &train, p);
                let no_holdout = vec![Vec::new(); data.n_users()];
                let bytes = build_artifact(
                    &model,
                    data,
                    cfg,
                    &split.train,
                    history.clone(),
                    no_holdout,
                    &BTreeMap::new(),
                )?;
                let art = Artifact::from_bytes(&bytes)?;
                let cases = user_cases(&history, &history, &relevant);
                Ok(evaluate_ranking(&art, &cases, cfg.k, cfg.threads).finish()
                    [&format!("ndcg@{}", cfg.k)])
            }))
        }
    }
}

/// Validation score after 1, 2, …, `iterations` iterations (each point a
/// fresh fit: O(n²) iterations in all, for a picture, not for speed).
pub fn learning_curve(data: &Interactions, cfg: &RunConfig) -> Result<Vec<(usize, f64)>> {
    if !algo::is_iterative(cfg.algo) {
        bail!(
            "--curve plots iterations: use it with als, mf or bpr, not {}",
            cfg.algo.name()
        );
    }
    let mut scorer = validation_scorer(data, cfg)?;
    (1..=cfg.params.iterations)
        .map(|it| {
            let score = scorer(&Params {
                iterations: it,
                ..cfg.params.clone()
            })?;
            log(cfg, format!("curve: {it} iterations → {score:.4}"));
            Ok((it, score))
        })
        .collect()
}

/// A line chart as a standalone SVG.
pub fn svg_line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(usize, f64)],
) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let x_max = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (mut y_min, mut y_max) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if y_max.partial_cmp(&y_min) != Some(std::cmp::Ordering::Greater) {
        (y_min, y_max) = (y_min - 1.0, y_max + 1.0);
    }
    let pad = (y_max - y_min) * 0.05;
    let (y_min, y_max) = (y_min - pad, y_max + pad);
    let sx = |x: f64| left + (x - 1.0).max(0.0) / (x_max - 1.0).max(1.0) * (w - left - right);
    let sy = |y: f64| top + (y_max - y) / (y_max - y_min) * (h - top - bottom);
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x as f64), sy(y)))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
        w / 2.0,
        escape(title),
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (left + w - right) / 2.0,
        h - 12.0,
        escape(x_label),
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        escape(y_label),
    );
    for i in 0..=4 {
        let y = y_min + (y_max - y_min) * f64::from(i) / 4.0;
        svg += &format!(
            "<line x1=\"{}\" y1=\"{:.1}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"black\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.4}</text>\n",
            left - 4.0,
            sy(y),
            sy(y),
            left - 6.0,
            sy(y) + 4.0
        );
    }
    for &(x, _) in points {
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>\n",
            sx(x as f64),
            h - bottom + 16.0
        );
    }
    svg += &format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n",
        path.join(" ")
    );
    for &(x, y) in points {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f77b4\"/>\n",
            sx(x as f64),
            sy(y)
        );
    }
    svg + "</svg>\n"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Validation rows for searching under kfold: the first fold's training rows,
/// 90% to fit and a seeded 10% to score.
fn kfold_validation_rows(data: &Interactions, cfg: &RunConfig) -> Result<(Vec<usize>, Vec<usize>)> {
    if !cfg.algo.predicts_ratings() || data.ratings.is_none() {
        bail!("kfold search needs a rating model (--algo mf) and rated data");
    }
    let assignment = split::kfold_assignment(data.len(), cfg.folds.max(2), cfg.params.seed);
    let mut rows = split::kfold_round(&assignment, 0).train;
    split::shuffle(
        &mut rows,
        &mut vitrine_core::synthetic::SplitMix64::new(cfg.params.seed ^ 0xfeed),
    );
    let cut = rows.len() * 9 / 10;
    let valid = rows.split_off(cut);
    Ok((rows, valid))
}

fn run_kfold(data: &Interactions, cfg: &RunConfig) -> Result<Outcome> {
    if !cfg.algo.predicts_ratings() {
        bail!(
            "kfold evaluates rating prediction (RMSE, MAE); --algo {} ranks items: use --protocol recbole, leave-last-out or temporal",
            cfg.algo.name()
        );
    }
    if data.ratings.is_none() {
        bail!("kfold needs explicit ratings and this data has no rating column");
    }
    if cfg.folds < 2 || cfg.folds > data.len() {
        bail!(
            "--folds must be between 2 and the number of ratings ({})",
            data.len()
        );
    }
    let assignment = split::kfold_assignment(data.len(), cfg.folds, cfg.params.seed);
    let (mut fold_reports, mut sums, mut fit_seconds) = (Vec::new(), (0.0, 0.0), 0.0);
    let mut first: Option<(Model, Split)> = None;
    for f in 0..cfg.folds {
        let round = split::kfold_round(&assignment, f);
        let train = Sparse::from_interactions(data, &round.train, false);
        let start = Instant::now();
        let model = fit_model(cfg, &train, &cfg.params);
        let seconds = start.elapsed().as_secs_f64();
        fit_seconds += seconds;
        let pairs: Vec<(f64, f64)> = round
            .test
            .iter()
            .map(|&i| {
                (
                    f64::from(predict(&model, data.users[i], data.items[i])),
                    f64::from(data.rating(i)),
                )
            })
            .collect();
        let (r, m) = (rmse(pairs.iter().copied()), mae(pairs.iter().copied()));
        log(
            cfg,
            format!(
                "fold {}/{}: rmse {r:.4}, mae {m:.4}, fit {seconds:.2}s",
                f + 1,
                cfg.folds
            ),
        );
        sums = (sums.0 + r, sums.1 + m);
        fold_reports.push(json!({"fold": f, "rmse": r, "mae": m, "fit_seconds": seconds, "test": round.test.len()}));
        if first.is_none() {
            first = Some((model, round));
        }
    }
    let n = cfg.folds as f64;
    let metrics = BTreeMap::from([
        ("rmse".to_string(), sums.0 / n),
        ("mae".to_string(), sums.1 / n),
    ]);
    let (model, round) = first.expect("at least two folds");
    let seen = user_lists(data, &round.train);
    let holdout = sample_users(user_lists(data, &round.test), cfg.holdout_users);
    let artifact = build_artifact(&model, data, cfg, &round.train, seen, holdout, &metrics)?;
    Ok(Outcome {
        metrics,
        fit_seconds,
        eval_seconds: 0.0,
        details: json!({"folds": fold_reports}),
        artifact,
        split: round,
        top_k: Vec::new(),
        ranker: None,
    })
}

/// Rating prediction of an embedding model (f32, as served).
fn predict(model: &Model, u: u32, i: u32) -> f32 {
    match model {
        Model::Embedding {
            dims,
            users,
            items,
            user_bias,
            item_bias,
            global,
        } => {
            let (u, i, k) = (u as usize, i as usize, *dims);
            algo::dot(&users[u * k..(u + 1) * k], &items[i * k..(i + 1) * k])
                + user_bias.as_ref().map_or(0.0, |b| b[u])
                + item_bias.as_ref().map_or(0.0, |b| b[i])
                + global
        }
        Model::ItemItem { .. } => 0.0,
    }
}

/// The protocol's split (and the rating threshold it applied).
fn ranking_split(data: &Interactions, cfg: &RunConfig) -> Result<(Split, Option<f32>)> {
    split_for(data, cfg.protocol, cfg.min_rating, cfg.params.seed)
}

/// The split a ranking protocol (`recbole`, `leave-last-out`, `temporal`)
/// makes of `data`, and the rating threshold it applied: the same rows for
/// the same data, threshold and seed, wherever it is called (the quantizer
/// reproduces the trainer's test slice with it).
pub fn split_for(
    data: &Interactions,
    protocol: Protocol,
    min_rating: Option<f32>,
    seed: u64,
) -> Result<(Split, Option<f32>)> {
    let min_rating = match (protocol, min_rating, data.ratings.is_some()) {
        (_, Some(m), _) => Some(m),
        (Protocol::Recbole, None, true) => Some(3.0),
        _ => None,
    };
    let kept: Vec<usize> = (0..data.len())
        .filter(|&i| min_rating.is_none_or(|m| data.rating(i) >= m))
        .collect();
    let split = match protocol {
        Protocol::Recbole => split::recbole(data, [0.8, 0.1, 0.1], min_rating, seed),
        Protocol::LeaveLastOut => restrict(
            split::leave_last_out(data).map_err(anyhow::Error::msg)?,
            &kept,
        ),
        Protocol::Temporal => restrict(
            split::temporal(data, 0.1, 0.2).map_err(anyhow::Error::msg)?,
            &kept,
        ),
        Protocol::Kfold | Protocol::None => {
            bail!("protocol {} has no ranking split", protocol.name())
        }
    };
    Ok((split, min_rating))
}

fn run_ranking(data: &Interactions, cfg: &RunConfig) -> Result<Outcome> {
    let (split, min_rating) = ranking_split(data, cfg)?;
    if split.train.is_empty() || split.test.is_empty() {
        bail!(
            "the split left an empty train or test slice ({} / {} rows)",
            split.train.len(),
            split.test.len()
        );
    }
    log(
        cfg,
        format!(
            "{} split: {} train, {} valid, {} test",
            cfg.protocol.name(),
            split.train.len(),
            split.valid.len(),
            split.test.len()
        ),
    );
    let train = Sparse::from_interactions(data, &split.train, !cfg.algo.predicts_ratings());
    let start = Instant::now();
    let model = fit_model(cfg, &train, &cfg.params);
    let fit_seconds = start.elapsed().as_secs_f64();
    log(
        cfg,
        format!("{} fitted in {fit_seconds:.2}s", cfg.algo.name()),
    );

    let history = train.row_lists();
    let mut train_valid = split.train.clone();
    train_valid.extend_from_slice(&split.valid);
    let exclude = user_lists(data, &train_valid);
    let relevant = user_lists(data, &split.test);
    let holdout = sample_users(relevant.clone(), cfg.holdout_users);
    let empty = BTreeMap::new();
    let bytes = build_artifact(
        &model,
        data,
        cfg,
        &split.train,
        exclude.clone(),
        holdout.clone(),
        &empty,
    )?;
    let art = Artifact::from_bytes(&bytes)?;

    let start = Instant::now();
    let cases = user_cases(&history, &exclude, &relevant);
    let accumulated = evaluate_ranking(&art, &cases, cfg.k, cfg.threads);
    let metrics = accumulated.finish();
    let eval_seconds = start.elapsed().as_secs_f64();
    log(
        cfg,
        format!(
            "evaluated {} users in {eval_seconds:.2}s",
            accumulated.users()
        ),
    );
    let top_k = cases
        .iter()
        .map(|c| c.user)
        .zip(rank_cases(&art, &cases, cfg.k))
        .collect();
    let mut details = json!({"split": {"train": split.train.len(), "valid": split.valid.len(), "test": split.test.len()},
                         "min_rating": min_rating, "evaluated_users": accumulated.users()});
    let mut metrics = metrics;
    let ranker = match cfg.ranker {
        Some(opts) => {
            let valid = user_lists(data, &split.valid);
            let (trained, report) =
                train_ranker(&art, cfg, opts, &history, &valid, &exclude, &relevant)?;
            // The artifact's metrics describe what the version serves: with
            // an exported ranker, its test metrics too.
            if trained.is_some() {
                for m in ["ndcg", "recall"] {
                    let key = format!("{m}@{}", cfg.k);
                    if let Some(v) = report["test"]["with_ranker"][&key].as_f64() {
                        metrics.insert(format!("ranker_{key}"), v);
                    }
                }
            }
            details["ranker"] = report;
            trained
        }
        None => None,
    };
    let artifact = build_artifact(&model, data, cfg, &split.train, exclude, holdout, &metrics)?;
    Ok(Outcome {
        metrics,
        fit_seconds,
        eval_seconds,
        details,
        artifact,
        split,
        top_k,
        ranker,
    })
}

/// Fits the second-stage ranker (crate::ranker) on the validation slice:
/// half of the validation users (by index parity) fit a first ranker that the
/// other half checks; if it does not lower their NDCG@K, a ranker fitted on
/// all validation users is exported. Either way the report gives NDCG and
/// recall on the test slice with and without it (candidates excluding
/// train + validation items, activity counted as the server counts it).
fn train_ranker(
    art: &Artifact,
    cfg: &RunConfig,
    opts: RankerOptions,
    train_history: &[Vec<u32>],
    valid: &[Vec<u32>],
    exclude: &[Vec<u32>],
    test: &[Vec<u32>],
) -> Result<(Option<TrainedRanker>, serde_json::Value)> {
    use crate::ranker::{Ranker, examples};
    let candidates = opts.candidates;
    if valid.iter().all(Vec::is_empty) {
        bail!(
            "--ranker needs a validation slice; the {} split has none",
            cfg.protocol.name()
        );
    }
    if candidates < cfg.k {
        bail!("--ranker-candidates {candidates} is below k = {}", cfg.k);
    }
    let n_items = art.metadata().n_items;
    let key = format!("ndcg@{}", cfg.k);
    let start = Instant::now();
    let all = user_cases(train_history, train_history, valid);
    // One first-stage pass over all validation users; the halves are
    // selections of it.
    let all_ex = examples(art, &all, candidates);
    let fits = |u: usize| all[u].user.is_multiple_of(2);
    let check_half: Vec<UserCase<'_>> = (0..all.len())
        .filter(|&u| !fits(u))
        .map(|u| all[u])
        .collect();
    let fit_ex = all_ex.select(fits);
    let check_ex = all_ex.select(|u| !fits(u));
    let first = Ranker::fit(&fit_ex, 1e-4).map_err(anyhow::Error::msg)?;
    let check_without = Ranker::evaluate(None, &check_ex, &check_half, cfg.k, n_items).finish();
    let check_with =
        Ranker::evaluate(Some(&first), &check_ex, &check_half, cfg.k, n_items).finish();
    let ranker = Ranker::fit(&all_ex, 1e-4).map_err(anyhow::Error::msg)?;
    let test_cases = user_cases(train_history, exclude, test);
    let test_ex = examples(art, &test_cases, candidates);
    let test_without = Ranker::evaluate(None, &test_ex, &test_cases, cfg.k, n_items).finish();
    let test_with = Ranker::evaluate(Some(&ranker), &test_ex, &test_cases, cfg.k, n_items).finish();
    let helps = check_with[&key] >= check_without[&key];
    let export = helps || opts.export == RankerExport::Always;
    log(
        cfg,
        format!(
            "ranker fitted in {:.2}s on {} candidates: validation check {key} {:.4} → {:.4}, test {:.4} → {:.4}{}",
            start.elapsed().as_secs_f64(),
            all_ex.features.len(),
            check_without[&key],
            check_with[&key],
            test_without[&key],
            test_with[&key],
            match (helps, export) {
                (true, _) => "",
                (false, false) => " — not exported: it lowered the check users' ranking",
                (false, true) =>
                    " — it lowered the check users' ranking; exported anyway (--ranker-export always)",
            }
        ),
    );
    let report = json!({
        "model": "degree-2 logistic regression",
        "features": crate::ranker::FEATURES,
        "candidates": candidates,
        "training_rows": all_ex.features.len(),
        "positives": all_ex.labels.iter().filter(|&&l| l).count(),
        "weights": {"mean": ranker.mean, "scale": ranker.scale, "bias": ranker.bias,
                    "linear": ranker.linear, "quadratic": ranker.quadratic},
        "validation_check": {"users": check_half.len(), "without_ranker": check_without, "with_ranker": check_with},
        "test": {"users": test_cases.len(), "without_ranker": test_without, "with_ranker": test_with},
        "helps_on_check": helps,
        "exported": export,
    });
    let trained = export.then(|| TrainedRanker {
        onnx: ranker.to_onnx(),
        bundle_toml: ranker.bundle_toml(candidates),
    });
    Ok((trained, report))
}

/// One evaluation case per user with held-out items (lists indexed by user).
fn user_cases<'a>(
    history: &'a [Vec<u32>],
    exclude: &'a [Vec<u32>],
    relevant: &'a [Vec<u32>],
) -> Vec<UserCase<'a>> {
    (0..relevant.len())
        .filter(|&u| !relevant[u].is_empty())
        .map(|u| UserCase {
            user: u as u32,
            history: &history[u],
            exclude: &exclude[u],
            relevant: &relevant[u],
        })
        .collect()
}

/// Keeps the rows of `split` that are in `kept` (sorted).
fn restrict(split: Split, kept: &[usize]) -> Split {
    let keep = |rows: Vec<usize>| {
        rows.into_iter()
            .filter(|r| kept.binary_search(r).is_ok())
            .collect()
    };
    Split {
        train: keep(split.train),
        valid: keep(split.valid),
        test: keep(split.test),
    }
}

/// Sorted, de-duplicated item lists per user for `rows`.
fn user_lists(data: &Interactions, rows: &[usize]) -> Vec<Vec<u32>> {
    let mut lists = vec![Vec::new(); data.n_users()];
    for &i in rows {
        lists[data.users[i] as usize].push(data.items[i]);
    }
    for l in &mut lists {
        l.sort_unstable();
        l.dedup();
    }
    lists
}

/// Keeps the lists of at most `n` users (evenly spaced), empties the rest.
fn sample_users(mut lists: Vec<Vec<u32>>, n: usize) -> Vec<Vec<u32>> {
    let with_items: Vec<usize> = (0..lists.len()).filter(|&u| !lists[u].is_empty()).collect();
    if with_items.len() > n {
        let step = with_items.len() as f64 / n.max(1) as f64;
        let chosen: std::collections::HashSet<usize> = (0..n)
            .map(|j| with_items[(j as f64 * step) as usize])
            .collect();
        for (u, l) in lists.iter_mut().enumerate() {
            if !chosen.contains(&u) {
                l.clear();
            }
        }
    }
    lists
}

fn build_artifact(
    model: &Model,
    data: &Interactions,
    cfg: &RunConfig,
    train_rows: &[usize],
    seen: Vec<Vec<u32>>,
    holdout: Vec<Vec<u32>>,
    metrics: &BTreeMap<String, f64>,
) -> Result<Vec<u8>> {
    let mut meta = ModelMetadata::new(cfg.name.clone(), cfg.algo.name());
    if let serde_json::Value::Object(params) = serde_json::to_value(&cfg.params)? {
        meta.params = params;
    }
    meta.params
        .insert("protocol".into(), cfg.protocol.name().into());
    meta.params.insert("k".into(), cfg.k.into());
    meta.data_fingerprint = cfg.fingerprint.clone();
    meta.trained_at = rfc3339_now();
    meta.metrics = metrics.clone();
    let mut popularity = vec![0.0f32; data.n_items()];
    for &i in train_rows {
        popularity[data.items[i] as usize] += 1.0;
    }
    let as_csr = |lists: Vec<Vec<u32>>| {
        CsrParts::from_rows(
            lists
                .into_iter()
                .map(|l| l.into_iter().map(|i| (i, 1.0)).collect())
                .collect(),
            false,
        )
    };
    let mut parts = ModelParts {
        metadata: meta,
        user_ids: Some(data.user_ids.clone()),
        item_ids: data.item_ids.clone(),
        factors: None,
        neighbors: None,
        seen_items: Some(as_csr(seen)),
        item_popularity: Some(popularity),
        attributes: None,
        holdout: Some(as_csr(holdout)),
    };
    match model {
        Model::Embedding {
            dims,
            users,
            items,
            user_bias,
            item_bias,
            global,
        } => {
            parts.metadata.global_bias = *global;
            parts.factors = Some(FactorParts {
                dims: *dims,
                dtype: ElementType::F32,
                users: users.clone(),
                items: items.clone(),
                user_bias: user_bias.clone(),
                item_bias: item_bias.clone(),
            });
        }
        Model::ItemItem { neighbors } => parts.neighbors = Some(neighbors.clone()),
    }
    Ok(parts.encode()?)
}

/// The current UTC time as RFC 3339 (kept here for existing callers).
pub use vitrine_core::rfc3339_now;
