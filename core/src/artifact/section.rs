//! The shape every section shares (docs/FORMAT.md, "Sections"): a 64-byte
//! fixed part, then arrays, each starting at a 64-byte boundary relative to the
//! section start, zero bytes between them, nothing after the last one.
//! [`SectionBuilder`] writes that shape; [`SectionCursor`] reads and checks it.

use super::ArtifactError;
use super::header::{ALIGN, SectionEntry, align_up};
use bytemuck::Pod;
use std::ops::Range;

pub const FIXED_LEN: usize = 64;

/// Writes one section.
#[derive(Debug)]
pub struct SectionBuilder {
    bytes: Vec<u8>,
}

impl SectionBuilder {
    /// Starts a section whose fixed part holds `fields` (little-endian u64/u32
    /// values already encoded), zero-padded to 64 bytes.
    pub fn new(fixed: &[u8]) -> Self {
        assert!(fixed.len() <= FIXED_LEN);
        let mut bytes = fixed.to_vec();
        bytes.resize(FIXED_LEN, 0);
        Self { bytes }
    }

    /// Appends an array at the next 64-byte boundary.
    pub fn array<T: Pod>(&mut self, values: &[T]) -> &mut Self {
        self.bytes.resize(align_up(self.bytes.len()), 0);
        self.bytes.extend_from_slice(bytemuck::cast_slice(values));
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Little-endian field writer for fixed parts.
#[derive(Debug, Default)]
pub struct Fixed(pub Vec<u8>);

impl Fixed {
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// Reads one section of a validated-bounds file. Array ranges it returns are
/// absolute byte ranges in the file, aligned for their element type.
#[derive(Debug)]
pub struct SectionCursor<'a> {
    file: &'a [u8],
    entry: SectionEntry,
    /// Position relative to the section start.
    pos: usize,
}

impl<'a> SectionCursor<'a> {
    pub fn new(file: &'a [u8], entry: SectionEntry) -> Result<Self, ArtifactError> {
        let cursor = Self {
            file,
            entry,
            pos: FIXED_LEN,
        };
        if (entry.length as usize) < FIXED_LEN {
            return Err(cursor.error(
                0,
                format!(
                    "{} bytes is shorter than the 64-byte fixed part",
                    entry.length
                ),
            ));
        }
        Ok(cursor)
    }

    pub fn section_name(&self) -> String {
        self.entry.kind.name()
    }

    /// An error naming this section and the absolute offset `rel` bytes into it.
    pub fn error(&self, rel: usize, problem: impl Into<String>) -> ArtifactError {
        ArtifactError::Section {
            section: self.entry.kind.name(),
            offset: self.entry.offset + rel as u64,
            problem: problem.into(),
        }
    }

    /// An error at an absolute file offset inside this section.
    pub fn error_abs(&self, abs: usize, problem: impl Into<String>) -> ArtifactError {
        ArtifactError::Section {
            section: self.entry.kind.name(),
            offset: abs as u64,
            problem: problem.into(),
        }
    }

    fn section(&self) -> &'a [u8] {
        let start = self.entry.offset as usize;
        &self.file[start..start + self.entry.length as usize]
    }

    pub fn u64_at(&self, rel: usize) -> u64 {
        u64::from_le_bytes(self.section()[rel..rel + 8].try_into().expect("8 bytes"))
    }

    pub fn u32_at(&self, rel: usize) -> u32 {
        u32::from_le_bytes(self.section()[rel..rel + 4].try_into().expect("4 bytes"))
    }

    /// Checks that fixed-part bytes from `from` to 64 are zero (reserved).
    pub fn reserved_from(&self, from: usize) -> Result<(), ArtifactError> {
        match self.section()[from..FIXED_LEN].iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(i) => Err(self.error(from + i, "reserved byte is not zero")),
        }
    }

    /// The next array of `count` elements of `T`: checks the padding before it
    /// and that it fits, returns its absolute byte range in the file.
    pub fn array<T: Pod>(&mut self, count: u64, what: &str) -> Result<Range<usize>, ArtifactError> {
        let start = align_up(self.pos);
        let section = self.section();
        if start > section.len() {
            return Err(self.error(self.pos, format!("ends before the {what} array")));
        }
        if let Some(i) = section[self.pos..start].iter().position(|&b| b != 0) {
            return Err(self.error(
                self.pos + i,
                format!("padding before the {what} array is not zero"),
            ));
        }
        let bytes = count
            .checked_mul(std::mem::size_of::<T>() as u64)
            .filter(|&b| b <= (section.len() - start) as u64)
            .ok_or_else(|| {
                self.error(
                    start,
                    format!("{what} array of {count} elements does not fit in the section"),
                )
            })? as usize;
        self.pos = start + bytes;
        let abs = self.entry.offset as usize + start;
        debug_assert_eq!(abs % ALIGN, 0);
        Ok(abs..abs + bytes)
    }

    /// Checks that the section ends exactly after the last array.
    pub fn finish(self) -> Result<(), ArtifactError> {
        let len = self.entry.length as usize;
        if self.pos != len {
            return Err(self.error(
                self.pos,
                format!(
                    "{} unexpected bytes at the end of the section",
                    len - self.pos
                ),
            ));
        }
        Ok(())
    }
}

/// Reinterprets a validated, aligned byte range of the file as a typed slice.
/// Infallible after validation: ranges come from [`SectionCursor::array`],
/// which aligns them to 64 bytes in a file that starts 64-byte aligned.
pub fn cast<T: Pod>(file: &[u8], range: Range<usize>) -> &[T] {
    bytemuck::cast_slice(&file[range])
}
