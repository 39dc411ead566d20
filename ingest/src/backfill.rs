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
//! Each item is read once, streaming (a tar entry is never buffered whole), hashed as it is
//! parsed. A file holding a saved Prometheus `query_range` answer is the exception: it is read
//! twice, hashed first (its rows carry the hash), then parsed as a stream, series by series,
//! its rows handed on in columns and written in bounded batches as streamed Parquet files,
//! committed with its log row on their own ([`stream_file`]): memory does not grow with the
//! file. Up to [`BackfillOptions::jobs`] such files are imported at once, each on a writer of
//! its own (a parser thread and an encoding task each); the items after them wait, so outcomes
//! are reported in walk order, and each file commits alone, as two backfills would. An answer
//! whose rows must be merged across series (`go_threads` next to `go_goroutines`, a target in
//! two series), and one inside a tar archive, are read whole, as before. Its ingest key is the content hash *and* the identity it lands under (target,
//! snapshot time, profile kind, format): the same bytes at `podA/T1`, `podA/T2` and `podB/T1`
//! are three snapshots; an item whose key the ingest log already holds is skipped, so re-running
//! a backfill adds nothing. Two different dumps that would land at the same pod, instant,
//! profile and format (one `--timestamp` over a tarball of several dumps) are refused, never
//! stacked. A bad item is reported with its reason and skipped; the rest of the batch lands.
//!
//! Identity taken from a path is validated: a tar entry named with `..`, an absolute path or
//! control characters is refused, and a namespace or pod that is not a Kubernetes name
//! (RFC 1123) never reaches the store. The walk follows symbolic links but visits each real
//! directory and file (device, inode) once, so link loops end; every unreadable file or
//! directory is a failed item under its own path.

use std::collections::{HashSet, VecDeque};
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use leakhound_schemas::ProfileKind;
use leakhound_schemas::k8s_names::{self, NameKind};
use leakhound_schemas::model::Snapshot;

use crate::error::{Error, Result};
use crate::parse;
use crate::parse::Capped;
use crate::pathpattern::PathPattern;
use crate::residence::IdTracker;
use crate::rows::{LogRow, Target};
use crate::sources::prometheus;
use crate::store::Store;
use crate::writer::{Batch, Imported, Slot, Writer, ingest_key};

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
    /// Read a saved Prometheus `query_range` file as a stream (the default); `false` reads
    /// it whole, as before streaming (kept for the fleet bench's before/after).
    pub stream_json: bool,
    /// Saved Prometheus `query_range` files imported at once (each parsed on a thread of its
    /// own and encoded on the runtime's workers; memory grows with each).
    pub jobs: usize,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            pattern: PathPattern::default(),
            overrides: Overrides::default(),
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            batch_items: 256,
            stream_json: true,
            jobs: default_jobs(),
        }
    }
}

/// Streamed Prometheus files at once by default: one per core, at most 4.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Landed. `cut`: the dump was cut short (a crash log); its complete records landed, the
    /// snapshot is partial, and the item counts as failed too (the run exits 1).
    Imported {
        goroutines: u64,
        rows: usize,
        cut: Option<String>,
    },
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

/// Import Prometheus history (`query_range`, paged) into the store. Pages already imported
/// (same answer, same content hash) are skipped. One page is fetched, parsed as a stream and
/// committed at a time (rows in bounded batches, `Writer::count_stream`): memory holds one
/// page's answer, whatever the range. A page that fails stops the import with its error; the
/// pages before it are in the store, and a re-run skips them.
pub async fn backfill_prometheus(
    store: &Store,
    base_url: &str,
    range: &prometheus::RangeQuery,
    progress: &mut dyn FnMut(i64, i64),
) -> Result<Summary> {
    let (from_s, to_s) = (range.from_s, range.to_s);
    let input = |message: String| Error::Input {
        source_name: base_url.to_string(),
        message,
    };
    let client = reqwest::Client::builder()
        .gzip(true)
        .user_agent(format!("leakhound/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| input(e.to_string()))?;
    let mut pages = prometheus::Pages::new(&client, base_url, range).map_err(input)?;
    let mut writer = Writer::new(store.clone()).named("backfill");
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
    let mut summary = Summary::default();
    let now_us = chrono::Utc::now().timestamp_micros();
    while let Some(page) = pages.next_page().await {
        let page = page.map_err(input)?;
        let url = pages.url().to_string();
        let (start, end) = (page.start, page.end);
        summary.items += 1;
        if done.contains(&page.hash) {
            summary.already_imported += 1;
            progress(end - from_s, to_s - from_s);
            continue;
        }
        let (stream, parsed, first, mut sel) = pump(
            &writer,
            Box::new(std::io::Cursor::new(page.body.clone())),
            page.hash.clone(),
            Selector::new(std::mem::take(&mut stored)),
        )
        .await?;
        let (stream, first) = match parsed {
            Ok(prometheus::Streamed::Done { .. }) => (stream, first),
            Err(prometheus::StreamError::Sink(e)) => {
                writer.abort_stream(stream).await;
                return Err(input(e));
            }
            // Rows to merge across series, or an answer refused: the whole-document reader,
            // with its words.
            _ => {
                writer.abort_stream(stream).await;
                sel.undo();
                let rows = prometheus::parse_query_range(&page.body, &page.hash)
                    .map_err(|e| input(format!("{url} [{start}, {end}]: {e}")))?;
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|r| sel.keep(&r.target, r.ts_us))
                    .collect();
                let first = rows.first().map(|r| r.ts_us);
                let mut stream = writer.count_stream();
                for chunk in rows.chunks(STREAM_BATCH) {
                    writer.stream_counts(&mut stream, chunk.to_vec()).await?;
                }
                (stream, first)
            }
        };
        stored = sel.into_set();
        progress(end - from_s, to_s - from_s);
        if stream.rows() == 0 {
            writer.abort_stream(stream).await;
            summary.already_imported += 1;
            continue;
        }
        let n = stream.rows();
        let log = LogRow {
            ingested_at_us: now_us,
            source: format!("{base_url} query_range {}", range.query),
            content_hash: page.hash.clone(),
            format: Some("prometheus".into()),
            snapshot_ts_us: first,
            rows: n as i64,
            status: "ok",
            ..Default::default()
        };
        let stats = writer.commit_stream(stream, log).await?;
        summary.files_written += stats.files as u64;
        if stats.conflicts > 0 {
            summary.already_imported += 1;
        } else {
            summary.imported += 1;
            summary.rows += n as u64;
        }
    }
    Ok(summary)
}

/// Which rows of a Prometheus page land: those whose (namespace, pod, time) is not stored
/// yet; the points it added can be taken back (a pass given up).
struct Selector {
    set: HashSet<(String, String, i64)>,
    added: Vec<(String, String, i64)>,
    /// Every row lands (a file: its key is its content).
    all: bool,
}

impl Selector {
    fn new(set: HashSet<(String, String, i64)>) -> Self {
        Selector {
            set,
            added: Vec::new(),
            all: false,
        }
    }

    fn all() -> Self {
        Selector {
            all: true,
            ..Selector::new(HashSet::new())
        }
    }

    fn keep(&mut self, target: &Target, ts_us: i64) -> bool {
        if self.all {
            return true;
        }
        let k = (target.namespace.clone(), target.pod.clone(), ts_us);
        if self.set.contains(&k) {
            return false;
        }
        self.set.insert(k.clone());
        self.added.push(k);
        true
    }

    fn undo(&mut self) {
        for k in self.added.drain(..) {
            self.set.remove(&k);
        }
    }

    fn into_set(self) -> HashSet<(String, String, i64)> {
        self.set
    }
}

/// Parse a `query_range` answer from `r` as a stream on a blocking thread and write the rows
/// `sel` keeps into a new count stream as they come: the parser's thread hands each batch of
/// rows on in columns ([`crate::rows::SeriesRows`], split by date) through a channel of one,
/// the caller's task turns them into Arrow batches and encodes them into the stream's Parquet
/// files (the batches are built, written and freed on one thread). Returns the stream, the
/// parser's outcome, the first row's time and `sel`; the rows are tagged with `tag` as their
/// content hash.
async fn pump(
    writer: &Writer,
    r: Box<dyn Read + Send>,
    tag: String,
    sel: Selector,
) -> Result<(
    crate::writer::CountStream,
    std::result::Result<prometheus::Streamed, prometheus::StreamError>,
    Option<i64>,
    Selector,
)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(i64, crate::rows::SeriesRows)>>(1);
    let parser = tokio::task::spawn_blocking(move || {
        let mut r = r;
        let mut sel = sel;
        let mut first = None;
        let out = prometheus::stream_query_range(&mut r, STREAM_BATCH, &mut |mut rows| {
            if !sel.all {
                rows.retain(|t, ts| sel.keep(t, ts));
            }
            if rows.is_empty() {
                return Ok(());
            }
            first = first.or(rows.ts_us.first().copied());
            tx.blocking_send(rows.split_days())
                .map_err(|_| "the writer stopped".to_string())
        });
        (out, first, sel)
    });
    let batcher = crate::rows::SeriesBatcher::new(STREAM_BATCH, Some(&tag));
    let mut stream = writer.count_stream();
    let mut write_err = None;
    while let Some(days) = rx.recv().await {
        if write_err.is_some() {
            continue;
        }
        for (day, rows) in days {
            let written = match batcher.batch(&rows, 0, rows.len()) {
                Ok(b) => writer.stream_day(&mut stream, day, &b).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                write_err = Some(e);
                // The parser's next send fails, and it stops.
                rx.close();
                break;
            }
        }
    }
    let (parsed, first, sel) = parser.await.map_err(|e| Error::Input {
        source_name: "query_range".into(),
        message: format!("the parser failed: {e}"),
    })?;
    if let Some(e) = write_err {
        writer.abort_stream(stream).await;
        return Err(e);
    }
    Ok((stream, parsed, first, sel))
}

/// Run a backfill over `paths`.
///
/// Saved Prometheus `query_range` files are imported as streams, up to
/// [`BackfillOptions::jobs`] at once (each on its own writer, committed on its own); every
/// other item waits for those before it, so items are reported and committed in walk order.
pub async fn backfill(
    store: &Store,
    paths: &[PathBuf],
    opts: &BackfillOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut w = Walk::default();
    for p in paths {
        walk(p, &mut w);
    }
    summary.failed.extend(w.failed);
    progress(Progress::Total(w.files.len() as u64));

    let mut writer = Writer::new(store.clone()).named("backfill");
    let imported = writer.imported().await?;
    let jobs = opts.jobs.max(1);
    let mut run = Run {
        opts,
        batch: Batch::default(),
        tracker: IdTracker::default(),
        imported,
        in_batch: 0,
        now_us: chrono::Utc::now().timestamp_micros(),
        pool: (0..jobs).map(|_| writer.fork()).collect(),
        inflight: VecDeque::new(),
    };
    let out = run_files(w.files, &mut run, &mut writer, &mut summary, progress).await;
    // An error stops the run: the streams under way end first (each commits on its own, or
    // not at all), their outcomes unreported.
    while let Some((_, h)) = run.inflight.pop_front() {
        let _ = h.await;
    }
    out?;
    Ok(summary)
}

async fn run_files(
    files: Vec<PathBuf>,
    run: &mut Run<'_>,
    writer: &mut Writer,
    summary: &mut Summary,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let jobs = run.opts.jobs.max(1);
    for file in files {
        let name = file.display().to_string();
        let kind = classify_file(&file);
        if matches!(kind, Ok(Kind::Single))
            && let Some(sniffed) = run.sniff(&file, &name)
        {
            summary.items += 1;
            let pf = match sniffed {
                Ok(pf) if run.inflight.iter().any(|(p, _)| p.hash == pf.hash) => {
                    // The same bytes under way already: their outcome decides.
                    run.finish_all(writer, summary, progress).await?;
                    if run.imported.ok.contains(&pf.hash) {
                        run.report(writer, summary, progress, name, Outcome::AlreadyImported)
                            .await?;
                        continue;
                    }
                    pf
                }
                Ok(pf) => pf,
                Err(o) => {
                    run.report(writer, summary, progress, name, o).await?;
                    continue;
                }
            };
            while run.inflight.len() >= jobs {
                run.finish_next(writer, summary, progress).await?;
            }
            let w = run.pool.pop().unwrap_or_else(|| writer.fork());
            let task = tokio::spawn(stream_file(
                w,
                pf.clone(),
                run.opts.max_decompressed,
                run.now_us,
            ));
            run.inflight.push_back((pf, task));
            continue;
        }
        run.finish_all(writer, summary, progress).await?;
        let outcome = match kind {
            Err(e) => {
                summary.items += 1;
                let o = Outcome::Failed(e);
                tally(summary, &name, &o);
                o
            }
            Ok(Kind::Archive { gz }) => import_archive(&file, gz, run, writer, summary).await?,
            Ok(Kind::Single) => {
                summary.items += 1;
                let o = match std::fs::File::open(&file) {
                    Ok(f) => run.import_stream(&name, &mut BufReader::with_capacity(1 << 20, f)),
                    Err(e) => Outcome::Failed(format!("cannot open: {e}")),
                };
                tally(summary, &name, &o);
                run.in_batch += 1;
                o
            }
        };
        progress(Progress::Item { name, outcome });
        if run.in_batch >= run.opts.batch_items {
            run.commit(writer, summary).await?;
        }
    }
    run.finish_all(writer, summary, progress).await?;
    run.commit(writer, summary).await
}

/// A saved Prometheus `query_range` file to import as a stream ([`Run::sniff`]).
#[derive(Clone)]
struct PromFile {
    file: PathBuf,
    name: String,
    hash: String,
    gz: bool,
}

/// How the streamed import of a [`PromFile`] ended.
enum StreamEnd {
    /// Committed with its log row; `conflict`: a concurrent backfill committed it first.
    Committed {
        rows: u64,
        files: usize,
        conflict: bool,
    },
    /// Not for the streaming reader (rows to merge, no rows, a document refused): the
    /// whole-document reader imports it, or says why not in its words.
    Fallback,
    /// The file could not be read: the error's text.
    Unreadable(String),
}

/// A streamed import under way: its file, and the task that returns its writer and end.
type Inflight = (
    PromFile,
    tokio::task::JoinHandle<(Writer, Result<StreamEnd>)>,
);

/// Import a saved Prometheus `query_range` file as a stream (`prometheus::stream_query_range`,
/// [`pump`]) with `writer`: its rows written in bounded batches (`Writer::count_stream`) and
/// committed on their own with the file's log row. Returns the writer for the next file.
async fn stream_file(
    mut writer: Writer,
    pf: PromFile,
    max: u64,
    now_us: i64,
) -> (Writer, Result<StreamEnd>) {
    let out = stream_file_with(&mut writer, pf, max, now_us).await;
    (writer, out)
}

async fn stream_file_with(
    writer: &mut Writer,
    pf: PromFile,
    max: u64,
    now_us: i64,
) -> Result<StreamEnd> {
    let Ok(f) = std::fs::File::open(&pf.file) else {
        return Ok(StreamEnd::Fallback);
    };
    let raw = BufReader::with_capacity(1 << 20, f);
    let r: Box<dyn Read + Send> = if pf.gz {
        Box::new(Capped::plain(MultiGzDecoder::new(raw), max))
    } else {
        Box::new(Capped::plain(raw, max))
    };
    let (stream, parsed, first, _) = pump(writer, r, pf.hash.clone(), Selector::all()).await?;
    let rows = match parsed {
        Ok(prometheus::Streamed::Done { rows }) if rows > 0 => rows,
        Err(prometheus::StreamError::Io(e)) => {
            writer.abort_stream(stream).await;
            let msg = Error::Input {
                source_name: pf.name.clone(),
                message: format!("cannot read: {e}"),
            };
            return Ok(StreamEnd::Unreadable(msg.to_string()));
        }
        Err(prometheus::StreamError::Sink(e)) => {
            writer.abort_stream(stream).await;
            return Err(Error::Input {
                source_name: pf.name.clone(),
                message: e,
            });
        }
        // Rows to merge, no rows, or a document refused.
        _ => {
            writer.abort_stream(stream).await;
            return Ok(StreamEnd::Fallback);
        }
    };
    let log = LogRow {
        ingested_at_us: now_us,
        source: pf.name.clone(),
        content_hash: pf.hash.clone(),
        format: Some("prometheus".into()),
        snapshot_ts_us: first,
        rows: rows as i64,
        status: "ok",
        ingest_key: Some(pf.hash.clone()),
        ..Default::default()
    };
    let stats = writer.commit_stream(stream, log).await?;
    Ok(StreamEnd::Committed {
        rows,
        files: stats.files,
        conflict: stats.conflicts > 0,
    })
}

/// The state of one backfill run between commits.
struct Run<'a> {
    opts: &'a BackfillOptions,
    batch: Batch,
    tracker: IdTracker,
    imported: Imported,
    in_batch: usize,
    now_us: i64,
    /// Writers for streamed files (one per job), each returned when its file is done.
    pool: Vec<Writer>,
    /// Streamed files under way, oldest first.
    inflight: VecDeque<Inflight>,
}

impl Run<'_> {
    async fn commit(&mut self, writer: &mut Writer, summary: &mut Summary) -> Result<()> {
        self.in_batch = 0;
        if self.batch.is_empty() {
            return Ok(());
        }
        let stats = writer.commit(std::mem::take(&mut self.batch)).await?;
        summary.files_written += stats.files as u64;
        // Inputs a concurrent writer committed first: theirs, not ours.
        let c = stats.conflicts as u64;
        summary.imported = summary.imported.saturating_sub(c);
        summary.already_imported += c;
        Ok(())
    }

    /// Whether `file` is a saved Prometheus `query_range` answer to import as a stream: its
    /// content hash taken (a read of the file before the one that parses it; its rows carry the
    /// hash), `Err(AlreadyImported)` for bytes the ingest log holds. `None`: not such a file
    /// (or streaming is off, or it cannot be read): the caller imports it the ordinary way.
    fn sniff(&self, file: &Path, name: &str) -> Option<std::result::Result<PromFile, Outcome>> {
        if !self.opts.stream_json {
            return None;
        }
        let mut f = std::fs::File::open(file).ok()?;
        let mut head = vec![0u8; 64];
        let n = read_up_to(&mut f, &mut head).ok()?;
        head.truncate(n);
        let gz = head.starts_with(&GZIP_MAGIC);
        if gz {
            let mut inner = vec![0u8; 64];
            let n = read_up_to(&mut MultiGzDecoder::new(head.as_slice()), &mut inner).unwrap_or(0);
            inner.truncate(n);
            head = inner;
        }
        if !prometheus::looks_like_json(&head) {
            return None;
        }
        let hash = crate::content_hash::of_file(file).ok()?;
        if self.imported.ok.contains(&hash) {
            return Some(Err(Outcome::AlreadyImported));
        }
        Some(Ok(PromFile {
            file: file.to_path_buf(),
            name: name.to_string(),
            hash,
            gz,
        }))
    }

    /// Tally and report one item's outcome; commit the batch when it is full.
    async fn report(
        &mut self,
        writer: &mut Writer,
        summary: &mut Summary,
        progress: &mut dyn FnMut(Progress),
        name: String,
        outcome: Outcome,
    ) -> Result<()> {
        tally(summary, &name, &outcome);
        self.in_batch += 1;
        progress(Progress::Item { name, outcome });
        if self.in_batch >= self.opts.batch_items {
            self.commit(writer, summary).await?;
        }
        Ok(())
    }

    /// Wait for the oldest streamed file under way and report it; one the streaming reader
    /// left to the whole-document reader is imported by it now.
    async fn finish_next(
        &mut self,
        writer: &mut Writer,
        summary: &mut Summary,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let Some((pf, task)) = self.inflight.pop_front() else {
            return Ok(());
        };
        let (w, end) = task.await.map_err(|e| Error::Input {
            source_name: pf.name.clone(),
            message: format!("the import failed: {e}"),
        })?;
        self.pool.push(w);
        let outcome = match end? {
            StreamEnd::Committed {
                rows,
                files,
                conflict,
            } => {
                summary.files_written += files as u64;
                self.imported.ok.insert(pf.hash.clone());
                if conflict {
                    // A concurrent backfill committed the same file first: theirs.
                    Outcome::AlreadyImported
                } else {
                    Outcome::Imported {
                        goroutines: 0,
                        rows: rows as usize,
                        cut: None,
                    }
                }
            }
            StreamEnd::Unreadable(msg) => {
                self.log_failure(&pf.name, &pf.hash, &msg);
                Outcome::Failed(strip_name(&msg, &pf.name))
            }
            StreamEnd::Fallback => match std::fs::File::open(&pf.file) {
                Ok(f) => self.import_stream(&pf.name, &mut BufReader::with_capacity(1 << 20, f)),
                Err(e) => Outcome::Failed(format!("cannot open: {e}")),
            },
        };
        self.report(writer, summary, progress, pf.name, outcome)
            .await
    }

    /// Wait for every streamed file under way, reporting each in order.
    async fn finish_all(
        &mut self,
        writer: &mut Writer,
        summary: &mut Summary,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        while !self.inflight.is_empty() {
            self.finish_next(writer, summary, progress).await?;
        }
        Ok(())
    }

    /// Import one item read from `r` (a file or a tar entry), streaming: hashed while parsed.
    fn import_stream(&mut self, name: &str, r: &mut dyn Read) -> Outcome {
        let mut hr = crate::content_hash::HashingReader::new(r);
        let parsed = parse_item(name, &mut hr, self.opts);
        // The parser may stop before the end (a trailer it ignores): the hash covers all bytes.
        let drained = std::io::copy(&mut hr, &mut std::io::sink());
        let hash = hr.finish();
        let parsed = match (parsed, drained) {
            (Ok(p), Ok(_)) => Ok(p),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(Error::Input {
                source_name: name.to_string(),
                message: format!("cannot read: {e}"),
            }),
        };
        match parsed.and_then(|p| self.land(name, &hash, p)) {
            Ok(o) => o,
            Err(e) => {
                let msg = e.to_string();
                self.log_failure(name, &hash, &msg);
                Outcome::Failed(strip_name(&msg, name))
            }
        }
    }

    /// Log a failed input, unless an earlier run logged the same bytes failing (each failed
    /// input of this run gets its row).
    fn log_failure(&mut self, name: &str, hash: &str, msg: &str) {
        if !self.imported.failed.contains(hash) {
            self.batch.add_log(LogRow {
                ingested_at_us: self.now_us,
                source: name.to_string(),
                content_hash: hash.to_string(),
                status: "error",
                error: Some(msg.to_string()),
                ..Default::default()
            });
        }
    }

    /// Put a parsed item into the batch unless its key is imported already.
    fn land(&mut self, name: &str, hash: &str, parsed: Parsed) -> Result<Outcome> {
        let snap = match parsed {
            Parsed::Prometheus(mut rows) => {
                if self.imported.ok.contains(hash) {
                    return Ok(Outcome::AlreadyImported);
                }
                for r in &mut rows {
                    r.content_hash = Some(hash.to_string());
                }
                let n = rows.len();
                let first = rows.first().map(|r| r.ts_us);
                self.batch.add_counts(rows, hash);
                self.batch.add_log(LogRow {
                    ingested_at_us: self.now_us,
                    source: name.to_string(),
                    content_hash: hash.to_string(),
                    format: Some("prometheus".into()),
                    snapshot_ts_us: first,
                    rows: n as i64,
                    status: "ok",
                    ingest_key: Some(hash.to_string()),
                    ..Default::default()
                });
                self.imported.ok.insert(hash.to_string());
                return Ok(Outcome::Imported {
                    goroutines: 0,
                    rows: n,
                    cut: None,
                });
            }
            Parsed::Dump(s) => s,
        };
        let (target, ts_us) = identity(name, self.opts, &snap)?;
        let base_format = snap.format.map(|f| f.as_str()).unwrap_or("debug2");
        let log_format = if snap.kind == ProfileKind::GoroutineLeak {
            format!("{base_format}:goroutineleak")
        } else {
            base_format.to_string()
        };
        let key = ingest_key(hash, &target, ts_us, snap.kind, Some(base_format));
        if self.imported.ok.contains(&key) {
            return Ok(Outcome::AlreadyImported);
        }
        let slot: Slot = (
            target.namespace.clone(),
            target.pod.clone(),
            ts_us,
            log_format.clone(),
        );
        if let Some(other) = self.imported.slots.get(&slot)
            && other != hash
        {
            return Err(Error::Input {
                source_name: name.to_string(),
                message: format!(
                    "another {log_format} dump of {}/{} already lands at {}: two snapshots of one \
                     pod at one instant would stack; give each dump its own time (path pattern \
                     or one --timestamp per dump)",
                    target.namespace,
                    target.pod,
                    chrono::DateTime::from_timestamp_micros(ts_us)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                ),
            });
        }
        let rows =
            self.batch
                .add_snapshot(&mut self.tracker, &target, ts_us, "backfill", hash, &snap);
        let goroutines = snap.total();
        let cut = snap.partial.as_ref().map(|c| {
            format!("partial: the dump is {c}; {goroutines} goroutines before the cut imported")
        });
        self.batch.add_log(LogRow {
            ingested_at_us: self.now_us,
            source: name.to_string(),
            content_hash: hash.to_string(),
            format: Some(log_format),
            namespace: Some(target.namespace.clone()),
            pod: Some(target.pod.clone()),
            snapshot_ts_us: Some(ts_us),
            goroutines: i64::try_from(goroutines).unwrap_or(i64::MAX),
            rows: rows as i64,
            // A cut dump lands its complete records; the log says it is partial and where.
            status: if snap.partial.is_some() {
                "partial"
            } else {
                "ok"
            },
            error: cut.clone(),
            ingest_key: Some(key.clone()),
        });
        self.imported.ok.insert(key);
        self.imported.slots.insert(slot, hash.to_string());
        Ok(Outcome::Imported {
            goroutines,
            rows,
            cut,
        })
    }
}

/// Import every entry of a tar archive, streaming, committing every `batch_items` entries.
async fn import_archive(
    file: &Path,
    gz: bool,
    run: &mut Run<'_>,
    writer: &mut Writer,
    summary: &mut Summary,
) -> Result<Outcome> {
    let name = file.display().to_string();
    let base = strip_archive_ext(&name);
    let max = run.opts.max_decompressed;
    let mut imported = 0u64;
    let mut rows = 0usize;
    let mut failures = 0usize;
    let mut seen_any = false;
    let archive_err: Option<String> = 'archive: {
        let f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) => break 'archive Some(format!("cannot open: {e}")),
        };
        let reader: Box<dyn Read> = if gz {
            Box::new(MultiGzDecoder::new(BufReader::new(f)))
        } else {
            Box::new(BufReader::new(f))
        };
        let mut archive = tar::Archive::new(Capped::plain(reader, max));
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => break 'archive Some(e.to_string()),
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => break 'archive Some(e.to_string()),
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            seen_any = true;
            summary.items += 1;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let (iname, o) = match safe_entry_name(&raw_name) {
                Err(why) => (
                    format!("{base}/{}", raw_name.escape_debug()),
                    Outcome::Failed(format!("entry name {:?} rejected: {why}", raw_name)),
                ),
                Ok(clean) => {
                    let iname = format!("{base}/{clean}");
                    let o = run.import_stream(&iname, &mut entry);
                    (iname, o)
                }
            };
            tally(summary, &iname, &o);
            match o {
                Outcome::Imported {
                    goroutines,
                    rows: r,
                    cut,
                } => {
                    imported += goroutines;
                    rows += r;
                    if cut.is_some() {
                        failures += 1;
                    }
                }
                Outcome::Failed(_) => failures += 1,
                Outcome::AlreadyImported => {}
            }
            run.in_batch += 1;
            if run.in_batch >= run.opts.batch_items {
                run.commit(writer, summary).await?;
            }
        }
        None
    };
    Ok(match archive_err {
        Some(e) => {
            let msg = format!("archive unreadable: {e}");
            summary.failed.push((name.clone(), msg.clone()));
            // An archive-level failure is logged too, keyed by the archive's bytes.
            if let Ok(h) = crate::content_hash::of_file(file) {
                run.log_failure(&name, &h, &msg);
            }
            Outcome::Failed(msg)
        }
        None if !seen_any => {
            let msg = "archive has no files".to_string();
            summary.failed.push((name.clone(), msg.clone()));
            if let Ok(h) = crate::content_hash::of_file(file) {
                run.log_failure(&name, &h, &msg);
            }
            Outcome::Failed(msg)
        }
        None if failures > 0 => {
            Outcome::Failed(format!("{failures} of its entries failed (listed above)"))
        }
        None => Outcome::Imported {
            goroutines: imported,
            rows,
            cut: None,
        },
    })
}

/// A tar entry name fit to be part of an item's name (and so, through the path pattern, of its
/// identity): relative, no `..`, no empty or `.` components past a leading `./`, no control
/// characters, valid UTF-8.
fn safe_entry_name(raw: &str) -> std::result::Result<String, &'static str> {
    if raw.contains('\u{fffd}') {
        return Err("not valid UTF-8");
    }
    if raw.chars().any(|c| c.is_control()) {
        return Err("control characters");
    }
    if raw.starts_with('/') {
        return Err("an absolute path");
    }
    let trimmed = raw.trim_start_matches("./");
    let mut parts = Vec::new();
    for c in trimmed.split('/') {
        match c {
            ".." => return Err("a `..` component"),
            "" | "." => continue,
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("an empty name");
    }
    Ok(parts.join("/"))
}

/// RFC 1123 label: what Kubernetes accepts as a namespace (and a container) name.
fn is_dns_label(s: &str) -> bool {
    k8s_names::is_valid(s, NameKind::Namespace)
}

/// RFC 1123 subdomain: what Kubernetes accepts as a pod (and most object) name.
fn is_dns_subdomain(s: &str) -> bool {
    k8s_names::is_valid(s, NameKind::Object)
}

/// The target and time an item lands under: flags first, then the path pattern (validated),
/// then the time the profile records.
fn identity(name: &str, opts: &BackfillOptions, snap: &Snapshot) -> Result<(Target, i64)> {
    let bad = |message: String| Error::Input {
        source_name: name.to_string(),
        message,
    };
    let fields = opts.pattern.matches(name);
    let o = &opts.overrides;
    // A value taken from the path must be a Kubernetes name: a path is data from outside.
    type Rule = fn(&str) -> bool;
    let checks: [(&str, Rule, &str); 6] = [
        ("namespace", is_dns_label, "RFC 1123 label"),
        ("pod", is_dns_subdomain, "RFC 1123 subdomain"),
        ("container", is_dns_label, "RFC 1123 label"),
        ("workload", is_dns_subdomain, "RFC 1123 subdomain"),
        ("node", is_dns_subdomain, "RFC 1123 subdomain"),
        ("cluster", is_dns_subdomain, "RFC 1123 subdomain"),
    ];
    let overridden = |field: &str| match field {
        "namespace" => o.namespace.is_some(),
        "pod" => o.pod.is_some(),
        "container" => o.container.is_some(),
        "workload" => o.workload.is_some(),
        "cluster" => o.cluster.is_some(),
        _ => false,
    };
    if let Some(f) = &fields {
        for (field, ok, rule) in checks {
            if let Some(v) = f.fields.get(field)
                && !overridden(field)
                && !ok(v)
            {
                return Err(bad(format!(
                    "the path gives {field} {v:?}, which is not a Kubernetes name ({rule}): \
                     rejected; rename the file or pass --{field}"
                )));
            }
        }
    }
    let field = |k: &str| fields.as_ref().and_then(|f| f.fields.get(k).cloned());
    let ts_us = o
        .timestamp_us
        .or_else(|| fields.as_ref().and_then(|f| f.timestamp_us))
        .or_else(|| snap.time_nanos.map(|n| n / 1000));
    let Some(ts_us) = ts_us else {
        return Err(bad(format!(
            "no timestamp: the path does not match the pattern {:?} and the dump records \
             none; rename the file or pass --path-pattern or --timestamp",
            opts.pattern.as_str()
        )));
    };
    let Some(pod) = o.pod.clone().or_else(|| field("pod")) else {
        return Err(bad(format!(
            "no pod: the path does not match the pattern {:?}; pass --path-pattern or --pod",
            opts.pattern.as_str()
        )));
    };
    Ok((
        Target {
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
        },
        ts_us,
    ))
}

fn tally(summary: &mut Summary, name: &str, o: &Outcome) {
    match o {
        Outcome::Imported {
            goroutines,
            rows,
            cut,
        } => {
            summary.imported += 1;
            summary.goroutines += goroutines;
            summary.rows += *rows as u64;
            if let Some(c) = cut {
                summary.failed.push((name.to_string(), c.clone()));
            }
        }
        Outcome::AlreadyImported => summary.already_imported += 1,
        Outcome::Failed(e) => summary.failed.push((name.to_string(), e.clone())),
    }
}

/// What a walk found.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    failed: Vec<(String, String)>,
    /// (device, inode) of every directory and file met: each is walked once, so symbolic
    /// link loops end and a file linked twice is imported once.
    seen: HashSet<(u64, u64)>,
}

/// Files under `p` (following symbolic links), sorted per directory, hidden files skipped;
/// anything unreadable is a failure under its own path, and the walk goes on.
fn walk(p: &Path, w: &mut Walk) {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            w.failed
                .push((p.display().to_string(), format!("cannot read: {e}")));
            return;
        }
    };
    if !w.seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    if meta.is_file() {
        w.files.push(p.to_path_buf());
        return;
    }
    if !meta.is_dir() {
        w.failed.push((
            p.display().to_string(),
            "not a regular file or directory".into(),
        ));
        return;
    }
    let rd = match std::fs::read_dir(p) {
        Ok(rd) => rd,
        Err(e) => {
            w.failed.push((
                p.display().to_string(),
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    let mut entries = Vec::new();
    for e in rd {
        match e {
            Ok(e) => entries.push(e.path()),
            Err(e) => w.failed.push((
                p.display().to_string(),
                format!("cannot read directory: {e}"),
            )),
        }
    }
    entries.retain(|p| {
        !p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
    });
    entries.sort();
    for e in entries {
        walk(&e, w);
    }
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
fn classify_file(path: &Path) -> std::result::Result<Kind, String> {
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

fn read_up_to(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn strip_archive_ext(s: &str) -> String {
    for ext in [".tar.gz", ".tgz", ".tar"] {
        if let Some(stem) = s.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    s.to_string()
}

/// Error texts start with the source name; the summary prints the name already.
fn strip_name(msg: &str, name: &str) -> String {
    msg.strip_prefix(name)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
        .to_string()
}

/// What an item holds.
enum Parsed {
    Dump(Snapshot),
    Prometheus(Vec<crate::rows::CountRow>),
}

/// Rows per batch a streamed Prometheus file hands to the writer.
const STREAM_BATCH: usize = 8 * 1024;

/// How much of an item is looked at to tell Prometheus JSON from a dump.
const HEAD: usize = 64 * 1024;

/// Parse one item from `r`, reading it once: the head is peeked to tell a Prometheus
/// `query_range` answer (read whole, capped: an archive entry, or a file the streaming reader
/// left to this one) from a dump (parsed streaming).
fn parse_item(name: &str, r: &mut dyn Read, opts: &BackfillOptions) -> Result<Parsed> {
    let io = |e: std::io::Error| Error::Input {
        source_name: name.to_string(),
        message: format!("cannot read: {e}"),
    };
    let mut head = vec![0u8; HEAD];
    let n = read_up_to(r, &mut head).map_err(io)?;
    head.truncate(n);
    let gz = head.starts_with(&GZIP_MAGIC);
    let json = if gz {
        let mut inner = vec![0u8; 64];
        let n = read_up_to(&mut MultiGzDecoder::new(head.as_slice()), &mut inner).unwrap_or(0);
        inner.truncate(n);
        prometheus::looks_like_json(&inner)
    } else {
        prometheus::looks_like_json(&head)
    };
    let whole = std::io::Cursor::new(head).chain(r);
    if json {
        let r: Box<dyn Read + '_> = if gz {
            Box::new(MultiGzDecoder::new(whole))
        } else {
            Box::new(whole)
        };
        let mut bytes = Vec::new();
        Capped::plain(r, opts.max_decompressed)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        // Rows are tagged with the hash by the caller (it is known once all bytes are read).
        let rows = prometheus::parse_query_range(&bytes, "").map_err(|e| Error::Input {
            source_name: name.to_string(),
            message: e.to_string(),
        })?;
        if rows.is_empty() {
            return Err(Error::Input {
                source_name: name.to_string(),
                message: "the query_range answer holds no samples".into(),
            });
        }
        return Ok(Parsed::Prometheus(rows));
    }
    let popts = parse::ParseOptions {
        max_decompressed_bytes: opts.max_decompressed,
        ..Default::default()
    };
    let snap = parse::parse_snapshot_with(BufReader::with_capacity(1 << 20, whole), name, &popts)
        .map_err(|e| Error::Parse {
        source_name: name.to_string(),
        source: e,
    })?;
    Ok(Parsed::Dump(snap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(safe_entry_name("./shop/pod/T").unwrap(), "shop/pod/T");
        assert_eq!(safe_entry_name("shop//pod/./T").unwrap(), "shop/pod/T");
        assert!(safe_entry_name("shop/../kube-system/p/T").is_err());
        assert!(safe_entry_name("/etc/passwd").is_err());
        assert!(safe_entry_name("a/\u{1b}[2J/T").is_err());
        assert!(safe_entry_name("./").is_err());
    }

    #[test]
    fn kubernetes_names() {
        assert!(is_dns_label("kube-system"));
        assert!(!is_dns_label("Bad_NS"));
        assert!(!is_dns_label("-x"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("orders-7d9f8b6c5-m4zt9"));
        assert!(is_dns_subdomain("web-0.svc"));
        assert!(!is_dns_subdomain(".."));
        assert!(!is_dns_subdomain("a..b"));
    }

    /// A `query_range` answer of `pods` pods from `pod0`, `points` minutes each.
    fn answer(pod0: usize, pods: usize, points: usize) -> String {
        let series: Vec<String> = (pod0..pod0 + pods)
            .map(|p| {
                let values: Vec<String> = (0..points)
                    .map(|m| format!(r#"[{},"{}"]"#, 1_795_824_000 + 60 * m, 100 + m % 7))
                    .collect();
                format!(
                    r#"{{"metric":{{"__name__":"go_goroutines","namespace":"shop","pod":"api-{p}"}},"values":[{}]}}"#,
                    values.join(",")
                )
            })
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
            series.join(",")
        )
    }

    /// Files imported at once land every row once: two files of the same bytes once (the
    /// second is already imported), a file the streaming reader leaves to the whole-document
    /// reader (threads next to goroutines) through it, a bad file as a failure; outcomes come in
    /// walk order, and a second run adds nothing.
    #[test]
    fn files_imported_at_once_land_each_row_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::create_dir_all(&input).unwrap();
        let (pods, points) = (3, 3000); // two days
        let merged = r#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"__name__":"go_goroutines","namespace":"shop","pod":"m-1"},"values":[[1795824000,"12"]]},
          {"metric":{"__name__":"go_threads","namespace":"shop","pod":"m-1"},"values":[[1795824000,"7"]]}]}}"#;
        let files = [
            ("a.json", answer(0, pods, points)),
            ("b.json", answer(0, pods, points)),
            ("c.json", answer(10, pods, points)),
            ("d.json", merged.to_string()),
            ("e.json", answer(20, pods, points)),
            ("f.json", "{\"status\":".to_string()),
            ("g.json", answer(30, pods, points)),
        ];
        for (name, body) in &files {
            std::fs::write(input.join(name), body).unwrap();
        }
        let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let opts = BackfillOptions {
            jobs: 2,
            ..Default::default()
        };
        let mut order = Vec::new();
        let s = rt
            .block_on(backfill(
                &store,
                std::slice::from_ref(&input),
                &opts,
                &mut |p| {
                    if let Progress::Item { name, outcome } = p {
                        order.push((name, outcome));
                    }
                },
            ))
            .unwrap();
        let names: Vec<String> = order
            .iter()
            .map(|(n, _)| n.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            ["a", "b", "c", "d", "e", "f", "g"].map(|n| format!("{n}.json"))
        );
        assert_eq!(order[1].1, Outcome::AlreadyImported);
        assert!(
            matches!(order[3].1, Outcome::Imported { rows: 1, .. }),
            "{:?}",
            order[3]
        );
        assert!(matches!(order[5].1, Outcome::Failed(_)), "{:?}", order[5]);
        let want = (4 * pods * points + 1) as u64;
        assert_eq!(
            (
                s.items,
                s.imported,
                s.already_imported,
                s.failed.len(),
                s.rows
            ),
            (7, 5, 1, 1, want)
        );
        let count = || -> usize {
            rt.block_on(store.read_columns(
                leakhound_schemas::Table::GoroutineCounts,
                &["pod"],
                None,
            ))
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum()
        };
        assert_eq!(count() as u64, want);
        let again = rt
            .block_on(backfill(&store, &[input], &opts, &mut |_| {}))
            .unwrap();
        assert_eq!((again.imported, again.already_imported), (0, 6));
        assert_eq!(count() as u64, want);
    }
}
