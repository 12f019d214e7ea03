//! vitrine-quantize end to end: the real binary on generated models and
//! small committed fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;
use vitrine_core::artifact::ModelParts;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model, neighbors_model};
use vitrine_core::{Artifact, ElementType, ModelKind};
use vitrine_quantize::import::npy::encode_npy_f32;

fn quantize(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vitrine-quantize"))
        .args(args)
        .arg("--quiet")
        .output()
        .expect("run vitrine-quantize")
}

fn ok(args: &[&str]) -> String {
    let out = quantize(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs, expects failure, returns stderr; checks every `needles` is in it.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let out = quantize(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err:?}");
    }
    err
}

fn write_model(dir: &Path, name: &str, parts: &ModelParts) -> PathBuf {
    let p = dir.join(name);
    parts.write(&p).unwrap();
    p
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn int8_and_f16_keep_every_other_section_and_report_the_cost() {
    let dir = tempfile::tempdir().unwrap();
    let src_parts = embedding_model(&SyntheticSpec::demo());
    let src = write_model(dir.path(), "f32.vtr", &src_parts);
    for (dtype, min_overlap, max_ratio) in [("f16", 0.99, 0.55), ("int8", 0.9, 0.3)] {
        let out = dir.path().join(format!("{dtype}.vtr"));
        let rep = dir.path().join(format!("{dtype}.json"));
        let table = ok(&[
            "--in",
            s(&src),
            "--dtype",
            dtype,
            "--out",
            s(&out),
            "--report",
            s(&rep),
        ]);
        assert!(table.contains("overlap@10"), "{table}");
        let art = Artifact::open(&out).unwrap();
        assert_eq!(art.metadata().dtype.name(), dtype);
        let r = report(&rep);
        assert!(
            r["overlap@10"].as_f64().unwrap() >= min_overlap,
            "{dtype}: {r}"
        );
        assert!(r["size_after"].as_u64() < r["size_before"].as_u64());
        let ratio =
            r["factor_bytes_after"].as_f64().unwrap() / r["factor_bytes_before"].as_f64().unwrap();
        assert!(ratio <= max_ratio, "{dtype}: factor bytes ratio {ratio}");
        for key in ["ndcg@10", "recall@10"] {
            assert!(r["before"][key].is_f64() && r["after"][key].is_f64(), "{r}");
        }
        assert!(r["max_score_error"].as_f64().unwrap() > 0.0);
        // Everything but the factors is carried over unchanged.
        let mut back = ModelParts::from_artifact(&art);
        let (f, g) = (
            back.factors.take().unwrap(),
            src_parts.factors.clone().unwrap(),
        );
        assert_eq!((f.user_bias, f.item_bias), (g.user_bias, g.item_bias));
        let mut expect = src_parts.clone();
        expect.factors = None;
        assert_eq!(back.item_ids, expect.item_ids);
        assert_eq!(back.user_ids, expect.user_ids);
        assert_eq!(back.seen_items, expect.seen_items);
        assert_eq!(back.holdout, expect.holdout);
        assert_eq!(back.attributes, expect.attributes);
        assert_eq!(back.item_popularity, expect.item_popularity);
    }
}

#[test]
fn dims_projection_keeps_rankings_better_than_truncation_would() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_model(
        dir.path(),
        "m.vtr",
        &embedding_model(&SyntheticSpec::demo()),
    );
    let out = dir.path().join("d16.vtr");
    let rep = dir.path().join("d16.json");
    ok(&[
        "--in",
        s(&src),
        "--dims",
        "16",
        "--out",
        s(&out),
        "--report",
        s(&rep),
    ]);
    assert_eq!(Artifact::open(&out).unwrap().metadata().dims, 16);
    let r = report(&rep);
    assert_eq!(r["steps"][0], "project-dims");
    // The synthetic tastes live in a 12-category subspace, so 16 principal
    // directions keep nearly every top-10.
    assert!(r["overlap@10"].as_f64().unwrap() > 0.8, "{r}");
    fails(
        &["--in", s(&src), "--dims", "33", "--out", s(&out)],
        &["--dims 33", "1 ≤ D ≤ 32"],
    );
}

#[test]
fn distilling_an_item_neighbour_teacher_gives_an_embedding_student() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = SyntheticSpec::demo();
    spec.items = 400;
    spec.users = 300;
    let teacher = write_model(dir.path(), "t.vtr", &neighbors_model(&spec));
    let rep = |n: &str| dir.path().join(n);
    let small = rep("s8.vtr");
    ok(&[
        "--distill-from",
        s(&teacher),
        "--dims",
        "8",
        "--out",
        s(&small),
        "--report",
        s(&rep("s8.json")),
    ]);
    let art = Artifact::open(&small).unwrap();
    assert_eq!(
        (art.metadata().kind, art.metadata().dims),
        (ModelKind::Embedding, 8)
    );
    assert!(art.metadata().algorithm.starts_with("distilled-"));
    // Full rank reproduces the teacher's scores (up to the randomised SVD's
    // precision), so the error must shrink as the student grows.
    let full = rep("s400.vtr");
    ok(&[
        "--distill-from",
        s(&teacher),
        "--dims",
        "300",
        "--out",
        s(&full),
        "--report",
        s(&rep("s300.json")),
    ]);
    let (e8, e300) = (report(&rep("s8.json")), report(&rep("s300.json")));
    let err = |r: &serde_json::Value| r["max_score_error"].as_f64().unwrap();
    assert!(
        err(&e300) < 1e-2 && err(&e300) < err(&e8) / 10.0,
        "{} vs {}",
        err(&e300),
        err(&e8)
    );
    assert!(e300["overlap@10"].as_f64().unwrap() > 0.95, "{e300}");
    fails(
        &["--distill-from", s(&teacher), "--out", s(&full)],
        &["needs --dims"],
    );
    fails(
        &["--in", s(&teacher), "--dtype", "int8", "--out", s(&full)],
        &["no factors to quantise"],
    );
}

#[test]
fn catalogue_pruning_keeps_ids_consistent_in_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec::demo();
    for (name, parts) in [
        ("emb", embedding_model(&spec)),
        ("nbr", neighbors_model(&spec)),
    ] {
        let src = write_model(dir.path(), &format!("{name}.vtr"), &parts);
        // Keep every third item, plus an id the model does not know.
        let kept: Vec<&String> = parts.item_ids.iter().step_by(3).collect();
        let list = dir.path().join("in-stock.txt");
        let mut text: String = kept.iter().map(|id| format!("{id}\n")).collect();
        text.push_str("SKU-NEW-1\n");
        std::fs::write(&list, text).unwrap();
        let out = dir.path().join(format!("{name}.pruned.vtr"));
        let rep = dir.path().join("r.json");
        ok(&[
            "--in",
            s(&src),
            "--keep-items",
            s(&list),
            "--out",
            s(&out),
            "--report",
            s(&rep),
        ]);
        let notes = report(&rep)["notes"].to_string();
        assert!(
            notes.contains(&format!("kept {} of {}", kept.len(), parts.item_ids.len())),
            "{notes}"
        );
        assert!(notes.contains("1 allow-listed ids unknown"), "{notes}");
        let back = ModelParts::from_artifact(&Artifact::open(&out).unwrap());
        assert_eq!(
            back.item_ids,
            kept.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        let old = |new: u32| {
            parts
                .item_ids
                .iter()
                .position(|id| *id == back.item_ids[new as usize])
                .unwrap()
        };
        // Per-item data follows its id.
        if let (Some(a), Some(b)) = (&back.factors, &parts.factors) {
            let d = a.dims;
            for (new, row) in a.items.chunks(d).enumerate() {
                let o = old(new as u32);
                assert_eq!(row, &b.items[o * d..(o + 1) * d]);
                assert_eq!(
                    a.item_bias.as_ref().unwrap()[new],
                    b.item_bias.as_ref().unwrap()[o]
                );
            }
        }
        let pop = back.item_popularity.as_ref().unwrap();
        for (new, p) in pop.iter().enumerate() {
            assert_eq!(*p, parts.item_popularity.as_ref().unwrap()[old(new as u32)]);
        }
        // CSR columns point at the same ids as before.
        for (csr_new, csr_old) in [
            (&back.seen_items, &parts.seen_items),
            (&back.holdout, &parts.holdout),
        ] {
            let (n, o) = (csr_new.as_ref().unwrap(), csr_old.as_ref().unwrap());
            for u in 0..n.rows() {
                let new_ids: Vec<&str> = n.indices[n.indptr[u] as usize..n.indptr[u + 1] as usize]
                    .iter()
                    .map(|&i| back.item_ids[i as usize].as_str())
                    .collect();
                let old_ids: Vec<&str> = o.indices[o.indptr[u] as usize..o.indptr[u + 1] as usize]
                    .iter()
                    .map(|&i| parts.item_ids[i as usize].as_str())
                    .filter(|id| back.item_ids.iter().any(|k| k == id))
                    .collect();
                let (mut a, mut b) = (new_ids, old_ids);
                a.sort_unstable();
                b.sort_unstable();
                assert_eq!(a, b, "user {u}");
            }
        }
        if let Some(nb) = &back.neighbors {
            let on = parts.neighbors.as_ref().unwrap();
            for new in 0..nb.rows() {
                let o = old(new as u32);
                let w_new: Vec<(String, f32)> = (nb.indptr[new] as usize
                    ..nb.indptr[new + 1] as usize)
                    .map(|k| {
                        (
                            back.item_ids[nb.indices[k] as usize].clone(),
                            nb.weights.as_ref().unwrap()[k],
                        )
                    })
                    .collect();
                let mut w_old: Vec<(String, f32)> = (on.indptr[o] as usize
                    ..on.indptr[o + 1] as usize)
                    .map(|k| {
                        (
                            parts.item_ids[on.indices[k] as usize].clone(),
                            on.weights.as_ref().unwrap()[k],
                        )
                    })
                    .filter(|(id, _)| back.item_ids.contains(id))
                    .collect();
                let mut w_new = w_new;
                w_new.sort_by(|a, b| a.0.cmp(&b.0));
                w_old.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(w_new, w_old);
            }
        }
    }
    let src = dir.path().join("emb.vtr");
    let none = dir.path().join("none.txt");
    std::fs::write(&none, "SKU-NOPE\n").unwrap();
    fails(
        &[
            "--in",
            s(&src),
            "--keep-items",
            s(&none),
            "--out",
            s(&dir.path().join("x.vtr")),
        ],
        &["drop every item"],
    );
}

#[test]
fn inactive_items_are_dropped_by_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let parts = embedding_model(&SyntheticSpec::demo());
    let src = write_model(dir.path(), "m.vtr", &parts);
    let log = dir.path().join("log.csv");
    let mut text = String::from("user,item,rating,timestamp\n");
    for (k, id) in parts.item_ids.iter().take(50).enumerate() {
        // Items 0..25 last seen at t=100, 25..50 at t=2000.
        let t = if k < 25 { 100 } else { 2000 };
        text.push_str(&format!("user-1,{id},1,{t}\n"));
    }
    std::fs::write(&log, text).unwrap();
    let out = dir.path().join("o.vtr");
    ok(&[
        "--in",
        s(&src),
        "--inactive-since",
        "1000",
        "--log",
        s(&log),
        "--out",
        s(&out),
    ]);
    let back = ModelParts::from_artifact(&Artifact::open(&out).unwrap());
    assert_eq!(back.item_ids, parts.item_ids[25..50].to_vec());
}

/// Writes an implicit-style import: users.npy, items.npy and id files.
fn npy_fixture(dir: &Path, users: usize, items: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = vitrine_core::synthetic::SplitMix64::new(11);
    let u: Vec<f32> = (0..users * d).map(|_| rng.symmetric()).collect();
    let v: Vec<f32> = (0..items * d).map(|_| rng.symmetric()).collect();
    std::fs::write(dir.join("users.npy"), encode_npy_f32(users, d, &u)).unwrap();
    std::fs::write(dir.join("items.npy"), encode_npy_f32(items, d, &v)).unwrap();
    let ids = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}\n")).collect::<String>();
    std::fs::write(dir.join("users.txt"), ids("u", users)).unwrap();
    std::fs::write(dir.join("items.txt"), ids("i", items)).unwrap();
    (u, v)
}

#[test]
fn npy_import_serves_exactly_the_source_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (users, items, d) = (40, 300, 16);
    let (u, v) = npy_fixture(p, users, items, d);
    // Seen items: each user has seen items u..u+5; they must be excluded.
    let mut seen = String::from("user,item\n");
    for x in 0..users {
        for i in x..x + 5 {
            seen.push_str(&format!("u{x},i{i}\n"));
        }
    }
    std::fs::write(p.join("seen.csv"), seen).unwrap();
    let out = p.join("imported.vtr");
    let top = p.join("top.tsv");
    let base = vec![
        "--from-npy".to_string(),
        s(&p.join("users.npy")).to_string(),
        s(&p.join("items.npy")).to_string(),
        "--user-ids".into(),
        s(&p.join("users.txt")).to_string(),
        "--item-ids".into(),
        s(&p.join("items.txt")).to_string(),
    ];
    let run = |extra: &[&str]| -> Vec<String> {
        let mut a = base.clone();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let a = run(&[
        "--seen",
        s(&p.join("seen.csv")),
        "--out",
        s(&out),
        "--dump-topk",
        s(&top),
    ]);
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let art = Artifact::open(&out).unwrap();
    assert_eq!(art.metadata().dtype, ElementType::F32);
    let dumped = std::fs::read_to_string(&top).unwrap();
    for (x, line) in dumped.lines().enumerate() {
        let mut scored: Vec<(f32, usize)> = (0..items)
            .filter(|i| !(x..x + 5).contains(i))
            .map(|i| ((0..d).map(|k| u[x * d + k] * v[i * d + k]).sum(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let expect: Vec<String> = scored[..10].iter().map(|(_, i)| format!("i{i}")).collect();
        assert_eq!(line, format!("u{x}\t{}", expect.join(",")));
    }

    // Bad inputs: each names what is wrong.
    let bad = |file: &str, bytes: Vec<u8>, needles: &[&str]| {
        let path = p.join(file);
        let keep = std::fs::read(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let a = run(&["--out", s(&p.join("x.vtr"))]);
        fails(&a.iter().map(String::as_str).collect::<Vec<_>>(), needles);
        std::fs::write(&path, keep).unwrap();
    };
    let mut nan = u.clone();
    nan[3 * d + 2] = f32::NAN;
    bad(
        "users.npy",
        encode_npy_f32(users, d, &nan),
        &["users.npy", "row 3, column 2"],
    );
    bad(
        "items.npy",
        encode_npy_f32(items - 1, d, &v[..(items - 1) * d]),
        &["items: 299 factor rows but 300 ids"],
    );
    bad(
        "items.npy",
        encode_npy_f32(items, d / 2, &v[..items * d / 2]),
        &["16 dimensions, item factors 8"],
    );
    let mut fortran = encode_npy_f32(users, d, &u);
    let pos = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran[pos..pos + 5].copy_from_slice(b"True ");
    bad("users.npy", fortran, &["users.npy", "Fortran"]);
    let mut int = encode_npy_f32(users, d, &u);
    let pos = int.windows(3).position(|w| w == b"<f4").unwrap();
    int[pos..pos + 3].copy_from_slice(b"<i4");
    bad("users.npy", int, &["users.npy", "<i4"]);
    let dup: String = (0..items)
        .map(|i| {
            if i == 7 {
                "i3\n".to_string()
            } else {
                format!("i{i}\n")
            }
        })
        .collect();
    bad(
        "items.txt",
        dup.into_bytes(),
        &["\"i3\" appears twice (line 4 and line 8)"],
    );
}

#[test]
fn spark_parquet_import_matches_the_fixture_and_rejects_ragged_features() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spark.vtr");
    let top = dir.path().join("top.tsv");
    ok(&[
        "--from-parquet",
        s(&data.join("spark-als")),
        "--out",
        s(&out),
        "--dump-topk",
        s(&top),
    ]);
    let art = Artifact::open(&out).unwrap();
    assert_eq!(
        (
            art.metadata().n_users,
            art.metadata().n_items,
            art.metadata().dims
        ),
        (12, 30, 6)
    );
    let expected = std::fs::read_to_string(data.join("spark-als/expected.tsv")).unwrap();
    let got = std::fs::read_to_string(&top).unwrap();
    for (e, g) in expected.lines().zip(got.lines()) {
        let (eu, ei) = e.split_once('\t').unwrap();
        let (gu, gi) = g.split_once('\t').unwrap();
        assert_eq!(eu, gu);
        assert!(
            gi.starts_with(ei),
            "user {eu}: numpy top 3 {ei}, Vitrine top 10 {gi}"
        );
    }
    fails(
        &[
            "--from-parquet",
            s(&data.join("spark-als-bad")),
            "--out",
            s(&out),
        ],
        &[
            "part-00000-bad.snappy.parquet",
            "row 4",
            "3 features, expected 6",
        ],
    );
    fails(
        &["--from-parquet", s(dir.path()), "--out", s(&out)],
        &["userFactors"],
    );
}

#[test]
fn publish_writes_successive_versions_and_eval_reproduces_a_split() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (users, items, d) = (60, 80, 8);
    npy_fixture(p, users, items, d);
    // A log in the trainer's CSV layout; --protocol recbole splits it the
    // way the trainer would.
    let mut rng = vitrine_core::synthetic::SplitMix64::new(5);
    let mut log = String::from("user,item,rating,timestamp\n");
    for x in 0..users {
        for _ in 0..20 {
            log.push_str(&format!(
                "u{x},i{},{},{}\n",
                rng.below(items),
                1 + rng.below(5),
                rng.below(1000)
            ));
        }
    }
    std::fs::write(p.join("log.csv"), log).unwrap();
    let models = p.join("models/shop");
    let rep = p.join("r.json");
    for version in 1..=2 {
        ok(&[
            "--from-npy",
            s(&p.join("users.npy")),
            s(&p.join("items.npy")),
            "--user-ids",
            s(&p.join("users.txt")),
            "--item-ids",
            s(&p.join("items.txt")),
            "--dtype",
            "int8",
            "--eval",
            s(&p.join("log.csv")),
            "--protocol",
            "recbole",
            "--report",
            s(&rep),
            "--publish",
            s(&models),
        ]);
        let art = Artifact::open(&models.join(version.to_string()).join("model.vtr")).unwrap();
        assert_eq!(art.metadata().name, "shop");
    }
    let r = report(&rep);
    assert!(r["eval"].as_str().unwrap().contains("recbole"), "{r}");
    assert!(r["before"]["users"].as_u64().unwrap() > 0, "{r}");
    fails(
        &[
            "--in",
            s(&p.join("missing.vtr")),
            "--out",
            s(&p.join("o.vtr")),
        ],
        &["missing.vtr"],
    );
    fails(
        &["--in", s(&p.join("log.csv"))],
        &["--out FILE or --publish"],
    );
}
