//! `vitrine-loadtest scan`: queries per second of a top-K scan, one thread.

use anyhow::{Result, bail};
use clap::Args;
use std::time::Instant;
use vitrine_core::scan::{ItemScanner, PreparedQuery};
use vitrine_core::simd::Kernels;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};
use vitrine_core::{Artifact, ElementType};

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Catalogue size.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    #[arg(long = "dim", default_value_t = 64)]
    dims: usize,
    #[arg(long, default_value = "int8")]
    dtype: ElementType,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Queries scored per pass over the items (1..=8 per kernel call; more
    /// are split into passes of 8).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Distinct query vectors, cycled.
    #[arg(long, default_value_t = 1024)]
    queries: usize,
    /// Measured time, after a short warm-up.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kernel table: best, or one of scalar, avx2, avx512 (if the CPU has it).
    #[arg(long, default_value = "best")]
    kernels: String,
    /// Also measure single-thread read bandwidth over the item bytes and
    /// report the memory-bandwidth bound on the scan rate.
    #[arg(long)]
    bandwidth: bool,
    #[arg(long)]
    json: bool,
}

fn pick_kernels(name: &str) -> Result<&'static Kernels> {
    if name == "best" {
        return Ok(vitrine_core::simd::kernels());
    }
    let found = Kernels::all_available()
        .into_iter()
        .find(|t| t.float_isa.name() == name);
    match found {
        Some(t) => Ok(Box::leak(Box::new(t))),
        None => bail!(
            "kernel table {name:?} is not available on this CPU (have: {})",
            available()
        ),
    }
}

fn available() -> String {
    Kernels::all_available()
        .iter()
        .map(|t| t.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: &ScanArgs) -> Result<()> {
    if args.batch == 0 || args.k == 0 || args.items == 0 || args.queries == 0 {
        bail!("--items, --k, --batch and --queries must be positive");
    }
    let kernels = pick_kernels(&args.kernels)?;
    let spec = SyntheticSpec::bare(args.queries, args.items, args.dims, args.dtype, args.seed);
    let art = Artifact::from_bytes(&embedding_model(&spec).encode()?)?;
    let items = art.item_factors().expect("embedding model");
    let scanner = ItemScanner::new(items, None).with_kernels(kernels);
    let users = art.user_factors().expect("embedding model");
    let queries: Vec<PreparedQuery> = (0..users.rows)
        .map(|u| {
            let mut q = vec![0.0; users.padded_dims];
            users.row_f32(u, &mut q);
            scanner.prepare(&q, 0.0)
        })
        .collect();

    let batch = args.batch.min(queries.len());
    let mut next = 0;
    let mut checksum = 0u64;
    let mut run_for = |seconds: f64| -> (usize, f64) {
        let start = Instant::now();
        let mut done = 0;
        while start.elapsed().as_secs_f64() < seconds {
            if next + batch > queries.len() {
                next = 0;
            }
            let results = scanner.top_k_batch(&queries[next..next + batch], args.k, |_, _| true);
            checksum = checksum.wrapping_add(results.iter().map(|r| r[0].item as u64).sum::<u64>());
            next += batch;
            done += batch;
        }
        (done, start.elapsed().as_secs_f64())
    };
    run_for(args.seconds.min(0.5));
    let (done, elapsed) = run_for(args.seconds);
    let qps = done as f64 / elapsed;
    let item_bytes = art
        .sections()
        .iter()
        .find(|s| s.kind == vitrine_core::artifact::SectionKind::ItemFactors)
        .map_or(0, |s| s.length);

    let mut report = serde_json::json!({
        "items": args.items,
        "dims": args.dims,
        "dtype": args.dtype.name(),
        "k": args.k,
        "batch": batch,
        "kernels": kernels.describe(),
        "queries": done,
        "seconds": elapsed,
        "qps": qps,
        "ns_per_item": elapsed * 1e9 / (done as f64 * args.items as f64),
        "item_bytes": item_bytes,
        "checksum": checksum,
    });
    if args.bandwidth {
        // The bytes a single-query scan must stream: the item section itself.
        let file_bytes = art_bytes(&art);
        let read = crate::bandwidth::read_bytes_per_second(file_bytes, args.seconds.min(2.0));
        // One pass streams the items once, for the whole batch.
        let bound_passes = read / file_bytes.len() as f64;
        let passes = qps / batch as f64;
        report["read_gb_per_s"] = (read / 1e9).into();
        report["bandwidth_bound_passes_per_s"] = bound_passes.into();
        report["passes_per_s"] = passes.into();
        report["fraction_of_bound"] = (passes / bound_passes).into();
    }
    if args.json {
        println!("{report}");
    } else {
        println!("{report:#}");
    }
    Ok(())
}

/// The item factor matrix's bytes (what a scan streams).
fn art_bytes(art: &Artifact) -> &[u8] {
    use vitrine_core::matrix::MatrixData;
    match art.item_factors().expect("embedding model").data {
        MatrixData::F32(v) => bytemuck::cast_slice(v),
        MatrixData::F16(v) => bytemuck::cast_slice(v),
        MatrixData::Int8 { values, .. } => values,
    }
}
