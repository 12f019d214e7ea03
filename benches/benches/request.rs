//! The in-process request handler (`api::handle`, no sockets): what one
//! request costs on one core before HTTP, for each route, and the cost of
//! the second-stage ranker (the same model with and without a bundle that
//! re-ranks 200 candidates with the MLP fixture).

use criterion::{Criterion, criterion_group, criterion_main};
use std::path::Path;
use vitrine_core::ElementType;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};
use vitrine_server::api::{ApiRequest, AppState, handle};
use vitrine_server::config::Config;
use vitrine_server::registry::Registry;

/// A models directory holding `shop` (10k items × 32 dims, int8) and
/// `shop-ranked` (the same artifact plus the MLP ranker bundle).
fn state(dir: &Path) -> AppState {
    let spec = SyntheticSpec {
        items: 10_000,
        users: 10_000,
        dtype: ElementType::Int8,
        ..SyntheticSpec::demo()
    };
    let bytes = embedding_model(&spec).encode().expect("encode");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/data/ranker");
    for name in ["shop", "shop-ranked"] {
        let v = dir.join(name).join("1");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("model.vtr"), &bytes).unwrap();
    }
    let v = dir.join("shop-ranked/1");
    std::fs::copy(fixtures.join("mlp.onnx"), v.join("ranker.onnx")).unwrap();
    let bundle = std::fs::read_to_string(fixtures.join("bundle.toml"))
        .unwrap()
        .replace("candidates = 50", "candidates = 200");
    std::fs::write(v.join("bundle.toml"), bundle).unwrap();
    let config = Config {
        models_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let registry = Registry::load(&config);
    assert!(registry.not_serving().is_empty(), "bench models must load");
    AppState { config, registry }
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    body: &str,
) -> ApiRequest<'a> {
    ApiRequest {
        method,
        path,
        query,
        authorization: None,
        body: body.as_bytes().to_vec(),
    }
}

fn routes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let mut group = c.benchmark_group("handler_10k_x32_int8");
    let mut user = 0u32;
    let mut next_user = move || {
        user = (user + 7919) % 10_000;
        format!("user={}&k=10", format_args!("user-{user}"))
    };
    group.bench_function("recommend_get", |b| {
        b.iter(|| {
            let q = next_user();
            let (_, r) = handle(
                &state,
                request("GET", "/v1/models/shop/recommend", Some(&q), ""),
            );
            assert_eq!(r.status, 200);
            r
        });
    });
    group.bench_function("recommend_get_ranked_200", |b| {
        b.iter(|| {
            let q = next_user();
            let (_, r) = handle(
                &state,
                request("GET", "/v1/models/shop-ranked/recommend", Some(&q), ""),
            );
            assert_eq!(r.status, 200);
            r
        });
    });
    group.bench_function("recommend_get_k200", |b| {
        b.iter(|| {
            let q = next_user().replace("k=10", "k=200");
            let (_, r) = handle(
                &state,
                request("GET", "/v1/models/shop/recommend", Some(&q), ""),
            );
            assert_eq!(r.status, 200);
            r
        });
    });
    group.bench_function("similar", |b| {
        b.iter(|| {
            let (_, r) = handle(
                &state,
                request(
                    "POST",
                    "/v1/models/shop/similar",
                    None,
                    r#"{"item": "SKU-00042-M", "k": 10}"#,
                ),
            );
            assert_eq!(r.status, 200);
            r
        });
    });
    group.bench_function("score_20", |b| {
        let items: Vec<String> = (0..20)
            .map(|i| format!("\"SKU-{:05}-M\"", i * 97))
            .collect();
        let body = format!(r#"{{"user": "user-4", "items": [{}]}}"#, items.join(","));
        b.iter(|| {
            let (_, r) = handle(
                &state,
                request("POST", "/v1/models/shop/score", None, &body),
            );
            assert_eq!(r.status, 200);
            r
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = routes
}
criterion_main!(benches);
