//! `vitrine-loadtest`: measurement tools.
//!
//! - `scan`: single-thread top-K throughput of the scoring kernels on a
//!   seeded synthetic catalogue (no HTTP), with the machine's single-thread
//!   read bandwidth measured in the same run.
//! - `open`: time to open and validate an artifact, warm and cold.
//! - `gen`: write a seeded synthetic artifact (demo and load-test models).
//!
//! - `--url URL …` (no subcommand): the HTTP load generator (`http.rs`).

mod bandwidth;
mod http;
mod scan;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use vitrine_core::ElementType;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};

#[derive(Parser, Debug)]
#[command(
    name = "vitrine-loadtest",
    version,
    about = "Measure Vitrine: HTTP load (--url), kernel scans, artifact opens"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    http: http::HttpArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Top-K scan throughput of the kernels, one thread.
    Scan(scan::ScanArgs),
    /// Time to open and validate an artifact (warm page cache, then cold).
    Open {
        file: PathBuf,
        /// Timed repetitions (the best and median are reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write a seeded synthetic embedding model.
    Gen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 5000)]
        items: usize,
        #[arg(long = "dim", default_value_t = 32)]
        dims: usize,
        #[arg(long, default_value = "f32")]
        dtype: ElementType,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Bare factors only (no seen items, holdout, attributes, biases).
        #[arg(long)]
        bare: bool,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("vitrine-loadtest: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        if cli.http.url.is_none() {
            anyhow::bail!(
                "give --url URL (HTTP load) or a subcommand: scan, open, gen (see --help)"
            );
        }
        return http::run(&cli.http);
    };
    match command {
        Command::Scan(args) => scan::run(&args),
        Command::Open { file, repeat, json } => open(&file, repeat.max(1), json),
        Command::Gen {
            out,
            users,
            items,
            dims,
            dtype,
            seed,
            bare,
        } => {
            let spec = if bare {
                SyntheticSpec::bare(users, items, dims, dtype, seed)
            } else {
                SyntheticSpec {
                    users,
                    items,
                    dims,
                    dtype,
                    seed,
                    ..SyntheticSpec::demo()
                }
            };
            embedding_model(&spec)
                .write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({users} users × {items} items, {dims} dims, {})",
                out.display(),
                dtype.name()
            );
            Ok(())
        }
    }
}

fn open(file: &std::path::Path, repeat: usize, json: bool) -> Result<()> {
    use std::time::Instant;
    use vitrine_core::Artifact;
    let time = |f: &dyn Fn() -> Result<()>| -> Result<Vec<f64>> {
        (0..repeat)
            .map(|_| {
                let start = Instant::now();
                f()?;
                Ok(start.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    };
    // Warm the page cache once, then time warm opens both ways.
    Artifact::open(file)?;
    let snapshot = time(&|| Artifact::open(file).map(drop).map_err(Into::into))?;
    #[allow(unsafe_code)]
    let in_place = time(&|| {
        // SAFETY: this command only reads the file; it is the caller's file,
        // not modified while we measure.
        unsafe { Artifact::open_in_place(file) }
            .map(drop)
            .map_err(Into::into)
    })?;
    let cold = cold_open_ms(file)?;
    let size = std::fs::metadata(file)?.len();
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        serde_json::json!({"best_ms": s[0], "median_ms": s[s.len() / 2]})
    };
    let report = serde_json::json!({
        "file": file.display().to_string(),
        "size_bytes": size,
        "warm_snapshot": stats(&snapshot),
        "warm_in_place": stats(&in_place),
        "cold_snapshot_ms": cold,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report:#}");
    }
    Ok(())
}

/// Evicts the file from the page cache (`posix_fadvise(DONTNEED)`; clean
/// pages only, no privileges needed), then times one snapshot open.
fn cold_open_ms(file: &std::path::Path) -> Result<Option<f64>> {
    #[cfg(target_os = "linux")]
    {
        let f = std::fs::File::open(file)?;
        f.sync_all().ok();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
        let start = std::time::Instant::now();
        vitrine_core::Artifact::open(file)?;
        Ok(Some(start.elapsed().as_secs_f64() * 1e3))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(None)
    }
}
