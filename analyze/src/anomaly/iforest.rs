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
//! path, `c(n) = 2 (ln(n - 1) + γ) - 2 (n - 1) / n`. The random stream is the crate's own ([`crate::rng::SplitMix64`],
//! one stream per tree derived from the seed), so scores equal scikit-learn's in distribution, not
//! bit for bit; `analyze/tests/anomaly_pyref.rs` checks rank correlation and AUC against it.

use crate::rng::SplitMix64;

/// Parameters of the forest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Depth of the fixed layout: every tree of a forest fitted on at most 256 samples per tree
/// (scikit-learn's default, and ours) fits in it; deeper forests are walked node by node.
const FIXED_DEPTH: usize = 8;

/// Slots per tree in the fixed layout: 255 inner nodes (heap-ordered, one slot unused) and 256
/// leaves. A power of two that a `u8` index cannot leave, so that the descent has no bounds
/// check.
const SLOTS: usize = 1 << FIXED_DEPTH;

/// Features per row in the fixed layout (rows are copied into `[f64; ROW]`, zero-padded): a
/// feature index masked with `ROW - 1` cannot leave the row either.
const ROW: usize = 8;

/// Rows descending a tree side by side in [`FixedForest::add_path_lengths`]: independent
/// descents the CPU overlaps (one descent is a chain of dependent loads). 16 measured fastest
/// (8: 1.2x slower; 32 no longer stays in registers).
const LANES: usize = 16;

/// Rows a thread copies into the fixed layout at once and sends through every tree, tree by
/// tree (16 kB of rows + 4.3 kB of tree: both stay in the L1 cache).
const BLOCK: usize = 256;

/// One tree as a complete binary tree of depth [`FIXED_DEPTH`], heap-ordered (children of `i` at
/// `2i + 1` and `2i + 2`): a descent is exactly 8 steps `i = 2i + 1 + (x > threshold)`, with no
/// test for a leaf. A leaf above depth 8 becomes a subtree whose thresholds are +∞ (every row
/// goes left, `x > +∞` is false, NaN included) and whose leaves all hold its path length, so
/// every row gets the same path length as in the node-by-node walk (same sums, same order: the
/// same scores to the bit).
///
/// The index is a `u8` that wraps: at depth 8 the heap index `p` (255..=510) lands on
/// `p mod 256`, which is where `leaf` keeps that leaf's path length.
#[derive(Debug, Clone)]
struct FixedTree {
    threshold: [f64; SLOTS],
    feature: [u8; SLOTS],
    leaf: [f64; SLOTS],
}

impl FixedTree {
    fn new(tree: &Tree) -> Option<Self> {
        let mut f = Self {
            threshold: [f64::INFINITY; SLOTS],
            feature: [0; SLOTS],
            leaf: [0.0; SLOTS],
        };
        // (sparse node, heap index, depth)
        let mut stack = vec![(0usize, 0usize, 0usize)];
        while let Some((si, hi, d)) = stack.pop() {
            let node = tree.nodes.get(si)?;
            if node.feature == LEAF {
                // Every depth-8 descendant of heap node `hi`: a contiguous range of heap indices.
                let first = ((hi + 1) << (FIXED_DEPTH - d)) - 1;
                for p in first..first + (1 << (FIXED_DEPTH - d)) {
                    f.leaf[p % SLOTS] = node.value;
                }
                continue;
            }
            if d >= FIXED_DEPTH || node.feature as usize >= ROW {
                return None;
            }
            f.feature[hi] = node.feature as u8;
            f.threshold[hi] = node.value;
            let left = node.left as usize;
            stack.push((left, 2 * hi + 1, d + 1));
            stack.push((left + 1, 2 * hi + 2, d + 1));
        }
        Some(f)
    }

    /// Path length of one (padded) row.
    fn path_length(&self, row: &[f64; ROW]) -> f64 {
        let mut i = 0u8;
        for _ in 0..FIXED_DEPTH {
            i = self.step(i, row);
        }
        self.leaf[usize::from(i)]
    }

    #[inline(always)]
    fn step(&self, i: u8, row: &[f64; ROW]) -> u8 {
        let x = row[usize::from(self.feature[usize::from(i)]) & (ROW - 1)];
        i.wrapping_mul(2)
            .wrapping_add(1)
            .wrapping_add(u8::from(x > self.threshold[usize::from(i)]))
    }
}

/// Every tree of a forest in the fixed layout (when all are at most 8 deep and rows have at
/// most 8 features).
#[derive(Debug, Clone)]
struct FixedForest {
    trees: Vec<FixedTree>,
}

impl FixedForest {
    fn new(trees: &[Tree], n_features: usize) -> Option<Self> {
        if n_features > ROW {
            return None;
        }
        let trees = trees
            .iter()
            .map(FixedTree::new)
            .collect::<Option<Vec<_>>>()?;
        Some(Self { trees })
    }

    /// The sum over the trees of each row's path length, tree by tree in order (as the
    /// node-by-node walk sums them), into `out`. `rows`: at most [`BLOCK`], a multiple of
    /// [`LANES`] (padding rows included), at least `out.len()`.
    fn path_length_sums(&self, rows: &[[f64; ROW]], out: &mut [f64]) {
        let mut acc = [0.0f64; BLOCK];
        let acc = &mut acc[..rows.len().min(BLOCK)];
        for tree in &self.trees {
            for (group, a) in rows.chunks_exact(LANES).zip(acc.chunks_exact_mut(LANES)) {
                let mut idx = [0u8; LANES];
                for _ in 0..FIXED_DEPTH {
                    for (i, row) in idx.iter_mut().zip(group) {
                        *i = tree.step(*i, row);
                    }
                }
                for (a, i) in a.iter_mut().zip(idx) {
                    *a += tree.leaf[usize::from(i)];
                }
            }
        }
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = *a;
        }
    }
}

/// A fitted forest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    trees: Vec<Tree>,
    /// The same trees in the fixed layout, when shallow enough (always with scikit-learn's
    /// default of 256 samples: depth 8) and the rows short enough (our 6 features).
    fixed: Option<FixedForest>,
    n_features: usize,
    c_psi: f64,
}

impl IsolationForest {
    /// Fits a forest on `n_rows` rows of `n_features` values, row-major in `data`. Returns
    /// `None` when there is nothing to fit (no rows, no features, a ragged matrix, non-finite
    /// values).
    pub fn fit(data: &[f64], n_features: usize, params: &IForestParams) -> Option<Self> {
        Self::fit_parts(&[data], n_features, params)
    }

    /// [`Self::fit`] on the rows of `parts` one after the other (the same forest as on their
    /// concatenation, without building it).
    pub fn fit_parts(parts: &[&[f64]], n_features: usize, params: &IForestParams) -> Option<Self> {
        if n_features == 0 || parts.iter().any(|p| !p.len().is_multiple_of(n_features)) {
            return None;
        }
        if parts.iter().flat_map(|p| p.iter()).any(|v| !v.is_finite()) {
            return None;
        }
        // First row of each part.
        let mut starts = Vec::with_capacity(parts.len());
        let mut n_rows = 0;
        for p in parts {
            starts.push(n_rows);
            n_rows += p.len() / n_features;
        }
        if n_rows == 0 {
            return None;
        }
        let row = |r: usize| {
            let part = starts.partition_point(|s| *s <= r).saturating_sub(1);
            let at = (r - starts[part]) * n_features;
            &parts[part][at..at + n_features]
        };
        let psi = params.max_samples.clamp(1, n_rows.max(1)).min(n_rows);
        let max_depth = (psi.max(2) as f64).log2().ceil() as usize;
        let n_trees = params.n_trees.max(1);
        let mut trees = Vec::with_capacity(n_trees);
        let mut rows = Vec::with_capacity(psi * n_features);
        for t in 0..n_trees {
            // One independent stream per tree: tree t does not depend on how many numbers the
            // trees before it drew.
            let mut rng =
                SplitMix64::new(params.seed ^ (t as u64).wrapping_mul(0xd134_2543_de82_ef95));
            rng.next_u64();
            let sample = sample_without_replacement(n_rows, psi, &mut rng);
            if let [data] = parts {
                trees.push(build_tree(data, n_features, sample, max_depth, &mut rng));
                continue;
            }
            // The tree reads only its sample: copied out in sample order, row `i` of the copy is
            // sample `i`, and the tree is the one built on the whole matrix.
            rows.clear();
            for r in &sample {
                rows.extend_from_slice(row(*r as usize));
            }
            let local = (0..sample.len() as u32).collect();
            trees.push(build_tree(&rows, n_features, local, max_depth, &mut rng));
        }
        Some(Self {
            fixed: FixedForest::new(&trees, n_features),
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
        match &self.fixed {
            Some(fixed) => {
                // Missing features read as 0, as in the node walk.
                let mut padded = [0.0; ROW];
                for (p, x) in padded.iter_mut().zip(row) {
                    *p = *x;
                }
                for t in &fixed.trees {
                    total += t.path_length(&padded);
                }
            }
            None => {
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
        self.score_many_parts(&[data]).pop().unwrap_or_default()
    }

    /// [`Self::score_many`] of each part.
    pub fn score_many_parts(&self, parts: &[&[f64]]) -> Vec<Vec<f64>> {
        /// Rows a thread takes at a time.
        const CHUNK: usize = 16 * 1024;
        let nf = self.n_features.max(1);
        let mut out: Vec<Vec<f64>> = parts.iter().map(|p| vec![0.0; p.len() / nf]).collect();
        let n_rows: usize = out.iter().map(Vec::len).sum();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(n_rows / 4096 + 1);
        let mut work = out
            .iter_mut()
            .zip(parts)
            .flat_map(|(o, d)| o.chunks_mut(CHUNK).zip(d.chunks(CHUNK * nf)));
        if threads <= 1 {
            for (o, d) in work {
                self.score_rows(d, o);
            }
            return out;
        }
        // Chunks are handed out one at a time rather than split evenly up front: on a shared
        // machine one thread can get less CPU than the other, and with an even split its half
        // alone sets the wall time.
        let work = std::sync::Mutex::new(&mut work);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while let Some((o, d)) = work.lock().ok().and_then(|mut w| w.next()) {
                        self.score_rows(d, o);
                    }
                });
            }
        });
        out
    }

    fn score_rows(&self, data: &[f64], out: &mut [f64]) {
        let nf = self.n_features.max(1);
        if self.trees.is_empty() || self.c_psi <= 0.0 {
            out.fill(0.5);
            return;
        }
        let denom = self.trees.len() as f64 * self.c_psi;
        match &self.fixed {
            Some(fixed) => {
                let mut rows = vec![[0.0; ROW]; BLOCK];
                for (o_block, d_block) in out.chunks_mut(BLOCK).zip(data.chunks(BLOCK * nf)) {
                    for (r, src) in rows.iter_mut().zip(d_block.chunks_exact(nf)) {
                        for (p, x) in r.iter_mut().zip(src) {
                            *p = *x;
                        }
                    }
                    // The last group is padded with whatever rows the previous block left: their
                    // sums are not used.
                    let used = o_block.len().next_multiple_of(LANES).min(BLOCK);
                    fixed.path_length_sums(&rows[..used], o_block);
                }
            }
            None => {
                for (o_block, d_block) in out.chunks_mut(BLOCK).zip(data.chunks(BLOCK * nf)) {
                    o_block.fill(0.0);
                    for tree in &self.trees {
                        for (o, row) in o_block.iter_mut().zip(d_block.chunks_exact(nf)) {
                            *o += tree.path_length(row);
                        }
                    }
                }
            }
        }
        for o in out.iter_mut() {
            *o = (-*o / denom).exp2();
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

/// The smallest and largest of `vals`, NaN ignored (as `f64::min`/`max`: a NaN never
/// compares below or above). Four running pairs, not one: each comparison waits on the one
/// before it in its pair only (a single pair made the fit wait on every comparison).
fn range(vals: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = ([f64::INFINITY; 4], [f64::NEG_INFINITY; 4]);
    let mut chunks = vals.chunks_exact(4);
    for c in &mut chunks {
        for l in 0..4 {
            if c[l] < lo[l] {
                lo[l] = c[l];
            }
            if c[l] > hi[l] {
                hi[l] = c[l];
            }
        }
    }
    for &x in chunks.remainder() {
        if x < lo[0] {
            lo[0] = x;
        }
        if x > hi[0] {
            hi[0] = x;
        }
    }
    let min = lo
        .into_iter()
        .fold(f64::INFINITY, |a, b| if b < a { b } else { a });
    let max = hi
        .into_iter()
        .fold(f64::NEG_INFINITY, |a, b| if b > a { b } else { a });
    (min, max)
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
    let mut candidates: Vec<usize> = Vec::with_capacity(nf);
    let mut vals: Vec<f64> = Vec::with_capacity(sample.len());
    let mut right: Vec<u32> = Vec::with_capacity(sample.len());
    while let Some((ni, lo, hi, depth)) = stack.pop() {
        let m = hi - lo;
        let leaf_value = depth as f64 + average_path_length(m);
        if m <= 1 || depth >= max_depth {
            nodes[ni].value = leaf_value;
            continue;
        }
        // The features that vary in this node (`max > min` over its rows, NaN ignored as
        // `f64::min`/`max` do): a scan that stops at the first value unlike the node's first,
        // usually a row or two in. Only the chosen feature's range is then computed over every
        // row: a sixth of scanning all features' ranges, and the same draws, so the same tree.
        candidates.clear();
        let rows = &sample[lo..hi];
        candidates.extend((0..nf).filter(|&f| {
            let mut first = None;
            rows.iter().any(|&r| {
                let x = data[r as usize * nf + f];
                if x.is_nan() {
                    return false;
                }
                match first {
                    None => {
                        first = Some(x);
                        false
                    }
                    Some(a) => x != a,
                }
            })
        }));
        if candidates.is_empty() {
            nodes[ni].value = leaf_value;
            continue;
        }
        let f = candidates[rng.below(candidates.len())];
        // The chosen feature's values of the node's rows, gathered once: its range, then the
        // partition, read them in order.
        vals.clear();
        vals.extend(rows.iter().map(|&r| data[r as usize * nf + f]));
        let (min, max) = range(&vals);
        let mut thr = min + rng.next_f64() * (max - min);
        if thr >= max {
            thr = min;
        }
        // Partition sample[lo..hi]: x <= thr first. Without a branch on the data (a coin toss
        // for the CPU's predictor, half the fit's time when it was one): every row is written
        // to the left end and to a buffer of the right ones, and only the side it belongs to
        // moves on. The order within a side differs from a swapping partition; nothing in a
        // tree depends on it (a node reads its rows' range and which features vary), so the
        // tree is the same.
        right.clear();
        right.resize(vals.len(), 0);
        let mut n_left = 0;
        for (k, &x) in vals.iter().enumerate() {
            let r = sample[lo + k];
            sample[lo + n_left] = r;
            right[k - n_left] = r;
            n_left += usize::from(x <= thr);
        }
        let i = lo + n_left;
        sample[i..hi].copy_from_slice(&right[..hi - i]);
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

    /// The textbook tree (every feature's range over the node's rows, a swapping partition):
    /// what `build_tree` did before it scanned one feature's range and partitioned without
    /// branches, and the tree it must still build.
    fn reference_tree(
        data: &[f64],
        nf: usize,
        mut sample: Vec<u32>,
        max_depth: usize,
        rng: &mut SplitMix64,
    ) -> Tree {
        let mut nodes = vec![Node {
            feature: LEAF,
            left: 0,
            value: 0.0,
        }];
        let mut stack = vec![(0usize, 0usize, sample.len(), 0usize)];
        while let Some((ni, lo, hi, depth)) = stack.pop() {
            let m = hi - lo;
            let leaf_value = depth as f64 + average_path_length(m);
            if m <= 1 || depth >= max_depth {
                nodes[ni].value = leaf_value;
                continue;
            }
            let (mut mins, mut maxs) = (vec![f64::INFINITY; nf], vec![f64::NEG_INFINITY; nf]);
            for &r in &sample[lo..hi] {
                for f in 0..nf {
                    mins[f] = mins[f].min(data[r as usize * nf + f]);
                    maxs[f] = maxs[f].max(data[r as usize * nf + f]);
                }
            }
            let candidates: Vec<usize> = (0..nf).filter(|&f| maxs[f] > mins[f]).collect();
            if candidates.is_empty() {
                nodes[ni].value = leaf_value;
                continue;
            }
            let f = candidates[rng.below(candidates.len())];
            let mut thr = mins[f] + rng.next_f64() * (maxs[f] - mins[f]);
            if thr >= maxs[f] {
                thr = mins[f];
            }
            let (mut i, mut j) = (lo, hi);
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
            nodes.push(Node {
                feature: LEAF,
                left: 0,
                value: 0.0,
            });
            nodes[ni] = Node {
                feature: f as u32,
                left: left as u32,
                value: thr,
            };
            stack.push((left, lo, i, depth + 1));
            stack.push((left + 1, i, hi, depth + 1));
        }
        Tree { nodes }
    }

    #[test]
    fn trees_are_the_textbook_trees() {
        let mut rng = SplitMix64::new(7);
        for case in 0..40 {
            let nf = 1 + case % 6;
            let n = 1 + (case * 37) % 300;
            // Ties (values on a coarse grid), a constant feature, NaNs, infinities.
            let data: Vec<f64> = (0..n * nf)
                .map(|k| match (k % nf, rng.below(50)) {
                    (0, _) if nf > 2 => 3.0,
                    (_, 0) => f64::NAN,
                    (_, 1) if case % 5 == 0 => f64::INFINITY,
                    (_, x) => (x % (2 + case % 9)) as f64 * 0.5,
                })
                .collect();
            let sample: Vec<u32> = (0..n as u32).collect();
            let depth = 1 + case % 9;
            let (mut a, mut b) = (SplitMix64::new(case as u64), SplitMix64::new(case as u64));
            let new = build_tree(&data, nf, sample.clone(), depth, &mut a);
            let old = reference_tree(&data, nf, sample, depth, &mut b);
            let show = |t: &Tree| {
                t.nodes
                    .iter()
                    .map(|n| (n.feature, n.left, n.value.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(show(&new), show(&old), "case {case}");
            assert!(new.nodes.len() > 1 || n < 2, "case {case}: a tree");
        }
    }

    fn gaussian_cloud(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
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
    fn anomaly_iforest_fixed_layout_equals_node_walk() {
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
            let fixed = f.fixed.as_ref().expect("fixed layout");
            let mut rows = data.clone();
            rows.extend_from_slice(&[50.0, -50.0, f64::NAN, 0.0, f64::INFINITY, 1.0]);
            let padded: Vec<[f64; ROW]> = rows
                .chunks_exact(2)
                .map(|r| {
                    let mut p = [0.0; ROW];
                    p[..2].copy_from_slice(r);
                    p
                })
                .collect();
            for (block, rows) in padded.chunks(BLOCK).zip(rows.chunks(2 * BLOCK)) {
                let mut block = block.to_vec();
                block.resize(block.len().next_multiple_of(LANES), [0.0; ROW]);
                let mut out = vec![0.0; rows.len() / 2];
                fixed.path_length_sums(&block, &mut out);
                for (row, got) in rows.chunks_exact(2).zip(&out) {
                    let want: f64 = f.trees.iter().map(|t| t.path_length(row)).sum();
                    assert_eq!(want.to_bits(), got.to_bits(), "n {n}, row {row:?}");
                }
            }
            // The batch (over threads, in blocks, any remainder) and row by row agree.
            for (row, s) in rows.chunks_exact(2).zip(f.score_many(&rows)) {
                assert_eq!(f.score(row).to_bits(), s.to_bits());
            }
        }
    }

    #[test]
    fn anomaly_iforest_without_fixed_layout_scores_the_same_way() {
        // Deeper than 8 (512 samples a tree) or wider than 8 features: the node-by-node walk.
        let wide: Vec<f64> = gaussian_cloud(3000, 5);
        for (nf, max_samples) in [(2, 512), (10, 256)] {
            let p = IForestParams {
                max_samples,
                n_trees: 20,
                ..IForestParams::default()
            };
            let f = IsolationForest::fit(&wide, nf, &p).expect("forest");
            assert!(f.fixed.is_none());
            let many = f.score_many(&wide);
            for (row, s) in wide.chunks_exact(nf).zip(&many) {
                let total: f64 = f.trees.iter().map(|t| t.path_length(row)).sum();
                let want = (-total / (f.trees.len() as f64 * f.c_psi)).exp2();
                assert_eq!(want.to_bits(), s.to_bits());
                assert_eq!(f.score(row).to_bits(), s.to_bits());
            }
        }
    }

    #[test]
    fn anomaly_iforest_parts_equal_the_whole_matrix() {
        let data = gaussian_cloud(5000, 13);
        let p = IForestParams::default();
        let whole = IsolationForest::fit(&data, 2, &p).expect("forest");
        let want = whole.score_many(&data);
        // Uneven pieces, an empty one among them.
        let parts: Vec<&[f64]> = vec![&data[..2], &data[2..3000], &[], &data[3000..]];
        let f = IsolationForest::fit_parts(&parts, 2, &p).expect("forest");
        let got: Vec<f64> = f.score_many_parts(&parts).concat();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert!(IsolationForest::fit_parts(&[&data[..3]], 2, &p).is_none());
        assert!(IsolationForest::fit_parts(&[&[], &[]], 2, &p).is_none());
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
