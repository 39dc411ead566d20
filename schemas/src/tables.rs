//! The one definition of every table in the store: name, Arrow schema, partitioning.
//!
//! Every Parquet file carries [`SCHEMA_VERSION`] under the metadata key
//! [`SCHEMA_VERSION_KEY`] and its table name under [`TABLE_KEY`]. Partition columns (`date`,
//! `hour`) live in the path only (`date=2026-11-28/hour=13/`), the hive way; DataFusion adds
//! them back as columns on read.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Bumped on any incompatible change of a table below.
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
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::GoroutineCounts,
        Table::Stacks,
        Table::GoroutineSamples,
        Table::IngestLog,
        Table::ScrapeStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::GoroutineCounts => "goroutine_counts",
            Table::Stacks => "stacks",
            Table::GoroutineSamples => "goroutine_samples",
            Table::IngestLog => "ingest_log",
            Table::ScrapeStatus => "scrape_status",
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
