//! `CaptureActuator`: a full `debug=2` goroutine dump of the leaking pod, taken before it is
//! isolated, lands in the store twice — parsed, as rows of `goroutine_counts` /
//! `goroutine_samples` / `stacks` with source `capture` (so the usual SQL sees it), and as the
//! raw text under `captures/<namespace>/<pod>/<time>.debug2.txt` for a person to read.
//!
//! Where to fetch it from: a static capture target (`--capture-target NAMESPACE/POD=URL`), else
//! the pod's own scrape annotations (`leakhound.io/scrape=true`, port, path: the same rules as
//! ingest's discovery; a Go agent's pod, `leakhound.io/auth: bearer`, is sent the token of
//! `--agent-token-file` and is not captured without one). A pod that cannot be reached is a recorded `failed` capture — never a
//! reason to leave a leaking pod in place.

use std::time::Duration;

use bytes::Bytes;
use leakhound_ingest::parse;
use leakhound_ingest::residence::IdTracker;
use leakhound_ingest::scrape::discovery::{self, DiscoveryOptions};
use leakhound_ingest::scrape::http::Clients;
use leakhound_ingest::scrape::targets::{ScrapeTarget, TargetSpec};
use leakhound_ingest::writer::{Batch, Writer};
use object_store::{ObjectStoreExt, PutPayload};

use super::{ActContext, Actuator, Done};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, ValidTarget};

#[derive(Debug, Default)]
pub struct CaptureActuator {
    clients: Clients,
}

impl CaptureActuator {
    /// The scrape target of `pod`: a static one first, then the pod's annotations.
    async fn locate(
        &self,
        cx: &ActContext<'_>,
        target: &ValidTarget,
        pod: &str,
    ) -> Result<std::result::Result<ScrapeTarget, String>> {
        let ns = &target.namespace;
        let spec = if let Some(s) = cx
            .capture_targets
            .iter()
            .find(|s| s.namespace.as_deref() == Some(ns) && s.pod.as_deref() == Some(pod))
        {
            s.clone()
        } else {
            let Some(client) = cx.client else {
                return Ok(Err(format!(
                    "no capture target for {ns}/{pod} and no Kubernetes client to find its scrape port"
                )));
            };
            let opts = DiscoveryOptions {
                namespaces: vec![ns.clone()],
                label_selector: None,
                cluster: target.cluster.clone(),
                // Agent pods (leakhound.io/auth: bearer) get the agent token where actuate has
                // one (`--agent-token-file`); without it their capture fails and says why.
                agent_token_file: cx.agent_token_file.map(|p| p.to_path_buf()),
            };
            let (found, skipped) =
                discovery::discover(client, &opts)
                    .await
                    .map_err(|e| Error::Capture {
                        pod: format!("{ns}/{pod}"),
                        reason: e.to_string(),
                    })?;
            let key = format!("{ns}/{pod}");
            match found.into_iter().find(|s| s.pod.as_deref() == Some(pod)) {
                Some(s) => s,
                None => {
                    let why = skipped
                        .into_iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, why)| why)
                        .unwrap_or_else(|| {
                            format!("not annotated {}=true", discovery::ANNOTATION_SCRAPE)
                        });
                    return Ok(Err(format!("pod {key} cannot be scraped: {why}")));
                }
            }
        };
        let spec = TargetSpec {
            workload_kind: spec.workload_kind.or_else(|| target.workload_kind.clone()),
            workload: spec.workload.or_else(|| target.workload.clone()),
            ..spec
        };
        Ok(spec.into_target())
    }
}

#[async_trait::async_trait]
impl Actuator for CaptureActuator {
    fn step(&self) -> Step {
        Step::Capture
    }

    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done> {
        let Some(pod) = target.pod.as_deref() else {
            return Ok(Done::new("capture", Outcome::Skipped, "no pod to capture"));
        };
        let t = match self.locate(cx, target, pod).await? {
            Ok(t) => t,
            Err(why) => return Ok(Done::new("capture", Outcome::Failed, why)),
        };
        let path = format!("{}/goroutine?debug=2", t.pprof_path);
        let url = t.url(&path);
        let cap = &cx.policy.capture;
        let fail = |reason: String| Error::Capture {
            pod: format!("{}/{pod}", target.namespace),
            reason,
        };
        let body: Bytes = self
            .clients
            .get(
                &t,
                &path,
                cap.max_bytes,
                cap.timeout.max(Duration::from_millis(1)),
                "*/*",
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        let now_us = cx.now.timestamp_micros();
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body));
        let (raw, name, max) = (body.clone(), url.clone(), cap.max_bytes as u64);
        let snap = tokio::task::spawn_blocking(move || {
            let opts = parse::ParseOptions {
                max_decompressed_bytes: max,
                ..Default::default()
            };
            parse::parse_snapshot_with(&raw[..], &name, &opts).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| fail(format!("parser task: {e}")))?
        .map_err(|e| fail(format!("{url}: {e}")))?;
        let store = cx.store;
        let raw_path = store
            .root()
            .clone()
            .join("captures")
            .join(target.namespace.as_str())
            .join(pod)
            .join(format!("{now_us}.debug2.txt"));
        store
            .raw()
            .put(&raw_path, PutPayload::from(body.clone()))
            .await
            .map_err(|e| fail(format!("writing {raw_path}: {e}")))?;
        let mut batch = Batch::default();
        let mut tracker = IdTracker::default();
        let rows = batch.add_snapshot(&mut tracker, &t.identity, now_us, "capture", &hash, &snap);
        // The writer's futures are not Send (they borrow a non-Sync filter); commit on a
        // blocking thread of the same runtime.
        let writer_store = store.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move { Writer::new(writer_store).commit(batch).await })
        })
        .await
        .map_err(|e| fail(format!("store writer task: {e}")))??;
        Ok(Done::new(
            "capture",
            Outcome::Taken,
            format!(
                "captured {} goroutines ({} bytes, {rows} rows) from {url} into {raw_path}",
                snap.total(),
                body.len()
            ),
        ))
    }
}
