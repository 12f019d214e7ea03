//! `vitrine-train`: read an interaction log, fit a model, evaluate it under a
//! named protocol, write the report and the servable artifact.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use vitrine_core::dataset::{Cleaning, CsvOptions, Duplicates, Format, clean, read};
use vitrine_train::algo::{Algo, Params};
use vitrine_train::protocol::{Protocol, RunConfig, run};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Dedup {
    /// Keep every row.
    Keep,
    /// The latest row of a repeated (user, item) pair wins.
    Last,
    /// One row per pair with the ratings summed (e.g. purchase counts).
    Sum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum InputFormat {
    Movielens,
    Csv,
}

#[derive(Parser, Debug)]
#[command(
    name = "vitrine-train",
    version,
    about = "Fit and evaluate a recommendation model, write a servable artifact"
)]
struct Cli {
    /// Interaction log.
    #[arg(long)]
    input: PathBuf,
    #[arg(long, value_enum, default_value = "movielens")]
    format: InputFormat,
    /// CSV: user id column.
    #[arg(long, default_value = "user")]
    user_col: String,
    /// CSV: item id column.
    #[arg(long, default_value = "item")]
    item_col: String,
    /// CSV: rating column ("" for implicit data without ratings).
    #[arg(long, default_value = "rating")]
    rating_col: String,
    /// CSV: Unix-seconds timestamp column ("" for none).
    #[arg(long, default_value = "timestamp")]
    time_col: String,
    /// CSV: field delimiter.
    #[arg(long, default_value = ",")]
    delimiter: char,

    /// Repeated (user, item) pairs.
    #[arg(long, value_enum, default_value = "keep")]
    dedup: Dedup,
    /// Drop users with fewer interactions (repeated with --min-item-interactions until both hold).
    #[arg(long, default_value_t = 0)]
    min_user_interactions: usize,
    /// Drop items with fewer interactions.
    #[arg(long, default_value_t = 0)]
    min_item_interactions: usize,
    /// Keep interactions at or after this Unix time.
    #[arg(long)]
    time_from: Option<i64>,
    /// Keep interactions before this Unix time.
    #[arg(long)]
    time_until: Option<i64>,

    #[arg(long, value_enum)]
    algo: Algo,
    #[arg(long)]
    factors: Option<usize>,
    #[arg(long)]
    iterations: Option<usize>,
    #[arg(long)]
    reg: Option<f32>,
    #[arg(long)]
    alpha: Option<f32>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long)]
    neighbors: Option<usize>,
    #[arg(long)]
    shrink: Option<f32>,

    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Drop interactions rated below this (recbole: 3 by default on rated data).
    #[arg(long)]
    min_rating: Option<f32>,
    /// Cut-off of the ranking metrics.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Users whose test items go into the artifact's holdout section.
    #[arg(long, default_value_t = 2000)]
    holdout_users: usize,
    /// Search hyper-parameters on the validation slice first, e.g.
    /// "reg=100..2000:log,neighbors=200|500" (see docs and search.rs).
    #[arg(long)]
    search: Option<vitrine_train::search::Space>,
    /// Configurations to try.
    #[arg(long, default_value_t = 16)]
    trials: usize,
    #[arg(long, value_enum, default_value = "random")]
    search_method: vitrine_train::search::Method,
    /// Successive halving: keep 1/eta of the configurations per rung.
    #[arg(long, default_value_t = 3)]
    eta: usize,
    /// Model name (default: the --publish directory's name, else the algorithm).
    #[arg(long)]
    name: Option<String>,

    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the artifact to this file.
    #[arg(long, conflicts_with = "publish")]
    out: Option<PathBuf>,
    /// Publish the artifact as the next version of this model directory.
    #[arg(long)]
    publish: Option<PathBuf>,
    /// Write the split (train/valid/test .tsv: user, item, rating) here.
    #[arg(long)]
    dump_split: Option<PathBuf>,
    /// Write each evaluated user's top-K (user TAB item,item,...) here.
    #[arg(long)]
    dump_topk: Option<PathBuf>,
    /// Plot validation quality per iteration (als, mf, bpr) to this SVG file.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// Also fit a second-stage ranker on the validation slice (ranking
    /// protocols) and write ranker.onnx + bundle.toml beside the artifact
    /// (docs/RANKER.md).
    #[arg(long)]
    ranker: bool,
    /// First-stage candidates the ranker re-ranks per request.
    #[arg(long, default_value_t = 100)]
    ranker_candidates: usize,
    /// Write the ranker only if it did not lower NDCG@K on held-out
    /// validation users (`if-better`), or in any case (`always`).
    #[arg(long, value_enum, default_value = "if-better")]
    ranker_export: vitrine_train::protocol::RankerExport,
    /// No progress messages.
    #[arg(long)]
    quiet: bool,
}

/// The parameters the final model was trained with (the search's pick, if any).
fn outcome_params(outcome: &vitrine_train::protocol::Outcome, params: &Params) -> Result<Params> {
    match outcome
        .details
        .get("search")
        .map(|s| s["best_params"].clone())
    {
        Some(best) => Ok(serde_json::from_value(best)?),
        None => Ok(params.clone()),
    }
}

fn main() {
    if let Err(e) = run_cli(Cli::parse()) {
        eprintln!("vitrine-train: {e:#}");
        std::process::exit(1);
    }
}

fn run_cli(cli: Cli) -> Result<()> {
    // Logs (tracing) to stderr: progress messages at info, or only warnings
    // with --quiet.
    let level = if cli.quiet {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(level)
        .init();
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 || cli.k == 0 {
        bail!("--threads and --k must be positive");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("starting the thread pool")?;
    let format = match cli.format {
        InputFormat::Movielens => Format::MovieLens,
        InputFormat::Csv => Format::Csv(CsvOptions {
            user_column: cli.user_col.clone(),
            item_column: cli.item_col.clone(),
            rating_column: Some(cli.rating_col.clone()).filter(|c| !c.is_empty()),
            time_column: Some(cli.time_col.clone()).filter(|c| !c.is_empty()),
            delimiter: u8::try_from(cli.delimiter)
                .context("--delimiter must be one ASCII character")?,
        }),
    };
    let data = read(&cli.input, &format)?;
    tracing::info!(
        "read {} interactions, {} users, {} items",
        data.len(),
        data.n_users(),
        data.n_items()
    );
    let cleaning = Cleaning {
        time_window: (cli.time_from, cli.time_until),
        // Rating thresholds belong to the protocol (--min-rating), so that
        // splits see the same log the protocol defines.
        min_rating: None,
        duplicates: match cli.dedup {
            Dedup::Keep => Duplicates::Keep,
            Dedup::Last => Duplicates::LastWins,
            Dedup::Sum => Duplicates::Sum,
        },
        min_user_interactions: cli.min_user_interactions,
        min_item_interactions: cli.min_item_interactions,
    };
    let data = if cleaning == Cleaning::default() {
        data
    } else {
        let cleaned = clean(&data, &cleaning)
            .map_err(anyhow::Error::msg)
            .context("cleaning the input")?;
        tracing::info!(
            "after cleaning {} interactions, {} users, {} items",
            cleaned.len(),
            cleaned.n_users(),
            cleaned.n_items()
        );
        cleaned
    };
    let mut params = Params::defaults(cli.algo);
    params.seed = cli.seed;
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = cli.$field { params.$field = v; })* };
    }
    set!(factors, iterations, reg, alpha, lr, neighbors, shrink);
    let name = cli
        .name
        .clone()
        .or_else(|| {
            cli.publish
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| cli.algo.name().to_string());
    let cfg = RunConfig {
        name,
        algo: cli.algo,
        params: params.clone(),
        protocol: cli.protocol,
        folds: cli.folds,
        min_rating: cli.min_rating,
        k: cli.k,
        threads,
        holdout_users: cli.holdout_users,
        quiet: cli.quiet,
        fingerprint: data.fingerprint(),
        ranker: cli
            .ranker
            .then_some(vitrine_train::protocol::RankerOptions {
                candidates: cli.ranker_candidates,
                export: cli.ranker_export,
            }),
        search: cli
            .search
            .clone()
            .map(|space| vitrine_train::protocol::SearchConfig {
                space,
                method: cli.search_method,
                trials: cli.trials,
                eta: cli.eta,
            }),
    };
    if cli.ranker && matches!(cli.protocol, Protocol::Kfold | Protocol::None) {
        bail!(
            "--ranker is fitted on a validation slice: use a ranking protocol (recbole, leave-last-out, temporal), not {}",
            cli.protocol.name()
        );
    }
    let outcome = run(&data, &cfg)?;
    let curve = match &cli.curve {
        Some(path) => {
            let final_cfg = RunConfig {
                params: outcome_params(&outcome, &params)?,
                search: None,
                ..cfg.clone()
            };
            let points = vitrine_train::protocol::learning_curve(&data, &final_cfg)?;
            let metric = if cli.protocol == Protocol::Kfold {
                "−RMSE (validation)".to_string()
            } else {
                format!("NDCG@{} (validation)", cli.k)
            };
            let title = format!(
                "{} on {}: {metric} per iteration",
                cli.algo.name(),
                cli.input
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            );
            let svg =
                vitrine_train::protocol::svg_line_chart(&title, "iterations", &metric, &points);
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
            tracing::info!("wrote {}", path.display());
            Some(points)
        }
        None => None,
    };

    println!("{:<16} {:>10}", "metric", "value");
    for (key, value) in &outcome.metrics {
        println!("{key:<16} {value:>10.4}");
    }
    println!("{:<16} {:>10.2}", "fit_seconds", outcome.fit_seconds);

    if let Some(path) = &cli.report {
        let report = serde_json::json!({
            "algorithm": cli.algo.name(),
            "params": outcome.details.get("search").map_or(serde_json::to_value(&params)?, |s| s["best_params"].clone()),
            "protocol": cli.protocol.name(),
            "k": cli.k,
            "threads": threads,
            "data": {"path": cli.input.display().to_string(), "fingerprint": cfg.fingerprint,
                     "interactions": data.len(), "users": data.n_users(), "items": data.n_items()},
            "metrics": outcome.metrics,
            "fit_seconds": outcome.fit_seconds,
            "eval_seconds": outcome.eval_seconds,
            "details": outcome.details,
            "curve": curve,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &cli.dump_split {
        std::fs::create_dir_all(dir)?;
        for (name, rows) in [
            ("train", &outcome.split.train),
            ("valid", &outcome.split.valid),
            ("test", &outcome.split.test),
        ] {
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.tsv")))?);
            for &i in rows.iter() {
                writeln!(
                    f,
                    "{}\t{}\t{}",
                    data.user_ids[data.users[i] as usize],
                    data.item_ids[data.items[i] as usize],
                    data.rating(i)
                )?;
            }
        }
    }
    if let Some(path) = &cli.dump_topk {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (user, items) in &outcome.top_k {
            let ids: Vec<&str> = items
                .iter()
                .map(|&i| data.item_ids[i as usize].as_str())
                .collect();
            writeln!(f, "{}\t{}", data.user_ids[*user as usize], ids.join(","))?;
        }
    }
    let mut files: Vec<(&str, &[u8])> = vec![("model.vtr", &outcome.artifact)];
    if let Some(r) = &outcome.ranker {
        files.push(("ranker.onnx", &r.onnx));
        files.push(("bundle.toml", r.bundle_toml.as_bytes()));
    }
    if let Some(path) = &cli.out {
        // The ranker files go beside the artifact, as in a version directory.
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        for (name, bytes) in &files {
            let target = if *name == "model.vtr" {
                path.clone()
            } else {
                dir.join(name)
            };
            vitrine_core::artifact::write_atomically(&target, bytes)
                .with_context(|| format!("writing {}", target.display()))?;
            tracing::info!("wrote {}", target.display());
        }
    }
    if let Some(dir) = &cli.publish {
        let version = vitrine_core::publish::publish(dir, &files)
            .with_context(|| format!("publishing to {}", dir.display()))?;
        tracing::info!("published {}", version.display());
    }
    Ok(())
}
