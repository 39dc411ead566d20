//! `leakhound actuate` end to end on the real control plane (tests/k8s): leak events written to
//! a store drive the right Kubernetes calls per level, made by the restricted identity bound to
//! exactly the rules of the shipped `leakhound-actuate` ClusterRole (deploy/leakhound.yaml, rendered
//! from the Helm chart), so the shipped least privilege is enough.
//!
//! - L2: dry-run changes nothing; --apply creates the goroutines HPA with the right spec; an
//!   existing HPA is patched, not fought (its bounds and other metrics stay); replays do nothing.
//! - L3 on a 3-replica Deployment with a PDB (maxUnavailable 1): the capture fails (the fake
//!   pods serve nothing) and is recorded, non-fatal; the first eviction is taken; the second,
//!   inside the budget, is refused by the PDB (429) and recorded as deferred; a replay retries
//!   only the deferred one; once the replacement is Ready, the next run evicts it.
//! - A deny-listed namespace is skipped with the reason, nothing is called.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use leakhound_actuate::model::ActionRecord;
use leakhound_ingest::store::{Partition, Store};
use leakhound_schemas::events::{EVENT_SCHEMA, LeakEvent, Level, events_to_batch};
use leakhound_schemas::tables::Table;
use serde_json::{Value, json};

use crate::k8s::{
    admin_client, create_namespace, delete_namespace, deployment, kubeconfigs, label_fake_nodes,
    poll, skip, unique_name, wait_pdb, wait_ready_pods,
};
use crate::support::{bin, repo};

const RESTRICTED_USER: &str = "leakhound-restricted";

pub(crate) fn event(
    id: &str,
    ns: &str,
    workload: &str,
    pod: Option<&str>,
    level: Level,
) -> LeakEvent {
    let now = Utc::now();
    LeakEvent {
        schema: EVENT_SCHEMA.into(),
        event_id: id.into(),
        cluster: None,
        namespace: ns.into(),
        workload_kind: Some("Deployment".into()),
        workload: Some(workload.into()),
        pod: pod.map(str::to_string),
        level,
        detector: "growth_rule".into(),
        detected_at: now,
        onset: now - chrono::Duration::minutes(20),
        window_start: now - chrono::Duration::hours(1),
        window_end: now,
        score: 0.9,
        growth_per_s: 5.0,
        residence_p99_s: Some(600.0),
        alive_over_5m_share: Some(0.05),
        goroutines: 5000,
        baseline_goroutines: Some(100.0),
        sla_penalty: 10.0,
        reason: "goroutines grow 5/s".into(),
        clusters: vec![],
        memory_bytes: None,
        memory_limit_bytes: None,
        time_to_limit_s: None,
    }
}

/// Write events to the store as analyze does (one file per call).
pub(crate) async fn write_events(store: &str, events: &[LeakEvent]) -> Result<()> {
    let store = Store::open(store)?;
    let batch = events_to_batch(events)?;
    let ts = events[0].detected_at.timestamp_micros();
    let name = format!("events-{ts}-{}.parquet", events[0].event_id);
    store
        .write_file(
            Table::LeakEvents,
            &Partition::for_ts(Table::LeakEvents, ts),
            &name,
            &batch,
        )
        .await?;
    Ok(())
}

/// Every row of the actions table.
pub(crate) async fn actions(store: &str) -> Result<Vec<ActionRecord>> {
    let store = Store::open(store)?;
    let schema = Table::Actions.schema();
    let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut out = Vec::new();
    for b in store.read_columns(Table::Actions, &cols, None).await? {
        for r in leakhound_actuate::audit::records_from_batch(&b) {
            out.push(r.map_err(anyhow::Error::msg)?);
        }
    }
    out.sort_by_key(|r| r.decided_at);
    Ok(out)
}

/// `leakhound actuate` as the restricted identity; returns (success, stdout + stderr).
fn actuate(store: &str, kubeconfig: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["actuate", "--store", store, "--kubeconfig"])
        .arg(kubeconfig)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("LEAKHOUND_STORE")
        .env_remove("LEAKHOUND_APPLY")
        .output()
        .expect("run leakhound actuate");
    (
        out.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Bind the restricted user, in `ns` only, to the rules of the shipped ClusterRole
/// `leakhound-actuate` (deploy/leakhound.yaml; copied under a name of this test's own).
pub(crate) async fn bind_shipped_role(client: &Client, ns: &str) -> Result<String> {
    let path = repo().join("deploy/leakhound.yaml");
    let text = std::fs::read_to_string(&path)?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "leakhound-actuate")
        .context("deploy/leakhound.yaml has no ClusterRole leakhound-actuate")?;
    let name = format!("{ns}-actuate");
    let cr: ClusterRole = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "leakhound.dev/test": "it" } },
        "rules": role["rules"],
    }))?;
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &cr)
        .await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "actuate" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER }],
    }))?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await?;
    Ok(name)
}

pub(crate) async fn unbind(client: &Client, cluster_role: &str) {
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(cluster_role, &DeleteParams::default())
        .await;
}

fn rows_for<'a>(rows: &'a [ActionRecord], trigger: &str, action: &str) -> Vec<&'a ActionRecord> {
    rows.iter()
        .filter(|r| r.trigger_id == trigger && r.action == action)
        .collect()
}

#[tokio::test]
async fn actuate_l2_creates_or_patches_the_goroutines_hpa() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("act-hpa");
    create_namespace(&client, &ns).await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let result = hpa_scenario(&client, &ns).await;
    unbind(&client, &role).await;
    if result.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    result
}

async fn hpa_scenario(client: &Client, ns: &str) -> Result<()> {
    let kc = &kubeconfigs()?.restricted;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let none = BTreeMap::new();
    deployments
        .create(&PostParams::default(), &deployment("orders", 3, &none)?)
        .await?;
    deployments
        .create(&PostParams::default(), &deployment("cart", 2, &none)?)
        .await?;
    // cart already has an HPA of its own, on CPU, 2..5.
    let theirs: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": "cart-cpu" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "cart" },
            "minReplicas": 2, "maxReplicas": 5,
            "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                "target": { "type": "Utilization", "averageUtilization": 80 } } }]
        }
    }))?;
    hpas.create(&PostParams::default(), &theirs).await?;

    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8 path")?;
    write_events(
        store,
        &[event("ev-orders-l2", ns, "orders", None, Level::L2)],
    )
    .await?;
    write_events(store, &[event("ev-cart-l2", ns, "cart", None, Level::L2)]).await?;

    // A deny-listed namespace: skipped with the reason, nothing sent. (A skip is final for
    // its trigger, so this runs on a store of its own.)
    let denied = dir.path().join("denied");
    let denied = denied.to_str().context("utf-8 path")?;
    write_events(
        denied,
        &[event("ev-orders-l2", ns, "orders", None, Level::L2)],
    )
    .await?;
    let (ok, out) = actuate(denied, kc, &["--deny-namespace", ns, "--apply"]);
    ensure!(ok, "deny-listed run failed:\n{out}");
    ensure!(out.contains("1 skipped"), "{out}");
    let rows = actions(denied).await?;
    ensure!(
        rows.len() == 1 && rows[0].reason.contains("is on the deny-list"),
        "{rows:#?}"
    );
    ensure!(
        hpas.get_opt("leakhound-orders").await?.is_none(),
        "deny-listed run created an HPA"
    );

    // Dry-run (the default): validated by the server, nothing changes.
    let (ok, out) = actuate(store, kc, &[]);
    ensure!(ok, "dry-run failed:\n{out}");
    ensure!(out.contains("2 dry-run"), "{out}");
    ensure!(
        hpas.get_opt("leakhound-orders").await?.is_none(),
        "dry-run created an HPA"
    );
    let cart = hpas.get("cart-cpu").await?;
    ensure!(
        cart.spec.metrics.as_ref().map(Vec::len) == Some(1),
        "dry-run patched cart-cpu"
    );
    let rows = actions(store).await?;
    let dry = rows_for(&rows, "ev-orders-l2", "hpa_create");
    ensure!(
        dry.len() == 1 && dry[0].outcome.as_str() == "dry_run" && dry[0].dry_run,
        "{rows:#?}"
    );
    // A dry-run replay: nothing.
    let (ok, out) = actuate(store, kc, &[]);
    ensure!(
        ok && out.contains("2 already done") && out.contains("0 rows written"),
        "{out}"
    );

    // --apply: orders gets leakhound's HPA, cart's HPA gains the goroutines metric.
    let (ok, out) = actuate(store, kc, &["--apply"]);
    ensure!(ok, "apply failed:\n{out}");
    ensure!(out.contains("2 taken"), "{out}");
    let hpa = hpas.get("leakhound-orders").await?;
    let full = serde_json::to_value(&hpa.spec)?;
    let spec = json!({
        "scaleTargetRef": full["scaleTargetRef"],
        "minReplicas": full["minReplicas"],
        "maxReplicas": full["maxReplicas"],
        "metrics": full["metrics"],
    });
    ensure!(
        spec == json!({
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "orders" },
            // Never below the 3 replicas the Deployment has; the policy's max.
            "minReplicas": 3,
            "maxReplicas": 10,
            "metrics": [{ "type": "Pods", "pods": {
                "metric": { "name": "go_goroutines" },
                "target": { "type": "AverageValue", "averageValue": "500" } } }]
        }),
        "HPA spec: {spec:#}"
    );
    let cart = hpas.get("cart-cpu").await?;
    let metrics = serde_json::to_value(&cart.spec.metrics)?;
    ensure!(
        cart.spec.min_replicas == Some(2) && cart.spec.max_replicas == 5,
        "bounds of cart-cpu changed: {:?}",
        cart.spec
    );
    ensure!(
        metrics[0]["resource"]["name"] == "cpu"
            && metrics[1]["pods"]["metric"]["name"] == "go_goroutines"
            && metrics[1]["pods"]["target"]["averageValue"] == "500",
        "cart-cpu metrics: {metrics:#}"
    );
    ensure!(
        hpas.get_opt("leakhound-cart").await?.is_none(),
        "a second HPA was created for cart"
    );
    // The Deployments were never scaled directly.
    for (name, want) in [("orders", 3), ("cart", 2)] {
        let d = deployments.get(name).await?;
        ensure!(
            d.spec.replicas == Some(want),
            "{name} was scaled: {:?}",
            d.spec.replicas
        );
    }

    // Replays do nothing: same HPAs (resourceVersion), no new rows.
    let rv = (
        hpa.metadata.resource_version.clone(),
        cart.metadata.resource_version.clone(),
    );
    let before = actions(store).await?.len();
    let (ok, out) = actuate(store, kc, &["--apply"]);
    ensure!(
        ok && out.contains("2 already done") && out.contains("0 rows written"),
        "{out}"
    );
    ensure!(actions(store).await?.len() == before, "a replay wrote rows");
    let now = (
        hpas.get("leakhound-orders")
            .await?
            .metadata
            .resource_version,
        hpas.get("cart-cpu").await?.metadata.resource_version,
    );
    ensure!(now == rv, "a replay changed an HPA: {rv:?} → {now:?}");
    Ok(())
}

#[tokio::test]
async fn actuate_l3_evicts_one_pod_and_defers_the_second_on_the_pdb() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("act-evict");
    create_namespace(&client, &ns).await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let node_key = format!("leakhound.dev/{ns}");
    label_fake_nodes(&client, &node_key, Some("true")).await?;
    let result = evict_scenario(&client, &ns, &node_key).await;
    let _ = label_fake_nodes(&client, &node_key, None).await;
    unbind(&client, &role).await;
    if result.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    result
}

async fn pod_names(pods: &Api<Pod>) -> Result<Vec<String>> {
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    Ok(names)
}

async fn evict_scenario(client: &Client, ns: &str, node_key: &str) -> Result<()> {
    let kc = &kubeconfigs()?.restricted;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let selector = BTreeMap::from([(node_key.to_owned(), "true".to_owned())]);
    deployments
        .create(&PostParams::default(), &deployment("web", 3, &selector)?)
        .await?;
    let ready = wait_ready_pods(&pods, "app=web", 3).await?;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": "web" } } }
    }))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    wait_pdb(&pdbs, "web", 3, 1).await?;

    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8 path")?;
    let (a, b) = (ready[0].as_str(), ready[1].as_str());
    write_events(store, &[event("ev-a", ns, "web", Some(a), Level::L3)]).await?;
    write_events(store, &[event("ev-b", ns, "web", Some(b), Level::L3)]).await?;

    // Dry-run: both evictions pass the server's checks (a dry-run does not use up the PDB), no
    // pod goes.
    let (ok, out) = actuate(store, kc, &[]);
    // The captures fail (KWOK pods serve nothing, and are not annotated): exit 1, reported.
    ensure!(
        !ok && out.contains("2 dry-run") && out.contains("2 failed"),
        "{out}"
    );
    ensure!(pod_names(&pods).await? == ready, "dry-run evicted a pod");

    // No node takes new pods of this test from here on: the first eviction's replacement stays
    // Pending, so the PDB allows no second disruption.
    label_fake_nodes(client, node_key, None).await?;
    let (_, out) = actuate(store, kc, &["--apply"]);
    ensure!(
        out.contains("1 taken") && out.contains("1 deferred"),
        "{out}"
    );
    let rows = actions(store).await?;
    let ev_a = rows_for(&rows, "ev-a", "evict");
    let ev_b = rows_for(&rows, "ev-b", "evict");
    let last_a = ev_a.last().context("no eviction row for ev-a")?;
    let last_b = ev_b.last().context("no eviction row for ev-b")?;
    ensure!(
        last_a.outcome.as_str() == "taken"
            && !last_a.dry_run
            && last_a.target.pod.as_deref() == Some(a),
        "{last_a:#?}"
    );
    ensure!(
        last_b.outcome.as_str() == "deferred"
            && last_b.http_status == Some(429)
            && last_b.reason.contains("disruption budget"),
        "{last_b:#?}"
    );
    let capture = rows_for(&rows, "ev-a", "capture");
    ensure!(
        capture.last().is_some_and(
            |c| c.outcome.as_str() == "failed" && c.reason.contains("cannot be scraped")
        ),
        "{capture:#?}"
    );
    let names = pod_names(&pods).await?;
    ensure!(
        !names.contains(&a.to_string()) && names.contains(&b.to_string()),
        "{names:?}"
    );

    // A replay: ev-a is done (nothing sent, nothing written for it); ev-b is retried, and
    // deferred again while the PDB still says no.
    let before = actions(store).await?.len();
    let (_, out) = actuate(store, kc, &["--apply"]);
    ensure!(
        out.contains("0 taken") && out.contains("1 deferred"),
        "{out}"
    );
    let rows = actions(store).await?;
    let new: Vec<_> = rows[before..].iter().collect();
    ensure!(
        new.iter().all(|r| r.trigger_id == "ev-b") && new.iter().any(|r| r.action == "evict"),
        "{new:#?}"
    );

    // The replacement schedules and becomes Ready: the next run takes the deferred eviction.
    label_fake_nodes(client, node_key, Some("true")).await?;
    wait_ready_pods(&pods, "app=web", 3).await?;
    wait_pdb(&pdbs, "web", 3, 1).await?;
    let (_, out) = actuate(store, kc, &["--apply"]);
    ensure!(
        out.contains("1 taken") && out.contains("0 deferred"),
        "{out}"
    );
    poll("pod b evicted", Duration::from_secs(30), async || {
        let names = pod_names(&pods).await?;
        Ok(if names.contains(&b.to_string()) {
            Err(format!("{names:?}"))
        } else {
            Ok(())
        })
    })
    .await?;
    // And now both are done: a replay sends nothing.
    let before = actions(store).await?.len();
    let (_, out) = actuate(store, kc, &["--apply"]);
    ensure!(
        out.contains("0 taken") && out.contains("0 deferred"),
        "{out}"
    );
    let rows = actions(store).await?;
    ensure!(
        rows[before..].iter().all(|r| r.action == "capture"),
        "only the failed captures may be retried: {:#?}",
        &rows[before..]
    );
    Ok(())
}

/// The other steps a policy can choose, as the restricted identity: `min_replicas` raises the
/// minReplicas of the HPA that owns a workload (the Deployment itself is never written) and
/// scales a workload without one through its scale subresource; `vpa` is skipped where the CRD
/// is missing and annotates the VPA where it exists; `rollout_restart` restarts the template;
/// an eviction that would leave fewer ready replicas than `--min-ready-replicas` is deferred
/// without a call; a second change inside the cooldown is skipped. Dry-run changes nothing.
#[tokio::test]
async fn actuate_min_replicas_vpa_restart_min_ready_and_cooldown() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("act-more");
    create_namespace(&client, &ns).await?;
    // A cluster reused after a failed run may still have the CRD this test installs.
    remove_vpa_crd(&client).await;
    let gvk =
        kube::core::GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler");
    poll(
        "the VPA CRD to be gone",
        Duration::from_secs(60),
        async || {
            Ok(match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok(_) => Err("still served".to_string()),
                Err(_) => Ok(()),
            })
        },
    )
    .await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let result = more_scenario(&client, &ns).await;
    unbind(&client, &role).await;
    remove_vpa_crd(&client).await;
    if result.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    result
}

fn managers(d: &Deployment) -> Vec<String> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect()
}

async fn install_vpa_crd(client: &Client) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": "verticalpodautoscalers.autoscaling.k8s.io",
            // As the upstream VPA CRD carries it (*.k8s.io groups are protected).
            "annotations": { "api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/63797" } },
        "spec": {
            "group": "autoscaling.k8s.io",
            "names": { "kind": "VerticalPodAutoscaler", "plural": "verticalpodautoscalers",
                       "singular": "verticalpodautoscaler", "listKind": "VerticalPodAutoscalerList" },
            "scope": "Namespaced",
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true } } }]
        }
    }))?;
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let gvk =
        kube::core::GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler");
    poll(
        "the VPA CRD to be served",
        Duration::from_secs(60),
        async || {
            Ok(match kube::discovery::pinned_kind(client, &gvk).await {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            })
        },
    )
    .await
}

async fn more_scenario(client: &Client, ns: &str) -> Result<()> {
    let kc = &kubeconfigs()?.restricted;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let none = BTreeMap::new();
    for (name, n) in [("api", 2), ("solo", 2), ("batch", 2)] {
        deployments
            .create(&PostParams::default(), &deployment(name, n, &none)?)
            .await?;
    }
    wait_ready_pods(&pods, "app=batch", 2).await?;
    let theirs: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": "solo-hpa" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "solo" },
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                "target": { "type": "Utilization", "averageUtilization": 80 } } }]
        }
    }))?;
    hpas.create(&PostParams::default(), &theirs).await?;

    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    crate::support::write(
        &policy,
        "levels:\n  l2: [min_replicas, vpa]\n  l3: [evict, rollout_restart]\ncooldown: 1h\n",
    );
    let policy = policy.to_str().context("utf-8")?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8 path")?;
    write_events(store, &[event("ev-api", ns, "api", None, Level::L2)]).await?;
    write_events(store, &[event("ev-solo", ns, "solo", None, Level::L2)]).await?;
    // Detected after batch's pods started (creation times are whole seconds; pods created in
    // the second of the detection are taken for replacements).
    let newest = pods
        .list(&ListParams::default().labels("app=batch"))
        .await?
        .items
        .iter()
        .filter_map(|p| {
            leakhound_actuate::resolve::to_chrono(&p.metadata.creation_timestamp.as_ref()?.0)
        })
        .max()
        .context("batch has no pods")?;
    if let Ok(wait) = (newest + chrono::Duration::milliseconds(1100) - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    write_events(store, &[event("ev-batch", ns, "batch", None, Level::L3)]).await?;
    let args = ["--policy", policy, "--min-ready-replicas", "2"];

    // Dry-run: nothing changes.
    let (ok, out) = actuate(store, kc, &args);
    ensure!(ok, "dry-run:\n{out}");
    ensure!(
        out.contains("3 dry-run") && out.contains("1 deferred"),
        "{out}"
    );
    ensure!(
        deployments.get("api").await?.spec.replicas == Some(2),
        "dry-run scaled api"
    );
    ensure!(
        hpas.get("solo-hpa").await?.spec.min_replicas == Some(2),
        "dry-run patched solo-hpa"
    );
    let restarted = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"))
    };
    ensure!(
        !restarted(&deployments.get("batch").await?),
        "dry-run restarted batch"
    );

    let mut args_apply = args.to_vec();
    args_apply.push("--apply");
    let (ok, out) = actuate(store, kc, &args_apply);
    ensure!(ok, "apply:\n{out}");
    ensure!(
        out.contains("3 taken") && out.contains("1 deferred"),
        "{out}"
    );
    // api has no HPA: scaled through its scale subresource, 2 → 3.
    ensure!(
        deployments.get("api").await?.spec.replicas == Some(3),
        "api not scaled"
    );
    // solo's replicas belong to its HPA: the HPA's minReplicas is raised, the Deployment is
    // never written by leakhound.
    let solo_hpa = hpas.get("solo-hpa").await?;
    ensure!(
        solo_hpa.spec.min_replicas == Some(3) && solo_hpa.spec.max_replicas == 4,
        "{:?}",
        solo_hpa.spec
    );
    let solo = deployments.get("solo").await?;
    ensure!(
        !managers(&solo).iter().any(|m| m == "leakhound"),
        "leakhound wrote Deployment solo: {:?}",
        managers(&solo)
    );
    ensure!(
        restarted(&deployments.get("batch").await?),
        "batch not restarted"
    );
    let rows = actions(store).await?;
    let vpa: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "vpa" && !r.dry_run)
        .collect();
    ensure!(
        vpa.len() == 2
            && vpa
                .iter()
                .all(|r| r.outcome.as_str() == "skipped" && r.reason.contains("not installed")),
        "vpa rows: {vpa:#?}"
    );
    let evict = rows_for(&rows, "ev-batch", "evict");
    ensure!(
        evict.iter().all(|r| r.outcome.as_str() == "deferred"
            && r.http_status.is_none()
            && r.reason.contains("min_ready_replicas 2")),
        "evict rows of ev-batch: {evict:#?}"
    );

    // With the VPA CRD and a VPA for api: a new L2 event annotates it, and the second
    // min_replicas on api inside the 1 h cooldown is skipped.
    install_vpa_crd(client).await?;
    let gvk =
        kube::core::GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler");
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    let vpas: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let mut vpa = kube::api::DynamicObject::new("api-vpa", &ar);
    vpa.data = json!({ "spec": { "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "api" },
                                 "updatePolicy": { "updateMode": "Off" } } });
    vpas.create(&PostParams::default(), &vpa).await?;
    write_events(store, &[event("ev-api-2", ns, "api", None, Level::L2)]).await?;
    let (ok, out) = actuate(store, kc, &args_apply);
    ensure!(ok, "apply 2:\n{out}");
    let rows = actions(store).await?;
    let min: Vec<_> = rows_for(&rows, "ev-api-2", "min_replicas")
        .into_iter()
        .filter(|r| !r.dry_run)
        .collect();
    ensure!(
        min.len() == 1
            && min[0].outcome.as_str() == "skipped"
            && min[0].reason.starts_with("cooldown:"),
        "min_replicas rows of ev-api-2: {min:#?}"
    );
    ensure!(
        deployments.get("api").await?.spec.replicas == Some(3),
        "api scaled inside the cooldown"
    );
    // api's VPA is theirs (mode Off, no resource policy): its memory floor is raised to the
    // pods' request (16Mi) x 1.5, its mode stays, the previous policy is kept for a revert.
    let v = vpas.get("api-vpa").await?;
    let ann = v.metadata.annotations.unwrap_or_default();
    ensure!(
        ann.get("leakhound.io/leak-level").map(String::as_str) == Some("L2")
            && ann.get("leakhound.io/leak-trigger").map(String::as_str) == Some("ev-api-2")
            && ann
                .get("leakhound.io/previous-resource-policy")
                .map(String::as_str)
                == Some("null"),
        "{ann:?}"
    );
    ensure!(
        v.data["spec"]["updatePolicy"]["updateMode"] == "Off",
        "the VPA's mode changed"
    );
    ensure!(
        v.data["spec"]["resourcePolicy"]["containerPolicies"]
            == json!([{ "containerName": "app", "controlledResources": ["memory"],
                        "minAllowed": { "memory": "24Mi" } }]),
        "{:#}",
        v.data["spec"]
    );

    // solo has no VPA: dry-run creates none; --apply creates leakhound's, memory only, the
    // floor from the request, the ceiling and mode from the policy; a second trigger finds the
    // floor in place and sends nothing.
    write_events(store, &[event("ev-solo-2", ns, "solo", None, Level::L2)]).await?;
    let (_, out) = actuate(store, kc, &args);
    ensure!(
        vpas.get_opt("leakhound-solo").await?.is_none(),
        "dry-run created a VPA:\n{out}"
    );
    let rows = actions(store).await?;
    ensure!(
        rows_for(&rows, "ev-solo-2", "vpa_create")
            .iter()
            .any(|r| r.outcome.as_str() == "dry_run"),
        "{out}"
    );
    let (ok, out) = actuate(store, kc, &args_apply);
    ensure!(ok, "apply 3:\n{out}");
    let created = vpas.get("leakhound-solo").await?;
    ensure!(
        created.data["spec"]
            == json!({
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "solo" },
                "updatePolicy": { "updateMode": "Initial" },
                "resourcePolicy": { "containerPolicies": [{
                    "containerName": "app", "controlledResources": ["memory"],
                    "minAllowed": { "memory": "24Mi" }, "maxAllowed": { "memory": "8Gi" } }] }
            }),
        "{:#}",
        created.data["spec"]
    );
    ensure!(
        created
            .metadata
            .labels
            .unwrap_or_default()
            .get("app.kubernetes.io/managed-by")
            == Some(&"leakhound".to_string()),
        "no managed-by label"
    );
    write_events(store, &[event("ev-solo-3", ns, "solo", None, Level::L2)]).await?;
    let rv = vpas.get("leakhound-solo").await?.metadata.resource_version;
    let (ok, out) = actuate(store, kc, &args_apply);
    ensure!(ok, "apply 4:\n{out}");
    let rows = actions(store).await?;
    // Inside the 1 h cooldown of the VPA step on solo (an already raised floor is skipped the
    // same way, "already keeps memory", once the cooldown is over: a unit test of raise_floors).
    let again: Vec<_> = rows
        .iter()
        .filter(|r| r.trigger_id == "ev-solo-3" && r.action.starts_with("vpa") && !r.dry_run)
        .collect();
    ensure!(
        again.len() == 1
            && again[0].outcome.as_str() == "skipped"
            && again[0].reason.starts_with("cooldown:"),
        "vpa rows of ev-solo-3: {again:#?}"
    );
    ensure!(
        vpas.get("leakhound-solo").await?.metadata.resource_version == rv,
        "a VPA already in place was written"
    );
    Ok(())
}

async fn remove_vpa_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let _ = Api::<CustomResourceDefinition>::all(client.clone())
        .delete(
            "verticalpodautoscalers.autoscaling.k8s.io",
            &DeleteParams::default(),
        )
        .await;
}

/// The namespaced mode: the shipped rules bound by a RoleBinding in one namespace only act
/// there, and the API server itself refuses (403) what an
/// event names elsewhere — even with no allow-list in leakhound, which then records the refusal.
#[tokio::test]
async fn actuate_namespaced_rbac_is_enforced_by_the_api_server() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let (inside, outside) = (unique_name("act-ns-in"), unique_name("act-ns-out"));
    create_namespace(&client, &inside).await?;
    create_namespace(&client, &outside).await?;
    // The namespaced mode (the chart's `rbac.scope: namespaced`) grants the same rules per
    // namespace; bound in one namespace only here.
    let bound = bind_shipped_role(&client, &inside).await?;
    let result = namespaced_scenario(&client, &inside, &outside).await;
    unbind(&client, &bound).await;
    if result.is_ok() {
        delete_namespace(&client, &inside).await;
        delete_namespace(&client, &outside).await;
    }
    result
}

async fn namespaced_scenario(client: &Client, inside: &str, outside: &str) -> Result<()> {
    let kc = &kubeconfigs()?.restricted;
    let none = BTreeMap::new();
    let mut victims = Vec::new();
    for ns in [inside, outside] {
        Api::<Deployment>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &deployment("web", 2, &none)?)
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let ready = wait_ready_pods(&pods, "app=web", 2).await?;
        victims.push(ready[0].clone());
    }
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    crate::support::write(&policy, "levels:\n  l3: [evict]\n");
    let policy = policy.to_str().context("utf-8")?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8 path")?;
    write_events(
        store,
        &[event("ev-in", inside, "web", Some(&victims[0]), Level::L3)],
    )
    .await?;
    write_events(
        store,
        &[event(
            "ev-out",
            outside,
            "web",
            Some(&victims[1]),
            Level::L3,
        )],
    )
    .await?;
    let (ok, out) = actuate(store, kc, &["--policy", policy, "--apply"]);
    ensure!(!ok, "a refused eviction must fail the run:\n{out}");
    let rows = actions(store).await?;
    let inn = rows_for(&rows, "ev-in", "evict");
    ensure!(
        inn.len() == 1 && inn[0].outcome.as_str() == "taken",
        "inside: {inn:#?}"
    );
    let outr = rows_for(&rows, "ev-out", "evict");
    ensure!(
        outr.len() == 1
            && outr[0].outcome.as_str() == "failed"
            && outr[0].http_status == Some(403)
            && !outr[0].retryable
            && outr[0].reason.contains("forbidden"),
        "outside: {outr:#?}"
    );
    let still = Api::<Pod>::namespaced(client.clone(), outside)
        .get_opt(&victims[1])
        .await?;
    ensure!(
        still.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        "the pod outside the scope was touched"
    );
    // leakhound's own allow-list says the same without a call.
    let dir2 = tempfile::tempdir()?;
    let store2 = dir2.path().join("store");
    let store2 = store2.to_str().context("utf-8 path")?;
    write_events(
        store2,
        &[event(
            "ev-out",
            outside,
            "web",
            Some(&victims[1]),
            Level::L3,
        )],
    )
    .await?;
    let (ok, out) = actuate(
        store2,
        kc,
        &["--policy", policy, "--apply", "--allow-namespace", inside],
    );
    ensure!(ok, "{out}");
    let rows = actions(store2).await?;
    ensure!(
        rows.len() == 1
            && rows[0].outcome.as_str() == "skipped"
            && rows[0].reason.contains("not on the allow-list"),
        "{rows:#?}"
    );
    Ok(())
}

/// A workload-wide L3 (the event names no pod) evicts every pod that was running when the leak
/// was detected, one per run, oldest first, each behind the PDB, the budget and min-ready; the
/// next only once the last replacement is Ready; replacements are never evicted; then the step
/// is done and a replay sends nothing. Min-ready also holds for StatefulSets and DaemonSets; a
/// pod with no controller is not evicted.
#[tokio::test]
async fn actuate_workload_wide_l3_evicts_every_leaking_pod_one_at_a_time() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("act-roll");
    create_namespace(&client, &ns).await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let node_key = format!("leakhound.dev/{ns}");
    label_fake_nodes(&client, &node_key, Some("true")).await?;
    let result = rolling_scenario(&client, &ns, &node_key).await;
    let _ = label_fake_nodes(&client, &node_key, None).await;
    unbind(&client, &role).await;
    if result.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    result
}

async fn rolling_scenario(client: &Client, ns: &str, node_key: &str) -> Result<()> {
    let kc = &kubeconfigs()?.restricted;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let selector = BTreeMap::from([(node_key.to_owned(), "true".to_owned())]);
    deployments
        .create(&PostParams::default(), &deployment("roll", 3, &selector)?)
        .await?;
    wait_ready_pods(&pods, "app=roll", 3).await?;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": { "name": "roll" },
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": "roll" } } }
    }))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    wait_pdb(&pdbs, "roll", 3, 1).await?;
    // The leaking pods, oldest first, as the engine orders them.
    let mut leaking: Vec<(chrono::DateTime<Utc>, String)> = pods
        .list(&ListParams::default().labels("app=roll"))
        .await?
        .items
        .into_iter()
        .filter_map(|p| {
            let c = leakhound_actuate::resolve::to_chrono(&p.metadata.creation_timestamp?.0)?;
            Some((c, p.metadata.name?))
        })
        .collect();
    leaking.sort();
    let newest = leaking.last().context("no pods")?.0;
    let expected: Vec<String> = leaking.into_iter().map(|(_, n)| n).collect();

    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    crate::support::write(&policy, "levels:\n  l3: [evict]\neviction_budget: 10\n");
    let policy = policy.to_str().context("utf-8")?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8 path")?;
    // Detected in a later second than the pods started (creation times are whole seconds),
    // and before any replacement: the clock has to pass that second first.
    let later = newest + chrono::Duration::milliseconds(1100);
    if let Ok(wait) = (later - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    write_events(store, &[event("ev-roll", ns, "roll", None, Level::L3)]).await?;
    let args = ["--policy", policy, "--apply"];

    let mut evicted = Vec::new();
    // No node takes new pods of this test for the first round: the first eviction's
    // replacement stays Pending.
    label_fake_nodes(client, node_key, None).await?;
    for round in 0..3 {
        let (ok, out) = actuate(store, kc, &args);
        ensure!(ok && out.contains("1 taken"), "round {round}:\n{out}");
        let rows = actions(store).await?;
        let last = rows_for(&rows, "ev-roll", "evict")
            .into_iter()
            .rfind(|r| r.outcome.as_str() == "taken")
            .context("no taken eviction")?
            .target
            .pod
            .clone()
            .context("an eviction without a pod")?;
        evicted.push(last.clone());
        if round == 0 {
            // The replacement cannot schedule: the next run waits for it, without a call.
            let (ok, out) = actuate(store, kc, &args);
            let live: Vec<String> = pods
                .list(&ListParams::default().labels("app=roll"))
                .await?
                .items
                .iter()
                .map(|p| format!("{:?} ready={}", p.metadata.name, crate::k8s::pod_ready(p)))
                .collect();
            ensure!(
                ok && out.contains("0 taken") && out.contains("1 deferred"),
                "the run after the first eviction (ok={ok}):\n{out}\npods: {live:?}"
            );
            let rows = actions(store).await?;
            let d = rows_for(&rows, "ev-roll", "evict");
            let d = d.last().context("no row")?;
            ensure!(
                d.outcome.as_str() == "deferred"
                    && d.http_status.is_none()
                    && d.reason.contains("one pod at a time"),
                "{d:#?}"
            );
            label_fake_nodes(client, node_key, Some("true")).await?;
        }
        poll(
            "the evicted pod gone",
            Duration::from_secs(60),
            async || {
                let live = pods.get_opt(&last).await?;
                Ok(match live {
                    Some(p) if p.metadata.deletion_timestamp.is_none() => {
                        Err("still there".to_string())
                    }
                    _ => Ok(()),
                })
            },
        )
        .await?;
        wait_ready_pods(&pods, "app=roll", 3).await?;
        wait_pdb(&pdbs, "roll", 3, 1).await?;
    }
    ensure!(
        evicted == expected,
        "evicted {evicted:?}, want oldest first {expected:?}"
    );
    // Every leaking pod is gone; the replacements stay: the step is done.
    let (ok, out) = actuate(store, kc, &args);
    ensure!(
        ok && out.contains("0 taken") && out.contains("1 skipped"),
        "{out}"
    );
    let rows = actions(store).await?;
    let done = rows_for(&rows, "ev-roll", "evict");
    let done = done.last().context("no row")?;
    ensure!(
        done.target.pod.is_none() && done.reason.contains("left to evict"),
        "{done:#?}"
    );
    let before = rows.len();
    let (ok, out) = actuate(store, kc, &args);
    ensure!(ok && out.contains("1 already done"), "{out}");
    ensure!(actions(store).await?.len() == before, "a replay wrote rows");
    ensure!(
        wait_ready_pods(&pods, "app=roll", 3)
            .await?
            .iter()
            .all(|p| !expected.contains(p)),
        "a replacement was evicted or an old pod survived"
    );

    // Min-ready beyond Deployments: a 1-replica StatefulSet and a DaemonSet on the fake nodes.
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "db" },
        "spec": {
            "serviceName": "db", "replicas": 1,
            "selector": { "matchLabels": { "app": "db" } },
            "template": { "metadata": { "labels": { "app": "db" } }, "spec": {
                "nodeSelector": selector,
                "containers": [{ "name": "db", "image": "registry.invalid/leakhound/idle:1" }] } }
        }
    }))?;
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sts)
        .await?;
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent" },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "template": { "metadata": { "labels": { "app": "agent" } }, "spec": {
                "nodeSelector": selector,
                "containers": [{ "name": "agent", "image": "registry.invalid/leakhound/idle:1" }] } }
        }
    }))?;
    Api::<DaemonSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ds)
        .await?;
    let bare: Pod = serde_json::from_value(json!({
        "metadata": { "name": "bare", "labels": { "app": "bare" } },
        "spec": { "nodeSelector": selector,
                  "containers": [{ "name": "bare", "image": "registry.invalid/leakhound/idle:1" }] }
    }))?;
    pods.create(&PostParams::default(), &bare).await?;
    let db = wait_ready_pods(&pods, "app=db", 1).await?;
    let nodes = label_fake_nodes(client, node_key, Some("true")).await?;
    let agents = wait_ready_pods(&pods, "app=agent", nodes).await?;
    wait_ready_pods(&pods, "app=bare", 1).await?;
    poll(
        "the DaemonSet's status",
        Duration::from_secs(60),
        async || {
            let d = Api::<DaemonSet>::namespaced(client.clone(), ns)
                .get("agent")
                .await?;
            let ready = d.status.map(|s| s.number_ready).unwrap_or(0);
            Ok(if ready as usize == nodes {
                Ok(())
            } else {
                Err(format!("{ready} ready"))
            })
        },
    )
    .await?;
    let mut e_db = event("ev-db", ns, "db", Some(&db[0]), Level::L3);
    e_db.workload = None;
    e_db.workload_kind = None;
    let mut e_agent = event("ev-agent", ns, "agent", Some(&agents[0]), Level::L3);
    e_agent.workload = None;
    e_agent.workload_kind = None;
    let mut e_bare = event("ev-bare", ns, "bare", Some("bare"), Level::L3);
    e_bare.workload = None;
    e_bare.workload_kind = None;
    write_events(store, &[e_db, e_agent, e_bare]).await?;
    let min = nodes.to_string();
    let (_, out) = actuate(
        store,
        kc,
        &["--policy", policy, "--apply", "--min-ready-replicas", &min],
    );
    let rows = actions(store).await?;
    let db_row = rows_for(&rows, "ev-db", "evict");
    ensure!(
        db_row.len() == 1
            && db_row[0].outcome.as_str() == "deferred"
            && db_row[0].reason.contains("StatefulSet db has 1 ready"),
        "{out}\n{db_row:#?}"
    );
    let agent_row = rows_for(&rows, "ev-agent", "evict");
    ensure!(
        agent_row.len() == 1
            && agent_row[0].outcome.as_str() == "deferred"
            && agent_row[0]
                .reason
                .contains(&format!("DaemonSet agent has {nodes} ready")),
        "{out}\n{agent_row:#?}"
    );
    let bare_row = rows_for(&rows, "ev-bare", "evict");
    ensure!(
        bare_row.len() == 1
            && bare_row[0].outcome.as_str() == "skipped"
            && bare_row[0].reason.contains("no controller"),
        "{out}\n{bare_row:#?}"
    );
    ensure!(
        pods.get_opt("bare").await?.is_some() && pods.get_opt(&db[0]).await?.is_some(),
        "a protected pod was evicted"
    );
    Ok(())
}

/// The prometheus-adapter rule shipped for the goroutines HPA serves the metric the policy's
/// HPA asks for, per pod, and its PromQL (templates filled as the adapter fills them) parses.
#[test]
fn the_adapter_rule_serves_the_hpa_metric() -> Result<()> {
    let path = repo().join("deploy/prometheus-adapter/values.yaml");
    let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let metric = leakhound_actuate::policy::Policy::default().hpa.metric;
    let rule = v["rules"]["custom"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"]["as"] == metric.as_str()))
        .with_context(|| format!("no custom rule names {metric}"))?;
    ensure!(
        rule["seriesQuery"]
            .as_str()
            .is_some_and(|q| q.starts_with(&metric)),
        "{rule}"
    );
    ensure!(
        rule["resources"]["overrides"]["pod"]["resource"] == "pod"
            && rule["resources"]["overrides"]["namespace"]["resource"] == "namespace",
        "the metric must map to pods and namespaces: {rule}"
    );
    let q = rule["metricsQuery"].as_str().context("metricsQuery")?;
    let filled = q
        .replace("<<.GroupBy>>", "pod")
        .replace("<<.Series>>", &metric)
        .replace("<<.LabelMatchers>>", "namespace=\"shop\",pod=~\"a|b\"");
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("adapter.yaml");
    crate::support::write(
        &rules,
        serde_json::to_vec(&json!({ "groups": [{ "name": "adapter", "rules": [
            { "record": "leakhound:adapter_check", "expr": filled } ] }] }))?,
    );
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .context("promtool (Debian package prometheus)")?;
    ensure!(
        out.status.success(),
        "{filled}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
