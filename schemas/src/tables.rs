//! The one definition of every table in the store: name, Arrow schema, partitioning.
//!
//! Every Parquet file carries [`SCHEMA_VERSION`] under the metadata key
//! [`SCHEMA_VERSION_KEY`] and its table name under [`TABLE_KEY`]. Partition columns (`date`,
//! `hour`) live in the path only (`date=2026-11-28/hour=13/`), the hive way; DataFusion adds
//! them back as columns on read.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Bumped on any incompatible change of a table below. A nullable column appended at the end
/// of a table is a compatible change: files written before it read the column as null (the
/// DataFusion session's schema adapter and `leakhound_ingest::store::conform` both do that).
pub const SCHEMA_VERSION: u32 = 1;
pub const SCHEMA_VERSION_KEY: &str = "leakhound.schema_version";
pub const TABLE_KEY: &str = "leakhound.table";

/// How a table is split into folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// `date=YYYY-MM-DD/`
    Date,
    /// `date=YYYY-MM-DD/hour=HH/` — for the high-volume samples table.
    DateHour,
}

impl Partitioning {
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Partitioning::Date => &["date"],
            Partitioning::DateHour => &["date", "hour"],
        }
    }
}

/// A table of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    GoroutineCounts,
    Stacks,
    GoroutineSamples,
    IngestLog,
    ScrapeStatus,
    LeakEvents,
    LeakClusters,
    Actions,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::GoroutineCounts,
        Table::Stacks,
        Table::GoroutineSamples,
        Table::IngestLog,
        Table::ScrapeStatus,
        Table::LeakEvents,
        Table::LeakClusters,
        Table::Actions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::GoroutineCounts => "goroutine_counts",
            Table::Stacks => "stacks",
            Table::GoroutineSamples => "goroutine_samples",
            Table::IngestLog => "ingest_log",
            Table::ScrapeStatus => "scrape_status",
            Table::LeakEvents => "leak_events",
            Table::LeakClusters => "leak_clusters",
            Table::Actions => "actions",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn partitioning(self) -> Partitioning {
        match self {
            Table::GoroutineSamples => Partitioning::DateHour,
            _ => Partitioning::Date,
        }
    }

    /// The schema of the data inside the files (without partition columns).
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::GoroutineCounts => GOROUTINE_COUNTS.clone(),
            Table::Stacks => STACKS.clone(),
            Table::GoroutineSamples => GOROUTINE_SAMPLES.clone(),
            Table::IngestLog => INGEST_LOG.clone(),
            Table::ScrapeStatus => SCRAPE_STATUS.clone(),
            Table::LeakEvents => LEAK_EVENTS.clone(),
            Table::LeakClusters => LEAK_CLUSTERS.clone(),
            Table::Actions => ACTIONS.clone(),
        }
    }
}

pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns naming a target, shared by counts and samples.
fn target_fields() -> Vec<Field> {
    vec![
        Field::new("ts", ts_type(), false),
        Field::new("cluster", DataType::Utf8, true),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("workload_kind", DataType::Utf8, true),
        Field::new("workload", DataType::Utf8, true),
        Field::new("pod", DataType::Utf8, false),
        Field::new("container", DataType::Utf8, true),
        Field::new("node", DataType::Utf8, true),
        Field::new("instance", DataType::Utf8, true),
    ]
}

/// One `created by` site with its goroutines (`goroutine_samples.created_by`).
pub fn creator_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("function", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::UInt32, false),
        Field::new("goroutines", DataType::Int64, false),
    ])
}

pub fn frame_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("function", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::UInt32, false),
    ])
}

/// One row per target per snapshot.
static GOROUTINE_COUNTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = target_fields();
    f.extend([
        Field::new("goroutines", DataType::Int64, false),
        // By wait state, where the source tells states apart (debug=2); null otherwise.
        Field::new("running", DataType::Int64, true),
        Field::new("runnable", DataType::Int64, true),
        Field::new("waiting", DataType::Int64, true),
        Field::new("syscall", DataType::Int64, true),
        Field::new("threads", DataType::Int64, true),
        Field::new("heap_bytes", DataType::Int64, true),
        Field::new("gc_count", DataType::Int64, true),
        Field::new("process_start_time", ts_type(), true),
        Field::new("pod_start_time", ts_type(), true),
        Field::new("container_restarts", DataType::Int64, true),
        Field::new("scrape_duration_ms", DataType::Float64, true),
        // scrape | backfill | prometheus
        Field::new("source", DataType::Utf8, false),
        // debug2 | debug1 | proto | metrics | prometheus
        Field::new("format", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, true),
        // True when the capture was cut (a crash log cut mid-dump): the row holds every complete
        // record before the cut, so `goroutines` is a lower bound. False for a whole capture;
        // null where the source cannot tell (`/metrics`, Prometheus) and in files written
        // before the column existed.
        Field::new("partial", DataType::Boolean, true),
        // The container context the Go agent (`agent/`) sends with a snapshot (the
        // `Leakhound-Context` header when scraped, the snapshot's fields when pushed): cgroup v2
        // `memory.current`, `memory.max` (null when unlimited), `cpu.stat` throttled_usec,
        // `pids.current`; `/proc/self/status` Threads and VmRSS. Null where unknown, for
        // targets without the agent, and in files written before the columns existed.
        Field::new("mem_current_bytes", DataType::Int64, true),
        Field::new("mem_max_bytes", DataType::Int64, true),
        Field::new("cpu_throttled_us", DataType::Int64, true),
        Field::new("pids_current", DataType::Int64, true),
        Field::new("os_threads", DataType::Int64, true),
        Field::new("rss_bytes", DataType::Int64, true),
    ]);
    Arc::new(Schema::new(f))
});

/// The stack dictionary: each unique stack once per partition at most.
static STACKS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("stack_id", DataType::Int64, false),
        Field::new("first_seen", ts_type(), false),
        // The innermost frame, the blocking site, for quick SQL.
        Field::new("top_function", DataType::Utf8, false),
        Field::new("top_file", DataType::Utf8, false),
        Field::new("top_line", DataType::UInt32, false),
        Field::new(
            "frames",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(frame_struct_fields()),
                true,
            ))),
            false,
        ),
        Field::new("created_by_function", DataType::Utf8, true),
        Field::new("created_by_file", DataType::Utf8, true),
        Field::new("created_by_line", DataType::UInt32, true),
        Field::new("elided", DataType::Boolean, false),
    ]))
});

/// Per snapshot: goroutines aggregated by stack + state + wait bucket + labels.
static GOROUTINE_SAMPLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = target_fields();
    f.extend([
        // goroutine | goroutineleak
        Field::new("profile", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("stack_id", DataType::Int64, false),
        // The wait reason as printed by the runtime; empty where the format has none.
        Field::new("state", DataType::Utf8, false),
        Field::new("wait_bucket", DataType::Utf8, false),
        Field::new("wait_minutes_min", DataType::UInt32, true),
        Field::new("wait_minutes_max", DataType::UInt32, true),
        // pprof labels as a JSON object with sorted keys ("{}" when none).
        Field::new("labels", DataType::Utf8, false),
        Field::new("goroutines", DataType::Int64, false),
        // Residence, where the format has goroutine ids (debug=2): ids first seen in this
        // snapshot (enough to rebuild first-seen times), the smallest id (the oldest, goids
        // grow), and the ages summarised at write time from first-seen tracking.
        Field::new(
            "new_goroutine_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
        Field::new("min_goroutine_id", DataType::Int64, true),
        Field::new("oldest_first_seen", ts_type(), true),
        Field::new("alive_over_5m", DataType::Int64, true),
        Field::new("age_p99_s", DataType::Float64, true),
        // The runtime itself reported these as leaked (goroutineleak profile, `(leaked)`).
        Field::new("leaked", DataType::Boolean, false),
        // Every `created by` site of the stack's goroutines in this snapshot, most goroutines
        // first (debug=2; one stack is often started from several places): on the first of the
        // stack's rows in the snapshot only, null on its other rows (another state, labels or
        // wait), so that summing `goroutines` per site never counts a goroutine twice. The
        // stacks table keeps one site per stack, the first seen.
        Field::new(
            "created_by",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(creator_struct_fields()),
                true,
            ))),
            true,
        ),
    ]);
    Arc::new(Schema::new(f))
});

/// What was imported: one row per source file (or scrape), ok or not.
static INGEST_LOG: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("ingested_at", ts_type(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, true),
        Field::new("namespace", DataType::Utf8, true),
        Field::new("pod", DataType::Utf8, true),
        Field::new("snapshot_ts", ts_type(), true),
        Field::new("goroutines", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        // ok | error
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        // What a re-run is deduplicated on: the content hash *and* the identity the content
        // landed under (target, snapshot time, profile kind), hashed; null on rows written
        // before this column (their key is derived from the columns above) and on failures
        // (keyed by content hash).
        Field::new("ingest_key", DataType::Utf8, true),
    ]))
});

/// One row per target per ingest pass, like Prometheus' `up`: whether each endpoint answered.
static SCRAPE_STATUS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = target_fields();
    f.extend([
        Field::new("up", DataType::Boolean, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("metrics_ok", DataType::Boolean, false),
        Field::new("debug1_ok", DataType::Boolean, false),
        Field::new("debug2_taken", DataType::Boolean, false),
        // supported | unsupported | unknown
        Field::new("leak_profile", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(f))
});

/// What analyze decided: one row per scope (workload, or pod) per detector per evaluation in
/// which the detector fired. `event_id` is stable for one episode (same scope, detector and
/// onset), so a leak seen at many evaluations is one event whose level may rise; consumers key
/// idempotency on it. Partitioned by the date of `detected_at`.
static LEAK_EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("detected_at", ts_type(), false),
        Field::new("cluster", DataType::Utf8, true),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("workload_kind", DataType::Utf8, true),
        Field::new("workload", DataType::Utf8, true),
        // Null for a workload-wide event.
        Field::new("pod", DataType::Utf8, true),
        // L1 | L2 | L3
        Field::new("level", DataType::Utf8, false),
        // baseline_rule | growth_rule | stl_iforest | lives | siblings | daily_trend
        Field::new("detector", DataType::Utf8, false),
        Field::new("onset", ts_type(), false),
        Field::new("window_start", ts_type(), false),
        Field::new("window_end", ts_type(), false),
        Field::new("score", DataType::Float64, false),
        Field::new("growth_per_s", DataType::Float64, false),
        Field::new("residence_p99_s", DataType::Float64, true),
        Field::new("alive_over_5m_share", DataType::Float64, true),
        Field::new("goroutines", DataType::Int64, false),
        Field::new("baseline_goroutines", DataType::Float64, true),
        Field::new("sla_penalty", DataType::Float64, false),
        // The event's clusters as the JSON array of the public `--format jsonl` interface.
        Field::new("clusters", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        // The container's memory (cgroup memory.current, else RSS) and limit (memory.max) at
        // detection, from the Go agent's context, and the seconds until the limit at the
        // episode's memory slope. Null without the agent's context, a limit or growth, and
        // in files written before the columns existed.
        Field::new("memory_bytes", DataType::Int64, true),
        Field::new("memory_limit_bytes", DataType::Int64, true),
        Field::new("time_to_limit_s", DataType::Float64, true),
    ]))
});

/// Root-cause groups of stacks, per event: one leak is one cluster.
static LEAK_CLUSTERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("cluster_id", DataType::Utf8, false),
        Field::new("detected_at", ts_type(), false),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("workload", DataType::Utf8, true),
        Field::new("pod", DataType::Utf8, true),
        // chan_send | chan_receive | select | http_body | context | mutex | rwmutex | waitgroup
        // | cond | sleep_timer | io_wait | other
        Field::new("pattern", DataType::Utf8, false),
        // The runtime's goroutineleak profile reported stacks of this cluster.
        Field::new("confirmed", DataType::Boolean, false),
        Field::new("representative_stack_id", DataType::Int64, false),
        Field::new(
            "stack_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            false,
        ),
        Field::new("top_function", DataType::Utf8, false),
        Field::new("top_file", DataType::Utf8, false),
        Field::new("top_line", DataType::UInt32, false),
        Field::new("blocking_site", DataType::Utf8, false),
        Field::new("goroutines_now", DataType::Int64, false),
        Field::new("goroutines_baseline", DataType::Int64, false),
        Field::new("oldest_wait_s", DataType::Float64, true),
    ]))
});

/// The audit log of actuation: every decision, taken, skipped, deferred or failed, dry-run or
/// not. `action_key` is the idempotency key (source id + action + target); an action whose key
/// already has a `taken`/`dry_run` row is not repeated.
static ACTIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("decided_at", ts_type(), false),
        Field::new("action_key", DataType::Utf8, false),
        // event | alert
        Field::new("trigger", DataType::Utf8, false),
        // event_id, or the alert's group key + fingerprint + startsAt + status
        Field::new("trigger_id", DataType::Utf8, false),
        Field::new("cluster", DataType::Utf8, true),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("workload_kind", DataType::Utf8, true),
        Field::new("workload", DataType::Utf8, true),
        Field::new("pod", DataType::Utf8, true),
        Field::new("level", DataType::Utf8, true),
        // record | hpa_create | hpa_patch | min_replicas | vpa | capture | evict | rollout_restart
        Field::new("action", DataType::Utf8, false),
        Field::new("dry_run", DataType::Boolean, false),
        // taken | dry_run | skipped | deferred | failed
        Field::new("outcome", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        // What was sent (JSON), for the audit.
        Field::new("request", DataType::Utf8, true),
        Field::new("http_status", DataType::Int32, true),
        // For outcome `failed`: whether a later run may try again.
        Field::new("retryable", DataType::Boolean, true),
    ]))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_schemas_have_no_partition_columns() {
        for t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
            for p in t.partitioning().columns() {
                assert!(
                    t.schema().field_with_name(p).is_err(),
                    "{p} in {}",
                    t.name()
                );
            }
        }
    }
}
