//! Popularity: every user gets the most interacted-with items. Served as a
//! one-dimensional embedding (user factor 1, item factor = popularity share),
//! so it runs on the same scan as every other embedding model.

use super::Model;
use crate::sparse::Sparse;

pub fn fit(train: &Sparse) -> Model {
    let mut counts = vec![0.0f32; train.cols];
    for &i in &train.indices {
        counts[i as usize] += 1.0;
    }
    let total = counts.iter().sum::<f32>().max(1.0);
    Model::Embedding {
        dims: 1,
        users: vec![1.0; train.rows],
        items: counts.iter().map(|c| c / total).collect(),
        user_bias: None,
        item_bias: None,
        global: 0.0,
    }
}
