//! Helpers shared by the core integration tests.
#![allow(dead_code)]

use vitrine_core::artifact::header::{ENTRY_LEN, HEADER_LEN, crc32};
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};
use vitrine_core::{ElementType, ModelParts};

pub fn small_spec(dtype: ElementType) -> SyntheticSpec {
    SyntheticSpec {
        name: "small".into(),
        users: 40,
        items: 150,
        dims: 20,
        dtype,
        categories: 5,
        seen_per_user: 6,
        holdout_per_user: 2,
        with_catalog: true,
        with_bias: true,
        seed: 7,
    }
}

pub fn small_model(dtype: ElementType) -> ModelParts {
    embedding_model(&small_spec(dtype))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (offset, length) of the section of `kind` code.
pub fn section_range(file: &[u8], kind: u32) -> (usize, usize) {
    let count = u32_at(file, 12) as usize;
    (0..count)
        .map(|i| HEADER_LEN + i * ENTRY_LEN)
        .find(|&at| u32_at(file, at) == kind)
        .map(|at| {
            (
                u64_at(file, at + 8) as usize,
                u64_at(file, at + 16) as usize,
            )
        })
        .expect("section present")
}

/// Recomputes every section checksum and the table checksum, so a test can
/// corrupt a section's *contents* and reach the semantic validators.
pub fn rechecksum(file: &mut [u8]) {
    // A corrupted count may claim more entries than fit: fix those that do.
    let count = (u32_at(file, 12) as usize).min((file.len() - HEADER_LEN) / ENTRY_LEN);
    for i in 0..count {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let (off, len) = (
            u64_at(file, at + 8) as usize,
            u64_at(file, at + 16) as usize,
        );
        if off.checked_add(len).is_some_and(|end| end <= file.len()) {
            let crc = crc32(&file[off..off + len]);
            file[at + 24..at + 28].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let table_end = HEADER_LEN + count * ENTRY_LEN;
    let mut h = crc32fast_hasher();
    h.update(&file[..24]);
    h.update(&file[HEADER_LEN..table_end.min(file.len())]);
    let crc = h.finalize();
    file[24..28].copy_from_slice(&crc.to_le_bytes());
}

fn crc32fast_hasher() -> crc32fast::Hasher {
    crc32fast::Hasher::new()
}
