//! Single-thread read bandwidth: how fast one core streams a buffer from
//! memory. The scan's ceiling for catalogues that do not fit in cache.

use std::time::Instant;

/// Reads `bytes` front to back repeatedly for about `seconds`; returns the
/// best pass's rate in bytes per second. Eight independent sums let the core
/// keep many loads in flight (one sum would be latency-bound).
pub fn read_bytes_per_second(bytes: &[u8], seconds: f64) -> f64 {
    let (words, _) = bytes.as_chunks::<64>();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut sink = 0u64;
    while start.elapsed().as_secs_f64() < seconds || best.is_infinite() {
        let pass = Instant::now();
        let mut acc = [0u64; 8];
        for line in words {
            for (a, chunk) in acc.iter_mut().zip(line.as_chunks::<8>().0) {
                *a = a.wrapping_add(u64::from_le_bytes(*chunk));
            }
        }
        sink = sink.wrapping_add(acc.iter().fold(0, |s, &x| s ^ x));
        best = best.min(pass.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    (words.len() * 64) as f64 / best
}
