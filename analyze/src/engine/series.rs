//! Minute series of goroutine counts per pod and per workload (the sum over its pods), with
//! the pod's restarts, for the detectors that read series; and the daily-pattern check
//! ([`recurring_rise`]) that un-fires a rise the scope also made yesterday.

use std::collections::{BTreeMap, HashMap};

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;

use super::Scope;
use super::columns::{f64s, i64s, rfc, scope_rows, ts_micros};
use crate::detect::Finding;
use crate::error::Result;

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
///
/// The rows stream through once (the projection the series need, no aggregate in DataFusion:
/// its hash table over every (pod, minute) of 3 days held ~370 bytes a row) into one compact
/// accumulator per pod (40 bytes a row), then each pod's minutes are averaged in time order.
/// The result equals the SQL aggregate's (`AVG` per minute, `MAX` of the scope columns, start
/// time and restarts per minute, a scope per distinct scope row): tested against it.
pub async fn minute_series(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
) -> Result<BTreeMap<Scope, Series>> {
    use futures::TryStreamExt;

    let sql = format!(
        "SELECT \"cluster\", namespace, workload_kind, workload, pod, ts, goroutines, \
                CAST(process_start_time AS BIGINT) AS started, container_restarts AS restarts \
         FROM goroutine_counts \
         WHERE ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND namespace LIKE '{ns}'",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
        ns = namespace.replace('\'', "''"),
    );
    let mut acc = PodRows::default();
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(b) = stream.try_next().await? {
        acc.add(&b)?;
    }
    Ok(acc.series())
}

/// One count row, compact: its minute, value, start time and restarts (`i64::MIN`: null), and
/// its scope columns as indexes into [`PodRows::names`].
#[derive(Clone, Copy)]
struct Row {
    minute: i64,
    value: i64,
    started: i64,
    restarts: i64,
    cluster: u32,
    kind: u32,
    workload: u32,
}

const NULL: i64 = i64::MIN;

/// Rows per (namespace, pod), as they stream in.
#[derive(Default)]
struct PodRows {
    pods: HashMap<(Option<String>, Option<String>), Vec<Row>>,
    /// Distinct cluster / workload kind / workload values; 0 is null.
    names: Vec<Option<String>>,
    index: HashMap<String, u32>,
}

impl PodRows {
    fn name(&mut self, v: Option<&str>) -> u32 {
        let Some(v) = v else { return 0 };
        if self.names.is_empty() {
            self.names.push(None);
        }
        if let Some(i) = self.index.get(v) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(Some(v.to_string()));
        self.index.insert(v.to_string(), i);
        i
    }

    fn add(&mut self, b: &arrow::array::RecordBatch) -> Result<()> {
        use super::columns::str_values_ref;
        let (cl, ns, wk, wl, pod) = (
            str_values_ref(b, "cluster")?,
            str_values_ref(b, "namespace")?,
            str_values_ref(b, "workload_kind")?,
            str_values_ref(b, "workload")?,
            str_values_ref(b, "pod")?,
        );
        let (ts, g) = (ts_micros(b, "ts")?, i64s(b, "goroutines")?);
        let (started, restarts) = (i64s(b, "started")?, i64s(b, "restarts")?);
        let mut key: (Option<String>, Option<String>) = (None, None);
        // Rows come pod by pod: the last name of each column and its index, looked up again
        // only when it changes.
        let mut last: [(Option<&str>, u32); 3] = [(None, 0); 3];
        for i in 0..b.num_rows() {
            // AVG skips nulls; a minute of nulls only is no point (as the aggregate's NULL).
            let (Some(t), Some(v)) = (ts[i], g[i]) else {
                continue;
            };
            let mut ids = [0u32; 3];
            for (j, v) in [cl.value(i), wk.value(i), wl.value(i)]
                .into_iter()
                .enumerate()
            {
                if last[j].0 != v || (v.is_some() && last[j].1 == 0) {
                    last[j] = (v, self.name(v));
                }
                ids[j] = last[j].1;
            }
            let row = Row {
                minute: t.div_euclid(60_000_000) * 60,
                value: v,
                started: started[i].unwrap_or(NULL),
                restarts: restarts[i].unwrap_or(NULL),
                cluster: ids[0],
                kind: ids[1],
                workload: ids[2],
            };
            let (n, p) = (ns.value(i), pod.value(i));
            if key.0.as_deref() != n || key.1.as_deref() != p {
                key = (n.map(str::to_string), p.map(str::to_string));
            }
            match self.pods.get_mut(&key) {
                Some(rows) => rows.push(row),
                None => {
                    self.pods.insert(key.clone(), vec![row]);
                }
            }
        }
        Ok(())
    }

    /// The series, as the aggregate ordered by namespace, pod, minute would give them.
    fn series(self) -> BTreeMap<Scope, Series> {
        let PodRows { pods, names, .. } = self;
        let name = |i: u32| names.get(i as usize).and_then(|n| n.as_deref());
        let mut keys: Vec<_> = pods.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = SeriesBuilder::new(true);
        let max_name = |a: u32, b: u32| {
            if name(b) > name(a) { b } else { a }
        };
        let some = |v: i64| (v != NULL).then_some(v);
        for ((ns, pod), mut rows) in keys {
            rows.sort_by_key(|r| r.minute);
            // The scope of the minutes so far (built again only when a label changes).
            let mut cur: Option<((u32, u32, u32), Scope)> = None;
            for minute in rows.chunk_by(|a, b| a.minute == b.minute) {
                let (mut sum, mut st, mut rs) = (0.0f64, NULL, NULL);
                let (mut c, mut k, mut w) = (0u32, 0u32, 0u32);
                for r in minute {
                    sum += r.value as f64;
                    st = st.max(r.started);
                    rs = rs.max(r.restarts);
                    c = max_name(c, r.cluster);
                    k = max_name(k, r.kind);
                    w = max_name(w, r.workload);
                }
                if cur.as_ref().is_none_or(|(ids, _)| *ids != (c, k, w)) {
                    let scope = Scope {
                        cluster: name(c).map(str::to_string),
                        namespace: ns.clone().unwrap_or_default(),
                        workload_kind: name(k).map(str::to_string),
                        workload: name(w).map(str::to_string),
                        pod: pod.clone(),
                    };
                    cur = Some(((c, k, w), scope));
                }
                let scope = &cur.as_ref().expect("set above").1;
                let v = sum / minute.len() as f64;
                out.push(scope, minute[0].minute, v, some(st), some(rs));
            }
        }
        out.finish()
    }
}

/// [`minute_series`] as one SQL aggregate ([`minute_sql`], what the cluster's `leak_stl_iforest`
/// is fed, and what the streamed loader replaced in-process): its reference in the tests.
#[cfg(test)]
pub(crate) async fn minute_series_sql(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
) -> Result<BTreeMap<Scope, Series>> {
    let sql = format!(
        "{} ORDER BY namespace, pod, minute",
        minute_sql(from_s, to_s, namespace)
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    series_of_rows(&batches)
}

/// The series of [`minute_sql`]'s rows, given ordered by namespace, pod and minute.
pub(crate) fn series_of_rows(batches: &[RecordBatch]) -> Result<BTreeMap<Scope, Series>> {
    let mut out = SeriesBuilder::new(true);
    for b in batches {
        out.add_rows(b, "minute")?;
    }
    Ok(out.finish())
}

/// Series from points given in (namespace, pod, time) order: one per scope, with the times its
/// process start time or container restart count changed; with `workloads`, also each
/// workload's sum over its pods.
pub(crate) struct SeriesBuilder {
    /// The series in the order their scopes first came, found by scope through `index`; the
    /// last one pushed to is at hand without a lookup (points come scope run by scope run).
    series: Vec<(Scope, Series)>,
    index: HashMap<Scope, usize>,
    last: Option<usize>,
    /// With `workloads`: each workload's points summed over its pods, the same way.
    workloads: Option<Vec<(Scope, BTreeMap<i64, f64>)>>,
    workload_index: HashMap<Scope, usize>,
    last_workload: Option<usize>,
    /// Per pod (namespace, pod: whatever the labels of its minutes, as the growth rule's
    /// query partitions): the last (process start, restarts) seen.
    identity: HashMap<PodKey, Identity>,
    /// The pod of the last point and its identity (not in `identity` meanwhile).
    last_pod: Option<(PodKey, Identity)>,
}

type PodKey = (String, Option<String>);
/// A pod's process start time and restart count at a point.
type Identity = (Option<i64>, Option<i64>);

/// Whether `w` is the workload scope of `scope` (`scope` without its pod).
fn is_workload_of(w: &Scope, scope: &Scope) -> bool {
    w.workload == scope.workload
        && w.namespace == scope.namespace
        && w.workload_kind == scope.workload_kind
        && w.cluster == scope.cluster
        && w.pod.is_none()
}

impl SeriesBuilder {
    pub(crate) fn new(workloads: bool) -> Self {
        SeriesBuilder {
            series: Vec::new(),
            index: HashMap::new(),
            last: None,
            workloads: workloads.then(Vec::new),
            workload_index: HashMap::new(),
            last_workload: None,
            identity: HashMap::new(),
            last_pod: None,
        }
    }

    /// One point of `scope` at `t` (seconds).
    pub(crate) fn push(
        &mut self,
        scope: &Scope,
        t: i64,
        v: f64,
        started: Option<i64>,
        restarts: Option<i64>,
    ) {
        if let Some(workloads) = &mut self.workloads
            && scope.workload.is_some()
        {
            let i = match self.last_workload {
                Some(i) if is_workload_of(&workloads[i].0, scope) => i,
                _ => {
                    let w = Scope {
                        pod: None,
                        ..scope.clone()
                    };
                    let i = *self.workload_index.entry(w.clone()).or_insert_with(|| {
                        workloads.push((w, BTreeMap::new()));
                        workloads.len() - 1
                    });
                    self.last_workload = Some(i);
                    i
                }
            };
            *workloads[i].1.entry(t).or_default() += v;
        }
        let now = (started, restarts);
        // Points come pod by pod: the previous point's pod is at hand without a lookup.
        let same_pod = self
            .last_pod
            .as_ref()
            .is_some_and(|(k, _)| k.0 == scope.namespace && k.1 == scope.pod);
        let seen = if same_pod {
            self.last_pod
                .as_mut()
                .map(|(_, id)| std::mem::replace(id, now))
        } else {
            if let Some((k, id)) = self.last_pod.take() {
                self.identity.insert(k, id);
            }
            let key = (scope.namespace.clone(), scope.pod.clone());
            let seen = self.identity.remove(&key);
            self.last_pod = Some((key, now));
            seen
        };
        let changed = match seen {
            Some((ps, pr)) => {
                (ps.is_some() && now.0.is_some() && ps != now.0)
                    || (pr.is_some() && now.1.is_some() && pr != now.1)
            }
            None => false,
        };
        let i = match self.last {
            Some(i) if self.series[i].0 == *scope => i,
            _ => {
                let series = &mut self.series;
                let i = *self.index.entry(scope.clone()).or_insert_with(|| {
                    series.push((scope.clone(), Series::default()));
                    series.len() - 1
                });
                self.last = Some(i);
                i
            }
        };
        let s = &mut self.series[i].1;
        if changed {
            s.resets_s.push(t);
        }
        s.ts_s.push(t);
        s.values.push(v);
    }

    /// Rows of scope columns, `time` (a timestamp), `v`, `started` and `restarts`; a row
    /// without a time or a value is no point.
    pub(crate) fn add_rows(&mut self, b: &RecordBatch, time: &str) -> Result<()> {
        let scopes = scope_rows(b)?;
        let (t, v) = (ts_micros(b, time)?, f64s(b, "v")?);
        let (started, restarts) = (i64s(b, "started")?, i64s(b, "restarts")?);
        for (i, scope) in scopes.into_iter().enumerate() {
            if let (Some(t), Some(v)) = (t[i], v[i]) {
                self.push(&scope, t / 1_000_000, v, started[i], restarts[i]);
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> BTreeMap<Scope, Series> {
        let mut out: BTreeMap<Scope, Series> = self.series.into_iter().collect();
        for (w, points) in self.workloads.unwrap_or_default() {
            out.insert(
                w,
                Series {
                    ts_s: points.keys().copied().collect(),
                    values: points.values().copied().collect(),
                    resets_s: Vec::new(),
                },
            );
        }
        out
    }
}

/// The rows of [`minute_series`] (cl, namespace, wk, wl, pod, minute, v, started, restarts: one
/// per pod and minute of `[from_s, to_s]`), unordered; also what `leak_stl_iforest` is fed.
pub(crate) fn minute_sql(from_s: i64, to_s: i64, namespace: &str) -> String {
    let ns = format!("namespace LIKE '{}'", namespace.replace('\'', "''"));
    binned_sql("minute", from_s, to_s, &ns)
}

/// Count rows of `[from_s, to_s]` matching `filter` (SQL), one per pod and `bin` (`minute`,
/// `second`; the column's name too): scope columns (cl, namespace, wk, wl, pod), `v` (the mean),
/// `started`, `restarts` (the highest). Unordered.
pub(crate) fn binned_sql(bin: &str, from_s: i64, to_s: i64, filter: &str) -> String {
    format!(
        "SELECT MAX(\"cluster\") AS cl, namespace, MAX(workload_kind) AS wk, \
                MAX(workload) AS wl, pod, \
                date_bin(INTERVAL '1 {bin}', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS {bin}, \
                AVG(CAST(goroutines AS DOUBLE)) AS v, \
                MAX(CAST(process_start_time AS BIGINT)) AS started, \
                MAX(container_restarts) AS restarts \
         FROM goroutine_counts \
         WHERE ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND ({filter}) \
         GROUP BY 2, 5, 6",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
    )
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
pub(crate) fn drop_recurring(fs: &mut [Finding], series: &BTreeMap<Scope, Series>) {
    for f in fs.iter_mut().filter(|f| f.fired) {
        if let Some(s) = series.get(&f.scope)
            && let Some(note) = recurring_rise(s, f.eval_s, f.window_s)
        {
            f.fired = false;
            f.reason = format!("{}; not a leak: {note}", f.reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const HOUR: i64 = 3_600;
    /// Midnight, 2026-12-01.
    const T0: i64 = 1_796_083_200;

    /// One point a minute over two days from `T0`, `f(t)` at each.
    fn series(f: impl Fn(i64) -> f64) -> Series {
        let ts_s: Vec<i64> = (0..2 * DAY / 60).map(|m| T0 + m * 60).collect();
        Series {
            values: ts_s.iter().map(|t| f(*t)).collect(),
            ts_s,
            resets_s: Vec::new(),
        }
    }

    /// 100 all day, ramping to 200 from 19:00 to 20:00 and back to 100 at 22:00, every day.
    fn evening_batch(t: i64) -> f64 {
        let tod = (t - T0).rem_euclid(DAY);
        match tod {
            x if x < 19 * HOUR => 100.0,
            x if x < 20 * HOUR => 100.0 + 100.0 * (x - 19 * HOUR) as f64 / HOUR as f64,
            x if x < 22 * HOUR => 200.0,
            _ => 100.0,
        }
    }

    #[test]
    fn recurring_rise_is_the_daily_pattern_and_nothing_else() {
        let now = T0 + DAY + 20 * HOUR;
        // The same ramp yesterday, to the same level: the daily pattern.
        let daily = series(evening_batch);
        let why = recurring_rise(&daily, now, HOUR).expect("yesterday's ramp is found");
        assert!(
            why.contains("this time yesterday, to the same level"),
            "{why}"
        );
        // The same ramp today only: a new rise.
        let new = series(|t| {
            if t < T0 + DAY {
                100.0
            } else {
                evening_batch(t)
            }
        });
        assert_eq!(recurring_rise(&new, now, HOUR), None);
        // A leak older than a day rose yesterday too, but the level is a day's growth above
        // yesterday's: not the daily pattern.
        let leak = series(|t| 100.0 + (t - T0) as f64 / 60.0);
        assert_eq!(recurring_rise(&leak, now, HOUR), None);
        // No rise today: nothing to explain.
        let flat = series(|_| 100.0);
        assert_eq!(recurring_rise(&flat, now, HOUR), None);
        // A falling level is not a rise either, whatever yesterday did.
        assert_eq!(
            recurring_rise(&daily, T0 + DAY + 22 * HOUR + 600, HOUR),
            None
        );
        // No history a day back: no verdict.
        let today_only = Series {
            ts_s: daily.ts_s[(DAY / 60) as usize..].to_vec(),
            values: daily.values[(DAY / 60) as usize..].to_vec(),
            resets_s: Vec::new(),
        };
        assert_eq!(recurring_rise(&today_only, now, HOUR), None);
        // A rise yesterday more than 45 minutes off this time is not the same rise.
        let shifted = series(|t| {
            if t < T0 + DAY {
                evening_batch(t + 2 * HOUR)
            } else {
                evening_batch(t)
            }
        });
        assert_eq!(recurring_rise(&shifted, now, HOUR), None);
    }

    #[test]
    fn drop_recurring_unfires_with_the_reason() {
        let now = T0 + DAY + 20 * HOUR;
        let scope = Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: None,
            workload: Some("cart".into()),
            pod: Some("cart-1".into()),
        };
        let finding = |fired| Finding {
            scope: scope.clone(),
            detector: crate::detect::DetectorKind::GrowthRule,
            eval_s: now,
            fired,
            value: 200.0,
            baseline: Some(100.0),
            growth_per_s: 0.03,
            score: 0.5,
            reason: "slope".into(),
            onset_s: None,
            sustained: false,
            window_s: HOUR,
            max_age_s: None,
        };
        let mut fs = vec![finding(true), finding(false)];
        let series = BTreeMap::from([(scope.clone(), series(evening_batch))]);
        drop_recurring(&mut fs, &series);
        assert!(!fs[0].fired);
        assert!(
            fs[0].reason.starts_with("slope; not a leak: the same rise"),
            "{}",
            fs[0].reason
        );
        assert_eq!(fs[1].reason, "slope");
        // A scope without a series keeps its firing.
        let mut other = vec![finding(true)];
        drop_recurring(&mut other, &BTreeMap::new());
        assert!(other[0].fired);
    }

    /// Odd but real shapes: several scrapes in a minute (averaged), a pod whose workload label
    /// appears mid-way (two scopes), process restarts and restart counts, a pod in another
    /// namespace, rows out of time order across commits, sub-minute timestamps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_series_equal_the_sql_aggregate() {
        use leakhound_ingest::rows::{CountRow, Target};
        use leakhound_ingest::writer::{Batch, Writer};

        let dir = tempfile::tempdir().unwrap();
        let store = leakhound_ingest::Store::open(dir.path().to_str().unwrap()).unwrap();
        let t0: i64 = 1_790_812_800;
        let target = |ns: &str, wl: Option<&str>, pod: &str| Target {
            namespace: ns.into(),
            workload: wl.map(str::to_string),
            workload_kind: wl.map(|_| "Deployment".to_string()),
            pod: pod.into(),
            ..Default::default()
        };
        let mut w = Writer::new(store.clone());
        // Two commits, the second holding earlier minutes than the first's last.
        for (part, (lo, hi)) in [(90, 200), (0, 120)].into_iter().enumerate() {
            let mut rows = Vec::new();
            for k in lo..hi {
                let ts = t0 + k * 20; // three scrapes a minute
                rows.push(CountRow {
                    target: target("shop", Some("api"), "api-7d9f8c6b5-abcde"),
                    ts_us: ts * 1_000_000 + 123,
                    goroutines: 100 + k + (k % 3),
                    process_start_time_us: Some(if k < 150 { 1 } else { 2 } * 1_000_000),
                    ..Default::default()
                });
                rows.push(CountRow {
                    target: target("shop", (k >= 60).then_some("web"), "web-0"),
                    ts_us: ts * 1_000_000,
                    goroutines: 50 + (k % 7),
                    container_restarts: Some(k / 100),
                    ..Default::default()
                });
                rows.push(CountRow {
                    target: target("other", None, "solo"),
                    ts_us: (ts + 7) * 1_000_000,
                    goroutines: 10,
                    ..Default::default()
                });
            }
            let mut b = Batch::default();
            b.add_counts(rows, &format!("series-{part}"));
            w.commit(b).await.unwrap();
        }
        let ctx = crate::session::session(&store).await.unwrap();
        for (from, to, ns) in [
            (t0, t0 + 4_000, "%"),
            (t0 + 600, t0 + 3_000, "shop"),
            (t0 + 5_000, t0 + 6_000, "%"),
        ] {
            let streamed = minute_series(&ctx, from, to, ns).await.unwrap();
            let sql = minute_series_sql(&ctx, from, to, ns).await.unwrap();
            let show = |m: &BTreeMap<Scope, Series>| {
                m.iter()
                    .map(|(k, v)| format!("{k:?} {:?} {:?} {:?}", v.ts_s, v.values, v.resets_s))
                    .collect::<Vec<_>>()
            };
            assert_eq!(show(&streamed), show(&sql), "{from}..{to} {ns}");
            if from == t0 {
                assert_eq!(
                    streamed.len(),
                    6,
                    "api, web-0 twice, solo, and two workloads"
                );
                assert!(streamed.values().any(|s| !s.resets_s.is_empty()));
            }
        }
    }
}
