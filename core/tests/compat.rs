//! Frozen artifacts: one set per format version, written once and committed.
//! Every later build must open them and score exactly as recorded.
//!
//! To add the set for a new format version, bump the version, then run
//! `VITRINE_WRITE_FIXTURES=1 cargo test -p vitrine-core --test compat -- --ignored`
//! (it never overwrites an existing fixture).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use vitrine_core::scan::{ItemScanner, ScoredItem, top_k_neighbors};
use vitrine_core::synthetic::{SyntheticSpec, embedding_model, neighbors_model};
use vitrine_core::{Artifact, ElementType, ModelKind};

fn fixture_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(version)
}

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        name: "frozen".into(),
        users: 30,
        items: 120,
        dims: 24,
        dtype: ElementType::Int8,
        categories: 6,
        seen_per_user: 5,
        holdout_per_user: 2,
        with_catalog: true,
        with_bias: true,
        seed: 2026,
    }
}

/// Top-10 (seen items excluded) of the first 5 users, as JSON.
fn recommendations(art: &Artifact) -> Value {
    let seen = art.seen_items().unwrap();
    let ids = art.item_ids();
    let as_json = |items: Vec<ScoredItem>| -> Value {
        items
            .iter()
            .map(|s| json!({"id": ids.id(s.item as usize), "score": s.score}))
            .collect()
    };
    let users: Vec<Value> = (0..5)
        .map(|u| match art.metadata().kind {
            ModelKind::Embedding => {
                let scanner = ItemScanner::new(art.item_factors().unwrap(), art.item_bias_padded());
                let f = art.user_factors().unwrap();
                let mut q = vec![0.0; f.padded_dims];
                f.row_f32(u, &mut q);
                let offset = art.user_bias().unwrap()[u] + art.metadata().global_bias;
                as_json(scanner.top_k(&scanner.prepare(&q, offset), 10, |i| !seen.contains(u, i)))
            }
            ModelKind::ItemNeighbors => {
                let history = seen.row(u);
                as_json(top_k_neighbors(
                    &art.item_neighbors().unwrap(),
                    history,
                    None,
                    10,
                    |i| !seen.contains(u, i),
                ))
            }
        })
        .collect();
    Value::Array(users)
}

#[test]
fn frozen_v1_artifacts_open_and_score_the_same() {
    let dir = fixture_dir("v1");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    for name in ["embedding-int8.vtr", "item-neighbors.vtr"] {
        let art = Artifact::open(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = recommendations(&art);
        let want = &expected[name];
        for (u, (g, w)) in got
            .as_array()
            .unwrap()
            .iter()
            .zip(want.as_array().unwrap())
            .enumerate()
        {
            let (g, w) = (g.as_array().unwrap(), w.as_array().unwrap());
            assert_eq!(g.len(), w.len(), "{name} user {u}");
            for (a, b) in g.iter().zip(w) {
                assert_eq!(a["id"], b["id"], "{name} user {u}");
                let (sa, sb) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
                assert!(
                    (sa - sb).abs() <= 1e-5 * sb.abs().max(1.0),
                    "{name} user {u}: {sa} vs {sb}"
                );
            }
        }
    }
}

#[test]
#[ignore = "writes fixtures; run only when adding a format version"]
fn write_frozen_fixtures() {
    if std::env::var_os("VITRINE_WRITE_FIXTURES").is_none() {
        return;
    }
    let version = format!("v{}", vitrine_core::artifact::FORMAT_MAJOR);
    let dir = fixture_dir(&version);
    std::fs::create_dir_all(&dir).unwrap();
    let mut expected = serde_json::Map::new();
    for (name, parts) in [
        ("embedding-int8.vtr", embedding_model(&spec())),
        ("item-neighbors.vtr", neighbors_model(&spec())),
    ] {
        let path = dir.join(name);
        assert!(
            !path.exists(),
            "{} exists: frozen fixtures are never rewritten",
            path.display()
        );
        parts.write(&path).unwrap();
        expected.insert(
            name.into(),
            recommendations(&Artifact::open(&path).unwrap()),
        );
    }
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_vec_pretty(&Value::Object(expected)).unwrap(),
    )
    .unwrap();
}
