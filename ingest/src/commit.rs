//! The store's commit log: what makes a batch's data files, and the ingest-log rows that say
//! they were imported, visible together — or not at all.
//!
//! ```text
//!  1. put  <table>/<partition>/tx-<txid>.parquet     one per table and partition; invisible
//!  2. put  _commits/<seq, 20 digits>.json            PutMode::Create: the commit point
//!         {files, replaces, keys, stacks}            files visible, replaced files hidden
//! ```
//!
//! Sequence numbers are claimed with a conditional put (`PutMode::Create`: `If-None-Match: *`
//! on S3, a hard link that fails if the target exists on a local directory), so two writers
//! can never both commit sequence `n`. The loser reads the records it missed, drops from its
//! batch every row whose ingest key (or stack) a winner committed, rewrites its data files if
//! that changed them, and tries the next number: optimistic concurrency, as Delta Lake does it
//! with `_delta_log` (see `docs/store-commit.md`). No lock, so nothing a crash leaves behind
//! can block the next writer.
//!
//! A crash before 2 leaves `tx-` files no record names: never visible, swept by `compact`
//! after the grace period. A record names store-relative paths, so a store can be moved.
//!
//! Readers replay the log; so that the replay stays short, `compact` writes a checkpoint
//! (`_commits/<seq>.checkpoint.json`: the files visible and hidden as of record `seq`) and,
//! after the grace period, deletes the records it covers. A reader starts from the newest
//! checkpoint; a writer whose last-read record was deleted meanwhile re-reads the ingest log.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const COMMIT_DIR: &str = "_commits";
/// Data files written under the commit protocol start with this; they are visible only once a
/// commit record names them.
pub const TX_PREFIX: &str = "tx-";

/// One commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommitRecord {
    pub seq: u64,
    /// `batch` (a writer's rows) or `compaction`.
    pub kind: String,
    /// Who committed: command and process id, for people reading the log.
    pub writer: String,
    /// RFC 3339.
    pub committed_at: String,
    /// Data files this commit makes visible, relative to the store root.
    #[serde(default)]
    pub files: Vec<String>,
    /// Files this commit hides (a compaction's inputs), relative to the store root.
    #[serde(default)]
    pub replaces: Vec<String>,
    /// Ingest-log keys committed (imported or failed), so a concurrent writer drops them.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Stack ids written per date partition, so a concurrent writer does not write them again.
    #[serde(default)]
    pub stacks: BTreeMap<String, Vec<i64>>,
}

fn oerr(path: &Path) -> impl Fn(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

pub fn commit_dir(root: &Path) -> Path {
    root.clone().join(COMMIT_DIR)
}

pub fn record_path(root: &Path, seq: u64) -> Path {
    commit_dir(root).join(format!("{seq:020}.json"))
}

/// `rel` (slash-separated, relative to the root) as an object path.
pub fn absolute(root: &Path, rel: &str) -> Path {
    rel.split('/')
        .filter(|s| !s.is_empty())
        .fold(root.clone(), |p, seg| p.join(seg))
}

/// `location` relative to `root`.
pub fn rel(root: &Path, location: &Path) -> String {
    crate::store::relative(root, location)
}

pub fn checkpoint_path(root: &Path, seq: u64) -> Path {
    commit_dir(root).join(format!("{seq:020}{CHECKPOINT_SUFFIX}"))
}

pub const CHECKPOINT_SUFFIX: &str = ".checkpoint.json";

/// Sequence number of a commit record's name (not of a checkpoint's).
pub fn seq_of(meta: &ObjectMeta) -> Option<u64> {
    meta.location
        .filename()?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// Sequence number of a checkpoint's name.
pub fn checkpoint_seq_of(meta: &ObjectMeta) -> Option<u64> {
    meta.location
        .filename()?
        .strip_suffix(CHECKPOINT_SUFFIX)?
        .parse()
        .ok()
}

async fn get_record(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<CommitRecord>> {
    let bytes = match store.get(path).await {
        Ok(g) => g.bytes().await.map_err(oerr(path))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(oerr(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Input {
            source_name: path.to_string(),
            message: format!("corrupt commit record: {e}"),
        })
}

/// The log as a reader needs it: the newest checkpoint (if any) and every record after it.
pub async fn load(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
) -> Result<(Option<CommitRecord>, Vec<CommitRecord>)> {
    // A record deleted between the listing and its read is covered by a newer checkpoint:
    // list again.
    for _ in 0..5 {
        let dir = commit_dir(root);
        let metas: Vec<ObjectMeta> = store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(oerr(&dir))?;
        let cp = metas.iter().filter_map(checkpoint_seq_of).max();
        let checkpoint = match cp {
            Some(c) => match get_record(store, &checkpoint_path(root, c)).await? {
                Some(mut r) => {
                    r.seq = c;
                    Some(r)
                }
                None => continue,
            },
            None => None,
        };
        let after = cp.unwrap_or(0);
        match read_after(store, root, after).await? {
            Some(recs) => return Ok((checkpoint, recs)),
            None => continue,
        }
    }
    Err(Error::Input {
        source_name: commit_dir(root).to_string(),
        message: "the commit log kept changing under five reads in a row".into(),
    })
}

/// The highest sequence number committed (records and checkpoints; 0: none), from one listing.
pub async fn latest(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<u64> {
    let dir = commit_dir(root);
    let metas: Vec<ObjectMeta> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(oerr(&dir))?;
    Ok(metas
        .iter()
        .filter_map(|m| seq_of(m).or_else(|| checkpoint_seq_of(m)))
        .max()
        .unwrap_or(0))
}

/// Every commit record with a sequence number above `after`, in order; `None` when the
/// records right after `after` are gone (deleted under a checkpoint): the caller must start
/// again from the checkpoint.
pub async fn read_after(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    after: u64,
) -> Result<Option<Vec<CommitRecord>>> {
    let dir = commit_dir(root);
    let metas: Vec<ObjectMeta> = if after == 0 {
        store.list(Some(&dir)).try_collect().await
    } else {
        store
            .list_with_offset(Some(&dir), &record_path(root, after))
            .try_collect()
            .await
    }
    .map_err(oerr(&dir))?;
    let mut seqs: Vec<(u64, Path)> = metas
        .iter()
        .filter_map(|m| seq_of(m).map(|s| (s, m.location.clone())))
        .filter(|(s, _)| *s > after)
        .collect();
    seqs.sort();
    // Records are numbered without holes; a hole after `after` means deleted records.
    if seqs.first().is_some_and(|(s, _)| *s != after + 1) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(seqs.len());
    for (seq, path) in seqs {
        let Some(mut rec) = get_record(store, &path).await? else {
            return Ok(None);
        };
        rec.seq = seq;
        out.push(rec);
    }
    Ok(Some(out))
}

/// Try to commit `rec` as sequence `rec.seq`. `Ok(false)`: another writer holds that number.
pub async fn try_commit(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    rec: &CommitRecord,
) -> Result<bool> {
    let path = record_path(root, rec.seq);
    let body = serde_json::to_vec_pretty(rec).unwrap_or_default();
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&path, PutPayload::from(body), opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(oerr(&path)(e)),
    }
}

/// A name no other writer picks: process id, time and a counter, hashed.
pub fn new_txid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(
        &chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    h.update(&N.fetch_add(1, Ordering::SeqCst).to_le_bytes());
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        h.update(host.trim().as_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// `command pid N`, for the `writer` field.
pub fn writer_name(command: &str) -> String {
    format!("{command} pid {}", std::process::id())
}
