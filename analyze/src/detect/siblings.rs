//! `siblings`: one pod diverging from its siblings — a canary of a new version that leaks
//! beside healthy pods, or one pod of many — judged at any age, within hours.
//!
//! Pods of one workload behind one Service see the same load at the same time, so their counts
//! move together (the daily wave, bursts) up to a factor (a version's or a node's level). For
//! each pod life at least `MIN_AGE_S` old, over the last `WINDOW_S` of it (from its start when
//! younger): the median of its siblings (the workload's other pods at the same minute, any
//! version: the previous version's pods are the canary's reference at its age, since they
//! carry the same load at the same time) scaled by the pod's ratio to it over the window's
//! first 30 minutes is what the pod would hold without a leak of its own; the excess over it is
//! fitted against time by least squares. It fires when the excess grows by at least
//! `MIN_PER_S` (and 1 % of the pod's level per hour) with a t-statistic of at least `MIN_T`.
//! A workload needs 3 pods (2 siblings) at the minute; a leak in every pod does not diverge
//! and is the other detectors' (`lives`, `growth_rule`).
//!
//! Delay: the excess's slope has a standard error of σ·√(12/n³) per minute over n minutes (σ
//! the excess's noise per minute), so a pod leaking r goroutines a minute fires once
//! n ≥ (MIN_T·σ/r)^(2/3)·12^(1/3), and at `MIN_AGE_S` at the earliest: ~3 h for 0.015/s at
//! σ = 90 (4 % noise on 2,000 goroutines), ~1 h for 0.05/s.

use futures::future::BoxFuture;

use super::pods::{Life, lives_by_workload, median};
use super::{Detector, DetectorKind, Finding, Inputs, squash};
use crate::engine::AnalyzeConfig;
use crate::error::Result;

pub struct Siblings;

/// How much of a life is looked at.
const WINDOW_S: i64 = 6 * 3_600;
/// The youngest life judged.
const MIN_AGE_S: i64 = 3_600;
/// The least growth of the excess per second.
pub const MIN_PER_S: f64 = 0.005;
const MIN_SHARE_PER_HOUR: f64 = 0.01;
pub const MIN_T: f64 = 8.0;

impl Detector for Siblings {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Siblings
    }

    fn series_history_s(&self, _cfg: &AnalyzeConfig) -> Option<i64> {
        Some(WINDOW_S)
    }

    /// Siblings share the daily pattern: comparing with them removes it.
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

/// The value at minute `t` of a life, if it has one.
fn at(l: &Life<'_>, t: i64) -> Option<f64> {
    l.ts_s.binary_search(&t).ok().map(|i| l.values[i])
}

/// The divergence of `pod` from `siblings` as of `t`: (excess slope per second, t-statistic,
/// expected value now, window start); None without enough shared minutes.
pub(crate) fn divergence(
    pod: &Life<'_>,
    siblings: &[&Life<'_>],
    t: i64,
) -> Option<(f64, f64, f64, i64)> {
    let from = pod.start_s.max(t - WINDOW_S);
    let (i0, i1) = (pod.ts_s.partition_point(|x| *x < from), pod.upto(t));
    let mut rows: Vec<(f64, f64, f64)> = Vec::with_capacity(i1.saturating_sub(i0));
    let mut vals = Vec::with_capacity(siblings.len());
    for i in i0..i1 {
        let m = pod.ts_s[i];
        vals.clear();
        vals.extend(siblings.iter().filter_map(|s| at(s, m)));
        if vals.len() < 2 {
            continue;
        }
        let med = median(&mut vals)?;
        if med > 0.0 {
            rows.push(((m - from) as f64, pod.values[i], med));
        }
    }
    if rows.len() < 45 {
        return None;
    }
    let mut ratios: Vec<f64> = rows
        .iter()
        .take_while(|r| r.0 < 1_800.0)
        .map(|r| r.1 / r.2)
        .collect();
    if ratios.len() < 10 {
        return None;
    }
    let k = median(&mut ratios)?;
    let n = rows.len() as f64;
    let (mx, my) = rows.iter().fold((0.0, 0.0), |(a, b), r| {
        (a + r.0 / n, b + (r.1 - k * r.2) / n)
    });
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for r in &rows {
        let (x, y) = (r.0 - mx, r.1 - k * r.2 - my);
        sxx += x * x;
        sxy += x * y;
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let ss: f64 = rows
        .iter()
        .map(|r| {
            let e = r.1 - k * r.2 - my - slope * (r.0 - mx);
            e * e
        })
        .sum();
    let se = (ss / (n - 2.0) / sxx).sqrt().max(1e-12);
    let last = rows.last()?;
    Some((slope, slope / se, k * last.2, from))
}

fn findings(input: &Inputs<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((_, _), lives) in lives_by_workload(input.series) {
        if lives.len() < 3 {
            continue;
        }
        for &t in input.eval_times {
            let now: Vec<&Life<'_>> = lives
                .iter()
                .filter(|l| l.start_s <= t && l.end_s() >= t - 120)
                .collect();
            if now.len() < 3 {
                continue;
            }
            for pod in &now {
                if t - pod.start_s < MIN_AGE_S {
                    continue;
                }
                let siblings: Vec<&Life<'_>> = now
                    .iter()
                    .copied()
                    .filter(|s| !std::ptr::eq(*s, *pod))
                    .collect();
                let Some((slope, t_stat, expected, from)) = divergence(pod, &siblings, t) else {
                    continue;
                };
                let value = pod.values[pod.upto(t).saturating_sub(1)];
                let fired = slope >= MIN_PER_S
                    && slope * 3_600.0 >= MIN_SHARE_PER_HOUR * expected
                    && t_stat >= MIN_T;
                out.push(Finding {
                    scope: pod.scope.clone(),
                    detector: DetectorKind::Siblings,
                    eval_s: t,
                    fired,
                    value,
                    baseline: Some(expected),
                    growth_per_s: slope,
                    score: squash(t_stat / MIN_T),
                    reason: format!(
                        "diverges from its {} siblings by {:.1}/h since {} min ago (t {:.1}; threshold {:.0}/h)",
                        siblings.len(),
                        slope * 3_600.0,
                        (t - from) / 60,
                        t_stat,
                        MIN_PER_S * 3_600.0
                    ),
                    onset_s: Some(from),
                    sustained: false,
                    window_s: (t - from).max(300),
                    max_age_s: None,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Scope;

    fn life<'a>(scope: &'a Scope, ts: &'a [i64], vs: &'a [f64]) -> Life<'a> {
        Life {
            scope,
            version: None,
            start_s: ts[0],
            ts_s: ts,
            values: vs,
        }
    }

    #[test]
    fn a_canary_diverging_from_its_siblings_fires_and_a_sibling_at_another_level_does_not() {
        let scope = Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: None,
            workload: Some("web".into()),
            pod: Some("web-a".into()),
        };
        let mut rng = crate::rng::SplitMix64::new(3);
        let ts: Vec<i64> = (0..240).map(|m| 86_400 + m * 60).collect();
        let wave =
            |t: i64| 1_000.0 * (1.0 + 0.4 * (t as f64 / 86_400.0 * std::f64::consts::TAU).sin());
        let mut pods: Vec<Vec<f64>> = (0..4)
            .map(|_| {
                ts.iter()
                    .map(|t| wave(*t) * (1.0 + 0.03 * rng.normal()))
                    .collect()
            })
            .collect();
        // One canary 20 % above the others, leaking 0.02/s; one at 20 % above, not leaking.
        let canary: Vec<f64> = ts
            .iter()
            .map(|t| 1.2 * wave(*t) * (1.0 + 0.03 * rng.normal()) + 0.02 * (t - ts[0]) as f64)
            .collect();
        pods[0].iter_mut().for_each(|v| *v *= 1.2);
        let lives: Vec<Life<'_>> = pods.iter().map(|v| life(&scope, &ts, v)).collect();
        let c = life(&scope, &ts, &canary);
        let sib: Vec<&Life<'_>> = lives.iter().collect();
        let t = *ts.last().unwrap();
        let (slope, t_stat, ..) = divergence(&c, &sib, t).unwrap();
        assert!(
            (slope - 0.02).abs() < 0.005 && t_stat > MIN_T,
            "{slope} {t_stat}"
        );
        let (slope, t_stat, ..) = divergence(&lives[0], &sib[1..], t).unwrap();
        assert!(slope.abs() < 0.005 && t_stat < MIN_T, "{slope} {t_stat}");
    }
}
