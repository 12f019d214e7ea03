//! Helpers for tests and fuzzing (not part of the stable API).

use crate::Artifact;
use crate::artifact::header::{ENTRY_LEN, HEADER_LEN, crc32};
use crate::scan::{ItemScanner, similar_by_neighbors, top_k_neighbors};

/// Touches every view of an open artifact the way a server would: id
/// lookups, factor rows, a scan, every CSR row, neighbour scoring. On a
/// validated artifact none of this may panic; tests and the fuzz target call
/// it on whatever `Artifact::from_bytes` accepts.
pub fn exercise_views(art: &Artifact) {
    let items = art.item_ids();
    for i in 0..items.len().min(64) {
        assert_eq!(items.index_of(items.id(i)), Some(i as u32));
    }
    if let Some(users) = art.user_ids() {
        for u in 0..users.len().min(64) {
            assert_eq!(users.index_of(users.id(u)), Some(u as u32));
        }
    }
    if let (Some(users), Some(item_factors)) = (art.user_factors(), art.item_factors()) {
        let mut q = vec![0.0; users.padded_dims];
        if users.rows > 0 {
            users.row_f32(0, &mut q);
        }
        let scanner = ItemScanner::new(item_factors, art.item_bias_padded());
        let p = scanner.prepare(&q, 0.0);
        let top = scanner.top_k(&p, 5, |_| true);
        for s in &top {
            assert!(s.score.is_finite());
            assert_eq!(scanner.score(&p, s.item).to_bits(), s.score.to_bits());
        }
    }
    for csr in [
        art.seen_items(),
        art.holdout(),
        art.item_neighbors(),
        art.item_attributes(),
    ]
    .into_iter()
    .flatten()
    {
        for r in 0..csr.rows() {
            let _ = csr.row(r);
            let _ = csr.row_weights(r);
        }
    }
    if let Some(n) = art.item_neighbors() {
        let history: Vec<u32> = (0..n.rows().min(5) as u32).collect();
        let _ = top_k_neighbors(&n, &history, None, 5, |_| true);
        if n.rows() > 0 {
            let _ = similar_by_neighbors(&n, 0, 5);
        }
    }
}

/// Recomputes every section checksum and the table checksum of (possibly
/// corrupted) artifact bytes, as far as its header allows, so that tests and
/// fuzzing reach the validators behind the checksums.
pub fn fix_checksums(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    // A corrupted count may claim more entries than fit: fix those that do.
    let count = (u32_at(file, 12) as usize).min((file.len() - HEADER_LEN) / ENTRY_LEN);
    for i in 0..count {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let (off, len) = (u64_at(file, at + 8), u64_at(file, at + 16));
        if let Some(end) = off.checked_add(len).filter(|&end| end <= file.len() as u64) {
            let crc = crc32(&file[off as usize..end as usize]);
            file[at + 24..at + 28].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let table_end = HEADER_LEN + count * ENTRY_LEN;
    let mut h = crc32fast::Hasher::new();
    h.update(&file[..24]);
    h.update(&file[HEADER_LEN..table_end]);
    let crc = h.finalize();
    file[24..28].copy_from_slice(&crc.to_le_bytes());
}
