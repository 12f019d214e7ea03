//! Any bytes given to the artifact reader yield a typed error or a valid
//! artifact whose every view works: never a panic, never UB.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run artifact_open fuzz/seeds -- -max_total_time=60`
//! (seeds: the frozen v1 artifacts, copied by .ci/run).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(art) = vitrine_core::Artifact::from_bytes(data) {
        vitrine_core::testing::exercise_views(&art);
    }
});
