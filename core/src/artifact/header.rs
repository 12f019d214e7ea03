//! The fixed file header and the section table (docs/FORMAT.md, "File layout").

use super::ArtifactError;

pub const MAGIC: [u8; 8] = *b"VTRMODEL";
pub const FORMAT_MAJOR: u16 = 1;
pub const FORMAT_MINOR: u16 = 0;
pub const HEADER_LEN: usize = 64;
pub const ENTRY_LEN: usize = 32;
pub const MAX_SECTIONS: u32 = 64;
/// Every section, and every array inside a section, starts at a multiple of this.
pub const ALIGN: usize = 64;

/// Kinds of section. The numbers are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionKind {
    Metadata,
    UserIds,
    ItemIds,
    UserFactors,
    ItemFactors,
    UserBias,
    ItemBias,
    ItemNeighbors,
    SeenItems,
    ItemPopularity,
    AttributeNames,
    ItemAttributes,
    Holdout,
    /// A kind this reader does not know (from a newer minor version): its
    /// bounds and checksum are verified, its contents ignored.
    Unknown(u32),
}

impl SectionKind {
    pub const KNOWN: [SectionKind; 13] = [
        SectionKind::Metadata,
        SectionKind::UserIds,
        SectionKind::ItemIds,
        SectionKind::UserFactors,
        SectionKind::ItemFactors,
        SectionKind::UserBias,
        SectionKind::ItemBias,
        SectionKind::ItemNeighbors,
        SectionKind::SeenItems,
        SectionKind::ItemPopularity,
        SectionKind::AttributeNames,
        SectionKind::ItemAttributes,
        SectionKind::Holdout,
    ];

    pub fn code(self) -> u32 {
        match self {
            SectionKind::Metadata => 1,
            SectionKind::UserIds => 2,
            SectionKind::ItemIds => 3,
            SectionKind::UserFactors => 4,
            SectionKind::ItemFactors => 5,
            SectionKind::UserBias => 6,
            SectionKind::ItemBias => 7,
            SectionKind::ItemNeighbors => 8,
            SectionKind::SeenItems => 9,
            SectionKind::ItemPopularity => 10,
            SectionKind::AttributeNames => 11,
            SectionKind::ItemAttributes => 12,
            SectionKind::Holdout => 13,
            SectionKind::Unknown(code) => code,
        }
    }

    pub fn from_code(code: u32) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|k| k.code() == code)
            .unwrap_or(SectionKind::Unknown(code))
    }

    pub fn name(self) -> String {
        match self {
            SectionKind::Metadata => "metadata".into(),
            SectionKind::UserIds => "user_ids".into(),
            SectionKind::ItemIds => "item_ids".into(),
            SectionKind::UserFactors => "user_factors".into(),
            SectionKind::ItemFactors => "item_factors".into(),
            SectionKind::UserBias => "user_bias".into(),
            SectionKind::ItemBias => "item_bias".into(),
            SectionKind::ItemNeighbors => "item_neighbors".into(),
            SectionKind::SeenItems => "seen_items".into(),
            SectionKind::ItemPopularity => "item_popularity".into(),
            SectionKind::AttributeNames => "attribute_names".into(),
            SectionKind::ItemAttributes => "item_attributes".into(),
            SectionKind::Holdout => "holdout".into(),
            SectionKind::Unknown(code) => format!("unknown({code})"),
        }
    }
}

/// One row of the section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    pub kind: SectionKind,
    pub offset: u64,
    pub length: u64,
    pub checksum: u32,
}

pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Writes the header and table for sections laid out as given.
pub fn encode_header(entries: &[SectionEntry], file_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&file_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // table checksum, filled below
    out.resize(HEADER_LEN, 0);
    for e in entries {
        out.extend_from_slice(&e.kind.code().to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.checksum.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    let crc = table_checksum(&out);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// CRC-32 of header bytes 0..24 followed by the whole section table.
fn table_checksum(header_and_table: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header_and_table[..24]);
    h.update(&header_and_table[HEADER_LEN..]);
    h.finalize()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and checks the header and section table: magic, version, length,
/// table checksum, reserved bytes, alignment, bounds, overlaps, duplicates and
/// the zero padding between sections. Section contents are checked later.
pub fn decode_header(file: &[u8]) -> Result<Vec<SectionEntry>, ArtifactError> {
    let len = file.len() as u64;
    if file.len() < HEADER_LEN {
        return Err(ArtifactError::TooShort {
            len,
            needed: HEADER_LEN as u64,
        });
    }
    let magic: [u8; 8] = file[..8].try_into().expect("8 bytes");
    if magic != MAGIC {
        return Err(ArtifactError::BadMagic { found: magic });
    }
    let (major, minor) = (u16_at(file, 8), u16_at(file, 10));
    if major != FORMAT_MAJOR {
        return Err(ArtifactError::UnsupportedVersion {
            major,
            minor,
            supported: FORMAT_MAJOR,
        });
    }
    let count = u32_at(file, 12);
    let header_err = |offset: u64, problem: String| ArtifactError::Header { offset, problem };
    if count == 0 || count > MAX_SECTIONS {
        return Err(header_err(
            12,
            format!("section count {count} is outside 1..={MAX_SECTIONS}"),
        ));
    }
    let table_end = HEADER_LEN + count as usize * ENTRY_LEN;
    if file.len() < table_end {
        return Err(ArtifactError::TooShort {
            len,
            needed: table_end as u64,
        });
    }
    let declared = u64_at(file, 16);
    if declared != len {
        return Err(ArtifactError::LengthMismatch {
            declared,
            actual: len,
        });
    }
    let stored = u32_at(file, 24);
    let computed = table_checksum(&file[..table_end]);
    if stored != computed {
        return Err(ArtifactError::TableChecksum { stored, computed });
    }
    if let Some(i) = file[28..HEADER_LEN].iter().position(|&b| b != 0) {
        return Err(header_err(
            28 + i as u64,
            "reserved header byte is not zero".into(),
        ));
    }

    let mut entries = Vec::with_capacity(count as usize);
    let mut expected_start = align_up(table_end) as u64;
    let mut gap_start = table_end as u64;
    for i in 0..count as usize {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let e = &file[at..at + ENTRY_LEN];
        let kind = SectionKind::from_code(u32_at(e, 0));
        let entry = SectionEntry {
            kind,
            offset: u64_at(e, 8),
            length: u64_at(e, 16),
            checksum: u32_at(e, 24),
        };
        let at = at as u64;
        if kind.code() == 0 {
            return Err(header_err(
                at,
                format!("table entry {i} has section kind 0"),
            ));
        }
        if u32_at(e, 4) != 0 || u32_at(e, 28) != 0 {
            return Err(header_err(
                at,
                format!(
                    "table entry {i} ({}) has non-zero reserved bytes",
                    kind.name()
                ),
            ));
        }
        if entries.iter().any(|p: &SectionEntry| p.kind == kind) {
            return Err(header_err(
                at,
                format!("section {} appears twice", kind.name()),
            ));
        }
        // Sections are laid out in table order, each at the next 64-byte
        // boundary: this one rule rules out overlaps, gaps and misalignment.
        if entry.offset != expected_start {
            return Err(header_err(
                at + 8,
                format!(
                    "section {} starts at {} but must start at {} (aligned, in table order, no overlap)",
                    kind.name(),
                    entry.offset,
                    expected_start
                ),
            ));
        }
        let end = entry
            .offset
            .checked_add(entry.length)
            .filter(|&end| end <= len)
            .ok_or_else(|| {
                header_err(
                    at + 16,
                    format!(
                        "section {} ({} bytes at {}) runs past the end of the file",
                        kind.name(),
                        entry.length,
                        entry.offset
                    ),
                )
            })?;
        check_zero_gap(file, gap_start, entry.offset)?;
        gap_start = end;
        expected_start = align_up(end as usize) as u64;
        entries.push(entry);
    }
    if gap_start != len {
        return Err(header_err(
            gap_start,
            format!(
                "{} unexpected bytes after the last section",
                len - gap_start
            ),
        ));
    }
    Ok(entries)
}

fn check_zero_gap(file: &[u8], from: u64, to: u64) -> Result<(), ArtifactError> {
    match file[from as usize..to as usize]
        .iter()
        .position(|&b| b != 0)
    {
        None => Ok(()),
        Some(i) => Err(ArtifactError::Header {
            offset: from + i as u64,
            problem: "padding byte between sections is not zero".into(),
        }),
    }
}
