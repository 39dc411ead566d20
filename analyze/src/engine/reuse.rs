//! A live step reuses the findings the previous step computed (issue 22): of the 24
//! evaluations of a 2-hour window, 23 were evaluated five minutes ago, on the same rows.
//!
//! ```text
//!  step k:   detectors at every evaluation ──▶ findings ──▶ episodes ──▶ events
//!                     └──▶ _state/analyze/findings-<step>-<group>.json.gz  (per group)
//!                          _state/analyze/findings.json                    (the manifest, last)
//!  step k+1: manifest valid? ── evaluations before the first late row ──▶ read back
//!                             └─ the rest (the new one, the late ones) ──▶ detectors
//! ```
//!
//! **What a reused finding is**: the finding as the step that first evaluated it computed it,
//! from the rows the store held then, as a Prometheus rule's past evaluations stay what they
//! were. A detector's findings at an evaluation do not depend on where the range starts (tested
//! for every detector: `detect::tests::findings_at_an_evaluation_do_not_depend_on_the_range_start`),
//! so a step that reuses gives what a step computing everything gives, but for what only
//! hindsight adds: the 3 days of STL context end 5 minutes later, and a pod gone for 10
//! minutes since is by now known gone.
//!
//! **When nothing is reused** (every evaluation recomputed): no manifest, an unreadable one (a
//! crash, another version), a different configuration or build (the manifest holds the
//! configuration, the version and a hash of this crate's sources, compared as text), another step or a later one (a replay, a clock going back), a
//! commit log the manifest's watermark no longer reaches (deleted under a checkpoint).
//! **Late rows**: every `goroutine_counts` file committed after the watermark (the commit
//! sequence read before the previous step read anything) is read for its smallest `ts` (the
//! Parquet footer's statistics); evaluations at or after the minute of the earliest are
//! recomputed. Compactions add no rows and are skipped. A group whose workloads the previous
//! step's objects do not all cover recomputes; an object that cannot be read is a miss.
//!
//! This is a cache, not data: losing it costs time, never a row; it is written only by live
//! steps that write results (not `--replay`, not `--no-write`, not `--no-reuse`), with the
//! manifest last (one put: objects it names are complete), and objects no manifest names are
//! deleted by the next step that writes one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::parquet::file::statistics::Statistics;
use futures::TryStreamExt;
use leakhound_ingest::Store;
use leakhound_ingest::commit;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::groups::Group;
use super::{AnalyzeConfig, Scope};
use crate::detect::{DetectorKind, Finding};
use crate::error::{Error, Result};

/// The manifest, relative to the store root.
pub const MANIFEST: &str = "_state/analyze/findings.json";
const DIR: &str = "_state/analyze";
/// Bumped when what is stored, or how a finding is computed, changes without a version bump.
pub const FORMAT: u32 = 1;

/// What the previous live step left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// leakhound's version and the analysis configuration, as text.
    pub fingerprint: String,
    /// The step's evaluations.
    pub first_s: i64,
    pub to_s: i64,
    /// The store's last commit before the step read anything.
    pub watermark: u64,
    pub objects: Vec<Object>,
}

/// One group's findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object {
    /// Relative to the store root.
    pub path: String,
    /// The (namespace, workload) of every scope it has findings for.
    pub units: Vec<(String, Option<String>)>,
}

/// A finding as stored: f64 as bits (NaN and infinities survive, and every bit).
#[derive(Serialize, Deserialize)]
struct Stored {
    scope: Scope,
    detector: DetectorKind,
    eval_s: i64,
    fired: bool,
    value: u64,
    baseline: Option<u64>,
    growth_per_s: u64,
    score: u64,
    reason: String,
    onset_s: Option<i64>,
    sustained: bool,
    window_s: i64,
    max_age_s: Option<i64>,
}

impl From<&Finding> for Stored {
    fn from(f: &Finding) -> Self {
        Stored {
            scope: f.scope.clone(),
            detector: f.detector,
            eval_s: f.eval_s,
            fired: f.fired,
            value: f.value.to_bits(),
            baseline: f.baseline.map(f64::to_bits),
            growth_per_s: f.growth_per_s.to_bits(),
            score: f.score.to_bits(),
            reason: f.reason.clone(),
            onset_s: f.onset_s,
            sustained: f.sustained,
            window_s: f.window_s,
            max_age_s: f.max_age_s,
        }
    }
}

impl From<Stored> for Finding {
    fn from(s: Stored) -> Self {
        Finding {
            scope: s.scope,
            detector: s.detector,
            eval_s: s.eval_s,
            fired: s.fired,
            value: f64::from_bits(s.value),
            baseline: s.baseline.map(f64::from_bits),
            growth_per_s: f64::from_bits(s.growth_per_s),
            score: f64::from_bits(s.score),
            reason: s.reason,
            onset_s: s.onset_s,
            sustained: s.sustained,
            window_s: s.window_s,
            max_age_s: s.max_age_s,
        }
    }
}

/// What the configuration and the build make of a finding: text compared whole (the version,
/// and a hash of the sources that compute findings: `build.rs`).
pub fn fingerprint(cfg: &AnalyzeConfig) -> String {
    let mut c = cfg.clone();
    // Neither changes a finding.
    c.progress = None;
    c.group_rows = 0;
    c.reuse = false;
    c.score_partitions = 0;
    // Both engines give the same findings to the bit (`tests/it/cluster.rs`).
    c.engine = Default::default();
    format!(
        "leakhound {} format {FORMAT} sources {}: {c:?}",
        env!("CARGO_PKG_VERSION"),
        env!("LEAKHOUND_ANALYZE_SOURCE_HASH")
    )
}

fn path(store: &Store, rel: &str) -> Path {
    commit::absolute(store.root(), rel)
}

fn oerr(p: &Path) -> impl Fn(object_store::Error) -> Error + '_ {
    move |e| Error::Reuse(format!("{p}: {e}"))
}

/// The store's last commit sequence (the watermark of a step about to read).
pub async fn watermark(store: &Store) -> Result<u64> {
    Ok(commit::latest(&store.raw(), store.root()).await?)
}

/// The previous step's findings this step may reuse: those of its evaluations before
/// `reuse_before` (the manifest's objects).
#[derive(Debug, Clone)]
pub struct Prior {
    pub manifest: Manifest,
    /// Evaluations before this are reused.
    pub reuse_before: i64,
}

/// The manifest, if it is there, readable and valid for a step of `cfg` over
/// `[first_s, to_s]`, with the evaluations it lets this step reuse; None: recompute all (and
/// why, for the log).
pub async fn prior(
    store: &Store,
    cfg: &AnalyzeConfig,
    first_s: i64,
    to_s: i64,
) -> std::result::Result<Prior, String> {
    let p = path(store, MANIFEST);
    let bytes = match store.raw().get(&p).await {
        Ok(g) => g.bytes().await.map_err(|e| format!("reading {p}: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => return Err("no previous step".into()),
        Err(e) => return Err(format!("reading {p}: {e}")),
    };
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
    if m.format != FORMAT || m.fingerprint != fingerprint(cfg) {
        return Err("another configuration or version".into());
    }
    // The store's contents are not trusted further than its commit log: an object is one of
    // ours, by name, or the manifest is not used.
    if let Some(o) = m.objects.iter().find(|o| !is_object_name(&o.path)) {
        return Err(format!(
            "the manifest names {:?}, not a findings object",
            o.path
        ));
    }
    if m.to_s > to_s || m.to_s < first_s {
        return Err("another step".into());
    }
    let late = late_rows_from(store, m.watermark)
        .await
        .map_err(|e| format!("late rows: {e}"))?;
    // A row at `late` is in its minute's point, which evaluations from that minute read.
    let reuse_before = match late {
        Some(ts) => ts.div_euclid(60) * 60,
        None => i64::MAX,
    }
    .min(m.to_s + 1)
    .max(first_s);
    Ok(Prior {
        manifest: m,
        reuse_before,
    })
}

/// Whether `rel` is a findings object's name: `_state/analyze/findings-<to>-<group>-<txid>.json.gz`
/// (no other directory, nothing but digits, letters and dashes).
fn is_object_name(rel: &str) -> bool {
    rel.strip_prefix(DIR)
        .and_then(|r| r.strip_prefix("/findings-"))
        .and_then(|r| r.strip_suffix(".json.gz"))
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// The smallest `ts` (seconds) of the `goroutine_counts` rows committed after `watermark`
/// (None: none); an error when it cannot be known.
async fn late_rows_from(store: &Store, watermark: u64) -> Result<Option<i64>> {
    let raw = store.raw();
    let records = commit::read_after(&raw, store.root(), watermark)
        .await?
        .ok_or_else(|| Error::Reuse("the commit log no longer reaches the watermark".into()))?;
    let prefix = format!(
        "{}/",
        leakhound_schemas::tables::Table::GoroutineCounts.name()
    );
    let mut min: Option<i64> = None;
    for r in records.iter().filter(|r| r.kind != "compaction") {
        for f in r.files.iter().filter(|f| f.starts_with(&prefix)) {
            let ts = file_min_ts_us(store, f).await?;
            min = Some(min.map_or(ts, |m: i64| m.min(ts)));
        }
    }
    Ok(min.map(|us| us.div_euclid(1_000_000)))
}

/// The smallest `ts` of a counts file, from its footer's statistics (every row group's).
async fn file_min_ts_us(store: &Store, rel: &str) -> Result<i64> {
    let p = path(store, rel);
    // The footer only: its length and magic in the last 8 bytes, the metadata before them.
    let raw = store.raw();
    let size = raw.head(&p).await.map_err(oerr(&p))?.size;
    let bad = |what: &str| Error::Reuse(format!("{p}: {what}"));
    if size < 12 {
        return Err(bad("not a Parquet file"));
    }
    let tail = raw.get_range(&p, size - 8..size).await.map_err(oerr(&p))?;
    if &tail[4..] != b"PAR1" {
        return Err(bad("not a Parquet file"));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 8 > size {
        return Err(bad("footer longer than the file"));
    }
    let footer = raw
        .get_range(&p, size - 8 - len..size - 8)
        .await
        .map_err(oerr(&p))?;
    let md = ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| bad(&e.to_string()))?;
    let col = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "ts")
        .ok_or_else(|| Error::Reuse(format!("{p}: no ts column")))?;
    let mut min: Option<i64> = None;
    for rg in md.row_groups() {
        if rg.num_rows() == 0 {
            continue;
        }
        let m = match rg.column(col).statistics() {
            Some(Statistics::Int64(s)) => s.min_opt().copied(),
            _ => None,
        }
        .ok_or_else(|| Error::Reuse(format!("{p}: no ts statistics")))?;
        min = Some(min.map_or(m, |x: i64| x.min(m)));
    }
    // An empty file has no rows to be late.
    Ok(min.unwrap_or(i64::MAX))
}

impl Prior {
    /// The stored findings of `group`'s scopes (the fleet's: None) at evaluations before
    /// [`Prior::reuse_before`]; None when the stored objects do not cover every workload of
    /// the group (it recomputes) or one cannot be read.
    pub async fn findings_for(&self, store: &Store, group: Option<&Group>) -> Option<Vec<Finding>> {
        let wanted = |ns: &str, wl: Option<&str>| group.is_none_or(|g| g.contains(ns, wl));
        if let Some(g) = group {
            // Every workload of the group was in the previous step (findings or not).
            let had: BTreeSet<(&str, Option<&str>)> = self
                .manifest
                .objects
                .iter()
                .flat_map(|o| o.units.iter().map(|(n, w)| (n.as_str(), w.as_deref())))
                .collect();
            let whole: BTreeSet<&str> = had.iter().map(|(n, _)| *n).collect();
            let covered = g.units.iter().all(|u| {
                if g.whole.contains(&u.namespace) && u.workload.is_none() {
                    whole.contains(u.namespace.as_str())
                } else {
                    had.contains(&(u.namespace.as_str(), u.workload.as_deref()))
                }
            });
            if !covered {
                return None;
            }
        }
        let mut out = Vec::new();
        for o in &self.manifest.objects {
            if !o.units.iter().any(|(n, w)| wanted(n, w.as_deref())) {
                continue;
            }
            let stored = match read_object(store, &o.path).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!("analyze: a group recomputes: {e}");
                    return None;
                }
            };
            out.extend(
                stored
                    .into_iter()
                    .filter(|s| {
                        s.eval_s < self.reuse_before
                            && wanted(&s.scope.namespace, s.scope.workload.as_deref())
                    })
                    .map(Finding::from),
            );
        }
        Some(out)
    }
}

async fn read_object(store: &Store, rel: &str) -> Result<Vec<Stored>> {
    let p = path(store, rel);
    let bytes = store
        .raw()
        .get(&p)
        .await
        .map_err(oerr(&p))?
        .bytes()
        .await
        .map_err(oerr(&p))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut json)
        .map_err(|e| Error::Reuse(format!("{p}: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| Error::Reuse(format!("{p}: {e}")))
}

/// Writes one group's findings (those a next step can reuse: after `first_s`); returns its
/// entry for the manifest. `units`: every workload of the group, findings or not.
pub async fn write_object(
    store: &Store,
    to_s: i64,
    index: usize,
    units: Vec<(String, Option<String>)>,
    findings: &[Finding],
    first_s: i64,
) -> Result<Object> {
    let stored: Vec<Stored> = findings
        .iter()
        .filter(|f| f.eval_s > first_s)
        .map(Stored::from)
        .collect();
    let json = serde_json::to_vec(&stored).map_err(|e| Error::Reuse(e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json)
        .map_err(|e| Error::Reuse(format!("compressing findings: {e}")))?;
    let bytes = gz
        .finish()
        .map_err(|e| Error::Reuse(format!("compressing findings: {e}")))?;
    // A name of this run's own: a re-run of the same step never overwrites an object the
    // manifest of another run names.
    let rel = format!(
        "{DIR}/findings-{to_s}-{index}-{}.json.gz",
        commit::new_txid()
    );
    let p = path(store, &rel);
    store
        .raw()
        .put(&p, PutPayload::from(bytes))
        .await
        .map_err(oerr(&p))?;
    Ok(Object { path: rel, units })
}

/// The (namespace, workload) of every scope of `findings`, with `group`'s own units.
pub fn units_of(group: Option<&Group>, findings: &[Finding]) -> Vec<(String, Option<String>)> {
    let mut u: BTreeSet<(String, Option<String>)> = findings
        .iter()
        .map(|f| (f.scope.namespace.clone(), f.scope.workload.clone()))
        .collect();
    if let Some(g) = group {
        u.extend(
            g.units
                .iter()
                .map(|x| (x.namespace.clone(), x.workload.clone())),
        );
    }
    u.into_iter().collect()
}

/// Writes the manifest (the step's objects become the next step's), then deletes the objects
/// no longer named.
pub async fn write_manifest(store: &Store, m: &Manifest) -> Result<()> {
    let p = path(store, MANIFEST);
    let json = serde_json::to_vec_pretty(m).map_err(|e| Error::Reuse(e.to_string()))?;
    store
        .raw()
        .put(&p, PutPayload::from(json))
        .await
        .map_err(oerr(&p))?;
    let keep: BTreeMap<&str, ()> = m.objects.iter().map(|o| (o.path.as_str(), ())).collect();
    let dir = path(store, DIR);
    let listed: Vec<object_store::ObjectMeta> = store
        .raw()
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(oerr(&dir))?;
    for meta in listed {
        let rel = commit::rel(store.root(), &meta.location);
        let name = meta.location.filename().unwrap_or_default();
        if name.starts_with("findings-") && !keep.contains_key(rel.as_str()) {
            // Another step's leftovers; gone already is fine.
            let _ = store.raw().delete(&meta.location).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod names {
    #[test]
    fn only_findings_objects_are_read() {
        use super::is_object_name;
        assert!(is_object_name(
            "_state/analyze/findings-1790957700-0-3323dbda9c63.json.gz"
        ));
        for hostile in [
            "_state/analyze/findings-../../goroutine_counts/x.json.gz",
            "_state/analyze/findings-1/../../x.json.gz",
            "goroutine_counts/date=2026-12-03/tx-1.parquet",
            "_state/ingest.json",
            "_state/analyze/findings-.json.gz",
            "_state/analyze/findings-1 0.json.gz",
            "/etc/passwd",
        ] {
            assert!(!is_object_name(hostile), "{hostile}");
        }
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::backtest::{Evidence, load};
    use crate::engine::{Analysis, Emit, analyze};
    use leakhound_ingest::rows::CountRow;
    use leakhound_ingest::writer::{Batch, Writer};

    /// Scenario workloads whose history starts within the STL context of every step (so that
    /// the context's start, which moves with each step, is not in what is compared).
    async fn store_of(kinds: &[&str]) -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let mut at = i64::MAX;
        for kind in kinds {
            let mut s = crate::scenarios::generate(kind, 4).unwrap();
            let onset = s.leak.as_ref().map_or(s.end_s - 3 * 3_600, |l| l.onset_s);
            let start = onset - 2 * 86_400;
            s.rows.retain(|r| r.ts_us >= start * 1_000_000);
            s.dumps.retain(|d| d.ts_s >= start);
            at = at.min(onset);
            load(&store, &s, Evidence::CountsAndDumps).await.unwrap();
        }
        (dir, store, at.div_euclid(300) * 300)
    }

    async fn step(store: &Store, to: i64, reuse: bool, group_rows: u64) -> Analysis {
        let cfg = AnalyzeConfig {
            reuse,
            group_rows,
            ..Default::default()
        };
        analyze(store, to - cfg.live_window_s, to, Emit::All, &cfg)
            .await
            .unwrap()
    }

    /// Live steps every 5 minutes across leaks' onsets: the step reusing the previous one's
    /// findings gives the events of a step computing everything, at every step; it reuses 24
    /// of 25 evaluations in every group; late rows for the past are recomputed from their
    /// minute; a compaction (no new rows) changes nothing; another configuration, a corrupt
    /// manifest or a lost object reuse nothing and still give the same events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reusing_steps_equal_steps_computing_everything() {
        let (_dir, store, onset) = store_of(&["fast_leak", "one_pod_of_many", "slow_leak"]).await;
        let rows = 5_000;
        let mut fired = 0;
        for k in 0..8 {
            let to = onset + 1_800 + k * 300;
            match k {
                // Late rows: a pod's scrapes of 20 minutes ago arrive now, from another source.
                3 => {
                    let pod = store_rows_pod(&store, to).await;
                    let mut b = Batch::default();
                    let late: Vec<CountRow> = (0..3)
                        .map(|i| CountRow {
                            target: pod.clone(),
                            ts_us: (to - 1_200 + 20 * i) * 1_000_000,
                            goroutines: 50_000,
                            ..Default::default()
                        })
                        .collect();
                    b.add_counts(late, "late");
                    Writer::new(store.clone()).commit(b).await.unwrap();
                }
                5 => {
                    let opts = leakhound_ingest::compact::CompactOptions {
                        min_files: 1,
                        ..Default::default()
                    };
                    leakhound_ingest::compact::compact(&store, &opts)
                        .await
                        .unwrap();
                }
                _ => {}
            }
            let reusing = step(&store, to, true, rows).await;
            let all = step(&store, to, false, rows).await;
            assert_eq!(reusing.events, all.events, "step {k}");
            fired += all.events.len();
            let groups = reusing.reused_groups;
            match k {
                0 => assert_eq!(reusing.reused_evaluations, 0, "nothing to reuse yet"),
                // The late rows' minute is 20 minutes back: 20 of 25 evaluations reused.
                3 => {
                    assert!(groups > 0);
                    assert_eq!(reusing.reused_evaluations, 20 * groups, "step {k}");
                }
                _ => {
                    assert!(groups > 1, "step {k}: {groups} groups reused");
                    assert_eq!(reusing.reused_evaluations, 24 * groups, "step {k}");
                }
            }
        }
        assert!(fired > 0, "the leaks fire");

        let to = onset + 1_800 + 8 * 300;
        // Another configuration: nothing reused.
        let other = AnalyzeConfig {
            reuse: true,
            group_rows: rows,
            growth_min_per_s: 0.4,
            ..Default::default()
        };
        let a = analyze(&store, to - other.live_window_s, to, Emit::All, &other)
            .await
            .unwrap();
        assert_eq!(a.reused_evaluations, 0);
        // Back to the default: the other configuration's manifest is not reused either.
        let a = step(&store, to + 300, true, rows).await;
        assert_eq!(a.reused_evaluations, 0);
        // A corrupt manifest: nothing reused, the same events.
        let raw = store.raw();
        raw.put(
            &path(&store, MANIFEST),
            PutPayload::from_static(b"{\"format\": 1, \"fi"),
        )
        .await
        .unwrap();
        let a = step(&store, to + 600, true, rows).await;
        assert_eq!(a.reused_evaluations, 0);
        assert_eq!(a.events, step(&store, to + 600, false, rows).await.events);
        // An object gone: its group recomputes, the others reuse.
        let m = manifest_of(&store).await;
        assert!(m.objects.len() > 1);
        raw.delete(&path(&store, &m.objects[0].path)).await.unwrap();
        let a = step(&store, to + 900, true, rows).await;
        assert_eq!(a.reused_groups, m.objects.len() - 1);
        assert_eq!(a.events, step(&store, to + 900, false, rows).await.events);
        // The fleet as one group reads every group's objects.
        let a = step(&store, to + 1_200, true, 0).await;
        assert_eq!((a.reused_groups, a.reused_evaluations), (1, 24));
        assert_eq!(a.events, step(&store, to + 1_200, false, 0).await.events);
        // Only the last manifest's objects are left.
        let m = manifest_of(&store).await;
        let left: Vec<_> = raw
            .list(Some(&path(&store, DIR)))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.location.filename().unwrap().starts_with("findings-"))
            .collect();
        assert_eq!(left.len(), m.objects.len());
    }

    async fn manifest_of(store: &Store) -> Manifest {
        let p = path(store, MANIFEST);
        let bytes = store.raw().get(&p).await.unwrap().bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A pod with rows before `to`.
    async fn store_rows_pod(store: &Store, to: i64) -> leakhound_ingest::rows::Target {
        let ctx = crate::session::session(store).await.unwrap();
        let s = crate::engine::series::minute_series(&ctx, to - 3_600, to, "%")
            .await
            .unwrap();
        let scope = s.keys().find(|k| k.pod.is_some()).unwrap();
        leakhound_ingest::rows::Target {
            cluster: scope.cluster.clone(),
            namespace: scope.namespace.clone(),
            workload_kind: scope.workload_kind.clone(),
            workload: scope.workload.clone(),
            pod: scope.pod.clone().unwrap(),
            ..Default::default()
        }
    }
}
