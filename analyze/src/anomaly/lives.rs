//! A series' lives and the 1-minute grid: [`split_lives`] (a new life at a restart, a reset of
//! the count or a long gap), one life on the grid ([`LifeGrid`], mean per bin, linear
//! interpolation across gaps), O(1) window means and slopes ([`Prefix`]) and the robust noise
//! sigma ([`noise_sigma`]).

use super::StlIfConfig;
use super::stl::median_in_place;

/// Splits samples into lives: a new life at a reset (a drop below `reset_ratio` × the previous
/// sample) or after a gap longer than `max_gap_s`. Returns index ranges.
///
/// A drop is not a reset when the last 30 minutes of the life hold a one-sample jump up of at
/// least half its size: that is the end of a burst (its goroutines finish and the level returns
/// to where it was), not a new process, which restarts from a level that was climbed to
/// gradually or was there all along.
///
/// `resets` (sorted) are known restarts: a life starts at the first sample after each.
pub(super) fn split_lives(
    ts: &[i64],
    vs: &[f64],
    resets: &[i64],
    cfg: &StlIfConfig,
) -> Vec<(usize, usize)> {
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

pub(super) struct LifeGrid {
    /// Absolute grid index of the first bin (ts = index × grid_step_s).
    pub(super) first_bin: i64,
    pub(super) step_s: i64,
    pub(super) v: Vec<f64>,
}

impl LifeGrid {
    pub(super) fn build(ts: &[i64], vs: &[f64], cfg: &StlIfConfig) -> Option<Self> {
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

    pub(super) fn ts(&self, i: usize) -> i64 {
        (self.first_bin + i as i64) * self.step_s
    }

    pub(super) fn minutes(&self, n: usize) -> usize {
        // Grid points in `n` minutes.
        ((n as i64 * 60) / self.step_s).max(1) as usize
    }
}

/// Prefix sums for O(1) window means and least-squares slopes.
pub(super) struct Prefix {
    pub(super) s0: Vec<f64>,
    pub(super) s1: Vec<f64>,
}

impl Prefix {
    pub(super) fn new(d: &[f64]) -> Self {
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
    pub(super) fn mean(&self, lo: usize, hi: usize) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        (self.s0[hi] - self.s0[lo]) / (hi - lo) as f64
    }

    /// Least-squares slope of d[lo..hi] per grid step.
    pub(super) fn slope(&self, lo: usize, hi: usize) -> f64 {
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
pub(super) fn noise_sigma(d: &[f64]) -> f64 {
    if d.len() < 3 {
        return 1.0;
    }
    let mut diffs: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let med = median_in_place(&mut diffs);
    let mut dev: Vec<f64> = diffs.iter().map(|x| (x - med).abs()).collect();
    let mad = median_in_place(&mut dev);
    (1.4826 * mad / std::f64::consts::SQRT_2).max(1.0)
}
