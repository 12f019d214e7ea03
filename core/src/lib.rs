//! Vitrine's core library, used by every binary: the model artifact format and
//! its zero-copy reader, SIMD scoring kernels, top-K catalog scans, id maps and
//! seeded synthetic models.
//!
//! See `docs/ARCHITECTURE.md` for how the pieces fit and `docs/FORMAT.md` for
//! the artifact byte layout.

#[cfg(target_endian = "big")]
compile_error!(
    "Vitrine artifacts are little-endian and read zero-copy; big-endian hosts are not supported"
);

pub mod artifact;
pub mod csr;
pub mod dataset;
pub mod evaluate;
pub mod ids;
pub mod inspect;
pub mod matrix;
pub mod metrics;
pub mod publish;
pub mod simd;

pub use artifact::{Artifact, ArtifactError, ModelKind, ModelMetadata, ModelParts};
pub use matrix::ElementType;
pub mod scan;
pub mod split;
pub mod synthetic;
#[doc(hidden)]
pub mod testing;

/// The current UTC time as RFC 3339 (`2026-12-04T16:58:11Z`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
