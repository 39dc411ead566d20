//! The STL + Isolation Forest leak detector (`stl_iforest`).
//!
//! ```text
//!  (ts, go_goroutines) ──lives (split at resets)──▶ current life on a 1-min grid (last 2 days)
//!        │                                                   │ minus the daily seasonal profile
//!        └─ at the last anchor (every 3 h) ≤ now, on the     ▼ = deseasonalized level d(t)
//!           life's last 4 days: robust STL on a 5-min grid   growth rules on d(t) (and on the
//!           (daily season when ≥ 2 days), features of every  raw level for day-over-day tests)
//!           5-min point ──▶ Isolation Forest (cached)        │
//!  now: features(now) ──▶ IF score ──▶ gate ─────────── AND ─┴──▶ Verdict
//! ```
//!
//! # Decision rule
//! An Isolation Forest alone flags whatever is unusual (a burst, a deploy step, a batch); a leak
//! is *sustained, steady growth*. So the detector fires when **a growth rule holds and the IF
//! gate passes**:
//!
//! - **fast**: over the last `fast_span_min` (10) minutes, in `fast_blocks` (5) blocks of 2
//!   minutes, every block mean is above the previous one, each step carries between
//!   `fast_min_step_share` (10%) and `max_step_share` (50%) of the rise, the rise is
//!   ≥ `fast_min_rise_sigma` (6) noise sigmas and the slope ≥ `fast_min_growth_per_s` (0.5/s). A
//!   burst, a batch start or a deploy is a step then flat, so it fails; a leak of ≥ 1/s is caught
//!   8–15 minutes after it starts.
//! - **slow**: over the last `slow_horizon_min` (6 h) of the life (at least `slow_min_span_min`,
//!   2 h), the medians of 30-minute blocks rise in ≥ `slow_min_share_up` (80%) of the steps, no
//!   step carries more than min(`max_step_share`, 2.5 / (blocks − 1)) of the rise (a deploy or a
//!   batch start is one step), the rise is ≥ `slow_min_rise_sigma` (4) sigmas and the slope
//!   ≥ `slow_min_growth_per_s` (0.2/min). Daily traffic is handled by the history available:
//!   - ≥ 2 days in the life: the growth is measured on the STL-deseasonalized level;
//!   - ≥ 1 day (so also with ≥ 2): in addition, either (a) the rise beats the rise over the same
//!     hours yesterday by `dod_min_frac` (50%) of it (a leak younger than a day), or (b) the raw
//!     level is far above yesterday's (≥ 50% of the rise scaled to a day) and got there by a
//!     steady climb: over 25 hourly blocks, no two consecutive steps carry more than half of the
//!     climb, and the climb explains ≥ 75% of the day-over-day difference (a leak older than a
//!     day; a deploy step fails);
//!   - < 1 day: there is no way to tell a morning ramp from a leak over a few hours, so the
//!     rise must also have lasted `young_long_min` (18 h: a daily cycle rises for 12 h at most)
//!     with the same tests over 30-minute blocks and reach `young_min_rise_frac` (50%) of the
//!     life's starting level. **Limitation**: a slow leak that starts with a brand-new series (no
//!     history at all) is seen after about 18 h, or by the quick rule below if it is fast enough.
//! - **young** (life < 1 day): over the last `young_quick_min` (2 h), six 20-minute block
//!   medians all rise, steadily, by ≥ 4 sigmas and ≥ `young_quick_rise_frac` (100%) of the
//!   highest level the life had before the window (at least an hour of it). A daily cycle cannot
//!   do that: even with a 4x day/night swing, two hours of its ramp add about a third of the
//!   level.
//! - **sawtooth** (OOM restarts): the last `sawtooth_min_cycles` (2) completed lives each grew
//!   steadily (the slow-rule tests over the whole life, ≥ `sawtooth_min_life_min` minutes) until
//!   a reset (a sample below `reset_ratio` = half the previous one), and the current life is not
//!   shrinking. Restarts without growth, bursts and batches fail the steadiness tests.
//! - **IF gate**: a forest fitted at the last anchor on the features of the life's 5-minute
//!   points up to it (the series' own history) scores the features at `now`; the gate passes when
//!   that score is ≥ the `if_gate_quantile` (median) of the training points' scores: now must be
//!   at least as unusual as a typical point of the series — or when the level is above every
//!   training point's (ln(level / start) feature): a leak that has run for longer than the
//!   training window looks usual in every other feature. Before the life has
//!   `min_train_points` (24) 5-minute points at an anchor, there is no forest and the gate is
//!   open: the growth rules alone decide. The growth rules carry most of the decision; the gate
//!   vetoes growth that looks like the series' usual behaviour.
//!
//! Features (per 5-minute point): STL residual / sigma, slope of `d` over 15 min, 1 h, 6 h (per
//! minute / sigma), monotonicity (rising minus falling 15-minute block means over the last 6 h
//! of the life, / blocks), and ln(level / the life's starting level).
//!
//! `score = 0.5 · evidence + 0.5 · IF score`, where evidence is 1 when a growth rule holds, and
//! otherwise how close the best rule came (the smallest ratio observed/required over its tests).
//! `onset_s`: the break of the best "flat, then linear rise" fit over the life's last 2 days (for
//! a sawtooth, the start of the first growing life).
//!
//! # Cost
//! STL and the forest run once per (series, anchor) and are cached by [`evaluate_many`]; every
//! evaluation then costs O(2 days of 1-minute points). [`evaluate`] is the same computation
//! without the cache (same answers; tested).

pub mod iforest;
pub mod stl;
mod stl_loess;

use std::collections::HashMap;
use std::sync::Arc;

use iforest::{IForestParams, IsolationForest};
use stl::{StlParams, decompose, median_in_place};

/// Configuration of the STL + Isolation Forest detector. Durations in seconds or minutes as
/// named; growth in goroutines per second.
#[derive(Debug, Clone, PartialEq)]
pub struct StlIfConfig {
    /// Grid the raw samples are binned on (mean per bin, linear interpolation across gaps).
    pub grid_step_s: i64,
    /// Grid STL and the features run on (mean of the 1-minute bins).
    pub stl_step_s: i64,
    /// Seasonal period (a day).
    pub period_s: i64,
    /// History the STL fit and the forest see (at each anchor).
    pub window_s: i64,
    /// History the growth rules see at each evaluation (≥ a day and a half: the day-over-day
    /// tests look 24 h + 6 h back).
    pub eval_window_s: i64,
    /// STL and the forest are refitted at multiples of this (cached in between; 3 h: a 7-day
    /// replay every 5 minutes then costs ~56 fits per series).
    pub refit_every_s: i64,
    pub stl: StlParams,
    pub forest: IForestParams,
    /// 5-minute points a life needs at the anchor before a forest is fitted.
    pub min_train_points: usize,
    /// The gate passes when the IF score at now ≥ this quantile of the training scores.
    pub if_gate_quantile: f64,
    /// A sample below `reset_ratio` × the previous one (and at least `reset_min_drop` lower)
    /// starts a new life (pod restart / counter reset).
    pub reset_ratio: f64,
    pub reset_min_drop: f64,
    /// A gap longer than this starts a new life as well.
    pub max_gap_s: i64,
    /// No sample for this long before now: not evaluated.
    pub stale_s: i64,
    /// Fewer finite samples than this in the window: not evaluated.
    pub min_points: usize,
    pub fast_span_min: usize,
    pub fast_blocks: usize,
    pub fast_min_growth_per_s: f64,
    pub fast_min_rise_sigma: f64,
    /// Smallest share of the rise each fast-rule step must carry (a step then flat fails).
    pub fast_min_step_share: f64,
    pub slow_horizon_min: usize,
    pub slow_min_span_min: usize,
    pub slow_block_min: usize,
    pub slow_min_growth_per_s: f64,
    pub slow_min_share_up: f64,
    pub slow_min_rise_sigma: f64,
    /// Largest share of the total rise a single block-to-block step may carry.
    pub max_step_share: f64,
    pub young_min_rise_frac: f64,
    /// Pod younger than a day, slow rule: the rise must also have lasted this long (longer than
    /// any daily ramp: a daily cycle rises for half a day at most).
    pub young_long_min: usize,
    /// Pod younger than a day, quick rule: over `young_quick_min`, steady growth of at least
    /// `young_quick_rise_frac` x the highest level the life had before (a daily cycle raises the
    /// level by a third of its mean in two hours at most, even with a 4x day/night swing).
    pub young_quick_min: usize,
    pub young_quick_rise_frac: f64,
    pub dod_min_frac: f64,
    pub sawtooth_min_cycles: usize,
    pub sawtooth_min_life_min: usize,
    /// Slope horizons of the features, minutes.
    pub horizons_min: [usize; 3],
}

impl Default for StlIfConfig {
    fn default() -> Self {
        Self {
            grid_step_s: 60,
            stl_step_s: 300,
            period_s: 86_400,
            window_s: 4 * 86_400,
            eval_window_s: 2 * 86_400,
            refit_every_s: 3 * 3_600,
            stl: StlParams::default(),
            forest: IForestParams::default(),
            min_train_points: 24,
            if_gate_quantile: 0.5,
            reset_ratio: 0.5,
            reset_min_drop: 5.0,
            max_gap_s: 1_800,
            stale_s: 900,
            min_points: 10,
            fast_span_min: 10,
            fast_blocks: 5,
            fast_min_growth_per_s: 0.5,
            fast_min_rise_sigma: 6.0,
            fast_min_step_share: 0.1,
            slow_horizon_min: 360,
            slow_min_span_min: 120,
            slow_block_min: 30,
            slow_min_growth_per_s: 0.2 / 60.0,
            slow_min_share_up: 0.8,
            slow_min_rise_sigma: 4.0,
            max_step_share: 0.5,
            young_min_rise_frac: 0.5,
            young_long_min: 18 * 60,
            young_quick_min: 120,
            young_quick_rise_frac: 1.0,
            dod_min_frac: 0.5,
            sawtooth_min_cycles: 2,
            sawtooth_min_life_min: 20,
            horizons_min: [15, 60, 360],
        }
    }
}

/// One series: sorted timestamps (seconds) and values of the same length.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    pub ts_s: &'a [i64],
    pub values: &'a [f64],
}

/// The detector's answer at one evaluation time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// A leak, per this detector, at `now_s`.
    pub fired: bool,
    /// 0..1, higher = more anomalous/leaky.
    pub score: f64,
    /// Estimated start of the growth.
    pub onset_s: Option<i64>,
    /// Trend slope at now, goroutines per second.
    pub growth_per_s: f64,
    /// One human sentence with the numbers.
    pub reason: String,
}

impl Verdict {
    fn quiet(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }
}

/// Number of features per point.
pub const N_FEATURES: usize = 6;

/// Evaluate using only points with ts <= now_s (as if live).
pub fn evaluate(series: SeriesRef<'_>, now_s: i64, cfg: &StlIfConfig) -> Verdict {
    let mut cache = AnchorCache::default();
    match Prepared::new(series, cfg) {
        Ok(p) => p.eval(now_s, cfg, &mut cache),
        Err(reason) => Verdict::quiet(reason),
    }
}

/// Batch form for the same series at many evaluation times (replay): same answers as calling
/// [`evaluate`] at each time, faster (STL and forest cached per anchor).
pub fn evaluate_many(series: SeriesRef<'_>, at_s: &[i64], cfg: &StlIfConfig) -> Vec<Verdict> {
    evaluate_many_with_resets(series, &[], at_s, cfg)
}

/// [`evaluate_many`] with the times at which the series is known to restart (a new process
/// start time or a container restart, from the scrape's metadata): each starts a new life, in
/// addition to the resets read from the values.
pub fn evaluate_many_with_resets(
    series: SeriesRef<'_>,
    resets_s: &[i64],
    at_s: &[i64],
    cfg: &StlIfConfig,
) -> Vec<Verdict> {
    let mut cache = AnchorCache::default();
    match Prepared::new(series, cfg).map(|mut p| {
        p.resets = resets_s.to_vec();
        p.resets.sort_unstable();
        p
    }) {
        Ok(p) => at_s.iter().map(|t| p.eval(*t, cfg, &mut cache)).collect(),
        Err(reason) => at_s
            .iter()
            .map(|_| Verdict::quiet(reason.clone()))
            .collect(),
    }
}

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
const SERIES_PER_PIECE: usize = 16;

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

// ---------------------------------------------------------------------------------------------
// Preparation: the finite, sorted samples of a series.

struct Prepared {
    ts: Vec<i64>,
    vs: Vec<f64>,
    /// Known restarts (sorted): a life starts at the first sample at or after each.
    resets: Vec<i64>,
}

impl Prepared {
    fn new(series: SeriesRef<'_>, cfg: &StlIfConfig) -> Result<Self, String> {
        if cfg.grid_step_s <= 0 || cfg.stl_step_s < cfg.grid_step_s || cfg.period_s <= 0 {
            return Err("stl_iforest: invalid configuration (grid, STL step or period).".into());
        }
        let n = series.ts_s.len().min(series.values.len());
        if series.ts_s[..n].windows(2).any(|w| w[1] < w[0]) {
            return Err("stl_iforest: timestamps are not sorted; not evaluated.".into());
        }
        let mut ts = Vec::with_capacity(n);
        let mut vs = Vec::with_capacity(n);
        for (t, v) in series.ts_s[..n].iter().zip(&series.values[..n]) {
            if v.is_finite() {
                ts.push(*t);
                vs.push(*v);
            }
        }
        Ok(Self {
            ts,
            vs,
            resets: Vec::new(),
        })
    }

    fn eval(&self, now: i64, cfg: &StlIfConfig, cache: &mut AnchorCache) -> Verdict {
        let hi = self.ts.partition_point(|t| *t <= now);
        let lo = self
            .ts
            .partition_point(|t| *t <= now - cfg.eval_window_s.min(cfg.window_s));
        let (ts, vs) = (&self.ts[lo..hi], &self.vs[lo..hi]);
        if ts.len() < cfg.min_points {
            return Verdict::quiet(format!(
                "stl_iforest: {} finite samples in the window, fewer than {}; not evaluated.",
                ts.len(),
                cfg.min_points
            ));
        }
        let lives = split_lives(ts, vs, &self.resets, cfg);
        let Some(&(clo, chi)) = lives.last() else {
            return Verdict::quiet("stl_iforest: no data; not evaluated.");
        };
        let last_ts = ts[chi - 1];
        if now - last_ts > cfg.stale_s {
            return Verdict::quiet(format!(
                "stl_iforest: no sample for {} s before now; not evaluated.",
                now - last_ts
            ));
        }
        let Some(life) = LifeGrid::build(&ts[clo..chi], &vs[clo..chi], cfg) else {
            return Verdict::quiet("stl_iforest: the current life is too short; not evaluated.");
        };
        // The anchor model: fitted on the data up to the last anchor, valid if the current life
        // had started by then.
        let anchor = now.div_euclid(cfg.refit_every_s.max(1)) * cfg.refit_every_s.max(1);
        let model = if ts[clo] <= anchor {
            cache.get(anchor, || self.fit_anchor(anchor, cfg))
        } else {
            None
        };
        decide(self, ts, vs, &lives, &life, model.as_deref(), now, cfg)
    }

    fn fit_anchor(&self, anchor: i64, cfg: &StlIfConfig) -> Option<AnchorModel> {
        let hi = self.ts.partition_point(|t| *t <= anchor);
        let lo = self.ts.partition_point(|t| *t <= anchor - cfg.window_s);
        let (ts, vs) = (&self.ts[lo..hi], &self.vs[lo..hi]);
        let &(clo, chi) = split_lives(ts, vs, &self.resets, cfg).last()?;
        if anchor - ts.get(chi.checked_sub(1)?)? > cfg.stale_s {
            return None;
        }
        let life = LifeGrid::build(&ts[clo..chi], &vs[clo..chi], cfg)?;
        AnchorModel::fit_life(&life, cfg, true)
    }
}

#[derive(Default)]
struct AnchorCache {
    models: HashMap<i64, Option<Arc<AnchorModel>>>,
}

impl AnchorCache {
    fn get(
        &mut self,
        anchor: i64,
        fit: impl FnOnce() -> Option<AnchorModel>,
    ) -> Option<Arc<AnchorModel>> {
        if let Some(m) = self.models.get(&anchor) {
            return m.clone();
        }
        let m = fit().map(Arc::new);
        // A replay moves forward: older anchors are not needed again.
        self.models.retain(|a, _| *a > anchor - 86_400);
        self.models.insert(anchor, m.clone());
        m
    }
}

/// Splits samples into lives: a new life at a reset (a drop below `reset_ratio` × the previous
/// sample) or after a gap longer than `max_gap_s`. Returns index ranges.
///
/// A drop is not a reset when the last 30 minutes of the life hold a one-sample jump up of at
/// least half its size: that is the end of a burst (its goroutines finish and the level returns
/// to where it was), not a new process, which restarts from a level that was climbed to
/// gradually or was there all along.
///
/// `resets` (sorted) are known restarts: a life starts at the first sample after each.
fn split_lives(ts: &[i64], vs: &[f64], resets: &[i64], cfg: &StlIfConfig) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if ts.is_empty() {
        return out;
    }
    let mut start = 0;
    for i in 1..ts.len() {
        let known = {
            let r = resets.partition_point(|r| *r <= ts[i - 1]);
            resets.get(r).is_some_and(|r| *r <= ts[i])
        };
        let drop = vs[i - 1] - vs[i];
        let reset = vs[i] < cfg.reset_ratio * vs[i - 1] && drop >= cfg.reset_min_drop && {
            let from = ts.partition_point(|t| *t < ts[i] - 1_800).max(start + 1);
            !(from..i).any(|k| vs[k] - vs[k - 1] >= 0.5 * drop)
        };
        let gap = ts[i] - ts[i - 1] > cfg.max_gap_s;
        if known || reset || gap {
            out.push((start, i));
            start = i;
        }
    }
    out.push((start, ts.len()));
    out
}

// ---------------------------------------------------------------------------------------------
// One life on the 1-minute grid.

struct LifeGrid {
    /// Absolute grid index of the first bin (ts = index × grid_step_s).
    first_bin: i64,
    step_s: i64,
    v: Vec<f64>,
}

impl LifeGrid {
    fn build(ts: &[i64], vs: &[f64], cfg: &StlIfConfig) -> Option<Self> {
        let step = cfg.grid_step_s;
        let first_bin = ts.first()?.div_euclid(step);
        let last_bin = ts.last()?.div_euclid(step);
        let n = usize::try_from(last_bin - first_bin + 1).ok()?;
        if n < 2 {
            return None;
        }
        let mut sum = vec![0.0; n];
        let mut cnt = vec![0u32; n];
        for (t, v) in ts.iter().zip(vs) {
            let i = (t.div_euclid(step) - first_bin) as usize;
            sum[i] += v;
            cnt[i] += 1;
        }
        let mut v = vec![f64::NAN; n];
        for i in 0..n {
            if cnt[i] > 0 {
                v[i] = sum[i] / cnt[i] as f64;
            }
        }
        // Linear interpolation across empty bins (the first and last bins are filled).
        let mut prev = 0usize;
        for i in 1..n {
            if !v[i].is_nan() {
                if i > prev + 1 {
                    let (a, b) = (v[prev], v[i]);
                    for (j, x) in v.iter_mut().enumerate().take(i).skip(prev + 1) {
                        let f = (j - prev) as f64 / (i - prev) as f64;
                        *x = a + (b - a) * f;
                    }
                }
                prev = i;
            }
        }
        Some(Self {
            first_bin,
            step_s: step,
            v,
        })
    }

    fn ts(&self, i: usize) -> i64 {
        (self.first_bin + i as i64) * self.step_s
    }

    fn minutes(&self, n: usize) -> usize {
        // Grid points in `n` minutes.
        ((n as i64 * 60) / self.step_s).max(1) as usize
    }
}

/// Prefix sums for O(1) window means and least-squares slopes.
struct Prefix {
    s0: Vec<f64>,
    s1: Vec<f64>,
}

impl Prefix {
    fn new(d: &[f64]) -> Self {
        let mut s0 = Vec::with_capacity(d.len() + 1);
        let mut s1 = Vec::with_capacity(d.len() + 1);
        s0.push(0.0);
        s1.push(0.0);
        for (i, x) in d.iter().enumerate() {
            s0.push(s0[i] + x);
            s1.push(s1[i] + i as f64 * x);
        }
        Self { s0, s1 }
    }

    /// Mean of d[lo..hi].
    fn mean(&self, lo: usize, hi: usize) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        (self.s0[hi] - self.s0[lo]) / (hi - lo) as f64
    }

    /// Least-squares slope of d[lo..hi] per grid step.
    fn slope(&self, lo: usize, hi: usize) -> f64 {
        let w = hi.saturating_sub(lo);
        if w < 3 {
            return 0.0;
        }
        let wf = w as f64;
        let sy = self.s0[hi] - self.s0[lo];
        let sxy = self.s1[hi] - self.s1[lo];
        let xbar = (lo + hi - 1) as f64 / 2.0;
        let sxx = wf * (wf * wf - 1.0) / 12.0;
        (sxy - xbar * sy) / sxx
    }
}

/// Robust noise sigma of `d` from first differences (MAD × 1.4826 / √2), at least 1 goroutine.
fn noise_sigma(d: &[f64]) -> f64 {
    if d.len() < 3 {
        return 1.0;
    }
    let mut diffs: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let med = median_in_place(&mut diffs);
    let mut dev: Vec<f64> = diffs.iter().map(|x| (x - med).abs()).collect();
    let mad = median_in_place(&mut dev);
    (1.4826 * mad / std::f64::consts::SQRT_2).max(1.0)
}

// ---------------------------------------------------------------------------------------------
// The anchor model: STL of the life, the seasonal profile, the training features, the forest.

struct AnchorModel {
    /// Seasonal value per STL bin of the day (absolute bin index mod period), if any.
    profile: Option<Vec<f64>>,
    /// Trend at the last STL bin, its time (bin centre) and slope per second.
    trend_end: f64,
    trend_end_ts: i64,
    trend_slope_per_s: f64,
    sigma: f64,
    base: f64,
    stl_input: Vec<f64>,
    train_rows: Vec<f64>,
    forest: Option<IsolationForest>,
    gate: f64,
    /// Highest ln(level / start) among the training points.
    max_ratio: f64,
}

impl AnchorModel {
    fn fit_life(life: &LifeGrid, cfg: &StlIfConfig, with_forest: bool) -> Option<Self> {
        let per_stl = (cfg.stl_step_s / cfg.grid_step_s).max(1) as usize;
        let period = (cfg.period_s / cfg.stl_step_s).max(1) as usize;
        // STL bins aligned to absolute multiples of stl_step_s.
        let first_stl_bin = life.ts(0).div_euclid(cfg.stl_step_s);
        let last_stl_bin = life.ts(life.v.len() - 1).div_euclid(cfg.stl_step_s);
        let nb = usize::try_from(last_stl_bin - first_stl_bin + 1).ok()?;
        let mut sum = vec![0.0; nb];
        let mut cnt = vec![0usize; nb];
        // Grid times rise by `grid_step_s`: the STL bin moves on when a time reaches the next
        // bin's start (no division per point).
        let mut b = 0usize;
        let mut next_start = first_stl_bin
            .saturating_add(1)
            .saturating_mul(cfg.stl_step_s);
        for (i, v) in life.v.iter().enumerate() {
            let t = life.ts(i);
            while t >= next_start && b + 1 < nb {
                b += 1;
                next_start += cfg.stl_step_s;
            }
            sum[b] += v;
            cnt[b] += 1;
        }
        let y: Vec<f64> = sum
            .iter()
            .zip(&cnt)
            .map(|(s, c)| s / (*c).max(1) as f64)
            .collect();
        let dec = decompose(&y, period, &cfg.stl)?;
        let profile = dec.has_seasonal.then(|| {
            let mut prof = vec![0.0; period];
            // One period from the middle of the fit: the last cycle's seasonal values lean on
            // the last day alone (LOESS end effect) and soak up part of a recent step or leak.
            let from = nb.saturating_sub(period + period / 2);
            for (k, s) in dec.seasonal.iter().enumerate().skip(from).take(period) {
                let abs = first_stl_bin + k as i64;
                prof[abs.rem_euclid(period as i64) as usize] = *s;
            }
            prof
        });
        let d = deseasonalize(life, profile.as_deref(), cfg);
        let six_h = life.minutes(360);
        let sigma = noise_sigma(&d[d.len().saturating_sub(six_h)..]);
        let base = life_base(life);
        let pre = Prefix::new(&d);
        let mut rows = Vec::new();
        let mut n_rows = 0;
        // The grid points on a multiple of stl_step_s: every `per_stl`-th one from the first
        // when the steps divide (the default), else found one by one.
        let first_aligned = (0..life.v.len().min(per_stl))
            .find(|&i| life.ts(i).rem_euclid(cfg.stl_step_s) == 0)
            .unwrap_or(life.v.len());
        let aligned_stride = cfg.stl_step_s.rem_euclid(cfg.grid_step_s) == 0;
        let (from, stride) = if aligned_stride {
            (first_aligned, per_stl)
        } else {
            (0, 1)
        };
        for i in (from..life.v.len()).step_by(stride) {
            let t = life.ts(i);
            if t.rem_euclid(cfg.stl_step_s) != 0 {
                continue;
            }
            // The residual of the STL bin that ends at this point (the last complete one).
            let b = (t.div_euclid(cfg.stl_step_s) - 1 - first_stl_bin) as usize;
            let resid = if t.div_euclid(cfg.stl_step_s) > first_stl_bin {
                dec.resid.get(b).copied().unwrap_or(0.0)
            } else {
                0.0
            };
            rows.extend_from_slice(&features(life, &pre, i, sigma, base, resid, cfg));
            n_rows += 1;
        }
        let nb_last = nb - 1;
        let back = nb_last.min(12);
        let trend_slope_per_s = if back > 0 {
            (dec.trend[nb_last] - dec.trend[nb_last - back]) / (back as i64 * cfg.stl_step_s) as f64
        } else {
            0.0
        };
        let mut model = Self {
            profile,
            trend_end: dec.trend[nb_last],
            trend_end_ts: last_stl_bin * cfg.stl_step_s + cfg.stl_step_s / 2,
            trend_slope_per_s,
            sigma,
            base,
            stl_input: y,
            train_rows: rows,
            forest: None,
            gate: 1.0,
            max_ratio: f64::INFINITY,
        };
        if with_forest
            && n_rows >= cfg.min_train_points.max(2)
            && let Some(forest) = IsolationForest::fit(&model.train_rows, N_FEATURES, &cfg.forest)
        {
            {
                // The gate's quantile from at most 256 evenly spaced training rows (the scores of
                // neighbouring 5-minute points are nearly equal; scoring all of them at every
                // refit was a fifth of a replay's time).
                let stride = n_rows.div_ceil(256).max(1);
                let sample: Vec<f64> = model
                    .train_rows
                    .chunks_exact(N_FEATURES)
                    .step_by(stride)
                    .flatten()
                    .copied()
                    .collect();
                let mut scores = forest.score_many(&sample);
                scores.sort_by(f64::total_cmp);
                let q = cfg.if_gate_quantile.clamp(0.0, 1.0);
                let k = ((scores.len() - 1) as f64 * q).round() as usize;
                model.gate = scores.get(k).copied().unwrap_or(1.0);
                model.max_ratio = model
                    .train_rows
                    .chunks_exact(N_FEATURES)
                    .map(|r| r[N_FEATURES - 1])
                    .fold(f64::NEG_INFINITY, f64::max);
                model.forest = Some(forest);
            }
        }
        Some(model)
    }
}

fn seasonal_at(profile: Option<&[f64]>, ts: i64, cfg: &StlIfConfig) -> f64 {
    let Some(prof) = profile else {
        return 0.0;
    };
    if prof.is_empty() {
        return 0.0;
    }
    // Linear interpolation between STL bin centres.
    let x = (ts - cfg.stl_step_s / 2) as f64 / cfg.stl_step_s as f64;
    let b = x.floor();
    let f = x - b;
    let p = prof.len() as i64;
    let i0 = (b as i64).rem_euclid(p) as usize;
    let i1 = (b as i64 + 1).rem_euclid(p) as usize;
    prof[i0] * (1.0 - f) + prof[i1] * f
}

fn deseasonalize(life: &LifeGrid, profile: Option<&[f64]>, cfg: &StlIfConfig) -> Vec<f64> {
    life.v
        .iter()
        .enumerate()
        .map(|(i, v)| v - seasonal_at(profile, life.ts(i), cfg))
        .collect()
}

/// The life's starting level: median of its first hour.
fn life_base(life: &LifeGrid) -> f64 {
    let n = life.minutes(60).min(life.v.len());
    let mut first = life.v[..n].to_vec();
    median_in_place(&mut first).max(0.0)
}

/// Features of grid point `i` (see the module doc).
#[allow(clippy::too_many_arguments)]
fn features(
    life: &LifeGrid,
    pre: &Prefix,
    i: usize,
    sigma: f64,
    base: f64,
    resid: f64,
    cfg: &StlIfConfig,
) -> [f64; N_FEATURES] {
    let per_min = life.minutes(1) as f64;
    let hi = i + 1;
    let slope = |mins: usize| {
        let w = life.minutes(mins);
        pre.slope(hi.saturating_sub(w), hi) * per_min / sigma
    };
    let block = life.minutes(15);
    // At most 24 block means, newest first (no allocation: this runs for every 5-minute point).
    let mut means_buf = [0.0f64; 24];
    let mut count = 0;
    let mut end = hi;
    while count < means_buf.len() && end >= block {
        means_buf[count] = pre.mean(end - block, end);
        count += 1;
        end -= block;
    }
    let means = &means_buf[..count];
    let mono = if means.len() >= 2 {
        // means[0] is the newest block. Counted without branches (the data decides them at
        // random, and mispredicted they were a tenth of the batch's feature time).
        let (mut up, mut down) = (0u32, 0u32);
        for w in means.windows(2) {
            up += u32::from(w[0] > w[1]);
            down += u32::from(w[0] < w[1]);
        }
        (f64::from(up) - f64::from(down)) / (means.len() - 1) as f64
    } else {
        0.0
    };
    let w5 = life.minutes(5);
    let lo5 = hi.saturating_sub(w5);
    let level = life.v[lo5..hi].iter().sum::<f64>() / (hi - lo5) as f64;
    let ratio = ((level.max(0.0) + 1.0) / (base + 1.0)).ln();
    [
        resid / sigma,
        slope(cfg.horizons_min[0]),
        slope(cfg.horizons_min[1]),
        slope(cfg.horizons_min[2]),
        mono,
        ratio,
    ]
}

// ---------------------------------------------------------------------------------------------
// Growth tests and the decision.

/// Block means over d[hi - k·len .. hi]: rise, share of rising steps, largest step share, slope.
#[derive(Debug, Clone, Copy)]
struct Growth {
    rise: f64,
    share_up: f64,
    max_step_share: f64,
    min_step_share: f64,
    /// Largest share carried by two consecutive steps (a step straddling two blocks).
    max_pair_share: f64,
    slope_per_s: f64,
}

/// `Stat::Median` makes the blocks robust to bursts shorter than half a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    Mean,
    Median,
}

fn growth(
    d: &[f64],
    pre: &Prefix,
    hi: usize,
    block: usize,
    k: usize,
    step_s: i64,
    stat: Stat,
) -> Option<Growth> {
    if k < 2 || block == 0 || hi < k * block || hi > d.len() {
        return None;
    }
    let lo = hi - k * block;
    let mut buf = Vec::with_capacity(block);
    let means: Vec<f64> = (0..k)
        .map(|j| {
            let (a, b) = (lo + j * block, lo + (j + 1) * block);
            match stat {
                Stat::Mean => pre.mean(a, b),
                Stat::Median => {
                    buf.clear();
                    buf.extend_from_slice(&d[a..b]);
                    median_in_place(&mut buf)
                }
            }
        })
        .collect();
    let rise = means[k - 1] - means[0];
    let steps: Vec<f64> = means.windows(2).map(|w| w[1] - w[0]).collect();
    let up = steps.iter().filter(|s| **s > 0.0).count();
    let max_step = steps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min_step = steps.iter().copied().fold(f64::INFINITY, f64::min);
    let max_pair = steps
        .windows(2)
        .map(|w| w[0] + w[1])
        .fold(max_step, f64::max);
    let (max_step_share, min_step_share, max_pair_share) = if rise > 0.0 {
        (max_step / rise, min_step / rise, max_pair / rise)
    } else {
        (f64::INFINITY, 0.0, f64::INFINITY)
    };
    Some(Growth {
        rise,
        share_up: up as f64 / steps.len() as f64,
        max_step_share,
        min_step_share,
        max_pair_share,
        slope_per_s: rise / ((k - 1) * block) as f64 / step_s as f64,
    })
}

/// Largest share of the rise one of the `k - 1` block-to-block steps may carry: `max_step_share`,
/// tighter when there are many steps (a steady rise gives each about `1 / (k - 1)`).
fn allowed_step_share(k: usize, cfg: &StlIfConfig) -> f64 {
    cfg.max_step_share.min(2.5 / (k.max(2) - 1) as f64)
}

/// The slow rule's tests on `k` blocks of growth `g`: rising steps, no dominant step, a rise
/// above the noise, a slope above the floor.
fn slow_tests(g: &Growth, k: usize, sigma: f64, cfg: &StlIfConfig) -> [(f64, f64); 4] {
    [
        (g.share_up, cfg.slow_min_share_up),
        (allowed_step_share(k, cfg), g.max_step_share),
        (g.rise, cfg.slow_min_rise_sigma * sigma),
        (g.slope_per_s, cfg.slow_min_growth_per_s),
    ]
}

/// "rose R over H h (S/min, U% of half-hour steps up, largest step M% of the rise" (unclosed).
fn slow_detail(g: &Growth, k: usize, block: usize, step_s: i64) -> String {
    format!(
        "rose {:.0} over {:.1} h ({:.2}/min, {:.0}% of half-hour steps up, largest step {:.0}% of the rise",
        g.rise,
        (k * block) as f64 * step_s as f64 / 3600.0,
        g.slope_per_s * 60.0,
        100.0 * g.share_up,
        100.0 * g.max_step_share.min(9.99),
    )
}

/// How close a set of (observed, required) "at least" tests came: min of observed/required in
/// 0..1; 1 when all pass.
fn closeness(tests: &[(f64, f64)]) -> f64 {
    tests
        .iter()
        .map(|(obs, req)| {
            if *req <= 0.0 {
                1.0
            } else {
                (obs / req).clamp(0.0, 1.0)
            }
        })
        .fold(1.0, f64::min)
}

struct RuleOutcome {
    name: &'static str,
    closeness: f64,
    slope_per_s: f64,
    detail: String,
}

#[allow(clippy::too_many_arguments)]
fn decide(
    _p: &Prepared,
    ts: &[i64],
    vs: &[f64],
    lives: &[(usize, usize)],
    life: &LifeGrid,
    model: Option<&AnchorModel>,
    now: i64,
    cfg: &StlIfConfig,
) -> Verdict {
    let profile = model.and_then(|m| m.profile.as_deref());
    let d = deseasonalize(life, profile, cfg);
    let pre = Prefix::new(&d);
    let n = d.len();
    let six_h = life.minutes(360);
    let sigma = noise_sigma(&d[n.saturating_sub(six_h)..]);
    let base = model.map(|m| m.base).unwrap_or_else(|| life_base(life));
    let step = life.step_s;
    let mut rules: Vec<RuleOutcome> = Vec::new();

    // Fast rule.
    let fast_block = life.minutes(cfg.fast_span_min) / cfg.fast_blocks.max(2);
    if let Some(g) = growth(
        &d,
        &pre,
        n,
        fast_block,
        cfg.fast_blocks.max(2),
        step,
        Stat::Mean,
    ) {
        let c = closeness(&[
            (g.share_up, 1.0),
            (
                allowed_step_share(cfg.fast_blocks.max(2), cfg),
                g.max_step_share,
            ),
            (g.min_step_share, cfg.fast_min_step_share),
            (g.rise, cfg.fast_min_rise_sigma * sigma),
            (g.slope_per_s, cfg.fast_min_growth_per_s),
        ]);
        rules.push(RuleOutcome {
            name: "fast",
            closeness: c,
            slope_per_s: g.slope_per_s,
            detail: format!(
                "rose {:.0} in {} min ({:.2}/s, steps of {:.0}% to {:.0}% of the rise, noise sigma {:.1})",
                g.rise,
                cfg.fast_span_min,
                g.slope_per_s,
                100.0 * g.min_step_share.max(-9.99),
                100.0 * g.max_step_share.min(9.99),
                sigma
            ),
        });
    }

    // Slow rule, on the deseasonalized level and (when there is a seasonal profile) on the raw
    // level too: a large leak inside the STL window bends the profile, and then steps appear in
    // `d` that the raw level does not have. The day-over-day tests guard the raw variant.
    let block = life.minutes(cfg.slow_block_min);
    let span = life.minutes(cfg.slow_horizon_min).min(n);
    let k = span / block.max(1);
    let pre_raw = Prefix::new(&life.v);
    let mut variants: Vec<(&[f64], &Prefix, bool)> = vec![(&d, &pre, profile.is_some())];
    if profile.is_some() {
        variants.push((&life.v, &pre_raw, false));
    }
    for (dv, pv, deseasonalized) in variants {
        if span >= life.minutes(cfg.slow_min_span_min)
            && k >= 2
            && let Some(g) = growth(dv, pv, n, block, k, step, Stat::Median)
        {
            let mut tests = slow_tests(&g, k, sigma, cfg).to_vec();
            let day = life.minutes((cfg.period_s / 60) as usize);
            // Day-over-day as soon as 5 minutes of yesterday exist (a reference of up to 30
            // minutes).
            let min_ref = life.minutes(5);
            let half_h = life.minutes(30).min(n.saturating_sub(day)).max(min_ref);
            // With a day of history (also when deseasonalized: two days of STL cannot tell a
            // step of the last hours from the daily pattern at those hours).
            let young_note = if n >= day + min_ref {
                let now_level = pv.mean(n - half_h, n);
                let then_level = pv.mean(n - day - half_h, n - day);
                let dod = now_level - then_level;
                // (a) more growth than over the same hours yesterday, or (b) well above
                // yesterday's level, reached without a step over the last 24 hours (a leak older
                // than a day; a deploy step fails the step test).
                // Yesterday's window may start before the life: compare the last `ky` blocks
                // (those with a yesterday) of today with the same blocks of yesterday.
                let ky = k.min((n - day) / block.max(1));
                let (yesterday, a) = if ky >= 2 {
                    let today =
                        growth(dv, pv, n, block, ky, step, Stat::Median).map_or(0.0, |t| t.rise);
                    let yest = growth(dv, pv, n - day, block, ky, step, Stat::Median)
                        .map_or(f64::INFINITY, |y| y.rise);
                    (
                        yest,
                        closeness(&[
                            (today - yest, cfg.dod_min_frac * today.max(0.0)),
                            (today, cfg.slow_min_rise_sigma * sigma),
                        ]),
                    )
                } else {
                    // Less than an hour of yesterday: the level must be above yesterday's by
                    // half the rise (a daily ramp is not).
                    // Not more than twice the rise either: far above yesterday with little rise
                    // today is a step (a deploy), for (b) to judge.
                    (
                        f64::NAN,
                        closeness(&[(dod, cfg.dod_min_frac * g.rise), (2.0 * g.rise, dod)]),
                    )
                };
                // 25 hourly blocks: the oldest holds yesterday's reference half-hour, so a step
                // right after it is seen by the step test.
                let hour = life.minutes(60);
                // On the raw level: a step within two days of history bends STL's seasonal
                // component into a day-long ramp, which would hide the step in `d`.
                let day_test = growth(
                    &life.v,
                    &pre_raw,
                    n,
                    hour,
                    25.min(n / hour.max(1)),
                    step,
                    Stat::Median,
                );
                let b = match day_test {
                    Some(d24) => closeness(&[
                        (
                            dod,
                            cfg.dod_min_frac * g.rise * (day as f64 / (k * block) as f64),
                        ),
                        (d24.rise, cfg.slow_min_rise_sigma * sigma),
                        // The hourly climb explains the difference with yesterday (a step hidden
                        // in the oldest block would not).
                        (d24.rise, 0.75 * dod),
                        (cfg.max_step_share, d24.max_pair_share),
                    ]),
                    None => 0.0,
                };
                tests.push((a.max(b), 1.0));
                format!(
                    ", {:.0} above the same time yesterday, the same hours yesterday rose {:.0}",
                    dod, yesterday
                )
            } else {
                // No day of history: a rise of hours is a morning ramp as often as a leak. It
                // counts once it has lasted longer than a daily ramp can (the long test).
                let long_block = block.max(1);
                let kl = life.minutes(cfg.young_long_min) / long_block;
                let long = match growth(dv, pv, n, long_block, kl, step, Stat::Median) {
                    Some(gl) if kl >= 2 => closeness(&[
                        (gl.share_up, cfg.slow_min_share_up),
                        (allowed_step_share(kl, cfg), gl.max_step_share),
                        (gl.rise, cfg.slow_min_rise_sigma * sigma),
                        (gl.rise, cfg.young_min_rise_frac * base.max(1.0)),
                    ]),
                    _ => 0.0,
                };
                tests.push((long, 1.0));
                format!(
                    ", {:.0}% above the life's start ({:.0}), young: needs {:.0} h of rise",
                    100.0 * g.rise / base.max(1.0),
                    base,
                    cfg.young_long_min as f64 / 60.0
                )
            };
            let mode = if deseasonalized {
                "deseasonalized"
            } else if n >= day + min_ref {
                "day-over-day"
            } else {
                "young"
            };
            rules.push(RuleOutcome {
                name: "slow",
                closeness: closeness(&tests),
                slope_per_s: g.slope_per_s,
                detail: format!("{}, {mode}{young_note})", slow_detail(&g, k, block, step)),
            });
        }
    }

    // Day-differenced slow rule: with more than a day of history, the level minus the level a
    // day earlier removes the daily cycle without a seasonal fit (which needs two days): a leak
    // that starts while daily traffic falls shows as steady growth here, not in the raw level.
    let day = life.minutes((cfg.period_s / 60) as usize);
    if n > day {
        let dd: Vec<f64> = (day..n).map(|i| life.v[i] - life.v[i - day]).collect();
        let pre_d = Prefix::new(&dd);
        let sigma_d = noise_sigma(&dd[dd.len().saturating_sub(six_h)..]);
        // Every whole hour from the shortest span to the horizon: a leak younger than the
        // horizon shows over the hours since it began, not over a window that is half flat.
        let mut best: Option<RuleOutcome> = None;
        let mut hours = cfg.slow_min_span_min.div_ceil(60).max(1);
        while hours * 60 <= cfg.slow_horizon_min {
            let span_d = life.minutes(hours * 60);
            let kd = span_d / block.max(1);
            hours += 1;
            if span_d > dd.len() || kd < 2 {
                break;
            }
            let Some(g) = growth(&dd, &pre_d, dd.len(), block, kd, step, Stat::Median) else {
                continue;
            };
            let c = closeness(&slow_tests(&g, kd, sigma_d, cfg));
            if best.as_ref().is_some_and(|b| b.closeness >= c) {
                continue;
            }
            best = Some(RuleOutcome {
                name: "slow",
                closeness: c,
                slope_per_s: g.slope_per_s,
                detail: format!(
                    "the level minus the level a day earlier {}, day-differenced)",
                    slow_detail(&g, kd, block, step)
                ),
            });
        }
        rules.extend(best);
    }

    // Quick rule for a life younger than a day: steady growth over the last two hours that
    // carries the level above everything the life saw before by `young_quick_rise_frac` of it.
    let qspan = life.minutes(cfg.young_quick_min);
    let qk = 6;
    let qblock = qspan / qk;
    // At least an hour before the window, to know the life's scale.
    if n < day && qblock > 0 && n >= qspan + life.minutes(60) {
        let prior_max = life.v[..n - qspan]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .max(1.0);
        if let Some(g) = growth(&life.v, &pre_raw, n, qblock, qk, step, Stat::Median) {
            rules.push(RuleOutcome {
                name: "young",
                closeness: closeness(&[
                    (g.share_up, 1.0),
                    (allowed_step_share(qk, cfg), g.max_step_share),
                    (g.rise, cfg.slow_min_rise_sigma * sigma),
                    (g.slope_per_s, cfg.slow_min_growth_per_s),
                    (g.rise, cfg.young_quick_rise_frac * prior_max),
                ]),
                slope_per_s: g.slope_per_s,
                detail: format!(
                    "rose {:.0} in {} min ({:.2}/min), {:.0}% of the life's highest level before ({:.0})",
                    g.rise,
                    cfg.young_quick_min,
                    g.slope_per_s * 60.0,
                    100.0 * g.rise / prior_max,
                    prior_max
                ),
            });
        }
    }

    // Sawtooth rule over completed lives.
    if let Some(r) = sawtooth(ts, vs, lives, life, &pre, cfg) {
        rules.push(r);
    }

    let best = rules
        .iter()
        .max_by(|a, b| a.closeness.total_cmp(&b.closeness));
    let evidence = best.map(|r| r.closeness).unwrap_or(0.0);

    // IF gate.
    let hi = n;
    let (if_score, gate_pass, gate_note) =
        match model.and_then(|m| m.forest.as_ref().map(|f| (m, f))) {
            Some((m, forest)) => {
                let w5 = life.minutes(5);
                let now_level = pre.mean(hi.saturating_sub(w5), hi);
                let t_mid = now - 150;
                let trend = m.trend_end + m.trend_slope_per_s * (t_mid - m.trend_end_ts) as f64;
                let resid = now_level - trend;
                let row = features(life, &pre, hi - 1, m.sigma, m.base, resid, cfg);
                let s = forest.score(&row);
                // A level the life never reached before also opens the gate: a leak older
                // than the forest's training window is "usual" in every other feature.
                let new_high = row[N_FEATURES - 1] > m.max_ratio;
                let pass = s >= m.gate || new_high;
                (
                    s,
                    pass,
                    format!(
                        "IF score {:.2} vs gate {:.2}{}",
                        s,
                        m.gate,
                        if new_high {
                            ", level at a new high of the life"
                        } else {
                            ""
                        }
                    ),
                )
            }
            None => (
                0.5,
                true,
                "no forest yet (young life), IF gate open".to_string(),
            ),
        };
    let score = (0.5 * evidence + 0.5 * if_score).clamp(0.0, 1.0);
    let slope_1h = pre.slope(hi.saturating_sub(life.minutes(60)), hi) / step as f64;

    let firing = rules
        .iter()
        .filter(|r| r.closeness >= 1.0)
        .max_by(|a, b| a.slope_per_s.total_cmp(&b.slope_per_s));
    match firing {
        Some(r) if gate_pass => {
            let onset = estimate_onset(life, &d, r.name == "sawtooth", ts, vs, lives);
            Verdict {
                fired: true,
                score,
                onset_s: onset,
                growth_per_s: r.slope_per_s,
                reason: format!("stl_iforest: {} leak: {}; {}.", r.name, r.detail, gate_note),
            }
        }
        Some(r) => Verdict {
            fired: false,
            score,
            onset_s: None,
            growth_per_s: slope_1h,
            reason: format!(
                "stl_iforest: {} growth ({}) but not unusual for this series: {}.",
                r.name, r.detail, gate_note
            ),
        },
        None => Verdict {
            fired: false,
            score,
            onset_s: None,
            growth_per_s: slope_1h,
            reason: match best {
                Some(b) => format!(
                    "stl_iforest: no sustained growth (closest: {} rule at {:.0}%: {}); {}.",
                    b.name,
                    100.0 * b.closeness,
                    b.detail,
                    gate_note
                ),
                None => format!("stl_iforest: too little history for a growth test; {gate_note}."),
            },
        },
    }
}

fn sawtooth(
    ts: &[i64],
    vs: &[f64],
    lives: &[(usize, usize)],
    current: &LifeGrid,
    current_pre: &Prefix,
    cfg: &StlIfConfig,
) -> Option<RuleOutcome> {
    let need = cfg.sawtooth_min_cycles.max(1);
    if lives.len() < need + 1 {
        return None;
    }
    let mut slopes = Vec::new();
    let mut worst = 1.0f64;
    for &(lo, hi) in lives[lives.len() - 1 - need..lives.len() - 1].iter() {
        let g = LifeGrid::build(&ts[lo..hi], &vs[lo..hi], cfg)?;
        if g.v.len() < g.minutes(cfg.sawtooth_min_life_min) {
            return None;
        }
        let d = g.v.clone();
        let sigma = noise_sigma(&d);
        let pre = Prefix::new(&d);
        let k = 6;
        let block = d.len() / k;
        let gr = growth(&d, &pre, d.len(), block, k, g.step_s, Stat::Median)?;
        let c = closeness(&[
            (gr.share_up, cfg.slow_min_share_up),
            (allowed_step_share(k, cfg), gr.max_step_share),
            (gr.rise, cfg.slow_min_rise_sigma * sigma),
            (gr.slope_per_s, cfg.slow_min_growth_per_s),
        ]);
        worst = worst.min(c);
        slopes.push(gr.slope_per_s);
    }
    // The current life must not be shrinking.
    let n = current.v.len();
    let cur_slope =
        current_pre.slope(n.saturating_sub(current.minutes(60)), n) / current.step_s as f64;
    if cur_slope < 0.0 && n >= current.minutes(15) {
        worst = worst.min(0.5);
    }
    slopes.sort_by(f64::total_cmp);
    let med = slopes.get(slopes.len() / 2).copied().unwrap_or(0.0);
    Some(RuleOutcome {
        name: "sawtooth",
        closeness: worst,
        slope_per_s: med,
        detail: format!(
            "the last {need} lives each grew steadily ({:.2}/min) until a reset",
            med * 60.0
        ),
    })
}

/// Start of the growth: the break of the best "flat, then linear rise" (hinge) fit over the
/// current life (last 2 days); for a sawtooth, the start of the first steadily growing life.
fn estimate_onset(
    life: &LifeGrid,
    d: &[f64],
    sawtooth: bool,
    ts: &[i64],
    _vs: &[f64],
    lives: &[(usize, usize)],
) -> Option<i64> {
    if sawtooth && lives.len() >= 3 {
        let (lo, _) = lives[lives.len() - 3];
        return ts.get(lo).copied();
    }
    let n = d.len();
    let from = n.saturating_sub(life.minutes(2 * 24 * 60));
    let k = hinge_break(&d[from..])?;
    Some(life.ts(from + k))
}

/// Index of the break of the least-squares fit y = a + b·max(0, i − k), b > 0.
fn hinge_break(y: &[f64]) -> Option<usize> {
    let n = y.len();
    if n < 4 {
        return None;
    }
    let nf = n as f64;
    let sy: f64 = y.iter().sum();
    let syy: f64 = y.iter().map(|v| v * v).sum();
    // Suffix sums over i > k of 1, i, i², y, i·y.
    let mut best: Option<(f64, usize)> = None;
    let (mut c, mut s1, mut s2, mut sy_k, mut siy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for k in (0..n - 1).rev() {
        let i = (k + 1) as f64;
        let yi = y[k + 1];
        c += 1.0;
        s1 += i;
        s2 += i * i;
        sy_k += yi;
        siy += i * yi;
        if c < 2.0 {
            continue;
        }
        let kf = k as f64;
        let sx = s1 - kf * c;
        let sxx = s2 - 2.0 * kf * s1 + kf * kf * c;
        let sxy = siy - kf * sy_k;
        let vxx = sxx - sx * sx / nf;
        let vxy = sxy - sx * sy / nf;
        if vxx <= 0.0 {
            continue;
        }
        let b = vxy / vxx;
        if b <= 0.0 {
            continue;
        }
        let sse = (syy - sy * sy / nf) - vxy * vxy / vxx;
        if best.is_none_or(|(e, _)| sse < e) {
            best = Some((sse, k));
        }
    }
    best.map(|(_, k)| k)
}

#[cfg(test)]
mod tests;
