//! The second-stage ranker: engine agreement with onnxruntime, re-ranking
//! in the served answer, and bundles that must be rejected at load.
//! Fixtures: scripts/fixtures/ranker_onnx.py.

mod common;

use common::{TestServer, ids};
use serde_json::Value;
use std::path::{Path, PathBuf};
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ranker")
}

#[test]
fn tract_agrees_with_onnxruntime() {
    let (x, want, rows, cols) = io_fixture("mlp-io.json");
    let got = vitrine_server::ranker::run_onnx(
        &data().join("mlp.onnx"),
        "features",
        "score",
        rows,
        cols,
        &x,
    )
    .unwrap();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "tract and onnxruntime differ by {worst}");
}

/// `$ORT_DYLIB_PATH`, or `None` after saying the test `name` is skipped.
#[cfg(feature = "ort")]
fn ort_library(name: &str) -> Option<String> {
    let lib = std::env::var("ORT_DYLIB_PATH").ok();
    if lib.is_none() {
        eprintln!("SKIPPED {name}: set ORT_DYLIB_PATH to libonnxruntime.so");
    }
    lib
}

/// ONNX Runtime (cargo feature `ort`, library from ORT_DYLIB_PATH) gives
/// the same scores as onnxruntime's Python package and as tract.
#[cfg(feature = "ort")]
#[test]
fn ort_agrees_with_onnxruntime_and_tract() {
    let Some(lib) = ort_library("ort_agrees_with_onnxruntime_and_tract") else {
        return;
    };
    let (x, want, rows, cols) = io_fixture("mlp-io.json");
    let path = data().join("mlp.onnx");
    let ort = vitrine_server::ranker::run_onnx_ort(
        Path::new(&lib),
        &path,
        "features",
        "score",
        rows,
        cols,
        &x,
    )
    .unwrap();
    let tract =
        vitrine_server::ranker::run_onnx(&path, "features", "score", rows, cols, &x).unwrap();
    let worst = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    assert_eq!(ort.len(), want.len());
    assert!(
        worst(&ort, &want) <= 1e-5,
        "ort vs onnxruntime: {}",
        worst(&ort, &want)
    );
    assert!(
        worst(&ort, &tract) <= 1e-5,
        "ort vs tract: {}",
        worst(&ort, &tract)
    );
    // vitrine-train's exported ranker runs on ONNX Runtime too.
    let ranker = trained_ranker();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trained.onnx");
    std::fs::write(&file, ranker.to_onnx()).unwrap();
    let x: Vec<f32> = (0..30).map(|i| (i * 13 % 17) as f32 * 1.5).collect();
    let got = vitrine_server::ranker::run_onnx_ort(
        Path::new(&lib),
        &file,
        "features",
        "score",
        10,
        3,
        &x,
    )
    .unwrap();
    for (r, g) in got.iter().enumerate() {
        let want = ranker.score(&[x[3 * r], x[3 * r + 1], x[3 * r + 2]]);
        assert!(
            (g - want).abs() <= 1e-5 * want.abs().max(1.0),
            "row {r}: ort {g} vs {want}"
        );
    }
}

/// The server with `ranker_engine = "ort"` answers like the default tract
/// engine: same items, same scores within 1e-5; a bad bundle is rejected by
/// the ort engine's own checks too.
#[cfg(feature = "ort")]
#[test]
fn ort_engine_serves_the_same_answers_as_tract() {
    if ort_library("ort_engine_serves_the_same_answers_as_tract").is_none() {
        return;
    }
    let bundle = std::fs::read_to_string(data().join("bundle.toml")).unwrap();
    let tract = TestServer::start_in(with_bundle(Some(&bundle), Some("mlp.onnx")), |_| {});
    let ort = TestServer::start_in(with_bundle(Some(&bundle), Some("mlp.onnx")), |c| {
        c.defaults.ranker_engine = "ort".into();
    });
    for body in [
        r#"{"user": "user-4", "k": 10}"#,
        r#"{"user": "user-77", "k": 20}"#,
        r#"{"history": ["SKU-00001-M", "SKU-00100-S"], "k": 10}"#,
    ] {
        let (s1, a) = tract.json("/v1/models/shop/recommend", body);
        let (s2, b) = ort.json("/v1/models/shop/recommend", body);
        assert_eq!((s1, s2), (200, 200), "{a} {b}");
        assert_eq!(ids(&a), ids(&b), "{body}");
        for (x, y) in a["items"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["items"].as_array().unwrap())
        {
            let (x, y) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5, "{body}: tract {x} vs ort {y}");
        }
    }
    // Concurrent ranked requests (more clients than cores, so sessions are
    // both found free and waited for) each get their own user's answer.
    let expected: Vec<(String, Vec<String>)> = (0..16)
        .map(|u| {
            let body = format!(r#"{{"user": "user-{u}", "k": 10}}"#);
            let (_, a) = tract.json("/v1/models/shop/recommend", &body);
            (body, ids(&a))
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (ort, expected) = (&ort, &expected);
            scope.spawn(move || {
                for round in 0..10 {
                    let (body, want) = &expected[(t * 7 + round) % expected.len()];
                    let (status, got) = ort.json("/v1/models/shop/recommend", body);
                    assert_eq!(status, 200, "{got}");
                    assert_eq!(&ids(&got), want, "{body}");
                }
            });
        }
    });
    let wrong = bundle.replace("input = \"features\"", "input = \"x\"");
    let s = TestServer::start_in(with_bundle(Some(&wrong), Some("mlp.onnx")), |c| {
        c.defaults.ranker_engine = "ort".into();
    });
    let st = s.get("/v1/models/shop").json();
    assert_eq!(st["state"], "not_serving");
    let err = st["versions"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("ONNX Runtime") && err.contains("\"x\""),
        "{err}"
    );
}

#[cfg(not(feature = "ort"))]
#[test]
fn ort_engine_is_refused_without_the_feature() {
    let err = vitrine_server::ranker::EngineKind::parse("ort").unwrap_err();
    assert!(err.contains("--features ort"), "{err}");
    assert!(vitrine_server::ranker::EngineKind::parse("onnx").is_err());
}

#[cfg(not(feature = "ort"))]
#[test]
fn ort_engine_not_built() {
    eprintln!("SKIPPED ort agreement: build with --features ort (and ORT_DYLIB_PATH) to run it");
}

/// A models dir with the demo model as version 1, plus `bundle` and
/// `onnx` (copied as ranker.onnx) when given.
fn with_bundle(bundle: Option<&str>, onnx: Option<&str>) -> tempfile::TempDir {
    let parts = embedding_model(&SyntheticSpec::demo());
    let dir = common::models_dir(&[("shop", &parts)]);
    let v = dir.path().join("shop/1");
    if let Some(b) = bundle {
        std::fs::write(v.join("bundle.toml"), b).unwrap();
    }
    if let Some(o) = onnx {
        std::fs::copy(data().join(o), v.join("ranker.onnx")).unwrap();
    }
    dir
}

#[test]
fn answers_are_the_retrieved_candidates_in_the_rankers_order() {
    let bundle = std::fs::read_to_string(data().join("bundle.toml")).unwrap();
    let ranked = TestServer::start_in(
        with_bundle(Some(&bundle), Some("neg_popularity.onnx")),
        |_| {},
    );
    let plain = TestServer::start_in(with_bundle(None, None), |_| {});
    let art = vitrine_core::Artifact::open(&plain.models_path().join("shop/1/model.vtr")).unwrap();
    let pop = art.item_popularity().unwrap();
    for body in [
        r#"{"user": "user-4", "k": 10}"#,
        r#"{"history": ["SKU-00001-M", "SKU-00100-S"], "k": 10}"#,
    ] {
        let (st, got) = ranked.json("/v1/models/shop/recommend", body);
        assert_eq!(st, 200, "{got}");
        // First stage: the top 50 (the bundle's candidates); the ranker
        // scores −popularity, so the answer is those by ascending popularity.
        let first = body.replace("\"k\": 10", "\"k\": 50");
        let candidates = ids(&plain.json("/v1/models/shop/recommend", &first).1);
        let mut expect = candidates.clone();
        expect.sort_by(|a, b| {
            let p = |id: &String| pop[art.item_ids().index_of(id).unwrap() as usize];
            p(a).total_cmp(&p(b))
        });
        expect.truncate(10);
        assert_eq!(ids(&got), expect, "{body}");
        let first_score = got["items"][0]["score"].as_f64().unwrap();
        let p0 = pop[art.item_ids().index_of(&expect[0]).unwrap() as usize];
        assert!(
            (first_score + f64::from(p0)).abs() < 1e-4,
            "score is the ranker's: {first_score} vs −{p0}"
        );
    }
    // The batched hot path re-ranks too.
    let (_, batch) = ranked.json(
        "/v1/models/shop/recommend:batch",
        r#"{"requests": [{"user": "user-4", "k": 10}]}"#,
    );
    let (_, single) = ranked.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-4", "k": 10}"#,
    );
    assert_eq!(batch["results"][0]["items"], single["items"]);
}

#[test]
fn bundles_that_do_not_fit_reject_the_version_with_a_reason() {
    let good = std::fs::read_to_string(data().join("bundle.toml")).unwrap();
    let cases = [
        (
            good.replace("\"item_factors\"", "\"item_popularity\""),
            "mlp.onnx",
            "[50, 37]",
        ),
        (
            good.replace("input = \"features\"", "input = \"x\""),
            "mlp.onnx",
            "input is named \"features\"",
        ),
        (
            good.replace("output = \"score\"", "output = \"logit\""),
            "mlp.onnx",
            "no output named \"logit\"",
        ),
        (
            good.replace("attribute:tag=sale", "attribute:tag=clearance"),
            "mlp.onnx",
            "no item attribute \"tag=clearance\"",
        ),
        (
            good.replace("features = [", "features = [\"mood\", "),
            "mlp.onnx",
            "unknown feature \"mood\"",
        ),
        (good.clone(), "missing.onnx", "ranker.onnx"),
        (
            "[ranker\nfeatures = 3".to_string(),
            "mlp.onnx",
            "bundle.toml",
        ),
    ];
    for (bundle, onnx, needle) in cases {
        let dir = with_bundle(Some(&bundle), (onnx != "missing.onnx").then_some(onnx));
        let s = TestServer::start_in(dir, |_| {});
        let st = s.get("/v1/models/shop").json();
        assert_eq!(st["state"], "not_serving", "{bundle}");
        let err = st["versions"][0]["error"].as_str().unwrap().to_string();
        assert!(
            err.contains("ranker bundle") && err.contains(needle),
            "{needle:?} not in {err:?}"
        );
    }
}

/// A ranker exported by vitrine-train (degree-2 logistic regression over
/// retrieval score, popularity and activity): tract computes what the
/// trainer computes, and the server's answer is the first stage's top N
/// re-sorted by it — the order the trainer evaluated.
#[test]
fn trained_ranker_serves_the_order_the_trainer_evaluated() {
    let ranker = trained_ranker();
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("ranker.onnx");
    std::fs::write(&onnx, ranker.to_onnx()).unwrap();
    let rows = 64;
    let x: Vec<f32> = (0..rows * 3)
        .map(|i| ((i * 37 % 101) as f32) * [0.01, 1.0, 0.3][i % 3])
        .collect();
    let got = vitrine_server::ranker::run_onnx(&onnx, "features", "score", rows, 3, &x).unwrap();
    for (r, g) in got.iter().enumerate() {
        let want = ranker.score(&[x[3 * r], x[3 * r + 1], x[3 * r + 2]]);
        assert!(
            (g - want).abs() <= 1e-5 * want.abs().max(1.0),
            "row {r}: tract {g} vs {want}"
        );
    }

    let served = with_bundle(Some(&ranker.bundle_toml(50)), None);
    std::fs::write(served.path().join("shop/1/ranker.onnx"), ranker.to_onnx()).unwrap();
    let ranked = TestServer::start_in(served, |_| {});
    let plain = TestServer::start_in(with_bundle(None, None), |_| {});
    let st = ranked.get("/v1/models/shop").json();
    assert_eq!(st["ranker"]["engine"], "tract", "{st}");
    let art = vitrine_core::Artifact::open(&plain.models_path().join("shop/1/model.vtr")).unwrap();
    let pop = art.item_popularity().unwrap();
    let seen = art.seen_items().unwrap().row(4).len() as f32;
    let (_, first) = plain.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-4", "k": 50}"#,
    );
    let mut expect: Vec<(String, f32)> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["id"].as_str().unwrap().to_string();
            let p = pop[art.item_ids().index_of(&id).unwrap() as usize];
            let s = ranker.score(&[i["score"].as_f64().unwrap() as f32, p, seen]);
            (id, s)
        })
        .collect();
    expect.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (_, got) = ranked.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-4", "k": 10}"#,
    );
    let expect: Vec<String> = expect.into_iter().take(10).map(|e| e.0).collect();
    assert_eq!(ids(&got), expect);
}

/// A ranker as vitrine-train exports it, with fixed weights.
fn trained_ranker() -> vitrine_train::ranker::Ranker {
    vitrine_train::ranker::Ranker {
        mean: [0.5, 40.0, 20.0],
        scale: [0.3, 25.0, 5.0],
        bias: -3.0,
        linear: [1.0, 0.6, 0.1],
        quadratic: [-0.2, 0.05, 0.0, 0.05, -0.3, 0.1, 0.0, 0.1, 0.01],
    }
}

fn io_fixture(name: &str) -> (Vec<f32>, Vec<f32>, usize, usize) {
    let io: Value = serde_json::from_slice(&std::fs::read(data().join(name)).unwrap()).unwrap();
    let floats = |k: &str| -> Vec<f32> {
        io[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let dims = |k: &str| io[k].as_u64().unwrap() as usize;
    (
        floats("input"),
        floats("output"),
        dims("rows"),
        dims("cols"),
    )
}

/// Gradient-boosted trees as LightGBM/XGBoost converters export them
/// (ai.onnx.ml TreeEnsembleRegressor): tract does not implement the
/// operator, so the version is rejected with a reason that names it and
/// points at the ort engine.
#[test]
fn tree_ensembles_are_rejected_by_tract_with_a_pointer_to_ort() {
    let bundle = std::fs::read_to_string(data().join("bundle.toml")).unwrap();
    let s = TestServer::start_in(with_bundle(Some(&bundle), Some("trees.onnx")), |_| {});
    let st = s.get("/v1/models/shop").json();
    assert_eq!(st["state"], "not_serving");
    let err = st["versions"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("TreeEnsembleRegressor") && err.contains("ranker_engine = \"ort\""),
        "{err}"
    );
}

/// The same trees on ONNX Runtime: equal to Python onnxruntime's outputs,
/// and served by the ort engine.
#[cfg(feature = "ort")]
#[test]
fn tree_ensembles_serve_on_the_ort_engine() {
    let Some(lib) = ort_library("tree_ensembles_serve_on_the_ort_engine") else {
        return;
    };
    let (x, want, rows, cols) = io_fixture("trees-io.json");
    let got = vitrine_server::ranker::run_onnx_ort(
        Path::new(&lib),
        &data().join("trees.onnx"),
        "features",
        "score",
        rows,
        cols,
        &x,
    )
    .unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5, "ort {g} vs onnxruntime {w}");
    }
    let bundle = std::fs::read_to_string(data().join("bundle.toml")).unwrap();
    let s = TestServer::start_in(with_bundle(Some(&bundle), Some("trees.onnx")), |c| {
        c.defaults.ranker_engine = "ort".into();
    });
    let (st, body) = s.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-4", "k": 10}"#,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(s.get("/v1/models/shop").json()["ranker"]["engine"], "ort");
}
