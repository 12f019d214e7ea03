//! Every kernel table this CPU supports, checked against the scalar oracle on
//! random lengths (ragged tails included) and extreme values.

use super::*;
use proptest::prelude::*;

fn tables() -> Vec<Kernels> {
    Kernels::all_available()
}

/// Tolerance for float sums whose order differs between kernels.
fn close(a: f32, b: f32, magnitude: f32) -> bool {
    (a - b).abs() <= 1e-5 * magnitude.max(1.0)
}

fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -10.0f32..10.0,
        1 => Just(0.0f32),
        1 => prop::sample::select(vec![-60000.0f32, 60000.0, 1e-30, -1e-30, 1e6]),
    ]
}

fn query_i8() -> impl Strategy<Value = i8> {
    prop_oneof![4 => -127i8..=127, 1 => prop::sample::select(vec![-127i8, 127, 0])]
}

fn item_u8() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 1u8..=255, 1 => prop::sample::select(vec![1u8, 255, 128])]
}

#[test]
fn detection_finds_the_scalar_table_at_least() {
    let all = tables();
    assert_eq!(all[0].float_isa, Isa::Scalar);
    assert!(kernels().describe().contains('/'));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn dot_f32_matches_scalar(pairs in prop::collection::vec((finite_f32(), finite_f32()), 0..200)) {
        let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
        let magnitude: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        let expected = Kernels::scalar().dot_f32(&a, &b);
        for t in tables() {
            let got = t.dot_f32(&a, &b);
            prop_assert!(close(got, expected, magnitude), "{}: {got} vs {expected}", t.describe());
        }
    }

    #[test]
    fn dot_f16_matches_scalar(pairs in prop::collection::vec((finite_f32(), -1000.0f32..1000.0), 0..200)) {
        let a: Vec<f32> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<f16> = pairs.iter().map(|p| f16::from_f32(p.1)).collect();
        let magnitude: f32 = a.iter().zip(&b).map(|(x, y)| (x * y.to_f32()).abs()).sum();
        let expected = Kernels::scalar().dot_f16(&a, &b);
        for t in tables() {
            let got = t.dot_f16(&a, &b);
            prop_assert!(close(got, expected, magnitude), "{}: {got} vs {expected}", t.describe());
        }
    }

    #[test]
    fn dot_i8_is_exact(pairs in prop::collection::vec((query_i8(), query_i8()), 0..300)) {
        let (a, b): (Vec<i8>, Vec<i8>) = pairs.into_iter().unzip();
        let expected = Kernels::scalar().dot_i8(&a, &b);
        for t in tables() {
            prop_assert_eq!(t.dot_i8(&a, &b), expected, "{}", t.describe());
        }
    }

    #[test]
    fn block_f32_matches_scalar(
        groups in 1usize..6,
        n_queries in 1usize..=MAX_BATCH,
        n_blocks in 1usize..4,
        with_bias in any::<bool>(),
        seed in prop::collection::vec(finite_f32(), 3 * 16 * 5 * 16 + 8 * 5 * 16),
        thresholds in prop::collection::vec(-50.0f32..50.0, MAX_BATCH),
    ) {
        let dims = groups * DIM_ALIGN;
        let block: Vec<f32> = seed[..n_blocks * dims * BLOCK].to_vec();
        let qdata = &seed[3 * 16 * 5 * 16..];
        let queries: Vec<&[f32]> = (0..n_queries).map(|q| &qdata[q * dims..(q + 1) * dims]).collect();
        let bias = test_bias(n_blocks, with_bias);
        // Float error bound of a reordered sum: a few ulps of Σ|q·x| per lane.
        let magnitude = |q: &[f32], b: usize, lane: usize| -> f32 {
            q.iter().enumerate().map(|(d, w)| (w * block[b * dims * BLOCK + d * BLOCK + lane]).abs()).sum::<f32>() + 16.0
        };
        let run = |t: &Kernels| run_block(n_blocks * n_queries, &thresholds[..n_queries], |out| t.block_f32(&queries, &block, bias.as_deref(), out));
        let (expected, _) = run(&Kernels::scalar());
        for t in tables() {
            let (got, masks) = run(&t);
            for (row, (g_row, e_row)) in got.iter().zip(&expected).enumerate() {
                for lane in 0..BLOCK {
                    let (g, e) = (g_row[lane], e_row[lane]);
                    let m = magnitude(queries[row % n_queries], row / n_queries, lane);
                    prop_assert!(close(g, e, m), "{}: {g} vs {e}", t.describe());
                }
            }
            // Masks are consistent with this kernel's own scores.
            prop_assert_eq!(masks, masks_of(&got, &thresholds[..n_queries]), "{}", t.describe());
        }
    }

    #[test]
    fn block_f16_matches_scalar(
        groups in 1usize..6,
        n_queries in 1usize..=MAX_BATCH,
        n_blocks in 1usize..4,
        with_bias in any::<bool>(),
        items in prop::collection::vec(-1000.0f32..1000.0, 3 * 16 * 5 * 16),
        qdata in prop::collection::vec(-10.0f32..10.0, 8 * 5 * 16),
        thresholds in prop::collection::vec(-500.0f32..500.0, MAX_BATCH),
    ) {
        let dims = groups * DIM_ALIGN;
        let block: Vec<f16> = items[..n_blocks * dims * BLOCK].iter().map(|&x| f16::from_f32(x)).collect();
        let queries: Vec<&[f32]> = (0..n_queries).map(|q| &qdata[q * dims..(q + 1) * dims]).collect();
        let bias = test_bias(n_blocks, with_bias);
        let run = |t: &Kernels| run_block(n_blocks * n_queries, &thresholds[..n_queries], |out| t.block_f16(&queries, &block, bias.as_deref(), out));
        let (expected, _) = run(&Kernels::scalar());
        for t in tables() {
            let (got, masks) = run(&t);
            for (g, e) in got.iter().flatten().zip(expected.iter().flatten()) {
                prop_assert!(close(*g, *e, 1e4 * dims as f32), "{}: {g} vs {e}", t.describe());
            }
            prop_assert_eq!(masks, masks_of(&got, &thresholds[..n_queries]), "{}", t.describe());
        }
    }

    #[test]
    fn block_u8_is_exact(
        groups in 1usize..6,
        n_queries in 1usize..=MAX_BATCH,
        n_blocks in 1usize..4,
        block in prop::collection::vec(item_u8(), 3 * 16 * 5 * 16),
        qdata in prop::collection::vec(query_i8(), 8 * 5 * 16),
        scales in prop::collection::vec(0.0f32..0.1, 3 * 16),
        q_scale in 0.0f32..0.1,
        with_bias in any::<bool>(),
        thresholds in prop::collection::vec(-5.0f32..5.0, MAX_BATCH),
    ) {
        let dims = groups * DIM_ALIGN;
        let block = &block[..n_blocks * dims * BLOCK];
        let queries: Vec<QueryI8<'_>> =
            (0..n_queries).map(|q| QueryI8::new(&qdata[q * dims..(q + 1) * dims], q_scale * (q + 1) as f32)).collect();
        let bias = test_bias(n_blocks, with_bias);
        let epilogue = Epilogue { item_scales: &scales[..n_blocks * BLOCK], bias: bias.as_deref() };
        let run = |t: &Kernels| run_block(n_blocks * n_queries, &thresholds[..n_queries], |out| t.block_u8(&queries, block, epilogue, out));
        let expected = run(&Kernels::scalar());
        for t in tables() {
            // Bit-exact: integer dot products, then the same IEEE operations.
            let (got, masks) = run(&t);
            let bits = |v: &[[f32; BLOCK]]| -> Vec<u32> { v.iter().flatten().map(|x| x.to_bits()).collect() };
            prop_assert_eq!(bits(&got), bits(&expected.0), "{}", t.describe());
            prop_assert_eq!(&masks, &expected.1, "{}", t.describe());
        }
    }
}

fn test_bias(n_blocks: usize, with_bias: bool) -> Option<Vec<f32>> {
    with_bias.then(|| {
        (0..n_blocks * BLOCK)
            .map(|i| i as f32 * 0.25 - 3.0)
            .collect()
    })
}

/// Runs a block kernel into fresh buffers; returns (scores, masks).
fn run_block(
    rows: usize,
    thresholds: &[f32],
    kernel: impl FnOnce(BlockOutput<'_>),
) -> (Vec<[f32; BLOCK]>, Vec<u16>) {
    let mut scores = vec![[0.0f32; BLOCK]; rows];
    let mut masks = vec![0u16; rows];
    kernel(BlockOutput {
        thresholds,
        scores: &mut scores,
        masks: &mut masks,
    });
    (scores, masks)
}

fn masks_of(scores: &[[f32; BLOCK]], thresholds: &[f32]) -> Vec<u16> {
    let mut masks = vec![0u16; scores.len()];
    scalar::fill_masks(thresholds, scores, &mut masks);
    masks
}

#[test]
fn block_u8_extremes_do_not_saturate() {
    // Every product at its largest magnitude: the AVX2 maddubs path would
    // saturate here if the ±127 bounds were not respected.
    let dims = 64;
    let ones = [1.0f32; BLOCK];
    for (q_val, item_val) in [(127i8, 255u8), (-127, 1), (127, 1), (-127, 255)] {
        let q = vec![q_val; dims];
        let block = vec![item_val; dims * BLOCK];
        let expected = (i32::from(q_val) * (i32::from(item_val) - 128) * dims as i32) as f32;
        for t in tables() {
            let epilogue = Epilogue {
                item_scales: &ones,
                bias: None,
            };
            let (scores, masks) = run_block(1, &[0.0], |out| {
                t.block_u8(&[QueryI8::new(&q, 1.0)], &block, epilogue, out)
            });
            assert!(
                scores[0].iter().all(|&s| s == expected),
                "{}: {:?}",
                t.describe(),
                scores[0]
            );
            assert_eq!(masks[0], if expected > 0.0 { 0xffff } else { 0 });
        }
    }
}
