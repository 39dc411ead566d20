//! Batch scoring over many series at once (feature `testkit`: the STL + IF bench and the Python
//! reference test; the product runs [`super::evaluate_many_with_resets`] per series): STL per
//! series (per life) and one forest over all points' features, with the exact inputs of both
//! stages exposed so that a reference implementation can be run on the same numbers.

use super::iforest::IsolationForest;
use super::lives::{LifeGrid, split_lives};
use super::model::AnchorModel;
use super::{N_FEATURES, Prepared, SeriesRef, StlIfConfig};

/// Per-series inputs of the batch scoring, exposed so that a reference implementation can be run
/// on exactly the same numbers.
#[derive(Debug, Clone, Default)]
pub struct BatchParts {
    /// Per series, per life: the `stl_step_s` series STL was run on.
    pub stl_inputs: Vec<Vec<Vec<f64>>>,
    /// Row-major features, [`N_FEATURES`] per row, all series one after the other.
    pub features: Vec<f64>,
    /// Rows (evaluation points) of each series.
    pub rows: Vec<usize>,
}

/// Batch scoring over many series at once (the perf bench): STL per series (per life) + one
/// forest over all points' features. Returns per series the IF scores (0..1) of its evaluation
/// points: every `stl_step_s`-aligned time where it has data, in time order.
pub fn score_batch(series: &[SeriesRef<'_>], cfg: &StlIfConfig) -> Vec<Vec<f64>> {
    // The feature matrix stays in the pieces the threads built (fitted and scored as one
    // matrix, never copied into one).
    let chunks = batch_chunks(series, cfg, false);
    let parts: Vec<&[f64]> = chunks.iter().map(|c| c.features.as_slice()).collect();
    let scores = match IsolationForest::fit_parts(&parts, N_FEATURES, &cfg.forest) {
        Some(forest) => forest.score_many_parts(&parts),
        None => parts
            .iter()
            .map(|p| vec![0.0; p.len() / N_FEATURES])
            .collect(),
    };
    let mut out = Vec::with_capacity(series.len());
    for (chunk, scores) in chunks.iter().zip(&scores) {
        let mut at = 0;
        for n in &chunk.rows {
            out.push(
                scores
                    .get(at..at + n)
                    .map(<[f64]>::to_vec)
                    .unwrap_or_else(|| vec![0.0; *n]),
            );
            at += n;
        }
    }
    out
}

/// The STL inputs (when `keep_stl_inputs`) and the feature matrix of [`score_batch`].
pub fn batch_parts(
    series: &[SeriesRef<'_>],
    cfg: &StlIfConfig,
    keep_stl_inputs: bool,
) -> BatchParts {
    let chunks = batch_chunks(series, cfg, keep_stl_inputs);
    let mut parts = BatchParts::default();
    // The first piece grows into the whole matrix (a large buffer is extended in place, without
    // a copy), the others are appended and freed one by one: at most the matrix and one piece
    // are held at once, not twice the matrix.
    let total: usize = chunks.iter().map(|c| c.features.len()).sum();
    for (i, c) in chunks.into_iter().enumerate() {
        if i == 0 {
            parts.features = c.features;
            parts.features.reserve_exact(total - parts.features.len());
        } else {
            parts.features.extend_from_slice(&c.features);
        }
        parts.stl_inputs.extend(c.stl_inputs);
        parts.rows.extend(c.rows);
    }
    parts
}

/// [`batch_parts`] in pieces of consecutive series, in order. The series are handed to the
/// threads [`SERIES_PER_PIECE`] at a time rather than split evenly up front: on a shared machine
/// one thread can get less CPU than another, and with an even split its share alone sets the
/// wall time.
fn batch_chunks(
    series: &[SeriesRef<'_>],
    cfg: &StlIfConfig,
    keep_stl_inputs: bool,
) -> Vec<BatchParts> {
    let n_pieces = series.len().div_ceil(SERIES_PER_PIECE);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n_pieces.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut pieces: Vec<(usize, BatchParts)> = Vec::with_capacity(n_pieces);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = series.chunks(SERIES_PER_PIECE).nth(i) else {
                            break;
                        };
                        let mut out = BatchParts::default();
                        for sr in chunk {
                            let (stl_in, rows) =
                                series_batch_features(*sr, cfg, keep_stl_inputs, &mut out.features);
                            out.stl_inputs.push(stl_in);
                            out.rows.push(rows);
                        }
                        done.push((i, out));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            pieces.extend(h.join().unwrap_or_default());
        }
    });
    pieces.sort_unstable_by_key(|(i, _)| *i);
    // A piece whose thread panicked is missing: its series get no rows (one entry per series
    // all the same, so that the others keep their places).
    let mut pieces = pieces.into_iter().peekable();
    series
        .chunks(SERIES_PER_PIECE)
        .enumerate()
        .map(|(i, chunk)| match pieces.next_if(|(j, _)| *j == i) {
            Some((_, p)) => p,
            None => BatchParts {
                stl_inputs: vec![Vec::new(); chunk.len()],
                features: Vec::new(),
                rows: vec![0; chunk.len()],
            },
        })
        .collect()
}

/// Series per piece of [`batch_chunks`] (about 32,000 feature rows for a week of 1-minute data).
pub(super) const SERIES_PER_PIECE: usize = 16;

/// One series' STL inputs (per life) and row count; its feature rows are appended to `feats`.
fn series_batch_features(
    series: SeriesRef<'_>,
    cfg: &StlIfConfig,
    keep: bool,
    feats: &mut Vec<f64>,
) -> (Vec<Vec<f64>>, usize) {
    let Ok(p) = Prepared::new(series, cfg) else {
        return (Vec::new(), 0);
    };
    let mut stl_inputs = Vec::new();
    let mut rows = 0;
    for (lo, hi) in split_lives(&p.ts[..], &p.vs[..], &p.resets, cfg) {
        let Some(life) = LifeGrid::build(&p.ts[lo..hi], &p.vs[lo..hi], cfg) else {
            continue;
        };
        let Some(model) = AnchorModel::fit_life(&life, cfg, false) else {
            continue;
        };
        if keep {
            stl_inputs.push(model.stl_input.clone());
        }
        let n = model.train_rows.len() / N_FEATURES;
        feats.extend_from_slice(&model.train_rows[..n * N_FEATURES]);
        rows += n;
    }
    (stl_inputs, rows)
}

/// One anchor of a replay: the inputs of its STL fit and its forest, and how many evaluations
/// it served (the product's path, [`super::evaluate_many_with_resets`], fits each once and
/// caches it).
#[derive(Debug, Clone, Default)]
pub struct AnchorParts {
    /// The `stl_step_s` series STL was run on.
    pub stl_input: Vec<f64>,
    /// Row-major training features, [`N_FEATURES`] per row.
    pub train_rows: Vec<f64>,
    /// Whether a forest was fitted (enough training rows).
    pub forest: bool,
    /// Evaluations scored with this anchor's forest.
    pub evals: usize,
}

/// The anchors [`super::evaluate_many_with_resets`] fits for `series` evaluated at `at_s`, in
/// order, with their exact inputs: what a reference implementation must do to do the same work.
pub fn replay_anchors(
    series: SeriesRef<'_>,
    resets_s: &[i64],
    at_s: &[i64],
    cfg: &StlIfConfig,
) -> Vec<AnchorParts> {
    let Ok(mut p) = Prepared::new(series, cfg) else {
        return Vec::new();
    };
    p.resets = resets_s.to_vec();
    p.resets.sort_unstable();
    let mut out: Vec<AnchorParts> = Vec::new();
    let mut last: Option<(i64, bool)> = None;
    for &now in at_s {
        let hi = p.ts.partition_point(|t| *t <= now);
        let lo =
            p.ts.partition_point(|t| *t <= now - cfg.eval_window_s.min(cfg.window_s));
        let (ts, vs) = (&p.ts[lo..hi], &p.vs[lo..hi]);
        if ts.len() < cfg.min_points {
            continue;
        }
        let lives = split_lives(ts, vs, &p.resets, cfg);
        let Some(&(clo, chi)) = lives.last() else {
            continue;
        };
        if now - ts[chi - 1] > cfg.stale_s
            || LifeGrid::build(&ts[clo..chi], &vs[clo..chi], cfg).is_none()
        {
            continue;
        }
        let anchor = now.div_euclid(cfg.refit_every_s.max(1)) * cfg.refit_every_s.max(1);
        if ts[clo] > anchor {
            continue;
        }
        if last.is_none_or(|(a, _)| a != anchor) {
            let model = p.fit_anchor(anchor, cfg);
            last = Some((anchor, model.is_some()));
            if let Some(m) = model {
                out.push(AnchorParts {
                    stl_input: m.stl_input,
                    train_rows: m.train_rows,
                    forest: m.forest.is_some(),
                    evals: 0,
                });
            }
        }
        if let (Some((_, true)), Some(a)) = (last, out.last_mut()) {
            a.evals += 1;
        }
    }
    out
}
