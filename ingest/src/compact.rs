//! `leakhound compact`: merge the small files of each partition into one, and drop partitions
//! past the retention period.
//!
//! The commit protocol is in `visibility`: write the merged file (invisible), commit with a
//! manifest, delete what it replaced only after a grace period so that a reader that listed the
//! old files can still read them. Each step is a single atomic put or delete, so a crash at any
//! point leaves a store whose readers see every row exactly once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use leakhound_schemas::Table;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::store::{Store, encode_parquet, list_parquet, read_parquet, relative};
use crate::visibility::{COMPACT_PREFIX, MANIFEST_DIR, Manifest, Visibility};

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
    pub partitions_dropped: usize,
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

/// Parse a duration like `30d`, `12h`, `90m`, `600s`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30d, 12h, 90m or 600s"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" | "" => Some(n),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?} is not a duration like 30d, 12h, 90m or 600s"))?;
    Ok(Duration::from_secs(secs))
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

    // 2. Garbage: replaced files of manifests past the grace period, then the manifests;
    //    uncommitted compaction outputs past the grace period.
    let vis = Visibility::load(&raw, store.root()).await?;
    let mut live_outputs = HashSet::new();
    for (mpath, m) in &vis.manifests {
        let committed = chrono::DateTime::parse_from_rfc3339(&m.committed_at)
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or(opts.now);
        if opts.now - committed >= grace {
            for r in &m.replaces {
                if delete_if_exists(store, &Path::from(r.as_str())).await? {
                    summary.replaced_files_deleted += 1;
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
    for table in Table::ALL {
        let tp = store.table_path(table);
        let objs: Vec<ObjectMeta> = raw.list(Some(&tp)).try_collect().await.map_err(oerr(&tp))?;
        for o in objs {
            let is_compact = o
                .location
                .filename()
                .is_some_and(|f| f.starts_with(COMPACT_PREFIX));
            if is_compact
                && !live_outputs.contains(o.location.as_ref())
                && opts.now - o.last_modified >= grace
            {
                delete_if_exists(store, &o.location).await?;
                summary.orphans_deleted += 1;
            }
        }
    }

    // 3. Merge: every partition with enough visible files.
    let reader = store.reader().await?;
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
                batches.extend(read_parquet(&reader, f, None).await?);
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
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for f in &files {
                h.update(f.location.as_ref().as_bytes());
            }
            let id = format!("{:016x}", h.digest());
            let out = dir
                .split('/')
                .fold(tp.clone(), |p, seg| p.join(seg))
                .join(format!("{COMPACT_PREFIX}{id}.parquet"));
            let bytes = encode_parquet(table, &merged).map_err(|e| Error::Parquet {
                path: out.to_string(),
                source: e,
            })?;
            raw.put(&out, PutPayload::from(bytes))
                .await
                .map_err(oerr(&out))?;
            let manifest = Manifest {
                table: table.name().to_string(),
                output: out.to_string(),
                replaces: files.iter().map(|f| f.location.to_string()).collect(),
                committed_at: opts.now.to_rfc3339(),
            };
            let mpath = store
                .root()
                .clone()
                .join(MANIFEST_DIR)
                .join(format!("{id}.json"));
            let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
            raw.put(&mpath, PutPayload::from(body))
                .await
                .map_err(oerr(&mpath))?;
            summary.partitions_compacted += 1;
            summary.files_merged += files.len();
            summary.rows_written += merged.num_rows();
        }
    }
    Ok(summary)
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
    fn durations() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5_400));
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("d").is_err());
    }
}
