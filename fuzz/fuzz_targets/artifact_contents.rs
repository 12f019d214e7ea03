//! Like `artifact_open`, but repairs every checksum first, so mutations reach
//! the validators of section contents (ids, matrices, CSR, metadata) instead
//! of stopping at a checksum mismatch.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    vitrine_core::testing::fix_checksums(&mut bytes);
    if let Ok(art) = vitrine_core::Artifact::from_bytes(&bytes) {
        vitrine_core::testing::exercise_views(&art);
    }
});
