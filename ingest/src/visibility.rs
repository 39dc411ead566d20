//! Which files of the store a reader sees — what makes writes and compaction atomic.
//!
//! No object store renames several files at once, so the commit point of a write is one small
//! object naming the files it makes visible (and those it hides):
//!
//! ```text
//!  _commits/<seq>.json   {files, replaces}   see `commit`: every batch and every compaction
//!  _compactions/<id>.json {output, replaces}  compaction manifests of stores written before
//!                                            the commit log (still honoured, no longer written)
//! ```
//!
//! The rules: a `tx-*` or `compact-*` file is visible only once a commit record (or, for
//! `compact-*`, an old manifest) names it; a file some record or manifest replaces is hidden; any other
//! file (older stores' `part-*`, and analyze's and actuate's single-file writes from before
//! they committed through the log, each one atomic put) is visible. A crash before a commit leaves invisible orphans (swept by `compact` after
//! the grace period); replaced files stay until the grace period ends so that readers that
//! listed them can finish. A reader loads the records once and sees a consistent store for its
//! whole query. The filter sits in an `ObjectStore` wrapper so that DataFusion's listing (and
//! its partition pruning) needs no change.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::{Deserialize, Serialize};

use crate::commit::{self, CommitRecord, TX_PREFIX};
use crate::error::{Error, Result};

pub const MANIFEST_DIR: &str = "_compactions";
pub const COMPACT_PREFIX: &str = "compact-";

/// A committed compaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub table: String,
    pub output: String,
    pub replaces: Vec<String>,
    /// RFC 3339.
    pub committed_at: String,
}

/// The visibility rules as of one load of the manifests.
#[derive(Debug, Default)]
pub struct Visibility {
    hidden: HashSet<String>,
    committed_outputs: HashSet<String>,
    committed_tx: HashSet<String>,
    pub manifests: Vec<(Path, Manifest)>,
    /// The commit log as loaded, in sequence order.
    pub commits: Vec<CommitRecord>,
    /// The highest sequence number loaded (0: none yet).
    pub head: u64,
    /// Files hidden by the checkpoint the load started from (replaced longer ago than any
    /// record still in the log).
    pub checkpoint_hidden: HashSet<String>,
}

impl Visibility {
    pub async fn load(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<Visibility> {
        let dir = root.clone().join(MANIFEST_DIR);
        let metas: Vec<ObjectMeta> =
            store
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| Error::ObjectStore {
                    path: dir.to_string(),
                    source: e,
                })?;
        let mut v = Visibility::default();
        for m in metas {
            if !m.location.as_ref().ends_with(".json") {
                continue;
            }
            let oerr = |e| Error::ObjectStore {
                path: m.location.to_string(),
                source: e,
            };
            let bytes = store
                .get(&m.location)
                .await
                .map_err(oerr)?
                .bytes()
                .await
                .map_err(oerr)?;
            let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Input {
                source_name: m.location.to_string(),
                message: format!("corrupt compaction manifest: {e}"),
            })?;
            v.committed_outputs.insert(manifest.output.clone());
            v.hidden.extend(manifest.replaces.iter().cloned());
            v.manifests.push((m.location, manifest));
        }
        // The manifests first, the commit log second: a compaction committed between the two
        // loads shows in the log; one committed before shows in both.
        let (checkpoint, recs) = commit::load(store, root).await?;
        if let Some(cp) = checkpoint {
            v.checkpoint_hidden.extend(
                cp.replaces
                    .iter()
                    .map(|r| commit::absolute(root, r).as_ref().to_string()),
            );
            v.apply(root, cp);
            v.commits.clear();
        }
        for rec in recs {
            v.apply(root, rec);
        }
        Ok(v)
    }

    /// Add a commit record loaded after the others.
    pub fn apply(&mut self, root: &Path, rec: CommitRecord) {
        for f in &rec.files {
            self.committed_tx
                .insert(commit::absolute(root, f).as_ref().to_string());
        }
        for r in &rec.replaces {
            self.hidden
                .insert(commit::absolute(root, r).as_ref().to_string());
        }
        self.head = self.head.max(rec.seq);
        self.commits.push(rec);
    }

    /// Every committed `tx-`/`compact-` file and every hidden file, as absolute paths: what a
    /// checkpoint records.
    pub fn state(&self) -> (Vec<String>, Vec<String>) {
        let mut f: Vec<String> = self.committed_tx.iter().cloned().collect();
        let mut h: Vec<String> = self.hidden.iter().cloned().collect();
        f.sort();
        h.sort();
        (f, h)
    }

    /// Whether a commit record names this `tx-` file (replaced or not).
    pub fn committed(&self, location: &Path) -> bool {
        self.committed_tx.contains(location.as_ref())
    }

    /// Whether a reader should see the object at `location`.
    pub fn visible(&self, location: &Path) -> bool {
        let s = location.as_ref();
        if self.hidden.contains(s) {
            return false;
        }
        let name = location.filename().unwrap_or_default();
        if name.starts_with(TX_PREFIX) || name.starts_with(COMPACT_PREFIX) {
            return self.committed_tx.contains(s) || self.committed_outputs.contains(s);
        }
        true
    }
}

/// An `ObjectStore` that hides what [`Visibility`] says readers must not see. Everything but
/// listing is passed through. The visibility is given ([`VisibleStore::new`]) or read from the
/// commit log on first use ([`VisibleStore::lazy`]: for a session that must be built
/// synchronously — a Ballista scheduler builds one per query in a plain closure,
/// `leakhound-cluster`); either way one store instance sees one snapshot.
#[derive(Debug)]
pub struct VisibleStore {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    vis: Arc<tokio::sync::OnceCell<Arc<Visibility>>>,
}

impl VisibleStore {
    pub fn new(inner: Arc<dyn ObjectStore>, vis: Arc<Visibility>) -> Self {
        VisibleStore {
            inner,
            root: Path::default(),
            vis: Arc::new(tokio::sync::OnceCell::new_with(Some(vis))),
        }
    }

    /// The visibility of the store at `root`, loaded on the first call that needs it.
    pub fn lazy(inner: Arc<dyn ObjectStore>, root: Path) -> Self {
        VisibleStore {
            inner,
            root,
            vis: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    async fn load(
        cell: &tokio::sync::OnceCell<Arc<Visibility>>,
        inner: &Arc<dyn ObjectStore>,
        root: &Path,
    ) -> object_store::Result<Arc<Visibility>> {
        cell.get_or_try_init(|| async {
            Visibility::load(inner, root)
                .await
                .map(Arc::new)
                .map_err(|e| object_store::Error::Generic {
                    store: "leakhound commit log",
                    source: Box::new(e),
                })
        })
        .await
        .cloned()
    }
}

impl std::fmt::Display for VisibleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VisibleStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for VisibleStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (inner, root, cell) = (self.inner.clone(), self.root.clone(), self.vis.clone());
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let vis = VisibleStore::load(&cell, &inner, &root).await?;
            Ok::<_, object_store::Error>(
                inner
                    .list(prefix.as_ref())
                    .try_filter(move |m| futures::future::ready(vis.visible(&m.location))),
            )
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let vis = VisibleStore::load(&self.vis, &self.inner, &self.root).await?;
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects.retain(|m| vis.visible(&m.location));
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let mut v = Visibility::default();
        v.committed_outputs
            .insert("t/date=x/compact-1.parquet".into());
        v.hidden.insert("t/date=x/part-a.parquet".into());
        assert!(v.visible(&Path::from("t/date=x/compact-1.parquet")));
        assert!(!v.visible(&Path::from("t/date=x/compact-2.parquet")));
        assert!(!v.visible(&Path::from("t/date=x/part-a.parquet")));
        assert!(v.visible(&Path::from("t/date=x/part-b.parquet")));
        assert!(!v.visible(&Path::from("r/t/date=x/tx-1.parquet")));
        v.apply(
            &Path::from("r"),
            CommitRecord {
                seq: 3,
                files: vec!["t/date=x/tx-1.parquet".into()],
                replaces: vec!["t/date=x/part-b.parquet".into()],
                ..Default::default()
            },
        );
        assert!(v.visible(&Path::from("r/t/date=x/tx-1.parquet")));
        assert!(!v.visible(&Path::from("r/t/date=x/tx-2.parquet")));
        assert!(!v.visible(&Path::from("r/t/date=x/part-b.parquet")));
        assert_eq!(v.head, 3);
    }
}
