//! The whole loop on the test control plane: goroutine counts of a real Deployment's pods in a
//! store (one pod leaking fast), `leakhound analyze` live, then `leakhound actuate` (dry-run, as
//! shipped) on the events analyze wrote — the leaking pod, and only it, gets a dry-run eviction
//! that the API server accepted; nothing changes in the cluster; a second actuate run acts on
//! nothing new.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PostParams};
use leakhound_ingest::rows::{CountRow, Target};
use leakhound_ingest::writer::{Batch, Writer};
use serde_json::json;

use crate::actuate::actions;
use crate::k8s::{
    admin_client, create_namespace, delete_namespace, deployment, kubeconfigs, skip, unique_name,
    wait_pdb, wait_ready_pods,
};
use crate::support::*;

#[tokio::test]
async fn analyze_then_actuate_dry_run_targets_only_the_leaking_pod() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("pipe");
    create_namespace(&client, &ns).await?;
    let r = scenario(&client, &ns).await;
    delete_namespace(&client, &ns).await;
    r
}

async fn scenario(client: &kube::Client, ns: &str) -> Result<()> {
    let none = BTreeMap::new();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment("api", 3, &none)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let names = wait_ready_pods(&pods, "app=api", 3).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": "api" },
            "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": "api" } } }
        }))?,
    )
    .await?;
    wait_pdb(&pdbs, "api", 3, 1).await?;

    // Three hours of one-minute counts up to now; the first pod leaks 3 goroutines a second for
    // the last 40 minutes, the others hold steady with a little noise.
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    let mut rows = Vec::new();
    for (i, pod) in names.iter().enumerate() {
        for m in 0..180 {
            let t = now - (179 - m) * 60;
            let jitter = ((m * 7 + i as i64 * 13) % 11) as f64 - 5.0;
            let leak = if i == 0 && m >= 140 {
                3.0 * ((m - 140) * 60) as f64
            } else {
                0.0
            };
            rows.push(CountRow {
                target: Target {
                    namespace: ns.to_string(),
                    workload_kind: Some("Deployment".into()),
                    workload: Some("api".into()),
                    pod: pod.clone(),
                    ..Default::default()
                },
                ts_us: t * 1_000_000,
                goroutines: (300.0 + jitter + leak) as i64,
                source: "scrape".into(),
                format: "metrics".into(),
                ..Default::default()
            });
        }
    }
    let s = leakhound_ingest::Store::open(store)?;
    let mut b = Batch::default();
    b.add_counts(rows, "pipeline");
    Writer::new(s).commit(b).await?;

    let out = ok(&[
        "analyze",
        "--store",
        store,
        "--now",
        &now.to_string(),
        "--detectors",
        "baseline_rule,growth_rule",
        "--min-level",
        "L2",
        "--format",
        "jsonl",
    ]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(!events.is_empty(), "analyze found nothing:\n{out}");
    for e in &events {
        ensure!(e["pod"] == names[0].as_str(), "event for another pod: {e}");
    }
    ensure!(events.iter().any(|e| e["level"] == "L3"), "{out}");

    let kubeconfig = kubeconfigs()?.admin.clone();
    let run = || {
        std::process::Command::new(bin())
            .args(["actuate", "--store", store, "--kubeconfig"])
            .arg(&kubeconfig)
            .env_remove("LEAKHOUND_APPLY")
            .env_remove("LEAKHOUND_STORE")
            .output()
            .expect("run leakhound actuate")
    };
    let first = run();
    let first_out = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    let rows = actions(store).await?;
    let evictions: Vec<_> = rows.iter().filter(|r| r.action == "evict").collect();
    ensure!(!evictions.is_empty(), "no eviction decided:\n{first_out}");
    for r in &evictions {
        ensure!(
            r.target.pod.as_deref() == Some(names[0].as_str()),
            "eviction of another pod: {r:?}"
        );
        ensure!(r.dry_run, "not a dry run: {r:?}");
        ensure!(
            format!("{:?}", r.outcome) == "DryRun",
            "server did not accept the dry-run eviction: {r:?}\n{first_out}"
        );
    }
    // Nothing changed: the same three pods.
    let mut after: Vec<String> = pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    after.sort();
    ensure!(
        after == names,
        "pods changed in a dry run: {after:?} vs {names:?}"
    );

    // Again: every decision is already on record, nothing new is decided.
    run();
    let again = actions(store).await?;
    ensure!(
        again.iter().filter(|r| r.action == "evict").count() == evictions.len(),
        "a second run decided again:\n{again:#?}"
    );
    Ok(())
}
