//! The container context in analyze: each pod's memory and memory limit over time, from the
//! Go agent's context columns on `goroutine_counts` (`mem_current_bytes`, else `rss_bytes`;
//! `mem_max_bytes`), landed by `ingest` from the `Leakhound-Context` header or by `serve`'s
//! push listener. [`trend`] fits the memory of an episode's scope over the episode's window;
//! `levels::MemoryTrend` says how long until the limit and whether that raises the level
//! (the rule and its thresholds are in `levels.rs`'s header).
//!
//! - Memory is cgroup `memory.current` (what the OOM killer compares with `memory.max`) where
//!   the agent knows it, else the process's VmRSS; the limit is `memory.max` (null when
//!   unlimited). Pods without the agent have neither: no trend, and the event's memory fields
//!   are null.
//! - Per pod, minute means (several rows of one minute — a pull pass's formats — count once).
//! - The window: from the episode's growth start, at least the last 15 minutes and at most the
//!   hour, up to the evaluation; of the pod's current process only (a restart starts memory
//!   over). A fit needs 3 minutes with memory over 2 minutes at least.
//! - A workload-wide scope: each of its pods fitted alone; the pod that reaches its limit first
//!   (else the one with the most memory) stands for the workload.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;

use super::Scope;
use super::columns::{f64s, i64s, rfc, scope_rows, ts_micros};
use crate::error::Result;
use crate::levels::{LevelThresholds, MemoryTrend};

/// One minute of a pod's memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub ts_s: i64,
    pub memory_bytes: f64,
    pub limit_bytes: Option<i64>,
    /// The process: its start time and container restarts (a change is a new process).
    pub life: (Option<i64>, Option<i64>),
}

/// Memory per pod (pod scopes), minutes ascending.
pub(crate) type Memory = BTreeMap<Scope, Vec<Point>>;

/// The shortest and longest window a trend is fitted over, seconds.
const MIN_WINDOW_S: i64 = 900;
const MAX_WINDOW_S: i64 = 3_600;
/// Fewest minutes and shortest span a fit takes.
const MIN_POINTS: usize = 3;
const MIN_SPAN_S: i64 = 120;

/// Every pod's memory minutes in `[from_s, to_s]` where the agent's context gives it.
pub(crate) async fn memory(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
) -> Result<Memory> {
    let sql = format!(
        "SELECT MAX(\"cluster\") AS cl, namespace, MAX(workload_kind) AS wk, \
                MAX(workload) AS wl, pod, \
                date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS minute, \
                AVG(CAST(COALESCE(mem_current_bytes, rss_bytes) AS DOUBLE)) AS mem, \
                MAX(mem_max_bytes) AS lim, \
                MAX(CAST(process_start_time AS BIGINT)) AS started, \
                MAX(container_restarts) AS restarts \
         FROM goroutine_counts \
         WHERE ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND namespace LIKE '{ns}' \
           AND (mem_current_bytes IS NOT NULL OR rss_bytes IS NOT NULL) \
         GROUP BY 2, 5, 6 ORDER BY namespace, pod, minute",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
        ns = namespace.replace('\'', "''"),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out = Memory::new();
    for b in &batches {
        let scopes = scope_rows(b)?;
        let (t, mem, lim) = (ts_micros(b, "minute")?, f64s(b, "mem")?, i64s(b, "lim")?);
        let (started, restarts) = (i64s(b, "started")?, i64s(b, "restarts")?);
        for (i, scope) in scopes.into_iter().enumerate() {
            let (Some(t), Some(m)) = (t[i], mem[i]) else {
                continue;
            };
            out.entry(scope).or_default().push(Point {
                ts_s: t.div_euclid(1_000_000),
                memory_bytes: m,
                limit_bytes: lim[i].filter(|l| *l > 0),
                life: (started[i], restarts[i]),
            });
        }
    }
    for points in out.values_mut() {
        points.sort_by_key(|p| p.ts_s);
    }
    Ok(out)
}

/// The memory trend of `scope` over the window of an episode whose growth began at
/// `growth_from_s`, evaluated at `eval_s`; `None` where no pod of it has enough memory minutes.
pub(crate) fn trend(
    memory: &Memory,
    scope: &Scope,
    growth_from_s: i64,
    eval_s: i64,
    t: &LevelThresholds,
) -> Option<MemoryTrend> {
    if memory.is_empty() {
        return None;
    }
    let from = growth_from_s
        .min(eval_s - MIN_WINDOW_S)
        .max(eval_s - MAX_WINDOW_S);
    if scope.pod.is_some() {
        return memory.get(scope).and_then(|ps| fit(ps, from, eval_s));
    }
    // A workload: its pods (same cluster, namespace and workload).
    let pods = memory.iter().filter(|(s, _)| {
        s.workload.is_some()
            && s.workload == scope.workload
            && s.workload_kind == scope.workload_kind
            && s.namespace == scope.namespace
            && s.cluster == scope.cluster
    });
    pods.filter_map(|(_, ps)| fit(ps, from, eval_s))
        .min_by(|a, b| {
            let ttl = |m: &MemoryTrend| m.time_to_limit_s(t).unwrap_or(f64::INFINITY);
            ttl(a)
                .total_cmp(&ttl(b))
                .then(b.memory_bytes.cmp(&a.memory_bytes))
        })
}

/// Least-squares fit of memory over the points in `[from_s, to_s]` of the last process.
pub(crate) fn fit(points: &[Point], from_s: i64, to_s: i64) -> Option<MemoryTrend> {
    let lo = points.partition_point(|p| p.ts_s < from_s);
    let hi = points.partition_point(|p| p.ts_s <= to_s);
    let window = &points[lo..hi];
    let last = window.last()?;
    // The current process only: back from the last point while its life is the same.
    let start = window
        .iter()
        .rposition(|p| p.life != last.life)
        .map_or(0, |i| i + 1);
    let window = &window[start..];
    let span = last.ts_s - window[0].ts_s;
    if window.len() < MIN_POINTS || span < MIN_SPAN_S {
        return None;
    }
    let n = window.len() as f64;
    let t0 = window[0].ts_s;
    let mean_t = window.iter().map(|p| (p.ts_s - t0) as f64).sum::<f64>() / n;
    let mean_m = window.iter().map(|p| p.memory_bytes).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for p in window {
        let dt = (p.ts_s - t0) as f64 - mean_t;
        sxy += dt * (p.memory_bytes - mean_m);
        sxx += dt * dt;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    if !slope.is_finite() || !last.memory_bytes.is_finite() {
        return None;
    }
    Some(MemoryTrend {
        memory_bytes: last.memory_bytes.round() as i64,
        limit_bytes: last.limit_bytes,
        slope_per_s: slope,
        span_s: span as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_083_200;
    const MIB: f64 = 1_048_576.0;

    fn pod(name: &str) -> Scope {
        Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("cart".into()),
            pod: Some(name.into()),
        }
    }

    /// Minutes `0..n` before `T`: memory `base + per_min * k` MiB, a limit, one process.
    fn points(n: i64, base: f64, per_min: f64, limit: Option<i64>) -> Vec<Point> {
        (0..n)
            .map(|k| Point {
                ts_s: T - (n - 1 - k) * 60,
                memory_bytes: (base + per_min * k as f64) * MIB,
                limit_bytes: limit,
                life: (Some(1), Some(0)),
            })
            .collect()
    }

    #[test]
    fn the_slope_is_the_least_squares_one_over_the_window_of_the_last_process() {
        let t = LevelThresholds::default();
        // 2 MiB a minute for an hour, up to 218 MiB of 256 MiB: 38 MiB left, 19 minutes.
        let ps = points(60, 100.0, 2.0, Some(256 << 20));
        let m = fit(&ps, T - 1_800, T).unwrap();
        assert!((m.slope_per_s - 2.0 * MIB / 60.0).abs() < 1e-6, "{m:?}");
        assert_eq!(m.memory_bytes, (218.0 * MIB) as i64);
        assert_eq!(m.span_s, 1_800.0);
        let ttl = m.time_to_limit_s(&t).unwrap();
        assert!((ttl - 19.0 * 60.0).abs() < 1e-6, "{ttl}");
        // Noise around a line: the fit finds the line.
        let mut noisy = ps.clone();
        for (k, p) in noisy.iter_mut().enumerate() {
            p.memory_bytes += [3.0, -3.0, 1.0, -1.0][k % 4] * MIB;
        }
        let m = fit(&noisy, T - 1_800, T).unwrap();
        assert!(
            (m.slope_per_s / (2.0 * MIB / 60.0) - 1.0).abs() < 0.05,
            "{m:?}"
        );
        // A restart 10 minutes ago: only the new process's minutes, memory from low again.
        let mut restarted = ps.clone();
        for (k, p) in restarted.iter_mut().enumerate().skip(50) {
            p.life = (Some(2), Some(1));
            p.memory_bytes = (20.0 + (k - 50) as f64) * MIB;
        }
        let m = fit(&restarted, T - 1_800, T).unwrap();
        assert_eq!(m.span_s, 540.0);
        assert!((m.slope_per_s - MIB / 60.0).abs() < 1e-6, "{m:?}");
        // Too few minutes, or too short a span: no trend.
        assert_eq!(fit(&ps[..2], T - 3_600, T), None);
        assert_eq!(fit(&ps, T - 90, T), None);
        assert_eq!(fit(&[], T - 3_600, T), None);
    }

    #[test]
    fn flat_memory_or_no_limit_gives_no_time_to_limit() {
        let t = LevelThresholds::default();
        let flat = fit(&points(30, 200.0, 0.0, Some(256 << 20)), T - 1_800, T).unwrap();
        assert_eq!(flat.slope_per_s, 0.0);
        assert_eq!(flat.time_to_limit_s(&t), None);
        assert!(!flat.towards_limit(&t));
        let unlimited = fit(&points(30, 100.0, 2.0, None), T - 1_800, T).unwrap();
        assert!(unlimited.slope_per_s > 0.0);
        assert_eq!(unlimited.limit_bytes, None);
        assert_eq!(unlimited.time_to_limit_s(&t), None);
    }

    #[test]
    fn the_window_is_the_episodes_at_least_15_minutes_at_most_the_hour() {
        let t = LevelThresholds::default();
        // Flat for 40 minutes, then 4 MiB a minute for the last 20.
        let mut ps = points(60, 100.0, 0.0, Some(1 << 30));
        for (k, p) in ps.iter_mut().enumerate().skip(40) {
            p.memory_bytes = (100.0 + 4.0 * (k - 39) as f64) * MIB;
        }
        let mem = Memory::from([(pod("cart-1"), ps)]);
        // The episode's growth began 20 minutes ago: the fit sees the growth only.
        let m = trend(&mem, &pod("cart-1"), T - 1_200, T, &t).unwrap();
        assert!((m.slope_per_s - 4.0 * MIB / 60.0).abs() < 1e-6, "{m:?}");
        // A growth start 5 minutes ago: still 15 minutes fitted.
        let m = trend(&mem, &pod("cart-1"), T - 300, T, &t).unwrap();
        assert_eq!(m.span_s, 900.0);
        // One that began two hours ago: the hour.
        let m = trend(&mem, &pod("cart-1"), T - 7_200, T, &t).unwrap();
        assert_eq!(m.span_s, 3_540.0);
        // Another pod, or a pod without the agent: none.
        assert_eq!(trend(&mem, &pod("cart-2"), T - 1_200, T, &t), None);
    }

    #[test]
    fn a_workload_is_its_pod_nearest_the_limit() {
        let t = LevelThresholds::default();
        let mem = Memory::from([
            (pod("cart-1"), points(30, 100.0, 1.0, Some(256 << 20))),
            (pod("cart-2"), points(30, 200.0, 1.0, Some(256 << 20))),
            (pod("cart-3"), points(30, 50.0, 0.0, Some(256 << 20))),
        ]);
        let workload = Scope {
            pod: None,
            ..pod("x")
        };
        let m = trend(&mem, &workload, T - 1_800, T, &t).unwrap();
        assert_eq!(m.memory_bytes, (229.0 * MIB) as i64);
        let other = Scope {
            workload: Some("orders".into()),
            ..workload
        };
        assert_eq!(trend(&mem, &other, T - 1_800, T, &t), None);
    }
}
