//! The artifact format end to end: round trips, errors that name the section,
//! and robustness against arbitrary corruption.

mod common;

use common::{rechecksum, section_range, small_model};
use proptest::prelude::*;
use vitrine_core::artifact::{ArtifactBytes, Origin, SectionKind};
use vitrine_core::synthetic::{SyntheticSpec, neighbors_model};
use vitrine_core::{Artifact, ArtifactError, ElementType, ModelKind};

fn open(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
    Artifact::from_bytes(bytes)
}

#[test]
fn embedding_round_trip_every_dtype() {
    for dtype in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let parts = small_model(dtype);
        let art = open(&parts.encode().unwrap()).unwrap();
        let meta = art.metadata();
        assert_eq!(
            (meta.kind, meta.dtype, meta.dims),
            (ModelKind::Embedding, dtype, 20)
        );
        assert_eq!((meta.n_users, meta.n_items), (40, 150));

        // Every id maps to its index and back; unknown ids are absent.
        let items = art.item_ids();
        for (i, id) in parts.item_ids.iter().enumerate() {
            assert_eq!(items.index_of(id), Some(i as u32));
            assert_eq!(items.id(i), id);
        }
        assert_eq!(items.index_of("SKU-99999-XL"), None);
        assert_eq!(art.user_ids().unwrap().index_of("user-39"), Some(39));

        // Factors come back within the element type's precision.
        let f = parts.factors.as_ref().unwrap();
        let m = art.item_factors().unwrap();
        let mut row = vec![0.0; m.padded_dims];
        for i in [0, 1, 15, 16, 149] {
            m.row_f32(i, &mut row);
            let orig = &f.items[i * 20..(i + 1) * 20];
            let max = orig.iter().fold(0.0f32, |a, x| a.max(x.abs()));
            let tol = match dtype {
                ElementType::F32 => 0.0,
                ElementType::F16 => max * 1e-3,
                ElementType::Int8 => max / 127.0 * 0.5 + 1e-6,
            };
            for (a, b) in row.iter().zip(orig) {
                assert!((a - b).abs() <= tol, "{dtype:?} item {i}: {a} vs {b}");
            }
            assert!(row[20..].iter().all(|&x| x == 0.0), "padding is zero");
            // The int8 fast path equals the element-by-element decoding.
            let mut signed = vec![0i8; m.padded_dims];
            if let Some(scale) = m.row_i8(i, &mut signed) {
                for d in 0..20 {
                    assert_eq!(row[d], f32::from(signed[d]) * scale, "item {i} dim {d}");
                }
            }
        }
        let u = art.user_factors().unwrap();
        let mut urow = vec![0.0; u.padded_dims];
        u.row_f32(3, &mut urow);
        if dtype == ElementType::F32 {
            assert_eq!(&urow[..20], &f.users[60..80]);
        }

        // Optional sections survive unchanged.
        assert_eq!(art.user_bias().unwrap(), f.user_bias.as_deref().unwrap());
        assert_eq!(
            &art.item_bias_padded().unwrap()[..150],
            f.item_bias.as_deref().unwrap()
        );
        assert_eq!(
            art.item_popularity().unwrap(),
            parts.item_popularity.as_deref().unwrap()
        );
        let seen = art.seen_items().unwrap();
        let want = parts.seen_items.as_ref().unwrap();
        for r in 0..40 {
            assert_eq!(
                seen.row(r),
                &want.indices[want.indptr[r] as usize..want.indptr[r + 1] as usize]
            );
        }
        assert_eq!(
            art.holdout().unwrap().nnz(),
            parts.holdout.as_ref().unwrap().indices.len()
        );
        assert_eq!(
            art.attribute_names().unwrap().index_of("tag=sale"),
            Some(13)
        );
        assert_eq!(art.item_attributes().unwrap().rows(), 150);
    }
}

#[test]
fn neighbors_round_trip() {
    let spec = SyntheticSpec {
        items: 300,
        ..common::small_spec(ElementType::F32)
    };
    let parts = neighbors_model(&spec);
    let art = open(&parts.encode().unwrap()).unwrap();
    assert_eq!(art.metadata().kind, ModelKind::ItemNeighbors);
    assert!(art.item_factors().is_none());
    let n = art.item_neighbors().unwrap();
    let want = parts.neighbors.as_ref().unwrap();
    assert_eq!(n.nnz(), want.indices.len());
    assert_eq!(
        n.row_weights(5).unwrap(),
        &want.weights.as_ref().unwrap()[want.indptr[5] as usize..want.indptr[6] as usize]
    );
}

#[test]
fn open_from_disk_as_sealed_snapshot_and_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.vtr");
    small_model(ElementType::Int8).write(&path).unwrap();
    let snap = Artifact::open(&path).unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(snap.origin(), Origin::SealedSnapshot);
    }
    // The snapshot does not change when the file is truncated or overwritten:
    // every page is still readable (a plain mapping would raise SIGBUS here).
    let before = snap.item_ids().id(149).to_string();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    vitrine_core::testing::exercise_views(&snap);
    std::fs::write(&path, b"garbage").unwrap();
    vitrine_core::testing::exercise_views(&snap);
    assert_eq!(snap.item_ids().id(149), before);
    assert_eq!(snap.metadata().n_items, 150);
    assert!(matches!(
        Artifact::open(&path),
        Err(ArtifactError::TooShort { .. })
    ));

    small_model(ElementType::F32).write(&path).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: nothing writes the file while this test holds it open.
    let mapped = unsafe { Artifact::open_in_place(&path) }.unwrap();
    assert_eq!(mapped.origin(), Origin::MappedInPlace);
    assert_eq!(mapped.metadata().n_users, 40);
}

#[test]
fn missing_file_names_the_path() {
    let err = Artifact::open(std::path::Path::new("/nonexistent/model.vtr")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.vtr"), "{err}");
}

#[test]
fn empty_and_tiny_inputs_are_typed_errors() {
    assert!(matches!(open(&[]), Err(ArtifactError::TooShort { .. })));
    assert!(matches!(
        ArtifactBytes::copy_of(&[]).map(|b| b.as_slice().len()),
        Ok(0)
    ));
    assert!(matches!(
        open(b"VTRMODEL"),
        Err(ArtifactError::TooShort { .. })
    ));
}

#[test]
fn header_errors() {
    let good = small_model(ElementType::F32).encode().unwrap();
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(open(&bad), Err(ArtifactError::BadMagic { .. })));

    let mut bad = good.clone();
    bad[8] = 2; // major version 2
    assert!(matches!(
        open(&bad),
        Err(ArtifactError::UnsupportedVersion { major: 2, .. })
    ));

    let mut bad = good.clone();
    bad.push(0);
    assert!(matches!(
        open(&bad),
        Err(ArtifactError::LengthMismatch { .. })
    ));
    assert!(matches!(
        open(&good[..good.len() - 1]),
        Err(ArtifactError::LengthMismatch { .. })
    ));

    // A newer minor version with an unknown extra section still opens.
    let mut newer = good.clone();
    newer[10] = 7;
    rechecksum(&mut newer);
    assert!(open(&newer).is_ok());
}

#[test]
fn overlapping_and_misaligned_sections_are_rejected() {
    let good = small_model(ElementType::F32).encode().unwrap();
    // Move the second section's offset back by 64 bytes: it would overlap.
    let mut bad = good.clone();
    let at = 64 + 32 + 8;
    let off = u64::from_le_bytes(bad[at..at + 8].try_into().unwrap());
    bad[at..at + 8].copy_from_slice(&(off - 64).to_le_bytes());
    rechecksum(&mut bad);
    let err = open(&bad).unwrap_err();
    assert!(err.to_string().contains("must start at"), "{err}");

    let mut bad = good.clone();
    bad[at..at + 8].copy_from_slice(&(off + 8).to_le_bytes());
    rechecksum(&mut bad);
    assert!(matches!(open(&bad), Err(ArtifactError::Header { .. })));
}

#[test]
fn checksum_mismatch_names_the_section() {
    let mut bad = small_model(ElementType::F32).encode().unwrap();
    let (off, len) = section_range(&bad, SectionKind::ItemFactors.code());
    bad[off + len / 2] ^= 0x40;
    match open(&bad) {
        Err(ArtifactError::SectionChecksum {
            section, offset, ..
        }) => {
            assert_eq!(section, "item_factors");
            assert_eq!(offset as usize, off);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

/// Corrupts a section's contents (keeping checksums valid) and expects the
/// semantic validator to name the section.
fn expect_section_error(
    bytes: &mut [u8],
    kind: SectionKind,
    patch: impl FnOnce(&mut [u8]),
    expect: &str,
) {
    let (off, len) = section_range(bytes, kind.code());
    patch(&mut bytes[off..off + len]);
    rechecksum(bytes);
    let err = open(bytes).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&kind.name()) && msg.contains(expect),
        "{kind:?}: {msg}"
    );
}

fn f32_at(section: &mut [u8], byte: usize, v: f32) {
    section[byte..byte + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn non_finite_factors_are_rejected() {
    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    expect_section_error(
        &mut bytes,
        SectionKind::UserFactors,
        |s| f32_at(s, 64 + 4 * 5, f32::NAN),
        "row 0, dim 5 is not finite",
    );
    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    expect_section_error(
        &mut bytes,
        SectionKind::ItemFactors,
        |s| f32_at(s, 64, f32::INFINITY),
        "not finite",
    );
    let mut bytes = small_model(ElementType::Int8).encode().unwrap();
    // The first scale of the int8 item matrix follows the data array.
    let data_len = 160 * 32;
    expect_section_error(
        &mut bytes,
        SectionKind::ItemFactors,
        |s| f32_at(s, 64 + data_len, f32::NAN),
        "scale",
    );
}

#[test]
fn int8_minus_128_and_dirty_padding_are_rejected() {
    let mut bytes = small_model(ElementType::Int8).encode().unwrap();
    expect_section_error(&mut bytes, SectionKind::ItemFactors, |s| s[64] = 0, "-128");
    let mut bytes = small_model(ElementType::Int8).encode().unwrap();
    // dims 20 padded to 32: dim 25 of user 0 is padding.
    expect_section_error(
        &mut bytes,
        SectionKind::UserFactors,
        |s| s[64 + 25] = 3,
        "padding",
    );
    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    expect_section_error(
        &mut bytes,
        SectionKind::ItemBias,
        |s| f32_at(s, 64 + 4 * 155, 1.0),
        "padding",
    );
}

#[test]
fn broken_csr_and_ids_are_rejected() {
    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    // Swap the first two column indices of seen row 0 (strictly increasing).
    expect_section_error(
        &mut bytes,
        SectionKind::SeenItems,
        |s| {
            let rows: usize = 40;
            let idx = 64 + ((rows + 1) * 8).div_ceil(64) * 64;
            let (a, b) = (s[idx..idx + 4].to_vec(), s[idx + 4..idx + 8].to_vec());
            s[idx..idx + 4].copy_from_slice(&b);
            s[idx + 4..idx + 8].copy_from_slice(&a);
        },
        "not strictly increasing",
    );
    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    // Make item id #1 equal to item id #0 ("SKU-00000-S" / "SKU-00000-M").
    expect_section_error(
        &mut bytes,
        SectionKind::ItemIds,
        |s| {
            let blob_len = u64::from_le_bytes(s[8..16].try_into().unwrap()) as usize;
            let n = s.len() - blob_len;
            s[n + 21] = b'S';
        },
        "appears twice",
    );
}

#[test]
fn metadata_must_agree_with_sections() {
    let mut parts = small_model(ElementType::F32);
    parts.metadata.name = "x".repeat(5);
    let mut bytes = parts.encode().unwrap();
    let (off, len) = section_range(&bytes, SectionKind::Metadata.code());
    let json = String::from_utf8(bytes[off + 64..off + len].to_vec()).unwrap();
    let patched = json.replace("\"n_items\":150", "\"n_items\":151");
    assert_eq!(patched.len(), json.len());
    bytes[off + 64..off + len].copy_from_slice(patched.as_bytes());
    rechecksum(&mut bytes);
    assert!(matches!(open(&bytes), Err(ArtifactError::Metadata(_))));
}

#[test]
fn writer_rejects_bad_parts() {
    let mut parts = small_model(ElementType::F32);
    parts.factors.as_mut().unwrap().items[7] = f32::NAN;
    let err = parts.encode().unwrap_err().to_string();
    assert!(err.contains("row 0, dim 7"), "{err}");

    let mut parts = small_model(ElementType::F16);
    parts.factors.as_mut().unwrap().users[0] = 1e6;
    assert!(
        parts
            .encode()
            .unwrap_err()
            .to_string()
            .contains("outside ±65504")
    );

    let mut parts = small_model(ElementType::F32);
    parts.item_ids[3] = parts.item_ids[2].clone();
    assert!(
        parts
            .encode()
            .unwrap_err()
            .to_string()
            .contains("appears twice")
    );

    let mut parts = small_model(ElementType::F32);
    parts.item_ids[3] = String::new();
    assert!(parts.encode().is_err());
}

#[test]
fn huge_values_that_would_overflow_scores_are_rejected() {
    // Finite, but a dot product of such values overflows to infinity.
    let mut parts = small_model(ElementType::F32);
    parts.factors.as_mut().unwrap().items[0] = 1e20;
    assert!(
        parts
            .encode()
            .unwrap_err()
            .to_string()
            .contains("outside ±65504")
    );

    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    expect_section_error(
        &mut bytes,
        SectionKind::UserFactors,
        |s| f32_at(s, 64, 1e20),
        "outside ±65504",
    );
    let mut bytes = small_model(ElementType::Int8).encode().unwrap();
    expect_section_error(
        &mut bytes,
        SectionKind::ItemFactors,
        |s| f32_at(s, 64 + 160 * 32, 1e30),
        "scale",
    );
    let mut bytes = small_model(ElementType::F32).encode().unwrap();
    expect_section_error(
        &mut bytes,
        SectionKind::UserBias,
        |s| f32_at(s, 64, -1e10),
        "outside ±65504",
    );
}

#[test]
fn atomic_write_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.vtr");
    small_model(ElementType::F16).write(&path).unwrap();
    small_model(ElementType::F32).write(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.vtr")]);
    assert_eq!(
        Artifact::open(&path).unwrap().metadata().dtype,
        ElementType::F32
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any single corrupted byte is caught (every byte is covered by a
    /// checksum or a must-be-zero rule).
    #[test]
    fn any_byte_flip_is_a_typed_error(pos in any::<prop::sample::Index>(), flip in 1u8..=255, int8 in any::<bool>()) {
        let dtype = if int8 { ElementType::Int8 } else { ElementType::F32 };
        let mut bytes = small_model(dtype).encode().unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(open(&bytes).is_err(), "flip at {i} went unnoticed");
    }

    #[test]
    fn any_truncation_is_a_typed_error(len in any::<prop::sample::Index>()) {
        let bytes = small_model(ElementType::F16).encode().unwrap();
        let cut = len.index(bytes.len());
        prop_assert!(open(&bytes[..cut]).is_err());
    }

    /// Corrupt contents with valid checksums reach the semantic validators:
    /// they must answer Ok or Err, never panic, and whatever opens must be
    /// safe to use.
    #[test]
    fn corrupt_contents_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), neighbors in any::<bool>()) {
        let parts = if neighbors { neighbors_model(&common::small_spec(ElementType::F32)) } else { small_model(ElementType::Int8) };
        let mut bytes = parts.encode().unwrap();
        for (pos, value) in edits {
            let i = pos.index(bytes.len());
            bytes[i] = value;
        }
        rechecksum(&mut bytes);
        if let Ok(art) = open(&bytes) {
            vitrine_core::testing::exercise_views(&art);
        }
    }
}

/// Inputs the fuzzers once crashed on (`core/tests/data/fuzz-regressions/`),
/// replayed the way `fuzz/fuzz_targets/artifact_contents.rs` does.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let mut bytes = std::fs::read(entry.unwrap().path()).unwrap();
        vitrine_core::testing::fix_checksums(&mut bytes);
        if let Ok(art) = open(&bytes) {
            vitrine_core::testing::exercise_views(&art);
        }
        count += 1;
    }
    assert!(count >= 1);
}

#[test]
fn parts_read_back_re_encode_to_the_same_bytes() {
    let mut models = Vec::new();
    for dtype in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let mut spec = SyntheticSpec::demo();
        spec.dtype = dtype;
        models.push(vitrine_core::synthetic::embedding_model(&spec));
    }
    models.push(neighbors_model(&SyntheticSpec::demo()));
    for parts in models {
        let bytes = parts.encode().unwrap();
        let back = vitrine_core::artifact::ModelParts::from_artifact(&open(&bytes).unwrap());
        assert_eq!(back.encode().unwrap(), bytes, "{:?}", parts.metadata.dtype);
    }
}
