//! Live ingest: one pass over the targets (the CronJob runs one per minute; `--every` loops).
//!
//! ```text
//!  targets ─┬─ GET /metrics                       go_goroutines, threads, heap, GC, start time
//!           ├─ GET /debug/pprof/goroutine?debug=1  every pass: cheap, keeps pprof labels
//!           ├─ GET …/goroutine?debug=2             when due: growth since the last full dump,
//!           │                                      or every Nth pass (it stops the world);
//!           │                                      another format in reply (the Go agent's
//!           │                                      fuse) is an error, not landed
//!           └─ GET …/goroutineleak?debug=1         where served (a 404 is remembered)
//!        concurrently, bounded, each under its own timeout, all under a pass deadline;
//!        every body streamed into its parser within one memory budget (budget, stream)
//!  ─▶ as targets complete: Chunk (counts, samples, stacks, scrape_status of N targets)
//!        ─commit─▶ store, then state ─▶ _state/ingest.json; next chunk …
//!                                        (ingest-shard-I.json under --shard, [`shard`])
//! ```
//!
//! - [`budget`]: the bytes the bodies in flight may hold together (a semaphore of bytes).
//! - [`stream`]: bodies read chunk by chunk into the metrics reader or the dump parser.
//! - [`metrics`]: a strict, streaming reader of the Prometheus exposition.
//! - [`http`]: clients, size caps, credentials; [`targets`], [`discovery`]: what to scrape.
//! - [`driver`]: a run of passes (`--every`), discovery before each, and the exit rule.
//!
//! Memory: what a pass holds is the budget (bodies and their parsers' state), one chunk's
//! rows, and the state; none of it grows with what a target sends beyond its caps. A chunk
//! closes after `commit_every` targets or when its bodies held a quarter of the budget.
//!
//! State that must outlive a one-pass process — pass counters, when each target last gave a
//! full dump, whether it serves the leak profile, first-seen times of its goroutines — lives in
//! one JSON object in the store, written atomically after each chunk's commit. A crash (OOM,
//! kill -9) loses the rows and state of the chunk in flight only; the next pass has a new
//! time, so nothing of the crashed pass is written twice.

pub mod budget;
pub mod discovery;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod shard;
pub mod stream;
pub mod targets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use leakhound_schemas::{DumpFormat, ProfileKind};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::residence::{IdTracker, TrackedIds};
use crate::rows::{CountRow, StatusRow};
use crate::store::Store;
use crate::writer::{Batch, CommitStats, Writer};
use budget::MemoryBudget;
use http::{Clients, FetchError};
use stream::Fetched;
use targets::ScrapeTarget;

pub const STATE_PATH: &str = "_state/ingest.json";

/// Default memory budget of a pass's bodies: 3/8 of the CronJob's 256 MiB limit
/// (the ingest CronJob of `deploy/leakhound.yaml`), the rest for the runtime, the chunk's rows, the state, the
/// Parquet writer and what the allocator keeps (with half of it, 128 MiB, 50 hostile targets of
/// 1,000 took a pass to 249 MiB).
pub const DEFAULT_MEMORY_BUDGET: usize = 96 << 20;

/// Default targets per committed chunk.
pub const DEFAULT_COMMIT_EVERY: usize = 250;

#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Targets scraped at once.
    pub concurrency: usize,
    /// Per target, for all its requests together.
    pub timeout: Duration,
    /// For the whole pass; targets not done by then are reported as such.
    pub deadline: Duration,
    /// Largest response body accepted (after gzip decoding). A goroutine profile is also
    /// held to what the memory budget can parse ([`stream::goroutine_body_limit`],
    /// [`stream::PARSE_CHARGE`]).
    pub max_body: usize,
    /// Bytes the bodies in flight may hold together ([`budget`]): what bounds the pass's
    /// memory whatever its targets send.
    pub memory_budget: usize,
    /// Targets per chunk: the rows of this many completed targets are committed together,
    /// then the state is saved; a crash loses at most the chunk in flight.
    pub commit_every: usize,
    /// Take a debug=2 dump at least every N passes.
    pub debug2_every: u64,
    /// ... or when goroutines grew by this ratio since the last full dump ...
    pub debug2_growth_ratio: f64,
    /// ... and by at least this many.
    pub debug2_growth_min: i64,
    /// Ask again for the leak profile of a target that answered 404, every N passes.
    pub leak_recheck_every: u64,
    /// This process is one shard of several (`--shard I/N`): only what names the batches
    /// depends on it here; which targets it scrapes is decided before ([`driver`]).
    pub shard: Option<shard::Shard>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            concurrency: 64,
            timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(50),
            max_body: 64 << 20,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            commit_every: DEFAULT_COMMIT_EVERY,
            debug2_every: 10,
            debug2_growth_ratio: 1.2,
            debug2_growth_min: 20,
            leak_recheck_every: 60,
            shard: None,
        }
    }
}

/// Per-target state carried between passes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetState {
    pub passes: u64,
    pub last_debug2_pass: Option<u64>,
    pub last_debug2_goroutines: Option<i64>,
    /// `Some(false)` after a 404 (asked again every `leak_recheck_every` passes).
    pub leak_profile: Option<bool>,
    pub leak_checked_pass: u64,
    #[serde(default)]
    pub ids: TrackedIds,
    /// The process the ids belong to: its start (metrics, seconds) and its container's restart
    /// count (discovery). Goroutine ids begin again at 1 in a new process, so a restart starts
    /// the tracking afresh instead of handing the new goroutines the old ones' ages.
    #[serde(default)]
    pub process_start_s: Option<f64>,
    #[serde(default)]
    pub container_restarts: Option<i64>,
}

impl TargetState {
    /// The state without its goroutine ids: what deciding the requests of a pass needs.
    fn schedule(&self) -> TargetState {
        TargetState {
            passes: self.passes,
            last_debug2_pass: self.last_debug2_pass,
            last_debug2_goroutines: self.last_debug2_goroutines,
            leak_profile: self.leak_profile,
            leak_checked_pass: self.leak_checked_pass,
            ids: TrackedIds::default(),
            process_start_s: self.process_start_s,
            container_restarts: self.container_restarts,
        }
    }

    /// Note the process seen now; true when it is not the one seen before.
    fn restarted(&mut self, process_start_s: Option<f64>, container_restarts: Option<i64>) -> bool {
        let changed = matches!((self.process_start_s, process_start_s), (Some(a), Some(b)) if a != b)
            || matches!((self.container_restarts, container_restarts), (Some(a), Some(b)) if a != b);
        self.process_start_s = process_start_s.or(self.process_start_s);
        self.container_restarts = container_restarts.or(self.container_restarts);
        changed
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IngestState {
    pub targets: BTreeMap<String, TargetState>,
    /// Where it is kept, relative to the store root: [`STATE_PATH`], or the shard's own file
    /// ([`shard::Shard::state_path`]). Not part of the JSON.
    #[serde(skip)]
    file: Option<String>,
}

impl IngestState {
    /// The unsharded run's state ([`STATE_PATH`]).
    pub async fn load(store: &Store) -> Result<IngestState> {
        IngestState::load_for(store, None).await
    }

    /// The state of `shard` (or the unsharded one).
    pub async fn load_for(store: &Store, shard: Option<shard::Shard>) -> Result<IngestState> {
        let file = shard.map_or_else(|| STATE_PATH.to_string(), |s| s.state_path());
        let mut state = read_state(store, &file).await?.unwrap_or_default();
        state.file = Some(file);
        Ok(state)
    }

    fn path(&self, store: &Store) -> Path {
        let rel = self.file.as_deref().unwrap_or(STATE_PATH);
        let mut path = store.root().clone();
        for part in rel.split('/') {
            path = path.join(part);
        }
        path
    }

    /// Take the state of `missing` targets (keys this state has no entry for) from the other
    /// state files under `_state/` — other shards', the unsharded one — each from the file
    /// that tracked it most recently (most passes): the targets that moved to this shard when
    /// the shard count changed keep their goroutines' first-seen times. Returns how many were
    /// taken. Reads the other files only when something is missing.
    pub async fn adopt(&mut self, store: &Store, missing: &[String]) -> Result<usize> {
        let missing: Vec<&String> = missing
            .iter()
            .filter(|k| !self.targets.contains_key(*k))
            .collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let own = self.file.clone().unwrap_or_else(|| STATE_PATH.to_string());
        let dir = store.root().clone().join("_state");
        let listed: Vec<object_store::ObjectMeta> = store
            .raw()
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| Error::ObjectStore {
                path: dir.to_string(),
                source: e,
            })?;
        let mut files: Vec<String> = listed
            .iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .filter(|f| f.starts_with("ingest") && f.ends_with(".json"))
            .map(|f| format!("_state/{f}"))
            .filter(|f| *f != own)
            .collect();
        files.sort();
        let mut found: BTreeMap<String, TargetState> = BTreeMap::new();
        for f in files {
            // Read one file at a time and keep only the entries wanted.
            let Some(other) = read_state(store, &f).await? else {
                continue;
            };
            for (k, v) in other.targets {
                if missing.contains(&&k) && found.get(&k).is_none_or(|seen| seen.passes < v.passes)
                {
                    found.insert(k, v);
                }
            }
        }
        let n = found.len();
        self.targets.extend(found);
        Ok(n)
    }

    pub async fn save(&self, store: &Store) -> Result<()> {
        let path = self.path(store);
        let body = serde_json::to_vec(self).unwrap_or_default();
        store
            .raw()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| Error::ObjectStore {
                path: path.to_string(),
                source: e,
            })?;
        Ok(())
    }
}

/// The state file `rel` (relative to the store root), if there is one.
async fn read_state(store: &Store, rel: &str) -> Result<Option<IngestState>> {
    let mut path = store.root().clone();
    for part in rel.split('/') {
        path = path.join(part);
    }
    match store.raw().get(&path).await {
        Ok(g) => {
            let bytes = g.bytes().await.map_err(|e| Error::ObjectStore {
                path: path.to_string(),
                source: e,
            })?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Input {
                    source_name: path.to_string(),
                    message: format!("corrupt ingest state ({e}); delete it to start afresh"),
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::ObjectStore {
            path: path.to_string(),
            source: e,
        }),
    }
}

/// What one target gave in one pass (fetched and parsed concurrently, folded in as it
/// completes). Dropping it gives its bodies' memory back to the budget.
#[derive(Debug, Default)]
struct Scraped {
    metrics: Option<metrics::GoMetrics>,
    /// Why `/metrics` gave nothing (its fetch or its parse).
    metrics_error: Option<String>,
    debug1: Option<Fetched>,
    debug2: Option<Fetched>,
    leak: Option<Fetched>,
    leak_supported: Option<bool>,
    /// The Go agent's container context, from the debug=1 response (empty elsewhere).
    context: crate::context::ContainerContext,
    errors: Vec<String>,
    bytes: i64,
}

/// The outcome of one pass.
#[derive(Debug, Default, Clone)]
pub struct PassSummary {
    pub targets: usize,
    pub up: usize,
    pub debug2_taken: usize,
    pub leak_profiles: usize,
    pub failed: Vec<(String, String)>,
    /// Every chunk's commit, added up.
    pub commit: CommitStats,
    /// Chunks committed (each a writer commit followed by a save of the state).
    pub chunks: usize,
    /// Most bytes the bodies in flight held of the memory budget at once.
    pub budget_peak: usize,
    pub duration: Duration,
}

impl PassSummary {
    /// Targets that gave neither metrics nor a goroutine profile.
    pub fn down(&self) -> usize {
        self.targets - self.up
    }
}

async fn scrape_one(
    clients: &Clients,
    budget: &MemoryBudget,
    t: &ScrapeTarget,
    st: &TargetState,
    opts: &PassOptions,
    pass: u64,
) -> Scraped {
    let mut out = Scraped::default();
    let budget_time = opts.timeout;
    let started = Instant::now();
    let left = || {
        budget_time
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1))
    };

    match stream::fetch_metrics(clients, t, opts.max_body, budget, left()).await {
        Ok((m, bytes)) => {
            out.bytes += bytes;
            out.metrics = Some(m);
        }
        Err(e) => {
            let e = e.to_string();
            out.errors.push(e.clone());
            out.metrics_error = Some(e);
        }
    }

    let p = &t.pprof_path;
    let d1 = format!("{p}/goroutine?debug=1");
    match stream::fetch_snapshot(clients, t, &d1, opts.max_body, budget, left()).await {
        Ok(mut f) => {
            out.bytes += f.bytes;
            match f.context.take() {
                Some(Ok(c)) => out.context = c,
                Some(Err(e)) => out.errors.push(e),
                None => {}
            }
            out.debug1 = Some(f);
        }
        Err(e) => out.errors.push(e.to_string()),
    }

    let now_goroutines = out
        .metrics
        .as_ref()
        .and_then(|m| m.goroutines)
        .or_else(|| out.debug1.as_ref().map(|f| f.snapshot.total() as i64));
    let due = match (
        st.last_debug2_pass,
        st.last_debug2_goroutines,
        now_goroutines,
    ) {
        (None, _, _) => true,
        (Some(last), _, _) if pass.saturating_sub(last) >= opts.debug2_every => true,
        (_, Some(before), Some(now)) => {
            now - before >= opts.debug2_growth_min
                && now as f64 >= before as f64 * opts.debug2_growth_ratio
        }
        _ => false,
    };
    if due && (out.debug1.is_some() || out.metrics.is_some()) {
        let d2 = format!("{p}/goroutine?debug=2");
        match stream::fetch_snapshot(clients, t, &d2, opts.max_body, budget, left()).await {
            // A target that will not write a full dump now answers with another format (the
            // Go agent's fuse serves debug=1, saying so in `Leakhound-Fuse`): that is neither
            // a debug=2 capture nor a second debug=1 snapshot of this pass to land.
            Ok(f) if f.snapshot.format != Some(DumpFormat::Debug2) => out.errors.push(format!(
                "{}: debug=2 answered with {} (a fuse on the target?); not landed",
                t.url(&d2),
                f.snapshot
                    .format
                    .map_or("an unknown format", DumpFormat::as_str)
            )),
            Ok(f) => {
                out.bytes += f.bytes;
                out.debug2 = Some(f);
            }
            Err(e) => out.errors.push(e.to_string()),
        }
    }

    let ask_leak = match st.leak_profile {
        Some(false) => pass.saturating_sub(st.leak_checked_pass) >= opts.leak_recheck_every,
        _ => true,
    };
    if ask_leak && (out.debug1.is_some() || out.metrics.is_some()) {
        let lp = format!("{p}/goroutineleak?debug=1");
        match stream::fetch_snapshot(clients, t, &lp, opts.max_body, budget, left()).await {
            Ok(f) if f.snapshot.kind == ProfileKind::GoroutineLeak => {
                out.bytes += f.bytes;
                out.leak_supported = Some(true);
                out.leak = Some(f);
            }
            // An old net/http/pprof serves an index or the goroutine profile for an
            // unknown name: not a leak profile.
            Ok(_) => out.leak_supported = Some(false),
            Err(e) if e.is_not_found() => out.leak_supported = Some(false),
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    out
}

/// Rows of the targets done since the last commit.
struct Chunk {
    batch: Batch,
    targets: usize,
    /// Bytes the chunk's bodies held of the budget when folded (what its rows take, roughly).
    bytes: usize,
}

impl Chunk {
    fn new(now_us: i64, shard: Option<shard::Shard>, index: usize) -> Chunk {
        let mut batch = Batch::default();
        // Chunks of one pass share no content hash of their own when every target is down;
        // shards running at the same moment must not name their batches alike either.
        let shard = shard.map(|s| format!("-shard-{s}")).unwrap_or_default();
        batch.salt(&format!("pass-{now_us}{shard}-chunk-{index}"));
        Chunk {
            batch,
            targets: 0,
            bytes: 0,
        }
    }
}

/// Fold one target's scrape into the chunk's rows and the target's state.
fn fold(
    chunk: &mut Chunk,
    summary: &mut PassSummary,
    t: &ScrapeTarget,
    st: &mut TargetState,
    scraped: Scraped,
    ms: f64,
    now_us: i64,
) {
    let key = t.key();
    st.passes += 1;
    let pass = st.passes;
    chunk.targets += 1;
    chunk.bytes += [&scraped.debug1, &scraped.debug2, &scraped.leak]
        .iter()
        .filter_map(|f| f.as_ref().map(|f| f.charge.bytes()))
        .sum::<usize>();
    let batch = &mut chunk.batch;
    let up = scraped.metrics.is_some() || scraped.debug1.is_some();
    let identity = &t.identity;
    let restarted = st.restarted(
        scraped
            .metrics
            .as_ref()
            .and_then(|m| m.process_start_time_s),
        t.container_restarts,
    );
    // One tracker per target: targets share nothing, and the pass then holds one target's
    // ids twice at most, not every target's.
    let mut tracker = IdTracker::default();
    if let Some(ids) = std::mem::take(&mut st.ids).into_option()
        && !restarted
    {
        tracker.import(identity, ids);
    }
    // Counts: metrics first, the profile's total where metrics are missing.
    if up {
        let m = scraped.metrics.clone().unwrap_or_default();
        let goroutines = m
            .goroutines
            .or_else(|| scraped.debug1.as_ref().map(|f| f.snapshot.total() as i64))
            .unwrap_or(0);
        let hash = scraped
            .debug1
            .as_ref()
            .map(|f| f.content_hash.clone())
            .unwrap_or_default();
        batch.add_counts(
            vec![CountRow {
                target: identity.clone(),
                ts_us: now_us,
                goroutines,
                threads: m.threads,
                heap_bytes: m.heap_alloc_bytes,
                gc_count: m.gc_count,
                process_start_time_us: m.process_start_time_s.map(|s| (s * 1e6) as i64),
                pod_start_time_us: t.pod_start_time_us,
                container_restarts: t.container_restarts,
                scrape_duration_ms: Some(ms),
                source: "scrape".into(),
                format: if scraped.metrics.is_some() {
                    "metrics"
                } else {
                    "debug1"
                }
                .into(),
                content_hash: Some(hash),
                context: scraped.context,
                ..Default::default()
            }],
            &format!("{key}@{now_us}"),
        );
    }
    // Samples. A goroutine-profile snapshot adds its own count row; the scrape already
    // wrote one, so only samples are kept from these (see `add_samples`).
    if let Some(f) = &scraped.debug1 {
        batch.add_samples(&mut tracker, identity, now_us, &f.content_hash, &f.snapshot);
    }
    if let Some(f) = &scraped.debug2 {
        batch.add_samples(&mut tracker, identity, now_us, &f.content_hash, &f.snapshot);
        st.last_debug2_pass = Some(pass);
        st.last_debug2_goroutines = Some(f.snapshot.total() as i64);
        summary.debug2_taken += 1;
    }
    if let Some(f) = &scraped.leak {
        batch.add_samples(&mut tracker, identity, now_us, &f.content_hash, &f.snapshot);
        summary.leak_profiles += 1;
    }
    if let Some(sup) = scraped.leak_supported {
        st.leak_profile = Some(sup);
        st.leak_checked_pass = pass;
    }
    if let Some(ids) = tracker.export(identity) {
        st.ids = ids;
    }
    let error = (!scraped.errors.is_empty()).then(|| scraped.errors.join("; "));
    if let Some(e) = &error {
        summary.failed.push((key.clone(), e.clone()));
        tracing::warn!(target_key = %key, error = %e, "Failed to scrape part or all of a target.");
    }
    if up {
        summary.up += 1;
    }
    batch.status.push(StatusRow {
        target: identity.clone(),
        ts_us: now_us,
        up,
        error,
        duration_ms: ms,
        metrics_ok: scraped.metrics.is_some() && scraped.metrics_error.is_none(),
        debug1_ok: scraped.debug1.is_some(),
        debug2_taken: scraped.debug2.is_some(),
        leak_profile: match st.leak_profile {
            Some(true) => "supported",
            Some(false) => "unsupported",
            None => "unknown",
        },
        bytes: scraped.bytes,
    });
}

/// Land a chunk's rows, then the state that goes with them.
async fn commit_chunk(
    writer: &mut Writer,
    state: &IngestState,
    chunk: Chunk,
    summary: &mut PassSummary,
) -> Result<()> {
    let stats = writer.commit(chunk.batch).await?;
    summary.commit.files += stats.files;
    summary.commit.rows += stats.rows;
    summary.chunks += 1;
    state.save(writer.store()).await
}

/// One pass over `targets`: fetch and parse within the memory budget, land the rows in chunks
/// of targets as they complete (each chunk a commit, then a save of the state), so that a
/// crash loses at most the chunk in flight.
pub async fn run_pass(
    writer: &mut Writer,
    clients: &Clients,
    targets: &[ScrapeTarget],
    state: &mut IngestState,
    opts: &PassOptions,
    now_us: i64,
) -> Result<PassSummary> {
    let started = Instant::now();
    let mut summary = PassSummary {
        targets: targets.len(),
        ..Default::default()
    };
    // What the scrapes need to decide what is due; the goroutine ids stay in `state`, for
    // the fold.
    let snapshot_state: Arc<BTreeMap<String, TargetState>> = Arc::new(
        state
            .targets
            .iter()
            .map(|(k, v)| (k.clone(), v.schedule()))
            .collect(),
    );
    let deadline = tokio::time::Instant::now() + opts.deadline;
    let budget = MemoryBudget::new(opts.memory_budget, opts.concurrency);
    let commit_every = opts.commit_every.max(1);
    // A chunk also closes when its bodies held this much: its rows are about as large.
    let commit_bytes = budget.total() / 4;

    // The scrapes and the fold run side by side on this task: while a chunk commits, the
    // bodies in flight keep being read. What is scraped and not yet folded waits in a channel
    // (its bodies' memory still charged to the budget).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Scraped, f64)>(opts.concurrency.max(1));
    let budget_ref = &budget;
    let scrapes = async move {
        let mut stream = futures::stream::iter(targets.iter().enumerate())
            .map(|(i, t)| {
                let st = snapshot_state.get(&t.key()).cloned().unwrap_or_default();
                let pass = st.passes + 1;
                async move {
                    let t0 = Instant::now();
                    let r = tokio::time::timeout(
                        opts.timeout,
                        scrape_one(clients, budget_ref, t, &st, opts, pass),
                    )
                    .await
                    .unwrap_or_else(|_| Scraped {
                        errors: vec![
                            FetchError::Timeout {
                                url: t.base.to_string(),
                            }
                            .to_string(),
                        ],
                        ..Default::default()
                    });
                    (i, r, t0.elapsed().as_secs_f64() * 1000.0)
                }
            })
            .buffer_unordered(opts.concurrency.max(1));
        loop {
            let item = tokio::select! {
                next = tokio::time::timeout_at(deadline, stream.next()) => match next {
                    Ok(Some(item)) => item,
                    // The end, or the pass deadline: whoever is not done is reported below.
                    Ok(None) | Err(_) => break,
                },
                // The fold stopped (a failed commit): stop scraping.
                _ = tx.closed() => break,
            };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    };
    let folds = async {
        let mut done = vec![false; targets.len()];
        let mut chunk = Chunk::new(now_us, opts.shard, 0);
        while let Some((i, r, ms)) = rx.recv().await {
            done[i] = true;
            let t = &targets[i];
            let st = state.targets.entry(t.key()).or_default();
            fold(&mut chunk, &mut summary, t, st, r, ms, now_us);
            if chunk.targets >= commit_every || chunk.bytes >= commit_bytes {
                let full = std::mem::replace(
                    &mut chunk,
                    Chunk::new(now_us, opts.shard, summary.chunks + 1),
                );
                if let Err(e) = commit_chunk(writer, state, full, &mut summary).await {
                    rx.close();
                    return Err(e);
                }
            }
        }
        Ok((done, chunk))
    };
    let ((), folded) = tokio::join!(scrapes, folds);
    let (done, mut chunk) = folded?;
    for (i, t) in targets.iter().enumerate() {
        if done[i] {
            continue;
        }
        let st = state.targets.entry(t.key()).or_default();
        let scraped = Scraped {
            errors: vec![format!("pass deadline of {:?} reached", opts.deadline)],
            ..Default::default()
        };
        let ms = opts.deadline.as_secs_f64() * 1000.0;
        fold(&mut chunk, &mut summary, t, st, scraped, ms, now_us);
        if chunk.targets >= commit_every {
            let full = std::mem::replace(
                &mut chunk,
                Chunk::new(now_us, opts.shard, summary.chunks + 1),
            );
            commit_chunk(writer, state, full, &mut summary).await?;
        }
    }
    if chunk.targets > 0 || summary.chunks == 0 {
        commit_chunk(writer, state, chunk, &mut summary).await?;
    }
    summary.budget_peak = budget.peak();
    summary.duration = started.elapsed();
    Ok(summary)
}

trait IntoOption: Sized {
    fn into_option(self) -> Option<Self>;
}

impl IntoOption for TrackedIds {
    fn into_option(self) -> Option<Self> {
        (!self.first_seen.is_empty() || self.latest_ts_us != 0).then_some(self)
    }
}
