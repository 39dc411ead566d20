//! Live ingest: one pass over the targets (the CronJob runs one per minute; `--every` loops).
//!
//! ```text
//!  targets ─┬─ GET /metrics                       go_goroutines, threads, heap, GC, start time
//!           ├─ GET /debug/pprof/goroutine?debug=1  every pass: cheap, keeps pprof labels
//!           ├─ GET …/goroutine?debug=2             when due: growth since the last full dump,
//!           │                                      or every Nth pass (it stops the world)
//!           └─ GET …/goroutineleak?debug=1         where served (a 404 is remembered)
//!        concurrently, bounded, each under its own timeout, all under a pass deadline
//!  ─▶ Batch (counts, samples, stacks, scrape_status) ─commit─▶ store; state ─▶ _state/ingest.json
//! ```
//!
//! State that must outlive a one-pass process — pass counters, when each target last gave a
//! full dump, whether it serves the leak profile, first-seen times of its goroutines — lives in
//! one JSON object in the store, written atomically at the end of each pass.

pub mod discovery;
pub mod http;
pub mod metrics;
pub mod targets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use leakhound_schemas::{ProfileKind, Snapshot};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::parse;
use crate::residence::{IdTracker, TrackedIds};
use crate::rows::{CountRow, StatusRow};
use crate::store::Store;
use crate::writer::{Batch, CommitStats, Writer};
use http::{Clients, FetchError};
use targets::ScrapeTarget;

pub const STATE_PATH: &str = "_state/ingest.json";

#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Targets scraped at once.
    pub concurrency: usize,
    /// Per target, for all its requests together.
    pub timeout: Duration,
    /// For the whole pass; targets not done by then are reported as such.
    pub deadline: Duration,
    /// Largest response body accepted (after gzip decoding).
    pub max_body: usize,
    /// Take a debug=2 dump at least every N passes.
    pub debug2_every: u64,
    /// ... or when goroutines grew by this ratio since the last full dump ...
    pub debug2_growth_ratio: f64,
    /// ... and by at least this many.
    pub debug2_growth_min: i64,
    /// Ask again for the leak profile of a target that answered 404, every N passes.
    pub leak_recheck_every: u64,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            concurrency: 64,
            timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(50),
            max_body: 64 << 20,
            debug2_every: 10,
            debug2_growth_ratio: 1.2,
            debug2_growth_min: 20,
            leak_recheck_every: 60,
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
}

impl IngestState {
    pub async fn load(store: &Store) -> Result<IngestState> {
        let path = store.root().clone().join(STATE_PATH);
        match store.raw().get(&path).await {
            Ok(g) => {
                let bytes = g.bytes().await.map_err(|e| Error::ObjectStore {
                    path: path.to_string(),
                    source: e,
                })?;
                serde_json::from_slice(&bytes).map_err(|e| Error::Input {
                    source_name: path.to_string(),
                    message: format!("corrupt ingest state ({e}); delete it to start afresh"),
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(IngestState::default()),
            Err(e) => Err(Error::ObjectStore {
                path: path.to_string(),
                source: e,
            }),
        }
    }

    pub async fn save(&self, store: &Store) -> Result<()> {
        let path: Path = store.root().clone().join(STATE_PATH);
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

/// What one target gave in one pass (fetched and parsed concurrently, folded in afterwards).
#[derive(Debug, Default)]
struct Scraped {
    metrics: Option<metrics::GoMetrics>,
    debug1: Option<(Snapshot, String)>,
    debug2: Option<(Snapshot, String)>,
    leak: Option<(Snapshot, String)>,
    leak_supported: Option<bool>,
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
    pub commit: CommitStats,
    pub duration: Duration,
}

fn hash(b: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(b))
}

async fn parse_blocking(
    body: Bytes,
    name: String,
    max: u64,
) -> std::result::Result<Snapshot, String> {
    tokio::task::spawn_blocking(move || {
        let opts = parse::ParseOptions {
            max_decompressed_bytes: max,
            ..Default::default()
        };
        parse::parse_snapshot_with(&body[..], &name, &opts).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("parser task failed: {e}"))?
}

async fn scrape_one(
    clients: &Clients,
    t: &ScrapeTarget,
    st: &TargetState,
    opts: &PassOptions,
    pass: u64,
) -> Scraped {
    let mut out = Scraped::default();
    let budget = opts.timeout;
    let started = Instant::now();
    let left = || {
        budget
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1))
    };
    let text =
        "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

    match clients
        .get(t, &t.metrics_path, opts.max_body, left(), text)
        .await
    {
        Ok(b) => {
            out.bytes += b.len() as i64;
            match metrics::parse_go_metrics(&b) {
                Ok(m) => out.metrics = Some(m),
                Err(e) => out.errors.push(format!("{}: {e}", t.metrics_path)),
            }
        }
        Err(e) => out.errors.push(e.to_string()),
    }

    let p = &t.pprof_path;
    let d1 = format!("{p}/goroutine?debug=1");
    match clients.get(t, &d1, opts.max_body, left(), "*/*").await {
        Ok(b) => {
            out.bytes += b.len() as i64;
            let h = hash(&b);
            match parse_blocking(b, t.url(&d1), opts.max_body as u64).await {
                Ok(s) => out.debug1 = Some((s, h)),
                Err(e) => out.errors.push(format!("{d1}: {e}")),
            }
        }
        Err(e) => out.errors.push(e.to_string()),
    }

    let now_goroutines = out
        .metrics
        .as_ref()
        .and_then(|m| m.goroutines)
        .or_else(|| out.debug1.as_ref().map(|(s, _)| s.total() as i64));
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
        match clients.get(t, &d2, opts.max_body, left(), "*/*").await {
            Ok(b) => {
                out.bytes += b.len() as i64;
                let h = hash(&b);
                match parse_blocking(b, t.url(&d2), opts.max_body as u64).await {
                    Ok(s) => out.debug2 = Some((s, h)),
                    Err(e) => out.errors.push(format!("{d2}: {e}")),
                }
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
        match clients.get(t, &lp, opts.max_body, left(), "*/*").await {
            Ok(b) => {
                out.bytes += b.len() as i64;
                let h = hash(&b);
                match parse_blocking(b, t.url(&lp), opts.max_body as u64).await {
                    Ok(s) if s.kind == ProfileKind::GoroutineLeak => {
                        out.leak_supported = Some(true);
                        out.leak = Some((s, h));
                    }
                    // An old net/http/pprof serves an index or the goroutine profile for an
                    // unknown name: not a leak profile.
                    Ok(_) => out.leak_supported = Some(false),
                    Err(e) => out.errors.push(format!("{lp}: {e}")),
                }
            }
            Err(e) if e.is_not_found() => out.leak_supported = Some(false),
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    out
}

/// One pass over `targets`: fetch, parse, land one batch, update `state`.
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
    let snapshot_state: Arc<BTreeMap<String, TargetState>> = Arc::new(state.targets.clone());
    let deadline = tokio::time::Instant::now() + opts.deadline;

    let mut results: Vec<Option<(Scraped, f64)>> = Vec::new();
    results.resize_with(targets.len(), || None);
    {
        let mut stream = futures::stream::iter(targets.iter().enumerate())
            .map(|(i, t)| {
                let st = snapshot_state.get(&t.key()).cloned().unwrap_or_default();
                let pass = st.passes + 1;
                async move {
                    let t0 = Instant::now();
                    let r =
                        tokio::time::timeout(opts.timeout, scrape_one(clients, t, &st, opts, pass))
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
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some((i, r, ms))) => results[i] = Some((r, ms)),
                Ok(None) => break,
                Err(_) => break, // the pass deadline: whoever is not done is reported below
            }
        }
    }

    let mut batch = Batch::default();
    batch.salt(&format!("pass-{now_us}"));
    let mut tracker = IdTracker::default();
    for (t, r) in targets.iter().zip(results) {
        let key = t.key();
        let st = state.targets.entry(key.clone()).or_default();
        st.passes += 1;
        let pass = st.passes;
        let (scraped, ms) = r.unwrap_or_else(|| {
            (
                Scraped {
                    errors: vec![format!("pass deadline of {:?} reached", opts.deadline)],
                    ..Default::default()
                },
                opts.deadline.as_secs_f64() * 1000.0,
            )
        });
        let up = scraped.metrics.is_some() || scraped.debug1.is_some();
        let identity = &t.identity;
        let restarted = st.restarted(
            scraped
                .metrics
                .as_ref()
                .and_then(|m| m.process_start_time_s),
            t.container_restarts,
        );
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
                .or_else(|| scraped.debug1.as_ref().map(|(s, _)| s.total() as i64))
                .unwrap_or(0);
            let hash = scraped
                .debug1
                .as_ref()
                .map(|(_, h)| h.clone())
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
                    ..Default::default()
                }],
                &format!("{key}@{now_us}"),
            );
        }
        // Samples. A goroutine-profile snapshot adds its own count row; the scrape already
        // wrote one, so only samples are kept from these (see `add_samples`).
        if let Some((s, h)) = &scraped.debug1 {
            batch.add_samples(&mut tracker, identity, now_us, h, s);
        }
        if let Some((s, h)) = &scraped.debug2 {
            batch.add_samples(&mut tracker, identity, now_us, h, s);
            st.last_debug2_pass = Some(pass);
            st.last_debug2_goroutines = Some(s.total() as i64);
            summary.debug2_taken += 1;
        }
        if let Some((s, h)) = &scraped.leak {
            batch.add_samples(&mut tracker, identity, now_us, h, s);
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
            metrics_ok: scraped.metrics.is_some(),
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
    summary.commit = writer.commit(batch).await?;
    state.save(writer.store()).await?;
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
