//! Turning snapshots into rows and landing them in the store, one batch at a time.
//!
//! A batch becomes one Parquet file per table and partition, named after the batch's content
//! (`part-<hash of the content hashes>.parquet`): replaying a batch after a crash overwrites the
//! same objects instead of adding rows twice. The `ingest_log` rows go last, so a source is only
//! marked imported once its data is stored.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use leakhound_schemas::model::{DumpFormat, Snapshot, StackId};
use leakhound_schemas::{ProfileKind, Table};

use crate::error::Result;
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
}

/// What a commit wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub files: usize,
    pub rows: usize,
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
        let format = snap.format.unwrap_or(DumpFormat::Debug2);
        let mut rows = 0;
        let ages = if snap.kind == ProfileKind::Goroutine {
            tracker.observe(target, ts_us, &snap.groups)
        } else {
            Vec::new()
        };
        for (i, g) in snap.groups.iter().enumerate() {
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
            });
            rows += 1;
        }
        self.content_hashes.push(content_hash.to_string());
        rows
    }

    pub fn add_counts(&mut self, rows: Vec<CountRow>, content_hash: &str) {
        self.counts.extend(rows);
        self.content_hashes.push(content_hash.to_string());
    }

    /// Make the batch's name depend on `s` too (a pass's time): two batches with no content
    /// hash in common must not share file names.
    pub fn salt(&mut self, s: &str) {
        self.content_hashes.push(s.to_string());
    }

    pub fn add_log(&mut self, row: LogRow) {
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

/// Writes batches into a store, remembering which stacks each date partition already holds.
pub struct Writer {
    store: Store,
    known_stacks: HashMap<String, HashSet<i64>>,
}

impl Writer {
    pub fn new(store: Store) -> Self {
        Writer {
            store,
            known_stacks: HashMap::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
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

    /// Write every table's rows of `batch`, the ingest log last.
    pub async fn commit(&mut self, batch: Batch) -> Result<CommitStats> {
        let id = batch.id();
        let file = format!("part-{id}.parquet");
        let mut stats = CommitStats::default();

        let mut counts: BTreeMap<Partition, Vec<CountRow>> = BTreeMap::new();
        for r in batch.counts {
            counts
                .entry(Partition::for_ts(Table::GoroutineCounts, r.ts_us))
                .or_default()
                .push(r);
        }
        for (p, rows) in counts {
            let b = counts_batch(&rows)?;
            self.store
                .write_file(Table::GoroutineCounts, &p, &file, &b)
                .await?;
            stats.files += 1;
            stats.rows += rows.len();
        }

        let mut samples: BTreeMap<Partition, Vec<SampleRow>> = BTreeMap::new();
        for r in batch.samples {
            samples
                .entry(Partition::for_ts(Table::GoroutineSamples, r.ts_us))
                .or_default()
                .push(r);
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
            self.store
                .write_file(Table::GoroutineSamples, &p, &file, &b)
                .await?;
            stats.files += 1;
            stats.rows += rows.len();
        }
        for (date, rows) in stacks {
            let b = stacks_batch(&rows)?;
            let p = Partition {
                date: date.clone(),
                hour: None,
            };
            self.store.write_file(Table::Stacks, &p, &file, &b).await?;
            stats.files += 1;
            stats.rows += rows.len();
            let known = self.stacks_in(&date).await?;
            known.extend(rows.iter().map(|r| r.stack_id.as_i64()));
        }

        let mut status: BTreeMap<Partition, Vec<StatusRow>> = BTreeMap::new();
        for r in batch.status {
            status
                .entry(Partition::for_ts(Table::ScrapeStatus, r.ts_us))
                .or_default()
                .push(r);
        }
        for (p, rows) in status {
            let b = status_batch(&rows)?;
            self.store
                .write_file(Table::ScrapeStatus, &p, &file, &b)
                .await?;
            stats.files += 1;
            stats.rows += rows.len();
        }

        let mut logs: BTreeMap<Partition, Vec<LogRow>> = BTreeMap::new();
        for r in batch.log {
            logs.entry(Partition::for_ts(Table::IngestLog, r.ingested_at_us))
                .or_default()
                .push(r);
        }
        for (p, rows) in logs {
            let b = log_batch(&rows)?;
            self.store
                .write_file(Table::IngestLog, &p, &file, &b)
                .await?;
            stats.files += 1;
        }
        Ok(stats)
    }

    /// Content hashes already imported successfully (and those that failed before), from the
    /// ingest log.
    pub async fn imported_hashes(&self) -> Result<(HashSet<String>, HashSet<String>)> {
        let batches = self
            .store
            .read_columns(Table::IngestLog, &["content_hash", "status"], None)
            .await?;
        let mut ok = HashSet::new();
        let mut failed = HashSet::new();
        for b in batches {
            let (Some(h), Some(s)) = (b.column_by_name("content_hash"), b.column_by_name("status"))
            else {
                continue;
            };
            let h = h.as_string::<i32>();
            let s = s.as_string::<i32>();
            for i in 0..b.num_rows() {
                if h.is_null(i) {
                    continue;
                }
                if s.value(i) == "ok" {
                    ok.insert(h.value(i).to_string());
                } else {
                    failed.insert(h.value(i).to_string());
                }
            }
        }
        Ok((ok, failed))
    }
}
