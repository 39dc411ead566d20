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
//!
//! # Files
//! | file | what |
//! |---|---|
//! | `mod.rs` | the entry points ([`evaluate`], [`evaluate_many_with_resets`]: what `detect::stl_iforest` runs), the per-anchor cache, `decide` (rules through the IF gate into a [`Verdict`]) |
//! | [`config`](StlIfConfig) | every threshold and size, with its default |
//! | `lives.rs` | lives (split at resets and gaps), the 1-minute grid, window means and slopes, noise sigma |
//! | `model.rs` | the anchor model: STL, seasonal profile, features, forest and gate |
//! | `rules.rs` | the growth rules (fast, slow, day-differenced, young, sawtooth) |
//! | `onset.rs` | the onset estimate (hinge fit) |
//! | [`stl`], `stl_loess.rs` | robust STL |
//! | [`iforest`] | the Isolation Forest |
//! | [`udaf`] | `leak_stl_iforest`: the detector's scoring as a SQL aggregate (per workload group), how a cluster's executors score |
//! | `batch.rs` (feature `testkit`) | `score_batch`/`batch_parts`/`replay_anchors`: one forest over many series, for the pyref test and the bench |

#[cfg(feature = "testkit")]
mod batch;
mod config;
pub mod iforest;
mod lives;
mod model;
mod onset;
mod rules;
pub mod stl;
mod stl_loess;
pub mod udaf;

use std::collections::HashMap;
use std::sync::Arc;

#[cfg(feature = "testkit")]
pub use batch::{AnchorParts, BatchParts, batch_parts, replay_anchors, score_batch};
pub use config::StlIfConfig;
use lives::{LifeGrid, Prefix, noise_sigma, split_lives};
use model::{AnchorModel, deseasonalize, features, life_base};
use onset::estimate_onset;
use rules::{Levels, RuleOutcome};

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
        Err(reason) => Verdict::quiet(reason.to_string()),
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
            .map(|_| Verdict::quiet(reason.to_string()))
            .collect(),
    }
}

// The finite, sorted samples of a series.

/// Why a series is not evaluated at all (its verdicts are quiet, with this as the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotEvaluated {
    #[error("stl_iforest: invalid configuration (grid, STL step or period).")]
    InvalidConfig,
    #[error("stl_iforest: timestamps are not sorted; not evaluated.")]
    Unsorted,
}

struct Prepared {
    ts: Vec<i64>,
    vs: Vec<f64>,
    /// Known restarts (sorted): a life starts at the first sample at or after each.
    resets: Vec<i64>,
}

impl Prepared {
    fn new(series: SeriesRef<'_>, cfg: &StlIfConfig) -> Result<Self, NotEvaluated> {
        if cfg.grid_step_s <= 0 || cfg.stl_step_s < cfg.grid_step_s || cfg.period_s <= 0 {
            return Err(NotEvaluated::InvalidConfig);
        }
        let n = series.ts_s.len().min(series.values.len());
        if series.ts_s[..n].windows(2).any(|w| w[1] < w[0]) {
            return Err(NotEvaluated::Unsorted);
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
        decide(ts, vs, &lives, &life, model.as_deref(), now, cfg)
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

/// The verdict at `now`: every growth rule on the current life ([`rules::outcomes`]), then the
/// Isolation Forest gate of the anchor model, the score, the onset and the reason.
fn decide(
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

    let pre_raw = Prefix::new(&life.v);
    let levels = Levels {
        life,
        d: &d,
        pre: &pre,
        pre_raw: &pre_raw,
        profile,
        sigma,
        base,
        cfg,
    };
    let rules: Vec<RuleOutcome> = rules::outcomes(&levels, ts, vs, lives);

    let best = rules
        .iter()
        .max_by(|a, b| a.closeness.total_cmp(&b.closeness));
    let evidence = best.map(|r| r.closeness).unwrap_or(0.0);

    // IF gate.
    let hi = n;
    let (if_score, gate_pass, gate_note) = if_gate(model, life, &pre, now, cfg);
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

/// The Isolation Forest gate at `now`: the forest's score of now's features, whether it passes
/// (at least the gate quantile of the training scores, or a level at a new high of the life),
/// and a note for the reason. Open (score 0.5) without a forest.
fn if_gate(
    model: Option<&AnchorModel>,
    life: &LifeGrid,
    pre: &Prefix,
    now: i64,
    cfg: &StlIfConfig,
) -> (f64, bool, String) {
    let hi = life.v.len();
    match model.and_then(|m| m.forest.as_ref().map(|f| (m, f))) {
        Some((m, forest)) => {
            let w5 = life.minutes(5);
            let now_level = pre.mean(hi.saturating_sub(w5), hi);
            let t_mid = now - 150;
            let trend = m.trend_end + m.trend_slope_per_s * (t_mid - m.trend_end_ts) as f64;
            let resid = now_level - trend;
            let row = features(life, pre, hi - 1, m.sigma, m.base, resid, cfg);
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
    }
}

#[cfg(test)]
mod tests;
