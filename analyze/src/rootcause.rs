//! Root cause: which stacks grew between a baseline snapshot and now, clustered so that one
//! leak is one cluster, each with a named leak pattern.
//!
//! ```text
//!  goroutine_samples (baseline snapshot, now snapshot, per pod) ──diff per stack──▶ grown stacks
//!  stacks (frames, created by) ──blocking site + pattern──▶ clusters ──merge one mechanism──▶ ClusterRow
//! ```
//!
//! - **Snapshots**: per pod, the latest snapshot at or before the baseline time and the latest
//!   at or before now (within 15 minutes); one format per snapshot (debug=2 first: it has wait
//!   states). A workload-wide event sums its pods.
//! - **Clustering** groups grown stacks by blocking site — the innermost frame outside the
//!   runtime, `sync`, `internal/`, `time` and `context` packages, the way LeakProf groups by the
//!   location of the channel operation — and pattern. One mechanism is merged: an unclosed HTTP
//!   response body pins the transport's `readLoop` and `writeLoop` (one cluster, keyed by the
//!   transport), and when the same process also serves that stream, the server side's
//!   `(*conn).serve` goroutines and their `backgroundRead` join it.
//! - **Patterns** ([`LeakPattern`], spelled as in events) come from the wait state (debug=2)
//!   and frames: `chan_send`, `chan_receive`,
//!   `select`, `select_forever` (`select (no cases)`), `http_body`, `context` (a frame in package
//!   `context`, or a blocking function whose name says it waits on a context — a heuristic,
//!   since a receive from `ctx.Done()` looks like any other receive), `mutex`, `rwmutex`,
//!   `waitgroup`, `cond`, `sleep_timer`, `io_wait`, `other`.
//! - **Stable goroutines are not reported**: only stacks that grew count, and stacks that
//!   goleak ignores by default (signal handling, the runtime's own workers) never do.
//! - **Confirmed**: the runtime's `goroutineleak` profile reported a stack of the cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;
use datafusion::prelude::SessionContext;
use leakhound_schemas::events::ClusterSummary;
use leakhound_schemas::kinds::LeakPattern;
use leakhound_schemas::model::Frame;

use crate::engine::columns::{i64s, rfc, str_values, strs, ts_micros};
use crate::error::{Error, Result};

/// Stacks that goleak ignores by default, and other long-lived runtime workers.
const IGNORED_TOP: &[&str] = &[
    "os/signal.signal_recv",
    "os/signal.loop",
    "runtime.ensureSigM",
    "runtime.ReadTrace",
    "testing.RunTests",
    "testing.(*T).Run",
    "testing.tRunner",
    "runtime.bgsweep",
    "runtime.bgscavenge",
    "runtime.forcegchelper",
    "runtime.runfinq",
    "runtime.gcBgMarkWorker",
    "runtime.runCleanups",
    "runtime.unique_runtime_registerUniqueMapCleanup.func2",
];

#[derive(Debug, Clone)]
pub struct StackInfo {
    pub frames: Vec<Frame>,
    pub created_by: Option<String>,
}

/// One root-cause cluster of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub id: String,
    pub pattern: LeakPattern,
    pub confirmed: bool,
    pub representative_stack_id: i64,
    pub stack_ids: Vec<i64>,
    pub top_function: String,
    pub top_file: String,
    pub top_line: u32,
    pub blocking_site: String,
    pub goroutines_now: i64,
    pub goroutines_baseline: i64,
    pub oldest_wait_s: Option<f64>,
}

impl Cluster {
    pub fn summary(&self) -> ClusterSummary {
        ClusterSummary {
            id: self.id.clone(),
            pattern: self.pattern.to_string(),
            top_frame: format!("{} {}:{}", self.top_function, self.top_file, self.top_line),
            goroutines_now: self.goroutines_now,
            goroutines_baseline: self.goroutines_baseline,
            confirmed: self.confirmed,
            stack_ids: self.stack_ids.clone(),
        }
    }
}

fn quiet_package(function: &str) -> bool {
    ["runtime.", "internal/", "sync.", "time.", "context."]
        .iter()
        .any(|p| function.starts_with(p))
}

/// The blocking site: the innermost frame outside the runtime and the synchronisation
/// packages, i.e. the code that waits.
pub fn blocking_site(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| !quiet_package(&f.function))
        .or(frames.first())
}

/// The leak pattern of a stack from its wait state and frames.
pub fn pattern(state: &str, stack: &StackInfo) -> LeakPattern {
    let has = |p: &str| stack.frames.iter().any(|f| f.function.contains(p));
    let s = state.to_ascii_lowercase();
    if has("net/http.(*persistConn).readLoop") || has("net/http.(*persistConn).writeLoop") {
        return LeakPattern::HttpBody;
    }
    if s.contains("select (no cases)") {
        return LeakPattern::SelectForever;
    }
    let site = blocking_site(&stack.frames)
        .map(|f| f.function.clone())
        .unwrap_or_default();
    let ctx_like = has("context.") || {
        // After the package: `pkg.(*T).leakContext` → "leakContext".
        let name = site.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        name.contains("ctx") || name.contains("context")
    };
    if s.contains("chan send") {
        return LeakPattern::ChanSend;
    }
    if s.contains("chan receive") || s.contains("chan recv") {
        return if ctx_like {
            LeakPattern::Context
        } else {
            LeakPattern::ChanReceive
        };
    }
    if s.contains("select") {
        return if ctx_like {
            LeakPattern::Context
        } else {
            LeakPattern::Select
        };
    }
    if s.contains("rwmutex") || has("sync.(*RWMutex)") {
        return LeakPattern::Rwmutex;
    }
    if s.contains("mutex") || has("sync.(*Mutex).Lock") {
        return LeakPattern::Mutex;
    }
    if s.contains("waitgroup") || has("sync.(*WaitGroup).Wait") {
        return LeakPattern::Waitgroup;
    }
    if s.contains("cond") || has("sync.(*Cond).Wait") {
        return LeakPattern::Cond;
    }
    if s.contains("sleep") || has("time.Sleep") || has("time.(*Ticker)") || has("time.(*Timer)") {
        return LeakPattern::SleepTimer;
    }
    if s.contains("io wait") || has("internal/poll.(*FD)") {
        return LeakPattern::IoWait;
    }
    if ctx_like {
        return LeakPattern::Context;
    }
    LeakPattern::Other
}

fn is_server_conn(stack: &StackInfo) -> bool {
    stack.frames.iter().any(|f| {
        f.function == "net/http.(*conn).serve"
            || f.function == "net/http.(*connReader).backgroundRead"
    }) || stack
        .created_by
        .as_deref()
        .is_some_and(|c| c.starts_with("net/http.(*connReader).startBackgroundRead"))
}

fn is_transport_conn(stack: &StackInfo) -> bool {
    stack.frames.iter().any(|f| {
        f.function.starts_with("net/http.(*persistConn).readLoop")
            || f.function.starts_with("net/http.(*persistConn).writeLoop")
    })
}

/// Per stack: goroutines at baseline and now, the wait state, the oldest wait, leak-profile hit.
#[derive(Debug, Clone, Default)]
pub struct StackGrowth {
    pub baseline: i64,
    pub now: i64,
    pub state: String,
    pub wait_minutes_max: Option<u32>,
    pub confirmed: bool,
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Growth per stack for pods of `namespace` (`pods` empty = every pod of `workload`).
pub async fn growth(
    ctx: &SessionContext,
    namespace: &str,
    workload: Option<&str>,
    pod: Option<&str>,
    baseline_s: i64,
    now_s: i64,
) -> Result<BTreeMap<i64, StackGrowth>> {
    let scope = match (pod, workload) {
        (Some(p), _) => format!("pod = {}", lit(p)),
        (None, Some(w)) => format!("workload = {}", lit(w)),
        (None, None) => "true".into(),
    };
    // Snapshots from a while before the baseline (the latest at or before it counts).
    let from = baseline_s - 6 * 3_600;
    let sql = format!(
        "SELECT pod, ts, format, profile, stack_id, MAX(state) AS state, SUM(goroutines) AS n, \
                MAX(wait_minutes_max) AS wait_max, bool_or(leaked) AS leaked \
         FROM goroutine_samples \
         WHERE namespace = {ns} AND {scope} AND ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' \
         GROUP BY pod, ts, format, profile, stack_id",
        ns = lit(namespace),
        f = rfc(from),
        t = rfc(now_s),
        fd = &rfc(from)[..10],
        td = &rfc(now_s)[..10],
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    // pod → ts → format → stack → (state, n, wait)
    type Snap = BTreeMap<i64, (String, i64, Option<u32>)>;
    let mut snaps: BTreeMap<String, BTreeMap<i64, BTreeMap<String, Snap>>> = BTreeMap::new();
    let mut confirmed: BTreeSet<i64> = BTreeSet::new();
    let mut states: HashMap<i64, String> = HashMap::new();
    for b in &batches {
        let pods = strs(b, "pod")?;
        let ts = ts_micros(b, "ts")?;
        let formats = strs(b, "format")?;
        let profiles = strs(b, "profile")?;
        let ids = i64s(b, "stack_id")?;
        let st = strs(b, "state")?;
        let n = i64s(b, "n")?;
        let wait = b
            .column_by_name("wait_max")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>().cloned());
        let leaked = b
            .column_by_name("leaked")
            .and_then(|c| c.as_boolean_opt().cloned());
        for i in 0..b.num_rows() {
            let (Some(id), Some(t)) = (ids[i], ts[i]) else {
                continue;
            };
            let is_leaked = leaked.as_ref().is_some_and(|l| !l.is_null(i) && l.value(i));
            if profiles[i].as_deref() == Some("goroutineleak") || is_leaked {
                confirmed.insert(id);
            }
            if profiles[i].as_deref() != Some("goroutine") {
                continue;
            }
            let state = st[i].clone().unwrap_or_default();
            if !state.is_empty() {
                states.insert(id, state.clone());
            }
            let w = wait
                .as_ref()
                .and_then(|w| (!w.is_null(i)).then(|| w.value(i)));
            snaps
                .entry(pods[i].clone().unwrap_or_default())
                .or_default()
                .entry(t / 1_000_000)
                .or_default()
                .entry(formats[i].clone().unwrap_or_default())
                .or_default()
                .insert(id, (state, n[i].unwrap_or(0), w));
        }
    }
    let pick = |by_ts: &BTreeMap<i64, BTreeMap<String, Snap>>, at: i64, max_age: i64| {
        let (ts, formats) = by_ts.range(..=at).next_back()?;
        if at - ts > max_age {
            return None;
        }
        ["debug2", "proto", "debug1"]
            .iter()
            .find_map(|f| formats.get(*f))
            .or_else(|| formats.values().next())
            .cloned()
    };
    let mut out: BTreeMap<i64, StackGrowth> = BTreeMap::new();
    for by_ts in snaps.values() {
        let Some(now) = pick(by_ts, now_s, 900) else {
            continue;
        };
        // No snapshot before the baseline time: the pod's first snapshot is its baseline.
        let base = pick(by_ts, baseline_s, i64::MAX)
            .or_else(|| {
                by_ts
                    .values()
                    .next()
                    .and_then(|f| f.values().next().cloned())
            })
            .unwrap_or_default();
        for (id, (state, n, w)) in &now {
            let g = out.entry(*id).or_default();
            g.now += n;
            if g.state.is_empty() {
                g.state = state.clone();
            }
            g.wait_minutes_max = g.wait_minutes_max.max(*w);
        }
        for (id, (_, n, _)) in &base {
            out.entry(*id).or_default().baseline += n;
        }
    }
    for (id, g) in out.iter_mut() {
        if g.state.is_empty()
            && let Some(s) = states.get(id)
        {
            g.state = s.clone();
        }
        g.confirmed = confirmed.contains(id);
    }
    Ok(out)
}

/// Frames and `created by` of the given stacks, from the `stacks` dictionary.
pub async fn stack_info(ctx: &SessionContext, ids: &[i64]) -> Result<HashMap<i64, StackInfo>> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let list = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT stack_id, frames, created_by_function FROM stacks WHERE stack_id IN ({list})"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    for b in &batches {
        let ids = i64s(b, "stack_id")?;
        let created = strs(b, "created_by_function")?;
        let frames = b
            .column_by_name("frames")
            .ok_or_else(|| Error::MissingColumn("frames".into()))?
            .as_list::<i32>();
        for i in 0..b.num_rows() {
            let Some(id) = ids[i] else { continue };
            if out.contains_key(&id) || frames.is_null(i) {
                continue;
            }
            let v = frames.value(i);
            let s = v.as_struct();
            let func = str_values(s.column(0), "frames.function")?;
            let file = str_values(s.column(1), "frames.file")?;
            let line = s.column(2).as_primitive_opt::<UInt32Type>().cloned();
            let frames = (0..s.len())
                .map(|j| Frame {
                    function: func[j].clone().unwrap_or_default(),
                    file: file[j].clone().unwrap_or_default(),
                    line: line.as_ref().map(|l| l.value(j)).unwrap_or(0),
                })
                .collect();
            out.insert(
                id,
                StackInfo {
                    frames,
                    created_by: created[i].clone(),
                },
            );
        }
    }
    Ok(out)
}

/// Group grown stacks into clusters, largest growth first.
pub fn cluster(
    growth: &BTreeMap<i64, StackGrowth>,
    info: &HashMap<i64, StackInfo>,
    min_growth: i64,
) -> Vec<Cluster> {
    struct Acc {
        pattern: LeakPattern,
        site: Frame,
        stacks: Vec<(i64, i64)>,
        now: i64,
        base: i64,
        confirmed: bool,
        wait: Option<u32>,
    }
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut server_conn: Vec<(i64, &StackGrowth)> = Vec::new();
    for (id, g) in growth {
        let grew = g.now - g.baseline;
        if grew < min_growth {
            continue;
        }
        let Some(stack) = info.get(id) else { continue };
        let top = stack
            .frames
            .first()
            .map(|f| f.function.as_str())
            .unwrap_or("");
        if IGNORED_TOP.iter().any(|i| top.starts_with(i)) {
            continue;
        }
        if is_server_conn(stack) && !is_transport_conn(stack) {
            server_conn.push((*id, g));
            continue;
        }
        let pat = pattern(&g.state, stack);
        let site = if is_transport_conn(stack) {
            Frame {
                function: "net/http.(*persistConn)".into(),
                file: "net/http/transport.go".into(),
                line: 0,
            }
        } else {
            blocking_site(&stack.frames).cloned().unwrap_or(Frame {
                function: "?".into(),
                file: "?".into(),
                line: 0,
            })
        };
        let key = format!("{pat}|{}|{}|{}", site.function, site.file, site.line);
        let a = groups.entry(key).or_insert_with(|| Acc {
            pattern: pat,
            site,
            stacks: Vec::new(),
            now: 0,
            base: 0,
            confirmed: false,
            wait: None,
        });
        a.stacks.push((*id, grew));
        a.now += g.now;
        a.base += g.baseline;
        a.confirmed |= g.confirmed;
        a.wait = a.wait.max(g.wait_minutes_max);
    }
    // The server side of an unclosed body served by this same process joins the body's cluster;
    // otherwise it is a cluster of its own (a handler that never returns).
    let body_key = groups
        .iter()
        .find(|(_, a)| a.pattern == LeakPattern::HttpBody)
        .map(|(k, _)| k.clone());
    for (id, g) in server_conn {
        let grew = g.now - g.baseline;
        let key = match &body_key {
            Some(k) => k.clone(),
            None => {
                let stack = &info[&id];
                let site = blocking_site(&stack.frames).cloned().unwrap_or(Frame {
                    function: "net/http.(*conn).serve".into(),
                    file: "net/http/server.go".into(),
                    line: 0,
                });
                let pat = pattern(&g.state, stack);
                format!("{pat}|{}|{}|{}", site.function, site.file, site.line)
            }
        };
        let a = groups.entry(key).or_insert_with(|| {
            let stack = &info[&id];
            Acc {
                pattern: pattern(&g.state, stack),
                site: blocking_site(&stack.frames).cloned().unwrap_or(Frame {
                    function: "?".into(),
                    file: "?".into(),
                    line: 0,
                }),
                stacks: Vec::new(),
                now: 0,
                base: 0,
                confirmed: false,
                wait: None,
            }
        });
        a.stacks.push((id, grew));
        a.now += g.now;
        a.base += g.baseline;
        a.confirmed |= g.confirmed;
        a.wait = a.wait.max(g.wait_minutes_max);
    }
    let mut out: Vec<Cluster> = groups
        .into_iter()
        .map(|(key, mut a)| {
            a.stacks.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            let rep = a.stacks[0].0;
            let top = info
                .get(&rep)
                .and_then(|s| blocking_site(&s.frames).cloned())
                .unwrap_or(a.site.clone());
            Cluster {
                id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes())),
                pattern: a.pattern,
                confirmed: a.confirmed,
                representative_stack_id: rep,
                stack_ids: a.stacks.iter().map(|s| s.0).collect(),
                top_function: top.function.clone(),
                top_file: top.file.clone(),
                top_line: top.line,
                blocking_site: format!("{} {}:{}", a.site.function, a.site.file, a.site.line),
                goroutines_now: a.now,
                goroutines_baseline: a.base,
                oldest_wait_s: a.wait.map(|m| f64::from(m) * 60.0),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (b.goroutines_now - b.goroutines_baseline)
            .cmp(&(a.goroutines_now - a.goroutines_baseline))
            .then(a.id.cmp(&b.id))
    });
    out
}

/// Growth attribution for one scope: grown stacks clustered.
pub async fn attribute(
    ctx: &SessionContext,
    namespace: &str,
    workload: Option<&str>,
    pod: Option<&str>,
    baseline_s: i64,
    now_s: i64,
) -> Result<Vec<Cluster>> {
    let g = growth(ctx, namespace, workload, pod, baseline_s, now_s).await?;
    let total: i64 = g.values().map(|x| (x.now - x.baseline).max(0)).sum();
    // Grown by at least 3, or 2 % of the total growth: noise of busy stacks stays out.
    let min = 3.max(total / 50);
    let ids: Vec<i64> = g
        .iter()
        .filter(|(_, x)| x.now - x.baseline >= min)
        .map(|(id, _)| *id)
        .collect();
    let info = stack_info(ctx, &ids).await?;
    Ok(cluster(&g, &info, min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(funcs: &[&str]) -> StackInfo {
        StackInfo {
            frames: funcs
                .iter()
                .enumerate()
                .map(|(i, f)| Frame {
                    function: f.to_string(),
                    file: "x.go".into(),
                    line: i as u32 + 1,
                })
                .collect(),
            created_by: None,
        }
    }

    #[test]
    fn patterns_from_state_and_frames() {
        assert_eq!(pattern("chan send", &st(&["main.worker"])), "chan_send");
        assert_eq!(
            pattern("chan receive", &st(&["main.consume"])),
            "chan_receive"
        );
        assert_eq!(
            pattern("chan receive", &st(&["main.waitForCtx"])),
            "context"
        );
        assert_eq!(
            pattern("select", &st(&["net/http.(*persistConn).readLoop"])),
            "http_body"
        );
        assert_eq!(
            pattern("select (no cases)", &st(&["main.f"])),
            "select_forever"
        );
        assert_eq!(
            pattern("sync.Mutex.Lock", &st(&["sync.(*Mutex).Lock", "main.f"])),
            "mutex"
        );
        assert_eq!(
            pattern(
                "sync.RWMutex.RLock",
                &st(&["sync.(*RWMutex).RLock", "main.f"])
            ),
            "rwmutex"
        );
        assert_eq!(
            pattern(
                "sync.WaitGroup.Wait",
                &st(&["sync.(*WaitGroup).Wait", "main.f"])
            ),
            "waitgroup"
        );
        assert_eq!(
            pattern("sleep", &st(&["time.Sleep", "main.f"])),
            "sleep_timer"
        );
        assert_eq!(
            pattern("IO wait", &st(&["internal/poll.(*FD).Read"])),
            "io_wait"
        );
        // debug=1 has no state: frames decide where they can.
        assert_eq!(
            pattern("", &st(&["sync.(*WaitGroup).Wait", "main.f"])),
            "waitgroup"
        );
        assert_eq!(pattern("", &st(&["main.f"])), "other");
        // The blocking site skips sync internals.
        let s = st(&[
            "internal/sync.(*Mutex).lockSlow",
            "sync.(*Mutex).Lock",
            "main.f",
        ]);
        assert_eq!(blocking_site(&s.frames).unwrap().function, "main.f");
    }

    #[test]
    fn one_mechanism_one_cluster_and_stable_stacks_stay_out() {
        let mut info = HashMap::new();
        info.insert(1, st(&["net/http.(*persistConn).readLoop"]));
        info.insert(2, st(&["net/http.(*persistConn).writeLoop"]));
        info.insert(3, st(&["main.waitForStreamEnd", "net/http.(*conn).serve"]));
        info.insert(4, st(&["main.leakChanSend"]));
        info.insert(5, st(&["main.worker"]));
        info.insert(6, st(&["os/signal.signal_recv", "os/signal.loop"]));
        let g = |b, n, s: &str| StackGrowth {
            baseline: b,
            now: n,
            state: s.into(),
            ..Default::default()
        };
        let mut growth = BTreeMap::new();
        growth.insert(1, g(0, 10, "IO wait"));
        growth.insert(2, g(0, 10, "select"));
        growth.insert(3, g(0, 10, "chan receive"));
        growth.insert(4, g(1, 21, "chan send"));
        growth.insert(5, g(8, 8, "chan receive")); // a stable pool
        growth.insert(6, g(0, 5, "syscall")); // ignored like goleak does
        let c = cluster(&growth, &info, 3);
        assert_eq!(c.len(), 2, "{c:#?}");
        assert_eq!(c[0].pattern, "http_body");
        assert_eq!(c[0].goroutines_now, 30);
        assert_eq!(c[0].stack_ids.len(), 3);
        assert_eq!(c[1].pattern, "chan_send");
        assert_eq!((c[1].goroutines_now, c[1].goroutines_baseline), (21, 1));
        assert_eq!(c[1].top_function, "main.leakChanSend");
    }
}

/// A cluster as a row of `leak_clusters`, with the event it belongs to.
#[derive(Debug, Clone)]
pub struct ClusterRecord {
    pub event_id: String,
    pub detected_at_s: i64,
    pub namespace: String,
    pub workload: Option<String>,
    pub pod: Option<String>,
    pub cluster: Cluster,
}

pub fn clusters_to_batch(
    rows: &[ClusterRecord],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, StringArray,
        TimestampMicrosecondArray, UInt32Array,
    };
    use std::sync::Arc;
    let s = |f: &dyn Fn(&ClusterRecord) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let mut ids = ListBuilder::new(arrow::array::Int64Builder::new());
    for r in rows {
        for id in &r.cluster.stack_ids {
            ids.values().append_value(*id);
        }
        ids.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        s(&|r| Some(r.event_id.clone())),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.detected_at_s * 1_000_000),
            )
            .with_timezone("UTC"),
        ),
        s(&|r| Some(r.namespace.clone())),
        s(&|r| r.workload.clone()),
        s(&|r| r.pod.clone()),
        s(&|r| Some(r.cluster.id.clone())).clone(),
        s(&|r| Some(r.cluster.pattern.to_string())),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.cluster.confirmed)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.cluster.representative_stack_id),
        )),
        Arc::new(ids.finish()),
        s(&|r| Some(r.cluster.top_function.clone())),
        s(&|r| Some(r.cluster.top_file.clone())),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.cluster.top_line),
        )),
        s(&|r| Some(r.cluster.blocking_site.clone())),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.cluster.goroutines_now),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.cluster.goroutines_baseline),
        )),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.cluster.oldest_wait_s),
        )),
    ];
    // Columns in the schema's order.
    let schema = leakhound_schemas::Table::LeakClusters.schema();
    let order = [
        "event_id",
        "detected_at",
        "namespace",
        "workload",
        "pod",
        "cluster_id",
        "pattern",
        "confirmed",
        "representative_stack_id",
        "stack_ids",
        "top_function",
        "top_file",
        "top_line",
        "blocking_site",
        "goroutines_now",
        "goroutines_baseline",
        "oldest_wait_s",
    ];
    let by_name: HashMap<&str, ArrayRef> = order.iter().copied().zip(columns).collect();
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            by_name.get(f.name().as_str()).cloned().ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no column {}", f.name()))
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, cols)
}
