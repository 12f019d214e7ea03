//! External string ids ↔ dense indices, looked up zero-copy in the mapped file.
//!
//! An id table (docs/FORMAT.md, "Id table") stores the ids' bytes in index
//! order plus an open-addressing hash table of `index + 1` values (0 = empty),
//! FNV-1a 64 hashed and linearly probed. Nothing is built at load time: a
//! lookup hashes the key and compares a few byte strings in the mapped file.

use crate::artifact::ArtifactError;
use crate::artifact::section::{Fixed, SectionBuilder, SectionCursor, cast};
use std::ops::Range;

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// FNV-1a, 64-bit: tiny, well specified, easy to reimplement in any language.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Encodes an id table section. Ids must be unique, non-empty, at most
/// [`MAX_ID_LEN`] bytes.
pub fn encode_id_table<S: AsRef<str>>(ids: &[S]) -> Result<Vec<u8>, ArtifactError> {
    let n = ids.len();
    let slots_len = (2 * n).max(2).next_power_of_two();
    let mut offsets = Vec::with_capacity(n + 1);
    let mut blob = Vec::new();
    let mut slots = vec![0u32; slots_len];
    offsets.push(0u64);
    for (index, id) in ids.iter().enumerate() {
        let id = id.as_ref().as_bytes();
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(ArtifactError::InvalidModel(format!(
                "id #{index} is {} bytes; ids must be 1..={MAX_ID_LEN} bytes",
                id.len()
            )));
        }
        blob.extend_from_slice(id);
        offsets.push(blob.len() as u64);
        let mut slot = fnv1a64(id) as usize & (slots_len - 1);
        loop {
            match slots[slot] {
                0 => break,
                other => {
                    let j = other as usize - 1;
                    let existing = &blob[offsets[j] as usize..offsets[j + 1] as usize];
                    if existing == id {
                        return Err(ArtifactError::InvalidModel(format!(
                            "id {:?} appears twice (#{j} and #{index})",
                            String::from_utf8_lossy(id)
                        )));
                    }
                    slot = (slot + 1) & (slots_len - 1);
                }
            }
        }
        slots[slot] = u32::try_from(index + 1)
            .map_err(|_| ArtifactError::InvalidModel("more than 2^32 - 2 ids".into()))?;
    }
    let fixed = Fixed::default()
        .u64(n as u64)
        .u64(blob.len() as u64)
        .u64(slots_len as u64);
    Ok(SectionBuilder::new(&fixed.0)
        .array(&offsets)
        .array(&slots)
        .array(&blob)
        .finish())
}

/// Where an id table's arrays are in the file.
#[derive(Clone, Debug)]
pub struct IdTableLayout {
    offsets: Range<usize>,
    slots: Range<usize>,
    blob: Range<usize>,
}

impl IdTableLayout {
    pub fn len(&self) -> usize {
        self.offsets.len() / 8 - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Validates an id table once: monotonic offsets, UTF-8 ids, slots in range,
/// and every id found at its own index (which rules out duplicates and
/// unreachable ids, and guarantees empty slots so probing terminates).
pub fn parse_id_table(
    file: &[u8],
    mut cur: SectionCursor<'_>,
) -> Result<IdTableLayout, ArtifactError> {
    let (count, blob_len, slots_len) = (cur.u64_at(0), cur.u64_at(8), cur.u64_at(16));
    cur.reserved_from(24)?;
    if count >= u64::from(u32::MAX) {
        return Err(cur.error(0, format!("{count} ids is more than the format allows")));
    }
    if !slots_len.is_power_of_two() || slots_len <= count {
        return Err(cur.error(
            16,
            format!(
                "hash table size {slots_len} must be a power of two above the id count {count}"
            ),
        ));
    }
    let offsets_r = cur.array::<u64>(count + 1, "offsets")?;
    let slots_r = cur.array::<u32>(slots_len, "hash slots")?;
    let blob_r = cur.array::<u8>(blob_len, "id bytes")?;
    let offsets_at = offsets_r.start;
    let slots_at = slots_r.start;
    let layout = IdTableLayout {
        offsets: offsets_r,
        slots: slots_r,
        blob: blob_r,
    };

    let offsets: &[u64] = cast(file, layout.offsets.clone());
    if offsets[0] != 0 || offsets[count as usize] != blob_len {
        return Err(cur.error(
            64,
            "offsets must start at 0 and end at the id bytes' length",
        ));
    }
    for (i, w) in offsets.windows(2).enumerate() {
        let len = w[1].saturating_sub(w[0]) as usize;
        if w[1] <= w[0] || len > MAX_ID_LEN {
            return Err(cur.error_abs(
                offsets_at + 8 * i,
                format!(
                    "id #{i} has an invalid length (offsets {} → {})",
                    w[0], w[1]
                ),
            ));
        }
    }
    // UTF-8: the whole blob once, then every id boundary on a character
    // boundary, which makes every id valid UTF-8 on its own.
    let blob = &file[layout.blob.clone()];
    let text = std::str::from_utf8(blob).map_err(|e| {
        cur.error_abs(
            layout.blob.start + e.valid_up_to(),
            "id bytes are not valid UTF-8",
        )
    })?;
    if let Some(i) = offsets
        .iter()
        .position(|&o| !text.is_char_boundary(o as usize))
    {
        return Err(cur.error_abs(
            offsets_at + 8 * i,
            format!("id #{i} does not start on a UTF-8 character boundary"),
        ));
    }
    let slots: &[u32] = cast(file, layout.slots.clone());
    let mut used = 0u64;
    for (s, &v) in slots.iter().enumerate() {
        if u64::from(v) > count {
            return Err(cur.error_abs(
                slots_at + 4 * s,
                format!("hash slot {s} points at id #{} of {count}", v - 1),
            ));
        }
        used += u64::from(v != 0);
    }
    if used != count {
        return Err(cur.error_abs(
            slots_at,
            format!("hash table holds {used} entries for {count} ids"),
        ));
    }
    let table = IdTable::new(file, &layout);
    if let Some((i, problem)) = verify_lookups(&table) {
        return Err(cur.error_abs(slots_at, format!("id #{i} {:?} {problem}", table.id(i))));
    }
    cur.finish()?;
    Ok(layout)
}

/// Checks that every id is found at its own index, i.e. the table has no
/// duplicate and no unreachable id. Returns the first failing id.
///
/// Two passes so the memory-bound part runs with many lookups in flight:
/// hash every id (sequential reads), then probe (usually one slot read that
/// holds `index + 1`, no string comparison). Split across two threads.
fn verify_lookups(table: &IdTable<'_>) -> Option<(usize, &'static str)> {
    let n = table.len();
    let mask = table.slots.len() - 1;
    let check = |range: std::ops::Range<usize>| -> Option<(usize, &'static str)> {
        let homes: Vec<u32> = range
            .clone()
            .map(|i| (fnv1a64(table.id_bytes(i)) as usize & mask) as u32)
            .collect();
        for (i, home) in range.zip(homes) {
            let mut slot = home as usize;
            let mut probes = 0;
            loop {
                let v = table.slots[slot] as usize;
                if v == i + 1 {
                    break;
                }
                if v == 0 || probes == mask {
                    return Some((i, "is not found at its own index"));
                }
                if table.id_bytes(v - 1) == table.id_bytes(i) {
                    return Some((i, "appears twice"));
                }
                slot = (slot + 1) & mask;
                probes += 1;
            }
        }
        None
    };
    if n < 100_000 {
        return check(0..n);
    }
    let mid = n / 2;
    std::thread::scope(|s| {
        let second = s.spawn(|| check(mid..n));
        let first = check(0..mid);
        first.or_else(|| {
            second
                .join()
                .unwrap_or(Some((mid, "could not be verified")))
        })
    })
}

/// A zero-copy view of one id table.
#[derive(Clone, Copy, Debug)]
pub struct IdTable<'a> {
    offsets: &'a [u64],
    slots: &'a [u32],
    blob: &'a [u8],
}

impl<'a> IdTable<'a> {
    pub fn new(file: &'a [u8], layout: &IdTableLayout) -> Self {
        Self {
            offsets: cast(file, layout.offsets.clone()),
            slots: cast(file, layout.slots.clone()),
            blob: &file[layout.blob.clone()],
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of dense index `index` (panics if out of range).
    pub fn id(&self, index: usize) -> &'a str {
        // Validated as UTF-8 when the artifact was opened; lookups and
        // validation compare bytes and skip this re-check.
        std::str::from_utf8(self.id_bytes(index)).unwrap_or_default()
    }

    /// The bytes of the id of dense index `index` (panics if out of range).
    pub fn id_bytes(&self, index: usize) -> &'a [u8] {
        &self.blob[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// The dense index of `id`, if present.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut slot = fnv1a64(id.as_bytes()) as usize & mask;
        // Bounded even on a table that was never validated.
        for _ in 0..self.slots.len() {
            let v = self.slots[slot];
            if v == 0 {
                return None;
            }
            let index = v as usize - 1;
            if self
                .offsets
                .get(index + 1)
                .is_some_and(|_| self.id_bytes(index) == id.as_bytes())
            {
                return Some(index as u32);
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).map(|i| self.id(i))
    }
}
