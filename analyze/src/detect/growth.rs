//! `growth_rule`: least-squares slope over the last hour of each pod's life, restart-aware, from
//! `queries/rule_growth.sql` (its fast branch fires on growth all along the last 10 or 15
//! minutes at 2x the threshold; see the query's header). Its growth is the one events of
//! detectors that measure none carry. Needs a day and two hours of minute series for the
//! daily-pattern check (`recurring_rise`).
//!
//! In-process the rule runs natively over the minute series the engine already loaded
//! ([`native_findings`]): the query's window functions evaluate every pod at every minute of
//! the window plus an hour, through DataFusion's sliding frames (a `ScalarValue` per row and
//! frame, seven frames), and took a third of an analyze step (issue 22: 2.2 s of a 6.3 s group
//! of 435 pods); the native rule computes the same windows at the evaluations only. The two are
//! tested equal on scenario stores and odd shapes (restarts, drops, gaps, a label appearing
//! mid-way, nulls); the query stays what `leakhound query rule_growth` runs (on a cluster too)
//! and the native rule's reference.

use futures::future::BoxFuture;

use std::collections::BTreeMap;

use super::{Detector, DetectorKind, Finding, Inputs, squash};
#[cfg(test)]
use crate::engine::columns::{bools, f64s, i64s, rfc, run_named, scope_rows, ts_micros};
use crate::engine::series::Series;
use crate::engine::{AnalyzeConfig, Scope};
use crate::error::Result;

pub struct GrowthRule;

impl Detector for GrowthRule {
    fn kind(&self) -> DetectorKind {
        DetectorKind::GrowthRule
    }

    /// Yesterday at this time and the hour before it, for `recurring_rise`.
    fn series_history_s(&self, _cfg: &AnalyzeConfig) -> Option<i64> {
        Some(86_400 + 7_200)
    }

    fn in_product_score(&self) -> bool {
        true
    }

    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>> {
        // On every engine: the series are loaded either way (on a cluster, by its SQL), and the
        // findings are then the same to the bit whatever the engine.
        Box::pin(async move {
            Ok(native_findings(
                input.series,
                input.from_s,
                input.to_s,
                input.cfg,
            ))
        })
    }
}

/// The query's parameters the detector leaves at their defaults.
const FAST_FACTOR: f64 = 2.0;
const MIN_T: f64 = 1.645;
const FAST_R2: f64 = 0.9;

/// Least squares of the points of one window (x: seconds from the evaluated minute), computed
/// in two passes (means, then deviations): what `regr_*` give, to rounding.
#[derive(Clone, Copy, Default)]
struct Fit {
    n: usize,
    sxx: f64,
    syy: f64,
    sxy: f64,
    min: f64,
}

impl Fit {
    fn of(ts: &[i64], vs: &[f64], m: i64) -> Fit {
        let n = ts.len();
        if n == 0 {
            return Fit::default();
        }
        let x = |t: i64| (t - m) as f64;
        let (mut mx, mut my, mut min) = (0.0, 0.0, f64::INFINITY);
        for (t, v) in ts.iter().zip(vs) {
            mx += x(*t);
            my += v;
            min = min.min(*v);
        }
        mx /= n as f64;
        my /= n as f64;
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for (t, v) in ts.iter().zip(vs) {
            let (dx, dy) = (x(*t) - mx, v - my);
            sxx += dx * dx;
            syy += dy * dy;
            sxy += dx * dy;
        }
        Fit {
            n,
            sxx,
            syy,
            sxy,
            min,
        }
    }

    /// `regr_slope`: None for fewer than two points or one x.
    fn slope(&self) -> Option<f64> {
        (self.n > 1 && self.sxx != 0.0).then(|| self.sxy / self.sxx)
    }

    /// `regr_r2`: None for fewer than two points, one x or one y.
    fn r2(&self) -> Option<f64> {
        (self.n > 1 && self.sxx != 0.0 && self.syy != 0.0)
            .then(|| self.sxy * self.sxy / (self.sxx * self.syy))
    }

    /// `regr_sxx` (None without points).
    fn sxx(&self) -> Option<f64> {
        (self.n > 0).then_some(self.sxx)
    }

    /// The query's `resid_var`: the fit's residual variance (`GREATEST` skipping a null).
    fn resid_var(&self) -> Option<f64> {
        if self.n == 0 || self.n == 2 {
            return None;
        }
        let explained = (self.sxx != 0.0).then(|| self.sxy * self.sxy / self.sxx);
        let r = explained.map_or(0.0, |e| (self.syy - e).max(0.0));
        Some(r / (self.n as f64 - 2.0))
    }
}

/// `a > b`, `a >= b` with SQL's null: false.
fn gt(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| a > b)
}
fn ge(a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a >= b)
}

/// `min_t` standard errors of a 5-minute slope: `min_t * SQRT(resid_var / NULLIF(sxx, 0))`.
fn t_bound(resid_var: Option<f64>, sxx: Option<f64>) -> Option<f64> {
    let (r, s) = (resid_var?, sxx.filter(|s| *s != 0.0)?);
    Some(MIN_T * (r / s).sqrt())
}

/// `queries/rule_growth.sql` over the engine's minute series (see the module header), for the
/// pods' series (a workload's sum is not the rule's), evaluated at every 5-minute mark of
/// `[from_s, to_s]`. Findings in the query's order (namespace, pod, evaluation).
pub fn native_findings(
    series: &BTreeMap<Scope, Series>,
    from_s: i64,
    to_s: i64,
    cfg: &AnalyzeConfig,
) -> Vec<Finding> {
    // A pod's points whatever the labels of each minute (the query partitions by namespace and
    // pod; a workload label appearing mid-way splits the engine's series by scope).
    let mut pods: BTreeMap<(&str, &str), Vec<(&Scope, &Series)>> = BTreeMap::new();
    for (scope, s) in series {
        if let Some(pod) = scope.pod.as_deref() {
            pods.entry((scope.namespace.as_str(), pod))
                .or_default()
                .push((scope, s));
        }
    }
    let lo_s = from_s - 65 * 60;
    let mut out = Vec::new();
    for parts in pods.values() {
        // The points of [from - 65 min, to]: time, value, the scope of the minute, and
        // whether the pod's process start or restarts changed there (the engine's resets).
        let mut pts: Vec<(i64, f64, &Scope, bool)> = Vec::new();
        for (scope, s) in parts {
            let a = s.ts_s.partition_point(|t| *t < lo_s);
            let b = s.ts_s.partition_point(|t| *t <= to_s);
            for i in a..b {
                let t = s.ts_s[i];
                pts.push((t, s.values[i], scope, s.resets_s.binary_search(&t).is_ok()));
            }
        }
        if parts.len() > 1 {
            pts.sort_by_key(|p| p.0);
        }
        let ts: Vec<i64> = pts.iter().map(|p| p.0).collect();
        let vs: Vec<f64> = pts.iter().map(|p| p.1).collect();
        // Where each point's life starts: a new life at a reset or a fall below half the
        // previous value (the first point's previous one is outside the query's rows).
        let mut life = vec![0usize; pts.len()];
        for i in 1..pts.len() {
            life[i] = if pts[i].3 || vs[i] < 0.5 * vs[i - 1] {
                i
            } else {
                life[i - 1]
            };
        }
        for (i, &(m, v, scope, _)) in pts.iter().enumerate() {
            let eval = m + 60;
            if eval < from_s || eval > to_s || eval.rem_euclid(300) != 0 {
                continue;
            }
            // The points of this life in [m - back, m - upto] (minutes).
            let start = life[i];
            let window = |back: i64, upto: i64| {
                let a = start + ts[start..=i].partition_point(|t| *t < m - back * 60);
                let b = start + ts[start..=i].partition_point(|t| *t <= m - upto * 60);
                Fit::of(&ts[a..b], &vs[a..b], m)
            };
            let (h, q, t) = (window(59, 0), window(14, 0), window(9, 0));
            let (te, f, e, hh) = (window(9, 5), window(4, 0), window(14, 10), window(29, 0));
            let min = cfg.growth_min_per_s;
            let steady = gt(h.slope(), min)
                && ge(h.r2(), Some(cfg.growth_min_r2))
                && gt(hh.slope(), 0.5 * min)
                && h.n as f64 >= 60.0 * cfg.growth_min_coverage;
            let (rv15, rv10) = (q.resid_var(), t.resid_var());
            let fast_15m = gt(q.slope(), FAST_FACTOR * min)
                && ge(q.r2(), Some(0.9))
                && q.n >= 12
                && gt(f.slope(), min)
                && gt(e.slope(), min)
                && ge(f.slope(), t_bound(rv15, f.sxx()))
                && ge(e.slope(), t_bound(rv15, e.sxx()));
            let fast_10m = gt(t.slope(), FAST_FACTOR * min)
                && ge(t.r2(), Some(FAST_R2))
                && t.n >= 8
                && gt(f.slope(), min)
                && gt(te.slope(), min)
                && ge(f.slope(), t_bound(rv10, f.sxx()))
                && ge(te.slope(), t_bound(rv10, te.sxx()));
            let sustained = fast_10m || fast_15m;
            let window_s = if fast_10m {
                600
            } else if fast_15m {
                900
            } else {
                3_600
            };
            let r2 = h.r2().unwrap_or(0.0);
            let s = match (sustained, window_s) {
                (true, 600) => t.slope().unwrap_or(0.0),
                (true, _) => q.slope().unwrap_or(0.0),
                _ => h.slope().unwrap_or(0.0),
            };
            out.push(finding(
                (*scope).clone(),
                eval,
                v,
                Some(h.min),
                s,
                r2,
                steady || sustained,
                sustained,
                window_s,
                cfg,
            ));
        }
    }
    out
}

/// One finding of the rule, from either path.
#[allow(clippy::too_many_arguments)]
fn finding(
    scope: Scope,
    eval_s: i64,
    value: f64,
    hour_low: Option<f64>,
    s: f64,
    r2: f64,
    fired: bool,
    sustained: bool,
    window_s: i64,
    cfg: &AnalyzeConfig,
) -> Finding {
    Finding {
        scope,
        detector: DetectorKind::GrowthRule,
        eval_s,
        fired,
        value,
        baseline: hour_low,
        growth_per_s: s,
        score: squash(s / cfg.growth_min_per_s) * r2.clamp(0.0, 1.0),
        reason: if sustained {
            format!(
                "slope {s:.3}/s over the last {} minutes of this pod's life, growing all along (threshold {}/s)",
                window_s / 60,
                cfg.growth_min_per_s
            )
        } else {
            format!(
                "slope {s:.3}/s over the last hour of this pod's life (R² {r2:.2}, threshold {}/s)",
                cfg.growth_min_per_s
            )
        },
        onset_s: None,
        sustained,
        window_s,
        max_age_s: None,
    }
}

/// The rule as the query (`rule_growth`), on the session: the native rule's reference in the
/// tests.
#[cfg(test)]
pub(crate) async fn sql_findings(input: &Inputs<'_>) -> Result<Vec<Finding>> {
    let cfg = input.cfg;
    let batches = run_named(
        input.ctx,
        "rule_growth",
        &[
            ("from", rfc(input.from_s)),
            ("to", rfc(input.to_s)),
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
            out.push(finding(
                scope,
                eval_s,
                v[i].unwrap_or(0.0),
                low[i],
                s,
                r2[i].unwrap_or(0.0),
                fired[i],
                sustained[i],
                window_s,
                cfg,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::series::minute_series;
    use leakhound_ingest::Store;

    /// The native rule's findings and the query's, on the same store and range: equal, the
    /// measured numbers to rounding.
    async fn assert_native_equals_query(
        store: &Store,
        from_s: i64,
        to_s: i64,
        what: &str,
    ) -> usize {
        let cfg = AnalyzeConfig::default();
        let ctx = crate::session::session(store).await.unwrap();
        let series = minute_series(&ctx, from_s - 86_400 - 7_200, to_s, &cfg.namespace)
            .await
            .unwrap();
        let input = Inputs {
            ctx: &ctx,
            from_s,
            to_s,
            eval_times: &[],
            series: &series,
            span_s: None,
            series_from_s: from_s - 86_400 - 7_200,
            cfg: &cfg,
        };
        let sql = sql_findings(&input).await.unwrap();
        let native = native_findings(&series, from_s, to_s, &cfg);
        // The query's sliding `regr_*` add and retract points at x ~ 1.8e9 s (Welford updates): a
        // few parts in 1e9 from the two-pass sums here.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-3);
        assert_eq!(native.len(), sql.len(), "{what}: findings");
        for (n, s) in native.iter().zip(&sql) {
            let at = format!("{what}: {:?} at {}", s.scope, s.eval_s);
            assert_eq!(
                (&n.scope, n.eval_s, n.fired, n.sustained, n.window_s),
                (&s.scope, s.eval_s, s.fired, s.sustained, s.window_s),
                "{at}: {} vs {}",
                n.reason,
                s.reason
            );
            assert!(close(n.value, s.value), "{at}: value");
            assert!(
                close(n.baseline.unwrap(), s.baseline.unwrap()),
                "{at}: hour low"
            );
            assert!(
                close(n.growth_per_s, s.growth_per_s),
                "{at}: {} vs {}",
                n.growth_per_s,
                s.growth_per_s
            );
            assert!(close(n.score, s.score), "{at}: {} vs {}", n.score, s.score);
        }
        sql.iter().filter(|f| f.fired).count()
    }

    /// Every scenario kind of the labelled suite: the hours around its leak's onset (or its
    /// middle) and its last hours.
    #[cfg(feature = "testkit")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native_equals_the_query_on_every_scenario_kind() {
        use crate::backtest::{Evidence, load};
        let mut fired = 0;
        for kind in crate::scenarios::KINDS {
            let s = crate::scenarios::generate(kind, 1).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().to_str().unwrap()).unwrap();
            load(&store, &s, Evidence::Counts).await.unwrap();
            let mid = s
                .leak
                .as_ref()
                .map_or((s.start_s + s.end_s) / 2, |l| l.onset_s);
            let mid = mid.div_euclid(300) * 300;
            fired += assert_native_equals_query(&store, mid - 3_600, mid + 3 * 3_600, kind).await;
            fired += assert_native_equals_query(&store, s.end_s - 4 * 3_600, s.end_s, kind).await;
        }
        assert!(fired > 50, "the leaks fire: {fired} firings");
    }

    /// Odd but real shapes, hand-made: several scrapes a minute, a process restart and a
    /// container restart, a fall below half, minutes without a start time (a source that has
    /// none), a workload label appearing mid-way, gaps, a fast leak and a steady one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native_equals_the_query_on_odd_shapes() {
        use leakhound_ingest::rows::{CountRow, Target};
        use leakhound_ingest::writer::{Batch, Writer};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let t0: i64 = 1_790_812_800;
        let target = |wl: Option<&str>, pod: &str| Target {
            namespace: "shop".into(),
            workload: wl.map(str::to_string),
            workload_kind: wl.map(|_| "Deployment".to_string()),
            pod: pod.into(),
            ..Default::default()
        };
        let mut rows = Vec::new();
        // Four hours, a scrape every 20 s (three a minute) with small noise.
        for k in 0..(4 * 180) {
            let ts = t0 + k * 20;
            let min = k / 3;
            let noise = k * 7919 % 5;
            // A steady leak, restarted at minute 100 (new process) and falling below half at
            // minute 170; minutes 60-80 without a start time.
            let started = if min < 100 { 1 } else { 2 };
            let leak = if min < 170 {
                200 + 40 * min
            } else {
                100 + 40 * (min - 170)
            };
            rows.push(CountRow {
                target: target(Some("api"), "api-1"),
                ts_us: ts * 1_000_000,
                goroutines: leak + noise,
                process_start_time_us: (!(60..80).contains(&min)).then_some(started * 1_000_000),
                ..Default::default()
            });
            // A fast leak from minute 120 whose workload label appears at minute 130, with a
            // container restart at minute 200 and a gap from 150 to 160.
            if !(150..160).contains(&min) {
                let fast = if min < 120 { 80 } else { 80 + 90 * (min - 120) };
                rows.push(CountRow {
                    target: target((min >= 130).then_some("web"), "web-0"),
                    ts_us: (ts + 3) * 1_000_000,
                    goroutines: if min >= 200 { 80 + noise } else { fast + noise },
                    container_restarts: Some(if min >= 200 { 1 } else { 0 }),
                    ..Default::default()
                });
            }
            // Flat with noise: never fires.
            rows.push(CountRow {
                target: target(Some("db"), "db-0"),
                ts_us: ts * 1_000_000,
                goroutines: 300 + noise * 3,
                ..Default::default()
            });
        }
        let mut b = Batch::default();
        b.add_counts(rows, "odd");
        Writer::new(store.clone()).commit(b).await.unwrap();
        let fired = assert_native_equals_query(&store, t0 + 3_600, t0 + 4 * 3_600, "odd").await;
        assert!(fired >= 5, "the leaks fire: {fired}");
    }
}
