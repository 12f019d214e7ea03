use std::path::PathBuf;

/// Everything that can be wrong with an artifact, naming where.
///
/// Offsets are absolute byte offsets in the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file is {len} bytes, shorter than the {needed}-byte header and section table")]
    TooShort { len: u64, needed: u64 },
    #[error("bad magic bytes {found:02x?}: not a Vitrine model artifact")]
    BadMagic { found: [u8; 8] },
    #[error(
        "format version {major}.{minor} is not supported (this build reads major version {supported})"
    )]
    UnsupportedVersion {
        major: u16,
        minor: u16,
        supported: u16,
    },
    #[error(
        "header declares a {declared}-byte file but it has {actual} bytes (truncated or appended to)"
    )]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("header at offset {offset}: {problem}")]
    Header { offset: u64, problem: String },
    #[error("section table checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    TableChecksum { stored: u32, computed: u32 },
    #[error(
        "section {section} at offset {offset}: checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
    )]
    SectionChecksum {
        section: String,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("section {section} at offset {offset}: {problem}")]
    Section {
        section: String,
        offset: u64,
        problem: String,
    },
    #[error("section {section} is missing: {why}")]
    MissingSection {
        section: &'static str,
        why: &'static str,
    },
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("cannot write artifact: {0}")]
    InvalidModel(String),
}

impl ArtifactError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
