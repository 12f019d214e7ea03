//! Runs the real `vitrine-inspect` binary.

mod common;

use std::process::Command;
use vitrine_core::ElementType;

fn inspect(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine-inspect"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn prints_verifies_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.vtr");
    common::small_model(ElementType::Int8).write(&path).unwrap();
    let p = path.to_str().unwrap();

    let (code, out, _) = inspect(&[p]);
    assert_eq!(code, 0);
    assert!(
        out.contains("embedding, 20 dims of int8, 40 users × 150 items"),
        "{out}"
    );
    assert!(
        out.contains("item_factors") && out.contains("status     valid"),
        "{out}"
    );

    let (code, out, _) = inspect(&["--verify", p]);
    assert_eq!(code, 0);
    assert!(out.contains(": ok (embedding int8 v1.0)"), "{out}");

    let (code, out, _) = inspect(&["--json", p]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["metadata"]["n_items"], 150);
    assert_eq!(v["sections"].as_array().unwrap().len(), 12);
}

#[test]
fn verify_fails_with_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.vtr");
    let mut bytes = common::small_model(ElementType::F32).encode().unwrap();
    let (off, len) = common::section_range(
        &bytes,
        vitrine_core::artifact::SectionKind::UserFactors.code(),
    );
    bytes[off + len - 1] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();

    let (code, out, err) = inspect(&["--verify", p]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("user_factors") && err.contains("checksum mismatch"),
        "{err}"
    );

    // Without --verify it still shows what it can, marking the bad section.
    let (code, out, _) = inspect(&[p]);
    assert_eq!(code, 0);
    assert!(out.contains("MISMATCH") && out.contains("INVALID"), "{out}");

    std::fs::write(
        &path,
        b"not an artifact at all, just some text that is long enough for a header....",
    )
    .unwrap();
    let (code, _, err) = inspect(&["--verify", p]);
    assert_eq!(code, 1);
    assert!(err.contains("bad magic"), "{err}");

    let (code, _, err) = inspect(&["--verify", "/no/such/file.vtr"]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/file.vtr"), "{err}");

    let (code, _, _) = inspect(&["--bogus"]);
    assert_eq!(code, 2);
}

#[test]
fn recommends_for_a_user_without_seen_items() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.vtr");
    let parts = common::small_model(ElementType::Int8);
    parts.write(&path).unwrap();
    let p = path.to_str().unwrap();
    let (code, out, _) = inspect(&["--user", "user-3", "--k", "4", "--json", p]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let seen = parts.seen_items.as_ref().unwrap();
    let seen_ids: Vec<&str> = seen.indices[seen.indptr[3] as usize..seen.indptr[4] as usize]
        .iter()
        .map(|&i| parts.item_ids[i as usize].as_str())
        .collect();
    assert!(
        items
            .iter()
            .all(|it| !seen_ids.contains(&it["id"].as_str().unwrap()))
    );
    let scores: Vec<f64> = items
        .iter()
        .map(|it| it["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));

    let (code, _, err) = inspect(&["--user", "nobody", p]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown user \"nobody\""), "{err}");
    let (code, _, _) = inspect(&["--k", "0", p]);
    assert_eq!(code, 2);
}
