//! The evaluation protocols' splits (DESIGN.md, "Training and evaluation
//! protocols"): named, seeded, reproducible on every machine (SplitMix64).
//!
//! A split is three disjoint lists of row indices into the interactions
//! (train, valid, test); together they hold every row the protocol keeps.

use crate::dataset::Interactions;
use crate::synthetic::SplitMix64;

/// Row indices of the three slices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

/// Fisher–Yates with SplitMix64: the same permutation for the same seed on
/// every machine.
pub fn shuffle<T>(values: &mut [T], rng: &mut SplitMix64) {
    for i in (1..values.len()).rev() {
        let j = rng.below(i + 1);
        values.swap(i, j);
    }
}

/// `kfold`: a random partition of all rows into `k` folds. Returns the fold
/// of each row; fold `f` is the test slice of round `f` and every other fold
/// its training slice.
pub fn kfold_assignment(n_rows: usize, k: usize, seed: u64) -> Vec<usize> {
    assert!(k >= 2, "k-fold needs at least 2 folds");
    let mut order: Vec<usize> = (0..n_rows).collect();
    shuffle(&mut order, &mut SplitMix64::new(seed));
    let mut fold = vec![0; n_rows];
    for (position, &row) in order.iter().enumerate() {
        fold[row] = position % k;
    }
    fold
}

/// The train/test split of round `f` of a k-fold assignment.
pub fn kfold_round(assignment: &[usize], f: usize) -> Split {
    let (test, train): (Vec<usize>, Vec<usize>) =
        (0..assignment.len()).partition(|&i| assignment[i] == f);
    Split {
        train,
        valid: Vec::new(),
        test,
    }
}

/// How many of `total` rows go to each part for `ratios`, exactly as RecBole
/// computes it (`Dataset._calcu_split_ids`): every part but the first is
/// rounded down, the first takes the rest, then each later part that would
/// be empty although its share is positive takes one row from the first, as
/// long as the first keeps more than one.
pub fn recbole_counts(total: usize, ratios: &[f64]) -> Vec<usize> {
    let sum: f64 = ratios.iter().sum();
    let ratios: Vec<f64> = ratios.iter().map(|r| r / sum).collect();
    let mut counts: Vec<usize> = ratios.iter().map(|r| (r * total as f64) as usize).collect();
    counts[0] = total - counts[1..].iter().sum::<usize>();
    for i in 1..ratios.len() {
        if counts[0] <= 1 {
            break;
        }
        let part = ratios.len() - i;
        let share = ratios[part] * total as f64;
        if share > 0.0 && share < 1.0 {
            counts[part] += 1;
            counts[0] -= 1;
        }
    }
    counts
}

/// `recbole`: per user, a random order of their rows split by `ratios`
/// (train, valid, test; default 0.8/0.1/0.1) with RecBole's rounding. Rows
/// rated below `min_rating` are dropped first (ratings < 3 on MovieLens);
/// implicit data keeps all rows.
pub fn recbole(data: &Interactions, ratios: [f64; 3], min_rating: Option<f32>, seed: u64) -> Split {
    let mut rng = SplitMix64::new(seed);
    let mut split = Split::default();
    for mut rows in data.rows_by_user() {
        rows.retain(|&i| min_rating.is_none_or(|m| data.rating(i) >= m));
        if rows.is_empty() {
            continue;
        }
        shuffle(&mut rows, &mut rng);
        let counts = recbole_counts(rows.len(), &ratios);
        let (train, rest) = rows.split_at(counts[0]);
        let (valid, test) = rest.split_at(counts[1]);
        split.train.extend_from_slice(train);
        split.valid.extend_from_slice(valid);
        split.test.extend_from_slice(test);
    }
    split
}

/// `leave-last-out`: each user's latest row (by timestamp, ties by input
/// order) is the test slice, the one before it the validation slice, the rest
/// train. Users with one row keep it in train; with two, nothing in valid.
pub fn leave_last_out(data: &Interactions) -> Result<Split, String> {
    let times = data
        .timestamps
        .as_ref()
        .ok_or("leave-last-out needs timestamps, and this data has none")?;
    let mut split = Split::default();
    for mut rows in data.rows_by_user() {
        rows.sort_by_key(|&i| (times[i], i));
        let n = rows.len();
        let held_out = match n {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        };
        split.train.extend_from_slice(&rows[..n - held_out]);
        if held_out == 2 {
            split.valid.push(rows[n - 2]);
        }
        if held_out >= 1 {
            split.test.push(rows[n - 1]);
        }
    }
    Ok(split)
}

/// `temporal`: one global cut in time, as in production: the oldest
/// `1 − valid − test` share of rows trains, the next `valid` share validates,
/// the newest `test` share tests (by timestamp, ties by input order).
pub fn temporal(data: &Interactions, valid_share: f64, test_share: f64) -> Result<Split, String> {
    let times = data
        .timestamps
        .as_ref()
        .ok_or("temporal needs timestamps, and this data has none")?;
    if !(0.0..1.0).contains(&(valid_share + test_share)) || valid_share < 0.0 || test_share < 0.0 {
        return Err(format!(
            "valid ({valid_share}) and test ({test_share}) shares must be ≥ 0 and sum below 1"
        ));
    }
    let mut rows: Vec<usize> = (0..data.len()).collect();
    rows.sort_by_key(|&i| (times[i], i));
    let n = rows.len();
    let n_test = (test_share * n as f64).round() as usize;
    let n_valid = (valid_share * n as f64).round() as usize;
    let n_train = n - n_test - n_valid;
    Ok(Split {
        train: rows[..n_train].to_vec(),
        valid: rows[n_train..n_train + n_valid].to_vec(),
        test: rows[n_train + n_valid..].to_vec(),
    })
}
