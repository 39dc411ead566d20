//! Row types of each table and their conversion to Arrow batches of the schemas in
//! `leakhound_schemas::tables` (the only place the column lists are defined; the builders below
//! follow them field by field and a test checks they agree).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, StructBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use leakhound_schemas::Table;
use leakhound_schemas::model::{Frame, SampleGroup, Snapshot, Stack, StackId};
use leakhound_schemas::tables::{creator_struct_fields, frame_struct_fields};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::residence::GroupAges;

/// Who a row is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub cluster: Option<String>,
    pub namespace: String,
    pub workload_kind: Option<String>,
    pub workload: Option<String>,
    pub pod: String,
    pub container: Option<String>,
    pub node: Option<String>,
    pub instance: Option<String>,
}

impl Target {
    /// The pod's [`Scope`](leakhound_schemas::Scope): what events and actions are about.
    pub fn scope(&self) -> leakhound_schemas::Scope {
        leakhound_schemas::Scope {
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            workload_kind: self.workload_kind.clone(),
            workload: self.workload.clone(),
            pod: Some(self.pod.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountRow {
    pub target: Target,
    pub ts_us: i64,
    pub goroutines: i64,
    pub running: Option<i64>,
    pub runnable: Option<i64>,
    pub waiting: Option<i64>,
    pub syscall: Option<i64>,
    pub threads: Option<i64>,
    pub heap_bytes: Option<i64>,
    pub gc_count: Option<i64>,
    pub process_start_time_us: Option<i64>,
    pub pod_start_time_us: Option<i64>,
    pub container_restarts: Option<i64>,
    pub scrape_duration_ms: Option<f64>,
    pub source: String,
    pub format: String,
    pub content_hash: Option<String>,
    /// The capture was cut (see the `partial` column); `None` where the source cannot tell.
    pub partial: Option<bool>,
    /// What the Go agent said of the container (see [`crate::context`]); all `None` elsewhere.
    pub context: crate::context::ContainerContext,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    pub target: Target,
    pub ts_us: i64,
    pub profile: &'static str,
    pub format: &'static str,
    pub group: SampleGroup,
    pub ages: GroupAges,
    /// The stack's `created by` sites in this snapshot, on its first row only (see the
    /// `created_by` column); empty elsewhere and where the format has none.
    pub creators: Vec<(Frame, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StackRow {
    pub stack_id: StackId,
    pub first_seen_us: i64,
    pub stack: Stack,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRow {
    pub ingested_at_us: i64,
    pub source: String,
    pub content_hash: String,
    pub format: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub snapshot_ts_us: Option<i64>,
    pub goroutines: i64,
    pub rows: i64,
    pub status: &'static str,
    pub error: Option<String>,
    /// See the `ingest_key` column in `leakhound_schemas::tables`.
    pub ingest_key: Option<String>,
}

/// Counts by state derived from a snapshot that has states (debug=2); `None` otherwise.
pub fn state_counts(s: &Snapshot) -> (Option<i64>, Option<i64>, Option<i64>, Option<i64>) {
    if s.groups.iter().all(|g| g.state.is_empty()) {
        return (None, None, None, None);
    }
    let (mut running, mut runnable, mut waiting, mut syscall) = (0i64, 0i64, 0i64, 0i64);
    for g in &s.groups {
        let c = i64::try_from(g.count).unwrap_or(i64::MAX);
        match g.state.as_str() {
            "running" => running += c,
            "runnable" => runnable += c,
            "syscall" => syscall += c,
            _ => waiting += c,
        }
    }
    (Some(running), Some(runnable), Some(waiting), Some(syscall))
}

/// Canonical JSON of labels (sorted keys, as `BTreeMap` serialises).
pub fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

fn arrow_err(table: Table) -> impl Fn(arrow::error::ArrowError) -> Error {
    move |source| Error::Arrow {
        table: table.name(),
        source,
    }
}

struct TargetCols {
    ts: TimestampMicrosecondBuilder,
    cluster: StringBuilder,
    namespace: StringBuilder,
    workload_kind: StringBuilder,
    workload: StringBuilder,
    pod: StringBuilder,
    container: StringBuilder,
    node: StringBuilder,
    instance: StringBuilder,
}

impl TargetCols {
    fn new() -> Self {
        TargetCols {
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            cluster: StringBuilder::new(),
            namespace: StringBuilder::new(),
            workload_kind: StringBuilder::new(),
            workload: StringBuilder::new(),
            pod: StringBuilder::new(),
            container: StringBuilder::new(),
            node: StringBuilder::new(),
            instance: StringBuilder::new(),
        }
    }
    fn push(&mut self, t: &Target, ts_us: i64) {
        self.ts.append_value(ts_us);
        self.cluster.append_option(t.cluster.as_deref());
        self.namespace.append_value(&t.namespace);
        self.workload_kind.append_option(t.workload_kind.as_deref());
        self.workload.append_option(t.workload.as_deref());
        self.pod.append_value(&t.pod);
        self.container.append_option(t.container.as_deref());
        self.node.append_option(t.node.as_deref());
        self.instance.append_option(t.instance.as_deref());
    }
    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.cluster.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.workload_kind.finish()),
            Arc::new(self.workload.finish()),
            Arc::new(self.pod.finish()),
            Arc::new(self.container.finish()),
            Arc::new(self.node.finish()),
            Arc::new(self.instance.finish()),
        ]
    }
}

pub fn counts_batch(rows: &[CountRow]) -> Result<RecordBatch> {
    let mut t = TargetCols::new();
    let mut goroutines = Int64Builder::new();
    let mut running = Int64Builder::new();
    let mut runnable = Int64Builder::new();
    let mut waiting = Int64Builder::new();
    let mut syscall = Int64Builder::new();
    let mut threads = Int64Builder::new();
    let mut heap = Int64Builder::new();
    let mut gc = Int64Builder::new();
    let mut pstart = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut start = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut restarts = Int64Builder::new();
    let mut dur = Float64Builder::new();
    let mut source = StringBuilder::new();
    let mut format = StringBuilder::new();
    let mut hash = StringBuilder::new();
    let mut partial = BooleanBuilder::new();
    let mut ctx: [Int64Builder; 6] = std::array::from_fn(|_| Int64Builder::new());
    for r in rows {
        t.push(&r.target, r.ts_us);
        goroutines.append_value(r.goroutines);
        running.append_option(r.running);
        runnable.append_option(r.runnable);
        waiting.append_option(r.waiting);
        syscall.append_option(r.syscall);
        threads.append_option(r.threads);
        heap.append_option(r.heap_bytes);
        gc.append_option(r.gc_count);
        pstart.append_option(r.process_start_time_us);
        start.append_option(r.pod_start_time_us);
        restarts.append_option(r.container_restarts);
        dur.append_option(r.scrape_duration_ms);
        source.append_value(&r.source);
        format.append_value(&r.format);
        hash.append_option(r.content_hash.as_deref());
        partial.append_option(r.partial);
        for (b, v) in ctx.iter_mut().zip(r.context.columns()) {
            b.append_option(v);
        }
    }
    let mut cols = t.finish();
    cols.extend::<[ArrayRef; 16]>([
        Arc::new(goroutines.finish()),
        Arc::new(running.finish()),
        Arc::new(runnable.finish()),
        Arc::new(waiting.finish()),
        Arc::new(syscall.finish()),
        Arc::new(threads.finish()),
        Arc::new(heap.finish()),
        Arc::new(gc.finish()),
        Arc::new(pstart.finish()),
        Arc::new(start.finish()),
        Arc::new(restarts.finish()),
        Arc::new(dur.finish()),
        Arc::new(source.finish()),
        Arc::new(format.finish()),
        Arc::new(hash.finish()),
        Arc::new(partial.finish()),
    ]);
    cols.extend(ctx.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(Table::GoroutineCounts.schema(), cols)
        .map_err(arrow_err(Table::GoroutineCounts))
}

pub fn samples_batch(rows: &[SampleRow]) -> Result<RecordBatch> {
    let mut t = TargetCols::new();
    let mut profile = StringBuilder::new();
    let mut format = StringBuilder::new();
    let mut stack_id = Int64Builder::new();
    let mut state = StringBuilder::new();
    let mut bucket = StringBuilder::new();
    let mut wmin = UInt32Builder::new();
    let mut wmax = UInt32Builder::new();
    let mut labels = StringBuilder::new();
    let mut goroutines = Int64Builder::new();
    let mut ids = ListBuilder::new(Int64Builder::new());
    let mut min_id = Int64Builder::new();
    let mut oldest = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut over5 = Int64Builder::new();
    let mut p99 = Float64Builder::new();
    let mut leaked = BooleanBuilder::new();
    let mut created_by = ListBuilder::new(StructBuilder::from_fields(creator_struct_fields(), 0))
        .with_field(Arc::new(arrow::datatypes::Field::new(
            "item",
            arrow::datatypes::DataType::Struct(creator_struct_fields()),
            true,
        )));
    for r in rows {
        t.push(&r.target, r.ts_us);
        let g = &r.group;
        profile.append_value(r.profile);
        format.append_value(r.format);
        stack_id.append_value(g.stack_id.as_i64());
        state.append_value(&g.state);
        bucket.append_value(g.wait_bucket);
        wmin.append_option(g.wait_minutes_min);
        wmax.append_option(g.wait_minutes_max);
        labels.append_value(labels_json(&g.labels));
        goroutines.append_value(i64::try_from(g.count).unwrap_or(i64::MAX));
        if g.goroutine_ids.is_empty() {
            ids.append_null();
        } else {
            for id in &r.ages.new_ids {
                ids.values()
                    .append_value(i64::try_from(*id).unwrap_or(i64::MAX));
            }
            ids.append(true);
        }
        min_id.append_option(r.ages.min_id.map(|v| i64::try_from(v).unwrap_or(i64::MAX)));
        oldest.append_option(r.ages.oldest_first_seen_us);
        over5.append_option(r.ages.alive_over_5m);
        p99.append_option(r.ages.age_p99_s);
        leaked.append_value(g.leaked);
        if r.creators.is_empty() {
            created_by.append_null();
        } else {
            let sb = created_by.values();
            for (f, n) in &r.creators {
                append_frame(sb, &f.function, &f.file, f.line);
                if let Some(b) = sb.field_builder::<Int64Builder>(3) {
                    b.append_value(i64::try_from(*n).unwrap_or(i64::MAX));
                }
            }
            created_by.append(true);
        }
    }
    let mut cols = t.finish();
    cols.extend::<[ArrayRef; 16]>([
        Arc::new(profile.finish()),
        Arc::new(format.finish()),
        Arc::new(stack_id.finish()),
        Arc::new(state.finish()),
        Arc::new(bucket.finish()),
        Arc::new(wmin.finish()),
        Arc::new(wmax.finish()),
        Arc::new(labels.finish()),
        Arc::new(goroutines.finish()),
        Arc::new(ids.finish()),
        Arc::new(min_id.finish()),
        Arc::new(oldest.finish()),
        Arc::new(over5.finish()),
        Arc::new(p99.finish()),
        Arc::new(leaked.finish()),
        Arc::new(created_by.finish()),
    ]);
    let schema = Table::GoroutineSamples.schema();
    RecordBatch::try_new(schema, cols).map_err(arrow_err(Table::GoroutineSamples))
}

pub fn stacks_batch(rows: &[StackRow]) -> Result<RecordBatch> {
    let mut stack_id = Int64Builder::new();
    let mut first_seen = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut top_fn = StringBuilder::new();
    let mut top_file = StringBuilder::new();
    let mut top_line = UInt32Builder::new();
    let frame_builder = StructBuilder::from_fields(frame_struct_fields(), 0);
    let mut frames =
        ListBuilder::new(frame_builder).with_field(Arc::new(arrow::datatypes::Field::new(
            "item",
            arrow::datatypes::DataType::Struct(frame_struct_fields()),
            true,
        )));
    let mut cb_fn = StringBuilder::new();
    let mut cb_file = StringBuilder::new();
    let mut cb_line = UInt32Builder::new();
    let mut elided = BooleanBuilder::new();
    for r in rows {
        stack_id.append_value(r.stack_id.as_i64());
        first_seen.append_value(r.first_seen_us);
        let top = r.stack.frames.first();
        top_fn.append_value(top.map(|f| f.function.as_str()).unwrap_or(""));
        top_file.append_value(top.map(|f| f.file.as_str()).unwrap_or(""));
        top_line.append_value(top.map(|f| f.line).unwrap_or(0));
        let sb = frames.values();
        for f in &r.stack.frames {
            append_frame(sb, &f.function, &f.file, f.line);
        }
        frames.append(true);
        match &r.stack.created_by {
            Some(f) => {
                cb_fn.append_value(&f.function);
                cb_file.append_value(&f.file);
                cb_line.append_value(f.line);
            }
            None => {
                cb_fn.append_null();
                cb_file.append_null();
                cb_line.append_null();
            }
        }
        elided.append_value(r.stack.elided);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(stack_id.finish()),
        Arc::new(first_seen.finish()),
        Arc::new(top_fn.finish()),
        Arc::new(top_file.finish()),
        Arc::new(top_line.finish()),
        Arc::new(frames.finish()),
        Arc::new(cb_fn.finish()),
        Arc::new(cb_file.finish()),
        Arc::new(cb_line.finish()),
        Arc::new(elided.finish()),
    ];
    RecordBatch::try_new(Table::Stacks.schema(), cols).map_err(arrow_err(Table::Stacks))
}

fn append_frame(sb: &mut StructBuilder, function: &str, file: &str, line: u32) {
    if let Some(b) = sb.field_builder::<StringBuilder>(0) {
        b.append_value(function);
    }
    if let Some(b) = sb.field_builder::<StringBuilder>(1) {
        b.append_value(file);
    }
    if let Some(b) = sb.field_builder::<UInt32Builder>(2) {
        b.append_value(line);
    }
    sb.append(true);
}

pub fn log_batch(rows: &[LogRow]) -> Result<RecordBatch> {
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut source = StringBuilder::new();
    let mut hash = StringBuilder::new();
    let mut format = StringBuilder::new();
    let mut ns = StringBuilder::new();
    let mut pod = StringBuilder::new();
    let mut sts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut gor = Int64Builder::new();
    let mut nrows = Int64Builder::new();
    let mut status = StringBuilder::new();
    let mut error = StringBuilder::new();
    let mut key = StringBuilder::new();
    for r in rows {
        at.append_value(r.ingested_at_us);
        source.append_value(&r.source);
        hash.append_value(&r.content_hash);
        format.append_option(r.format.as_deref());
        ns.append_option(r.namespace.as_deref());
        pod.append_option(r.pod.as_deref());
        sts.append_option(r.snapshot_ts_us);
        gor.append_value(r.goroutines);
        nrows.append_value(r.rows);
        status.append_value(r.status);
        error.append_option(r.error.as_deref());
        key.append_option(r.ingest_key.as_deref());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(at.finish()),
        Arc::new(source.finish()),
        Arc::new(hash.finish()),
        Arc::new(format.finish()),
        Arc::new(ns.finish()),
        Arc::new(pod.finish()),
        Arc::new(sts.finish()),
        Arc::new(gor.finish()),
        Arc::new(nrows.finish()),
        Arc::new(status.finish()),
        Arc::new(error.finish()),
        Arc::new(key.finish()),
    ];
    RecordBatch::try_new(Table::IngestLog.schema(), cols).map_err(arrow_err(Table::IngestLog))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusRow {
    pub target: Target,
    pub ts_us: i64,
    pub up: bool,
    pub error: Option<String>,
    pub duration_ms: f64,
    pub metrics_ok: bool,
    pub debug1_ok: bool,
    pub debug2_taken: bool,
    pub leak_profile: &'static str,
    pub bytes: i64,
}

pub fn status_batch(rows: &[StatusRow]) -> Result<RecordBatch> {
    let mut t = TargetCols::new();
    let mut up = BooleanBuilder::new();
    let mut error = StringBuilder::new();
    let mut dur = Float64Builder::new();
    let mut m = BooleanBuilder::new();
    let mut d1 = BooleanBuilder::new();
    let mut d2 = BooleanBuilder::new();
    let mut lp = StringBuilder::new();
    let mut bytes = Int64Builder::new();
    for r in rows {
        t.push(&r.target, r.ts_us);
        up.append_value(r.up);
        error.append_option(r.error.as_deref());
        dur.append_value(r.duration_ms);
        m.append_value(r.metrics_ok);
        d1.append_value(r.debug1_ok);
        d2.append_value(r.debug2_taken);
        lp.append_value(r.leak_profile);
        bytes.append_value(r.bytes);
    }
    let mut cols = t.finish();
    cols.extend::<[ArrayRef; 8]>([
        Arc::new(up.finish()),
        Arc::new(error.finish()),
        Arc::new(dur.finish()),
        Arc::new(m.finish()),
        Arc::new(d1.finish()),
        Arc::new(d2.finish()),
        Arc::new(lp.finish()),
        Arc::new(bytes.finish()),
    ]);
    RecordBatch::try_new(Table::ScrapeStatus.schema(), cols).map_err(arrow_err(Table::ScrapeStatus))
}

/// Goroutine-count rows of Prometheus series in columns, what the streamed `query_range`
/// import builds instead of a [`CountRow`] per point: runs of consecutive rows of one target
/// (the target held once per run, shared), their times and counts. Source and format are
/// `prometheus`, the content hash one for all rows, every other count column null:
/// [`series_batch`] gives the rows [`counts_batch`] gives for the same [`CountRow`]s
/// ([`SeriesRows::to_rows`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesRows {
    /// (target, rows): consecutive rows of one target, in order.
    pub runs: Vec<(Arc<Target>, usize)>,
    pub ts_us: Vec<i64>,
    pub goroutines: Vec<i64>,
}

/// Microseconds in a UTC day: count rows are partitioned by date.
const DAY_US: i64 = 86_400_000_000;

impl SeriesRows {
    pub fn with_capacity(n: usize) -> Self {
        SeriesRows {
            runs: Vec::new(),
            ts_us: Vec::with_capacity(n),
            goroutines: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.ts_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts_us.is_empty()
    }

    /// Append a row of `target` (the same `Arc` as the last row's extends its run).
    pub fn push(&mut self, target: &Arc<Target>, ts_us: i64, goroutines: i64) {
        match self.runs.last_mut() {
            Some((t, n)) if Arc::ptr_eq(t, target) => *n += 1,
            _ => self.runs.push((target.clone(), 1)),
        }
        self.ts_us.push(ts_us);
        self.goroutines.push(goroutines);
    }

    /// Keep the rows `keep(target, ts_us)` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Target, i64) -> bool) {
        let mut out = SeriesRows::with_capacity(self.len());
        let mut i = 0;
        for (t, n) in &self.runs {
            for k in i..i + n {
                if keep(t, self.ts_us[k]) {
                    out.push(t, self.ts_us[k], self.goroutines[k]);
                }
            }
            i += n;
        }
        *self = out;
    }

    /// Append `other`'s rows after these.
    pub fn append(&mut self, other: SeriesRows) {
        let mut runs = other.runs.into_iter();
        if let (Some((t, n)), Some((u, m))) = (self.runs.last_mut(), runs.as_slice().first())
            && Arc::ptr_eq(t, u)
        {
            *n += m;
            runs.next();
        }
        self.runs.extend(runs);
        self.ts_us.extend(other.ts_us);
        self.goroutines.extend(other.goroutines);
    }

    /// The rows split by UTC day (the date partition of `goroutine_counts`), days in order.
    pub fn split_days(self) -> Vec<(i64, SeriesRows)> {
        let first = self.ts_us.first().map(|t| t.div_euclid(DAY_US));
        if self
            .ts_us
            .iter()
            .all(|t| Some(t.div_euclid(DAY_US)) == first)
        {
            return first.map(|d| (d, self)).into_iter().collect();
        }
        let mut days: BTreeMap<i64, SeriesRows> = BTreeMap::new();
        let mut i = 0;
        for (t, n) in &self.runs {
            for k in i..i + n {
                let ts = self.ts_us[k];
                days.entry(ts.div_euclid(DAY_US))
                    .or_default()
                    .push(t, ts, self.goroutines[k]);
            }
            i += n;
        }
        days.into_iter().collect()
    }

    /// The same rows as [`CountRow`]s, tagged with `content_hash`.
    pub fn to_rows(&self, content_hash: Option<&str>) -> Vec<CountRow> {
        let mut out = Vec::with_capacity(self.len());
        let mut i = 0;
        for (t, n) in &self.runs {
            for k in i..i + n {
                out.push(CountRow {
                    target: Target::clone(t),
                    ts_us: self.ts_us[k],
                    goroutines: self.goroutines[k],
                    source: "prometheus".into(),
                    format: "prometheus".into(),
                    content_hash: content_hash.map(str::to_string),
                    ..Default::default()
                });
            }
            i += n;
        }
        out
    }
}

/// The string column of rows `lo..hi` of `rows`: `value(target)` along each run (strings
/// copied, no allocation per row).
fn run_strings(
    rows: &SeriesRows,
    lo: usize,
    hi: usize,
    value: impl Fn(&Target) -> Option<&str>,
) -> arrow::array::StringArray {
    let mut parts: Vec<(Option<&str>, usize)> = Vec::new();
    let mut start = 0;
    for (t, k) in &rows.runs {
        let (a, b) = (start.max(lo), (start + k).min(hi));
        if a < b {
            parts.push((value(t), b - a));
        }
        start += k;
        if start >= hi {
            break;
        }
    }
    let bytes: usize = parts.iter().map(|(v, k)| v.map_or(0, str::len) * k).sum();
    let mut b = StringBuilder::with_capacity(hi - lo, bytes);
    for (v, k) in parts {
        match v {
            Some(v) => (0..k).for_each(|_| b.append_value(v)),
            None => (0..k).for_each(|_| b.append_null()),
        }
    }
    b.finish()
}

/// Builds `goroutine_counts` batches of [`SeriesRows`], at most `cap` rows each: the columns
/// with one value on every row (the nulls, `prometheus`, the content hash) are built once and
/// shared by every batch (slices), only the target's, time and count columns per batch.
pub struct SeriesBatcher {
    cap: usize,
    /// Per column of the schema: the shared array of `cap` rows, or `None` (built per batch).
    shared: Vec<Option<ArrayRef>>,
}

impl SeriesBatcher {
    pub fn new(cap: usize, content_hash: Option<&str>) -> Self {
        use arrow::array::{StringArray, new_null_array};
        let constant = |v: Option<&str>| -> ArrayRef {
            match v {
                Some(v) => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, cap))),
                None => new_null_array(&arrow::datatypes::DataType::Utf8, cap),
            }
        };
        let mut nulls: Vec<(arrow::datatypes::DataType, ArrayRef)> = Vec::new();
        let prometheus = constant(Some("prometheus"));
        let shared = Table::GoroutineCounts
            .schema()
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "ts" | "cluster" | "namespace" | "workload_kind" | "workload" | "pod"
                | "container" | "node" | "instance" | "goroutines" => None,
                "source" | "format" => Some(prometheus.clone()),
                "content_hash" => Some(constant(content_hash)),
                _ => Some(match nulls.iter().find(|(t, _)| t == f.data_type()) {
                    Some((_, a)) => a.clone(),
                    None => {
                        let a = new_null_array(f.data_type(), cap);
                        nulls.push((f.data_type().clone(), a.clone()));
                        a
                    }
                }),
            })
            .collect();
        SeriesBatcher { cap, shared }
    }

    /// The batch of rows `lo..hi` of `rows` (at most `cap` of them).
    pub fn batch(&self, rows: &SeriesRows, lo: usize, hi: usize) -> Result<RecordBatch> {
        use arrow::array::{Int64Array, TimestampMicrosecondArray};
        assert!(lo <= hi && hi <= rows.len() && hi - lo <= self.cap);
        let n = hi - lo;
        let schema = Table::GoroutineCounts.schema();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(&self.shared)
            .map(|(f, shared)| -> ArrayRef {
                if let Some(a) = shared {
                    return a.slice(0, n);
                }
                let strings = |v: fn(&Target) -> Option<&str>| -> ArrayRef {
                    Arc::new(run_strings(rows, lo, hi, v))
                };
                match f.name().as_str() {
                    "ts" => Arc::new(
                        TimestampMicrosecondArray::from(rows.ts_us[lo..hi].to_vec())
                            .with_timezone("UTC"),
                    ),
                    "cluster" => strings(|t| t.cluster.as_deref()),
                    "namespace" => strings(|t| Some(t.namespace.as_str())),
                    "workload_kind" => strings(|t| t.workload_kind.as_deref()),
                    "workload" => strings(|t| t.workload.as_deref()),
                    "pod" => strings(|t| Some(t.pod.as_str())),
                    "container" => strings(|t| t.container.as_deref()),
                    "node" => strings(|t| t.node.as_deref()),
                    "instance" => strings(|t| t.instance.as_deref()),
                    _ => Arc::new(Int64Array::from(rows.goroutines[lo..hi].to_vec())),
                }
            })
            .collect();
        RecordBatch::try_new(schema, cols).map_err(arrow_err(Table::GoroutineCounts))
    }
}

/// The `goroutine_counts` batch of `rows` (see [`SeriesRows`]), each tagged with
/// `content_hash`.
pub fn series_batch(rows: &SeriesRows, content_hash: Option<&str>) -> Result<RecordBatch> {
    SeriesBatcher::new(rows.len(), content_hash).batch(rows, 0, rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_builds_with_its_schema() {
        let target = Target {
            namespace: "ns".into(),
            pod: "p".into(),
            ..Default::default()
        };
        counts_batch(&[CountRow {
            target: target.clone(),
            source: "backfill".into(),
            format: "debug2".into(),
            ..Default::default()
        }])
        .unwrap();
        let stack = Stack {
            frames: vec![Frame {
                function: "main.f".into(),
                file: "/m.go".into(),
                line: 3,
            }],
            ..Default::default()
        };
        let group = SampleGroup {
            stack_id: stack.id(),
            stack: stack.clone(),
            state: "chan send".into(),
            wait_bucket: "<1m",
            wait_minutes_min: None,
            wait_minutes_max: None,
            labels: BTreeMap::new(),
            count: 2,
            goroutine_ids: vec![5, 6],
            leaked: false,
        };
        let b = samples_batch(&[SampleRow {
            target,
            ts_us: 0,
            profile: "goroutine",
            format: "debug2",
            group: group.clone(),
            ages: GroupAges::default(),
            creators: vec![
                (
                    Frame {
                        function: "main.serve".into(),
                        file: "/m.go".into(),
                        line: 9,
                    },
                    2,
                ),
                (
                    Frame {
                        function: "main.main".into(),
                        file: "/m.go".into(),
                        line: 20,
                    },
                    1,
                ),
            ],
        }])
        .unwrap();
        assert_eq!(b.num_rows(), 1);
        let cb = b
            .column_by_name("created_by")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap();
        assert_eq!(cb.value(0).len(), 2);
        let b = stacks_batch(&[StackRow {
            stack_id: stack.id(),
            first_seen_us: 0,
            stack,
        }])
        .unwrap();
        assert_eq!(b.num_rows(), 1);
        log_batch(&[LogRow::default()]).unwrap();
        status_batch(&[StatusRow::default()]).unwrap();
    }

    /// The columnar batch of Prometheus rows is the batch of the same rows one by one.
    #[test]
    fn series_batch_is_counts_batch_of_the_same_rows() {
        let a = Arc::new(Target {
            namespace: "shop".into(),
            pod: "api-1".into(),
            workload: Some("api".into()),
            instance: Some("10.0.0.1:8080".into()),
            ..Default::default()
        });
        let b = Arc::new(Target {
            cluster: Some("eu".into()),
            namespace: "shop".into(),
            pod: "api-2".into(),
            container: Some("app".into()),
            node: Some("n1".into()),
            ..Default::default()
        });
        let day = 86_400_000_000i64;
        let t0 = 1_795_824_000_000_000i64 + day - 120_000_000;
        let mut rows = SeriesRows::default();
        for k in 0..5 {
            rows.push(&a, t0 + k * 60_000_000, 10 + k);
        }
        for k in 0..4 {
            rows.push(&b, t0 + k * 60_000_000, 20 + k);
        }
        assert_eq!(rows.runs.len(), 2);
        for hash in [Some("h"), None] {
            let want = counts_batch(&rows.to_rows(hash)).unwrap();
            assert_eq!(series_batch(&rows, hash).unwrap(), want);
            // Any slice, from a batcher of shared columns.
            let batcher = SeriesBatcher::new(4, hash);
            for lo in 0..rows.len() {
                for hi in lo..(lo + 4).min(rows.len()) + 1 {
                    assert_eq!(
                        batcher.batch(&rows, lo, hi).unwrap(),
                        want.slice(lo, hi - lo),
                        "{lo}..{hi}"
                    );
                }
            }
        }
        let mut joined = SeriesRows::default();
        for (_, d) in rows.clone().split_days() {
            joined.append(d);
        }
        assert_eq!(joined.len(), rows.len());
        assert_eq!(joined.runs.len(), 4, "a, b on each day");
        let days = rows.clone().split_days();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].0 + 1, days[1].0);
        let back: Vec<CountRow> = days
            .iter()
            .flat_map(|(_, r)| r.to_rows(Some("h")))
            .collect();
        let mut want = rows.to_rows(Some("h"));
        want.sort_by_key(|r| r.ts_us.div_euclid(day));
        assert_eq!(back, want);
        let mut kept = rows.clone();
        kept.retain(|t, ts| t.pod == "api-2" || ts == t0);
        assert_eq!(kept.len(), 5);
        assert_eq!(kept.runs.len(), 2);
    }
}
