//! `lives`: a workload judged across its pod lives. A leak is a property of the code a workload
//! runs, not of one pod: a service deployed every few hours whose every pod life leaks slowly
//! never has a pod old enough for the per-pod rules, but every life grows with its age.
//!
//! **The model.** Over the last 24 hours, every life of the workload's pods (a pod from its
//! start or restart to its end or next restart; `pods::lives_by_workload`) is fitted at once by
//! least squares: `goroutines = intercept per life + r_version x age + daily pattern`, the daily
//! pattern being two harmonics of the time of day shared by all lives (`sin`/`cos` of 24 h and
//! 12 h). The intercept per life absorbs each replica's and version's level (a deploy that
//! raises the level is not growth); lives that start at different times of day tell the age
//! from the daily pattern, so the slope per life is pooled across a version's replicas and
//! restarts at the same age, and the daily pattern across every life of the day. The slopes'
//! block of the normal equations is diagonal, so the fit is a 4x4 solve whatever the number of
//! versions (a Schur complement; standard errors include the daily pattern's uncertainty).
//! The daily terms have a prior (a ridge): each at most about half the level
//! (`DAILY_PRIOR_SHARE`), at the lives' noise. Negligible once the lives span hours of the
//! day; it is what bounds them when they cannot be told from age — lives of minutes within
//! minutes of the day, where both are straight lines within every life — so that a slope must
//! then beat `MIN_T` times the steepest slope such a daily pattern could make (about 0.3 x
//! the level per hour), and does not fall silent as the hours of lives pile up.
//!
//! **Time scales follow the lives** ([`Scales`]): written for lives of hours, they shrink with
//! the workload's typical life (the median length of its lives that ended, `max_age_s`):
//! starts within 10 minutes or half a life are one start (a rollout's replicas); the current
//! version is judged after an hour or half a life; one life's chain after 3 hours or three
//! lives; a life is going on when seen within two minutes or half a life (and no newer life
//! began after its last sample: a restarted process's previous life is over, a rollout's old
//! pods are not until they go). Nothing else is tied to hours: thresholds are rates. Lives too short for minute means (most under
//! `MIN_ROWS` minutes, a process restarted every minute or two) are read from every sample
//! ingest took (`pods::sample_series`, one query for those workloads), so that a workload
//! restarted every minute and scraped every few seconds is fitted on its samples. The
//! goroutines of such lives are never older than a life: the finding says so (`max_age_s`),
//! and the level does not read residence measures they cannot reach (`levels`).
//!
//! **Versions** come from the pods' names ([`super::pods::version_of`]: a Deployment's pods are
//! `{deployment}-{pod-template-hash}-{suffix}`, the hash changing with every new pod template),
//! not from a new column: every count row already carries the pod's name, rows of every age
//! (backfilled Prometheus history included) give the version, and a `pod-template-hash` label
//! is the same string. Decision on owners whose pod names do not carry it (issue 21): a
//! nullable `version` column filled by discovery (the `pod-template-hash` /
//! `controller-revision-hash` label, or the main container's image) is not added yet: the
//! pods discovery lists carry those labels, but it keeps only their owners, and the column
//! would touch the schema, the writer, discovery, targets files and push for what only
//! StatefulSets, DaemonSets and bare pods lack. Their lives (a StatefulSet's `web-0` across
//! restarts and revisions, a process restarting in the same pod) have no version and are one
//! comparison: a revision that brings a leak is still found (its lives grow), but one that
//! fixes it ends the episode only once the lives after it outweigh those before it in the
//! 24-hour window, not within the hour. Revisit when such a workload's fix must be seen
//! sooner.
//!
//! **A deploy of a new version starts a new comparison**: each version has its own slope. The
//! verdict ([`verdict`]) judges the current version once its lives are an hour old (before,
//! the version before it), chained with the versions before it that grew too (at least half
//! the threshold each: a leak in code a version inherits is the same leak, and the evidence of
//! every life adds up); their combined slope must pass `MIN_PER_S` per pod (and 1 % of a pod's
//! level per hour) with a t-statistic of at least `MIN_T`, over two lives' starts or 3 hours of
//! one. A version that fixed the leak ends the episode within the hour it takes to judge it;
//! one that brings a leak is judged on its own lives from their first hour.
//!
//! **When it judges**: a workload whose pods lived at least three lives (two deploys or
//! restarts) in the 24 hours; long-lived pods are the per-pod detectors' (`growth_rule`,
//! `stl_iforest`, `daily_trend`). One finding per workload (the pod scope left empty).
//! The t-statistic assumes independent minutes (the noise of the scenario suite); correlated
//! noise makes it optimistic, hence the high `MIN_T`.

// Small dense matrices: index loops read as the algebra they implement.
#![allow(clippy::needless_range_loop)]

use futures::future::BoxFuture;

use std::collections::BTreeMap;

use super::pods::{Life, lives_by_workload, noise_sigma, sample_series, solve};
use super::{Detector, DetectorKind, Finding, Inputs, squash};
use crate::engine::series::Series;
use crate::engine::{AnalyzeConfig, Scope};
use crate::error::Result;

pub struct Lives;

/// How far back lives are pooled.
const WINDOW_S: i64 = 86_400;
/// The least growth per pod and second that fires.
pub const MIN_PER_S: f64 = 0.005;
/// The least growth per pod and hour, as a share of a pod's level.
const MIN_SHARE_PER_HOUR: f64 = 0.01;
/// The least t-statistic of the pooled slope.
pub const MIN_T: f64 = 8.0;
/// Lives (distinct starts, to 10 minutes) the window must hold.
const MIN_LIVES: usize = 3;
/// Age of the current lives before their own slope is asked for.
const CURRENT_MIN_AGE_S: i64 = 3_600;
/// Samples of a life the fit needs (it leaves shorter lives out).
const MIN_ROWS: usize = 10;
/// The daily pattern's terms are each at most about this share of the level (their prior).
const DAILY_PRIOR_SHARE: f64 = 0.5;

/// The detector's time scales, from the workload's typical life length `life_s` (the median
/// length of the lives that ended; None before one did): as written for lives of hours, and
/// shrunk with lives shorter than that (never grown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scales {
    /// Lives starting within it are one start (a rollout's replicas): 10 minutes, or half a life.
    pub start_bucket_s: i64,
    /// Age of the current version before its own slope is asked for: an hour, or half a life.
    pub current_min_age_s: i64,
    /// A chain of one life's start is judged after this long: 3 hours, or three lives.
    pub one_start_span_s: i64,
    /// A life is going on when seen within it: two minutes, or half a life.
    pub current_seen_s: i64,
    /// The goroutines its growth consists of are at most this old (the life length).
    pub max_age_s: Option<i64>,
}

impl Scales {
    pub fn of(life_s: Option<i64>) -> Scales {
        let half = life_s.map_or(i64::MAX, |l| (l / 2).max(1));
        Scales {
            start_bucket_s: half.min(600),
            current_min_age_s: half.min(CURRENT_MIN_AGE_S),
            one_start_span_s: life_s.map_or(3 * 3_600, |l| (3 * l).clamp(1, 3 * 3_600)),
            current_seen_s: half.min(120),
            max_age_s: life_s,
        }
    }
}

/// The typical life length at `t` of the lives in `window`: the median length of those that
/// ended (a later life started after their last sample up to `t`).
fn life_length(window: &[&Life<'_>], t: i64) -> Option<i64> {
    let newest = window.iter().map(|l| l.start_s).max()?;
    let mut lens: Vec<i64> = window
        .iter()
        .filter_map(|l| {
            let end = l.ts_s[l.upto(t).checked_sub(1)?];
            (end < newest).then_some(end - l.start_s)
        })
        .collect();
    if lens.is_empty() {
        return None;
    }
    let mid = lens.len() / 2;
    Some(*lens.select_nth_unstable(mid).1)
}

impl Detector for Lives {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Lives
    }

    fn series_history_s(&self, _cfg: &AnalyzeConfig) -> Option<i64> {
        Some(WINDOW_S)
    }

    /// The daily pattern is part of the model.
    fn drops_daily_pattern(&self) -> bool {
        false
    }

    fn in_product_score(&self) -> bool {
        true
    }

    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async move {
            // Workloads whose lives hold too few minutes for the fit: their every sample.
            let short: Vec<(String, String)> = lives_by_workload(input.series)
                .into_iter()
                .filter(|(_, lives)| short_lived(lives))
                .map(|(k, _)| k)
                .collect();
            let samples =
                sample_series(input.ctx, &short, input.from_s - WINDOW_S, input.to_s).await?;
            Ok(findings(input, &samples))
        })
    }
}

/// Lives too short for a fit on minute means: at least `MIN_LIVES` of them, most under
/// `MIN_ROWS` minutes.
fn short_lived(lives: &[Life<'_>]) -> bool {
    let short = lives.iter().filter(|l| l.ts_s.len() < MIN_ROWS).count();
    lives.len() >= MIN_LIVES && 2 * short > lives.len()
}

/// The daily pattern's terms (two harmonics of the time of day).
const S: usize = 4;

fn seasonal(ts: i64) -> [f64; S] {
    let a = (ts.rem_euclid(86_400)) as f64 / 86_400.0 * std::f64::consts::TAU;
    [a.sin(), a.cos(), (2.0 * a).sin(), (2.0 * a).cos()]
}

/// One version's slope in the pooled fit.
#[derive(Debug, Clone)]
pub(crate) struct VersionSlope {
    /// The newest start of its lives (versions are ordered by it).
    pub newest_start_s: i64,
    pub oldest_start_s: i64,
    /// Goroutines per pod and hour of age.
    pub per_hour: f64,
    /// Its lives' distinct starts (to 10 minutes).
    pub starts: usize,
    /// Σ age² of its centered rows (its weight when slopes are combined).
    d: f64,
    /// Cross-products of its centered ages with the daily terms.
    c: [f64; S],
}

/// The pooled fit as of `t`: one slope per version, the daily pattern shared.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    /// Oldest version first.
    pub versions: Vec<VersionSlope>,
    sigma2: f64,
    /// (S - Cᵀ D⁻¹ C)⁻¹, the daily terms' precision left after the slopes.
    schur_inv: [[f64; S]; S],
    pub mean_level: f64,
}

impl Fit {
    /// The combined slope (per hour) of versions `from..` (weights Σ age², as one slope would
    /// weigh them) and its standard error, the daily pattern's uncertainty included.
    pub fn combined(&self, from: usize) -> Option<(f64, f64)> {
        let vs = self.versions.get(from..)?;
        let total: f64 = vs.iter().map(|v| v.d).sum();
        if vs.is_empty() || total <= 0.0 {
            return None;
        }
        let slope = vs.iter().map(|v| v.d * v.per_hour).sum::<f64>() / total;
        // w_v = d_v / total: Var = σ² (Σ w²/d + uᵀ (S')⁻¹ u), u = Σ w_v c_v / d_v.
        let mut u = [0.0; S];
        let mut own = 0.0;
        for v in vs {
            let w = v.d / total;
            own += w * w / v.d;
            for k in 0..S {
                u[k] += w * v.c[k] / v.d;
            }
        }
        let mut q = 0.0;
        for i in 0..S {
            for j in 0..S {
                q += u[i] * self.schur_inv[i][j] * u[j];
            }
        }
        Some((slope, (self.sigma2 * (own + q)).sqrt().max(1e-12)))
    }
}

/// The version key of a life: its version, or one key for the workload's unversioned lives.
fn version_key<'a>(l: &Life<'a>) -> &'a str {
    l.version.unwrap_or("")
}

pub(crate) fn fit(lives: &[&Life<'_>], t: i64, sc: &Scales) -> Option<Fit> {
    let from = t - WINDOW_S;
    let mut keys: Vec<&str> = Vec::new();
    let mut versions: Vec<VersionSlope> = Vec::new();
    let mut starts: Vec<Vec<i64>> = Vec::new();
    let mut bv: Vec<f64> = Vec::new();
    let mut ss = [[0.0; S]; S];
    let mut bs = [0.0; S];
    let (mut yy, mut n, mut groups, mut level_sum) = (0.0, 0usize, 0usize, 0.0);
    let mut noise: Vec<f64> = Vec::new();
    for l in lives {
        let (i0, i1) = (l.ts_s.partition_point(|x| *x < from), l.upto(t));
        if i1 < i0 + MIN_ROWS {
            continue;
        }
        noise.push(noise_sigma(&l.values[i0..i1]));
        let key = version_key(l);
        let v = match keys.iter().position(|k| *k == key) {
            Some(v) => v,
            None => {
                keys.push(key);
                versions.push(VersionSlope {
                    newest_start_s: l.start_s,
                    oldest_start_s: l.start_s,
                    per_hour: 0.0,
                    starts: 0,
                    d: 0.0,
                    c: [0.0; S],
                });
                starts.push(Vec::new());
                bv.push(0.0);
                keys.len() - 1
            }
        };
        let ver = &mut versions[v];
        ver.newest_start_s = ver.newest_start_s.max(l.start_s);
        ver.oldest_start_s = ver.oldest_start_s.min(l.start_s);
        starts[v].push(l.start_s / sc.start_bucket_s);
        let m = (i1 - i0) as f64;
        let (mut ma, mut ms, mut my) = (0.0, [0.0; S], 0.0);
        for i in i0..i1 {
            ma += (l.ts_s[i] - l.start_s) as f64 / 3_600.0 / m;
            let x = seasonal(l.ts_s[i]);
            for k in 0..S {
                ms[k] += x[k] / m;
            }
            my += l.values[i] / m;
        }
        for i in i0..i1 {
            let age = (l.ts_s[i] - l.start_s) as f64 / 3_600.0 - ma;
            let mut x = seasonal(l.ts_s[i]);
            for k in 0..S {
                x[k] -= ms[k];
            }
            let y = l.values[i] - my;
            ver.d += age * age;
            bv[v] += age * y;
            for r in 0..S {
                ver.c[r] += age * x[r];
                for c in 0..S {
                    ss[r][c] += x[r] * x[c];
                }
                bs[r] += x[r] * y;
            }
            yy += y * y;
        }
        n += i1 - i0;
        groups += 1;
        level_sum += my * m;
    }
    let dof = n as f64 - (S + versions.len() + groups) as f64;
    if groups < 2 || dof < 30.0 || versions.iter().any(|v| v.d <= 0.0) {
        return None;
    }
    // The daily terms' prior: each at most about DAILY_PRIOR_SHARE of the level (a ridge of
    // σ²/prior², σ the lives' noise, at least a goroutine: counts are integers). Negligible
    // beside the data once the lives span hours of the day; what bounds the terms when they
    // cannot be told from age (lives of minutes, within minutes of the day).
    let level = level_sum / n.max(1) as f64;
    let sigma = crate::detect::pods::median(&mut noise)
        .unwrap_or(0.0)
        .max(1.0);
    let ridge = (sigma / (DAILY_PRIOR_SHARE * level).max(1.0)).powi(2);
    // The slopes' block is diagonal: eliminate it (Schur complement) and solve the daily terms.
    let mut sp = ss;
    let mut bp = bs;
    for (v, ver) in versions.iter().enumerate() {
        for r in 0..S {
            for c in 0..S {
                sp[r][c] -= ver.c[r] * ver.c[c] / ver.d;
            }
            bp[r] -= ver.c[r] * bv[v] / ver.d;
        }
    }
    for k in 0..S {
        sp[k][k] += ridge;
    }
    let beta_s = solve(sp, bp)?;
    let mut schur_inv = [[0.0; S]; S];
    for (j, col) in (0..S).map(|j| {
        let mut e = [0.0; S];
        e[j] = 1.0;
        (j, solve(sp, e))
    }) {
        let col = col?;
        for i in 0..S {
            schur_inv[i][j] = col[i];
        }
    }
    // RSS = yy - θ·b - ridge |β|² for the ridge's normal equations.
    let mut explained: f64 = (0..S)
        .map(|k| beta_s[k] * bs[k] + ridge * beta_s[k] * beta_s[k])
        .sum();
    for (v, ver) in versions.iter_mut().enumerate() {
        let cb: f64 = (0..S).map(|k| ver.c[k] * beta_s[k]).sum();
        ver.per_hour = (bv[v] - cb) / ver.d;
        explained += ver.per_hour * bv[v];
        starts[v].sort();
        starts[v].dedup();
        ver.starts = starts[v].len();
    }
    versions.sort_by_key(|v| v.newest_start_s);
    Some(Fit {
        versions,
        sigma2: ((yy - explained) / dof).max(1e-9),
        schur_inv,
        mean_level: level,
    })
}

/// The verdict of a fit at `t`: the chain of versions judged (index of its oldest), its
/// combined slope per hour and t-statistic, and whether it fires. The chain is the current
/// version (when its lives are an hour old; else the one before it) and the versions before it
/// that grew too (at least half the threshold each); it fires when the chain's combined slope
/// passes `MIN_PER_S`, 1 % of the level per hour and `MIN_T`, the current version's own slope
/// (an hour on) is at least half of that, and the chain holds two lives' starts or 3 hours of
/// one (a single young life's fit leans on the daily pattern's shape).
pub(crate) fn verdict(f: &Fit, t: i64, sc: &Scales) -> Option<(usize, f64, f64, bool)> {
    let min_per_hour = (MIN_PER_S * 3_600.0).max(MIN_SHARE_PER_HOUR * f.mean_level);
    let last = f.versions.len().checked_sub(1)?;
    let current = &f.versions[last];
    let current_judged = t - current.oldest_start_s >= sc.current_min_age_s;
    let top = if current_judged {
        last
    } else {
        last.checked_sub(1)?
    };
    if f.versions[top].per_hour < 0.5 * min_per_hour {
        return Some((top, f.versions[top].per_hour, 0.0, false));
    }
    let mut oldest = top;
    while oldest > 0 && f.versions[oldest - 1].per_hour >= 0.5 * min_per_hour {
        oldest -= 1;
    }
    // The chain, and the current version when it is too young to be judged (its ages are
    // short: it weighs little).
    let (slope, se) = f.combined(oldest)?;
    let starts: usize = f.versions[oldest..].iter().map(|v| v.starts).sum();
    let span = t - f.versions[oldest].oldest_start_s;
    let t_stat = slope / se;
    let fired =
        slope >= min_per_hour && t_stat >= MIN_T && (starts >= 2 || span >= sc.one_start_span_s);
    Some((oldest, slope, t_stat, fired))
}

fn findings(input: &Inputs<'_>, samples: &BTreeMap<Scope, Series>) -> Vec<Finding> {
    let mut out = Vec::new();
    let sampled = lives_by_workload(samples);
    for (key, lives) in lives_by_workload(input.series) {
        let lives = sampled.get(&key).unwrap_or(&lives);
        let Some(scope) = lives.first().map(|l| Scope {
            pod: None,
            ..l.scope.clone()
        }) else {
            continue;
        };
        for &t in input.eval_times {
            let window: Vec<&Life<'_>> = lives
                .iter()
                .filter(|l| l.start_s <= t && l.end_s() >= t - WINDOW_S)
                .collect();
            let sc = Scales::of(life_length(&window, t));
            let mut starts: Vec<i64> = window
                .iter()
                .map(|l| l.start_s / sc.start_bucket_s)
                .collect();
            starts.sort();
            starts.dedup();
            // The lives going on now: seen in the last two minutes (or half a life), and not
            // followed by a newer life (a restart, a replaced pod) before their last sample.
            let newest = window.iter().map(|l| l.start_s).max().unwrap_or(t);
            let current: Vec<&Life<'_>> = window
                .iter()
                .copied()
                .filter(|l| {
                    let end = l.ts_s[l.upto(t).saturating_sub(1)];
                    end >= t - sc.current_seen_s && end >= newest
                })
                .collect();
            if starts.len() < MIN_LIVES || current.is_empty() {
                continue;
            }
            let Some(f) = fit(&window, t, &sc) else {
                continue;
            };
            let Some((oldest, per_hour, t_stat, fired)) = verdict(&f, t, &sc) else {
                continue;
            };
            let per_s = per_hour / 3_600.0;
            let value: f64 = current
                .iter()
                .map(|l| l.values[l.upto(t).saturating_sub(1)])
                .sum();
            let grown: f64 = current.iter().map(|l| per_s * (t - l.start_s) as f64).sum();
            let since = current.iter().map(|l| l.start_s).min().unwrap_or(t);
            out.push(Finding {
                scope: scope.clone(),
                detector: DetectorKind::Lives,
                eval_s: t,
                fired,
                value,
                baseline: Some((value - grown.max(0.0)).max(0.0)),
                growth_per_s: per_s * current.len() as f64,
                score: squash(t_stat / MIN_T),
                reason: format!(
                    "its pod lives grow {per_hour:.1}/h with age, the daily pattern removed (pooled over the {} latest of {} versions in 24 h, t {t_stat:.1}; threshold {:.0}/h)",
                    f.versions.len() - oldest,
                    f.versions.len(),
                    MIN_PER_S * 3_600.0
                ),
                onset_s: Some(since),
                sustained: false,
                window_s: (t - since).max(300),
                max_age_s: sc.max_age_s,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::series::Series;
    use std::collections::BTreeMap;

    fn scope(pod: &str) -> Scope {
        Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("web".into()),
            pod: Some(pod.into()),
        }
    }

    /// Lives of 5 hours, one replica, a new version each deploy, a daily wave of ±30 % and
    /// noise; `rate` goroutines per second and life.
    fn deploys(rate: f64) -> BTreeMap<Scope, Series> {
        let mut out = BTreeMap::new();
        let mut rng = crate::rng::SplitMix64::new(7);
        let hashes = [
            "bcdfghjk2",
            "lmnpqrst4",
            "vwxz25678",
            "c2d4f5g6h",
            "k7l8m9n2p",
        ];
        for (k, h) in hashes.iter().enumerate() {
            let start = k as i64 * 5 * 3_600;
            let mut s = Series::default();
            for m in 0..300 {
                let t = start + m * 60;
                let wave = 1.0 + 0.3 * (t as f64 / 86_400.0 * std::f64::consts::TAU).sin();
                let noise = 1.0 + 0.02 * (rng.next_f64() - 0.5) * 3.4;
                s.ts_s.push(t);
                s.values.push(500.0 * wave * noise + rate * (m * 60) as f64);
            }
            out.insert(scope(&format!("web-{h}-x2k4q")), s);
        }
        out
    }

    fn judge(series: &BTreeMap<Scope, Series>, t: i64) -> Option<(f64, f64)> {
        let lives = lives_by_workload(series);
        let lives = &lives[&("shop".to_string(), "web".to_string())];
        let window: Vec<&Life<'_>> = lives.iter().filter(|l| l.start_s <= t).collect();
        let sc = Scales::of(life_length(&window, t));
        // Lives of 5 hours: the scales as written for lives of hours.
        assert_eq!(
            sc,
            Scales {
                max_age_s: sc.max_age_s,
                ..Scales::of(None)
            }
        );
        let f = fit(&window, t, &sc)?;
        assert_eq!(f.versions.len(), 5);
        verdict(&f, t, &sc).map(|(_, per_hour, t_stat, _)| (per_hour, t_stat))
    }

    /// One version restarted every `life_s` seconds, a sample every 2 s (ingest passes), a
    /// `level` with ±1 of noise; `per_min` goroutines a minute of age, and a daily wave at its
    /// steepest (`wave` of the level, 24 h) on top.
    fn restarts(
        level: f64,
        per_min: f64,
        wave: f64,
        lives: usize,
        life_s: i64,
    ) -> BTreeMap<Scope, Series> {
        let mut out = BTreeMap::new();
        let mut rng = crate::rng::SplitMix64::new(11);
        let t0 = 1_796_083_200; // midnight: the wave rising fastest
        for k in 0..lives {
            let start = t0 + k as i64 * life_s;
            let mut s = Series::default();
            for i in 0..life_s / 2 {
                let t = start + 2 * i;
                let day = (t as f64 / 86_400.0 * std::f64::consts::TAU).sin();
                let v = level * (1.0 + wave * day)
                    + (per_min * (t - start) as f64 / 60.0).floor()
                    + (rng.next_f64() * 3.0).floor()
                    - 1.0;
                s.ts_s.push(t);
                s.values.push(v);
            }
            let c = "bcdfghjklmnpqrstvwxz2456789".as_bytes()[k] as char;
            out.insert(scope(&format!("web-7d9f8c6b5-x2k{c}q")), s);
        }
        out
    }

    fn judge_now(series: &BTreeMap<Scope, Series>) -> Option<(Scales, f64, f64, bool)> {
        let lives = lives_by_workload(series);
        let lives = &lives[&("shop".to_string(), "web".to_string())];
        let t = lives.iter().map(|l| l.end_s()).max().unwrap();
        let window: Vec<&Life<'_>> = lives.iter().collect();
        let sc = Scales::of(life_length(&window, t));
        let f = fit(&window, t, &sc)?;
        verdict(&f, t, &sc).map(|(_, per_hour, t_stat, fired)| (sc, per_hour, t_stat, fired))
    }

    #[test]
    fn lives_of_a_minute_are_judged_at_their_own_scale() {
        // Three lives of 45 s leaking 12 a minute: found, the scales those of 45 s lives.
        let (sc, per_hour, t_stat, fired) = judge_now(&restarts(15.0, 12.0, 0.0, 3, 45)).unwrap();
        assert_eq!(sc.max_age_s, Some(42));
        assert_eq!((sc.start_bucket_s, sc.current_min_age_s), (21, 21));
        assert!(
            fired && (per_hour - 720.0).abs() < 120.0,
            "{per_hour} {t_stat}"
        );
        // The same restarts without a leak: nothing, whatever the number of lives.
        for lives in [3, 6, 12] {
            let (_, per_hour, t_stat, fired) =
                judge_now(&restarts(15.0, 0.0, 0.0, lives, 45)).unwrap();
            assert!(!fired, "{lives} lives: {per_hour} {t_stat}");
        }
        // A daily wave of ±50 % of 2,000 at its steepest (262 an hour), no leak: within
        // minutes of the day it cannot be told from age, and its prior keeps it from firing.
        let (_, per_hour, t_stat, fired) = judge_now(&restarts(2_000.0, 0.0, 0.5, 12, 45)).unwrap();
        assert!(per_hour > 100.0 && !fired, "{per_hour} {t_stat}");
    }

    #[test]
    fn a_slow_leak_in_every_short_life_is_pooled_and_a_daily_wave_is_not_growth() {
        let t = 4 * 5 * 3_600 + 2 * 3_600;
        // 0.02/s = 72 per hour and life, hidden in a ±150 daily wave within each life.
        let (per_hour, t_stat) = judge(&deploys(0.02), t).unwrap();
        assert!((per_hour - 72.0).abs() < 10.0, "{per_hour}");
        assert!(t_stat > MIN_T, "{t_stat}");
        let (per_hour, t_stat) = judge(&deploys(0.0), t).unwrap();
        assert!(
            per_hour.abs() < 5.0 && t_stat < MIN_T,
            "{per_hour} {t_stat}"
        );
    }
}
