//! `leakhound report --html FILE`: one self-contained HTML page per leak (or per scope) that a
//! person opens from disk — no network fetch, every picture inline.
//!
//! ```text
//!  leak_events (the event's rows: level changes) ─┐
//!  goroutine_counts (per pod, the range)          ├─ gather() ─▶ Report ─ render::page() ─▶ HTML
//!  leak_clusters + goroutine_samples + stacks ────┤      (plain data; rendering is pure, so the
//!  actions (by trigger id, or the scope)  ────────┘       escaping is tested without a store)
//! ```
//!
//! - **Counts** ([`chart`]): each pod's goroutine series, with what the detectors saw — the
//!   baseline (`baseline_goroutines`), the trend (`growth_per_s`
//!   the detector measured at each evaluation, drawn over the 10 minutes before it and ending at
//!   the evaluation's count), the onset, every level change, and restarts (a new process start
//!   time or container restart count on the count rows).
//! - **Clusters**: the latest detection's `leak_clusters` rows; growth per second is the
//!   cluster's growth between the two captures the root cause compared (the latest at or before
//!   `onset - 10 min`, or the detector's window start if earlier, else the scope's first; and
//!   the latest at the detection: `engine::sink`); residence P99 is the largest
//!   `age_p99_s` of the cluster's stacks at the scope's latest debug=2 capture.
//! - **Flamegraphs** ([`flame`], the `inferno` crate): the clusters' stacks at detection, and a
//!   differential one of every stack of the scope, the capture before the onset against the
//!   one at detection (what grew is red).
//! - **pprof**: each cluster as `report --pprof` writes it, embedded as a `data:` URL.
//!
//! Everything that comes from the store (function names, files, pods, labels, reasons) is
//! hostile: [`render`] escapes it for the context it lands in.

pub mod chart;
pub mod flame;
pub mod render;

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use leakhound_ingest::Store;

use crate::engine::columns::{bools, f64s, i64s, rfc, strs, ts_micros};
use crate::error::{Error, Result};
use crate::rootcause::{StackGrowth, StackInfo};

/// What a report is about.
#[derive(Debug, Clone)]
pub enum Select {
    /// One event (`leak_events.event_id`): its scope's pods around it.
    Event(String),
    /// Every event of a scope in a range (at most [`MAX_EVENTS`], highest level and latest first).
    Scope {
        namespace: String,
        workload: Option<String>,
        from_s: Option<i64>,
        to_s: Option<i64>,
    },
}

/// Events shown in a scope report.
pub const MAX_EVENTS: usize = 5;
/// Points per pod series in the chart (more are reduced to each bucket's maximum).
pub const MAX_POINTS: usize = 1_500;

/// One pod's count series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSeries {
    pub pod: String,
    /// (seconds since the epoch, goroutines), ascending.
    pub points: Vec<(i64, i64)>,
    /// When a new life began: (seconds, why).
    pub restarts: Vec<(i64, String)>,
}

/// One row of `leak_events` for the event (one per evaluation that fired).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detection {
    pub detected_at: i64,
    pub level: String,
    pub goroutines: i64,
    pub growth_per_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    pub id: String,
    pub pattern: String,
    pub blocking_site: String,
    pub top_function: String,
    pub top_file: String,
    pub top_line: u32,
    pub goroutines_now: i64,
    pub goroutines_at_onset: i64,
    pub growth_per_s: f64,
    pub residence_p99_s: Option<f64>,
    /// The runtime's goroutineleak profile reported the cluster's stacks by the detection.
    pub confirmed: bool,
    /// When a goroutineleak profile (or a `(leaked)` goroutine) first showed the cluster's
    /// stacks, up to the end of the report's range: a confirmation that may come after the
    /// detection.
    pub confirmed_at: Option<i64>,
    pub stack_ids: Vec<i64>,
    /// Frames of the representative stack, innermost first: `function file:line`.
    pub representative: Vec<String>,
    /// The cluster as `report --pprof` writes it (gzip'd profile.proto).
    pub pprof: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionView {
    pub decided_at: i64,
    pub action: String,
    pub outcome: String,
    pub dry_run: bool,
    pub pod: Option<String>,
    pub level: Option<String>,
    pub reason: String,
}

/// One event with everything the page shows about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventView {
    pub id: String,
    pub namespace: String,
    pub workload: Option<String>,
    pub pod: Option<String>,
    pub detector: String,
    pub onset: i64,
    pub window_start: i64,
    pub window_end: i64,
    pub baseline_goroutines: Option<f64>,
    pub residence_p99_s: Option<f64>,
    pub alive_over_5m_share: Option<f64>,
    /// The container's memory and limit, and the time until the limit (the Go agent's
    /// context; null without it).
    pub memory_bytes: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    pub time_to_limit_s: Option<f64>,
    pub reason: String,
    /// Every detection of the event, oldest first; the last is the event as it stands.
    pub detections: Vec<Detection>,
    pub clusters: Vec<ClusterView>,
    pub actions: Vec<ActionView>,
    /// The clusters' stacks at detection (inferno SVG), if any stack is known.
    pub flamegraph: Option<String>,
    /// Every stack of the scope, before the onset against detection (inferno SVG).
    pub differential: Option<String>,
    /// The time of the capture the differential compares against (the baseline).
    pub baseline_at: i64,
}

impl EventView {
    pub fn latest(&self) -> Detection {
        self.detections.last().cloned().unwrap_or_default()
    }
    /// The highest level the event reached.
    pub fn max_level(&self) -> String {
        self.detections
            .iter()
            .map(|d| d.level.clone())
            .max()
            .unwrap_or_default()
    }
}

/// Everything on the page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub title: String,
    pub namespace: String,
    pub workload: Option<String>,
    pub from_s: i64,
    pub to_s: i64,
    pub series: Vec<PodSeries>,
    pub events: Vec<EventView>,
    pub store: String,
    pub generated_at: i64,
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Gather the report's data from `store`.
pub async fn gather(store: &Store, select: &Select) -> Result<Report> {
    let ctx = crate::session::session(store).await?;
    let (mut events, namespace, workload) = match select {
        Select::Event(id) => {
            let ev = events_where(&ctx, &format!("event_id = {}", lit(id))).await?;
            let Some(e) = ev.into_iter().next() else {
                return Err(Error::Internal(format!(
                    "no event {id:?} in {} (see `leakhound sql \"SELECT event_id, level, \
                     namespace, workload FROM leak_events\"`)",
                    store.url()
                )));
            };
            let (ns, wl) = (e.namespace.clone(), e.workload.clone());
            (vec![e], ns, wl)
        }
        Select::Scope {
            namespace,
            workload,
            from_s,
            to_s,
        } => {
            let mut cond = format!("namespace = {}", lit(namespace));
            if let Some(w) = workload {
                cond += &format!(" AND workload = {}", lit(w));
            }
            if let Some(f) = from_s {
                cond += &format!(" AND detected_at >= TIMESTAMP '{}'", rfc(*f));
            }
            if let Some(t) = to_s {
                cond += &format!(" AND detected_at <= TIMESTAMP '{}'", rfc(*t));
            }
            let mut ev = events_where(&ctx, &cond).await?;
            ev.sort_by(|a, b| {
                b.max_level()
                    .cmp(&a.max_level())
                    .then(b.latest().detected_at.cmp(&a.latest().detected_at))
            });
            ev.truncate(MAX_EVENTS);
            (ev, namespace.clone(), workload.clone())
        }
    };
    // The range: what was asked, else from half an hour before the first onset (not before the
    // scope's first count) to the scope's last count (at least ten minutes, at most six hours
    // past the last detection).
    let (mut from_s, mut to_s) = match select {
        Select::Scope { from_s, to_s, .. } => (*from_s, *to_s),
        Select::Event(_) => (None, None),
    };
    if from_s.is_none() {
        from_s = events
            .iter()
            .map(|e| e.onset.min(e.window_start))
            .min()
            .map(|t| t - 1_800);
    }
    if to_s.is_none() {
        // Ten minutes past the last detection, or on to the scope's last count (the leak went
        // on after its last level change), within six hours.
        let last_detection = events.iter().map(|e| e.latest().detected_at).max();
        if let Some(d) = last_detection {
            let last = last_count(&ctx, &namespace, workload.as_deref())
                .await?
                .unwrap_or(d);
            to_s = Some((last + 60).clamp(d + 600, d + 6 * 3_600));
        }
    }
    let (from_s, to_s) = match (from_s, to_s) {
        (Some(f), Some(t)) => (f, t),
        // A scope without events and without a range: its last two hours of counts.
        _ => {
            let last = last_count(&ctx, &namespace, workload.as_deref())
                .await?
                .unwrap_or(chrono::Utc::now().timestamp());
            (from_s.unwrap_or(last - 7_200), to_s.unwrap_or(last + 60))
        }
    };
    // Not before the scope's first count (a detector's hour-long window reaches back past it).
    let from_s = match first_count(&ctx, &namespace, workload.as_deref()).await? {
        Some(first) if first - 60 > from_s && first - 60 < to_s => first - 60,
        _ => from_s,
    };
    let series = counts(&ctx, &namespace, workload.as_deref(), from_s, to_s).await?;
    for e in events.iter_mut() {
        fill_event(&ctx, e, to_s).await?;
    }
    let title = match select {
        Select::Event(id) => format!("leak event {id}"),
        Select::Scope { .. } => match &workload {
            Some(w) => format!("leaks in {namespace}/{w}"),
            None => format!("leaks in {namespace}"),
        },
    };
    Ok(Report {
        title,
        namespace,
        workload,
        from_s,
        to_s,
        series,
        events,
        store: store.url().to_string(),
        generated_at: chrono::Utc::now().timestamp(),
    })
}

/// Events (with every detection) matching a condition on `leak_events`, latest first.
async fn events_where(ctx: &SessionContext, cond: &str) -> Result<Vec<EventView>> {
    let sql = format!(
        "SELECT event_id, detected_at, namespace, workload, pod, level, detector, onset, \
                window_start, window_end, growth_per_s, residence_p99_s, alive_over_5m_share, \
                goroutines, baseline_goroutines, reason, memory_bytes, memory_limit_bytes, \
                time_to_limit_s \
         FROM leak_events WHERE {cond} ORDER BY detected_at"
    );
    let mut by_id: BTreeMap<String, EventView> = BTreeMap::new();
    for b in rows(ctx, &sql).await? {
        let id = strs(&b, "event_id")?;
        let det = ts_micros(&b, "detected_at")?;
        let ns = strs(&b, "namespace")?;
        let wl = strs(&b, "workload")?;
        let pod = strs(&b, "pod")?;
        let level = strs(&b, "level")?;
        let detector = strs(&b, "detector")?;
        let onset = ts_micros(&b, "onset")?;
        let ws = ts_micros(&b, "window_start")?;
        let we = ts_micros(&b, "window_end")?;
        let growth = f64s(&b, "growth_per_s")?;
        let res = f64s(&b, "residence_p99_s")?;
        let alive = f64s(&b, "alive_over_5m_share")?;
        let n = i64s(&b, "goroutines")?;
        let base = f64s(&b, "baseline_goroutines")?;
        let reason = strs(&b, "reason")?;
        let mem = i64s(&b, "memory_bytes")?;
        let limit = i64s(&b, "memory_limit_bytes")?;
        let ttl = f64s(&b, "time_to_limit_s")?;
        for i in 0..b.num_rows() {
            let Some(id) = id[i].clone() else { continue };
            let e = by_id.entry(id.clone()).or_default();
            // Rows come in detection order: the last one sets the event's current fields.
            *e = EventView {
                id,
                namespace: ns[i].clone().unwrap_or_default(),
                workload: wl[i].clone(),
                pod: pod[i].clone(),
                detector: detector[i].clone().unwrap_or_default(),
                onset: onset[i].unwrap_or(0) / 1_000_000,
                window_start: ws[i].unwrap_or(0) / 1_000_000,
                window_end: we[i].unwrap_or(0) / 1_000_000,
                baseline_goroutines: base[i],
                residence_p99_s: res[i],
                alive_over_5m_share: alive[i],
                memory_bytes: mem[i],
                memory_limit_bytes: limit[i],
                time_to_limit_s: ttl[i],
                reason: reason[i].clone().unwrap_or_default(),
                detections: std::mem::take(&mut e.detections),
                ..Default::default()
            };
            e.detections.push(Detection {
                detected_at: det[i].unwrap_or(0) / 1_000_000,
                level: level[i].clone().unwrap_or_default(),
                goroutines: n[i].unwrap_or(0),
                growth_per_s: growth[i].unwrap_or(0.0),
            });
        }
    }
    let mut out: Vec<EventView> = by_id.into_values().collect();
    for e in &mut out {
        e.detections.sort_by_key(|d| d.detected_at);
        e.detections.dedup_by_key(|d| d.detected_at);
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.latest().detected_at));
    Ok(out)
}

fn scope_cond(namespace: &str, workload: Option<&str>) -> String {
    match workload {
        Some(w) => format!("namespace = {} AND workload = {}", lit(namespace), lit(w)),
        None => format!("namespace = {}", lit(namespace)),
    }
}

async fn first_count(
    ctx: &SessionContext,
    namespace: &str,
    workload: Option<&str>,
) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MIN(ts) AS t FROM goroutine_counts WHERE {}",
        scope_cond(namespace, workload)
    );
    for b in rows(ctx, &sql).await? {
        if let Some(Some(t)) = ts_micros(&b, "t")?.first() {
            return Ok(Some(t / 1_000_000));
        }
    }
    Ok(None)
}

async fn last_count(
    ctx: &SessionContext,
    namespace: &str,
    workload: Option<&str>,
) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MAX(ts) AS t FROM goroutine_counts WHERE {}",
        scope_cond(namespace, workload)
    );
    for b in rows(ctx, &sql).await? {
        if let Some(Some(t)) = ts_micros(&b, "t")?.first() {
            return Ok(Some(t / 1_000_000));
        }
    }
    Ok(None)
}

/// Each pod's counts in the range (the largest count of a snapshot time: a time may hold a
/// debug=1 and a debug=2 row), with its restarts.
async fn counts(
    ctx: &SessionContext,
    namespace: &str,
    workload: Option<&str>,
    from_s: i64,
    to_s: i64,
) -> Result<Vec<PodSeries>> {
    let sql = format!(
        "SELECT pod, ts, MAX(goroutines) AS n, MAX(process_start_time) AS started, \
                MAX(container_restarts) AS restarts \
         FROM goroutine_counts \
         WHERE {scope} AND ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' \
         GROUP BY pod, ts ORDER BY pod, ts",
        scope = scope_cond(namespace, workload),
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
    );
    type Row = (i64, i64, Option<i64>, Option<i64>);
    let mut by_pod: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for b in rows(ctx, &sql).await? {
        let pod = strs(&b, "pod")?;
        let ts = ts_micros(&b, "ts")?;
        let n = i64s(&b, "n")?;
        let started = ts_micros(&b, "started")?;
        let restarts = i64s(&b, "restarts")?;
        for i in 0..b.num_rows() {
            let (Some(p), Some(t)) = (pod[i].clone(), ts[i]) else {
                continue;
            };
            by_pod.entry(p).or_default().push((
                t / 1_000_000,
                n[i].unwrap_or(0),
                started[i],
                restarts[i],
            ));
        }
    }
    Ok(by_pod
        .into_iter()
        .map(|(pod, mut rows)| {
            rows.sort_by_key(|r| r.0);
            let mut restarts = Vec::new();
            for w in rows.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                let why = if a.2.is_some() && b.2.is_some() && a.2 != b.2 {
                    Some("new process start time")
                } else if a.3.is_some() && b.3.is_some() && b.3 > a.3 {
                    Some("container restarted")
                } else {
                    None
                };
                if let Some(why) = why {
                    restarts.push((b.0, why.to_string()));
                }
            }
            PodSeries {
                pod,
                points: reduce(rows.iter().map(|r| (r.0, r.1)).collect(), MAX_POINTS),
                restarts,
            }
        })
        .collect())
}

/// At most `max` points: the largest count of each of `max` equal time buckets (peaks stay).
pub fn reduce(points: Vec<(i64, i64)>, max: usize) -> Vec<(i64, i64)> {
    if points.len() <= max || max == 0 {
        return points;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let width = ((t1 - t0) as f64 / max as f64).max(1.0);
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(max + 1);
    let mut bucket = -1i64;
    for (t, n) in points {
        let k = ((t - t0) as f64 / width) as i64;
        match out.last_mut() {
            Some(last) if k == bucket => {
                if n > last.1 {
                    *last = (t, n);
                }
            }
            _ => {
                out.push((t, n));
                bucket = k;
            }
        }
    }
    out
}

/// Clusters, residence, flamegraphs, pprof and actions of one event.
async fn fill_event(ctx: &SessionContext, e: &mut EventView, until: i64) -> Result<()> {
    let now = e.latest().detected_at;
    let base = (e.onset - 600).min(e.window_start);
    let sql = format!(
        "SELECT cluster_id, pattern, confirmed, representative_stack_id, stack_ids, \
                top_function, top_file, top_line, blocking_site, goroutines_now, \
                goroutines_baseline \
         FROM leak_clusters WHERE event_id = {id} \
           AND detected_at = TIMESTAMP '{t}' ORDER BY goroutines_now DESC",
        id = lit(&e.id),
        t = rfc(now),
    );
    // The captures the root cause compared: the latest at or before the baseline time (else
    // the scope's first), and the latest at or before the detection.
    let (base_capture, now_capture) = capture_times(ctx, e, base, now).await?;
    let span = match (base_capture, now_capture) {
        (Some(b), Some(n)) if n > b => (n - b) as f64,
        _ => (now - base).max(1) as f64,
    };
    e.baseline_at = base_capture.unwrap_or(base);
    let mut clusters = Vec::new();
    let mut reps: Vec<i64> = Vec::new();
    for b in rows(ctx, &sql).await? {
        use arrow::array::{Array, AsArray};
        let id = strs(&b, "cluster_id")?;
        let pattern = strs(&b, "pattern")?;
        let confirmed = bools(&b, "confirmed")?;
        let rep = i64s(&b, "representative_stack_id")?;
        let tf = strs(&b, "top_function")?;
        let tfile = strs(&b, "top_file")?;
        let tl = i64s(&b, "top_line")?;
        let site = strs(&b, "blocking_site")?;
        let gn = i64s(&b, "goroutines_now")?;
        let gb = i64s(&b, "goroutines_baseline")?;
        let lists = b
            .column_by_name("stack_ids")
            .ok_or_else(|| Error::MissingColumn("stack_ids".into()))?
            .as_list::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            let stack_ids: Vec<i64> = if lists.is_null(i) {
                Vec::new()
            } else {
                lists
                    .value(i)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .iter()
                    .flatten()
                    .collect()
            };
            let (now_n, base_n) = (gn[i].unwrap_or(0), gb[i].unwrap_or(0));
            reps.push(rep[i].unwrap_or(0));
            clusters.push(ClusterView {
                id: id[i].clone().unwrap_or_default(),
                pattern: pattern[i].clone().unwrap_or_default(),
                blocking_site: site[i].clone().unwrap_or_default(),
                top_function: tf[i].clone().unwrap_or_default(),
                top_file: tfile[i].clone().unwrap_or_default(),
                top_line: tl[i].unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
                goroutines_now: now_n,
                goroutines_at_onset: base_n,
                growth_per_s: (now_n - base_n) as f64 / span,
                confirmed: confirmed[i],
                stack_ids,
                ..Default::default()
            });
        }
    }
    // Every stack of the scope at the baseline and at detection.
    let growth = crate::rootcause::growth(
        ctx,
        &e.namespace,
        e.workload.as_deref(),
        e.pod.as_deref(),
        base,
        now,
    )
    .await?;
    // The flamegraphs show the largest stacks (a service may have thousands).
    let mut ids: Vec<i64> = growth.keys().copied().collect();
    ids.sort_by_key(|id| {
        let g = &growth[id];
        std::cmp::Reverse(g.now.max(g.baseline))
    });
    ids.truncate(2_000);
    for c in &clusters {
        ids.extend(c.stack_ids.iter().copied());
    }
    ids.extend(reps.iter().copied());
    ids.sort_unstable();
    ids.dedup();
    let info = crate::rootcause::stack_info(ctx, &ids).await?;
    for (c, rep) in clusters.iter_mut().zip(&reps) {
        if let Some(s) = info.get(rep) {
            c.representative = s
                .frames
                .iter()
                .map(|f| format!("{} {}:{}", f.function, f.file, f.line))
                .collect();
        }
        let stacks: Vec<(StackInfo, i64)> = c
            .stack_ids
            .iter()
            .filter_map(|id| {
                let n = growth.get(id).map(|g| g.now).unwrap_or(0);
                info.get(id).map(|s| (s.clone(), n))
            })
            .collect();
        c.pprof = crate::report::pprof_bytes(&stacks, now * 1_000_000_000)
            .map_err(|e| Error::Internal(format!("encoding the profile: {e}")))?;
        c.residence_p99_s = residence(ctx, e, &c.stack_ids, now).await?;
        c.confirmed_at = confirmed_at(ctx, e, &c.stack_ids, until.max(now)).await?;
    }
    let cluster_stacks: Vec<(StackInfo, i64)> = clusters
        .iter()
        .flat_map(|c| c.stack_ids.iter())
        .filter_map(|id| Some((info.get(id)?.clone(), growth.get(id)?.now)))
        .collect();
    e.flamegraph = flame::flamegraph(
        &cluster_stacks,
        &format!("leaking stacks of {} at detection", e.id),
    );
    let both: Vec<(&StackInfo, &StackGrowth)> = ids
        .iter()
        .filter_map(|id| Some((info.get(id)?, growth.get(id)?)))
        .collect();
    e.differential = flame::differential(
        &both,
        &format!(
            "all stacks: {} (before the onset) → {} (detection); red grew",
            rfc(e.baseline_at),
            rfc(now)
        ),
    );
    e.clusters = clusters;
    e.actions = actions(ctx, e).await?;
    Ok(())
}

/// The times of the captures the root cause compares: the latest goroutine profile at or before
/// `base` (else the scope's first one after it), and the latest at or before `now`.
async fn capture_times(
    ctx: &SessionContext,
    e: &EventView,
    base: i64,
    now: i64,
) -> Result<(Option<i64>, Option<i64>)> {
    let mut cond = scope_cond(&e.namespace, e.workload.as_deref());
    if let Some(p) = &e.pod {
        cond += &format!(" AND pod = {}", lit(p));
    }
    let from = base - 6 * 3_600;
    let sql = format!(
        "SELECT MAX(CASE WHEN ts <= TIMESTAMP '{b}' THEN ts END) AS before, \
                MIN(ts) AS first, MAX(ts) AS last FROM goroutine_samples \
         WHERE {cond} AND profile = 'goroutine' AND ts >= TIMESTAMP '{f}' \
           AND ts <= TIMESTAMP '{t}' AND date >= '{fd}' AND date <= '{td}'",
        b = rfc(base),
        f = rfc(from),
        t = rfc(now),
        fd = &rfc(from)[..10],
        td = &rfc(now)[..10],
    );
    for b in rows(ctx, &sql).await? {
        let before = ts_micros(&b, "before")?;
        let first = ts_micros(&b, "first")?;
        let last = ts_micros(&b, "last")?;
        if let (Some(bf), Some(fi), Some(la)) = (before.first(), first.first(), last.first()) {
            return Ok((bf.or(*fi).map(|t| t / 1_000_000), la.map(|t| t / 1_000_000)));
        }
    }
    Ok((None, None))
}

/// The first time the runtime reported one of the stacks as leaked (a goroutineleak profile,
/// or `(leaked)` in a dump) in the scope, from an hour before the onset to `until`.
async fn confirmed_at(
    ctx: &SessionContext,
    e: &EventView,
    stack_ids: &[i64],
    until: i64,
) -> Result<Option<i64>> {
    if stack_ids.is_empty() {
        return Ok(None);
    }
    let list: Vec<String> = stack_ids.iter().map(|i| i.to_string()).collect();
    let mut cond = scope_cond(&e.namespace, e.workload.as_deref());
    if let Some(p) = &e.pod {
        cond += &format!(" AND pod = {}", lit(p));
    }
    let from = e.onset - 3_600;
    let sql = format!(
        "SELECT MIN(ts) AS t FROM goroutine_samples \
         WHERE {cond} AND (profile = 'goroutineleak' OR leaked) AND stack_id IN ({ids}) \
           AND ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}'",
        ids = list.join(","),
        f = rfc(from),
        t = rfc(until),
        fd = &rfc(from)[..10],
        td = &rfc(until)[..10],
    );
    for b in rows(ctx, &sql).await? {
        if let Some(t) = ts_micros(&b, "t")?.first() {
            return Ok(t.map(|t| t / 1_000_000));
        }
    }
    Ok(None)
}

/// The largest `age_p99_s` of the stacks at the scope's latest debug=2 capture before `now`.
async fn residence(
    ctx: &SessionContext,
    e: &EventView,
    stack_ids: &[i64],
    now: i64,
) -> Result<Option<f64>> {
    if stack_ids.is_empty() {
        return Ok(None);
    }
    let list: Vec<String> = stack_ids.iter().map(|i| i.to_string()).collect();
    let from = now - 3_600;
    let mut cond = scope_cond(&e.namespace, e.workload.as_deref());
    if let Some(p) = &e.pod {
        cond += &format!(" AND pod = {}", lit(p));
    }
    let sql = format!(
        "SELECT ts, MAX(age_p99_s) AS p99 FROM goroutine_samples \
         WHERE {cond} AND format = 'debug2' AND profile = 'goroutine' \
           AND stack_id IN ({ids}) AND ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' \
         GROUP BY ts ORDER BY ts DESC LIMIT 1",
        ids = list.join(","),
        f = rfc(from),
        t = rfc(now),
        fd = &rfc(from)[..10],
        td = &rfc(now)[..10],
    );
    for b in rows(ctx, &sql).await? {
        if let Some(v) = f64s(&b, "p99")?.first() {
            return Ok(*v);
        }
    }
    Ok(None)
}

/// The `actions` rows triggered by the event, or taken on its scope since its onset.
async fn actions(ctx: &SessionContext, e: &EventView) -> Result<Vec<ActionView>> {
    let mut scope = scope_cond(&e.namespace, e.workload.as_deref());
    if e.workload.is_none()
        && let Some(p) = &e.pod
    {
        scope += &format!(" AND pod = {}", lit(p));
    }
    let sql = format!(
        "SELECT decided_at, action, outcome, dry_run, pod, level, reason FROM actions \
         WHERE trigger_id = {id} OR ({scope} AND decided_at >= TIMESTAMP '{f}') \
         ORDER BY decided_at LIMIT 200",
        id = lit(&e.id),
        f = rfc(e.onset),
    );
    let mut out = Vec::new();
    for b in rows(ctx, &sql).await? {
        let at = ts_micros(&b, "decided_at")?;
        let action = strs(&b, "action")?;
        let outcome = strs(&b, "outcome")?;
        let dry = bools(&b, "dry_run")?;
        let pod = strs(&b, "pod")?;
        let level = strs(&b, "level")?;
        let reason = strs(&b, "reason")?;
        for i in 0..b.num_rows() {
            out.push(ActionView {
                decided_at: at[i].unwrap_or(0) / 1_000_000,
                action: action[i].clone().unwrap_or_default(),
                outcome: outcome[i].clone().unwrap_or_default(),
                dry_run: dry[i],
                pod: pod[i].clone(),
                level: level[i].clone(),
                reason: reason[i].clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_keeps_each_buckets_peak() {
        let pts: Vec<(i64, i64)> = (0..100)
            .map(|t| (t, if t == 42 { 999 } else { t }))
            .collect();
        let r = reduce(pts.clone(), 10);
        assert!(r.len() <= 11, "{}", r.len());
        assert!(r.contains(&(42, 999)), "{r:?}");
        assert_eq!(reduce(pts.clone(), 1000), pts);
    }
}
