//! The lifecycle against a running server: discovery, gates, promotion,
//! rejection, rollback, pinning, and the faults it must survive.

mod common;

use common::{TestServer, request};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use vitrine_core::artifact::ModelParts;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};

fn small(seed: u64) -> ModelParts {
    let mut s = SyntheticSpec::demo();
    s.users = 300;
    s.items = 800;
    s.seed = seed;
    embedding_model(&s)
}

fn fast(c: &mut vitrine_server::config::Config) {
    c.lifecycle.debounce_ms = 30;
    c.lifecycle.rescan_interval_ms = 200;
    c.lifecycle.online_max_duration_ms = 300;
    c.lifecycle.warmup_queries = 10;
    c.admin_token = "admin".into();
}

fn publish(dir: &Path, parts: &ModelParts) -> u64 {
    let bytes = parts.encode().unwrap();
    let v = vitrine_core::publish::publish(&dir.join("shop"), &[("model.vtr", &bytes)]).unwrap();
    v.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

fn status(s: &TestServer) -> Value {
    s.get("/v1/models/shop").json()
}

/// Waits until `pred` holds for the model status (or fails after 20 s).
fn wait_for(s: &TestServer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let st = status(s);
        if pred(&st) {
            return st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Version `v`'s entry in a model status (`Null` if not listed).
fn version_entry(st: &Value, v: u64) -> Value {
    st["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["version"] == v)
        .cloned()
        .unwrap_or(Value::Null)
}

fn version_state(st: &Value, v: u64) -> String {
    version_entry(st, v)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn rollback(s: &TestServer) -> common::Reply {
    request(
        s.addr,
        "POST",
        "/v1/models/shop/rollback",
        &[("Authorization", "Bearer admin")],
        b"",
    )
}

#[test]
fn a_published_version_is_gated_promoted_and_can_be_rolled_back() {
    let dir = common::models_dir(&[("shop", &small(1))]);
    let s = TestServer::start_in(dir, fast);
    let models = s.models_path().to_path_buf();
    // Traffic while the candidate is in shadow, so the online gate samples.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (addr, stop) = (s.addr, stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = format!(r#"{{"user": "user-{}", "k": 5}}"#, n % 300);
                let r = request(
                    addr,
                    "POST",
                    "/v1/models/shop/recommend",
                    &[],
                    body.as_bytes(),
                );
                assert_eq!(
                    r.status,
                    200,
                    "a request failed during promotion: {}",
                    r.text()
                );
                n += 1;
            }
            n
        })
    };
    let v2 = publish(&models, &small(1));
    let st = wait_for(&s, "version 2 to serve", |st| st["version"] == v2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(traffic.join().unwrap() > 10);
    assert_eq!(version_state(&st, 1), "retained");
    let report: Value =
        serde_json::from_slice(&std::fs::read(models.join("shop/2/shadow-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["outcome"], "promoted", "{report:#}");
    assert_eq!(report["offline"]["passed"], true);
    assert!(
        report["offline"]["candidate_holdout"]["users"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(report["online"]["samples"].as_u64().is_some(), "{report:#}");
    let shown = version_entry(&st, 2);
    assert_eq!(shown["report"]["outcome"], "promoted");
    assert!(
        s.get("/metrics")
            .text()
            .contains(r#"vitrine_model_reloads_total{model="shop",outcome="promoted"}"#)
    );
    // Rollback: admin only, instant, and the rolled-back version stays out.
    let r = rollback(&s);
    assert_eq!(
        (r.status, r.json()["version"].as_u64()),
        (200, Some(1)),
        "{}",
        r.text()
    );
    assert_eq!(status(&s)["version"], 1);
    std::thread::sleep(Duration::from_millis(600)); // several rescans
    let st = status(&s);
    assert_eq!(st["version"], 1);
    assert_eq!(version_state(&st, 2), "rolled_back");
    let r = rollback(&s);
    assert_eq!(r.status, 409);
}

#[test]
fn the_gates_reject_a_model_whose_ids_do_not_match_its_factors() {
    let good = small(1);
    let dir = common::models_dir(&[("shop", &good)]);
    let s = TestServer::start_in(dir, fast);
    let mut shuffled = good.clone();
    shuffled.item_ids.reverse();
    let v = publish(s.models_path(), &shuffled);
    let st = wait_for(&s, "a verdict", |st| version_state(st, v) == "rejected");
    assert_eq!(st["version"], 1, "serving version must stay");
    let report = version_entry(&st, v)["report"].clone();
    assert_eq!(report["outcome"], "rejected");
    assert_eq!(
        report["offline"]["serving_holdout"]["passed"], false,
        "{report:#}"
    );
    assert!(
        report["reasons"][0]
            .as_str()
            .unwrap()
            .contains("offline gate")
    );
    assert!(
        s.get("/metrics")
            .text()
            .contains(r#"vitrine_model_reloads_total{model="shop",outcome="rejected"}"#)
    );
    s.assert_serving();
}

/// Verdicts survive a restart: a version the gates rejected and one an
/// operator rolled back are not served by the next process while another
/// version validates, nor gated again — until their files change.
#[test]
fn a_restarted_server_honours_rejections_and_rollbacks() {
    let good = small(1);
    let mut s = TestServer::start_in(common::models_dir(&[("shop", &good)]), fast);
    let mut shuffled = good.clone();
    shuffled.item_ids.reverse();
    let rejected = publish(s.models_path(), &shuffled);
    wait_for(&s, "the rejection", |st| {
        version_state(st, rejected) == "rejected"
    });
    let rolled_back = publish(s.models_path(), &small(1));
    wait_for(&s, "the promotion", |st| st["version"] == rolled_back);
    let r = rollback(&s);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["recorded"], true);

    let report_file = s
        .models_path()
        .join(format!("shop/{rejected}/shadow-report.json"));
    let verdict: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();

    // Restart on the same directory.
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let mut s = TestServer::start_in(dir, fast);
    let st = status(&s);
    assert_eq!(st["version"], 1, "{st:#}");
    assert_eq!(version_state(&st, rejected), "rejected");
    assert_eq!(version_state(&st, rolled_back), "rolled_back");
    std::thread::sleep(Duration::from_millis(600)); // several rescans
    let st = status(&s);
    assert_eq!(st["version"], 1, "re-gated after the restart: {st:#}");
    // Not gated again: the status shows the recorded report, unchanged.
    let shown = version_entry(&st, rejected);
    assert_eq!(shown["report"], verdict);
    s.assert_serving();

    // New bytes in the rolled-back version: the verdict no longer applies.
    let fixed = s
        .models_path()
        .join("shop")
        .join(rolled_back.to_string())
        .join("model.vtr");
    let mut parts = small(1);
    parts.metadata.trained_at = "2026-12-05T01:02:03Z".into();
    vitrine_core::artifact::write_atomically(&fixed, &parts.encode().unwrap()).unwrap();
    wait_for(&s, "the fixed version", |st| st["version"] == rolled_back);

    // With nothing else left that validates, a passed-over version serves,
    // and its status says why.
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    for v in [1, rolled_back] {
        std::fs::remove_dir_all(dir.path().join("shop").join(v.to_string())).unwrap();
    }
    let s = TestServer::start_in(dir, fast);
    let st = status(&s);
    assert_eq!(st["version"], rejected, "{st:#}");
    let shown = &st["versions"][0];
    assert!(
        shown["error"]
            .as_str()
            .is_some_and(|e| e.contains("despite the earlier verdict (rejected)")),
        "{shown:#}"
    );
    s.assert_serving();
}

#[test]
fn broken_versions_fail_without_touching_the_serving_one_and_are_retried_when_fixed() {
    let good = small(1);
    let dir = common::models_dir(&[("shop", &good)]);
    let s = TestServer::start_in(dir, fast);
    let m = s.models_path().join("shop");
    let bytes = good.encode().unwrap();
    // Garbage; a truncated file; NaN factors with repaired checksums.
    let mut nan = bytes.clone();
    let art = vitrine_core::Artifact::from_bytes(&bytes).unwrap();
    let uf = art
        .sections()
        .iter()
        .find(|e| e.kind == vitrine_core::artifact::SectionKind::UserFactors)
        .unwrap();
    let at = uf.offset as usize + uf.length as usize - 64;
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    vitrine_core::testing::fix_checksums(&mut nan);
    for (v, content) in [
        (2u64, b"garbage".to_vec()),
        (3, bytes[..bytes.len() / 2].to_vec()),
        (4, nan),
    ] {
        std::fs::create_dir_all(m.join(format!(".tmp-{v}"))).unwrap();
        std::fs::write(m.join(format!(".tmp-{v}/model.vtr")), content).unwrap();
        std::fs::rename(m.join(format!(".tmp-{v}")), m.join(v.to_string())).unwrap();
    }
    let st = wait_for(&s, "three failures", |st| {
        (2..=4).all(|v| version_state(st, v) == "failed")
    });
    assert_eq!(st["version"], 1);
    s.assert_serving();
    // A half-copied directory (version 5 holds half the file) fails, then
    // succeeds once the copy completes (its files changed).
    std::fs::create_dir_all(m.join("5")).unwrap();
    std::fs::write(m.join("5/model.vtr"), &bytes[..1000]).unwrap();
    wait_for(&s, "5 to fail", |st| version_state(st, 5) == "failed");
    std::fs::write(m.join("5/model.vtr"), &bytes).unwrap();
    wait_for(&s, "5 to serve", |st| st["version"] == 5);
    s.assert_serving();
}

#[test]
fn files_changed_or_deleted_under_a_serving_version_cannot_hurt_it() {
    let good = small(1);
    let dir = common::models_dir(&[("shop", &good)]);
    let s = TestServer::start_in(dir, fast);
    let before = s
        .json(
            "/v1/models/shop/recommend",
            r#"{"user": "user-3", "k": 10}"#,
        )
        .1;
    let file = s.models_path().join("shop/1/model.vtr");
    // Truncate in place, overwrite in place (same inode), then delete the
    // whole version directory: the server answers from its sealed snapshot.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(
        s.json(
            "/v1/models/shop/recommend",
            r#"{"user": "user-3", "k": 10}"#
        )
        .1,
        before
    );
    std::fs::write(&file, vec![0xAB; 50_000]).unwrap();
    assert_eq!(
        s.json(
            "/v1/models/shop/recommend",
            r#"{"user": "user-3", "k": 10}"#
        )
        .1,
        before
    );
    std::fs::remove_dir_all(s.models_path().join("shop/1")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.json(
            "/v1/models/shop/recommend",
            r#"{"user": "user-3", "k": 10}"#
        )
        .1,
        before
    );
    assert_eq!(status(&s)["version"], 1);
}

#[test]
fn an_unwritable_report_does_not_block_promotion() {
    let dir = common::models_dir(&[("shop", &small(1))]);
    let s = TestServer::start_in(dir, fast);
    let m = s.models_path().join("shop");
    // A directory where the report file should go: the write must fail
    // (permissions do not stop root, a directory does).
    std::fs::create_dir_all(m.join(".tmp-2/shadow-report.json")).unwrap();
    small(1).write(&m.join(".tmp-2/model.vtr")).unwrap();
    std::fs::rename(m.join(".tmp-2"), m.join("2")).unwrap();
    let st = wait_for(&s, "version 2", |st| st["version"] == 2);
    let shown = version_entry(&st, 2);
    assert_eq!(shown["report"]["outcome"], "promoted");
    assert!(
        s.get("/metrics")
            .text()
            .contains("vitrine_shadow_report_write_failures_total")
    );
}

#[test]
fn the_newest_of_many_versions_wins_and_two_at_once_resolve_to_the_newest() {
    let parts = small(1);
    let bytes = parts.encode().unwrap();
    let dir = common::models_dir(&[]);
    let m = dir.path().join("shop");
    for v in 1..=1000 {
        std::fs::create_dir_all(m.join(v.to_string())).unwrap();
        std::fs::write(m.join(format!("{v}/model.vtr")), &bytes).unwrap();
    }
    let started = Instant::now();
    let s = TestServer::start_in(dir, fast);
    assert_eq!(status(&s)["version"], 1000);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Two versions appear in one go: the newest is promoted.
    for v in [1001, 1002] {
        std::fs::create_dir_all(m.join(format!(".tmp-{v}"))).unwrap();
        std::fs::write(m.join(format!(".tmp-{v}/model.vtr")), &bytes).unwrap();
    }
    std::fs::rename(m.join(".tmp-1001"), m.join("1001")).unwrap();
    std::fs::rename(m.join(".tmp-1002"), m.join("1002")).unwrap();
    let st = wait_for(&s, "1002", |st| st["version"] == 1002);
    assert_ne!(version_state(&st, 1001), "serving");
    s.assert_serving();
}

#[test]
fn a_pinned_version_is_served_and_newer_ones_wait() {
    let dir = common::models_dir(&[("shop", &small(1))]);
    publish(dir.path(), &small(1));
    let s = TestServer::start_in(dir, |c| {
        fast(c);
        c.models.insert(
            "shop".into(),
            vitrine_server::config::ModelOverrides {
                pin: Some(1),
                ..Default::default()
            },
        );
    });
    assert_eq!(status(&s)["version"], 1);
    publish(s.models_path(), &small(1));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(status(&s)["version"], 1);
}

#[test]
fn a_new_model_directory_is_discovered_at_run_time() {
    let dir = common::models_dir(&[("shop", &small(1))]);
    let s = TestServer::start_in(dir, fast);
    let v = s.models_path().join("fresh/.tmp-1");
    std::fs::create_dir_all(&v).unwrap();
    small(2).write(&v.join("model.vtr")).unwrap();
    std::fs::rename(&v, s.models_path().join("fresh/1")).unwrap();
    let start = Instant::now();
    while s.get("/v1/models/fresh").status != 200
        || s.get("/v1/models/fresh").json()["version"] != 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "fresh model not discovered"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        s.json("/v1/models/fresh/recommend", r#"{"user": "user-1"}"#)
            .0,
        200
    );
}

#[test]
fn ranker_bundles_go_through_the_gates() {
    let good = small(1);
    let dir = common::models_dir(&[("shop", &good)]);
    let s = TestServer::start_in(dir, fast);
    let m = s.models_path().join("shop");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ranker");
    let bundle = std::fs::read_to_string(fixtures.join("bundle.toml")).unwrap();
    let publish_with = |v: u64, onnx: &str| {
        let tmp = m.join(format!(".tmp-{v}"));
        std::fs::create_dir_all(&tmp).unwrap();
        good.write(&tmp.join("model.vtr")).unwrap();
        std::fs::write(tmp.join("bundle.toml"), &bundle).unwrap();
        std::fs::copy(fixtures.join(onnx), tmp.join("ranker.onnx")).unwrap();
        std::fs::rename(&tmp, m.join(v.to_string())).unwrap();
    };
    // A ranker that puts the least popular candidates first ranks held-out
    // items worse: the offline gate, which evaluates versions as they
    // answer, rejects it.
    publish_with(2, "neg_popularity.onnx");
    let st = wait_for(&s, "a verdict on 2", |st| {
        version_state(st, 2) == "rejected"
    });
    assert_eq!(st["version"], 1);
    // A ranker that keeps the first stage's order is as good: promoted.
    publish_with(3, "retrieval_score.onnx");
    wait_for(&s, "3 to serve", |st| st["version"] == 3);
    s.assert_serving();
}
