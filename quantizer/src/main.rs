//! vitrine-quantize: argument parsing and wiring; the work is in the library.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use vitrine_core::ElementType;
use vitrine_quantize::pipeline::{Eval, Job, Source, run};
use vitrine_train::protocol::Protocol;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Dtype {
    F32,
    F16,
    Int8,
}

#[derive(Parser, Debug)]
#[command(
    name = "vitrine-quantize",
    version,
    about = "Compress, prune, distil or import a model; report what it cost; write or publish it"
)]
struct Cli {
    /// Source artifact.
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Teacher artifact to distil into a --dims D embedding student.
    #[arg(long, value_name = "FILE")]
    distill_from: Option<PathBuf>,
    /// Import NumPy factor files: USERS.npy ITEMS.npy (float32/float64, C order).
    #[arg(long, num_args = 2, value_names = ["USERS_NPY", "ITEMS_NPY"])]
    from_npy: Option<Vec<PathBuf>>,
    /// With --from-npy: user ids, one per line, in factor-row order.
    #[arg(long)]
    user_ids: Option<PathBuf>,
    /// With --from-npy: item ids, one per line, in factor-row order.
    #[arg(long)]
    item_ids: Option<PathBuf>,
    /// Import a Spark ALSModel directory (userFactors/, itemFactors/ Parquet).
    #[arg(long, value_name = "DIR")]
    from_parquet: Option<PathBuf>,
    /// Imports: an interaction log whose pairs become the seen items
    /// (excluded from recommendations, as the source library filters them).
    #[arg(long, value_name = "LOG")]
    seen: Option<PathBuf>,

    /// Element type of the output factors (default: the source's).
    #[arg(long, value_enum)]
    dtype: Option<Dtype>,
    /// Project onto the D directions that best preserve the scores (embedding
    /// source), or the student's dimensions (--distill-from).
    #[arg(long)]
    dims: Option<usize>,
    /// Catalogue pruning: keep only the items listed (one id per line).
    #[arg(long, value_name = "FILE")]
    keep_items: Option<PathBuf>,
    /// Catalogue pruning: drop items with no interaction in --log at or after
    /// this Unix time (seconds).
    #[arg(long, value_name = "UNIX_SECONDS", requires = "log")]
    inactive_since: Option<i64>,
    /// Interaction log for --inactive-since.
    #[arg(long)]
    log: Option<PathBuf>,

    /// Held-out interactions for the before/after quality (default: the
    /// artifact's holdout section). With --protocol: a full log, split as the
    /// trainer splits it, evaluated on its test slice.
    #[arg(long, value_name = "PATH")]
    eval: Option<PathBuf>,
    #[arg(long, value_enum, requires = "eval")]
    protocol: Option<Protocol>,
    /// With --protocol: the rating threshold (recbole default 3).
    #[arg(long)]
    min_rating: Option<f32>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Users sampled for the top-10 overlap and score error.
    #[arg(long, default_value_t = 2000)]
    sample_users: usize,
    #[arg(long)]
    threads: Option<usize>,
    /// Model name in the output's metadata.
    #[arg(long)]
    name: Option<String>,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Top-10 of the output model for every user: `user<TAB>item,item,…`.
    #[arg(long)]
    dump_topk: Option<PathBuf>,
    #[arg(long)]
    quiet: bool,
    #[arg(long, conflicts_with = "publish")]
    out: Option<PathBuf>,
    /// Publish as the next version of DIR/<model> (atomic rename).
    #[arg(long, value_name = "DIR/MODEL")]
    publish: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run_cli(Cli::parse()) {
        eprintln!("vitrine-quantize: {e:#}");
        std::process::exit(1);
    }
}

fn run_cli(cli: Cli) -> Result<()> {
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
    if cli.out.is_none() && cli.publish.is_none() {
        bail!("say where the result goes: --out FILE or --publish DIR/<model>");
    }
    let sources = [
        cli.input.is_some(),
        cli.distill_from.is_some(),
        cli.from_npy.is_some(),
        cli.from_parquet.is_some(),
    ];
    if sources.iter().filter(|&&s| s).count() != 1 {
        bail!("give exactly one source: --in, --distill-from, --from-npy or --from-parquet");
    }
    let source = if let Some(p) = cli.input.clone() {
        Source::Artifact(p)
    } else if let Some(p) = cli.distill_from.clone() {
        Source::Teacher(p)
    } else if let Some(files) = cli.from_npy.clone() {
        let (Some(user_ids), Some(item_ids)) = (cli.user_ids.clone(), cli.item_ids.clone()) else {
            bail!("--from-npy needs --user-ids FILE and --item-ids FILE");
        };
        Source::Npy {
            users: files[0].clone(),
            items: files[1].clone(),
            user_ids,
            item_ids,
        }
    } else {
        Source::Parquet(cli.from_parquet.clone().expect("one source is set"))
    };
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be positive");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("starting the thread pool")?;
    let eval = match (&cli.eval, cli.protocol) {
        (None, _) => Eval::Holdout,
        (Some(p), None) => Eval::File(p.clone()),
        (Some(p), Some(protocol)) => Eval::Protocol {
            log: p.clone(),
            protocol,
            min_rating: cli.min_rating,
            seed: cli.seed,
        },
    };
    let job = Job {
        source,
        seen: cli.seen.clone(),
        dtype: cli.dtype.map(|d| match d {
            Dtype::F32 => ElementType::F32,
            Dtype::F16 => ElementType::F16,
            Dtype::Int8 => ElementType::Int8,
        }),
        dims: cli.dims,
        keep_items: cli.keep_items.clone(),
        inactive_since: cli.inactive_since.zip(cli.log.clone()),
        eval,
        sample_users: cli.sample_users.max(1),
        threads,
        seed: cli.seed,
        name: cli.name.clone().or_else(|| {
            cli.publish
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        }),
    };
    let outcome = run(&job)?;
    let r = &outcome.report;
    println!("{:<22} {:>14} {:>14}", "", "before", "after");
    println!(
        "{:<22} {:>14} {:>14}",
        "kind / dtype / dims",
        format!(
            "{}/{}/{}",
            r["source"]["kind"].as_str().unwrap_or(""),
            r["source"]["dtype"].as_str().unwrap_or(""),
            r["source"]["dims"]
        ),
        format!(
            "{}/{}/{}",
            r["output"]["kind"].as_str().unwrap_or(""),
            r["output"]["dtype"].as_str().unwrap_or(""),
            r["output"]["dims"]
        ),
    );
    println!(
        "{:<22} {:>14} {:>14}",
        "artifact bytes", r["size_before"], r["size_after"]
    );
    println!(
        "{:<22} {:>14} {:>14}",
        "factor bytes", r["factor_bytes_before"], r["factor_bytes_after"]
    );
    let c = &outcome.comparison;
    if let (Some(b), Some(a)) = (&c.before, &c.after) {
        println!("{:<22} {:>14.4} {:>14.4}", "ndcg@10", b.ndcg, a.ndcg);
        println!("{:<22} {:>14.4} {:>14.4}", "recall@10", b.recall, a.recall);
    }
    println!(
        "{:<22} {:>29.4}",
        format!("overlap@10 ({} users)", c.users_compared),
        c.overlap
    );
    println!("{:<22} {:>29.3e}", "max score error", c.max_score_error);
    println!("eval: {}", c.eval);

    if let Some(path) = &cli.report {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome.report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.dump_topk {
        dump_topk(&outcome.artifact, path)?;
    }
    if let Some(path) = &cli.out {
        vitrine_core::artifact::write_atomically(path, &outcome.artifact)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!("wrote {}", path.display());
    }
    if let Some(dir) = &cli.publish {
        let version = vitrine_core::publish::publish(dir, &[("model.vtr", &outcome.artifact)])
            .with_context(|| format!("publishing to {}", dir.display()))?;
        tracing::info!("published {}", version.display());
    }
    Ok(())
}

/// Every user's top 10 (seen items excluded), ids as in the artifact.
fn dump_topk(bytes: &[u8], path: &std::path::Path) -> Result<()> {
    use vitrine_core::evaluate::{UserCase, rank_cases};
    let art = vitrine_core::Artifact::from_bytes(bytes)?;
    let users = art.metadata().n_users;
    let seen = art.seen_items();
    let cases: Vec<UserCase<'_>> = (0..users)
        .map(|u| {
            let s = seen.as_ref().map_or(&[][..], |c| c.row(u));
            UserCase {
                user: u as u32,
                history: s,
                exclude: s,
                relevant: &[],
            }
        })
        .collect();
    let lists = rank_cases(&art, &cases, 10);
    let (uids, iids) = (art.user_ids().context("no user ids")?, art.item_ids());
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for (u, list) in lists.iter().enumerate() {
        let ids: Vec<&str> = list.iter().map(|&i| iids.id(i as usize)).collect();
        writeln!(f, "{}\t{}", uids.id(u), ids.join(","))?;
    }
    Ok(())
}
