//! One quantizer run, from source to report.

use crate::compare::{Comparison, EvalSet, compare};
use crate::import::npy::read_npy;
use crate::import::{Side, embedding_from_sides, read_ids};
use crate::{catalog, distill};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use vitrine_core::artifact::{FactorParts, ModelParts};
use vitrine_core::csr::CsrParts;
use vitrine_core::dataset::{CsvOptions, Format, Interactions, read};
use vitrine_core::{Artifact, ElementType, ModelKind};
use vitrine_train::protocol::{Protocol, split_for};

/// Where the model comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A Vitrine artifact.
    Artifact(PathBuf),
    /// A teacher artifact to distil (with `dims`).
    Teacher(PathBuf),
    /// NumPy factor files and id files (one id per line).
    Npy {
        users: PathBuf,
        items: PathBuf,
        user_ids: PathBuf,
        item_ids: PathBuf,
    },
    /// A Spark `ALSModel.save()` directory.
    Parquet(PathBuf),
}

/// Held-out data for the before/after quality.
#[derive(Clone, Debug)]
pub enum Eval {
    /// The artifact's holdout section, history = its seen items.
    Holdout,
    /// A file of held-out interactions; history = the artifact's seen items.
    File(PathBuf),
    /// A full log split as the trainer splits it; relevant = test slice,
    /// history = train + validation.
    Protocol {
        log: PathBuf,
        protocol: Protocol,
        min_rating: Option<f32>,
        seed: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Job {
    pub source: Source,
    /// Interactions whose (user, item) pairs become an imported model's
    /// seen items (excluded from its recommendations).
    pub seen: Option<PathBuf>,
    /// Output element type; `None` keeps the source's.
    pub dtype: Option<ElementType>,
    pub dims: Option<usize>,
    pub keep_items: Option<PathBuf>,
    /// (Unix seconds, log): drop items with no interaction since then.
    pub inactive_since: Option<(i64, PathBuf)>,
    pub eval: Eval,
    pub sample_users: usize,
    pub threads: usize,
    pub seed: u64,
    pub name: Option<String>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub artifact: Vec<u8>,
    pub report: serde_json::Value,
    pub comparison: Comparison,
}

/// Reads an interaction log: CSV with a header `user,item` and optional
/// `rating` and `timestamp` columns for `.csv` files; MovieLens layouts
/// (`u.data`, `ratings.dat`, or any `user<TAB>item<TAB>rating[<TAB>time]`)
/// otherwise.
pub fn read_log(path: &Path) -> Result<Interactions> {
    let format = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        use std::io::BufRead;
        let file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let mut header = String::new();
        std::io::BufReader::new(file).read_line(&mut header)?;
        let has = |name: &str| {
            header
                .trim_end()
                .split(',')
                .any(|c| c.trim().trim_matches('"') == name)
        };
        Format::Csv(CsvOptions {
            rating_column: has("rating").then(|| "rating".into()),
            time_column: has("timestamp").then(|| "timestamp".into()),
            ..CsvOptions::default()
        })
    } else {
        Format::MovieLens
    };
    Ok(read(path, &format)?)
}

fn load(job: &Job) -> Result<(ModelParts, Vec<&'static str>)> {
    Ok(match &job.source {
        Source::Artifact(p) | Source::Teacher(p) => {
            let art = Artifact::open(p).with_context(|| format!("{}", p.display()))?;
            (ModelParts::from_artifact(&art), vec![])
        }
        Source::Npy {
            users,
            items,
            user_ids,
            item_ids,
        } => {
            let u = read_npy(users)?;
            let v = read_npy(items)?;
            let side = |m: crate::import::npy::NpyMatrix, ids: &Path| -> Result<Side> {
                Ok(Side {
                    ids: read_ids(ids)?,
                    rows: m.rows,
                    dims: m.cols,
                    values: m.values,
                })
            };
            let parts =
                embedding_from_sides(side(u, user_ids)?, side(v, item_ids)?, "imported-npy")
                    .with_context(|| {
                        format!("importing {} and {}", users.display(), items.display())
                    })?;
            (parts, vec!["import-npy"])
        }
        Source::Parquet(dir) => {
            let (u, v) = crate::import::parquet::read_spark_als(dir)?;
            let side = |t: crate::import::parquet::FactorTable| Side {
                rows: t.ids.len(),
                ids: t.ids,
                dims: t.dims,
                values: t.values,
            };
            let parts = embedding_from_sides(side(u), side(v), "imported-spark-als")
                .with_context(|| format!("importing {}", dir.display()))?;
            (parts, vec!["import-parquet"])
        }
    })
}

/// Seen items (and popularity) of an imported model from a log, by id.
fn attach_seen(parts: &mut ModelParts, log: &Interactions) -> (usize, usize) {
    let user_index = index_of(parts.user_ids.as_deref().unwrap_or(&[]));
    let item_index = index_of(&parts.item_ids);
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); user_index.len()];
    let mut popularity = vec![0f32; parts.item_ids.len()];
    let (mut used, mut skipped) = (0, 0);
    for k in 0..log.len() {
        let u = user_index.get(log.user_ids[log.users[k] as usize].as_str());
        let i = item_index.get(log.item_ids[log.items[k] as usize].as_str());
        match (u, i) {
            (Some(&u), Some(&i)) => {
                rows[u as usize].push((i, 1.0));
                popularity[i as usize] += 1.0;
                used += 1;
            }
            _ => skipped += 1,
        }
    }
    parts.seen_items = Some(CsrParts::from_rows(rows, false));
    parts.item_popularity = Some(popularity);
    (used, skipped)
}

fn index_of(ids: &[String]) -> std::collections::HashMap<&str, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u32))
        .collect()
}

fn csr_rows(m: Option<&CsrParts>, users: usize) -> Vec<Vec<u32>> {
    (0..users)
        .map(|u| {
            m.filter(|m| u < m.rows())
                .map(|m| m.indices[m.indptr[u] as usize..m.indptr[u + 1] as usize].to_vec())
                .unwrap_or_default()
        })
        .collect()
}

/// Per-user lists (source indices) of `rows` of `log`, mapped by id.
fn lists_from_log(
    parts: &ModelParts,
    log: &Interactions,
    rows: impl Iterator<Item = usize>,
) -> (Vec<Vec<u32>>, usize) {
    let user_index = index_of(parts.user_ids.as_deref().unwrap_or(&[]));
    let item_index = index_of(&parts.item_ids);
    let mut lists = vec![Vec::new(); user_index.len()];
    let mut skipped = 0;
    for k in rows {
        match (
            user_index.get(log.user_ids[log.users[k] as usize].as_str()),
            item_index.get(log.item_ids[log.items[k] as usize].as_str()),
        ) {
            (Some(&u), Some(&i)) => lists[u as usize].push(i),
            _ => skipped += 1,
        }
    }
    for l in &mut lists {
        l.sort_unstable();
        l.dedup();
    }
    (lists, skipped)
}

fn eval_set(job: &Job, parts: &ModelParts) -> Result<EvalSet> {
    let users = parts.user_ids.as_ref().map_or(0, Vec::len);
    let seen = csr_rows(parts.seen_items.as_ref(), users);
    Ok(match &job.eval {
        Eval::Holdout => EvalSet {
            history: seen,
            relevant: csr_rows(parts.holdout.as_ref(), users),
            description: if parts.holdout.is_some() {
                "the artifact's holdout section".into()
            } else {
                "none (no holdout section and no --eval)".into()
            },
        },
        Eval::File(path) => {
            let log = read_log(path)?;
            let (relevant, skipped) = lists_from_log(parts, &log, 0..log.len());
            EvalSet {
                history: seen,
                relevant,
                description: format!(
                    "{} ({skipped} interactions with ids unknown to the model skipped)",
                    path.display()
                ),
            }
        }
        Eval::Protocol {
            log: path,
            protocol,
            min_rating,
            seed,
        } => {
            let log = read_log(path)?;
            let (split, _) = split_for(&log, *protocol, *min_rating, *seed)?;
            let (history, _) =
                lists_from_log(parts, &log, split.train.iter().chain(&split.valid).copied());
            let (relevant, skipped) = lists_from_log(parts, &log, split.test.iter().copied());
            EvalSet {
                history,
                relevant,
                description: format!(
                    "test slice of {} under --protocol {} (seed {seed}; {skipped} test interactions with unknown ids skipped)",
                    path.display(),
                    protocol.name()
                ),
            }
        }
    })
}

pub fn run(job: &Job) -> Result<Outcome> {
    let (mut source, mut steps) = load(job)?;
    let mut notes = Vec::new();
    if let Some(seen) = &job.seen {
        if source.seen_items.is_some() {
            bail!("--seen is for imported models; this artifact has its own seen items");
        }
        let log = read_log(seen)?;
        let (used, skipped) = attach_seen(&mut source, &log);
        notes.push(format!(
            "seen items from {}: {used} interactions, {skipped} with unknown ids skipped",
            seen.display()
        ));
    }
    let source_bytes = source
        .encode()
        .context("the source model does not form a valid artifact")?;
    let source_art = Artifact::from_bytes(&source_bytes)?;
    let eval = eval_set(job, &source)?;

    // Catalogue pruning first: later steps work on the items that remain.
    let mut parts = source.clone();
    let keep = match (&job.keep_items, &job.inactive_since) {
        (Some(list), _) => Some(catalog::keep_listed(&parts, &read_ids(list)?)),
        (None, Some((since, log))) => Some(
            catalog::keep_active(&parts, &read_log(log)?, *since).map_err(anyhow::Error::msg)?,
        ),
        (None, None) => None,
    };
    if let Some(keep) = keep {
        let kept = keep.keep.iter().filter(|&&k| k).count();
        notes.push(format!(
            "catalogue: kept {kept} of {} items{}",
            keep.keep.len(),
            if keep.unknown_ids > 0 {
                format!(
                    " ({} allow-listed ids unknown to the model)",
                    keep.unknown_ids
                )
            } else {
                String::new()
            }
        ));
        parts = catalog::prune(&parts, &keep.keep).map_err(anyhow::Error::msg)?;
        steps.push("prune-catalog");
    }

    let teacher_kind = parts.metadata.kind;
    if let Some(dims) = job.dims {
        let student = distill::distill(&parts, dims, job.seed).map_err(anyhow::Error::msg)?;
        let (user_bias, item_bias) = parts
            .factors
            .as_ref()
            .map_or((None, None), |f| (f.user_bias.clone(), f.item_bias.clone()));
        parts.factors = Some(FactorParts {
            dims: student.dims,
            dtype: ElementType::F32,
            users: student.users,
            items: student.items,
            user_bias,
            item_bias,
        });
        parts.neighbors = None;
        steps.push(if teacher_kind == ModelKind::Embedding {
            "project-dims"
        } else {
            "distill"
        });
        if teacher_kind != ModelKind::Embedding {
            parts.metadata.algorithm = format!("distilled-{}", parts.metadata.algorithm);
        }
        notes.push(format!(
            "rank-{} approximation of the source's scores; leading singular values {:?}",
            student.dims,
            &student.singular_values[..student.singular_values.len().min(4)]
        ));
    } else if matches!(job.source, Source::Teacher(_)) {
        bail!("--distill-from needs --dims D (the student's dimensions)");
    }
    if let Some(dtype) = job.dtype {
        match parts.factors.as_mut() {
            Some(f) => f.dtype = dtype,
            None if dtype == ElementType::F32 => {}
            None => bail!(
                "--dtype {}: an item-neighbour model has no factors to quantise (use --dims D to distil it into an embedding first)",
                dtype.name()
            ),
        }
        steps.push("dtype");
    }
    if let Some(name) = &job.name {
        parts.metadata.name = name.clone();
    }
    parts.metadata.trained_at = source.metadata.trained_at.clone();
    parts.metadata.extra.insert(
        "quantizer".into(),
        json!({"steps": steps, "source_algorithm": source.metadata.algorithm}),
    );
    // Metrics measured on the source do not describe the result; the
    // comparison below supplies the result's own.
    parts.metadata.metrics.clear();
    let bytes = parts
        .encode()
        .context("the result does not form a valid artifact")?;
    let art = Artifact::from_bytes(&bytes)?;
    let comparison = compare(&source_art, &art, &eval, job.sample_users, job.threads);
    if let Some(after) = &comparison.after {
        parts.metadata.metrics.insert("ndcg@10".into(), after.ndcg);
        parts
            .metadata
            .metrics
            .insert("recall@10".into(), after.recall);
    }
    let artifact = parts.encode()?;
    let factor_bytes = |a: &Artifact| -> u64 {
        use vitrine_core::artifact::SectionKind;
        a.sections()
            .iter()
            .filter(|s| matches!(s.kind, SectionKind::UserFactors | SectionKind::ItemFactors))
            .map(|s| s.length)
            .sum()
    };
    let report = json!({
        "steps": steps,
        "source": {"algorithm": source.metadata.algorithm, "kind": source_art.metadata().kind.name(),
                   "dtype": source_art.metadata().dtype.name(), "dims": source_art.metadata().dims,
                   "users": source_art.metadata().n_users, "items": source_art.metadata().n_items},
        "output": {"algorithm": parts.metadata.algorithm, "kind": art.metadata().kind.name(),
                   "dtype": art.metadata().dtype.name(), "dims": art.metadata().dims,
                   "users": art.metadata().n_users, "items": art.metadata().n_items},
        "size_before": source_bytes.len(),
        "size_after": artifact.len(),
        "size_ratio": artifact.len() as f64 / source_bytes.len() as f64,
        "factor_bytes_before": factor_bytes(&source_art),
        "factor_bytes_after": factor_bytes(&art),
        "overlap@10": comparison.overlap,
        "users_compared": comparison.users_compared,
        "max_score_error": comparison.max_score_error,
        "score_error_users": comparison.score_error_users,
        "before": comparison.before,
        "after": comparison.after,
        "eval": comparison.eval,
        "notes": notes,
    });
    Ok(Outcome {
        artifact,
        report,
        comparison,
    })
}
