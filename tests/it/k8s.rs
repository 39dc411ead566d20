//! Tests against a real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and KWOK fake nodes, all in the one process that `tests/k8s/start` builds and
//! starts (see `tests/k8s/README.md`).
//!
//! ```text
//!  this test ──kube-rs──▶ kube-apiserver ◀── controller-manager (deployment, disruption, ...)
//!   (admin / restricted       │  ▲       ◀── scheduler
//!    token kubeconfigs)     etcd └────── KWOK: fake nodes Ready, bound pods Running + Ready
//! ```
//!
//! The kubeconfig comes from `LEAKHOUND_KUBECONFIG` (the restricted identity's from
//! `LEAKHOUND_KUBECONFIG_RESTRICTED`, else `restricted.kubeconfig` beside the admin one). When
//! it is unset, the first test runs `tests/k8s/start` and uses the path it prints last.
//! `LEAKHOUND_SKIP_K8S=1` skips these tests (for a machine without Go), as it does in `tests/run`.
//!
//! Every test works in its own namespace, so the tests run in parallel and a cluster can be
//! reused across runs. Waits poll with a deadline; nothing sleeps for a fixed time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Client, Config};
use serde_json::{Value, json};

/// Label that `tests/k8s` puts on its fake nodes.
const FAKE_NODE_LABEL: &str = "leakhound.dev/fake-node";
/// Field manager for server-side apply.
const MANAGER: &str = "leakhound-it";
/// The token user of `restricted.kubeconfig` (see `tests/k8s/cmd/controlplane/credentials.go`).
const RESTRICTED_USER: &str = "leakhound-restricted";

// ---------------------------------------------------------------------------------------------
// Cluster access
// ---------------------------------------------------------------------------------------------

pub(crate) struct Kubeconfigs {
    pub(crate) admin: PathBuf,
    pub(crate) restricted: PathBuf,
}

pub(crate) fn skip() -> bool {
    // Same rule as tests/run: any non-empty value skips.
    if std::env::var("LEAKHOUND_SKIP_K8S").is_ok_and(|v| !v.is_empty()) {
        eprintln!("LEAKHOUND_SKIP_K8S is set: skipping a Kubernetes test");
        return true;
    }
    false
}

/// The kubeconfig paths; starts the control plane (once per test binary) when the environment
/// names none.
pub(crate) fn kubeconfigs() -> Result<&'static Kubeconfigs> {
    static CELL: OnceLock<std::result::Result<Kubeconfigs, String>> = OnceLock::new();
    CELL.get_or_init(|| locate_or_start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("no Kubernetes control plane: {e}"))
}

fn locate_or_start() -> Result<Kubeconfigs> {
    let admin = match std::env::var_os("LEAKHOUND_KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/start");
            eprintln!(
                "LEAKHOUND_KUBECONFIG is unset: running {}",
                script.display()
            );
            let out = Command::new(&script)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            ensure!(
                out.status.success(),
                "{} failed: {}",
                script.display(),
                out.status
            );
            let stdout = String::from_utf8(out.stdout).context("start printed non-UTF-8")?;
            let last = stdout
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .context("start printed no kubeconfig path")?;
            PathBuf::from(last.trim())
        }
    };
    let restricted = match std::env::var_os("LEAKHOUND_KUBECONFIG_RESTRICTED") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => admin.with_file_name("restricted.kubeconfig"),
    };
    for p in [&admin, &restricted] {
        ensure!(p.is_file(), "kubeconfig {} does not exist", p.display());
    }
    Ok(Kubeconfigs { admin, restricted })
}

pub(crate) async fn client_from(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    // kube-rs retries 429 by default (up to 15 times, honouring Retry-After): an eviction refused
    // by a PodDisruptionBudget would then only surface minutes later. The tests look at it.
    config.default_retry = false;
    Ok(Client::try_from(config)?)
}

pub(crate) async fn admin_client() -> Result<Client> {
    client_from(&kubeconfigs()?.admin).await
}

pub(crate) async fn restricted_client() -> Result<Client> {
    client_from(&kubeconfigs()?.restricted).await
}

/// A namespace name unique to this test run: `lh-<tag>-<pid>-<n>-<time>`.
pub(crate) fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0);
    format!("lh-{tag}-{}-{n}-{t}", std::process::id())
}

pub(crate) async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "leakhound.dev/test": "it" } }
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Best effort: the namespace controller finishes the deletion in the background.
pub(crate) async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// The HTTP status of an API error, if the error is one.
pub(crate) fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub(crate) fn describe<T>(r: &kube::Result<T>) -> String {
    match r {
        Ok(_) => "success".to_owned(),
        Err(kube::Error::Api(s)) => format!("{} {}: {}", s.code, s.reason, s.message),
        Err(e) => e.to_string(),
    }
}

/// Calls `check` until it returns `Ok(Ok(value))` or the deadline passes; `Ok(Err(state))`
/// means "not yet" and `state` ends up in the timeout error.
pub(crate) async fn poll<T, F>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: AsyncFnMut() -> Result<std::result::Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = tokio::time::interval(Duration::from_millis(200));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let state = match check().await? {
            Ok(v) => return Ok(v),
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last state: {state}");
        }
    }
}

pub(crate) fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits for `want` Ready pods matching `selector`; returns their names, sorted.
pub(crate) async fn wait_ready_pods(
    pods: &Api<Pod>,
    selector: &str,
    want: usize,
) -> Result<Vec<String>> {
    poll(
        &format!("{want} Ready pods with {selector}"),
        Duration::from_secs(120),
        async || {
            let list = pods.list(&ListParams::default().labels(selector)).await?;
            let mut ready: Vec<String> = list
                .items
                .iter()
                .filter(|p| pod_ready(p))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            ready.sort();
            if ready.len() == want {
                Ok(Ok(ready))
            } else {
                let phases: Vec<String> = list
                    .items
                    .iter()
                    .map(|p| {
                        let phase = p
                            .status
                            .as_ref()
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_default();
                        format!(
                            "{}={phase}{}",
                            p.metadata.name.clone().unwrap_or_default(),
                            if pod_ready(p) { "/Ready" } else { "" }
                        )
                    })
                    .collect();
                Ok(Err(format!("{} Ready: {}", ready.len(), phases.join(", "))))
            }
        },
    )
    .await
}

/// Waits until the disruption controller has computed the PDB's status for its current spec.
pub(crate) async fn wait_pdb(
    pdbs: &Api<PodDisruptionBudget>,
    name: &str,
    healthy: i32,
    allowed: i32,
) -> Result<()> {
    poll(&format!("PDB {name}: {healthy} healthy, {allowed} disruptions allowed"), Duration::from_secs(60), async || {
        let pdb = pdbs.get(name).await?;
        let Some(st) = pdb.status else { return Ok(Err("no status".into())) };
        let observed = st.observed_generation.unwrap_or(0) >= pdb.metadata.generation.unwrap_or(1);
        // Zero counts are omitted from the JSON.
        let (current, desired) = (st.current_healthy.unwrap_or(0), st.desired_healthy.unwrap_or(0));
        let (allowed_now, expected) = (st.disruptions_allowed.unwrap_or(0), st.expected_pods.unwrap_or(0));
        if observed && current == healthy && allowed_now == allowed {
            Ok(Ok(()))
        } else {
            Ok(Err(format!(
                "observed={observed} currentHealthy={current} desiredHealthy={desired} disruptionsAllowed={allowed_now} expectedPods={expected}"
            )))
        }
    })
    .await
}

/// Adds (`Some`) or removes (`None`) a label on every fake node.
pub(crate) async fn label_fake_nodes(
    client: &Client,
    key: &str,
    value: Option<&str>,
) -> Result<usize> {
    let nodes = Api::<Node>::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels(&format!("{FAKE_NODE_LABEL}=true")))
        .await?;
    ensure!(!list.items.is_empty(), "the cluster has no fake nodes");
    let patch = json!({ "metadata": { "labels": { key: value } } });
    for n in &list.items {
        let name = n.metadata.name.as_deref().context("node without a name")?;
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(list.items.len())
}

pub(crate) fn deployment(
    name: &str,
    replicas: i32,
    node_selector: &BTreeMap<String, String>,
) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "nodeSelector": node_selector,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app",
                        // KWOK runs no containers, so the image is never pulled.
                        "image": "registry.invalid/leakhound/idle:1",
                        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } }
                    }]
                }
            }
        }
    }))?)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A Deployment of 3 becomes Ready on the fake nodes; with a PDB of minAvailable 2 one eviction
/// is allowed, and a second one is refused with 429 while the first pod has no Ready
/// replacement. Once the replacement is Ready, eviction is allowed again.
#[tokio::test]
async fn k8s_pdb_allows_one_eviction_then_refuses_with_429() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("pdb");
    create_namespace(&client, &ns).await?;
    // Pods of this test may only go to nodes carrying this label; taking it away makes the
    // replacement of an evicted pod unschedulable without touching other tests' pods.
    let node_key = format!("leakhound.dev/{ns}");
    label_fake_nodes(&client, &node_key, Some("true")).await?;
    let result = pdb_scenario(&client, &ns, &node_key).await;
    let _ = label_fake_nodes(&client, &node_key, None).await;
    if result.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    result
}

async fn pdb_scenario(client: &Client, ns: &str, node_key: &str) -> Result<()> {
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
        "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "web" } } }
    }))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    wait_pdb(&pdbs, "web", 3, 1).await?;

    // No node accepts new pods of this test from here on.
    label_fake_nodes(client, node_key, None).await?;

    pods.evict(&ready[0], &EvictParams::default())
        .await
        .with_context(|| format!("first eviction of {}", ready[0]))?;
    let second = pods.evict(&ready[1], &EvictParams::default()).await;
    match &second {
        Err(kube::Error::Api(s)) if s.code == 429 => {
            ensure!(
                s.message.contains("disruption budget"),
                "429 for another reason: {}",
                s.message
            );
        }
        other => bail!("second eviction: want 429, got {}", describe(other)),
    }
    // The first pod's replacement exists but cannot run: that is why the budget is exhausted.
    poll(
        "one unscheduled replacement pod",
        Duration::from_secs(30),
        async || {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let pending = list
                .items
                .iter()
                .filter(|p| {
                    p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
                        && p.metadata.deletion_timestamp.is_none()
                })
                .count();
            Ok(if pending == 1 {
                Ok(())
            } else {
                Err(format!("{pending} unscheduled pods"))
            })
        },
    )
    .await?;

    // Let the replacement schedule: 3 Ready again, and one eviction is allowed again.
    label_fake_nodes(client, node_key, Some("true")).await?;
    let ready = wait_ready_pods(&pods, "app=web", 3).await?;
    wait_pdb(&pdbs, "web", 3, 1).await?;
    pods.evict(&ready[1], &EvictParams::default())
        .await
        .context("eviction after the replacement became Ready")?;
    Ok(())
}

/// The restricted identity, bound to a Role that allows eviction, can evict a pod of its
/// namespace, but cannot delete the namespace, read secrets or evict elsewhere (403).
#[tokio::test]
async fn k8s_restricted_identity_can_evict_but_not_delete_namespace() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let admin = admin_client().await?;
    let ns = unique_name("rbac");
    let other = unique_name("rbac-other");
    create_namespace(&admin, &ns).await?;
    create_namespace(&admin, &other).await?;

    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "leakhound-evictor" },
        "rules": [
            { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"] }
        ]
    }))?;
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "leakhound-evictor" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leakhound-evictor" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER }]
    }))?;
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await?;

    for namespace in [&ns, &other] {
        let d = deployment("victim", 1, &BTreeMap::new())?;
        Api::<Deployment>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &d)
            .await?;
    }
    let own = wait_ready_pods(&Api::namespaced(admin.clone(), &ns), "app=victim", 1).await?;
    let foreign = wait_ready_pods(&Api::namespaced(admin.clone(), &other), "app=victim", 1).await?;

    let restricted = restricted_client().await?;
    let own_pods: Api<Pod> = Api::namespaced(restricted.clone(), &ns);
    // The RBAC authorizer sees a new binding through an informer: allow it a moment.
    poll(
        "the restricted identity's eviction",
        Duration::from_secs(15),
        async || match own_pods.evict(&own[0], &EvictParams::default()).await {
            Ok(_) => Ok(Ok(())),
            Err(e) if api_code(&e) == Some(403) => Ok(Err(e.to_string())),
            Err(e) => Err(e.into()),
        },
    )
    .await?;

    let del = Api::<Namespace>::all(restricted.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    ensure!(
        matches!(&del, Err(e) if api_code(e) == Some(403)),
        "namespace deletion: want 403, got {}",
        describe(&del)
    );
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(restricted.clone(), &ns)
        .list(&ListParams::default())
        .await;
    ensure!(
        matches!(&secrets, Err(e) if api_code(e) == Some(403)),
        "listing secrets: want 403, got {}",
        describe(&secrets)
    );
    let elsewhere = Api::<Pod>::namespaced(restricted.clone(), &other)
        .evict(&foreign[0], &EvictParams::default())
        .await;
    ensure!(
        matches!(&elsewhere, Err(e) if api_code(e) == Some(403)),
        "eviction outside the bound namespace: want 403, got {}",
        describe(&elsewhere)
    );

    delete_namespace(&admin, &ns).await;
    delete_namespace(&admin, &other).await;
    Ok(())
}

/// An autoscaling/v2 HPA on a Pods metric (`go_goroutines`, AverageValue) is accepted as is;
/// malformed ones are refused by validation with 422.
#[tokio::test]
async fn k8s_hpa_v2_pods_metric_is_validated() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("hpa");
    create_namespace(&client, &ns).await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);

    let hpa = |name: &str, min: i32, max: i32, target: Value| -> Result<HorizontalPodAutoscaler> {
        Ok(serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                "minReplicas": min,
                "maxReplicas": max,
                "metrics": [{
                    "type": "Pods",
                    "pods": { "metric": { "name": "go_goroutines" }, "target": target }
                }]
            }
        }))?)
    };

    let created = hpas
        .create(
            &PostParams::default(),
            &hpa(
                "good",
                2,
                10,
                json!({ "type": "AverageValue", "averageValue": "500" }),
            )?,
        )
        .await
        .context("creating a valid HPA")?;
    let metric = created
        .spec
        .metrics
        .as_ref()
        .and_then(|m| m.first())
        .and_then(|m| m.pods.as_ref())
        .context("created HPA lost its Pods metric")?;
    ensure!(
        metric.metric.name == "go_goroutines",
        "metric name {}",
        metric.metric.name
    );
    ensure!(
        metric.target.average_value.as_ref().map(|q| q.0.as_str()) == Some("500"),
        "averageValue {:?}",
        metric.target.average_value
    );

    for (name, bad) in [
        // An AverageValue target without the value.
        (
            "no-average-value",
            hpa("bad-1", 2, 10, json!({ "type": "AverageValue" }))?,
        ),
        // Pods metrics only support AverageValue targets.
        (
            "utilization-on-pods",
            hpa(
                "bad-2",
                2,
                10,
                json!({ "type": "Utilization", "averageUtilization": 50 }),
            )?,
        ),
        // maxReplicas below minReplicas.
        (
            "max-below-min",
            hpa(
                "bad-3",
                5,
                2,
                json!({ "type": "AverageValue", "averageValue": "500" }),
            )?,
        ),
    ] {
        let r = hpas.create(&PostParams::default(), &bad).await;
        ensure!(
            matches!(&r, Err(e) if api_code(e) == Some(422)),
            "{name}: want 422, got {}",
            describe(&r)
        );
    }
    delete_namespace(&client, &ns).await;
    Ok(())
}

/// Every YAML document of `deploy/*.yaml` (what `kubectl apply -f deploy/` reads: the folder's
/// own files, not its subfolders) passes server-side dry-run (`dryRun=All`, strict field
/// validation), applied through discovery and the dynamic API, on a cluster without the
/// Prometheus Operator. A few built-in documents go through the same path first, so the check is
/// exercised even while `deploy/` is empty, and a broken document must be refused (the dry-run
/// really validates). The chart those files come from is checked in `helm.rs`.
#[tokio::test]
async fn k8s_deploy_manifests_pass_server_side_dry_run() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("dryrun");
    create_namespace(&client, &ns).await?;

    let builtin = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{ name: leakhound, namespace: {ns} }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{ name: leakhound, namespace: {ns} }}
rules:
  - apiGroups: [""]
    resources: [pods/eviction]
    verbs: [create]
---
apiVersion: batch/v1
kind: CronJob
metadata: {{ name: leakhound-scrape, namespace: {ns} }}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          serviceAccountName: leakhound
          restartPolicy: Never
          containers: [{{ name: scrape, image: "registry.invalid/leakhound:0" }}]
---
# a comment-only document and an empty one are skipped
---
"#
    );
    let docs = parse_documents(&builtin, "builtin")?;
    let report = dry_run_all(&client, &ns, &docs).await?;
    ensure!(
        report.applied == 3 && report.failures.is_empty(),
        "builtin manifests: {report:?}"
    );

    let broken = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: broken, namespace: {ns} }}\nspec: {{ replicas: -1, selector: {{ matchLabels: {{ app: broken }} }}, template: {{ metadata: {{ labels: {{ app: other }} }}, spec: {{ containers: [] }} }} }}\n"
    );
    let report = dry_run_all(&client, &ns, &parse_documents(&broken, "broken")?).await?;
    ensure!(
        report.failures.len() == 1 && report.failures[0].contains("422"),
        "an invalid Deployment must be refused by dry-run: {report:?}"
    );

    let deploy_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let files = yaml_files(&deploy_dir)?;
    ensure!(
        !files.is_empty(),
        "no manifests in {}",
        deploy_dir.display()
    );
    let mut docs = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let origin = f
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(f)
            .display()
            .to_string();
        docs.extend(parse_documents(&text, &origin)?);
    }
    let operator_kinds: Vec<&str> = docs
        .iter()
        .filter(|d| gvk_of(&d.value).is_some_and(|g| g.group == "monitoring.coreos.com"))
        .map(|d| d.origin.as_str())
        .collect();
    ensure!(
        operator_kinds.is_empty(),
        "deploy/*.yaml must apply on a cluster without the Prometheus Operator: {operator_kinds:?}"
    );
    let report = dry_run_all(&client, &ns, &docs).await?;
    eprintln!(
        "deploy/: {} YAML files, {} documents passed server-side dry-run, {} skipped {:?}",
        files.len(),
        report.applied,
        report.skipped.len(),
        report.skipped
    );
    ensure!(
        report.failures.is_empty(),
        "deploy/ manifests failed server-side dry-run:\n{}",
        report.failures.join("\n")
    );
    delete_namespace(&client, &ns).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server-side dry-run of manifests
// ---------------------------------------------------------------------------------------------

/// One YAML document and where it came from.
pub(crate) struct Doc {
    pub(crate) origin: String,
    pub(crate) value: Value,
}

#[derive(Debug, Default)]
pub(crate) struct DryRunReport {
    pub(crate) applied: usize,
    pub(crate) skipped: Vec<String>,
    pub(crate) failures: Vec<String>,
}

/// Where namespaced objects are dry-run.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Into this namespace, whatever their `metadata.namespace` (nothing left for other tests to
    /// trip on; the manifest's namespace need not exist).
    Into(&'a str),
    /// Into the namespace each names (which must exist).
    AsWritten,
}

/// The `*.yaml` / `*.yml` files of `dir` itself (not of its subfolders), sorted.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn parse_documents(text: &str, origin: &str) -> Result<Vec<Doc>> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| anyhow!("{origin}: not valid YAML: {e}"))?;
    Ok(values
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null())
        .map(|(i, value)| Doc {
            origin: format!("{origin}#{i}"),
            value,
        })
        .collect())
}

pub(crate) fn gvk_of(v: &Value) -> Option<GroupVersionKind> {
    let api_version = v.get("apiVersion")?.as_str()?;
    let kind = v.get("kind")?.as_str()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(GroupVersionKind::gvk(group, version, kind))
}

async fn dry_run_all(client: &Client, ns: &str, docs: &[Doc]) -> Result<DryRunReport> {
    dry_run_all_to(client, Target::Into(ns), docs).await
}

/// Server-side apply with `dryRun=All` and strict field validation (an unknown or duplicate
/// field is an error, as `kubectl apply --validate=strict` makes it) of every document; a kind
/// the cluster does not serve fails, unless a CRD among `docs` defines it (then installed for
/// real first).
pub(crate) async fn dry_run_all_to(
    client: &Client,
    target: Target<'_>,
    docs: &[Doc],
) -> Result<DryRunReport> {
    let mut report = DryRunReport::default();
    // CRDs that the manifests define, by group/kind: installed for real if one of their objects
    // is to be dry-run (an object of a kind that is not served cannot be dry-run).
    let mut crds: BTreeMap<(String, String), Value> = BTreeMap::new();
    for d in docs {
        if gvk_of(&d.value).is_some_and(|g| g.kind == "CustomResourceDefinition") {
            let spec = &d.value["spec"];
            if let (Some(g), Some(k)) = (spec["group"].as_str(), spec["names"]["kind"].as_str()) {
                crds.insert((g.to_owned(), k.to_owned()), d.value.clone());
            }
        }
    }

    for d in docs {
        let Some(gvk) = gvk_of(&d.value) else {
            report.skipped.push(format!(
                "{}: no apiVersion/kind (not a Kubernetes object)",
                d.origin
            ));
            continue;
        };
        if gvk.group == "kustomize.config.k8s.io" || gvk.group == "config.kubernetes.io" {
            report.skipped.push(format!(
                "{}: {} is a build file, not an object",
                d.origin, gvk.kind
            ));
            continue;
        }
        if gvk.kind == "CustomResourceDefinition" {
            // Installed when an object of its kind needs it; not dry-run itself.
            report
                .skipped
                .push(format!("{}: a CRD, installed on use", d.origin));
            continue;
        }
        match dry_run_one(client, target, &gvk, d, &crds).await {
            Ok(()) => report.applied += 1,
            Err(e) => report.failures.push(format!(
                "{} ({}/{}): {e:#}",
                d.origin,
                gvk.api_version(),
                gvk.kind
            )),
        }
    }
    Ok(report)
}

async fn dry_run_one(
    client: &Client,
    target: Target<'_>,
    gvk: &GroupVersionKind,
    d: &Doc,
    crds: &BTreeMap<(String, String), Value>,
) -> Result<()> {
    let (ar, caps) = match kube::discovery::pinned_kind(client, gvk).await {
        Ok(found) => found,
        Err(_) => {
            let key = (gvk.group.clone(), gvk.kind.clone());
            if let Some(crd) = crds.get(&key) {
                install_crd(client, crd.clone()).await?;
            } else {
                bail!("kind not served by this cluster (no CRD for it in the manifests)");
            }
            poll(
                &format!("discovery of {}", gvk.kind),
                Duration::from_secs(30),
                async || match kube::discovery::pinned_kind(client, gvk).await {
                    Ok(found) => Ok(Ok(found)),
                    Err(e) => Ok(Err(e.to_string())),
                },
            )
            .await?
        }
    };
    let mut value = d.value.clone();
    let api: Api<DynamicObject> = match (caps.scope, target) {
        (Scope::Namespaced, Target::Into(ns)) => {
            value["metadata"]["namespace"] = Value::from(ns);
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        (Scope::Namespaced, Target::AsWritten) => {
            let ns = value["metadata"]["namespace"]
                .as_str()
                .context("a namespaced object without metadata.namespace")?
                .to_owned();
            Api::namespaced_with(client.clone(), &ns, &ar)
        }
        (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
    };
    match value["metadata"]["name"].as_str() {
        Some(name) => {
            let pp = PatchParams::apply(MANAGER)
                .force()
                .dry_run()
                .validation_strict();
            api.patch(name, &pp, &Patch::Apply(&value))
                .await
                .map_err(|e| anyhow!(describe::<()>(&Err(e))))?;
        }
        None => {
            // generateName objects cannot be applied; create them instead.
            let obj: DynamicObject = serde_json::from_value(value)?;
            let pp = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            api.create(&pp, &obj)
                .await
                .map_err(|e| anyhow!(describe::<()>(&Err(e))))?;
        }
    }
    Ok(())
}

pub(crate) async fn install_crd(client: &Client, crd: Value) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd["metadata"]["name"]
        .as_str()
        .context("CRD without a name")?
        .to_owned();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    poll(
        &format!("CRD {name} Established"),
        Duration::from_secs(30),
        async || {
            let c = api.get(&name).await?;
            let established = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            Ok(if established {
                Ok(())
            } else {
                Err("not Established".to_owned())
            })
        },
    )
    .await
}
