//! Helpers shared by the core integration tests.
#![allow(dead_code)]

use vitrine_core::artifact::header::{ENTRY_LEN, HEADER_LEN};
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

/// Recomputes every checksum (see `vitrine_core::testing::fix_checksums`).
pub fn rechecksum(file: &mut [u8]) {
    vitrine_core::testing::fix_checksums(file);
}
