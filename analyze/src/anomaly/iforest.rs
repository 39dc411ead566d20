//! A small, seeded Isolation Forest (Liu, Ting & Zhou 2008) that scores like scikit-learn's
//! `IsolationForest.score_samples`, negated: `s(x) = 2^(-E[h(x)] / c(ψ))`, in 0..1, higher = more
//! anomalous.
//!
//! Why hand-written (checked before writing, see `/work/shared/CRATES.md`):
//! - `extended-isolation-forest` 0.2 scores on the right scale but cannot be seeded (a replay
//!   would not give the same answers twice), fixes the feature count at compile time and is
//!   single-threaded;
//! - `isolation_forest` 1.1 takes integer features, does not subsample and normalises wrongly;
//! - `linfa` and `augurs-outlier` have no isolation forest.
//!
//! The algorithm follows scikit-learn (1.9) where it matters for the scores: `ψ = min(256, n)`
//! samples per tree drawn without replacement, depth limit `ceil(log2 ψ)`, at each node a
//! feature drawn uniformly among those not constant in the node and a threshold uniform in
//! `(min, max)`, `x <= threshold` goes left, a leaf of `m` training samples adds `c(m)` to the
//! path, `c(n) = 2 (ln(n - 1) + γ) - 2 (n - 1) / n`. The random stream is our own (SplitMix64,
//! one stream per tree derived from the seed), so scores equal scikit-learn's in distribution, not
//! bit for bit; `analyze/tests/anomaly_pyref.rs` checks rank correlation and AUC against it.

/// Parameters of the forest.
#[derive(Debug, Clone, PartialEq)]
pub struct IForestParams {
    /// Number of trees (scikit-learn: `n_estimators`, default 100).
    pub n_trees: usize,
    /// Samples per tree (scikit-learn: `max_samples`, default `min(256, n)`).
    pub max_samples: usize,
    /// Seed of the random stream: same data + same seed = same scores.
    pub seed: u64,
}

impl Default for IForestParams {
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_samples: 256,
            seed: 0x1eac_5eed,
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and stable across crate versions (a replay
/// must reproduce its scores after a dependency update, which `rand`'s distributions do not
/// promise).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n > 0), Lemire's multiply-shift (bias < n / 2^64, irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Average path length of an unsuccessful search in a binary search tree of `n` nodes, as in
/// scikit-learn's `_average_path_length`.
pub fn average_path_length(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// One node of a tree, stored flat (16 bytes). A leaf has `feature == LEAF` and keeps its path
/// length (depth + `c(m)`) in `value`; an inner node keeps its threshold there, and its right
/// child is `left + 1` (so that the descent is branch-free: `left + (x > threshold)`).
#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    left: u32,
    value: f64,
}

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Depth of the deepest leaf.
    fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, d)) = stack.pop() {
            match self.nodes.get(i) {
                Some(n) if n.feature != LEAF => {
                    stack.push((n.left as usize, d + 1));
                    stack.push((n.left as usize + 1, d + 1));
                }
                _ => deepest = deepest.max(d),
            }
        }
        deepest
    }

    fn path_length(&self, row: &[f64]) -> f64 {
        let mut i = 0usize;
        loop {
            let Some(node) = self.nodes.get(i) else {
                return 0.0;
            };
            if node.feature == LEAF {
                return node.value;
            }
            let x = row.get(node.feature as usize).copied().unwrap_or(0.0);
            i = node.left as usize + usize::from(x > node.value);
        }
    }
}

/// Deepest tree stored in the dense layout (4,095 inner nodes, 4,096 leaves: 80 kB a tree);
/// deeper ones (more than 4,096 samples per tree) are walked node by node.
const DENSE_MAX_DEPTH: usize = 12;

/// Rows descending the trees side by side in [`DenseForest::add_path_lengths`]: independent
/// descents the CPU overlaps (one descent is a chain of dependent loads).
const LANES: usize = 8;

/// All trees as complete binary trees of one depth `D`, heap-ordered (children of `i` at
/// `2i + 1` and `2i + 2`): a descent is exactly `D` steps `i = 2i + 1 + (x > threshold)`, with no
/// test for a leaf. A leaf above depth `D` becomes a subtree whose thresholds are +∞ (every row
/// goes left, `x > +∞` is false, NaN included) and whose leaves all hold its path length, so
/// every row gets the same path length as in the node-by-node walk (same sums, same order: the
/// same scores to the bit).
#[derive(Debug, Clone)]
struct DenseForest {
    depth: usize,
    /// Per tree, `2^D - 1` inner nodes: feature index and threshold.
    feature: Vec<u32>,
    threshold: Vec<f64>,
    /// Per tree, `2^D` path lengths.
    leaf: Vec<f64>,
}

impl DenseForest {
    fn new(trees: &[Tree]) -> Option<Self> {
        // At least 1, so that a forest of single leaves still has one (+∞) node a tree.
        let depth = trees.iter().map(Tree::depth).max()?.max(1);
        if depth > DENSE_MAX_DEPTH {
            return None;
        }
        let inner = (1usize << depth) - 1;
        let mut f = Self {
            depth,
            feature: vec![0; inner * trees.len()],
            threshold: vec![f64::INFINITY; inner * trees.len()],
            leaf: vec![0.0; (inner + 1) * trees.len()],
        };
        for (t, tree) in trees.iter().enumerate() {
            let (feature, threshold, leaf) = (
                &mut f.feature[t * inner..(t + 1) * inner],
                &mut f.threshold[t * inner..(t + 1) * inner],
                &mut f.leaf[t * (inner + 1)..(t + 1) * (inner + 1)],
            );
            // (sparse node, dense node, depth of the dense node)
            let mut stack = vec![(0usize, 0usize, 0usize)];
            while let Some((si, di, d)) = stack.pop() {
                let node = tree.nodes.get(si)?;
                if node.feature == LEAF {
                    // Every leaf below dense node `di` at depth D: a contiguous range.
                    let first = ((di + 1) << (depth - d)) - 1 - inner;
                    leaf[first..first + (1 << (depth - d))].fill(node.value);
                    continue;
                }
                feature[di] = node.feature;
                threshold[di] = node.value;
                let left = node.left as usize;
                stack.push((left, 2 * di + 1, d + 1));
                stack.push((left + 1, 2 * di + 2, d + 1));
            }
        }
        Some(f)
    }

    /// Adds every tree's path length of each row (`rows`: row-major, `nf` a row) to `out`, tree
    /// by tree in order (as [`IsolationForest::score`] sums them).
    fn add_path_lengths(&self, rows: &[f64], nf: usize, out: &mut [f64]) {
        let inner = (1usize << self.depth) - 1;
        let trees = self
            .feature
            .chunks_exact(inner)
            .zip(self.threshold.chunks_exact(inner))
            .zip(self.leaf.chunks_exact(inner + 1));
        for ((feature, threshold), leaf) in trees {
            let descend = |row: &[f64], i: usize| {
                let f = feature.get(i).map_or(0, |f| *f as usize);
                let x = row.get(f).copied().unwrap_or(0.0);
                let t = threshold.get(i).copied().unwrap_or(f64::INFINITY);
                2 * i + 1 + usize::from(x > t)
            };
            let mut groups = out.chunks_exact_mut(LANES);
            let mut row_groups = rows.chunks_exact(LANES * nf);
            for (o, r) in (&mut groups).zip(&mut row_groups) {
                let mut idx = [0usize; LANES];
                for _ in 0..self.depth {
                    for (l, i) in idx.iter_mut().enumerate() {
                        *i = descend(&r[l * nf..(l + 1) * nf], *i);
                    }
                }
                for (o, i) in o.iter_mut().zip(idx) {
                    *o += leaf.get(i - inner).copied().unwrap_or(0.0);
                }
            }
            for (o, r) in groups
                .into_remainder()
                .iter_mut()
                .zip(row_groups.remainder().chunks_exact(nf))
            {
                let mut i = 0;
                for _ in 0..self.depth {
                    i = descend(r, i);
                }
                *o += leaf.get(i - inner).copied().unwrap_or(0.0);
            }
        }
    }
}

/// A fitted forest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    trees: Vec<Tree>,
    /// The same trees in the dense layout, when shallow enough (always with scikit-learn's
    /// default of 256 samples: depth 8).
    dense: Option<DenseForest>,
    n_features: usize,
    c_psi: f64,
}

impl IsolationForest {
    /// Fits a forest on `n_rows` rows of `n_features` values, row-major in `data`. Returns
    /// `None` when there is nothing to fit (no rows, no features, a ragged matrix, non-finite
    /// values).
    pub fn fit(data: &[f64], n_features: usize, params: &IForestParams) -> Option<Self> {
        if n_features == 0 || data.is_empty() || !data.len().is_multiple_of(n_features) {
            return None;
        }
        if data.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let n_rows = data.len() / n_features;
        let psi = params.max_samples.clamp(1, n_rows.max(1)).min(n_rows);
        let max_depth = (psi.max(2) as f64).log2().ceil() as usize;
        let n_trees = params.n_trees.max(1);
        let mut trees = Vec::with_capacity(n_trees);
        for t in 0..n_trees {
            // One independent stream per tree: tree t does not depend on how many numbers the
            // trees before it drew.
            let mut rng = SplitMix64(params.seed ^ (t as u64).wrapping_mul(0xd134_2543_de82_ef95));
            rng.next_u64();
            let sample = sample_without_replacement(n_rows, psi, &mut rng);
            trees.push(build_tree(data, n_features, sample, max_depth, &mut rng));
        }
        Some(Self {
            dense: DenseForest::new(&trees),
            trees,
            n_features,
            c_psi: average_path_length(psi),
        })
    }

    /// Number of features the forest was fitted on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Anomaly score of one row, 0..1 (higher = more anomalous); equals minus scikit-learn's
    /// `score_samples`.
    pub fn score(&self, row: &[f64]) -> f64 {
        if self.trees.is_empty() || self.c_psi <= 0.0 {
            return 0.5;
        }
        let mut total = 0.0;
        match &self.dense {
            Some(dense) if row.len() == self.n_features => {
                dense.add_path_lengths(row, self.n_features, std::slice::from_mut(&mut total));
            }
            _ => {
                for t in &self.trees {
                    total += t.path_length(row);
                }
            }
        }
        (-total / (self.trees.len() as f64 * self.c_psi)).exp2()
    }

    /// Scores every row of a row-major matrix, on all cores for large inputs. Same values as
    /// [`Self::score`] row by row; rows go through the forest in blocks, tree by tree, so that a
    /// tree stays in the L1 cache while a block descends it.
    pub fn score_many(&self, data: &[f64]) -> Vec<f64> {
        let nf = self.n_features.max(1);
        let n_rows = data.len() / nf;
        let mut out = vec![0.0; n_rows];
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(n_rows / 4096 + 1);
        if threads <= 1 {
            self.score_block_wise(data, &mut out);
            return out;
        }
        let per = n_rows.div_ceil(threads);
        std::thread::scope(|s| {
            for (o_chunk, d_chunk) in out.chunks_mut(per).zip(data.chunks(per * nf)) {
                s.spawn(move || self.score_block_wise(d_chunk, o_chunk));
            }
        });
        out
    }

    fn score_block_wise(&self, data: &[f64], out: &mut [f64]) {
        const BLOCK: usize = 512;
        let nf = self.n_features.max(1);
        if self.trees.is_empty() || self.c_psi <= 0.0 {
            out.fill(0.5);
            return;
        }
        let denom = self.trees.len() as f64 * self.c_psi;
        for (o_block, d_block) in out.chunks_mut(BLOCK).zip(data.chunks(BLOCK * nf)) {
            o_block.fill(0.0);
            match &self.dense {
                Some(dense) => dense.add_path_lengths(d_block, nf, o_block),
                None => {
                    for tree in &self.trees {
                        for (o, row) in o_block.iter_mut().zip(d_block.chunks_exact(nf)) {
                            *o += tree.path_length(row);
                        }
                    }
                }
            }
            for o in o_block.iter_mut() {
                *o = (-*o / denom).exp2();
            }
        }
    }
}

fn sample_without_replacement(n: usize, k: usize, rng: &mut SplitMix64) -> Vec<u32> {
    if k >= n {
        return (0..n as u32).collect();
    }
    if n <= 4 * k {
        // Partial Fisher-Yates.
        let mut idx: Vec<u32> = (0..n as u32).collect();
        for i in 0..k {
            let j = i + rng.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k);
        return idx;
    }
    // Rejection: k << n, so collisions are rare.
    let mut seen = std::collections::HashSet::with_capacity(k * 2);
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let j = rng.below(n) as u32;
        if seen.insert(j) {
            out.push(j);
        }
    }
    out
}

fn build_tree(
    data: &[f64],
    nf: usize,
    mut sample: Vec<u32>,
    max_depth: usize,
    rng: &mut SplitMix64,
) -> Tree {
    let mut nodes: Vec<Node> = Vec::with_capacity(2 * sample.len());
    // Work stack: (node index, range in `sample`, depth).
    let mut stack: Vec<(usize, usize, usize, usize)> = Vec::new();
    nodes.push(Node {
        feature: LEAF,
        left: 0,
        value: 0.0,
    });
    stack.push((0, 0, sample.len(), 0));
    let mut mins = vec![0.0f64; nf];
    let mut maxs = vec![0.0f64; nf];
    let mut candidates: Vec<usize> = Vec::with_capacity(nf);
    while let Some((ni, lo, hi, depth)) = stack.pop() {
        let m = hi - lo;
        let leaf_value = depth as f64 + average_path_length(m);
        if m <= 1 || depth >= max_depth {
            nodes[ni].value = leaf_value;
            continue;
        }
        mins.fill(f64::INFINITY);
        maxs.fill(f64::NEG_INFINITY);
        for &r in &sample[lo..hi] {
            let row = &data[r as usize * nf..(r as usize + 1) * nf];
            for f in 0..nf {
                mins[f] = mins[f].min(row[f]);
                maxs[f] = maxs[f].max(row[f]);
            }
        }
        candidates.clear();
        candidates.extend((0..nf).filter(|&f| maxs[f] > mins[f]));
        if candidates.is_empty() {
            nodes[ni].value = leaf_value;
            continue;
        }
        let f = candidates[rng.below(candidates.len())];
        let mut thr = mins[f] + rng.next_f64() * (maxs[f] - mins[f]);
        if thr >= maxs[f] {
            thr = mins[f];
        }
        // Partition sample[lo..hi]: x <= thr first.
        let mut i = lo;
        let mut j = hi;
        while i < j {
            if data[sample[i] as usize * nf + f] <= thr {
                i += 1;
            } else {
                j -= 1;
                sample.swap(i, j);
            }
        }
        let left = nodes.len();
        nodes.push(Node {
            feature: LEAF,
            left: 0,
            value: 0.0,
        });
        let right = nodes.len();
        nodes.push(Node {
            feature: LEAF,
            left: 0,
            value: 0.0,
        });
        debug_assert_eq!(right, left + 1);
        nodes[ni] = Node {
            feature: f as u32,
            left: left as u32,
            value: thr,
        };
        stack.push((left, lo, i, depth + 1));
        stack.push((right, i, hi, depth + 1));
    }
    Tree { nodes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian_cloud(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64(seed);
        let mut out = Vec::with_capacity(n * 2);
        for _ in 0..n * 2 {
            // Box-Muller.
            let u1 = rng.next_f64().max(1e-12);
            let u2 = rng.next_f64();
            out.push((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos());
        }
        out
    }

    #[test]
    fn anomaly_iforest_outliers_score_higher_than_inliers() {
        let mut data = gaussian_cloud(1000, 7);
        data.extend_from_slice(&[8.0, 8.0, -7.0, 9.0, 10.0, -10.0]);
        let f = IsolationForest::fit(&data, 2, &IForestParams::default()).expect("forest");
        let scores = f.score_many(&data);
        let inlier_mean: f64 = scores[..1000].iter().sum::<f64>() / 1000.0;
        for s in &scores[1000..] {
            assert!(*s > 0.65, "outlier score {s}");
            assert!(
                *s > inlier_mean + 0.15,
                "outlier {s} vs inlier mean {inlier_mean}"
            );
        }
        assert!(
            (0.35..0.5).contains(&inlier_mean),
            "inlier mean {inlier_mean}"
        );
    }

    #[test]
    fn anomaly_iforest_score_many_equals_score() {
        let data = gaussian_cloud(5000, 11);
        let f = IsolationForest::fit(&data, 2, &IForestParams::default()).expect("forest");
        let many = f.score_many(&data);
        assert_eq!(many.len(), 5000);
        for (row, s) in data.chunks_exact(2).zip(&many) {
            assert_eq!(f.score(row), *s);
        }
    }

    #[test]
    fn anomaly_iforest_dense_layout_equals_node_walk() {
        // Forests of depth 1 to 8 (1 to 256 samples), ties and constant columns included; rows
        // beyond the training range and NaN.
        for (n, max_samples) in [
            (1, 256),
            (2, 256),
            (3, 256),
            (40, 256),
            (3000, 256),
            (500, 7),
        ] {
            let mut data = gaussian_cloud(n, n as u64);
            for x in data.iter_mut().step_by(3) {
                *x = x.round();
            }
            let p = IForestParams {
                max_samples,
                ..IForestParams::default()
            };
            let f = IsolationForest::fit(&data, 2, &p).expect("forest");
            let dense = f.dense.as_ref().expect("dense layout");
            let mut rows = data.clone();
            rows.extend_from_slice(&[50.0, -50.0, f64::NAN, 0.0, f64::INFINITY, 1.0]);
            let mut out = vec![0.0; rows.len() / 2];
            dense.add_path_lengths(&rows, 2, &mut out);
            for (row, got) in rows.chunks_exact(2).zip(&out) {
                let want: f64 = f.trees.iter().map(|t| t.path_length(row)).sum();
                assert_eq!(want.to_bits(), got.to_bits(), "n {n}, row {row:?}");
            }
        }
    }

    #[test]
    fn anomaly_iforest_is_deterministic_per_seed() {
        let data = gaussian_cloud(500, 3);
        let p = IForestParams::default();
        let a = IsolationForest::fit(&data, 2, &p)
            .expect("forest")
            .score_many(&data);
        let b = IsolationForest::fit(&data, 2, &p)
            .expect("forest")
            .score_many(&data);
        assert_eq!(a, b);
        let other = IForestParams { seed: 99, ..p };
        let c = IsolationForest::fit(&data, 2, &other)
            .expect("forest")
            .score_many(&data);
        assert_ne!(a, c);
    }

    #[test]
    fn anomaly_iforest_degenerate_inputs_do_not_panic() {
        let p = IForestParams::default();
        assert!(IsolationForest::fit(&[], 2, &p).is_none());
        assert!(IsolationForest::fit(&[1.0, 2.0, 3.0], 2, &p).is_none());
        assert!(IsolationForest::fit(&[1.0, f64::NAN], 2, &p).is_none());
        let constant = vec![1.0; 200];
        let f = IsolationForest::fit(&constant, 2, &p).expect("forest");
        let s = f.score(&[1.0, 1.0]);
        assert!(s.is_finite() && s > 0.0 && s <= 1.0);
        let one = IsolationForest::fit(&[1.0, 2.0], 2, &p).expect("forest");
        assert!(one.score(&[5.0, 5.0]).is_finite());
    }

    #[test]
    fn anomaly_iforest_average_path_length_matches_sklearn_values() {
        // sklearn: _average_path_length([1, 2, 256]) = [0, 1, 10.244770920116851]
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }
}
