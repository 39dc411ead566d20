//! Turning snapshots into rows and landing them in the store, one batch at a time.
//!
//! A batch becomes one Parquet file per table and partition (`tx-<txid>.parquet`, invisible),
//! then one commit record that makes all of them — the data and the `ingest_log` rows saying
//! which inputs they came from — visible at once (see `commit`). A batch that crashed before
//! its commit is never seen and never counted; its inputs are not in the ingest log, so a
//! re-run imports them, in any order, once.
//!
//! Each data row belongs to the ingest-log row added after it (`Batch::add_log`): when a
//! concurrent writer committed the same ingest key first, the rows of that key are dropped
//! from this batch before it commits, so two overlapping backfills land each input once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use leakhound_schemas::model::{DumpFormat, Snapshot, StackId};
use leakhound_schemas::{ProfileKind, Table};

use object_store::ObjectStoreExt;

use crate::commit::{self, CommitRecord};
use crate::error::Result;
use crate::fault;
use crate::residence::IdTracker;
use crate::rows::{
    CountRow, LogRow, SampleRow, StackRow, StatusRow, Target, counts_batch, log_batch,
    samples_batch, stacks_batch, state_counts, status_batch,
};
use crate::store::{Partition, Store};

/// Rows gathered for one commit.
#[derive(Debug, Default)]
pub struct Batch {
    pub counts: Vec<CountRow>,
    pub status: Vec<StatusRow>,
    pub samples: Vec<SampleRow>,
    pub stacks: HashMap<StackId, StackRow>,
    pub log: Vec<LogRow>,
    content_hashes: Vec<String>,
    /// For each count and sample row: the index of the log row it belongs to (the first log
    /// row added after it); an index past `log` means none (scrape passes have no log rows).
    count_owner: Vec<usize>,
    sample_owner: Vec<usize>,
}

/// What a commit wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub files: usize,
    pub rows: usize,
    /// Inputs (ingest keys) dropped because a concurrent writer committed them first.
    pub conflicts: usize,
    /// Commit attempts lost to another writer.
    pub retries: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
            && self.samples.is_empty()
            && self.log.is_empty()
            && self.status.is_empty()
    }

    pub fn rows(&self) -> usize {
        self.counts.len() + self.samples.len() + self.stacks.len()
    }

    /// Keep owner vectors in step with rows pushed straight into the public fields.
    fn sync_owners(&mut self) {
        let owner = self.log.len();
        self.count_owner.resize(self.counts.len(), owner);
        self.sample_owner.resize(self.samples.len(), owner);
    }

    /// Drop every row belonging to a log row whose ingest key is in `keys` (and that log row).
    /// Returns how many log rows went.
    pub fn drop_keys(&mut self, keys: &HashSet<String>) -> usize {
        self.sync_owners();
        let dropped: Vec<bool> = self
            .log
            .iter()
            .map(|l| {
                let k = l.ingest_key.as_deref().unwrap_or(l.content_hash.as_str());
                keys.contains(k)
            })
            .collect();
        let n = dropped.iter().filter(|d| **d).count();
        if n == 0 {
            return 0;
        }
        let gone = |o: usize| dropped.get(o).copied().unwrap_or(false);
        let mut keep = self.count_owner.iter().map(|&o| !gone(o));
        self.counts.retain(|_| keep.next().unwrap_or(true));
        let mut keep = self.sample_owner.iter().map(|&o| !gone(o));
        self.samples.retain(|_| keep.next().unwrap_or(true));
        // Renumber owners: log row i becomes i - (dropped before i).
        let mut new_index = Vec::with_capacity(dropped.len() + 1);
        let mut k = 0;
        for d in &dropped {
            new_index.push(k);
            if !d {
                k += 1;
            }
        }
        new_index.push(k);
        let remap = |o: usize| new_index.get(o).copied().unwrap_or(k);
        self.count_owner = self
            .count_owner
            .iter()
            .copied()
            .filter(|&o| !gone(o))
            .map(remap)
            .collect();
        self.sample_owner = self
            .sample_owner
            .iter()
            .copied()
            .filter(|&o| !gone(o))
            .map(remap)
            .collect();
        let mut keep = dropped.iter().map(|d| !d);
        self.log.retain(|_| keep.next().unwrap_or(true));
        let used: HashSet<StackId> = self.samples.iter().map(|s| s.group.stack_id).collect();
        self.stacks.retain(|id, _| used.contains(id));
        n
    }

    /// Add a parsed capture of `target` taken at `ts_us`: its count row (for the goroutine
    /// profile) and its samples. Returns the number of data rows added. A leak profile adds
    /// samples only: the goroutine count belongs to the ordinary goroutine profile.
    pub fn add_snapshot(
        &mut self,
        tracker: &mut IdTracker,
        target: &Target,
        ts_us: i64,
        source: &str,
        content_hash: &str,
        snap: &Snapshot,
    ) -> usize {
        self.sync_owners();
        let format = snap.format.unwrap_or(DumpFormat::Debug2);
        let mut rows = 0;
        if snap.kind == ProfileKind::Goroutine {
            let (running, runnable, waiting, syscall) = state_counts(snap);
            self.counts.push(CountRow {
                target: target.clone(),
                ts_us,
                goroutines: i64::try_from(snap.total()).unwrap_or(i64::MAX),
                running,
                runnable,
                waiting,
                syscall,
                source: source.to_string(),
                format: format.as_str().to_string(),
                content_hash: Some(content_hash.to_string()),
                partial: Some(snap.partial.is_some()),
                ..Default::default()
            });
            rows += 1;
        }
        rows + self.add_samples(tracker, target, ts_us, content_hash, snap)
    }

    /// Add the samples (and stacks) of a capture, without a count row.
    pub fn add_samples(
        &mut self,
        tracker: &mut IdTracker,
        target: &Target,
        ts_us: i64,
        content_hash: &str,
        snap: &Snapshot,
    ) -> usize {
        self.sync_owners();
        let format = snap.format.unwrap_or(DumpFormat::Debug2);
        let mut rows = 0;
        let ages = if snap.kind == ProfileKind::Goroutine {
            tracker.observe(target, ts_us, &snap.groups)
        } else {
            Vec::new()
        };
        // Each stack's `created by` sites go on its first row of the snapshot only.
        let mut sited: HashSet<StackId> = HashSet::new();
        for (i, g) in snap.groups.iter().enumerate() {
            let creators = match snap.creators.get(&g.stack_id) {
                Some(sites) if sited.insert(g.stack_id) => sites.clone(),
                _ => Vec::new(),
            };
            let entry = self.stacks.entry(g.stack_id).or_insert_with(|| StackRow {
                stack_id: g.stack_id,
                first_seen_us: ts_us,
                stack: g.stack.clone(),
            });
            entry.first_seen_us = entry.first_seen_us.min(ts_us);
            if entry.stack.created_by.is_none() && g.stack.created_by.is_some() {
                entry.stack.created_by = g.stack.created_by.clone();
            }
            self.samples.push(SampleRow {
                target: target.clone(),
                ts_us,
                profile: snap.kind.as_str(),
                format: format.as_str(),
                group: g.clone(),
                ages: ages.get(i).cloned().unwrap_or_default(),
                creators,
            });
            rows += 1;
        }
        self.content_hashes.push(content_hash.to_string());
        rows
    }

    pub fn add_counts(&mut self, rows: Vec<CountRow>, content_hash: &str) {
        self.sync_owners();
        self.counts.extend(rows);
        self.content_hashes.push(content_hash.to_string());
    }

    /// Make the batch's name depend on `s` too (a pass's time): two batches with no content
    /// hash in common must not share file names.
    pub fn salt(&mut self, s: &str) {
        self.content_hashes.push(s.to_string());
    }

    /// Add an ingest-log row; the data rows added since the previous log row belong to it.
    pub fn add_log(&mut self, row: LogRow) {
        self.sync_owners();
        self.content_hashes.push(row.content_hash.clone());
        self.log.push(row);
    }

    /// The batch's name: a hash of what went in, so the same batch always writes the same
    /// objects.
    pub fn id(&self) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for c in &self.content_hashes {
            h.update(c.as_bytes());
            h.update(b"\n");
        }
        format!("{:016x}", h.digest())
    }
}

/// Writes batches into a store, remembering which stacks each date partition already holds
/// and how far into the commit log it has read.
pub struct Writer {
    store: Store,
    known_stacks: HashMap<String, HashSet<i64>>,
    /// The last commit record this writer has taken into account.
    head: Option<u64>,
    /// Ingest keys other writers committed since this writer started reading the log: rows of
    /// these keys never go into one of its commits, whenever they were added to a batch.
    seen_keys: HashSet<String>,
    name: String,
}

/// What the ingest log says was imported, as of one commit.
#[derive(Debug, Default, Clone)]
pub struct Imported {
    /// Ingest keys imported successfully.
    pub ok: HashSet<String>,
    /// Content hashes that failed before (a failure is logged once).
    pub failed: HashSet<String>,
    /// Occupied slots (namespace, pod, snapshot time, format, kind) → the content hash there:
    /// a different dump at the same slot would stack two snapshots at one instant.
    pub slots: HashMap<Slot, String>,
}

/// One pod's snapshot of one profile kind and format at one instant.
pub type Slot = (String, String, i64, String);

/// Data files written but not committed older than this are rewritten before a commit: a
/// `compact` sweeping orphans (grace period ≥ 10 min) must never delete files a commit is
/// about to name.
const MAX_STAGED: Duration = Duration::from_secs(300);

/// Microseconds in a UTC day (count rows are partitioned by date).
const DAY_US: i64 = 86_400_000_000;

/// The ingest key of an input: its content and the identity it lands under (see the
/// `ingest_key` column). Rows written before that column get the same key from their
/// columns, as long as no cluster or container was given.
pub fn ingest_key(
    content_hash: &str,
    target: &Target,
    ts_us: i64,
    kind: ProfileKind,
    format: Option<&str>,
) -> String {
    key_of(
        content_hash,
        target.cluster.as_deref(),
        &target.namespace,
        &target.pod,
        target.container.as_deref(),
        ts_us,
        kind.as_str(),
        format.unwrap_or(""),
    )
}

#[allow(clippy::too_many_arguments)]
fn key_of(
    hash: &str,
    cluster: Option<&str>,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    ts_us: i64,
    kind: &str,
    format: &str,
) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        hash,
        cluster.unwrap_or(""),
        ns,
        pod,
        container.unwrap_or(""),
        &ts_us.to_string(),
        kind,
        format,
    ] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    format!("k{:032x}", h.digest128())
}

/// Profile kind and bare format of an ingest-log `format` value (`debug1:goroutineleak`).
fn split_format(f: &str) -> (&'static str, &str) {
    match f.strip_suffix(":goroutineleak") {
        Some(base) => (ProfileKind::GoroutineLeak.as_str(), base),
        None => (ProfileKind::Goroutine.as_str(), f),
    }
}

/// Count rows of one input written as they come, for an input too large to hold (a saved
/// Prometheus history): one Parquet file per date partition, each written row group by row
/// group ([`Store::stream_file`]), invisible until [`Writer::commit_stream`] commits them all
/// with the input's ingest-log row. Memory holds a row group and an upload part per open
/// partition, whatever the input's size.
pub struct CountStream {
    file: String,
    open: BTreeMap<Partition, (object_store::path::Path, crate::store::StreamWriter)>,
    rows: usize,
    started: Instant,
}

impl CountStream {
    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// The finished files of a [`CountStream`], committed with a batch.
struct Streamed {
    files: Vec<object_store::path::Path>,
    rows: usize,
    /// When the first of them was written.
    at: Instant,
}

/// Data files of one commit attempt.
struct Staged {
    files: Vec<object_store::path::Path>,
    stacks: BTreeMap<String, Vec<i64>>,
    stats: CommitStats,
    at: Instant,
}

impl Writer {
    pub fn new(store: Store) -> Self {
        Writer {
            store,
            known_stacks: HashMap::new(),
            head: None,
            seen_keys: HashSet::new(),
            name: commit::writer_name("leakhound"),
        }
    }

    /// Another writer on the same store, under the same name, as far into the commit log as
    /// this one (what it has read of other writers' keys included): for inputs written at the
    /// same time as this writer's, each committed on its own.
    pub fn fork(&self) -> Writer {
        Writer {
            store: self.store.clone(),
            known_stacks: HashMap::new(),
            head: self.head,
            seen_keys: self.seen_keys.clone(),
            name: self.name.clone(),
        }
    }

    /// Name this writer in the commit records it writes (`backfill`, `ingest`, …).
    pub fn named(mut self, command: &str) -> Self {
        self.name = commit::writer_name(command);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The last commit record this writer has taken into account (`None` before its first
    /// commit or read of the log).
    pub fn head(&self) -> Option<u64> {
        self.head
    }

    async fn stacks_in(&mut self, date: &str) -> Result<&mut HashSet<i64>> {
        if !self.known_stacks.contains_key(date) {
            let d = date.to_string();
            let filter = move |p: &str| p == d;
            let batches = self
                .store
                .read_columns(Table::Stacks, &["stack_id"], Some(&filter))
                .await?;
            let mut set = HashSet::new();
            for b in batches {
                if let Some(col) = b.column_by_name("stack_id") {
                    let a = col.as_primitive::<Int64Type>();
                    set.extend(a.iter().flatten());
                }
            }
            self.known_stacks.insert(date.to_string(), set);
        }
        Ok(self.known_stacks.entry(date.to_string()).or_default())
    }

    /// Read the commit records after `head`: their stacks become known, their keys leave the
    /// batch. Returns the number of keys dropped and whether a staged stack was committed by
    /// another writer meanwhile.
    async fn catch_up(
        &mut self,
        batch: &mut Batch,
        staged: Option<&Staged>,
    ) -> Result<(usize, bool)> {
        let head = match self.head {
            Some(h) => h,
            // A fresh writer: what is committed so far is in the tables (ingest log, stacks);
            // only what comes after the current head needs replaying.
            None => {
                let h = commit::latest(&self.store.raw(), self.store.root()).await?;
                self.head = Some(h);
                h
            }
        };
        let Some(recs) = commit::read_after(&self.store.raw(), self.store.root(), head).await?
        else {
            // The records since `head` were folded into a checkpoint and deleted: read what
            // they committed from the tables themselves.
            let imp = self.imported().await?;
            self.known_stacks.clear();
            self.seen_keys.extend(imp.ok);
            self.seen_keys.extend(imp.failed);
            return Ok((batch.drop_keys(&self.seen_keys), true));
        };
        let mut stack_clash = false;
        for rec in recs {
            self.seen_keys.extend(rec.keys.iter().cloned());
            for (date, ids) in &rec.stacks {
                if let Some(st) = staged.and_then(|s| s.stacks.get(date)) {
                    stack_clash |= ids.iter().any(|i| st.contains(i));
                }
                if let Some(known) = self.known_stacks.get_mut(date) {
                    known.extend(ids.iter().copied());
                }
            }
            self.head = Some(self.head.unwrap_or(0).max(rec.seq));
        }
        Ok((batch.drop_keys(&self.seen_keys), stack_clash))
    }

    /// Write every table's rows of `batch` as invisible files, then commit them with one
    /// record. Rows of inputs a concurrent writer committed first are dropped (counted in
    /// `conflicts`); nothing is written twice.
    pub async fn commit(&mut self, batch: Batch) -> Result<CommitStats> {
        self.commit_with(batch, None).await
    }

    /// Start writing the count rows of one input as they come ([`CountStream`]).
    pub fn count_stream(&self) -> CountStream {
        CountStream {
            file: format!("{}{}.parquet", commit::TX_PREFIX, commit::new_txid()),
            open: BTreeMap::new(),
            rows: 0,
            started: Instant::now(),
        }
    }

    /// Write `rows` into the stream's files (one per date partition, opened as needed).
    pub async fn stream_counts(&self, s: &mut CountStream, rows: Vec<CountRow>) -> Result<()> {
        // Count rows are partitioned by UTC date: grouped by day number, the date is
        // formatted once per day, not per row.
        let mut days: BTreeMap<i64, Vec<CountRow>> = BTreeMap::new();
        for r in rows {
            days.entry(r.ts_us.div_euclid(DAY_US)).or_default().push(r);
        }
        for (day, rows) in days {
            self.stream_day(s, day, &counts_batch(&rows)?).await?;
        }
        Ok(())
    }

    /// Write a `goroutine_counts` batch whose rows all fall on UTC day `day` (days since the
    /// epoch; [`crate::rows::SeriesRows::split_days`]) into the stream's file of that date.
    pub async fn stream_day(
        &self,
        s: &mut CountStream,
        day: i64,
        b: &arrow::array::RecordBatch,
    ) -> Result<()> {
        debug_assert!(matches!(
            Table::GoroutineCounts.partitioning(),
            leakhound_schemas::tables::Partitioning::Date
        ));
        let p = Partition::for_ts(Table::GoroutineCounts, day * DAY_US);
        let (path, w) = match s.open.entry(p) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let opened = self
                    .store
                    .stream_file(Table::GoroutineCounts, e.key(), &s.file)?;
                e.insert(opened)
            }
        };
        w.write(b).await.map_err(|e| crate::error::Error::Parquet {
            path: path.to_string(),
            source: e,
        })?;
        s.rows += b.num_rows();
        Ok(())
    }

    /// Finish the stream's files and commit them with the input's ingest-log row `log`, in one
    /// record, as [`Writer::commit`] commits a batch (the input's key committed meanwhile by
    /// another writer: its files are deleted, a conflict).
    pub async fn commit_stream(&mut self, s: CountStream, log: LogRow) -> Result<CommitStats> {
        let mut files = Vec::new();
        for (_, (path, w)) in s.open {
            w.close().await.map_err(|e| crate::error::Error::Parquet {
                path: path.to_string(),
                source: e,
            })?;
            files.push(path);
            fault::point("data-file");
        }
        let mut batch = Batch::default();
        batch.content_hashes.push(s.file.clone());
        batch.add_log(log);
        let extra = Streamed {
            files,
            rows: s.rows,
            at: s.started,
        };
        self.commit_with(batch, Some(extra)).await
    }

    /// Give up a stream: its files are deleted (best effort, as for a discarded attempt).
    pub async fn abort_stream(&self, s: CountStream) {
        for (_, (path, w)) in s.open {
            if w.close().await.is_ok() {
                let _ = self.store.raw().delete(&path).await;
            }
        }
    }

    async fn commit_with(
        &mut self,
        mut batch: Batch,
        mut extra: Option<Streamed>,
    ) -> Result<CommitStats> {
        batch.sync_owners();
        let (dropped, _) = self.catch_up(&mut batch, None).await?;
        let mut conflicts = dropped;
        let mut retries = 0;
        let mut staged: Option<Staged> = None;
        loop {
            if batch.is_empty() {
                if let Some(s) = staged.take() {
                    self.discard(s).await;
                }
                if let Some(x) = extra.take() {
                    self.discard_files(x.files).await;
                }
                return Ok(CommitStats {
                    conflicts,
                    retries,
                    ..Default::default()
                });
            }
            if staged.as_ref().is_some_and(|s| s.at.elapsed() > MAX_STAGED)
                && let Some(s) = staged.take()
            {
                self.discard(s).await;
            }
            if let Some(x) = extra.as_mut()
                && x.at.elapsed() > MAX_STAGED
            {
                self.refresh(x).await?;
            }
            let st = match staged.take() {
                Some(s) => s,
                None => self.write_data(&batch).await?,
            };
            fault::point("after-data-files");
            let root = self.store.root().clone();
            let extra_files = extra.iter().flat_map(|x| x.files.iter());
            let rec = CommitRecord {
                seq: self.head.unwrap_or(0) + 1,
                kind: "batch".into(),
                writer: self.name.clone(),
                committed_at: chrono::Utc::now().to_rfc3339(),
                files: st
                    .files
                    .iter()
                    .chain(extra_files)
                    .map(|f| commit::rel(&root, f))
                    .collect(),
                replaces: Vec::new(),
                keys: batch
                    .log
                    .iter()
                    .map(|l| {
                        l.ingest_key
                            .clone()
                            .unwrap_or_else(|| l.content_hash.clone())
                    })
                    .collect(),
                stacks: st.stacks.clone(),
            };
            if commit::try_commit(&self.store.raw(), &root, &rec).await? {
                fault::point("after-commit");
                self.head = Some(rec.seq);
                for (date, ids) in &st.stacks {
                    if let Some(known) = self.known_stacks.get_mut(date) {
                        known.extend(ids.iter().copied());
                    }
                }
                let mut stats = st.stats;
                if let Some(x) = &extra {
                    stats.files += x.files.len();
                    stats.rows += x.rows;
                }
                return Ok(CommitStats {
                    conflicts,
                    retries,
                    ..stats
                });
            }
            // Another writer took this sequence number: see what it committed.
            retries += 1;
            let (dropped, stack_clash) = self.catch_up(&mut batch, Some(&st)).await?;
            conflicts += dropped;
            if dropped > 0 || stack_clash {
                self.discard(st).await;
            } else {
                staged = Some(st);
            }
        }
    }

    /// Delete the data files of an attempt that will not commit (best effort: what stays is
    /// invisible, and swept by `compact`).
    async fn discard(&self, st: Staged) {
        self.discard_files(st.files).await;
    }

    /// Streamed files older than [`MAX_STAGED`] get new names (a copy, then the old one
    /// deleted): a `compact` sweeping orphans must not take them before their commit.
    async fn refresh(&self, x: &mut Streamed) -> Result<()> {
        let txid = format!("{}{}.parquet", commit::TX_PREFIX, commit::new_txid());
        for f in &mut x.files {
            // The same folder (its parts as they are, not encoded again), a new file name.
            let mut parts: Vec<object_store::path::PathPart<'_>> = f.parts().collect();
            parts.pop();
            parts.push(object_store::path::PathPart::from(txid.clone()));
            let to = object_store::path::Path::from_iter(parts);
            self.store
                .raw()
                .copy(f, &to)
                .await
                .map_err(|e| crate::error::Error::ObjectStore {
                    path: to.to_string(),
                    source: e,
                })?;
            let _ = self.store.raw().delete(f).await;
            *f = to;
        }
        x.at = Instant::now();
        Ok(())
    }

    async fn discard_files(&self, files: Vec<object_store::path::Path>) {
        for f in files {
            if let Err(e) = self.store.raw().delete(&f).await {
                tracing::debug!(path = %f, error = %e, "Could not delete an uncommitted file.");
            }
        }
    }

    async fn put_data(
        &self,
        table: Table,
        p: &Partition,
        file: &str,
        b: &arrow::array::RecordBatch,
        st: &mut Staged,
        rows: usize,
    ) -> Result<()> {
        let path = self.store.write_file(table, p, file, b).await?;
        st.files.push(path);
        st.stats.files += 1;
        st.stats.rows += rows;
        fault::point("data-file");
        Ok(())
    }

    /// Write the batch's data files (not yet visible).
    async fn write_data(&mut self, batch: &Batch) -> Result<Staged> {
        let file = format!("{}{}.parquet", commit::TX_PREFIX, commit::new_txid());
        let mut st = Staged {
            files: Vec::new(),
            stacks: BTreeMap::new(),
            stats: CommitStats::default(),
            at: Instant::now(),
        };

        let mut counts: BTreeMap<Partition, Vec<CountRow>> = BTreeMap::new();
        for r in &batch.counts {
            counts
                .entry(Partition::for_ts(Table::GoroutineCounts, r.ts_us))
                .or_default()
                .push(r.clone());
        }
        for (p, rows) in counts {
            let b = counts_batch(&rows)?;
            self.put_data(Table::GoroutineCounts, &p, &file, &b, &mut st, rows.len())
                .await?;
        }

        let mut samples: BTreeMap<Partition, Vec<SampleRow>> = BTreeMap::new();
        for r in &batch.samples {
            samples
                .entry(Partition::for_ts(Table::GoroutineSamples, r.ts_us))
                .or_default()
                .push(r.clone());
        }
        // Stacks go to the date partition of every sample that uses them, so that a query
        // pruned to one date still finds its stacks there.
        let mut stacks: BTreeMap<String, Vec<StackRow>> = BTreeMap::new();
        let mut wanted: BTreeMap<String, HashSet<StackId>> = BTreeMap::new();
        for (p, rows) in &samples {
            let set = wanted.entry(p.date.clone()).or_default();
            set.extend(rows.iter().map(|r| r.group.stack_id));
        }
        for (date, ids) in wanted {
            let known = self.stacks_in(&date).await?;
            let mut new_rows = Vec::new();
            let mut ids: Vec<StackId> = ids.into_iter().collect();
            ids.sort();
            for id in ids {
                if known.contains(&id.as_i64()) {
                    continue;
                }
                if let Some(row) = batch.stacks.get(&id) {
                    new_rows.push(row.clone());
                }
            }
            if !new_rows.is_empty() {
                stacks.insert(date, new_rows);
            }
        }
        for (p, rows) in samples {
            let b = samples_batch(&rows)?;
            self.put_data(Table::GoroutineSamples, &p, &file, &b, &mut st, rows.len())
                .await?;
        }
        for (date, rows) in stacks {
            let b = stacks_batch(&rows)?;
            let p = Partition {
                date: date.clone(),
                hour: None,
            };
            self.put_data(Table::Stacks, &p, &file, &b, &mut st, rows.len())
                .await?;
            st.stacks
                .insert(date, rows.iter().map(|r| r.stack_id.as_i64()).collect());
        }

        let mut status: BTreeMap<Partition, Vec<StatusRow>> = BTreeMap::new();
        for r in &batch.status {
            status
                .entry(Partition::for_ts(Table::ScrapeStatus, r.ts_us))
                .or_default()
                .push(r.clone());
        }
        for (p, rows) in status {
            let b = status_batch(&rows)?;
            self.put_data(Table::ScrapeStatus, &p, &file, &b, &mut st, rows.len())
                .await?;
        }

        let mut logs: BTreeMap<Partition, Vec<LogRow>> = BTreeMap::new();
        for r in &batch.log {
            logs.entry(Partition::for_ts(Table::IngestLog, r.ingested_at_us))
                .or_default()
                .push(r.clone());
        }
        for (p, rows) in logs {
            let b = log_batch(&rows)?;
            self.put_data(Table::IngestLog, &p, &file, &b, &mut st, 0)
                .await?;
        }
        Ok(st)
    }

    /// What the ingest log holds, as of the latest commit; later commits by others are taken
    /// into account when this writer commits.
    pub async fn imported(&mut self) -> Result<Imported> {
        let raw = self.store.raw();
        let vis = crate::visibility::Visibility::load(&raw, self.store.root()).await?;
        let head = vis.head;
        let reader: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
            crate::visibility::VisibleStore::new(raw, std::sync::Arc::new(vis)),
        );
        let table_path = self.store.table_path(Table::IngestLog);
        let mut out = Imported::default();
        let cols = [
            "content_hash",
            "status",
            "namespace",
            "pod",
            "snapshot_ts",
            "format",
            "ingest_key",
        ];
        for meta in crate::store::list_parquet(&reader, &table_path).await? {
            for b in crate::store::read_parquet(&reader, &meta, Some(&cols[..])).await? {
                collect_imported(&b, &mut out);
            }
        }
        self.head = Some(self.head.unwrap_or(0).max(head));
        Ok(out)
    }

    /// Content hashes already imported successfully (and those that failed before), from the
    /// ingest log. Kept for callers that dedupe on content alone (Prometheus pages, whose rows
    /// carry their own identity): the keys of those rows are their content hashes.
    pub async fn imported_hashes(&mut self) -> Result<(HashSet<String>, HashSet<String>)> {
        let i = self.imported().await?;
        Ok((i.ok, i.failed))
    }
}

fn collect_imported(b: &arrow::array::RecordBatch, out: &mut Imported) {
    use arrow::datatypes::TimestampMicrosecondType;
    let (Some(h), Some(s)) = (b.column_by_name("content_hash"), b.column_by_name("status")) else {
        return;
    };
    let h = h.as_string::<i32>();
    let s = s.as_string::<i32>();
    let ns = b.column_by_name("namespace").map(|c| c.as_string::<i32>());
    let pod = b.column_by_name("pod").map(|c| c.as_string::<i32>());
    let ts = b
        .column_by_name("snapshot_ts")
        .map(|c| c.as_primitive::<TimestampMicrosecondType>());
    let fmt = b.column_by_name("format").map(|c| c.as_string::<i32>());
    let key = b.column_by_name("ingest_key").map(|c| c.as_string::<i32>());
    fn get(a: Option<&arrow::array::StringArray>, i: usize) -> Option<&str> {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
    }
    for i in 0..b.num_rows() {
        if h.is_null(i) {
            continue;
        }
        let hash = h.value(i);
        // `partial`: a cut dump whose complete records landed; imported too.
        if !matches!(s.value(i), "ok" | "partial") {
            out.failed.insert(hash.to_string());
            continue;
        }
        let format = get(fmt, i).unwrap_or("");
        let (ns, pod) = (get(ns, i), get(pod, i));
        let ts = ts.filter(|a| a.is_valid(i)).map(|a| a.value(i));
        let k = match get(key, i) {
            Some(k) => k.to_string(),
            // Written before the key column: Prometheus rows are keyed by content (their rows
            // carry their own identity), dumps by content and identity.
            None => match (ns, pod, ts) {
                (Some(n), Some(p), Some(t)) if format != "prometheus" => {
                    let (kind, base) = split_format(format);
                    key_of(hash, None, n, p, None, t, kind, base)
                }
                _ => hash.to_string(),
            },
        };
        out.ok.insert(k);
        if let (Some(n), Some(p), Some(t)) = (ns, pod, ts)
            && format != "prometheus"
        {
            out.slots.insert(
                (n.to_string(), p.to_string(), t, format.to_string()),
                hash.to_string(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pod: &str, ts_us: i64) -> CountRow {
        CountRow {
            target: Target {
                namespace: "shop".into(),
                pod: pod.into(),
                ..Default::default()
            },
            ts_us,
            goroutines: 7,
            source: "prometheus".into(),
            format: "prometheus".into(),
            ..Default::default()
        }
    }

    /// A stream's rows over two days land in one commit with its log row; streamed files older
    /// than MAX_STAGED at commit get new names first (a sweep of orphans must not take them),
    /// and the old names are gone.
    #[test]
    fn a_count_stream_commits_its_rows_once_and_renames_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut w = Writer::new(store.clone());
            let mut s = w.count_stream();
            let day = 86_400_000_000i64;
            let t0 = 1_795_824_000_000_000i64;
            let rows: Vec<CountRow> = (0..2000)
                .map(|i| row(&format!("p-{}", i % 3), t0 + i * 60_000_000))
                .collect();
            assert!(rows.last().unwrap().ts_us >= t0 + day, "spans two days");
            w.stream_counts(&mut s, rows[..1000].to_vec())
                .await
                .unwrap();
            w.stream_counts(&mut s, rows[1000..].to_vec())
                .await
                .unwrap();
            assert_eq!(s.rows(), 2000);
            let Some(old) = Instant::now().checked_sub(MAX_STAGED + Duration::from_secs(1)) else {
                return; // a machine up for less than MAX_STAGED: nothing to age
            };
            s.started = old;
            let first_names: Vec<_> = s.open.values().map(|(p, _)| p.clone()).collect();
            assert_eq!(first_names.len(), 2, "one file per date");
            let log = LogRow {
                ingested_at_us: t0,
                source: "test".into(),
                content_hash: "h".into(),
                format: Some("prometheus".into()),
                rows: 2000,
                status: "ok",
                ..Default::default()
            };
            let stats = w.commit_stream(s, log).await.unwrap();
            assert_eq!((stats.rows, stats.conflicts), (2000, 0));
            for p in &first_names {
                assert!(store.raw().head(p).await.is_err(), "{p} renamed");
            }
            let n: usize = store
                .read_columns(Table::GoroutineCounts, &["pod"], None)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert_eq!(n, 2000);
            let (ok, _) = w.imported_hashes().await.unwrap();
            assert!(ok.contains("h"));
        });
    }
}
