//! Where an open artifact's bytes live. The only module that maps files.
//!
//! # Why a snapshot (and how SIGBUS is ruled out)
//! A file mapped with `mmap` is shared with whoever else has it open: if ops
//! truncate it, every read of a page past the new end raises SIGBUS and kills
//! the process; if they overwrite it in place, validated bytes change under us.
//! So [`ArtifactBytes::snapshot`] (what the server and tools use) never maps the
//! published file itself. On Linux it copies the file (in the kernel,
//! `copy_file_range`/`sendfile`) into an anonymous `memfd` and *seals* it
//! against writing, shrinking and growing (`F_SEAL_WRITE | F_SEAL_SHRINK |
//! F_SEAL_GROW | F_SEAL_SEAL`), then maps that. The kernel refuses any change
//! to a sealed memfd, so the mapping can neither shrink nor change: no SIGBUS,
//! no torn reads, whatever happens to the file on disk. The memfd has no name
//! in any directory; it is freed when the last mapping goes. Elsewhere (or if
//! memfd is refused) the file is read into private anonymous memory, with the
//! same guarantee. Cost: one copy at open (measured in docs/BENCHMARKS.md) and
//! the artifact's size in RAM (the page cache of the file can be dropped).
//!
//! [`ArtifactBytes::map_in_place`] maps the file directly, for callers that can
//! promise the file is immutable while open; it is `unsafe` for that reason.
//!
//! # Safety
//! - `Mmap::map` on the sealed memfd: sound because the seals make the file
//!   contents and size immutable for the mapping's lifetime, and nothing else
//!   holds a writable mapping (sealing WRITE would fail if one existed).
//! - `Mmap::map` in `map_in_place`: sound only under the caller's promise,
//!   passed up as `unsafe fn`.
#![allow(unsafe_code)]

use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// How the bytes were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Copied into a sealed memfd (Linux).
    SealedSnapshot,
    /// Copied into private anonymous memory.
    PrivateCopy,
    /// The file itself, mapped (caller promised immutability).
    MappedInPlace,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::SealedSnapshot => "sealed-snapshot",
            Origin::PrivateCopy => "private-copy",
            Origin::MappedInPlace => "mapped-in-place",
        }
    }
}

/// Read-only, page-aligned bytes of an artifact that cannot change or shrink
/// while this value lives.
#[derive(Debug)]
pub struct ArtifactBytes {
    /// `None` for an empty file (a zero-length mapping is not allowed).
    map: Option<Mmap>,
    origin: Origin,
}

impl ArtifactBytes {
    /// An immutable private snapshot of the file at `path` (see module docs).
    pub fn snapshot(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        #[cfg(target_os = "linux")]
        if let Ok(sealed) = sealed_snapshot(&file) {
            return Ok(sealed);
        }
        private_copy(file)
    }

    /// Maps the file itself, without copying.
    ///
    /// # Safety
    /// The caller promises that nobody truncates or writes the file while the
    /// returned value (or anything borrowed from it) lives. Truncation would
    /// raise SIGBUS on access; a write would change bytes that were validated.
    pub unsafe fn map_in_place(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Self {
                map: None,
                origin: Origin::MappedInPlace,
            });
        }
        // SAFETY: the caller promised the file stays unchanged (see above).
        let map = unsafe { Mmap::map(&file)? };
        Ok(Self {
            map: Some(map),
            origin: Origin::MappedInPlace,
        })
    }

    /// A private, page-aligned copy of `bytes` (tests, fuzzing, in-memory models).
    pub fn copy_of(bytes: &[u8]) -> io::Result<Self> {
        if bytes.is_empty() {
            return Ok(Self {
                map: None,
                origin: Origin::PrivateCopy,
            });
        }
        let mut map = MmapOptions::new().len(bytes.len()).map_anon()?;
        map.copy_from_slice(bytes);
        Ok(Self {
            map: Some(map.make_read_only()?),
            origin: Origin::PrivateCopy,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }
}

fn private_copy(mut file: File) -> io::Result<ArtifactBytes> {
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to load"))?;
    if len == 0 {
        return Ok(ArtifactBytes {
            map: None,
            origin: Origin::PrivateCopy,
        });
    }
    let mut map = MmapOptions::new().len(len).map_anon()?;
    // A file that shrinks meanwhile fails here with UnexpectedEof; one that
    // grows is caught by the header's length check.
    file.read_exact(&mut map)?;
    Ok(ArtifactBytes {
        map: Some(map.make_read_only()?),
        origin: Origin::PrivateCopy,
    })
}

#[cfg(target_os = "linux")]
fn sealed_snapshot(source: &File) -> io::Result<ArtifactBytes> {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
    let fd = memfd_create(
        c"vitrine-artifact",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut copy = File::from(fd);
    let mut source = source;
    let len = io::copy(&mut source, &mut copy)?;
    fcntl_add_seals(
        &copy,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    if len == 0 {
        return Ok(ArtifactBytes {
            map: None,
            origin: Origin::SealedSnapshot,
        });
    }
    // SAFETY: `copy` is sealed against writes, shrinking and growing, and no
    // writable mapping of it exists; its bytes are immutable while mapped.
    let map = unsafe { Mmap::map(&copy)? };
    Ok(ArtifactBytes {
        map: Some(map),
        origin: Origin::SealedSnapshot,
    })
}
