//! The training matrix: users × items, CSR, with its transpose for the
//! item-side passes.

use vitrine_core::dataset::Interactions;

/// A sparse matrix in CSR form; columns strictly increasing within a row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sparse {
    pub rows: usize,
    pub cols: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Sparse {
    /// Builds from (row, col, value) triplets; repeated cells are summed.
    /// A counting sort by row, then a sort within each (short) row: linear
    /// in the number of triplets, where one global sort of 50M is seconds.
    pub fn from_triplets(rows: usize, cols: usize, triplets: Vec<(u32, u32, f32)>) -> Self {
        let mut starts = vec![0usize; rows + 1];
        for t in &triplets {
            starts[t.0 as usize + 1] += 1;
        }
        for r in 0..rows {
            starts[r + 1] += starts[r];
        }
        let mut cells: Vec<(u32, f32)> = vec![(0, 0.0); triplets.len()];
        let mut next = starts.clone();
        for (r, c, v) in triplets {
            cells[next[r as usize]] = (c, v);
            next[r as usize] += 1;
        }
        let mut m = Sparse {
            rows,
            cols,
            indptr: vec![0; rows + 1],
            ..Sparse::default()
        };
        m.indices.reserve(cells.len());
        m.values.reserve(cells.len());
        for r in 0..rows {
            let row = &mut cells[starts[r]..starts[r + 1]];
            row.sort_unstable_by_key(|cell| cell.0);
            for &(c, v) in row.iter() {
                if m.indices.len() > m.indptr[r] && m.indices.last() == Some(&c) {
                    *m.values.last_mut().expect("a value per index") += v;
                } else {
                    m.indices.push(c);
                    m.values.push(v);
                }
            }
            m.indptr[r + 1] = m.indices.len();
        }
        m
    }

    /// The training matrix of `rows` of `data`: ratings as values, or 1 for
    /// implicit data (`binary` forces 1 everywhere); repeats are summed, or
    /// capped at 1 when binary.
    pub fn from_interactions(data: &Interactions, rows: &[usize], binary: bool) -> Self {
        let triplets = rows
            .iter()
            .map(|&i| {
                (
                    data.users[i],
                    data.items[i],
                    if binary { 1.0 } else { data.rating(i) },
                )
            })
            .collect();
        let mut m = Self::from_triplets(data.n_users(), data.n_items(), triplets);
        if binary {
            m.values.iter_mut().for_each(|v| *v = 1.0);
        }
        m
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[r]..self.indptr[r + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    pub fn transpose(&self) -> Sparse {
        let mut triplets = Vec::with_capacity(self.nnz());
        for r in 0..self.rows {
            let (cols, vals) = self.row(r);
            triplets.extend(cols.iter().zip(vals).map(|(&c, &v)| (c, r as u32, v)));
        }
        Sparse::from_triplets(self.cols, self.rows, triplets)
    }

    /// Sorted column lists per row (for exclusion and history lists).
    pub fn row_lists(&self) -> Vec<Vec<u32>> {
        (0..self.rows).map(|r| self.row(r).0.to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_sum_repeats_and_transpose_round_trips() {
        let m = Sparse::from_triplets(
            3,
            4,
            vec![
                (2, 1, 1.0),
                (0, 3, 2.0),
                (0, 1, 1.0),
                (0, 3, 0.5),
                (2, 0, 4.0),
            ],
        );
        assert_eq!(m.indptr, vec![0, 2, 2, 4]);
        assert_eq!(m.row(0), (&[1u32, 3][..], &[1.0f32, 2.5][..]));
        assert_eq!(m.row(1).0.len(), 0);
        assert_eq!(m.row(2), (&[0u32, 1][..], &[4.0f32, 1.0][..]));
        let t = m.transpose();
        assert_eq!(t.row(1), (&[0u32, 2][..], &[1.0f32, 1.0][..]));
        assert_eq!(t.transpose(), m);
    }
}
