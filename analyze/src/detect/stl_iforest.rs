//! `stl_iforest`: robust STL + Isolation Forest ([`crate::anomaly`]) on every pod's and
//! workload's minute series, evaluated at every step by `anomaly::evaluate_many_with_resets`
//! (STL and the forest refitted every 3 hours and cached in between). A workload-wide series
//! starts over at each change of its pod set: a rollout that raises the level for good is a
//! deploy, not a leak, and a leak in the new pods shows in their own series.
//!
//! In-process (the default) this module scores in its own loop ([`findings`]). On a cluster
//! (`--engine ballista://…`) the same scoring runs on the executors: one statement with
//! `leak_stl_iforest` per workload group (`anomaly::udaf`, which calls [`findings_within`] on
//! each group), the same findings to the bit.

use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;

use super::{Detector, DetectorKind, Finding, Inputs};
use crate::engine::columns::rfc;
use crate::engine::series::Series;
use crate::engine::{AnalyzeConfig, Scope};
use crate::error::Result;

pub struct StlIforest;

impl Detector for StlIforest {
    fn kind(&self) -> DetectorKind {
        DetectorKind::StlIforest
    }

    /// STL's daily component needs days of history (`context_s`, 3 days by default).
    fn series_history_s(&self, cfg: &AnalyzeConfig) -> Option<i64> {
        Some(cfg.context_s)
    }

    fn in_product_score(&self) -> bool {
        true
    }

    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async move {
            // On a cluster the scoring runs on the executors, as SQL (`leak_stl_iforest`).
            if input.cfg.engine != crate::session::Engine::InProcess {
                return crate::anomaly::udaf::findings_on_engine(input).await;
            }
            Ok(findings(
                input.series,
                input.span_s,
                input.eval_times,
                input.cfg,
            ))
        })
    }
}

/// The first and last minute of any of `series` (the span pod appearances are judged in).
pub(crate) fn span(series: &BTreeMap<Scope, Series>) -> (i64, i64) {
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for s in series.values() {
        if let (Some(a), Some(b)) = (s.ts_s.first(), s.ts_s.last()) {
            first = first.min(*a);
            last = last.max(*b);
        }
    }
    (first, last)
}

/// When each workload's set of pods changed (a pod appeared or went within `(first, last)`,
/// the span of every series loaded), from the pod series: a rollout swaps pods, and the
/// workload's sum moves with it.
fn pod_set_changes(
    series: &BTreeMap<Scope, Series>,
    (first, last): (i64, i64),
) -> HashMap<Scope, Vec<i64>> {
    let mut out: HashMap<Scope, Vec<i64>> = HashMap::new();
    for (scope, s) in series {
        if scope.pod.is_none() {
            continue;
        }
        let w = Scope {
            pod: None,
            ..scope.clone()
        };
        let e = out.entry(w).or_default();
        if let Some(a) = s.ts_s.first().filter(|a| **a > first + 600) {
            e.push(*a);
        }
        if let Some(b) = s.ts_s.last().filter(|b| **b < last - 600) {
            e.push(*b);
        }
    }
    out
}

/// STL + Isolation Forest on every pod's and workload's minute series at `eval_times`;
/// `span_s`: the span of the fleet's series when `series` is one group of it (None: their own).
pub fn findings(
    series: &BTreeMap<Scope, Series>,
    span_s: Option<(i64, i64)>,
    eval_times: &[i64],
    cfg: &AnalyzeConfig,
) -> Vec<Finding> {
    findings_within(series, fleet_span(series, span_s), eval_times, &cfg.stl)
}

/// The span pod appearances are judged in: the fleet's (`span_s`, when `series` is one group
/// of it) joined with these series' own.
pub(crate) fn fleet_span(
    series: &BTreeMap<Scope, Series>,
    span_s: Option<(i64, i64)>,
) -> (i64, i64) {
    let own = span(series);
    match span_s {
        Some((a, b)) => (a.min(own.0), b.max(own.1)),
        None => own,
    }
}

/// [`findings`] on some of the series (whole workloads: each with all its pods), `span` being
/// that of every series loaded: what `leak_stl_iforest` computes per group on an executor.
pub(crate) fn findings_within(
    series: &BTreeMap<Scope, Series>,
    span: (i64, i64),
    eval_times: &[i64],
    stl: &crate::anomaly::StlIfConfig,
) -> Vec<Finding> {
    let churn = pod_set_changes(series, span);
    let items: Vec<(&Scope, &Series)> = series.iter().collect();
    // Series are independent: worker threads take them one at a time (a shared cursor), and
    // the findings come out in series order whatever thread scored them.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<Finding>)> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((scope, s)) = items.get(i) else {
                            break mine;
                        };
                        mine.push((i, series_findings(scope, s, &churn, eval_times, stl)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an STL + IF worker panicked"))
            .collect()
    });
    parts.sort_unstable_by_key(|(i, _)| *i);
    parts.into_iter().flat_map(|(_, f)| f).collect()
}

/// STL + Isolation Forest on one series at the evaluations it is alive at.
fn series_findings(
    scope: &Scope,
    s: &Series,
    churn: &HashMap<Scope, Vec<i64>>,
    eval_times: &[i64],
    stl: &crate::anomaly::StlIfConfig,
) -> Vec<Finding> {
    let mut out = Vec::new();
    {
        let (Some(first), Some(last)) = (s.ts_s.first(), s.ts_s.last()) else {
            return out;
        };
        // Only evaluations the series is alive at (a pod gone 10 minutes is not evaluated).
        let at: Vec<i64> = eval_times
            .iter()
            .copied()
            .filter(|t| *t >= *first && *t <= *last + 600)
            .collect();
        if at.is_empty() {
            return out;
        }
        // A workload's series starts over at every change of its pod set (a rollout swaps
        // pods and moves the sum); a pod's series is one piece.
        let mut cuts: Vec<i64> = churn.get(scope).cloned().unwrap_or_default();
        cuts.sort_unstable();
        cuts.dedup();
        let mut verdicts = Vec::with_capacity(at.len());
        let mut i = 0;
        while i < at.len() {
            let seg_start = cuts
                .iter()
                .copied()
                .filter(|c| *c <= at[i])
                .max()
                .unwrap_or(i64::MIN);
            let seg_end = cuts
                .iter()
                .copied()
                .find(|c| *c > at[i])
                .unwrap_or(i64::MAX);
            let j = i + at[i..].iter().take_while(|t| **t < seg_end).count();
            let lo = s.ts_s.partition_point(|x| *x < seg_start);
            let hi = s.ts_s.partition_point(|x| *x <= at[j - 1]);
            let mut vs = crate::anomaly::evaluate_many_with_resets(
                crate::anomaly::SeriesRef {
                    ts_s: &s.ts_s[lo..hi],
                    values: &s.values[lo..hi],
                },
                &s.resets_s,
                &at[i..j],
                stl,
            );
            if seg_start != i64::MIN {
                for v in &mut vs {
                    v.reason = format!(
                        "{} (series since the pods changed at {})",
                        v.reason,
                        rfc(seg_start)
                    );
                }
            }
            verdicts.extend(vs);
            i = j;
        }
        for (t, v) in at.iter().zip(verdicts) {
            let idx = s.ts_s.partition_point(|x| x <= t);
            let value = if idx > 0 { s.values[idx - 1] } else { 0.0 };
            out.push(Finding {
                scope: scope.clone(),
                detector: DetectorKind::StlIforest,
                eval_s: *t,
                fired: v.fired,
                value,
                baseline: None,
                growth_per_s: v.growth_per_s,
                score: v.score,
                reason: v.reason,
                onset_s: v.onset_s,
                sustained: false,
                window_s: 3_600,
                max_age_s: None,
            });
        }
    }
    out
}
