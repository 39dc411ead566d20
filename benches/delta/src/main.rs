//! Delta Lake (deltalake-core 1.1.3) against leakhound's own store, in one process.
//!
//! ```sh
//! cd benches/delta && CARGO_TARGET_DIR=/var/tmp/leakhound-delta-target cargo run --release
//! ```
//!
//! Not part of the main workspace (deltalake is not a dependency of leakhound): see
//! `docs/store-commit.md` for the figures and the decision. Two parts
//! (`LEAKHOUND_DELTA_PARTS=queries,commits`, default both):
//!
//! **queries**: the query bench's store (`qbench_gen.rs`, the generator of
//! `analyze/benches/queries_vs_duckdb.rs`; `LEAKHOUND_QBENCH_PODS` (100) x
//! `LEAKHOUND_QBENCH_DAYS` (7), a capture every `LEAKHOUND_QBENCH_SAMPLE_MIN` (30) minutes,
//! cached in `$LEAKHOUND_QBENCH_DIR`, default `/var/tmp/leakhound-qbench`, shared with that
//! bench) is copied into one Delta table per leakhound table (`goroutine_counts`,
//! `goroutine_samples`, `stacks`; same hive partition columns), one Delta append per table
//! per commit record of the store (the generator commits a day of the fleet at once, so the
//! files are the same: one per partition per commit), Snappy like ours. Then each named query
//! (same SQL, same parameters as the query bench) runs on leakhound's session
//! (`leakhound_analyze::session::session`) and on a session of the same configuration with the
//! Delta tables registered under the same names (`DeltaTable::table_provider`, delta-rs'
//! `DeltaScan`): **cold** (a new session per run, the table opening — our commit log, Delta's
//! log replay — inside the timed run) and **warm** (one session for every run). Best of
//! `LEAKHOUND_DELTA_RUNS` (3) per round, `LEAKHOUND_QBENCH_ROUNDS` (1) rounds, the engines one
//! after the other in each; ratio Delta time / ours; row counts must match.
//!
//! **commits**: `LEAKHOUND_DELTA_COMMITS` (1000) ingest-sized batches (one pod's debug=2
//! snapshot: a count row, its sample rows, its stacks the first time, an ingest-log row), each
//! committed by leakhound's `Writer` (one commit record naming 3-4 files) and as Delta appends
//! (one per table the batch touches, each with a `txn` app id + version, the exactly-once
//! mechanism a Delta ingest would use; Delta's default checkpoint interval, 100). Time per
//! batch at 10, 100 and 1000 commits, the cost for a reader to open the table(s) there, and
//! a commit by a fresh process (the CronJob's case: open, then commit). Local directory
//! (`LEAKHOUND_DELTA_COMMIT_DIR`, default `/var/tmp/leakhound-delta-commits`).

mod qbench_gen;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Transaction;
use deltalake_core::kernel::transaction::CommitProperties;
use deltalake_core::protocol::SaveMode;
use leakhound_analyze::queries;
use leakhound_ingest::Store;
use leakhound_ingest::residence::IdTracker;
use leakhound_ingest::rows::{
    LogRow, StackRow, Target, counts_batch, log_batch, samples_batch, stacks_batch,
};
use leakhound_ingest::store::Partition;
use leakhound_ingest::writer::{Batch, Writer};
use leakhound_schemas::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

// The allocator the `leakhound` binary uses (src/main.rs): measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const QUERIES: &[&str] = &[
    "goroutines_by_state",
    "goroutines_over_time",
    "stack_growth",
    "oldest_blocked",
    "leak_profile_stacks",
];

/// The tables the named queries read.
const QUERY_TABLES: &[Table] = &[
    Table::GoroutineCounts,
    Table::GoroutineSamples,
    Table::Stacks,
];

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Res<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let parts = std::env::var("LEAKHOUND_DELTA_PARTS").unwrap_or("queries,commits".into());
    let want = |p: &str| parts.split(',').any(|x| x.trim() == p);
    if want("queries") {
        bench_queries(&rt)?;
    }
    if want("commits") {
        rt.block_on(bench_commits())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// The configuration `leakhound_analyze::session::session` gives its session (2 target
/// partitions, no join repartitioning, information schema): the Delta session gets the same.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(2);
    config.options_mut().optimizer.repartition_joins = false;
    config
}

fn table_url(dir: &Path) -> Res<url::Url> {
    url::Url::from_directory_path(dir)
        .map_err(|_| format!("not absolute: {}", dir.display()).into())
}

/// A session with the Delta copies of the query tables registered under their leakhound
/// names: each table's log read (checkpoint + JSON commits), its provider built from the
/// snapshot.
async fn delta_session(root: &Loc) -> Res<SessionContext> {
    let ctx = SessionContext::new_with_config(session_config());
    for t in QUERY_TABLES {
        let table = deltalake_core::open_table(root.table(t.name())?).await?;
        table.update_datafusion_session(&ctx.state())?;
        let provider = table
            .table_provider()
            .with_session(Arc::new(ctx.state()))
            .await?;
        ctx.register_table(t.name(), provider)?;
    }
    Ok(ctx)
}

/// Where the commit bench writes: a local directory or `s3://bucket/prefix`.
#[derive(Clone)]
enum Loc {
    Local(PathBuf),
    S3(String),
}

impl Loc {
    fn sub(&self, name: &str) -> Loc {
        match self {
            Loc::Local(p) => Loc::Local(p.join(name)),
            Loc::S3(u) => Loc::S3(format!("{}/{name}", u.trim_end_matches('/'))),
        }
    }

    /// A Delta table's URL (a local one is created first: delta-rs wants the folder).
    fn table(&self, name: &str) -> Res<url::Url> {
        match self.sub(name) {
            Loc::Local(p) => {
                std::fs::create_dir_all(&p)?;
                table_url(&p)
            }
            Loc::S3(u) => Ok(url::Url::parse(&format!("{u}/"))?),
        }
    }

    /// leakhound's store URL.
    fn store(&self) -> Res<String> {
        match self {
            Loc::Local(p) => {
                std::fs::create_dir_all(p)?;
                Ok(p.to_str().ok_or("utf-8")?.to_string())
            }
            Loc::S3(u) => Ok(u.clone()),
        }
    }

    fn local(&self) -> Option<&Path> {
        match self {
            Loc::Local(p) => Some(p),
            Loc::S3(_) => None,
        }
    }
}

/// deltalake-core alone knows `file://` and `memory://` only (`deltalake-aws` adds S3, with
/// the AWS SDK). Register S3 with the default log store: a commit is `PutMode::Create` of
/// `_delta_log/<version>.json`, which object_store sends as `If-None-Match: *` (S3 conditional
/// writes; no DynamoDB lock), configured like leakhound's own store (`AWS_*` variables).
fn register_s3() {
    use deltalake_core::logstore::{
        LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
        default_logstore, logstore_factories, object_store_factories,
    };
    struct S3Stores;
    impl ObjectStoreFactory for S3Stores {
        fn parse_url_opts(
            &self,
            url: &url::Url,
            _config: &StorageConfig,
        ) -> deltalake_core::DeltaResult<(ObjectStoreRef, deltalake_core::Path)> {
            let bucket = url.host_str().unwrap_or_default();
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .with_bucket_name(bucket)
                .build()?;
            Ok((Arc::new(s3), deltalake_core::Path::from(url.path())))
        }
    }
    struct S3Logs;
    impl LogStoreFactory for S3Logs {
        fn with_options(
            &self,
            prefixed_store: ObjectStoreRef,
            root_store: ObjectStoreRef,
            location: &url::Url,
            options: &StorageConfig,
        ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(
                prefixed_store,
                root_store,
                location,
                options,
            ))
        }
    }
    let scheme = url::Url::parse("s3://").expect("url");
    object_store_factories().insert(scheme.clone(), Arc::new(S3Stores));
    logstore_factories().insert(scheme, Arc::new(S3Logs));
}

// ---------------------------------------------------------------------------------------------
// Delta copies of a store

/// `batch` with the partition columns (`date`, and `hour` where the table has it) appended as
/// strings: Delta takes partition values from the data, leakhound from the path.
fn with_partition(table: Table, batch: &RecordBatch, p: &Partition) -> Res<RecordBatch> {
    let n = batch.num_rows();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    for c in table.partitioning().columns() {
        let v = match *c {
            "date" => p.date.clone(),
            "hour" => p.hour.clone().ok_or("partition without hour")?,
            other => return Err(format!("unknown partition column {other}").into()),
        };
        fields.push(Field::new(*c, DataType::Utf8, false));
        cols.push(Arc::new(StringArray::from(vec![v; n])));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

fn partition_columns(table: Table) -> Vec<String> {
    table
        .partitioning()
        .columns()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// Parquet as leakhound writes it (Snappy; the rest parquet's defaults, as `encode_parquet`).
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build()
}

/// One Delta append of `batches` to `table` (created by the first append).
async fn delta_append(
    table: DeltaTable,
    t: Table,
    batches: Vec<RecordBatch>,
    txn: Option<Transaction>,
) -> Res<DeltaTable> {
    let mut props = CommitProperties::default();
    if let Some(txn) = txn {
        props = props.with_application_transaction(txn);
    }
    Ok(table
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .with_partition_columns(partition_columns(t))
        .with_writer_properties(writer_properties())
        .with_commit_properties(props)
        .await?)
}

/// Copy the query tables of the store at `store_dir` into Delta tables under `delta_dir`:
/// for every commit record, one append per table with that record's files of the table.
async fn copy_to_delta(store: &Store, store_dir: &Path, delta_dir: &Path) -> Res<()> {
    let (checkpoint, recs) = leakhound_ingest::commit::load(&store.raw(), store.root()).await?;
    if checkpoint.is_some() {
        return Err("the bench store has a checkpoint (compacted?): rebuild it".into());
    }
    let mut tables: BTreeMap<&str, (Table, DeltaTable)> = BTreeMap::new();
    for t in QUERY_TABLES {
        let dir = delta_dir.join(t.name());
        std::fs::create_dir_all(&dir)?;
        tables.insert(
            t.name(),
            (*t, DeltaTable::try_from_url(table_url(&dir)?).await?),
        );
    }
    for (i, rec) in recs.iter().enumerate() {
        let mut by_table: BTreeMap<&str, Vec<RecordBatch>> = BTreeMap::new();
        for f in &rec.files {
            let Some((name, rest)) = f.split_once('/') else {
                continue;
            };
            let Some((t, _)) = tables.get(name) else {
                continue;
            };
            let p = Partition::from_rel_path(rest).ok_or_else(|| format!("partition of {f}"))?;
            let file = std::fs::File::open(store_dir.join(f))?;
            for b in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
                by_table
                    .entry(tables[name].0.name())
                    .or_default()
                    .push(with_partition(*t, &b?, &p)?);
            }
        }
        for (name, batches) in by_table {
            let (t, table) = tables.remove(name).ok_or("table")?;
            let table = delta_append(table, t, batches, None).await?;
            tables.insert(t.name(), (t, table));
        }
        eprintln!("  delta: record {}/{} copied", i + 1, recs.len());
    }
    Ok(())
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(ft) if ft.is_dir() => n += dir_size(&e.path()),
                Ok(_) => n += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    n
}

fn count_files(p: &Path, ext: &str) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                n += count_files(&path, ext);
            } else if path.to_string_lossy().ends_with(ext) {
                n += 1;
            }
        }
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Queries

fn bench_queries(rt: &tokio::runtime::Runtime) -> Res<()> {
    let pods = env_num("LEAKHOUND_QBENCH_PODS", 100);
    let days = env_num("LEAKHOUND_QBENCH_DAYS", 7);
    let sample_min = env_num("LEAKHOUND_QBENCH_SAMPLE_MIN", 30).clamp(1, 1440);
    let runs = env_num("LEAKHOUND_DELTA_RUNS", 3).max(1);
    let rounds = env_num("LEAKHOUND_QBENCH_ROUNDS", 1).max(1);
    let root = PathBuf::from(
        std::env::var("LEAKHOUND_QBENCH_DIR").unwrap_or("/var/tmp/leakhound-qbench".into()),
    );
    let dir = root.join(format!("p{pods}-d{days}-s{sample_min}"));
    let delta_dir = root.join(format!("p{pods}-d{days}-s{sample_min}-delta"));
    if !dir.join("_complete").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        eprintln!("building the store in {} ...", dir.display());
        let t = Instant::now();
        rt.block_on(qbench_gen::build(&dir, pods, days, sample_min));
        std::fs::write(dir.join("_complete"), "")?;
        eprintln!("built in {:.0}s", t.elapsed().as_secs_f64());
    }
    let store = Store::open(dir.to_str().ok_or("utf-8")?)?;
    if !delta_dir.join("_complete").exists() {
        let _ = std::fs::remove_dir_all(&delta_dir);
        std::fs::create_dir_all(&delta_dir)?;
        eprintln!("copying into Delta tables in {} ...", delta_dir.display());
        let t = Instant::now();
        rt.block_on(copy_to_delta(&store, &dir, &delta_dir))?;
        std::fs::write(delta_dir.join("_complete"), "")?;
        eprintln!("copied in {:.0}s", t.elapsed().as_secs_f64());
    }
    let (ours_bytes, delta_bytes): (u64, u64) = QUERY_TABLES
        .iter()
        .map(|t| {
            (
                dir_size(&dir.join(t.name())),
                dir_size(&delta_dir.join(t.name())),
            )
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    let (ours_files, delta_files): (usize, usize) = QUERY_TABLES
        .iter()
        .map(|t| {
            (
                count_files(&dir.join(t.name()), ".parquet"),
                count_files(&delta_dir.join(t.name()), ".parquet"),
            )
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));

    let from = "2026-10-01T00:00:00Z";
    let to = chrono::DateTime::from_timestamp(qbench_gen::START_S + days * 86_400, 0)
        .ok_or("time")?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let only = std::env::var("LEAKHOUND_QBENCH_ONLY").unwrap_or_default();
    let mut all = Vec::new();
    for name in QUERIES
        .iter()
        .filter(|n| only.is_empty() || only.split(',').any(|o| o.trim() == **n))
    {
        let q = queries::find(name, None)?;
        all.push((
            name.to_string(),
            q.render(&qbench_gen::params(name, from, &to), now)?,
        ));
    }
    let modes: &[&str] = match std::env::var("LEAKHOUND_QBENCH_MODE").as_deref() {
        Ok("cold") => &["cold"],
        Ok("warm") => &["warm"],
        _ => &["cold", "warm"],
    };
    let new_session = |engine: &str| -> Res<SessionContext> {
        rt.block_on(async {
            if engine == "ours" {
                Ok(leakhound_analyze::session::session(&store).await?)
            } else {
                delta_session(&Loc::Local(delta_dir.clone())).await
            }
        })
    };
    // (mode, engine, query) -> best seconds per round, rows
    let mut best: BTreeMap<(String, String, String), (Vec<f64>, usize)> = BTreeMap::new();
    for round in 0..rounds {
        for &mode in modes {
            for engine in ["ours", "delta"] {
                eprintln!("round {}/{rounds}, {mode}, {engine}", round + 1);
                let shared = if mode == "warm" {
                    Some(new_session(engine)?)
                } else {
                    None
                };
                for (name, sql) in &all {
                    let mut b = f64::MAX;
                    let mut rows = 0;
                    for _ in 0..runs {
                        let t = Instant::now();
                        let ctx = match &shared {
                            Some(c) => c.clone(),
                            None => new_session(engine)?,
                        };
                        rows = rt.block_on(async {
                            let batches = ctx.sql(sql).await?.collect().await?;
                            Res::Ok(batches.iter().map(|b| b.num_rows()).sum::<usize>())
                        })?;
                        b = b.min(t.elapsed().as_secs_f64());
                    }
                    let e = best
                        .entry((mode.into(), engine.into(), name.clone()))
                        .or_default();
                    e.0.push(b);
                    e.1 = rows;
                }
            }
        }
    }
    println!(
        "delta_vs_ours queries: {pods} pods x {days} days, samples every {sample_min} min; \
         best of {runs} x {rounds} round(s), 2 threads; query tables: ours {ours_files} files \
         {:.1} MiB, delta {delta_files} files {:.1} MiB",
        ours_bytes as f64 / 1048576.0,
        delta_bytes as f64 / 1048576.0
    );
    for &mode in modes {
        println!(
            "{:<22} {:>16} {:>10} {:>10} {:>11} {:>14}",
            format!("query ({mode})"),
            "rows ours/delta",
            "ours",
            "delta",
            "delta/ours",
            "rounds' ratios"
        );
        for (name, _) in &all {
            let k = |e: &str| (mode.to_string(), e.to_string(), name.clone());
            let (o, orows) = &best[&k("ours")];
            let (d, drows) = &best[&k("delta")];
            let ob = o.iter().copied().fold(f64::MAX, f64::min);
            let db = d.iter().copied().fold(f64::MAX, f64::min);
            let ratios: Vec<f64> = o.iter().zip(d).map(|(o, d)| d / o).collect();
            let spread = if ratios.len() > 1 {
                format!(
                    "{:.2}-{:.2}x",
                    ratios.iter().copied().fold(f64::MAX, f64::min),
                    ratios.iter().copied().fold(f64::MIN, f64::max)
                )
            } else {
                "-".into()
            };
            let rows = if orows == drows {
                format!("{orows}")
            } else {
                format!("{orows}≠{drows} MISMATCH")
            };
            println!(
                "{:<22} {:>16} {:>8.0}ms {:>8.0}ms {:>10.2}x {:>14}",
                name,
                rows,
                ob * 1e3,
                db * 1e3,
                db / ob,
                spread
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commits

/// One ingest-sized batch: pod `i % 50`'s debug=2 snapshot at minute `i`, with its
/// ingest-log row. Returns leakhound's batch and the same rows as Arrow batches per table
/// (with partition columns) for Delta; `delta_stacks` holds the (date, stack) pairs Delta
/// already has, as the writer's `known_stacks` does for ours.
fn ingest_batch(
    i: i64,
    snap: &leakhound_schemas::model::Snapshot,
    tracker: &mut IdTracker,
    delta_stacks: &mut HashSet<(String, i64)>,
) -> Res<(Batch, Vec<(Table, RecordBatch)>)> {
    let p = i % 50;
    let target = Target {
        cluster: Some("bench".into()),
        namespace: format!("ns-{}", p % 20),
        workload_kind: Some("Deployment".into()),
        workload: Some(format!("svc-{}", p % 5)),
        pod: format!("svc-{}-{p:04}", p % 5),
        container: Some("app".into()),
        node: Some(format!("node-{}", p % 3)),
        instance: Some(format!("10.0.0.{p}:6060")),
    };
    let ts_us = (qbench_gen::START_S + i * 60) * 1_000_000;
    let hash = format!("bench-commit-{i}");
    let mut b = Batch::default();
    let rows = b.add_snapshot(tracker, &target, ts_us, "scrape", &hash, snap);
    b.add_log(LogRow {
        ingested_at_us: ts_us,
        source: "bench".into(),
        content_hash: hash.clone(),
        format: Some("debug2".into()),
        namespace: Some(target.namespace.clone()),
        pod: Some(target.pod.clone()),
        snapshot_ts_us: Some(ts_us),
        goroutines: snap.total() as i64,
        rows: rows as i64,
        status: "ok",
        error: None,
        ingest_key: Some(hash),
    });
    let mut out = Vec::new();
    let part = |t: Table| Partition::for_ts(t, ts_us);
    out.push((
        Table::GoroutineCounts,
        with_partition(
            Table::GoroutineCounts,
            &counts_batch(&b.counts)?,
            &part(Table::GoroutineCounts),
        )?,
    ));
    out.push((
        Table::GoroutineSamples,
        with_partition(
            Table::GoroutineSamples,
            &samples_batch(&b.samples)?,
            &part(Table::GoroutineSamples),
        )?,
    ));
    let date = part(Table::Stacks).date;
    let mut new_stacks: Vec<StackRow> = b
        .stacks
        .values()
        .filter(|s| !delta_stacks.contains(&(date.clone(), s.stack_id.as_i64())))
        .cloned()
        .collect();
    new_stacks.sort_by_key(|s| s.stack_id.as_i64());
    if !new_stacks.is_empty() {
        delta_stacks.extend(
            new_stacks
                .iter()
                .map(|s| (date.clone(), s.stack_id.as_i64())),
        );
        out.push((
            Table::Stacks,
            with_partition(
                Table::Stacks,
                &stacks_batch(&new_stacks)?,
                &part(Table::Stacks),
            )?,
        ));
    }
    out.push((
        Table::IngestLog,
        with_partition(
            Table::IngestLog,
            &log_batch(&b.log)?,
            &part(Table::IngestLog),
        )?,
    ));
    Ok((b, out))
}

const COMMIT_TABLES: &[Table] = &[
    Table::GoroutineCounts,
    Table::GoroutineSamples,
    Table::Stacks,
    Table::IngestLog,
];

async fn open_delta_tables(root: &Loc) -> Res<BTreeMap<&'static str, DeltaTable>> {
    let mut out = BTreeMap::new();
    for t in COMMIT_TABLES {
        out.insert(
            t.name(),
            DeltaTable::try_from_url(root.table(t.name())?).await?,
        );
    }
    Ok(out)
}

/// Append one batch's tables to Delta, one commit per table, each carrying the batch number
/// as its `txn` version (what makes a retried batch detectable per table).
async fn delta_commit(
    tables: &mut BTreeMap<&'static str, DeltaTable>,
    i: i64,
    rows: Vec<(Table, RecordBatch)>,
) -> Res<()> {
    for (t, b) in rows {
        let table = tables.remove(t.name()).ok_or("table")?;
        let txn = Transaction::new("leakhound-ingest", i);
        let table = delta_append(table, t, vec![b], Some(txn)).await?;
        tables.insert(t.name(), table);
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// Best of `n` timings of `body` (an expression that may `.await` and `?`), in seconds.
macro_rules! best_of {
    ($n:expr, $body:expr) => {{
        let mut b = f64::MAX;
        for _ in 0..$n {
            let t = Instant::now();
            $body;
            b = b.min(t.elapsed().as_secs_f64());
        }
        b
    }};
}

async fn bench_commits() -> Res<()> {
    let n = env_num("LEAKHOUND_DELTA_COMMITS", 1000).max(10);
    let base = match std::env::var("LEAKHOUND_DELTA_COMMIT_URL") {
        Ok(u) if u.starts_with("s3://") => {
            register_s3();
            Loc::S3(u)
        }
        Ok(u) => Loc::Local(PathBuf::from(u)),
        Err(_) => Loc::Local(PathBuf::from("/var/tmp/leakhound-delta-commits")),
    };
    if let Some(p) = base.local() {
        let _ = std::fs::remove_dir_all(p);
    }
    let ours_dir = base.sub("ours");
    let delta_dir = base.sub("delta");
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../tests/data/examples/payments/checkout-6b5f4d8c7-q9w2e/2026-11-28T04:36:45Z.debug2.txt",
    );
    let bytes = std::fs::read(&capture)?;
    let snap = leakhound_ingest::parse::parse_snapshot(&bytes[..], "example")?;
    let store = Store::open(&ours_dir.store()?)?;
    let mut writer = Writer::new(store.clone()).named("ingest");
    let mut tables = open_delta_tables(&delta_dir).await?;
    let mut tracker = IdTracker::default();
    let mut delta_stacks = HashSet::new();
    let (mut ours_t, mut delta_t) = (Vec::new(), Vec::new());
    let mut files = 0;
    let marks: Vec<i64> = [10, 100, 1000, 10_000]
        .into_iter()
        .filter(|m| *m <= n)
        .collect();
    let mut report = Vec::new();
    let mut i = 0;
    while i < n {
        let (b, rows) = ingest_batch(i, &snap, &mut tracker, &mut delta_stacks)?;
        let t = Instant::now();
        let st = writer.commit(b).await?;
        ours_t.push(t.elapsed().as_secs_f64());
        files += st.files;
        let t = Instant::now();
        delta_commit(&mut tables, i, rows).await?;
        delta_t.push(t.elapsed().as_secs_f64());
        i += 1;
        if marks.contains(&i) {
            // A reader opening the table(s) now: our commit log (the session leakhound sql and
            // analyze build), Delta's log of each table (latest checkpoint + JSON after it).
            let ours_open = best_of!(5, leakhound_analyze::session::session(&store).await?);
            let ours_vis = best_of!(
                5,
                leakhound_ingest::visibility::Visibility::load(&store.raw(), store.root()).await?
            );
            let delta_open = best_of!(5, {
                for t in COMMIT_TABLES {
                    deltalake_core::open_table(delta_dir.table(t.name())?).await?;
                }
            });
            let delta_open_q = best_of!(5, delta_session(&delta_dir).await?);
            // A fresh process's commit (the CronJob: a new writer, a fresh open of each table).
            let (b, rows) = ingest_batch(i, &snap, &mut tracker, &mut delta_stacks)?;
            let t = Instant::now();
            let mut w = Writer::new(store.clone()).named("ingest");
            w.commit(b).await?;
            let ours_fresh = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut fresh = BTreeMap::new();
            for tb in COMMIT_TABLES {
                fresh.insert(
                    tb.name(),
                    deltalake_core::open_table(delta_dir.table(tb.name())?).await?,
                );
            }
            delta_commit(&mut fresh, i, rows).await?;
            let delta_fresh = t.elapsed().as_secs_f64();
            // The kept handles are one version behind now: catch them up (untimed).
            for tb in tables.values_mut() {
                tb.update_state().await?;
            }
            i += 1;
            let lo = (i as usize).saturating_sub(11);
            let window = |v: &Vec<f64>| v[lo.min(v.len())..].to_vec();
            report.push((
                i - 1,
                median(&window(&ours_t)),
                max(&window(&ours_t)),
                median(&window(&delta_t)),
                max(&window(&delta_t)),
                ours_vis,
                ours_open,
                delta_open,
                delta_open_q,
                ours_fresh,
                delta_fresh,
            ));
            eprintln!("  commits: {} done", i);
        }
    }
    let delta_versions: Vec<String> = tables
        .iter()
        .map(|(k, t)| format!("{k} v{}", t.version().unwrap_or_default()))
        .collect();
    println!(
        "delta_vs_ours commits: {i} batches of one pod's debug=2 snapshot ({} sample rows); ours \
         {files} files in {} commit records; Delta {}; {}",
        ingest_batch(0, &snap, &mut IdTracker::default(), &mut HashSet::new())?
            .0
            .samples
            .len(),
        ours_t.len() + marks.len(),
        delta_versions.join(", "),
        match &base {
            Loc::Local(p) => format!("local directory {}", p.display()),
            Loc::S3(u) => format!(
                "{u} (AWS_ENDPOINT_URL={})",
                std::env::var("AWS_ENDPOINT_URL").unwrap_or_default()
            ),
        }
    );
    println!(
        "{:>8} {:>22} {:>22} {:>9} {:>11} {:>11} {:>13} {:>13} {:>13} {:>13}",
        "commits",
        "ours/batch med (max)",
        "delta/batch med (max)",
        "d/o",
        "ours log",
        "ours sess.",
        "delta 4 logs",
        "delta 3 q-sess",
        "ours fresh",
        "delta fresh"
    );
    for (at, om, ox, dm, dx, ov, os, dopen, dq, of, df) in report {
        println!(
            "{:>8} {:>22} {:>22} {:>8.1}x {:>9.1}ms {:>9.1}ms {:>11.1}ms {:>11.1}ms {:>11.1}ms {:>11.1}ms",
            at,
            format!("{:.1} ms ({:.1})", om * 1e3, ox * 1e3),
            format!("{:.1} ms ({:.1})", dm * 1e3, dx * 1e3),
            dm / om,
            ov * 1e3,
            os * 1e3,
            dopen * 1e3,
            dq * 1e3,
            of * 1e3,
            df * 1e3
        );
    }
    // Delta's checkpoint commits: the slowest batches.
    let mut slow: Vec<(usize, f64)> = delta_t.iter().copied().enumerate().collect();
    slow.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "slowest Delta batches (index: ms): {}",
        slow.iter()
            .take(6)
            .map(|(i, t)| format!("{i}: {:.0}", t * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let (Some(ours_dir), Some(delta_dir)) = (ours_dir.local(), delta_dir.local()) {
        println!(
            "log on disk: ours _commits {} files {:.0} KiB; delta _delta_log {} files {:.0} KiB",
            count_files(&ours_dir.join("_commits"), ".json"),
            dir_size(&ours_dir.join("_commits")) as f64 / 1024.0,
            COMMIT_TABLES
                .iter()
                .map(|t| count_files(&delta_dir.join(t.name()).join("_delta_log"), ""))
                .sum::<usize>(),
            COMMIT_TABLES
                .iter()
                .map(|t| dir_size(&delta_dir.join(t.name()).join("_delta_log")))
                .sum::<u64>() as f64
                / 1024.0
        );
    }
    Ok(())
}
