//! `leakhound backfill`: import archived dumps, profiles, tarballs and saved Prometheus
//! `query_range` answers into the store.
//!
//! ```text
//!  paths ─walk─▶ items (files; entries of .tar / .tar.gz) ─classify by content─▶
//!     goroutine dump (debug=0/1/2, panic, SIGQUIT)  ─parse─▶ Snapshot ─┐
//!     Prometheus query_range JSON                   ─parse─▶ counts ───┼─▶ Batch ─commit─▶ store
//!  every item, imported or failed ──────────────────────────▶ ingest_log ┘
//! ```
//!
//! Each item is hashed first; an item whose hash the ingest log already records as imported is
//! skipped, so re-running a backfill adds nothing. A bad item is reported with its reason and
//! skipped; the rest of the batch lands.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use leakhound_schemas::ProfileKind;

use crate::error::{Error, Result};
use crate::parse;
use crate::pathpattern::PathPattern;
use crate::residence::IdTracker;
use crate::rows::{LogRow, Target};
use crate::sources::prometheus;
use crate::store::Store;
use crate::writer::{Batch, Writer};

/// Largest archive entry or decompressed archive we accept (a gzip bomb stops here).
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 1 << 30;

/// Identity and time given on the command line; each, when set, wins over the path pattern.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub timestamp_us: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub pattern: PathPattern,
    pub overrides: Overrides,
    pub max_decompressed: u64,
    /// Items per commit.
    pub batch_items: usize,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            pattern: PathPattern::default(),
            overrides: Overrides::default(),
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            batch_items: 256,
        }
    }
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported { goroutines: u64, rows: usize },
    AlreadyImported,
    Failed(String),
}

/// Progress reports for a progress bar.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The walk found this many top-level items (archives count once).
    Total(u64),
    /// One top-level item is done.
    Item { name: String, outcome: Outcome },
}

/// The end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub items: u64,
    pub imported: u64,
    pub already_imported: u64,
    pub failed: Vec<(String, String)>,
    pub goroutines: u64,
    pub rows: u64,
    pub files_written: u64,
}

/// One thing to import: a file on disk, or an entry read out of an archive.
enum Item {
    File(PathBuf),
    Memory { name: String, bytes: Vec<u8> },
}

impl Item {
    fn name(&self) -> String {
        match self {
            Item::File(p) => p.display().to_string(),
            Item::Memory { name, .. } => name.clone(),
        }
    }
}

/// Import Prometheus history (`query_range`, paged) into the store. Pages already imported
/// (same answer, same content hash) are skipped.
pub async fn backfill_prometheus(
    store: &Store,
    base_url: &str,
    range: &prometheus::RangeQuery,
    progress: &mut dyn FnMut(i64, i64),
) -> Result<Summary> {
    let (from_s, to_s) = (range.from_s, range.to_s);
    let client = reqwest::Client::builder()
        .gzip(true)
        .user_agent(format!("leakhound/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Input {
            source_name: base_url.to_string(),
            message: e.to_string(),
        })?;
    let pages = prometheus::fetch_query_range(&client, base_url, range, progress)
        .await
        .map_err(|message| Error::Input {
            source_name: base_url.to_string(),
            message,
        })?;
    let mut writer = Writer::new(store.clone());
    let (done, _) = writer.imported_hashes().await?;
    // Points already stored (a re-run over an overlapping window pages differently, so page
    // hashes alone cannot tell): (namespace, pod, ts) of earlier Prometheus imports.
    let from_date = chrono::DateTime::from_timestamp(from_s, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let to_date = chrono::DateTime::from_timestamp(to_s, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let in_range = move |d: &str| d >= from_date.as_str() && d <= to_date.as_str();
    let mut stored: HashSet<(String, String, i64)> = HashSet::new();
    for b in store
        .read_columns(
            leakhound_schemas::Table::GoroutineCounts,
            &["namespace", "pod", "ts", "source"],
            Some(&in_range),
        )
        .await?
    {
        use arrow::array::AsArray;
        let (Some(ns), Some(pod), Some(ts), Some(src)) = (
            b.column_by_name("namespace"),
            b.column_by_name("pod"),
            b.column_by_name("ts"),
            b.column_by_name("source"),
        ) else {
            continue;
        };
        let (ns, pod, src) = (
            ns.as_string::<i32>(),
            pod.as_string::<i32>(),
            src.as_string::<i32>(),
        );
        let ts = ts.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            if src.value(i) == "prometheus" {
                stored.insert((
                    ns.value(i).to_string(),
                    pod.value(i).to_string(),
                    ts.value(i),
                ));
            }
        }
    }
    let mut batch = Batch::default();
    let mut summary = Summary::default();
    let now_us = chrono::Utc::now().timestamp_micros();
    for (hash, rows) in pages {
        summary.items += 1;
        if done.contains(&hash) {
            summary.already_imported += 1;
            continue;
        }
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| stored.insert((r.target.namespace.clone(), r.target.pod.clone(), r.ts_us)))
            .collect();
        if rows.is_empty() {
            summary.already_imported += 1;
            continue;
        }
        summary.imported += 1;
        summary.rows += rows.len() as u64;
        let first = rows.first().map(|r| r.ts_us);
        let n = rows.len() as i64;
        batch.add_counts(rows, &hash);
        batch.add_log(LogRow {
            ingested_at_us: now_us,
            source: format!("{base_url} query_range {}", range.query),
            content_hash: hash,
            format: Some("prometheus".into()),
            snapshot_ts_us: first,
            rows: n,
            status: "ok",
            ..Default::default()
        });
    }
    if !batch.is_empty() {
        summary.files_written = writer.commit(batch).await?.files as u64;
    }
    Ok(summary)
}

/// Run a backfill over `paths`.
pub async fn backfill(
    store: &Store,
    paths: &[PathBuf],
    opts: &BackfillOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let mut files = Vec::new();
    let mut summary = Summary::default();
    for p in paths {
        if let Err(e) = walk(p, &mut files) {
            summary
                .failed
                .push((p.display().to_string(), e.to_string()));
        }
    }
    progress(Progress::Total(files.len() as u64));

    let mut writer = Writer::new(store.clone());
    let (mut done, failed_before) = writer.imported_hashes().await?;
    let mut batch = Batch::default();
    let mut tracker = IdTracker::default();
    let mut in_batch = 0usize;
    let now_us = chrono::Utc::now().timestamp_micros();

    for file in files {
        let name = file.display().to_string();
        let outcome = match classify_file(&file, opts.max_decompressed) {
            Err(e) => Outcome::Failed(e),
            Ok(Kind::Archive { gz }) => {
                let mut imported = 0u64;
                let mut rows = 0usize;
                let mut failures = Vec::new();
                let mut seen_any = false;
                let res = for_each_entry(&file, gz, opts.max_decompressed, &mut |item| {
                    seen_any = true;
                    let iname = item.name();
                    let o = import_item(
                        item,
                        opts,
                        &mut batch,
                        &mut tracker,
                        &mut done,
                        &failed_before,
                        now_us,
                    );
                    summary.items += 1;
                    tally(&mut summary, &iname, &o);
                    match o {
                        Outcome::Imported {
                            goroutines,
                            rows: r,
                        } => {
                            imported += goroutines;
                            rows += r;
                        }
                        Outcome::Failed(e) => failures.push(format!("{iname}: {e}")),
                        Outcome::AlreadyImported => {}
                    }
                    in_batch += 1;
                });
                match res {
                    Err(e) => {
                        let msg = format!("archive unreadable: {e}");
                        summary.failed.push((name.clone(), msg.clone()));
                        Outcome::Failed(msg)
                    }
                    Ok(()) if !seen_any => Outcome::Failed("archive has no files".into()),
                    Ok(()) if !failures.is_empty() => Outcome::Failed(format!(
                        "{} of its entries failed (listed above)",
                        failures.len()
                    )),
                    Ok(()) => Outcome::Imported {
                        goroutines: imported,
                        rows,
                    },
                }
            }
            Ok(Kind::Single) => {
                summary.items += 1;
                let o = import_item(
                    Item::File(file.clone()),
                    opts,
                    &mut batch,
                    &mut tracker,
                    &mut done,
                    &failed_before,
                    now_us,
                );
                tally(&mut summary, &name, &o);
                in_batch += 1;
                o
            }
        };
        progress(Progress::Item { name, outcome });
        if in_batch >= opts.batch_items {
            let stats = writer.commit(std::mem::take(&mut batch)).await?;
            summary.files_written += stats.files as u64;
            in_batch = 0;
        }
    }
    if !batch.is_empty() {
        let stats = writer.commit(batch).await?;
        summary.files_written += stats.files as u64;
    }
    Ok(summary)
}

fn tally(summary: &mut Summary, name: &str, o: &Outcome) {
    match o {
        Outcome::Imported { goroutines, rows } => {
            summary.imported += 1;
            summary.goroutines += goroutines;
            summary.rows += *rows as u64;
        }
        Outcome::AlreadyImported => summary.already_imported += 1,
        Outcome::Failed(e) => summary.failed.push((name.to_string(), e.clone())),
    }
}

/// Files under `p`, sorted, hidden files skipped.
fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            walk(&e, out)?;
        } else if e.is_file() {
            out.push(e);
        }
    }
    Ok(())
}

enum Kind {
    Archive { gz: bool },
    Single,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// Decide from content (not the name) whether a file is a tar archive.
fn classify_file(path: &Path, _max: u64) -> std::result::Result<Kind, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut head = vec![0u8; 512];
    let n = read_up_to(&mut f, &mut head).map_err(|e| format!("cannot read: {e}"))?;
    head.truncate(n);
    if head.starts_with(&GZIP_MAGIC) {
        let f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let mut inner = vec![0u8; 512];
        let mut gz = MultiGzDecoder::new(f);
        // A corrupt gzip is the parser's to report, with its offset.
        let n = read_up_to(&mut gz, &mut inner).unwrap_or(0);
        inner.truncate(n);
        return Ok(if is_tar(&inner) {
            Kind::Archive { gz: true }
        } else {
            Kind::Single
        });
    }
    Ok(if is_tar(&head) {
        Kind::Archive { gz: false }
    } else {
        Kind::Single
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A reader that fails once more than `limit` bytes came through: the gzip-bomb guard.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "decompressed size exceeds the limit of {} bytes (gzip bomb?)",
                self.limit
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn for_each_entry(
    path: &Path,
    gz: bool,
    max: u64,
    f: &mut dyn FnMut(Item),
) -> std::result::Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let capped = Capped {
        inner: reader,
        left: max,
        limit: max,
    };
    let mut archive = tar::Archive::new(capped);
    let base = strip_archive_ext(&path.display().to_string());
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "(unnamed entry)".into());
        let name = format!("{base}/{}", rel.trim_start_matches("./"));
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("entry {rel}: {e}"))?;
        f(Item::Memory { name, bytes });
    }
    Ok(())
}

fn strip_archive_ext(s: &str) -> String {
    for ext in [".tar.gz", ".tgz", ".tar"] {
        if let Some(stem) = s.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    s.to_string()
}

fn content_hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:032x}", h.digest128()))
}

fn content_hash_bytes(b: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(b))
}

/// Import one item into the batch; returns its outcome. Failures are logged too.
fn import_item(
    item: Item,
    opts: &BackfillOptions,
    batch: &mut Batch,
    tracker: &mut IdTracker,
    done: &mut HashSet<String>,
    failed_before: &HashSet<String>,
    now_us: i64,
) -> Outcome {
    let name = item.name();
    let hash = match &item {
        Item::File(p) => match content_hash_file(p) {
            Ok(h) => h,
            Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
        },
        Item::Memory { bytes, .. } => content_hash_bytes(bytes),
    };
    if done.contains(&hash) {
        return Outcome::AlreadyImported;
    }
    let result = import_content(&item, &name, &hash, opts, batch, tracker);
    match result {
        Ok((rows, goroutines, log)) => {
            done.insert(hash);
            batch.add_log(log);
            Outcome::Imported { goroutines, rows }
        }
        Err(e) => {
            let msg = e.to_string();
            if !failed_before.contains(&hash) {
                batch.add_log(LogRow {
                    ingested_at_us: now_us,
                    source: name,
                    content_hash: hash,
                    status: "error",
                    error: Some(msg.clone()),
                    ..Default::default()
                });
            }
            Outcome::Failed(strip_name(&msg, &item.name()))
        }
    }
}

/// Error texts start with the source name; the summary prints the name already.
fn strip_name(msg: &str, name: &str) -> String {
    msg.strip_prefix(name)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
        .to_string()
}

fn open_item(item: &Item) -> std::io::Result<Box<dyn std::io::BufRead + '_>> {
    Ok(match item {
        Item::File(p) => Box::new(BufReader::with_capacity(1 << 20, std::fs::File::open(p)?)),
        Item::Memory { bytes, .. } => Box::new(std::io::Cursor::new(bytes.as_slice())),
    })
}

/// Returns (data rows, goroutines, log row).
fn import_content(
    item: &Item,
    name: &str,
    hash: &str,
    opts: &BackfillOptions,
    batch: &mut Batch,
    tracker: &mut IdTracker,
) -> Result<(usize, u64, LogRow)> {
    let io = |e: std::io::Error| Error::Input {
        source_name: name.to_string(),
        message: format!("cannot read: {e}"),
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    // Prometheus JSON, possibly gzip'd: peek at the decompressed head.
    let mut head = vec![0u8; 64];
    {
        let mut r = open_item(item).map_err(io)?;
        let n = read_up_to(&mut r, &mut head).map_err(io)?;
        head.truncate(n);
    }
    let gz = head.starts_with(&GZIP_MAGIC);
    if gz {
        let mut r = MultiGzDecoder::new(open_item(item).map_err(io)?);
        let mut inner = vec![0u8; 64];
        let n = read_up_to(&mut r, &mut inner).unwrap_or(0);
        inner.truncate(n);
        head = inner;
    }
    if prometheus::looks_like_json(&head) {
        let mut bytes = Vec::new();
        let r = open_item(item).map_err(io)?;
        let r: Box<dyn Read> = if gz {
            Box::new(MultiGzDecoder::new(r))
        } else {
            Box::new(r)
        };
        Capped {
            inner: r,
            left: opts.max_decompressed,
            limit: opts.max_decompressed,
        }
        .read_to_end(&mut bytes)
        .map_err(io)?;
        let rows = prometheus::parse_query_range(&bytes, hash).map_err(|e| Error::Input {
            source_name: name.to_string(),
            message: e.to_string(),
        })?;
        if rows.is_empty() {
            return Err(Error::Input {
                source_name: name.to_string(),
                message: "the query_range answer holds no samples".into(),
            });
        }
        let n = rows.len();
        let first = rows.first().map(|r| r.ts_us);
        batch.add_counts(rows, hash);
        return Ok((
            n,
            0,
            LogRow {
                ingested_at_us: now_us,
                source: name.to_string(),
                content_hash: hash.to_string(),
                format: Some("prometheus".into()),
                snapshot_ts_us: first,
                rows: n as i64,
                status: "ok",
                ..Default::default()
            },
        ));
    }

    let reader = open_item(item).map_err(io)?;
    let popts = parse::ParseOptions {
        max_decompressed_bytes: opts.max_decompressed,
        ..Default::default()
    };
    let snap = parse::parse_snapshot_with(reader, name, &popts).map_err(|e| Error::Parse {
        source_name: name.to_string(),
        source: e,
    })?;
    let fields = opts.pattern.matches(name);
    let field = |k: &str| fields.as_ref().and_then(|f| f.fields.get(k).cloned());
    let o = &opts.overrides;
    let ts_us = o
        .timestamp_us
        .or_else(|| fields.as_ref().and_then(|f| f.timestamp_us))
        .or_else(|| snap.time_nanos.map(|n| n / 1000));
    let Some(ts_us) = ts_us else {
        return Err(Error::Input {
            source_name: name.to_string(),
            message: format!(
                "no timestamp: the path does not match the pattern {:?} and the dump records \
                 none; rename the file or pass --path-pattern or --timestamp",
                opts.pattern.as_str()
            ),
        });
    };
    let pod = o.pod.clone().or_else(|| field("pod"));
    let Some(pod) = pod else {
        return Err(Error::Input {
            source_name: name.to_string(),
            message: format!(
                "no pod: the path does not match the pattern {:?}; pass --path-pattern or --pod",
                opts.pattern.as_str()
            ),
        });
    };
    let target = Target {
        cluster: o.cluster.clone().or_else(|| field("cluster")),
        namespace: o
            .namespace
            .clone()
            .or_else(|| field("namespace"))
            .unwrap_or_else(|| "default".into()),
        workload_kind: None,
        workload: o.workload.clone().or_else(|| field("workload")),
        pod,
        container: o.container.clone().or_else(|| field("container")),
        node: field("node"),
        instance: None,
    };
    let rows = batch.add_snapshot(tracker, &target, ts_us, "backfill", hash, &snap);
    let goroutines = snap.total();
    let format = snap.format.map(|f| {
        if snap.kind == ProfileKind::GoroutineLeak {
            format!("{}:goroutineleak", f.as_str())
        } else {
            f.as_str().to_string()
        }
    });
    Ok((
        rows,
        goroutines,
        LogRow {
            ingested_at_us: now_us,
            source: name.to_string(),
            content_hash: hash.to_string(),
            format,
            namespace: Some(target.namespace.clone()),
            pod: Some(target.pod.clone()),
            snapshot_ts_us: Some(ts_us),
            goroutines: i64::try_from(goroutines).unwrap_or(i64::MAX),
            rows: rows as i64,
            status: "ok",
            error: None,
        },
    ))
}
