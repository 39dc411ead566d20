//! The analyze engine: detectors over stored history, episodes, levels, events.
//!
//! ```text
//!  goroutine_counts ──queries/rule_baseline.sql──▶ firings ─┐
//!                   ──queries/rule_growth.sql────▶ firings ─┼─▶ episodes ─▶ levels ─▶ LeakEvent
//!                   ──minute series──▶ STL + IF ─▶ firings ─┘        │              (+ clusters
//!  goroutine_samples ──residence, alive share─────────────────────────┘               from rootcause)
//! ```
//!
//! One evaluation ("now", the CronJob) and a replay (every step over stored history, as if live)
//! run the same code: a live run replays the last `live_window` and emits the last step only, so
//! detectors need no state beyond the store. An episode is a run of firings of one detector on
//! one scope (a pod, or a workload as a whole) with gaps of at most `episode_gap_evals`; its
//! `event_id` hashes the scope, the detector and the episode's onset, and a live run that finds
//! an episode already going at its window start adopts the stored event's id and onset.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use leakhound_ingest::Store;
use leakhound_schemas::events::{EVENT_SCHEMA, LeakEvent, Level};

use crate::error::{Error, Result};
use crate::levels::{Evidence, LevelThresholds, level, sla_penalty};
use crate::queries;

pub const BASELINE_RULE: &str = "baseline_rule";
pub const GROWTH_RULE: &str = "growth_rule";
pub const STL_IFOREST: &str = "stl_iforest";
pub const DETECTORS: [&str; 3] = [BASELINE_RULE, GROWTH_RULE, STL_IFOREST];

/// Which evaluations become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every firing evaluation (a live run's last step).
    All,
    /// An episode's first firing and every change of level (replay).
    Changes,
}

#[derive(Debug, Clone)]
pub struct AnalyzeConfig {
    pub step_s: i64,
    /// History the STL detector sees before the first evaluation.
    pub context_s: i64,
    /// A live run replays this much to rebuild its episodes.
    pub live_window_s: i64,
    pub episode_gap_evals: u32,
    pub baseline_factor: f64,
    pub baseline_periods: i64,
    pub growth_min_per_s: f64,
    pub growth_min_r2: f64,
    pub growth_min_coverage: f64,
    pub levels: LevelThresholds,
    pub detectors: Vec<String>,
    /// SQL LIKE pattern on namespace.
    pub namespace: String,
    pub stl: crate::anomaly::StlIfConfig,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            step_s: 300,
            context_s: 3 * 86_400,
            live_window_s: 2 * 3_600,
            episode_gap_evals: 2,
            baseline_factor: 1.8,
            baseline_periods: 3,
            growth_min_per_s: 0.5,
            growth_min_r2: 0.8,
            growth_min_coverage: 0.6,
            levels: LevelThresholds::default(),
            detectors: DETECTORS.iter().map(|d| d.to_string()).collect(),
            namespace: "%".into(),
            stl: Default::default(),
        }
    }
}

/// Who an event is about: the workspace's one scope type.
pub use leakhound_schemas::scope::Scope;

/// One detector's verdict on one scope at one evaluation.
#[derive(Debug, Clone)]
pub struct Finding {
    pub scope: Scope,
    pub detector: &'static str,
    pub eval_s: i64,
    pub fired: bool,
    pub value: f64,
    pub baseline: Option<f64>,
    pub growth_per_s: f64,
    pub score: f64,
    pub reason: String,
    /// The detector's own estimate of when the growth began.
    pub onset_s: Option<i64>,
    /// The detector's rule itself demanded persistence for this firing.
    pub sustained: bool,
    /// The span whose rise `recurring_rise` compares with yesterday's: how far back the firing
    /// looked (the growth rule: its fast branch's 10 or 15 minutes, or the hour; STL + IF: the
    /// last hour, its daily component needing two days to learn a new batch).
    pub window_s: i64,
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a arrow::array::ArrayRef> {
    b.column_by_name(name).ok_or_else(|| missing(name))
}

fn cast(a: &arrow::array::ArrayRef, to: &DataType, what: &str) -> Result<arrow::array::ArrayRef> {
    arrow::compute::cast(a, to).map_err(|e| Error::Internal(format!("column {what}: {e}")))
}

/// Any integer-like array as i64 values.
pub(crate) fn i64_values(a: &arrow::array::ArrayRef, what: &str) -> Result<Vec<Option<i64>>> {
    Ok(cast(a, &DataType::Int64, what)?
        .as_primitive::<Int64Type>()
        .iter()
        .collect())
}

/// Any array as strings.
pub(crate) fn str_values(a: &arrow::array::ArrayRef, what: &str) -> Result<Vec<Option<String>>> {
    Ok(cast(a, &DataType::Utf8, what)?
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// A timestamp column as µs since the epoch.
pub(crate) fn ts_micros(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let c = cast(
        column(b, name)?,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
        name,
    )?;
    i64_values(&c, name)
}

pub(crate) fn i64s(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    i64_values(column(b, name)?, name)
}

fn f64s(b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(cast(column(b, name)?, &DataType::Float64, name)?
        .as_primitive::<Float64Type>()
        .iter()
        .collect())
}

pub(crate) fn strs(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    str_values(column(b, name)?, name)
}

fn bools(b: &RecordBatch, name: &str) -> Result<Vec<bool>> {
    let c = b.column_by_name(name).ok_or_else(|| missing(name))?;
    let c = c
        .as_boolean_opt()
        .ok_or_else(|| Error::Internal(format!("column {name} is not boolean")))?;
    Ok((0..c.len()).map(|i| !c.is_null(i) && c.value(i)).collect())
}

fn missing(name: &str) -> Error {
    Error::Internal(format!("query returned no column {name}"))
}

pub(crate) fn rfc(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn run_named(
    ctx: &SessionContext,
    name: &str,
    params: &[(&str, String)],
) -> Result<Vec<RecordBatch>> {
    let q = queries::find(name, None)?;
    let given: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let sql = q.render(&given, Utc::now())?;
    Ok(ctx.sql(&sql).await?.collect().await?)
}

fn scope_rows(b: &RecordBatch) -> Result<Vec<Scope>> {
    let either = |a: &str, b2: &str| strs(b, a).or_else(|_| strs(b, b2));
    let (c, n, k, w, p) = (
        either("cluster", "cl")?,
        strs(b, "namespace")?,
        either("workload_kind", "wk")?,
        either("workload", "wl")?,
        strs(b, "pod")?,
    );
    Ok((0..b.num_rows())
        .map(|i| Scope {
            cluster: c[i].clone(),
            namespace: n[i].clone().unwrap_or_default(),
            workload_kind: k[i].clone(),
            workload: w[i].clone(),
            pod: p[i].clone(),
        })
        .collect())
}

fn squash(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        1.0 - (-x).exp()
    } else {
        0.0
    }
}

/// The seed's baseline rule, from `queries/rule_baseline.sql`.
pub async fn baseline_rule(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    cfg: &AnalyzeConfig,
) -> Result<Vec<Finding>> {
    let batches = run_named(
        ctx,
        "rule_baseline",
        &[
            ("from", rfc(from_s)),
            ("to", rfc(to_s)),
            ("factor", cfg.baseline_factor.to_string()),
            ("periods", cfg.baseline_periods.to_string()),
            ("namespace", cfg.namespace.clone()),
        ],
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let scopes = scope_rows(b)?;
        let (t, v, base, fired) = (
            ts_micros(b, "eval_at")?,
            f64s(b, "value")?,
            f64s(b, "baseline")?,
            bools(b, "fired")?,
        );
        for (i, scope) in scopes.into_iter().enumerate() {
            let (value, baseline) = (v[i].unwrap_or(0.0), base[i]);
            let ratio = baseline
                .filter(|b| *b > 0.0)
                .map(|b| value / (cfg.baseline_factor * b))
                .unwrap_or(0.0);
            out.push(Finding {
                scope,
                detector: BASELINE_RULE,
                eval_s: t[i].unwrap_or(0) / 1_000_000,
                fired: fired[i],
                value,
                baseline,
                growth_per_s: 0.0,
                score: squash(ratio),
                reason: format!(
                    "value {value:.0} vs {:.1} x P95 of the previous 2 h ({:.0}) for {} periods",
                    cfg.baseline_factor,
                    baseline.unwrap_or(f64::NAN),
                    cfg.baseline_periods
                ),
                onset_s: None,
                sustained: fired[i],
                window_s: 7_200,
            });
        }
    }
    Ok(out)
}

/// The growth rule, from `queries/rule_growth.sql`.
pub async fn growth_rule(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    cfg: &AnalyzeConfig,
) -> Result<Vec<Finding>> {
    let batches = run_named(
        ctx,
        "rule_growth",
        &[
            ("from", rfc(from_s)),
            ("to", rfc(to_s)),
            ("min_per_s", cfg.growth_min_per_s.to_string()),
            ("min_r2", cfg.growth_min_r2.to_string()),
            ("min_coverage", cfg.growth_min_coverage.to_string()),
            ("namespace", cfg.namespace.clone()),
        ],
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let scopes = scope_rows(b)?;
        let (t, v, low, slope, r2, fired, sustained) = (
            ts_micros(b, "eval_at")?,
            f64s(b, "value")?,
            f64s(b, "hour_low")?,
            f64s(b, "slope_per_s")?,
            f64s(b, "r2")?,
            bools(b, "fired")?,
            bools(b, "sustained")?,
        );
        let (slope_15m, slope_10m, window) = (
            f64s(b, "slope_15m_per_s")?,
            f64s(b, "slope_10m_per_s")?,
            i64s(b, "window_s")?,
        );
        for (i, scope) in scopes.into_iter().enumerate() {
            let window_s = window[i].unwrap_or(3_600);
            // The fast branch's slope is the recent one, over the window that fired.
            let s = match (sustained[i], window_s) {
                (true, 600) => slope_10m[i].unwrap_or(0.0),
                (true, _) => slope_15m[i].unwrap_or(0.0),
                _ => slope[i].unwrap_or(0.0),
            };
            let eval_s = t[i].unwrap_or(0) / 1_000_000;
            out.push(Finding {
                scope,
                detector: GROWTH_RULE,
                eval_s,
                fired: fired[i],
                value: v[i].unwrap_or(0.0),
                baseline: low[i],
                growth_per_s: s,
                score: squash(s / cfg.growth_min_per_s) * r2[i].unwrap_or(0.0).clamp(0.0, 1.0),
                reason: if sustained[i] {
                    format!(
                        "slope {s:.3}/s over the last {} minutes of this pod's life, growing all along (threshold {}/s)",
                        window_s / 60,
                        cfg.growth_min_per_s
                    )
                } else {
                    format!(
                        "slope {s:.3}/s over the last hour of this pod's life (R² {:.2}, threshold {}/s)",
                        r2[i].unwrap_or(0.0),
                        cfg.growth_min_per_s
                    )
                },
                onset_s: None,
                sustained: sustained[i],
                window_s,
            });
        }
    }
    Ok(out)
}

/// Mean of `s` over `[from, to)` (seconds), if it has a point there.
fn mean_in(s: &Series, from: i64, to: i64) -> Option<f64> {
    let lo = s.ts_s.partition_point(|t| *t < from);
    let hi = s.ts_s.partition_point(|t| *t < to);
    (hi > lo).then(|| s.values[lo..hi].iter().sum::<f64>() / (hi - lo) as f64)
}

/// The growth rule sees one pod's last `horizon_s` only. A rise that the same pod also made at
/// about this hour yesterday (within 45 minutes), and that went away again (the level now is
/// within one rise of yesterday's at that time), is the daily pattern (a nightly batch, a
/// morning ramp), not a leak. A leak running for more than a day keeps the first test but
/// fails the second: its level is a day's growth above yesterday's. Returns why, if so.
pub fn recurring_rise(s: &Series, now: i64, horizon_s: i64) -> Option<String> {
    const DAY: i64 = 86_400;
    let w = 300;
    let level_now = mean_in(s, now - w, now)?;
    let today = level_now - mean_in(s, now - horizon_s - w, now - horizon_s)?;
    if today <= 0.0 {
        return None;
    }
    (-9..=9)
        .filter_map(|k| {
            let t = now - DAY + k * w;
            let level = mean_in(s, t - w, t)?;
            let rise = level - mean_in(s, t - horizon_s - w, t - horizon_s)?;
            Some((k, rise, level))
        })
        .filter(|(_, rise, level)| {
            *rise >= 0.5 * today && (level_now - level).abs() <= today
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, rise, _)| {
            format!(
                "the same rise ({rise:.0}, today {today:.0}) happened {} minutes {} this time yesterday, to the same level",
                (k * w).abs() / 60,
                if k > 0 { "after" } else { "before" }
            )
        })
}

/// Un-fires the firings whose rise over their `window_s` the same scope also made at about
/// this time yesterday (`recurring_rise`), and says why in the reason.
fn drop_recurring(fs: &mut [Finding], series: &BTreeMap<Scope, Series>) {
    for f in fs.iter_mut().filter(|f| f.fired) {
        if let Some(s) = series.get(&f.scope)
            && let Some(note) = recurring_rise(s, f.eval_s, f.window_s)
        {
            f.fired = false;
            f.reason = format!("{}; not a leak: {note}", f.reason);
        }
    }
}

/// A minute series of one scope.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub ts_s: Vec<i64>,
    pub values: Vec<f64>,
    /// Minutes at which a pod's process start time or container restart count changed (a
    /// restart the values alone may not show); empty for workloads.
    pub resets_s: Vec<i64>,
}

/// Minute series per pod and per workload (the sum over its pods) for `[from_s, to_s]`.
pub async fn minute_series(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
) -> Result<BTreeMap<Scope, Series>> {
    let sql = format!(
        "SELECT MAX(\"cluster\") AS cl, namespace, MAX(workload_kind) AS wk, \
                MAX(workload) AS wl, pod, \
                date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS minute, \
                AVG(CAST(goroutines AS DOUBLE)) AS v, \
                MAX(CAST(process_start_time AS BIGINT)) AS started, \
                MAX(container_restarts) AS restarts \
         FROM goroutine_counts \
         WHERE ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND namespace LIKE '{ns}' \
         GROUP BY 2, 5, 6 ORDER BY namespace, pod, minute",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
        ns = namespace.replace('\'', "''"),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut pods: BTreeMap<Scope, Series> = BTreeMap::new();
    let mut workloads: BTreeMap<Scope, BTreeMap<i64, f64>> = BTreeMap::new();
    // Per pod: the last (process start, restarts) seen.
    let mut identity: HashMap<Scope, (Option<i64>, Option<i64>)> = HashMap::new();
    for b in &batches {
        let scopes = scope_rows(b)?;
        let (t, v) = (ts_micros(b, "minute")?, f64s(b, "v")?);
        let (started, restarts) = (i64s(b, "started")?, i64s(b, "restarts")?);
        for (i, scope) in scopes.into_iter().enumerate() {
            let (Some(t), Some(v)) = (t[i], v[i]) else {
                continue;
            };
            let t = t / 1_000_000;
            if scope.workload.is_some() {
                let w = Scope {
                    pod: None,
                    ..scope.clone()
                };
                *workloads.entry(w).or_default().entry(t).or_default() += v;
            }
            let now = (started[i], restarts[i]);
            let changed = match identity.insert(scope.clone(), now) {
                Some((ps, pr)) => {
                    (ps.is_some() && now.0.is_some() && ps != now.0)
                        || (pr.is_some() && now.1.is_some() && pr != now.1)
                }
                None => false,
            };
            let s = pods.entry(scope).or_default();
            if changed {
                s.resets_s.push(t);
            }
            s.ts_s.push(t);
            s.values.push(v);
        }
    }
    for (w, points) in workloads {
        pods.insert(
            w,
            Series {
                ts_s: points.keys().copied().collect(),
                values: points.values().copied().collect(),
                resets_s: Vec::new(),
            },
        );
    }
    Ok(pods)
}

/// When each workload's set of pods changed (a pod appeared or went), from the pod series: a
/// rollout swaps pods, and the workload's sum moves with it.
fn pod_set_changes(series: &BTreeMap<Scope, Series>) -> HashMap<Scope, Vec<i64>> {
    let (mut first, mut last) = (i64::MAX, i64::MIN);
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

/// STL + Isolation Forest on every pod's and workload's minute series. A workload-wide series
/// starts over at each change of its pod set: a rollout that raises the level for good is a
/// deploy, not a leak, and a leak in the new pods shows in their own series.
pub fn stl_findings(
    series: &BTreeMap<Scope, Series>,
    eval_times: &[i64],
    cfg: &AnalyzeConfig,
) -> Vec<Finding> {
    let churn = pod_set_changes(series);
    let mut out = Vec::new();
    for (scope, s) in series {
        let (Some(first), Some(last)) = (s.ts_s.first(), s.ts_s.last()) else {
            continue;
        };
        // Only evaluations the series is alive at (a pod gone 10 minutes is not evaluated).
        let at: Vec<i64> = eval_times
            .iter()
            .copied()
            .filter(|t| *t >= *first && *t <= *last + 600)
            .collect();
        if at.is_empty() {
            continue;
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
                detector: STL_IFOREST,
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
            });
        }
    }
    out
}

/// Residence figures of one pod at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Residence {
    pub p99_s: Option<f64>,
    pub alive_share: Option<f64>,
}

/// One sample group of a debug=2 capture: goroutines of one stack in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureGroup {
    pub stack_id: i64,
    pub state: String,
    pub goroutines: f64,
    /// Of them, alive 5 minutes earlier.
    pub alive_over_5m: f64,
    pub age_p99_s: f64,
}

impl CaptureGroup {
    fn blocked(&self) -> bool {
        !matches!(self.state.as_str(), "running" | "runnable" | "syscall" | "")
    }
}

/// One pod's debug=2 captures (those that carry ages: goroutine-id tracking), in time order.
#[derive(Debug, Clone, Default)]
pub struct PodCaptures {
    pub workload: Option<String>,
    pub captures: Vec<(i64, Vec<CaptureGroup>)>,
}

/// Per (namespace, pod).
pub type Captures = HashMap<(String, String), PodCaptures>;

/// Put the last capture of each of `before`'s pods that is in the scope (the pod, or the
/// workload's pods) in front of that pod's captures in `caps`, which stay in time order; a
/// capture `caps` already holds is left as it is.
fn add_captures_before(
    caps: &mut Captures,
    before: Captures,
    pod: Option<&str>,
    workload: Option<&str>,
) {
    for (key, pc) in before {
        let in_scope = match pod {
            Some(p) => key.1 == p,
            None => workload.is_some() && pc.workload.as_deref() == workload,
        };
        if !in_scope {
            continue;
        }
        let Some(last) = pc.captures.into_iter().last() else {
            continue;
        };
        let into = caps.entry(key).or_insert_with(|| PodCaptures {
            workload: pc.workload,
            captures: Vec::new(),
        });
        let at = into.captures.partition_point(|(ts, _)| *ts < last.0);
        if into.captures.get(at).is_none_or(|(ts, _)| *ts != last.0) {
            into.captures.insert(at, last);
        }
    }
}

pub async fn captures(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
) -> Result<Captures> {
    let sql = format!(
        "SELECT namespace, pod, workload, ts, stack_id, state, goroutines, alive_over_5m, age_p99_s \
         FROM goroutine_samples \
         WHERE profile = 'goroutine' AND age_p99_s IS NOT NULL \
           AND ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND namespace LIKE '{ns}' \
         ORDER BY namespace, pod, ts",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
        ns = namespace.replace('\'', "''"),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out: Captures = HashMap::new();
    for b in &batches {
        let (ns, pod, workload, ts, stack, state, n, alive, age) = (
            strs(b, "namespace")?,
            strs(b, "pod")?,
            strs(b, "workload")?,
            ts_micros(b, "ts")?,
            i64s(b, "stack_id")?,
            strs(b, "state")?,
            f64s(b, "goroutines")?,
            f64s(b, "alive_over_5m")?,
            f64s(b, "age_p99_s")?,
        );
        for i in 0..b.num_rows() {
            let key = (
                ns[i].clone().unwrap_or_default(),
                pod[i].clone().unwrap_or_default(),
            );
            let ts = ts[i].unwrap_or(0) / 1_000_000;
            let pc = out.entry(key).or_default();
            if pc.workload.is_none() {
                pc.workload = workload[i].clone();
            }
            let v = &mut pc.captures;
            if v.last().is_none_or(|(t, _)| *t != ts) {
                v.push((ts, Vec::new()));
            }
            if let Some((_, groups)) = v.last_mut() {
                groups.push(CaptureGroup {
                    stack_id: stack[i].unwrap_or(0),
                    state: state[i].clone().unwrap_or_default(),
                    goroutines: n[i].unwrap_or(0.0),
                    alive_over_5m: alive[i].unwrap_or(0.0),
                    age_p99_s: age[i].unwrap_or(0.0),
                });
            }
        }
    }
    for pc in out.values_mut() {
        for (_, groups) in &mut pc.captures {
            merge_groups(groups);
        }
    }
    Ok(out)
}

/// One group per (stack, state), sorted by it: sample rows also differ by labels and wait
/// bucket, and `Growth::add` compares a stack's goroutines as a whole (the merged P99 age is
/// the largest of the parts', an upper bound).
fn merge_groups(groups: &mut Vec<CaptureGroup>) {
    groups.sort_by(|a, b| (a.stack_id, &a.state).cmp(&(b.stack_id, &b.state)));
    groups.dedup_by(|g, kept| {
        let same = g.stack_id == kept.stack_id && g.state == kept.state;
        if same {
            kept.goroutines += g.goroutines;
            kept.alive_over_5m += g.alive_over_5m;
            kept.age_p99_s = kept.age_p99_s.max(g.age_p99_s);
        }
        same
    });
}

/// P99 over `(age, goroutines)` pairs, each standing for its count at its age.
fn p99_of(mut ages: Vec<(f64, f64)>) -> Option<f64> {
    ages.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n: f64 = ages.iter().map(|a| a.1).sum();
    if n <= 0.0 {
        return None;
    }
    let want = 0.99 * n;
    let mut seen = 0.0;
    for (age, k) in &ages {
        seen += k;
        if seen >= want {
            return Some(*age);
        }
    }
    ages.last().map(|a| a.0)
}

/// The goroutines a growth consists of, summed over captures (one pod's, or a workload's pods).
///
/// Residence is that of what grew: the goroutines of the groups (stack and state) that hold
/// more now than in the capture before the growth. Long-lived goroutines (servers, worker
/// pools, tickers) are old in every healthy service, so the residence of a whole capture says
/// "they stay" about any pod with a few dozen of them; whether the *new* goroutines stay is what
/// tells a leak from a batch or a traffic ramp. A grown group's P99 age stands for its new
/// goroutines (an overestimate when it also held old ones), and its goroutines alive 5 minutes
/// ago beyond the base count are the new ones that stayed. Against an empty base (no capture
/// before the growth) this is the residence of the whole capture.
#[derive(Debug, Default)]
struct Growth {
    grown: f64,
    stayed: f64,
    /// (P99 age, goroutines) of the grown blocked groups.
    ages: Vec<(f64, f64)>,
}

impl Growth {
    /// `base` and `now`: one group per (stack, state), sorted by it (as `captures` gives them).
    fn add(&mut self, base: &[CaptureGroup], now: &[CaptureGroup]) {
        for g in now {
            let before = base
                .binary_search_by(|b| (b.stack_id, &b.state).cmp(&(g.stack_id, &g.state)))
                .map_or(0.0, |i| base[i].goroutines);
            let d = g.goroutines - before;
            if d <= 0.0 {
                continue;
            }
            self.grown += d;
            self.stayed += (g.alive_over_5m - before).clamp(0.0, d);
            if g.blocked() {
                self.ages.push((g.age_p99_s, d));
            }
        }
    }

    /// None when nothing grew.
    fn residence(self) -> Option<Residence> {
        (self.grown > 0.0).then(|| Residence {
            alive_share: Some(self.stayed / self.grown),
            p99_s: p99_of(self.ages),
        })
    }
}

/// Residence for an episode of `scope` whose growth began after `growth_from_s`, as of `t`: of
/// what grew since the last capture at or before then (each pod's own, for a workload; all of a
/// capture when none precedes the growth), from captures at most 15 minutes old. When the
/// captures show no stack that grew (the count's rise was noise, or came and went between
/// captures), no residence and an alive share of 0; none at all without a recent capture.
fn residence_at(caps: &Captures, scope: &Scope, t: i64, growth_from_s: i64) -> Residence {
    let pods: Vec<&PodCaptures> = match &scope.pod {
        Some(p) => caps
            .get(&(scope.namespace.clone(), p.clone()))
            .into_iter()
            .collect(),
        None if scope.workload.is_some() => caps
            .iter()
            .filter(|((ns, _), pc)| *ns == scope.namespace && pc.workload == scope.workload)
            .map(|(_, pc)| pc)
            .collect(),
        None => Vec::new(),
    };
    let mut growth = Growth::default();
    let mut captured = false;
    for pc in pods {
        let v = &pc.captures;
        let at = |t: i64| v.partition_point(|(ts, _)| *ts <= t).checked_sub(1);
        let Some(i) = at(t) else {
            continue;
        };
        let (ts, now) = &v[i];
        // A capture older than 15 minutes says nothing about now.
        if t - ts > 900 {
            continue;
        }
        let base: &[CaptureGroup] = match at(growth_from_s) {
            Some(b) if b < i => &v[b].1,
            _ => &[],
        };
        growth.add(base, now);
        captured = true;
    }
    match growth.residence() {
        Some(r) => r,
        // The captures show no stack that grew: whatever the count did, none of it stayed.
        None if captured => Residence {
            p99_s: None,
            alive_share: Some(0.0),
        },
        None => Residence::default(),
    }
}

/// Earlier events of the store, for episode continuity of live runs: the latest per
/// (scope, detector) before `before_s`.
async fn prior_events(
    ctx: &SessionContext,
    since_s: i64,
    before_s: i64,
) -> Result<HashMap<(String, String), LeakEvent>> {
    let sql = format!(
        "SELECT * FROM leak_events WHERE detected_at >= TIMESTAMP '{}' AND detected_at < TIMESTAMP '{}' \
         ORDER BY detected_at",
        rfc(since_s),
        rfc(before_s)
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out = HashMap::new();
    for b in &batches {
        for e in leakhound_schemas::events::events_from_batch(b)
            .into_iter()
            .flatten()
        {
            let scope = Scope {
                cluster: e.cluster.clone(),
                namespace: e.namespace.clone(),
                workload_kind: e.workload_kind.clone(),
                workload: e.workload.clone(),
                pod: e.pod.clone(),
            };
            out.insert((scope.key(), e.detector.clone()), e);
        }
    }
    Ok(out)
}

/// What one analysis produced.
#[derive(Debug, Default)]
pub struct Analysis {
    pub events: Vec<LeakEvent>,
    /// Evaluations run and series looked at.
    pub evaluations: usize,
    pub scopes: usize,
}

/// Evaluate every `step_s` in `[from_s, to_s]` (aligned to the step).
pub async fn analyze(
    store: &Store,
    from_s: i64,
    to_s: i64,
    emit: Emit,
    cfg: &AnalyzeConfig,
) -> Result<Analysis> {
    let ctx = crate::session::session(store).await?;
    let step = cfg.step_s.max(60);
    let first = from_s.div_euclid(step) * step;
    let first = if first < from_s { first + step } else { first };
    let eval_times: Vec<i64> = (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= to_s)
        .collect();
    if eval_times.is_empty() {
        return Ok(Analysis::default());
    }
    let on = |d: &str| cfg.detectors.iter().any(|x| x == d);
    let mut findings = Vec::new();
    if on(BASELINE_RULE) {
        findings.extend(
            baseline_rule(&ctx, first, to_s, cfg)
                .await?
                .into_iter()
                .filter(|f| f.eval_s % step == 0),
        );
    }
    let series = if on(GROWTH_RULE) || on(STL_IFOREST) {
        let context = if on(STL_IFOREST) {
            cfg.context_s
        } else {
            86_400 + 7_200
        };
        minute_series(&ctx, first - context, to_s, &cfg.namespace).await?
    } else {
        BTreeMap::new()
    };
    if on(GROWTH_RULE) {
        let mut fs: Vec<Finding> = growth_rule(&ctx, first, to_s, cfg)
            .await?
            .into_iter()
            .filter(|f| f.eval_s % step == 0)
            .collect();
        drop_recurring(&mut fs, &series);
        findings.extend(fs);
    }
    if on(STL_IFOREST) {
        let mut fs = stl_findings(&series, &eval_times, cfg);
        drop_recurring(&mut fs, &series);
        findings.extend(fs);
    }
    let priors = if emit == Emit::All {
        prior_events(&ctx, first - 86_400, first).await?
    } else {
        HashMap::new()
    };
    // From 6 hours before: an episode's capture before its onset. A live run continuing a
    // stored episode that began earlier also loads, for that episode's pods only, the hour of
    // captures before its stored onset, so that its residence stays that of what grew.
    let caps_from = first - 6 * 3_600;
    let mut caps = captures(&ctx, caps_from, to_s, &cfg.namespace).await?;
    let continued_since = first - step * (cfg.episode_gap_evals as i64 + 1);
    for p in priors.values() {
        let onset = p.onset.timestamp();
        if onset >= caps_from || p.detected_at.timestamp() < continued_since {
            continue;
        }
        let before = captures(&ctx, onset - 3_600, onset, &p.namespace).await?;
        add_captures_before(&mut caps, before, p.pod.as_deref(), p.workload.as_deref());
    }
    // Growth of the same pod at the same time from the growth rule, for events of detectors
    // that do not measure it.
    let growth_of: HashMap<(Scope, i64), f64> = findings
        .iter()
        .filter(|f| f.detector == GROWTH_RULE)
        .map(|f| ((f.scope.clone(), f.eval_s), f.growth_per_s))
        .collect();

    let mut by_key: BTreeMap<(Scope, &'static str), Vec<Finding>> = BTreeMap::new();
    for f in findings {
        by_key
            .entry((f.scope.clone(), f.detector))
            .or_default()
            .push(f);
    }
    let mut analysis = Analysis {
        evaluations: eval_times.len(),
        scopes: by_key.len(),
        ..Default::default()
    };
    for ((scope, detector), mut fs) in by_key {
        fs.sort_by_key(|f| f.eval_s);
        let mut episode: Option<Episode> = None;
        let mut sustained_ends: Vec<i64> = Vec::new();
        for f in fs {
            if !f.fired {
                if let Some(ep) = &mut episode {
                    ep.misses += 1;
                    ep.consecutive = 0;
                    if ep.misses > cfg.episode_gap_evals {
                        if ep.sustained {
                            sustained_ends.push(f.eval_s);
                        }
                        episode = None;
                    }
                }
                continue;
            }
            let ep = episode.get_or_insert_with(|| {
                let onset = f.onset_s.unwrap_or(f.eval_s).min(f.eval_s);
                let mut ep = Episode {
                    onset_s: onset,
                    // The growth lies within what the first firing looked at.
                    growth_from_s: onset.min(f.eval_s - f.window_s),
                    // Rules fire on the value's excess over their baseline (the 2 h P95, the
                    // hour's low): that excess is the growth the episode starts from.
                    value_at_onset: f.baseline.unwrap_or(f.value),
                    event_id: event_id(&scope, detector, onset),
                    consecutive: 0,
                    misses: 0,
                    sustained: false,
                    level: None,
                };
                // Live: an episode already going at the window start continues a stored one.
                if f.eval_s == first
                    && let Some(p) = priors.get(&(scope.key(), detector.to_string()))
                    && p.detected_at.timestamp()
                        >= first - step * (cfg.episode_gap_evals as i64 + 1)
                {
                    ep.onset_s = p.onset.timestamp();
                    ep.growth_from_s = ep.growth_from_s.min(ep.onset_s);
                    ep.event_id = p.event_id.clone();
                    ep.consecutive = cfg.levels.sustain_evals;
                    ep.level = Some(p.level);
                }
                ep
            });
            ep.misses = 0;
            ep.consecutive += 1;
            let r = residence_at(&caps, &scope, f.eval_s, ep.growth_from_s);
            let growth = if detector == BASELINE_RULE {
                growth_of
                    .get(&(scope.clone(), f.eval_s))
                    .copied()
                    .unwrap_or(0.0)
            } else {
                f.growth_per_s
            };
            let day_ago = f.eval_s - 86_400;
            let evidence = Evidence {
                consecutive: ep.consecutive,
                value_now: f.value,
                value_at_onset: ep.value_at_onset,
                growth_per_s: growth,
                residence_p99_s: r.p99_s,
                alive_over_5m_share: r.alive_share,
                recurrences: sustained_ends.iter().filter(|t| **t >= day_ago).count() as u32,
                detector_sustains: f.sustained,
            };
            let lvl = level(&evidence, &cfg.levels);
            if lvl >= Level::L2 {
                ep.sustained = true;
            }
            let changed = ep.level != Some(lvl);
            let emit_now = match emit {
                Emit::All => f.eval_s == *eval_times.last().unwrap_or(&f.eval_s),
                Emit::Changes => changed,
            };
            ep.level = Some(lvl);
            if !emit_now {
                continue;
            }
            let minutes = (f.eval_s - ep.onset_s) as f64 / 60.0;
            analysis.events.push(LeakEvent {
                schema: EVENT_SCHEMA.into(),
                event_id: ep.event_id.clone(),
                cluster: scope.cluster.clone(),
                namespace: scope.namespace.clone(),
                workload_kind: scope.workload_kind.clone(),
                workload: scope.workload.clone(),
                pod: scope.pod.clone(),
                level: lvl,
                detector: detector.to_string(),
                detected_at: at(f.eval_s),
                onset: at(ep.onset_s),
                window_start: at(f.eval_s - 3_600),
                window_end: at(f.eval_s),
                score: f.score,
                growth_per_s: growth,
                residence_p99_s: r.p99_s,
                alive_over_5m_share: r.alive_share,
                goroutines: f.value.round() as i64,
                baseline_goroutines: f.baseline,
                sla_penalty: sla_penalty(lvl, minutes, &cfg.levels),
                reason: f.reason.clone(),
                clusters: Vec::new(),
            });
        }
    }
    analysis
        .events
        .sort_by(|a, b| (a.detected_at, &a.event_id).cmp(&(b.detected_at, &b.event_id)));
    Ok(analysis)
}

fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

struct Episode {
    onset_s: i64,
    /// When the growth had not begun yet: the residence of an event is that of what grew since.
    growth_from_s: i64,
    value_at_onset: f64,
    event_id: String,
    consecutive: u32,
    misses: u32,
    sustained: bool,
    level: Option<Level>,
}

fn event_id(scope: &Scope, detector: &str, onset_s: i64) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{}|{detector}|{onset_s}", scope.key()).as_bytes());
    format!("{h:016x}")
}

/// Growth attribution for every event: clusters into each event (largest first, at most
/// `max_clusters`) and the `leak_clusters` rows. The baseline is the earlier of 10 minutes before
/// the episode's onset and the event's window start; results are shared by events of the same scope and times.
pub async fn attach_clusters(
    store: &Store,
    events: &mut [LeakEvent],
    max_clusters: usize,
) -> Result<Vec<crate::rootcause::ClusterRecord>> {
    let ctx = crate::session::session(store).await?;
    type Key = (String, Option<String>, Option<String>, i64, i64);
    let mut cache: HashMap<Key, Vec<crate::rootcause::Cluster>> = HashMap::new();
    let mut records = Vec::new();
    for e in events.iter_mut() {
        // Before the episode and before the detector's window: growth often starts well
        // before a detector is sure of it.
        let base = (e.onset.timestamp() - 600).min(e.window_start.timestamp());
        let now = e.detected_at.timestamp();
        let key = (
            e.namespace.clone(),
            e.workload.clone(),
            e.pod.clone(),
            base,
            now,
        );
        if !cache.contains_key(&key) {
            let c = crate::rootcause::attribute(
                &ctx,
                &e.namespace,
                e.workload.as_deref(),
                e.pod.as_deref(),
                base,
                now,
            )
            .await?;
            cache.insert(key.clone(), c);
        }
        let clusters = &cache[&key];
        e.clusters = clusters
            .iter()
            .take(max_clusters)
            .map(|c| c.summary())
            .collect();
        for c in clusters.iter().take(max_clusters) {
            records.push(crate::rootcause::ClusterRecord {
                event_id: e.event_id.clone(),
                detected_at_s: now,
                namespace: e.namespace.clone(),
                workload: e.workload.clone(),
                pod: e.pod.clone(),
                cluster: c.clone(),
            });
        }
    }
    Ok(records)
}

/// Write events and clusters to the store, one file per date partition and table, made visible
/// together by one commit (`Store::commit_files`): a crashed run leaves none of them, and an
/// identical re-run (the same analysis again) adds nothing. Returns the files committed.
pub async fn write_results(
    store: &Store,
    events: &[LeakEvent],
    clusters: &[crate::rootcause::ClusterRecord],
) -> Result<usize> {
    use leakhound_ingest::store::Partition;
    use leakhound_schemas::Table;
    let mut parts = Vec::new();
    let mut ev_by_day: BTreeMap<Partition, Vec<LeakEvent>> = BTreeMap::new();
    for e in events {
        ev_by_day
            .entry(Partition::for_ts(
                Table::LeakEvents,
                e.detected_at.timestamp_micros(),
            ))
            .or_default()
            .push(e.clone());
    }
    for (p, evs) in ev_by_day {
        let b = leakhound_schemas::events::events_to_batch(&evs)
            .map_err(|e| Error::Internal(format!("leak_events batch: {e}")))?;
        parts.push((Table::LeakEvents, p, b));
    }
    let mut cl_by_day: BTreeMap<Partition, Vec<crate::rootcause::ClusterRecord>> = BTreeMap::new();
    for c in clusters {
        cl_by_day
            .entry(Partition::for_ts(
                Table::LeakClusters,
                c.detected_at_s * 1_000_000,
            ))
            .or_default()
            .push(c.clone());
    }
    for (p, rows) in cl_by_day {
        let b = crate::rootcause::clusters_to_batch(&rows)
            .map_err(|e| Error::Internal(format!("leak_clusters batch: {e}")))?;
        parts.push((Table::LeakClusters, p, b));
    }
    // One commit for the run's events and clusters: all visible, or (after a crash) none.
    let files = if parts.is_empty() {
        0
    } else {
        store.commit_files("analyze", &parts).await?.len()
    };
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(stack_id: i64, state: &str, n: f64, alive: f64, age: f64) -> CaptureGroup {
        CaptureGroup {
            stack_id,
            state: state.into(),
            goroutines: n,
            alive_over_5m: alive,
            age_p99_s: age,
        }
    }

    fn pod_scope() -> Scope {
        Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("cart".into()),
            pod: Some("cart-1".into()),
        }
    }

    fn growth(base: &[CaptureGroup], now: &[CaptureGroup]) -> Option<Residence> {
        let mut g = Growth::default();
        g.add(base, now);
        g.residence()
    }

    /// 40 long-lived workers (hours old) beside requests that come and go.
    fn before() -> Vec<CaptureGroup> {
        vec![
            g(1, "select", 40.0, 40.0, 7_200.0),
            g(2, "IO wait", 1_000.0, 0.0, 0.0),
        ]
    }

    /// 10 minutes later, a batch has doubled the requests.
    fn batch() -> Vec<CaptureGroup> {
        vec![
            g(1, "select", 40.0, 40.0, 7_800.0),
            g(2, "IO wait", 2_000.0, 0.0, 0.0),
        ]
    }

    /// 10 minutes later, a new blocked stack whose goroutines stay.
    fn leak() -> Vec<CaptureGroup> {
        vec![
            g(1, "select", 40.0, 40.0, 7_800.0),
            g(2, "IO wait", 1_000.0, 0.0, 0.0),
            g(3, "chan send", 600.0, 300.0, 594.0),
        ]
    }

    #[test]
    fn residence_is_that_of_what_grew() {
        let (before, batch, leak) = (before(), batch(), leak());
        // The batch: the whole capture's P99 says "old" (the workers are 2 % of its blocked
        // goroutines), the growth says "young".
        let whole = growth(&[], &batch).unwrap();
        assert_eq!(whole.p99_s, Some(7_800.0));
        assert_eq!(whole.alive_share, Some(40.0 / 2_040.0));
        let r = growth(&before, &batch).unwrap();
        assert_eq!(r.p99_s, Some(0.0));
        assert_eq!(r.alive_share, Some(0.0));
        // The leak: old, half of it alive 5 minutes ago.
        let r = growth(&before, &leak).unwrap();
        assert_eq!(r.p99_s, Some(594.0));
        assert_eq!(r.alive_share, Some(0.5));
        // A stack that held goroutines before: only those beyond the old count are new.
        let grew = vec![g(1, "select", 50.0, 45.0, 7_800.0)];
        assert_eq!(growth(&before, &grew).unwrap().alive_share, Some(0.5));
        // Nothing grew: no figure of the growth.
        assert!(growth(&before, &before).is_none());
        // Rows of one stack and state (other labels, wait buckets) count as one group: 600
        // requests under two labels are not 600 new ones each.
        let mut split = vec![
            g(2, "IO wait", 600.0, 0.0, 3.0),
            g(1, "select", 40.0, 40.0, 7_800.0),
            g(2, "IO wait", 600.0, 0.0, 1.0),
        ];
        merge_groups(&mut split);
        assert_eq!(
            split,
            vec![
                g(1, "select", 40.0, 40.0, 7_800.0),
                g(2, "IO wait", 1_200.0, 0.0, 3.0)
            ]
        );
        assert_eq!(growth(&before, &split).unwrap().alive_share, Some(0.0));
    }

    /// A pod of the `cart` workload with these captures.
    fn pod(captures: Vec<(i64, Vec<CaptureGroup>)>) -> PodCaptures {
        PodCaptures {
            workload: Some("cart".into()),
            captures,
        }
    }

    #[test]
    fn residence_at_uses_the_capture_before_the_growth_or_the_whole_capture() {
        let (before, batch, leak) = (before(), batch(), leak());
        let mut caps: Captures = HashMap::new();
        caps.insert(
            ("shop".into(), "cart-1".into()),
            pod(vec![(1_000, before.clone()), (1_600, batch.clone())]),
        );
        let scope = pod_scope();
        // Growth after 1,000: of the growth.
        assert_eq!(residence_at(&caps, &scope, 1_800, 1_200).p99_s, Some(0.0));
        // No capture before the growth: the whole latest capture.
        assert_eq!(residence_at(&caps, &scope, 1_800, 900).p99_s, Some(7_800.0));
        // The latest capture is more than 15 minutes old: nothing.
        assert_eq!(residence_at(&caps, &scope, 2_600, 1_200).p99_s, None);
        assert_eq!(residence_at(&caps, &scope, 2_600, 1_200).alive_share, None);
        // The captures show nothing that grew: none of the rise stayed.
        caps.insert(
            ("shop".into(), "cart-0".into()),
            pod(vec![(1_000, before.clone()), (1_600, before.clone())]),
        );
        let quiet = Scope {
            pod: Some("cart-0".into()),
            ..pod_scope()
        };
        let r = residence_at(&caps, &quiet, 1_800, 1_200);
        assert_eq!((r.p99_s, r.alive_share), (None, Some(0.0)));
        // A workload: the growth of each of its pods since its own capture before, summed. One
        // pod's batch (1,000 young) and another's leak (600 staying half): 300 of 1,600 stayed.
        caps.insert(
            ("shop".into(), "cart-2".into()),
            pod(vec![(1_100, before.clone()), (1_700, leak)]),
        );
        caps.insert(
            ("other".into(), "cart-3".into()),
            pod(vec![(1_100, before.clone()), (1_700, batch)]),
        );
        let workload = Scope {
            pod: None,
            ..pod_scope()
        };
        let r = residence_at(&caps, &workload, 1_800, 1_200);
        assert_eq!(r.alive_share, Some(300.0 / 1_600.0));
        assert_eq!(r.p99_s, Some(594.0));
        let elsewhere = Scope {
            workload: Some("payments".into()),
            ..workload
        };
        assert_eq!(residence_at(&caps, &elsewhere, 1_800, 1_200).p99_s, None);
    }

    #[test]
    fn captures_before_an_old_onset_are_put_in_front() {
        let (before, batch) = (before(), batch());
        let mut caps: Captures = HashMap::new();
        caps.insert(
            ("shop".into(), "cart-1".into()),
            pod(vec![(1_600, batch.clone())]),
        );
        let scope = pod_scope();
        // The window holds no capture before the growth (at 900): the whole capture.
        assert_eq!(residence_at(&caps, &scope, 1_800, 900).p99_s, Some(7_800.0));
        // The hour before the stored onset, loaded on its own: its last capture goes in front,
        // for the event's pod only.
        let mut older: Captures = HashMap::new();
        older.insert(
            ("shop".into(), "cart-1".into()),
            pod(vec![(300, batch.clone()), (850, before.clone())]),
        );
        older.insert(
            ("shop".into(), "cart-9".into()),
            pod(vec![(850, before.clone())]),
        );
        add_captures_before(&mut caps, older.clone(), Some("cart-1"), None);
        let v = &caps[&("shop".to_string(), "cart-1".to_string())].captures;
        assert_eq!(v.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [850, 1_600]);
        assert!(!caps.contains_key(&("shop".to_string(), "cart-9".to_string())));
        // Now residence is that of what grew since: the young batch.
        assert_eq!(residence_at(&caps, &scope, 1_800, 900).p99_s, Some(0.0));
        // Twice: nothing doubles. A workload-wide event takes every pod of the workload.
        add_captures_before(&mut caps, older.clone(), Some("cart-1"), None);
        add_captures_before(&mut caps, older, None, Some("cart"));
        assert_eq!(
            caps[&("shop".to_string(), "cart-1".to_string())]
                .captures
                .len(),
            2
        );
        assert_eq!(
            caps[&("shop".to_string(), "cart-9".to_string())]
                .captures
                .len(),
            1
        );
    }
}
