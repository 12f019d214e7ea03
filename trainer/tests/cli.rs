//! Runs the real `vitrine-train` binary on seeded, generated interaction logs.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use vitrine_core::synthetic::SplitMix64;
use vitrine_core::{Artifact, ModelKind};

/// 150 shoppers with category tastes over 80 SKUs, ratings 1–5, timestamps;
/// shopper "whale" has interacted with every item.
fn write_log(dir: &Path) -> PathBuf {
    let mut rng = SplitMix64::new(9);
    let mut out = String::from("shopper,sku,stars,ts\n");
    let mut t = 1_600_000_000i64;
    for u in 0..150 {
        let taste = u % 5;
        for _ in 0..(8 + rng.below(20)) {
            let item = if rng.next_f32() < 0.8 {
                taste * 16 + rng.below(16)
            } else {
                rng.below(80)
            };
            let stars = if item / 16 == taste {
                3 + rng.below(3)
            } else {
                1 + rng.below(3)
            };
            t += 1 + rng.below(1000) as i64;
            out.push_str(&format!("\"user {u}\",SKU-{item:03},{stars},{t}\n"));
        }
    }
    for item in 0..80 {
        t += 7;
        out.push_str(&format!("whale,SKU-{item:03},4,{t}\n"));
    }
    let path = dir.join("log.csv");
    std::fs::write(&path, out).unwrap();
    path
}

fn train(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine-train"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn csv_args(log: &Path) -> Vec<String> {
    [
        "--input",
        log.to_str().unwrap(),
        "--format",
        "csv",
        "--user-col",
        "shopper",
        "--item-col",
        "sku",
        "--rating-col",
        "stars",
        "--time-col",
        "ts",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs on `log` expecting failure; returns (exit code, stderr).
fn run_err(log: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = csv_args(log);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = train(&args);
    assert_ne!(code, 0, "{args:?} should fail");
    (code, err)
}

fn run_ok(log: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = csv_args(log);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = train(&args);
    assert_eq!(code, 0, "{args:?}\n{err}");
    let report = extra
        .iter()
        .position(|a| *a == "--report")
        .map(|i| extra[i + 1]);
    let report = report
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .unwrap_or(Value::Null);
    (report, out)
}

#[test]
fn every_algorithm_and_protocol_yields_an_evaluated_servable_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let cases = [
        ("popular", "recbole"),
        ("itemknn", "recbole"),
        ("userknn", "leave-last-out"),
        ("als", "temporal"),
        ("bpr", "recbole"),
        ("ease", "leave-last-out"),
        ("mf", "kfold"),
    ];
    for (algo, protocol) in cases {
        let model = dir.path().join(format!("{algo}.vtr"));
        let report = dir.path().join(format!("{algo}.json"));
        let (r, table) = run_ok(
            &log,
            &[
                "--algo",
                algo,
                "--protocol",
                protocol,
                "--iterations",
                "5",
                "--report",
                report.to_str().unwrap(),
                "--out",
                model.to_str().unwrap(),
            ],
        );
        let art = Artifact::open(&model).unwrap_or_else(|e| panic!("{algo}: {e}"));
        let meta = art.metadata();
        assert_eq!(meta.algorithm, algo);
        assert_eq!(meta.n_users, 151);
        assert!(!meta.trained_at.is_empty() && meta.data_fingerprint.starts_with("v2:"));
        let expected_kind = if matches!(algo, "itemknn" | "userknn" | "ease") {
            ModelKind::ItemNeighbors
        } else {
            ModelKind::Embedding
        };
        assert_eq!(meta.kind, expected_kind, "{algo}");
        assert!(
            art.holdout().unwrap().nnz() > 0 && art.seen_items().is_some(),
            "{algo}: holdout and seen items"
        );
        assert!(r["fit_seconds"].as_f64().unwrap() >= 0.0);
        let metrics = r["metrics"].as_object().unwrap();
        if protocol == "kfold" {
            assert!(metrics["rmse"].as_f64().unwrap() > 0.0 && metrics.contains_key("mae"));
        } else {
            for key in [
                "precision@10",
                "recall@10",
                "f1@10",
                "ndcg@10",
                "map@10",
                "mrr@10",
                "hr@10",
                "coverage@10",
            ] {
                let v = metrics[key].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&v), "{algo} {key} = {v}");
            }
            assert!(table.contains("ndcg@10"));
        }
        // The metrics in the artifact are the report's.
        for (key, value) in metrics {
            assert_eq!(meta.metrics[key], value.as_f64().unwrap(), "{algo} {key}");
        }
    }
}

#[test]
fn learned_models_beat_popularity_on_clustered_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let ndcg = |algo: &str| -> f64 {
        let report = dir.path().join(format!("{algo}.json"));
        let (r, _) = run_ok(
            &log,
            &[
                "--algo",
                algo,
                "--protocol",
                "recbole",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        r["metrics"]["ndcg@10"].as_f64().unwrap()
    };
    let popular = ndcg("popular");
    for algo in ["als", "ease", "itemknn"] {
        assert!(
            ndcg(algo) > popular,
            "{algo} should beat popularity ({popular})"
        );
    }
}

#[test]
fn same_seed_and_threads_give_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let run = |tag: &str, seed: &str| {
        let out = dir.path().join(format!("{tag}.vtr"));
        run_ok(
            &log,
            &[
                "--algo",
                "als",
                "--protocol",
                "recbole",
                "--threads",
                "2",
                "--seed",
                seed,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let art = Artifact::open(&out).unwrap();
        let users = art.user_factors().unwrap();
        let mut row = vec![0.0; users.padded_dims];
        let rows: Vec<f32> = (0..users.rows)
            .flat_map(|u| {
                users.row_f32(u, &mut row);
                row.clone()
            })
            .collect();
        (rows, art.metadata().metrics.clone())
    };
    let (a, ma) = run("a", "7");
    let (b, mb) = run("b", "7");
    let (c, _) = run("c", "8");
    assert_eq!(a, b);
    assert_eq!(ma, mb);
    assert_ne!(a, c);
}

#[test]
fn publish_writes_consecutive_versions_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let models = dir.path().join("models/recs");
    for _ in 0..2 {
        run_ok(
            &log,
            &[
                "--algo",
                "popular",
                "--protocol",
                "recbole",
                "--publish",
                models.to_str().unwrap(),
            ],
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["1", "2"],
        "no temporary directories left behind"
    );
    let art = Artifact::open(&models.join("2/model.vtr")).unwrap();
    assert_eq!(art.metadata().name, "recs");
}

#[test]
fn bad_input_and_bad_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "shopper,sku,stars,ts\na,SKU-1,5,1\nb,SKU-2,five,2\n").unwrap();
    let (code, err) = run_err(&bad, &["--algo", "als", "--protocol", "recbole"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.csv:3: field 3 (stars): rating \"five\" is not a number"),
        "{err}"
    );

    let log = write_log(dir.path());
    let (code, err) = run_err(&log, &["--algo", "als", "--protocol", "kfold"]);
    assert_eq!(code, 1);
    assert!(err.contains("kfold evaluates rating prediction"), "{err}");

    let (code, _, err) = train(&[
        "--input",
        "/no/such/log.csv",
        "--algo",
        "als",
        "--protocol",
        "recbole",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/log.csv"), "{err}");
}

#[test]
fn search_scores_on_validation_and_reports_every_trial() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let report = dir.path().join("search.json");
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "ease",
            "--protocol",
            "recbole",
            "--search",
            "reg=1..500:log",
            "--trials",
            "4",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let s = &r["details"]["search"];
    assert_eq!(s["trials"].as_array().unwrap().len(), 4);
    let best = s["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["score"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let chosen = s["best_params"]["reg"].as_f64().unwrap();
    let chosen_score = s["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["params"]["reg"].as_f64().unwrap() == chosen)
        .unwrap()["score"]
        .as_f64()
        .unwrap();
    assert_eq!(chosen_score, best, "the best validation trial is chosen");
    assert_eq!(
        r["params"]["reg"].as_f64().unwrap(),
        chosen,
        "and the final model uses it"
    );

    let report = dir.path().join("halving.json");
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "als",
            "--protocol",
            "recbole",
            "--iterations",
            "9",
            "--search",
            "reg=0.01..2:log,factors=8|16",
            "--search-method",
            "halving",
            "--trials",
            "9",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let budgets: Vec<u64> = r["details"]["search"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["budget"].as_u64().unwrap())
        .collect();
    assert_eq!(budgets.len(), 9 + 3 + 1);
    assert_eq!(*budgets.last().unwrap(), 9);

    let (code, err) = run_err(
        &log,
        &[
            "--algo",
            "ease",
            "--protocol",
            "recbole",
            "--search",
            "depth=1..3",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown parameter \"depth\""), "{err}");
}

#[test]
fn cleaning_flags_shrink_the_data_before_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let report = dir.path().join("clean.json");
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "popular",
            "--protocol",
            "recbole",
            "--dedup",
            "last",
            "--min-user-interactions",
            "15",
            "--min-item-interactions",
            "5",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let users = r["data"]["users"].as_u64().unwrap();
    assert!(
        users < 151,
        "users with fewer than 15 interactions are dropped ({users})"
    );

    let (code, err) = run_err(
        &log,
        &[
            "--algo",
            "popular",
            "--protocol",
            "recbole",
            "--min-user-interactions",
            "100000",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no interactions left after cleaning"), "{err}");
}

#[test]
fn protocol_none_fits_on_everything_without_evaluating() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let out = dir.path().join("all.vtr");
    let report = dir.path().join("all.json");
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "als",
            "--protocol",
            "none",
            "--out",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(r["metrics"].as_object().unwrap().is_empty());
    let art = Artifact::open(&out).unwrap();
    assert_eq!(art.holdout().unwrap().nnz(), 0);
    // Every interaction is a seen item: "whale" has seen all 80 items.
    let whale = art.user_ids().unwrap().index_of("whale").unwrap() as usize;
    assert_eq!(art.seen_items().unwrap().row(whale).len(), 80);
}

#[test]
fn learning_curve_is_an_svg_with_one_point_per_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let svg = dir.path().join("curve.svg");
    let report = dir.path().join("curve.json");
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "mf",
            "--protocol",
            "kfold",
            "--iterations",
            "4",
            "--curve",
            svg.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("<polyline") && text.contains("RMSE"));
    assert_eq!(text.matches("<circle").count(), 4);
    assert_eq!(r["curve"].as_array().unwrap().len(), 4);

    let (code, err) = run_err(
        &log,
        &[
            "--algo",
            "ease",
            "--protocol",
            "recbole",
            "--curve",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--curve plots iterations"), "{err}");
}

/// `--ranker` fits the second stage on the validation slice, reports test
/// quality with and without it, and publishes ranker.onnx + bundle.toml
/// beside the artifact; `if-better` withholds a ranker that hurt the check
/// users; kfold has no validation ranking to fit on.
#[test]
fn ranker_is_fitted_reported_and_published_with_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let models = dir.path().join("models/recs");
    let report = dir.path().join("r.json");
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "als",
            "--factors",
            "8",
            "--protocol",
            "recbole",
            "--ranker",
            "--ranker-candidates",
            "40",
            "--ranker-export",
            "always",
            "--report",
            report.to_str().unwrap(),
            "--publish",
            models.to_str().unwrap(),
        ],
    );
    let rk = &r["details"]["ranker"];
    assert_eq!(rk["exported"], true);
    assert_eq!(rk["candidates"], 40);
    for side in ["without_ranker", "with_ranker"] {
        let v = rk["test"][side]["ndcg@10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{side}: {v}");
    }
    assert_eq!(
        r["metrics"]["ranker_ndcg@10"],
        rk["test"]["with_ranker"]["ndcg@10"]
    );
    let v1 = models.join("1");
    let bundle = std::fs::read_to_string(v1.join("bundle.toml")).unwrap();
    assert!(bundle.contains("candidates = 40"), "{bundle}");
    let onnx = std::fs::read(v1.join("ranker.onnx")).unwrap();
    assert!(onnx.len() > 100 && onnx.windows(6).any(|w| w == b"MatMul"));
    Artifact::open(&v1.join("model.vtr")).unwrap();

    // if-better: the published directory has a bundle exactly when the
    // report says the ranker was exported.
    let (r, _) = run_ok(
        &log,
        &[
            "--algo",
            "popular",
            "--protocol",
            "recbole",
            "--ranker",
            "--report",
            report.to_str().unwrap(),
            "--publish",
            models.to_str().unwrap(),
        ],
    );
    let exported = r["details"]["ranker"]["exported"].as_bool().unwrap();
    assert_eq!(
        exported,
        r["details"]["ranker"]["helps_on_check"].as_bool().unwrap()
    );
    assert_eq!(models.join("2/ranker.onnx").exists(), exported);

    let (_, err) = run_err(&log, &["--algo", "mf", "--protocol", "kfold", "--ranker"]);
    assert!(err.contains("--ranker") && err.contains("kfold"), "{err}");
}
