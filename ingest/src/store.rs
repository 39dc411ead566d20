//! The store: a URL naming a local directory or an S3 prefix, holding one folder per table of
//! hive-partitioned Parquet files.
//!
//! ```text
//!  <root>/goroutine_counts/date=2026-11-28/tx-<txid>.parquet
//!  <root>/goroutine_samples/date=2026-11-28/hour=13/tx-<txid>.parquet
//!  <root>/stacks/date=2026-11-28/tx-<txid>.parquet
//!  <root>/ingest_log/date=2026-11-28/tx-<txid>.parquet
//!  <root>/_commits/<seq>.json                      the commit log (see `commit`)
//!  <root>/_compactions/<id>.json                   compaction manifests of older stores
//! ```
//!
//! Local and S3 go through the same `object_store` code path. Every file is written with one
//! atomic put (the local implementation stages as `<name>#N` and renames; S3 PUT is atomic),
//! and carries the schema version in its Parquet key-value metadata. Which files readers see
//! is decided by the commit log (`visibility`): a batch's files appear together or not at all.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use leakhound_schemas::Table;
use leakhound_schemas::tables::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use url::Url;

use crate::error::{Error, Result};
use crate::visibility::{Visibility, VisibleStore};

/// The default store: a directory in the working directory.
pub const DEFAULT_STORE: &str = "./leakhound-data";

/// A partition of a table: its hive path segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub date: String,
    pub hour: Option<String>,
}

impl Partition {
    /// The partition of `table` a row with timestamp `ts_us` (µs since the epoch, UTC) goes to.
    pub fn for_ts(table: Table, ts_us: i64) -> Partition {
        let dt = chrono::DateTime::from_timestamp_micros(ts_us).unwrap_or_default();
        Partition {
            date: dt.format("%Y-%m-%d").to_string(),
            hour: match table.partitioning() {
                leakhound_schemas::tables::Partitioning::DateHour => {
                    Some(dt.format("%H").to_string())
                }
                leakhound_schemas::tables::Partitioning::Date => None,
            },
        }
    }

    pub fn rel_path(&self) -> String {
        match &self.hour {
            Some(h) => format!("date={}/hour={}", self.date, h),
            None => format!("date={}", self.date),
        }
    }

    /// Parse `date=…[/hour=…]/file` relative to a table folder.
    pub fn from_rel_path(rel: &str) -> Option<Partition> {
        let mut parts = rel.split('/');
        let date = parts.next()?.strip_prefix("date=")?.to_string();
        let next = parts.next()?;
        let hour = next.strip_prefix("hour=").map(str::to_string);
        Some(Partition { date, hour })
    }
}

/// An open store.
#[derive(Clone)]
pub struct Store {
    url: String,
    /// The object store as it is: writes and housekeeping.
    raw: Arc<dyn ObjectStore>,
    /// The URL DataFusion registers the object store under (`file:///`, `s3://bucket`).
    base_url: Url,
    /// The prefix of the store inside the object store (no leading slash).
    root: Path,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// Open a store by URL: a path (`./leakhound-data`, `/data/lh`), `file:///abs/path`, or
    /// `s3://bucket/prefix` (credentials, region and endpoint from the usual `AWS_*` variables,
    /// e.g. `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for a local S3 server).
    pub fn open(url: &str) -> Result<Store> {
        let bad = |reason: String| Error::StoreUrl {
            url: url.to_string(),
            reason,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name".into()));
            }
            // Commits claim their sequence number with a conditional put (`If-None-Match: *`,
            // see `commit`), which S3 has supported since 2024-08.
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            let base_url = Url::parse(&format!("s3://{bucket}")).map_err(|e| bad(e.to_string()))?;
            return Ok(Store {
                url: url.to_string(),
                raw: Arc::new(s3),
                base_url,
                root: Path::from(prefix.trim_matches('/')),
            });
        }
        let path = match url.strip_prefix("file://") {
            Some(p) => std::path::PathBuf::from(p),
            None if url.contains("://") => {
                return Err(bad("unsupported scheme".into()));
            }
            None => std::path::PathBuf::from(url),
        };
        std::fs::create_dir_all(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        let abs = std::fs::canonicalize(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        let abs_str = abs
            .to_str()
            .ok_or_else(|| bad("path is not valid UTF-8".into()))?;
        let root = Path::parse(abs_str.trim_start_matches('/')).map_err(|e| bad(e.to_string()))?;
        Ok(Store {
            url: url.to_string(),
            raw: Arc::new(object_store::local::LocalFileSystem::new()),
            base_url: Url::parse("file:///").map_err(|e| bad(e.to_string()))?,
            root,
        })
    }

    /// Opens a store that must exist already, for the commands that only read (`status`,
    /// `sql`, `query`, `report`): a local directory that is not there is [`Error::NoStore`],
    /// never created. An S3 prefix is checked by [`Store::ensure_exists`] (it needs a request).
    pub fn open_existing(url: &str) -> Result<Store> {
        let local = url
            .strip_prefix("file://")
            .or((!url.contains("://")).then_some(url));
        if let Some(path) = local
            && !std::path::Path::new(path).is_dir()
        {
            return Err(Error::NoStore {
                url: url.to_string(),
            });
        }
        Store::open(url)
    }

    /// [`Error::NoStore`] unless something was ever written to the store (one object listed
    /// under its prefix; a local directory that exists counts).
    pub async fn ensure_exists(&self) -> Result<()> {
        if self.local_dir().is_some_and(|d| d.is_dir()) {
            return Ok(());
        }
        let mut list = self.raw.list(Some(&self.root));
        match list.try_next().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::NoStore {
                url: self.url.clone(),
            }),
            Err(source) => Err(Error::ObjectStore {
                path: self.root.to_string(),
                source,
            }),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL to register the object store under in DataFusion.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn raw(&self) -> Arc<dyn ObjectStore> {
        self.raw.clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's directory when it is local (`None` on S3).
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        (self.base_url.scheme() == "file")
            .then(|| std::path::PathBuf::from(format!("/{}", self.root)))
    }

    /// The folder of a table inside the object store.
    pub fn table_path(&self, table: Table) -> Path {
        self.root.clone().join(table.name())
    }

    /// The URL of a table's folder, for DataFusion's `ListingTableUrl` (ends with `/`).
    pub fn table_url(&self, table: Table) -> String {
        let mut base = self.base_url.as_str().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        format!("{base}{}/", self.table_path(table))
    }

    /// A view of the store for readers: files superseded by a committed compaction and
    /// uncommitted compaction outputs are hidden (see `visibility`). Loaded once: a reader sees
    /// the store as it was when it called this.
    /// What [`Store::reader`] gives, with the commit log read on first use rather than now
    /// ([`VisibleStore::lazy`]): for sessions built where nothing can wait.
    pub fn lazy_reader(&self) -> Arc<dyn ObjectStore> {
        Arc::new(VisibleStore::lazy(self.raw.clone(), self.root.clone()))
    }

    pub async fn reader(&self) -> Result<Arc<dyn ObjectStore>> {
        let vis = Visibility::load(&self.raw, &self.root).await?;
        Ok(Arc::new(VisibleStore::new(self.raw.clone(), Arc::new(vis))))
    }

    /// Encode `batch` as Parquet (Snappy, schema version in metadata) and put it at
    /// `<table>/<partition>/<file_name>` in one atomic write.
    pub async fn write_file(
        &self,
        table: Table,
        partition: &Partition,
        file_name: &str,
        batch: &RecordBatch,
    ) -> Result<Path> {
        let path = self.partition_path(table, partition).join(file_name);
        let bytes = encode_parquet(table, batch).map_err(|e| Error::Parquet {
            path: path.to_string(),
            source: e,
        })?;
        self.raw
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| Error::ObjectStore {
                path: path.to_string(),
                source: e,
            })?;
        Ok(path)
    }

    /// Make a command's results (analyze's events and clusters, actuate's audit rows) visible
    /// together, with the commit protocol the ingest writer uses (`commit`): every part is
    /// put as a `tx-` file, invisible, then one commit record of `kind` names them all. A crash
    /// before the record leaves nothing visible (the files are swept by `compact`), so a
    /// re-run never finds half of a run's results.
    ///
    /// Each file is named after its content (`tx-r<hash>`), so results already committed are
    /// not committed again: an identical re-run, or two identical runs at once (the loser
    /// finds its files committed when it reads the winner's record), adds nothing. Results
    /// never conflict with other writers: on a taken sequence number the record takes the next.
    /// Returns the files committed by this call.
    pub async fn commit_files(
        &self,
        kind: &str,
        parts: &[(Table, Partition, RecordBatch)],
    ) -> Result<Vec<Path>> {
        let raw = self.raw();
        let mut vis = Visibility::load(&raw, &self.root).await?;
        let mut files = Vec::new();
        for (table, partition, batch) in parts {
            let bytes = encode_parquet(*table, batch).map_err(|e| Error::Parquet {
                path: self.table_url(*table),
                source: e,
            })?;
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(table.name().as_bytes());
            h.update(partition.rel_path().as_bytes());
            h.update(&bytes);
            let name = format!(
                "{}r{:032x}.parquet",
                crate::commit::TX_PREFIX,
                h.digest128()
            );
            let path = self.partition_path(*table, partition).join(name);
            if vis.committed(&path) || files.contains(&path) {
                continue;
            }
            self.raw
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| Error::ObjectStore {
                    path: path.to_string(),
                    source: e,
                })?;
            crate::fault::point("results-data-file");
            files.push(path);
        }
        loop {
            files.retain(|f| !vis.committed(f));
            if files.is_empty() {
                return Ok(files);
            }
            let rec = crate::commit::CommitRecord {
                seq: vis.head + 1,
                kind: kind.to_string(),
                writer: crate::commit::writer_name(kind),
                committed_at: chrono::Utc::now().to_rfc3339(),
                files: files
                    .iter()
                    .map(|f| crate::commit::rel(&self.root, f))
                    .collect(),
                ..Default::default()
            };
            if crate::commit::try_commit(&raw, &self.root, &rec).await? {
                crate::fault::point("results-after-commit");
                return Ok(files);
            }
            // Another writer took the number: see what it committed (maybe these very files).
            vis = Visibility::load(&raw, &self.root).await?;
        }
    }

    fn partition_path(&self, table: Table, partition: &Partition) -> Path {
        let path = self
            .table_path(table)
            .join(partition.rel_path().split('/').next().unwrap_or_default());
        match &partition.hour {
            Some(h) => path.join(format!("hour={h}")),
            None => path,
        }
    }

    /// Every Parquet file of a table as readers see it.
    pub async fn list_files(&self, table: Table) -> Result<Vec<ObjectMeta>> {
        let reader = self.reader().await?;
        list_parquet(&reader, &self.table_path(table)).await
    }

    /// Read the given columns of every visible file of `table` (optionally only the partitions
    /// whose date passes `date_filter`).
    pub async fn read_columns(
        &self,
        table: Table,
        columns: &[&str],
        date_filter: Option<&(dyn Fn(&str) -> bool + Sync)>,
    ) -> Result<Vec<RecordBatch>> {
        let reader = self.reader().await?;
        let table_path = self.table_path(table);
        let mut out = Vec::new();
        for meta in list_parquet(&reader, &table_path).await? {
            if let Some(f) = date_filter {
                let rel = relative(&table_path, &meta.location);
                match Partition::from_rel_path(&rel) {
                    Some(p) if f(&p.date) => {}
                    _ => continue,
                }
            }
            out.extend(read_parquet(&reader, &meta, Some(columns)).await?);
        }
        Ok(out)
    }
}

/// `location` relative to `base`, as a string.
pub fn relative(base: &Path, location: &Path) -> String {
    let b = base.as_ref();
    let l = location.as_ref();
    l.strip_prefix(b)
        .map(|s| s.trim_start_matches('/').to_string())
        .unwrap_or_else(|| l.to_string())
}

pub(crate) async fn list_parquet(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> Result<Vec<ObjectMeta>> {
    let mut files: Vec<ObjectMeta> =
        store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| Error::ObjectStore {
                path: prefix.to_string(),
                source: e,
            })?;
    files.retain(|m| m.location.as_ref().ends_with(".parquet"));
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(files)
}

/// Read a whole Parquet file (or some columns of it), checking its schema version. Store files
/// are written one batch at a time and stay small (compaction merges partitions of minutes to
/// hours), so the file is fetched in one get and decoded in memory.
pub(crate) async fn read_parquet(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>> {
    let perr = |e| Error::Parquet {
        path: meta.location.to_string(),
        source: e,
    };
    let oerr = |e| Error::ObjectStore {
        path: meta.location.to_string(),
        source: e,
    };
    let bytes = store
        .get(&meta.location)
        .await
        .map_err(oerr)?
        .bytes()
        .await
        .map_err(oerr)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    check_version(
        &meta.location,
        builder.metadata().file_metadata().key_value_metadata(),
    )?;
    let builder = match columns {
        Some(cols) => {
            let schema = builder.parquet_schema();
            let idx: Vec<usize> = (0..schema.num_columns())
                .filter(|&i| {
                    let c = schema.column(i);
                    let top = c.path().parts().first().cloned().unwrap_or_default();
                    cols.contains(&top.as_str())
                })
                .collect();
            let mask = ProjectionMask::leaves(schema, idx);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.build().map_err(perr)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::Arrow {
            table: "(read)",
            source,
        })
}

/// `batch` with exactly `table`'s columns: a nullable column appended to the table after the
/// file was written (see `SCHEMA_VERSION`) comes back as nulls.
pub fn conform(table: Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = table.schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema, cols).map_err(|source| Error::Arrow {
        table: table.name(),
        source,
    })
}

fn check_version(path: &Path, kv: Option<&Vec<KeyValue>>) -> Result<()> {
    let found = kv
        .and_then(|kv| kv.iter().find(|k| k.key == SCHEMA_VERSION_KEY))
        .and_then(|k| k.value.clone());
    match found {
        Some(v) if v == SCHEMA_VERSION.to_string() => Ok(()),
        Some(v) => Err(Error::SchemaVersion {
            path: path.to_string(),
            found: v,
            expected: SCHEMA_VERSION,
        }),
        None => Err(Error::SchemaVersion {
            path: path.to_string(),
            found: "none".into(),
            expected: SCHEMA_VERSION,
        }),
    }
}

pub(crate) fn encode_parquet(
    table: Table,
    batch: &RecordBatch,
) -> std::result::Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(parquet_props(table).build()))?;
    w.write(batch)?;
    w.close()?;
    Ok(buf)
}

/// Rows per row group of a file written as a stream ([`Store::stream_file`]): what one open
/// file holds in memory before it goes out.
pub const STREAM_ROW_GROUP: usize = 128 * 1024;

/// Bytes one streamed file buffers before it uploads a part: S3's smallest part (5 MiB); on a
/// local directory (parts are writes to a staging file) 1 MiB.
const STREAM_PART_BYTES_S3: usize = 5 << 20;
const STREAM_PART_BYTES_LOCAL: usize = 1 << 20;

/// A Parquet file written row group by row group as rows come ([`Store::stream_file`]).
pub type StreamWriter =
    parquet::arrow::async_writer::AsyncArrowWriter<object_store::buffered::BufWriter>;

impl Store {
    /// Open `<table>/<partition>/<file_name>` for writing as a stream: the same encoding as
    /// [`Store::write_file`], row groups of [`STREAM_ROW_GROUP`] rows, uploaded in parts (a
    /// multipart upload; the object appears whole when the writer is closed). Memory stays at a
    /// row group and a part, whatever the file's size (a stream writes one such file per date
    /// partition its rows fall in).
    pub fn stream_file(
        &self,
        table: Table,
        partition: &Partition,
        file_name: &str,
    ) -> Result<(Path, StreamWriter)> {
        let path = self.partition_path(table, partition).join(file_name);
        let buf = object_store::buffered::BufWriter::with_capacity(
            self.raw.clone(),
            path.clone(),
            if self.local_dir().is_some() {
                STREAM_PART_BYTES_LOCAL
            } else {
                STREAM_PART_BYTES_S3
            },
        );
        let props = parquet_props(table)
            .set_max_row_group_row_count(Some(STREAM_ROW_GROUP))
            .build();
        let w = StreamWriter::try_new(buf, table.schema(), Some(props)).map_err(|e| {
            Error::Parquet {
                path: path.to_string(),
                source: e,
            }
        })?;
        Ok((path, w))
    }
}

fn parquet_props(table: Table) -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        // Snappy, not zstd: files here are small (a partition of minutes, 10-100 KB), and the
        // reader builds a codec per column chunk; parquet's zstd codec allocates a compressor
        // and a decompressor context (hundreds of KB, fresh pages) for each, which was a fifth of
        // the CPU of a month-long query. Snappy codecs cost nothing to create and decode fast.
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(TABLE_KEY.to_string(), table.name().to_string()),
        ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `goroutine_counts` file written before the container-context columns reads them as
    /// nulls (and keeps its own values).
    #[test]
    fn counts_written_before_the_context_columns_read_them_as_null() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int64Type;
        let row = crate::rows::CountRow {
            ts_us: 1_764_300_000_000_000,
            goroutines: 7,
            source: "scrape".into(),
            format: "debug1".into(),
            context: crate::context::ContainerContext {
                os_threads: Some(9),
                ..Default::default()
            },
            ..Default::default()
        };
        let full = crate::rows::counts_batch(&[row]).unwrap();
        let old_width = full.num_columns() - 6;
        let old = full.project(&(0..old_width).collect::<Vec<_>>()).unwrap();
        assert!(old.column_by_name("os_threads").is_none());
        let read = conform(Table::GoroutineCounts, &old).unwrap();
        assert_eq!(read.schema(), Table::GoroutineCounts.schema());
        for c in [
            "mem_current_bytes",
            "mem_max_bytes",
            "cpu_throttled_us",
            "pids_current",
            "os_threads",
            "rss_bytes",
        ] {
            assert_eq!(read.column_by_name(c).unwrap().null_count(), 1, "{c}");
        }
        let g = read.column_by_name("goroutines").unwrap();
        assert_eq!(g.as_primitive::<Int64Type>().value(0), 7);
        // The new file has them.
        let t = full.column_by_name("os_threads").unwrap();
        assert_eq!(t.as_primitive::<Int64Type>().value(0), 9);
    }

    #[test]
    fn partition_paths() {
        let ts = 1_764_300_000_000_000; // 2025-11-28T03:20:00Z
        let p = Partition::for_ts(Table::GoroutineSamples, ts);
        assert_eq!(p.rel_path(), "date=2025-11-28/hour=03");
        assert_eq!(
            Partition::from_rel_path("date=2025-11-28/hour=03/part-x.parquet"),
            Some(p)
        );
        let p = Partition::for_ts(Table::Stacks, ts);
        assert_eq!(p.rel_path(), "date=2025-11-28");
        assert_eq!(
            Partition::from_rel_path("date=2025-11-28/part-x.parquet"),
            Some(p)
        );
    }

    #[test]
    fn store_urls() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert!(s.table_url(Table::Stacks).starts_with("file:///"));
        assert!(s.table_url(Table::Stacks).ends_with("/stacks/"));
        assert!(Store::open("gs://x").is_err());
    }
}
