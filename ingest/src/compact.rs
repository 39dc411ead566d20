//! `leakhound compact`: merge the small files of each partition into one, and drop partitions
//! past the retention period.
//!
//! The commit protocol is in `commit` and `visibility`: write the merged files (invisible),
//! commit them with one record of the commit log that also hides what they replace, delete the
//! replaced files only after a grace period so that a reader that listed them can still read
//! them. Each step is a single atomic put or delete, so a crash at any point leaves a store
//! whose readers see every row exactly once. Two compactions (or a compaction and a writer) at
//! once: the commit record's sequence number is claimed with a conditional put; a compaction
//! that lost it drops every partition whose inputs the winner replaced, and retries the rest.
//!
//! Last, a checkpoint of the commit log (the state as of the newest record past the grace
//! period), and the records it covers go: readers replay a short log.
//!
//! Garbage, after the grace period: replaced files; data files no commit record names (a
//! writer or a compaction that crashed before its commit); object-store staging files
//! (`*.parquet#N`, `*.json#N`, what a local put leaves when killed mid-write).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use leakhound_schemas::Table;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};

use crate::commit::{self, CommitRecord, TX_PREFIX};
use crate::error::{Error, Result};
use crate::fault;
use crate::store::{Store, conform, encode_parquet, list_parquet, read_parquet, relative};
use crate::visibility::{COMPACT_PREFIX, Manifest, Visibility, VisibleStore};

/// Uncommitted data files are swept no sooner than this, whatever `--grace` says: a writer
/// rewrites data files older than 5 minutes before it commits (see `writer`).
pub const MIN_ORPHAN_AGE: Duration = Duration::from_secs(600);

/// `name#123`: a staging file of the local object store (written, then renamed into place).
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// How long replaced files stay readable after a compaction committed.
    pub grace: Duration,
    /// Compact a partition once it holds at least this many files.
    pub min_files: usize,
    /// Drop date partitions older than this.
    pub retain: Option<Duration>,
    /// "Now", passed in so that tests need no clock.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            grace: Duration::from_secs(600),
            min_files: 2,
            retain: None,
            now: chrono::Utc::now(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactSummary {
    pub partitions_compacted: usize,
    pub files_merged: usize,
    pub rows_written: usize,
    pub replaced_files_deleted: usize,
    pub orphans_deleted: usize,
    pub staging_deleted: usize,
    pub partitions_dropped: usize,
    /// Partitions left alone because a concurrent compaction replaced their files first.
    pub conflicts: usize,
    /// The checkpoint written (its sequence number), if any.
    pub checkpoint: Option<u64>,
    /// Commit records (and older checkpoints) folded into it and deleted.
    pub records_folded: usize,
}

fn oerr(path: &Path) -> impl Fn(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

async fn delete_if_exists(store: &Store, path: &Path) -> Result<bool> {
    match store.raw().delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(oerr(path)(e)),
    }
}

/// A duration: `30d`, `12h`, `1m30s`, `500ms`, `1w`, or bare seconds
/// ([`leakhound_schemas::time::parse_duration`], the one parser).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    leakhound_schemas::time::parse_duration(s).map_err(|e| e.to_string())
}

pub async fn compact(store: &Store, opts: &CompactOptions) -> Result<CompactSummary> {
    let mut summary = CompactSummary::default();
    let raw = store.raw();
    let grace = chrono::Duration::from_std(opts.grace).unwrap_or(chrono::Duration::zero());

    // 1. Retention: whole date partitions past the horizon.
    if let Some(retain) = opts.retain {
        let horizon =
            opts.now - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::days(36500));
        let cutoff = horizon.format("%Y-%m-%d").to_string();
        for table in Table::ALL {
            let tp = store.table_path(table);
            let listing = raw
                .list_with_delimiter(Some(&tp))
                .await
                .map_err(oerr(&tp))?;
            for dir in listing.common_prefixes {
                let Some(date) = dir.filename().and_then(|d| d.strip_prefix("date=")) else {
                    continue;
                };
                if date < cutoff.as_str() {
                    let objs: Vec<ObjectMeta> = raw
                        .list(Some(&dir))
                        .try_collect()
                        .await
                        .map_err(oerr(&dir))?;
                    for o in objs {
                        delete_if_exists(store, &o.location).await?;
                    }
                    summary.partitions_dropped += 1;
                }
            }
        }
    }

    // 2. Garbage: replaced files of manifests and commit records past the grace period (then
    //    old manifests whose output is gone); uncommitted data files and staging files past
    //    the grace period (uncommitted data files: at least MIN_ORPHAN_AGE).
    let vis = Visibility::load(&raw, store.root()).await?;
    let orphan_age = chrono::Duration::from_std(opts.grace.max(MIN_ORPHAN_AGE))
        .unwrap_or(chrono::Duration::zero());
    let mut live_outputs = HashSet::new();
    for (mpath, m) in &vis.manifests {
        let committed = chrono::DateTime::parse_from_rfc3339(&m.committed_at)
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or(opts.now);
        if opts.now - committed >= grace {
            for r in &m.replaces {
                if delete_if_exists(store, &Path::from(r.as_str())).await? {
                    summary.replaced_files_deleted += 1;
                    fault::point("compact-mid-gc");
                }
            }
            // The manifest stays the commit marker of its output for as long as the output
            // lives; once a later compaction replaced and removed the output, it goes too.
            match raw.head(&Path::from(m.output.as_str())).await {
                Err(object_store::Error::NotFound { .. }) => {
                    delete_if_exists(store, mpath).await?;
                    continue;
                }
                Err(e) => return Err(oerr(mpath)(e)),
                Ok(_) if !m.replaces.is_empty() => {
                    let done = Manifest {
                        replaces: Vec::new(),
                        ..m.clone()
                    };
                    let body = serde_json::to_vec_pretty(&done).unwrap_or_default();
                    raw.put(mpath, PutPayload::from(body))
                        .await
                        .map_err(oerr(mpath))?;
                }
                Ok(_) => {}
            }
        }
        live_outputs.insert(m.output.clone());
    }
    // When each hidden file was replaced (commit log).
    let mut replaced_at: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        std::collections::HashMap::new();
    for rec in &vis.commits {
        let at = chrono::DateTime::parse_from_rfc3339(&rec.committed_at)
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or(opts.now);
        for r in &rec.replaces {
            replaced_at.insert(commit::absolute(store.root(), r).as_ref().to_string(), at);
        }
    }
    // A checkpoint covers only records past the grace period.
    for h in &vis.checkpoint_hidden {
        replaced_at.entry(h.clone()).or_insert(opts.now - grace);
    }
    for table in Table::ALL {
        let tp = store.table_path(table);
        let objs: Vec<ObjectMeta> = raw.list(Some(&tp)).try_collect().await.map_err(oerr(&tp))?;
        for o in objs {
            let name = o.location.filename().unwrap_or_default();
            let age = opts.now - o.last_modified;
            if let Some(at) = replaced_at.get(o.location.as_ref()) {
                if opts.now - *at >= grace {
                    delete_if_exists(store, &o.location).await?;
                    summary.replaced_files_deleted += 1;
                    fault::point("compact-mid-gc");
                }
                continue;
            }
            if is_staging(name) {
                if age >= grace {
                    delete_if_exists(store, &o.location).await?;
                    summary.staging_deleted += 1;
                }
                continue;
            }
            let uncommitted = (name.starts_with(COMPACT_PREFIX) || name.starts_with(TX_PREFIX))
                && !live_outputs.contains(o.location.as_ref())
                && !vis.committed(&o.location);
            if uncommitted && age >= orphan_age {
                delete_if_exists(store, &o.location).await?;
                summary.orphans_deleted += 1;
            }
        }
    }
    // Staging files exist on a local store only, and its listing hides them: walk the folder.
    if let Some(dir) = store.local_dir() {
        summary.staging_deleted += sweep_staging(&dir, opts.now, grace)?;
    }

    // 3. Merge: every partition with enough visible files, as of the commit log's head when
    //    it was loaded above; one commit record for all of them.
    let head = vis.head;
    let reader: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(VisibleStore::new(raw.clone(), std::sync::Arc::new(vis)));
    // (output, inputs, rows) per partition.
    let mut outputs: Vec<(Path, Vec<Path>, usize)> = Vec::new();
    for table in Table::ALL {
        let tp = store.table_path(table);
        let files = list_parquet(&reader, &tp).await?;
        let mut by_dir: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for f in files {
            let rel = relative(&tp, &f.location);
            let dir = rel
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            by_dir.entry(dir).or_default().push(f);
        }
        for (dir, files) in by_dir {
            if files.len() < opts.min_files {
                continue;
            }
            let mut batches = Vec::new();
            for f in &files {
                for b in read_parquet(&reader, f, None).await? {
                    batches.push(conform(table, &b)?);
                }
            }
            let schema = table.schema();
            let merged = concat_batches(&schema, &batches).map_err(|source| Error::Arrow {
                table: table.name(),
                source,
            })?;
            let merged = if table == Table::Stacks {
                dedup_stacks(&merged)
            } else {
                sort_for_table(table, &merged)
            }
            .map_err(|source| Error::Arrow {
                table: table.name(),
                source,
            })?;
            let out = dir
                .split('/')
                .fold(tp.clone(), |p, seg| p.join(seg))
                .join(format!("{COMPACT_PREFIX}{}.parquet", commit::new_txid()));
            let bytes = encode_parquet(table, &merged).map_err(|e| Error::Parquet {
                path: out.to_string(),
                source: e,
            })?;
            raw.put(&out, PutPayload::from(bytes))
                .await
                .map_err(oerr(&out))?;
            fault::point("compact-after-output");
            outputs.push((
                out,
                files.iter().map(|f| f.location.clone()).collect(),
                merged.num_rows(),
            ));
        }
    }
    let root = store.root().clone();
    let mut seq = head + 1;
    while !outputs.is_empty() {
        let rec = CommitRecord {
            seq,
            kind: "compaction".into(),
            writer: commit::writer_name("compact"),
            committed_at: opts.now.to_rfc3339(),
            files: outputs
                .iter()
                .map(|(o, _, _)| commit::rel(&root, o))
                .collect(),
            replaces: outputs
                .iter()
                .flat_map(|(_, ins, _)| ins.iter().map(|i| commit::rel(&root, i)))
                .collect(),
            ..Default::default()
        };
        if commit::try_commit(&raw, &root, &rec).await? {
            fault::point("compact-after-commit");
            for (_, ins, rows) in &outputs {
                summary.partitions_compacted += 1;
                summary.files_merged += ins.len();
                summary.rows_written += rows;
            }
            break;
        }
        // Lost the sequence number: drop the partitions whose inputs the winners replaced.
        let Some(newer) = commit::read_after(&raw, &root, seq - 1).await? else {
            // The records in between were deleted under a checkpoint (another compaction's):
            // leave this run's merges; the next run starts afresh.
            for (out, _, _) in &outputs {
                delete_if_exists(store, out).await?;
                summary.conflicts += 1;
            }
            break;
        };
        let taken: HashSet<String> = newer
            .iter()
            .flat_map(|r| r.replaces.iter().cloned())
            .collect();
        seq = newer.iter().map(|r| r.seq).max().unwrap_or(seq) + 1;
        let mut keep = Vec::new();
        for (out, ins, rows) in outputs {
            if ins.iter().any(|i| taken.contains(&commit::rel(&root, i))) {
                summary.conflicts += 1;
                delete_if_exists(store, &out).await?;
            } else {
                keep.push((out, ins, rows));
            }
        }
        outputs = keep;
    }

    // 4. Checkpoint: the files visible and hidden as of the newest record past the grace
    //    period (and every record before it), so that readers replay a short log; then the
    //    records and older checkpoints it covers go.
    checkpoint(store, opts, grace, &mut summary).await?;
    Ok(summary)
}

async fn checkpoint(
    store: &Store,
    opts: &CompactOptions,
    grace: chrono::Duration,
    summary: &mut CompactSummary,
) -> Result<()> {
    let raw = store.raw();
    let root = store.root().clone();
    let (cp, recs) = commit::load(&raw, &root).await?;
    let old = |r: &CommitRecord| {
        chrono::DateTime::parse_from_rfc3339(&r.committed_at)
            .map(|d| opts.now - d.with_timezone(&chrono::Utc) >= grace)
            .unwrap_or(false)
    };
    let covered = recs.iter().take_while(|r| old(r)).count();
    if covered == 0 {
        return Ok(());
    }
    let seq = recs[covered - 1].seq;
    let mut files: HashSet<String> = HashSet::new();
    let mut hidden: HashSet<String> = HashSet::new();
    for r in cp.iter().chain(&recs[..covered]) {
        files.extend(r.files.iter().cloned());
        hidden.extend(r.replaces.iter().cloned());
    }
    // Only what still exists: compacted-away and dropped files leave the state.
    let mut listed = HashSet::new();
    for table in Table::ALL {
        let tp = store.table_path(table);
        let objs: Vec<ObjectMeta> = raw.list(Some(&tp)).try_collect().await.map_err(oerr(&tp))?;
        listed.extend(objs.iter().map(|o| commit::rel(&root, &o.location)));
    }
    let mut files: Vec<String> = files.into_iter().filter(|f| listed.contains(f)).collect();
    let mut hidden: Vec<String> = hidden.into_iter().filter(|f| listed.contains(f)).collect();
    files.sort();
    hidden.sort();
    let rec = CommitRecord {
        seq,
        kind: "checkpoint".into(),
        writer: commit::writer_name("compact"),
        committed_at: opts.now.to_rfc3339(),
        files,
        replaces: hidden,
        ..Default::default()
    };
    let path = commit::checkpoint_path(&root, seq);
    let body = serde_json::to_vec_pretty(&rec).unwrap_or_default();
    let put = raw
        .put_opts(
            &path,
            PutPayload::from(body),
            object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match put {
        // Another compaction wrote the same checkpoint: the same state.
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(oerr(&path)(e)),
    }
    fault::point("compact-after-checkpoint");
    summary.checkpoint = Some(seq);
    // Records and older checkpoints the new one covers: a reader that listed them and finds
    // one gone starts again from this checkpoint.
    let dir = commit::commit_dir(&root);
    let objs: Vec<ObjectMeta> = raw
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(oerr(&dir))?;
    for o in objs {
        let covered = commit::seq_of(&o).is_some_and(|s| s <= seq)
            || commit::checkpoint_seq_of(&o).is_some_and(|s| s < seq);
        if covered {
            delete_if_exists(store, &o.location).await?;
            summary.records_folded += 1;
        }
    }
    Ok(())
}

/// Delete `name#N` files under `dir` older than `grace`; returns how many.
fn sweep_staging(
    dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
    grace: chrono::Duration,
) -> Result<usize> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            // Not following links: the store's own folders are real ones.
            let ft = e.file_type().map_err(io(&e.path()))?;
            if ft.is_dir() {
                stack.push(e.path());
                continue;
            }
            let name = e.file_name();
            if !ft.is_file() || !is_staging(&name.to_string_lossy()) {
                continue;
            }
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .map_err(io(&e.path()))?;
            if now - chrono::DateTime::<chrono::Utc>::from(modified) >= grace {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => n += 1,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(io(&e.path())(err)),
                }
            }
        }
    }
    Ok(n)
}

/// Order rows so that each series is contiguous and time-ordered: runs of equal values (pod,
/// stack, state, labels) and slowly changing ones (first-seen times, counts) then encode and
/// compress far better than rows in arrival order.
fn sort_for_table(
    table: Table,
    b: &RecordBatch,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let keys: &[&str] = match table {
        Table::GoroutineSamples => &[
            "namespace",
            "pod",
            "profile",
            "stack_id",
            "state",
            "labels",
            "wait_bucket",
            "ts",
        ],
        Table::GoroutineCounts | Table::ScrapeStatus => &["namespace", "pod", "ts"],
        Table::IngestLog => &["ingested_at"],
        Table::Stacks => &["stack_id"],
        Table::LeakEvents => &["namespace", "workload", "pod", "detected_at"],
        Table::LeakClusters => &["event_id", "cluster_id", "detected_at"],
        Table::Actions => &["decided_at"],
    };
    let columns: Vec<arrow::compute::SortColumn> = keys
        .iter()
        .filter_map(|k| b.column_by_name(k))
        .map(|c| arrow::compute::SortColumn {
            values: c.clone(),
            options: None,
        })
        .collect();
    if columns.is_empty() || b.num_rows() == 0 {
        return Ok(b.clone());
    }
    let idx = arrow::compute::lexsort_to_indices(&columns, None)?;
    arrow::compute::take_record_batch(b, &idx)
}

/// Keep the first row of each stack id.
fn dedup_stacks(b: &RecordBatch) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let Some(ids) = b.column_by_name("stack_id") else {
        return Ok(b.clone());
    };
    let ids = ids.as_primitive::<Int64Type>();
    let mut seen = HashSet::new();
    let keep: arrow::array::BooleanArray = (0..ids.len())
        .map(|i| Some(ids.is_valid(i) && seen.insert(ids.value(i))))
        .collect();
    filter_record_batch(b, &keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging("part-x.parquet#12"));
        assert!(is_staging("00000000000000000001.json#3"));
        assert!(!is_staging("part-x.parquet"));
        assert!(!is_staging("odd#name.parquet"));
        assert!(!is_staging("x#"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(
            parse_duration("3w").unwrap(),
            Duration::from_secs(21 * 86_400)
        );
        assert!(parse_duration("d").is_err());
    }
}
