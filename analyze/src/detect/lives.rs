//! `lives`: a workload judged across its pod lives. A leak is a property of the code a workload
//! runs, not of one pod: a service deployed every few hours whose every pod life leaks slowly
//! never has a pod old enough for the per-pod rules, but every life grows with its age.
//!
//! **The model.** Over the last 24 hours, every life of the workload's pods (a pod from its
//! start or restart to its end or next restart; `pods::lives_by_workload`) is fitted at once by
//! least squares: `goroutines = intercept per life + r x age + daily pattern`, the daily pattern
//! being two harmonics of the time of day shared by all lives (`sin`/`cos` of 24 h and 12 h).
//! The intercept per life absorbs each version's and each replica's level (a deploy that
//! raises the level is not growth); lives that start at different times of day tell the age
//! from the daily pattern, so the slope per life `r` is pooled across lives and replicas at the
//! same age. It fires when `r` is at least `MIN_PER_S` per pod (and 1 % of a pod's level per
//! hour) with a t-statistic of at least `MIN_T`, and the current lives grow too.
//!
//! **Versions** come from the pods' names ([`super::pods::version_of`]: a Deployment's pods are
//! `{deployment}-{pod-template-hash}-{suffix}`, the hash changing with every new pod template),
//! not from a new column: every count row already carries the pod's name, rows of every age
//! (backfilled Prometheus history included) give the version, and a `pod-template-hash` label
//! is the same string. Decision: a deploy of a new version starts a new comparison in this
//! sense — the lives of every version in the window share the fit (a leak in the code a version
//! inherits is the same leak), but the finding requires the current version's own lives to grow
//! (their slope, once they are an hour old, with the pooled daily pattern removed): a version
//! that fixed the leak ends the episode within an hour of its rollout, and a version that
//! brings one is judged on its own lives as soon as they have an hour. Pods of other shapes
//! (StatefulSets, DaemonSets, a process restarting in the same pod) have no version: their
//! lives are one comparison.
//!
//! **When it judges**: a workload whose pods lived at least three lives (two deploys or
//! restarts) in the 24 hours; long-lived pods are the per-pod detectors' (`growth_rule`,
//! `stl_iforest`, `daily_trend`). One finding per workload (the pod scope left empty).
//! The t-statistic assumes independent minutes (the noise of the scenario suite); correlated
//! noise makes it optimistic, hence the high `MIN_T`.

use futures::future::BoxFuture;

use super::pods::{Life, inverse_diag, lives_by_workload, solve};
use super::{Detector, DetectorKind, Finding, Inputs, squash};
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
        Box::pin(async move { Ok(findings(input)) })
    }
}

const P: usize = 5;

fn features(ts: i64, start: i64) -> [f64; P] {
    let a = (ts.rem_euclid(86_400)) as f64 / 86_400.0 * std::f64::consts::TAU;
    [
        (ts - start) as f64 / 3_600.0,
        a.sin(),
        a.cos(),
        (2.0 * a).sin(),
        (2.0 * a).cos(),
    ]
}

/// The pooled fit over `lives` as of `t`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fit {
    /// Goroutines per pod and hour of age.
    pub per_hour: f64,
    pub t_stat: f64,
    /// The current lives' own slope (the pooled daily pattern removed), when they are old enough.
    pub current_per_hour: Option<f64>,
    pub mean_level: f64,
}

pub(crate) fn fit(lives: &[&Life<'_>], t: i64, current: &[&Life<'_>]) -> Option<Fit> {
    let from = t - WINDOW_S;
    let mut a = [[0.0; P]; P];
    let mut b = [0.0; P];
    let (mut yy, mut n, mut groups, mut level_sum) = (0.0, 0usize, 0usize, 0.0);
    // Per life: its means, to center on (the intercept per life).
    let mut centered: Vec<(usize, usize, [f64; P], f64)> = Vec::new();
    for (li, l) in lives.iter().enumerate() {
        let (i0, i1) = (l.ts_s.partition_point(|x| *x < from), l.upto(t));
        if i1 < i0 + 10 {
            continue;
        }
        let m = (i1 - i0) as f64;
        let mut mx = [0.0; P];
        let mut my = 0.0;
        for i in i0..i1 {
            let x = features(l.ts_s[i], l.start_s);
            for k in 0..P {
                mx[k] += x[k] / m;
            }
            my += l.values[i] / m;
        }
        for i in i0..i1 {
            let mut x = features(l.ts_s[i], l.start_s);
            for k in 0..P {
                x[k] -= mx[k];
            }
            let y = l.values[i] - my;
            for r in 0..P {
                for c in 0..P {
                    a[r][c] += x[r] * x[c];
                }
                b[r] += x[r] * y;
            }
            yy += y * y;
        }
        n += i1 - i0;
        groups += 1;
        level_sum += my * m;
        centered.push((li, i0, mx, my));
    }
    let dof = n as f64 - (P + groups) as f64;
    if groups < 2 || dof < 30.0 {
        return None;
    }
    let beta = solve(a, b)?;
    let explained: f64 = (0..P).map(|k| beta[k] * b[k]).sum();
    let sigma2 = ((yy - explained) / dof).max(1e-9);
    let se = (sigma2 * inverse_diag(a, 0)?).sqrt();
    // The current lives' own slope: their residual after the pooled daily pattern, on age.
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    let mut old_enough = false;
    for l in current {
        if t - l.start_s < CURRENT_MIN_AGE_S {
            continue;
        }
        old_enough = true;
        let Some(&(_, i0, mx, my)) = centered
            .iter()
            .find(|(li, ..)| std::ptr::eq(lives[*li], *l))
        else {
            continue;
        };
        for i in i0..l.upto(t) {
            let x = features(l.ts_s[i], l.start_s);
            let seasonal: f64 = (1..P).map(|k| beta[k] * (x[k] - mx[k])).sum();
            let age = x[0] - mx[0];
            sxy += age * (l.values[i] - my - seasonal);
            sxx += age * age;
        }
    }
    Some(Fit {
        per_hour: beta[0],
        t_stat: beta[0] / se,
        current_per_hour: (old_enough && sxx > 0.0).then(|| sxy / sxx),
        mean_level: level_sum / n as f64,
    })
}

fn findings(input: &Inputs<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((_, _), lives) in lives_by_workload(input.series) {
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
            let mut starts: Vec<i64> = window.iter().map(|l| l.start_s / 600).collect();
            starts.sort();
            starts.dedup();
            // The lives going on now (seen in the last two minutes).
            let current: Vec<&Life<'_>> = window
                .iter()
                .copied()
                .filter(|l| l.end_s() >= t - 120)
                .collect();
            if starts.len() < MIN_LIVES || current.is_empty() {
                continue;
            }
            // The current version's lives: the newest life's version (or its start, unversioned).
            let newest = current.iter().max_by_key(|l| l.start_s).copied();
            let current: Vec<&Life<'_>> = current
                .into_iter()
                .filter(|l| match newest.and_then(|n| n.version) {
                    Some(v) => l.version == Some(v),
                    None => newest.is_some_and(|n| l.start_s / 600 == n.start_s / 600),
                })
                .collect();
            let Some(f) = fit(&window, t, &current) else {
                continue;
            };
            let per_s = f.per_hour / 3_600.0;
            let fired = per_s >= MIN_PER_S
                && f.per_hour >= MIN_SHARE_PER_HOUR * f.mean_level
                && f.t_stat >= MIN_T
                && f.current_per_hour.is_none_or(|c| c >= 0.5 * f.per_hour);
            let value: f64 = current
                .iter()
                .map(|l| l.values[l.upto(t).saturating_sub(1)])
                .sum();
            let grown: f64 = current
                .iter()
                .map(|l| per_s * (t - l.start_s) as f64)
                .sum();
            let since = current.iter().map(|l| l.start_s).min().unwrap_or(t);
            out.push(Finding {
                scope: scope.clone(),
                detector: DetectorKind::Lives,
                eval_s: t,
                fired,
                value,
                baseline: Some((value - grown.max(0.0)).max(0.0)),
                growth_per_s: per_s * current.len() as f64,
                score: squash(f.t_stat / MIN_T),
                reason: format!(
                    "every pod life grows {:.1}/h at the same age (pooled over {} lives in 24 h, t {:.1}; current version {}), threshold {:.0}/h",
                    f.per_hour,
                    starts.len(),
                    f.t_stat,
                    f.current_per_hour
                        .map(|c| format!("{c:.1}/h"))
                        .unwrap_or_else(|| "under an hour old".into()),
                    MIN_PER_S * 3_600.0
                ),
                onset_s: Some(since),
                sustained: false,
                window_s: (t - since).max(300),
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
        let hashes = ["bcdfghjk2", "lmnpqrst4", "vwxz25678", "c2d4f5g6h", "k7l8m9n2p"];
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
        let current: Vec<&Life<'_>> = window
            .iter()
            .copied()
            .filter(|l| l.end_s() >= t - 120)
            .collect();
        fit(&window, t, &current).map(|f| (f.per_hour, f.t_stat))
    }

    #[test]
    fn a_slow_leak_in_every_short_life_is_pooled_and_a_daily_wave_is_not_growth() {
        let t = 4 * 5 * 3_600 + 2 * 3_600;
        // 0.02/s = 72 per hour and life, hidden in a ±150 daily wave within each life.
        let (per_hour, t_stat) = judge(&deploys(0.02), t).unwrap();
        assert!((per_hour - 72.0).abs() < 10.0, "{per_hour}");
        assert!(t_stat > MIN_T, "{t_stat}");
        let (per_hour, t_stat) = judge(&deploys(0.0), t).unwrap();
        assert!(per_hour.abs() < 5.0 && t_stat < MIN_T, "{per_hour} {t_stat}");
    }
}
