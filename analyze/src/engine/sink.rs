//! Where a run's events go: root-cause clusters attached to each event ([`attach_clusters`],
//! `rootcause::attribute` over the samples), then `leak_events` and `leak_clusters` written in
//! one commit of the store's log ([`write_results`]).

use std::collections::{BTreeMap, HashMap};

use leakhound_ingest::Store;
use leakhound_schemas::events::LeakEvent;

use crate::error::{Error, Result};

/// Growth attribution for every event: clusters into each event (largest first, at most
/// `max_clusters`) and the `leak_clusters` rows. The baseline is the earlier of 10 minutes before
/// the episode's onset and the event's window start; results are shared by events of the same scope and times.
pub async fn attach_clusters(
    store: &Store,
    events: &mut [LeakEvent],
    max_clusters: usize,
) -> Result<Vec<crate::rootcause::ClusterRecord>> {
    let ctx = crate::session::session(store).await?;
    type Key = (String, Option<String>, Option<String>, i64, i64);
    let mut cache: HashMap<Key, Vec<crate::rootcause::Cluster>> = HashMap::new();
    let mut records = Vec::new();
    for e in events.iter_mut() {
        // Before the episode and before the detector's window: growth often starts well
        // before a detector is sure of it.
        let base = (e.onset.timestamp() - 600).min(e.window_start.timestamp());
        let now = e.detected_at.timestamp();
        let key = (
            e.namespace.clone(),
            e.workload.clone(),
            e.pod.clone(),
            base,
            now,
        );
        if !cache.contains_key(&key) {
            let c = crate::rootcause::attribute(
                &ctx,
                &e.namespace,
                e.workload.as_deref(),
                e.pod.as_deref(),
                base,
                now,
            )
            .await?;
            cache.insert(key.clone(), c);
        }
        let clusters = &cache[&key];
        e.clusters = clusters
            .iter()
            .take(max_clusters)
            .map(|c| c.summary())
            .collect();
        for c in clusters.iter().take(max_clusters) {
            records.push(crate::rootcause::ClusterRecord {
                event_id: e.event_id.clone(),
                detected_at_s: now,
                namespace: e.namespace.clone(),
                workload: e.workload.clone(),
                pod: e.pod.clone(),
                cluster: c.clone(),
            });
        }
    }
    Ok(records)
}

/// Write events and clusters to the store, one file per date partition and table, made visible
/// together by one commit (`Store::commit_files`): a crashed run leaves none of them, and an
/// identical re-run (the same analysis again) adds nothing. Returns the files committed.
pub async fn write_results(
    store: &Store,
    events: &[LeakEvent],
    clusters: &[crate::rootcause::ClusterRecord],
) -> Result<usize> {
    use leakhound_ingest::store::Partition;
    use leakhound_schemas::Table;
    let mut parts = Vec::new();
    let mut ev_by_day: BTreeMap<Partition, Vec<LeakEvent>> = BTreeMap::new();
    for e in events {
        ev_by_day
            .entry(Partition::for_ts(
                Table::LeakEvents,
                e.detected_at.timestamp_micros(),
            ))
            .or_default()
            .push(e.clone());
    }
    for (p, evs) in ev_by_day {
        let b =
            leakhound_schemas::events::events_to_batch(&evs).map_err(|source| Error::Batch {
                table: "leak_events",
                source,
            })?;
        parts.push((Table::LeakEvents, p, b));
    }
    let mut cl_by_day: BTreeMap<Partition, Vec<crate::rootcause::ClusterRecord>> = BTreeMap::new();
    for c in clusters {
        cl_by_day
            .entry(Partition::for_ts(
                Table::LeakClusters,
                c.detected_at_s * 1_000_000,
            ))
            .or_default()
            .push(c.clone());
    }
    for (p, rows) in cl_by_day {
        let b = crate::rootcause::clusters_to_batch(&rows).map_err(|source| Error::Batch {
            table: "leak_clusters",
            source,
        })?;
        parts.push((Table::LeakClusters, p, b));
    }
    // One commit for the run's events and clusters: all visible, or (after a crash) none.
    let files = if parts.is_empty() {
        0
    } else {
        store.commit_files("analyze", &parts).await?.len()
    };
    Ok(files)
}
