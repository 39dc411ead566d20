//! The anchor model, fitted every `refit_every_s` on the current life (and cached): robust STL
//! on the `stl_step_s` grid, the daily seasonal profile, the features of every 5-minute point
//! ([`features`], the module doc of [`super`] lists them) and the Isolation Forest with its
//! gate. Also the deseasonalized level the growth rules read.

use super::iforest::IsolationForest;
use super::lives::{LifeGrid, Prefix, noise_sigma};
use super::stl::{decompose, median_in_place};
use super::{N_FEATURES, StlIfConfig};

pub(super) struct AnchorModel {
    /// Seasonal value per STL bin of the day (absolute bin index mod period), if any.
    pub(super) profile: Option<Vec<f64>>,
    /// Trend at the last STL bin, its time (bin centre) and slope per second.
    pub(super) trend_end: f64,
    pub(super) trend_end_ts: i64,
    pub(super) trend_slope_per_s: f64,
    pub(super) sigma: f64,
    pub(super) base: f64,
    /// The `stl_step_s` series STL ran on (kept for the batch bench and the Python reference).
    #[cfg(feature = "testkit")]
    pub(super) stl_input: Vec<f64>,
    pub(super) train_rows: Vec<f64>,
    pub(super) forest: Option<IsolationForest>,
    pub(super) gate: f64,
    /// Highest ln(level / start) among the training points.
    pub(super) max_ratio: f64,
}

impl AnchorModel {
    pub(super) fn fit_life(life: &LifeGrid, cfg: &StlIfConfig, with_forest: bool) -> Option<Self> {
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
            #[cfg(feature = "testkit")]
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

pub(super) fn seasonal_at(profile: Option<&[f64]>, ts: i64, cfg: &StlIfConfig) -> f64 {
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

pub(super) fn deseasonalize(
    life: &LifeGrid,
    profile: Option<&[f64]>,
    cfg: &StlIfConfig,
) -> Vec<f64> {
    life.v
        .iter()
        .enumerate()
        .map(|(i, v)| v - seasonal_at(profile, life.ts(i), cfg))
        .collect()
}

/// The life's starting level: median of its first hour.
pub(super) fn life_base(life: &LifeGrid) -> f64 {
    let n = life.minutes(60).min(life.v.len());
    let mut first = life.v[..n].to_vec();
    median_in_place(&mut first).max(0.0)
}

/// Features of grid point `i` (see the module doc).
#[allow(clippy::too_many_arguments)]
pub(super) fn features(
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
