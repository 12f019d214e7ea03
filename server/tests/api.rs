//! The API end to end over HTTP on generated models: every endpoint, the
//! semantics (exclusions, filters, fallback, sessions), both model kinds and
//! all element types.

mod common;

use common::{TestServer, ids};
use serde_json::Value;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model, neighbors_model};
use vitrine_core::{Artifact, ElementType};

fn spec(dtype: ElementType) -> SyntheticSpec {
    let mut s = SyntheticSpec::demo();
    s.dtype = dtype;
    s
}

fn server() -> TestServer {
    let emb = embedding_model(&spec(ElementType::Int8));
    let f16 = embedding_model(&spec(ElementType::F16));
    let f32m = embedding_model(&spec(ElementType::F32));
    let nbr = neighbors_model(&SyntheticSpec::demo());
    TestServer::start(
        &[
            ("shop", &emb),
            ("shop16", &f16),
            ("shop32", &f32m),
            ("nbr", &nbr),
        ],
        |_| {},
    )
}

#[test]
fn recommend_get_and_post_agree_and_exclude_seen_items() {
    let s = server();
    let art = Artifact::open(&s.models_path().join("shop/1/model.vtr")).unwrap();
    let seen: Vec<String> = art
        .seen_items()
        .unwrap()
        .row(7)
        .iter()
        .map(|&i| art.item_ids().id(i as usize).to_string())
        .collect();
    let (st, post) = s.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-7", "k": 20}"#,
    );
    assert_eq!(st, 200, "{post}");
    let get = s.get("/v1/models/shop/recommend?user=user-7&k=20");
    assert_eq!(get.status, 200);
    assert_eq!(post, get.json());
    assert_eq!(
        (post["model"].as_str(), post["version"].as_u64()),
        (Some("shop"), Some(1))
    );
    let got = ids(&post);
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|i| !seen.contains(i)), "seen items returned");
    let scores: Vec<f64> = post["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not sorted: {scores:?}"
    );
    assert!(post.get("fallback").is_none());
    // Switching exclusion off lets seen items back in; an explicit exclude
    // list removes items.
    let (_, all) = s.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-7", "k": 200, "exclude_seen": false}"#,
    );
    assert!(ids(&all).iter().any(|i| seen.contains(i)));
    let first = got[0].clone();
    let (_, ex) = s.json(
        "/v1/models/shop/recommend",
        &format!(r#"{{"user": "user-7", "k": 20, "exclude": ["{first}"]}}"#),
    );
    assert!(!ids(&ex).contains(&first));
    assert_eq!(ids(&ex).len(), 20);
}

#[test]
fn filters_apply_inside_the_scan_so_k_items_come_back() {
    let s = server();
    for model in ["shop", "nbr"] {
        let art = Artifact::open(&s.models_path().join(format!("{model}/1/model.vtr"))).unwrap();
        let names = art.attribute_names().unwrap();
        let attrs = art.item_attributes().unwrap();
        let c3 = names.index_of("category=c3").unwrap();
        let sale = names.index_of("tag=sale").unwrap();
        let (st, v) = s.json(
            &format!("/v1/models/{model}/recommend"),
            r#"{"user": "user-3", "k": 25, "filter": {"category": "c3", "tags": ["sale"]}}"#,
        );
        assert_eq!(st, 200, "{v}");
        let got = ids(&v);
        let qualifying = (0..art.metadata().n_items)
            .filter(|&i| attrs.contains(i, c3) && attrs.contains(i, sale))
            .count();
        assert_eq!(
            got.len(),
            25.min(qualifying),
            "{model}: {qualifying} qualify"
        );
        for id in &got {
            let i = art.item_ids().index_of(id).unwrap() as usize;
            assert!(
                attrs.contains(i, c3) && attrs.contains(i, sale),
                "{model}: {id} does not match"
            );
        }
    }
    let (st, v) = s.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-3", "filter": {"colour": "red"}}"#,
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_filter"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"));
    let (st, v) = s.json(
        "/v1/models/shop/recommend",
        r#"{"user": "user-3", "filter": {"category": "nope"}}"#,
    );
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("category=nope"),
        "{v}"
    );
}

#[test]
fn unknown_users_fall_back_to_popularity_and_sessions_fold_in() {
    let s = server();
    let (st, v) = s.json(
        "/v1/models/shop/recommend",
        r#"{"user": "new-visitor", "k": 5}"#,
    );
    assert_eq!(st, 200);
    assert_eq!(v["fallback"], "popular");
    let pop: Vec<f64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert!(pop.windows(2).all(|w| w[0] >= w[1]));
    let metrics = s.get("/metrics").text();
    assert!(
        metrics
            .contains("vitrine_recommend_fallback_total{model=\"shop\",reason=\"unknown_user\"}"),
        "{metrics}"
    );
    // An anonymous session: recommendations follow the viewed items'
    // category (synthetic items cluster by category), and exclude them.
    let art = Artifact::open(&s.models_path().join("shop/1/model.vtr")).unwrap();
    let names = art.attribute_names().unwrap();
    let attrs = art.item_attributes().unwrap();
    let c5 = names.index_of("category=c5").unwrap();
    let viewed: Vec<String> = (0..art.metadata().n_items)
        .filter(|&i| attrs.contains(i, c5))
        .take(5)
        .map(|i| art.item_ids().id(i).to_string())
        .collect();
    for model in ["shop", "shop32", "nbr"] {
        let body = serde_json::json!({"history": viewed, "k": 10}).to_string();
        let (st, v) = s.json(&format!("/v1/models/{model}/recommend"), &body);
        assert_eq!(st, 200, "{v}");
        assert!(v.get("fallback").is_none());
        let got = ids(&v);
        assert!(got.iter().all(|i| !viewed.contains(i)));
        let same = got
            .iter()
            .filter(|id| attrs.contains(art.item_ids().index_of(id).unwrap() as usize, c5))
            .count();
        assert!(
            same >= 7,
            "{model}: only {same}/10 from the session's category"
        );
    }
    // fallback = "error" turns the fallback into a 404.
    let emb = embedding_model(&spec(ElementType::Int8));
    let strict = TestServer::start(&[("shop", &emb)], |c| c.defaults.fallback = "error".into());
    let (st, v) = strict.json("/v1/models/shop/recommend", r#"{"user": "new-visitor"}"#);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("unknown_user"))
    );
}

#[test]
fn similar_score_and_batch() {
    let s = server();
    for model in ["shop", "shop16", "shop32", "nbr"] {
        let (st, v) = s.json(
            &format!("/v1/models/{model}/similar"),
            r#"{"item": "SKU-00010-L", "k": 5}"#,
        );
        assert_eq!(st, 200, "{model}: {v}");
        assert!(!ids(&v).contains(&"SKU-00010-L".to_string()));
        assert!(!ids(&v).is_empty());
    }
    let (st, v) = s.json("/v1/models/shop/similar", r#"{"item": "SKU-NOPE"}"#);
    assert_eq!(st, 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("SKU-NOPE"));
    // Scores come back in the order asked and equal the recommend scores.
    let (_, rec) = s.json(
        "/v1/models/shop32/recommend",
        r#"{"user": "user-1", "k": 3}"#,
    );
    let top = ids(&rec);
    let body = serde_json::json!({"user": "user-1", "items": [top[2], top[0]]}).to_string();
    let (st, sc) = s.json("/v1/models/shop32/score", &body);
    assert_eq!(st, 200, "{sc}");
    assert_eq!(ids(&sc), vec![top[2].clone(), top[0].clone()]);
    let close = |a: &Value, b: &Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5;
    assert!(
        close(&sc["items"][0]["score"], &rec["items"][2]["score"]),
        "{sc} vs {rec}"
    );
    let (st, v) = s.json(
        "/v1/models/shop/score",
        r#"{"user": "user-1", "items": ["SKU-00001-M", "SKU-BAD"]}"#,
    );
    assert_eq!(st, 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("SKU-BAD"));
    // Batch: per-request results in order, errors in place.
    let (st, b) = s.json(
        "/v1/models/shop/recommend:batch",
        r#"{"requests": [{"user": "user-1", "k": 3}, {"user": "user-2", "k": 0}, {"user": "user-1", "k": 3}]}"#,
    );
    assert_eq!(st, 200, "{b}");
    let results = b["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["error"]["code"], "invalid_request");
    assert_eq!(results[0]["items"], results[2]["items"]);
}

#[test]
fn every_dtype_ranks_like_f32() {
    let s = server();
    let reference = ids(&s
        .json(
            "/v1/models/shop32/recommend",
            r#"{"user": "user-9", "k": 10}"#,
        )
        .1);
    for model in ["shop16", "shop"] {
        let got = ids(&s
            .json(
                &format!("/v1/models/{model}/recommend"),
                r#"{"user": "user-9", "k": 10}"#,
            )
            .1);
        let common = got.iter().filter(|i| reference.contains(i)).count();
        assert!(common >= 8, "{model}: {common}/10 of the f32 top 10");
    }
}

#[test]
fn status_health_readiness_and_metrics() {
    let s = server();
    assert_eq!(s.get("/healthz").status, 200);
    let ready = s.get("/readyz");
    assert_eq!(
        (ready.status, ready.json()["ready"].as_bool()),
        (200, Some(true))
    );
    let list = s.get("/v1/models").json();
    assert_eq!(list["models"].as_array().unwrap().len(), 4);
    let m = s.get("/v1/models/shop").json();
    assert_eq!(
        (
            m["version"].as_u64(),
            m["dtype"].as_str(),
            m["state"].as_str()
        ),
        (Some(1), Some("int8"), Some("serving"))
    );
    assert_eq!(m["versions"][0]["state"], "serving");
    s.json("/v1/models/shop/recommend", r#"{"user": "user-1"}"#);
    let text = s.get("/metrics").text();
    for name in [
        "vitrine_http_requests_total{route=\"/v1/models/{model}/recommend\",status=\"200\"}",
        "vitrine_http_request_duration_seconds_bucket{route=\"/v1/models/{model}/recommend\",le=\"0.00005\"}",
        "vitrine_model_info{model=\"shop\",version=\"1\",kind=\"embedding\",dtype=\"int8\"} 1",
        "vitrine_inflight_requests",
        "vitrine_recommend_top_score_bucket{model=\"shop\"",
        "vitrine_served_item_coverage{model=\"shop\",version=\"1\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // Raw paths never become labels.
    assert!(!text.contains("route=\"/v1/models/shop/"));
    // A server whose model directory holds nothing valid is not ready.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("broken/1")).unwrap();
    std::fs::write(dir.path().join("broken/1/model.vtr"), b"not an artifact").unwrap();
    let bad = TestServer::start_in(dir, |_| {});
    let r = bad.get("/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["not_serving"][0], "broken");
    let st = bad.get("/v1/models/broken").json();
    assert_eq!(st["versions"][0]["state"], "failed");
    assert!(st["versions"][0]["error"].as_str().unwrap().len() > 5);
    let (code, _) = bad.json("/v1/models/broken/recommend", r#"{"user": "u"}"#);
    assert_eq!(code, 503);
}

#[test]
fn the_newest_valid_version_serves() {
    let dir = common::models_dir(&[]);
    let parts = embedding_model(&spec(ElementType::Int8));
    for v in ["1", "2"] {
        let p = dir.path().join("shop").join(v);
        std::fs::create_dir_all(&p).unwrap();
        parts.write(&p.join("model.vtr")).unwrap();
    }
    // Version 3 is garbage, ".tmp-4" is a publish in progress, "05" is not
    // a canonical integer: none of them may serve.
    std::fs::create_dir_all(dir.path().join("shop/3")).unwrap();
    std::fs::write(dir.path().join("shop/3/model.vtr"), b"half a file").unwrap();
    std::fs::create_dir_all(dir.path().join("shop/.tmp-4")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop/05")).unwrap();
    let s = TestServer::start_in(dir, |_| {});
    let st = s.get("/v1/models/shop").json();
    assert_eq!(st["version"], 2);
    let states: Vec<(u64, String)> = st["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (3, "failed".into()),
            (2, "serving".into()),
            (1, "ready".into())
        ]
    );
}

#[test]
fn micro_batched_answers_equal_unbatched_ones() {
    let emb = embedding_model(&spec(ElementType::Int8));
    let batched = TestServer::start(&[("shop", &emb)], |c| c.micro_batching = true);
    let single = TestServer::start(&[("shop", &emb)], |c| c.micro_batching = false);
    // Concurrent requests, so the batcher really groups them.
    let bodies: Vec<String> = (0..64)
        .map(|u| {
            format!(
                r#"{{"user": "user-{u}", "k": {}, "filter": {{"category": "c{}"}}}}"#,
                1 + u % 12,
                u % 5
            )
        })
        .collect();
    let answers = |s: &TestServer| -> Vec<Value> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|b| scope.spawn(move || s.json("/v1/models/shop/recommend", b).1))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    assert_eq!(answers(&batched), answers(&single));
}
