//! `stl_iforest`: robust STL + Isolation Forest ([`crate::anomaly`]) on every pod's and
//! workload's minute series, evaluated at every step by `anomaly::evaluate_many_with_resets`
//! (STL and the forest refitted every 3 hours and cached in between). A workload-wide series
//! starts over at each change of its pod set: a rollout that raises the level for good is a
//! deploy, not a leak, and a leak in the new pods shows in their own series.

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
            Ok(findings(
                input.series,
                input.span_s,
                input.eval_times,
                input.cfg,
            ))
        })
    }
}

/// When each workload's set of pods changed (a pod appeared or went), from the pod series: a
/// rollout swaps pods, and the workload's sum moves with it. Appearing and going are relative
/// to the span of the fleet's series (`span_s`, or these series' own when they are the fleet).
fn pod_set_changes(
    series: &BTreeMap<Scope, Series>,
    span_s: Option<(i64, i64)>,
) -> HashMap<Scope, Vec<i64>> {
    let (mut first, mut last) = span_s.unwrap_or((i64::MAX, i64::MIN));
    for s in series.values() {
        if let (Some(a), Some(b)) = (s.ts_s.first(), s.ts_s.last()) {
            first = first.min(*a);
            last = last.max(*b);
        }
    }
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

/// STL + Isolation Forest on every pod's and workload's minute series at `eval_times`.
pub fn findings(
    series: &BTreeMap<Scope, Series>,
    span_s: Option<(i64, i64)>,
    eval_times: &[i64],
    cfg: &AnalyzeConfig,
) -> Vec<Finding> {
    let churn = pod_set_changes(series, span_s);
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
                        mine.push((i, series_findings(scope, s, &churn, eval_times, cfg)));
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
    cfg: &AnalyzeConfig,
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
                &cfg.stl,
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
