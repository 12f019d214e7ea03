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
