//! Kubernetes pod discovery, the `prometheus.io/*` way with leakhound's own annotations:
//!
//! | annotation | meaning | default |
//! |---|---|---|
//! | `leakhound.io/scrape` | `"true"` to scrape the pod | required |
//! | `leakhound.io/port` | port of the pprof and metrics server | a container port named `pprof`, `metrics` or `http` |
//! | `leakhound.io/scheme` | `http` or `https` | `http` |
//! | `leakhound.io/path` | prefix of the pprof handlers | `/debug/pprof` |
//! | `leakhound.io/metrics-path` | Prometheus endpoint | `/metrics` |
//! | `leakhound.io/container` | container to record | the first container |
//!
//! Every target carries the pod's namespace, name, node, start time, container restarts, and
//! its workload found through owner references (a ReplicaSet is followed to its Deployment).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::targets::TargetSpec;

pub const ANNOTATION_SCRAPE: &str = "leakhound.io/scrape";
pub const ANNOTATION_PORT: &str = "leakhound.io/port";
pub const ANNOTATION_SCHEME: &str = "leakhound.io/scheme";
pub const ANNOTATION_PATH: &str = "leakhound.io/path";
pub const ANNOTATION_METRICS_PATH: &str = "leakhound.io/metrics-path";
pub const ANNOTATION_CONTAINER: &str = "leakhound.io/container";
/// `bearer`: the pod serves its profiles behind a bearer token (the Go agent, `agent/`); ingest
/// sends the token of `--agent-token-file` (a Secret mounted into the ingest pod), and to no pod
/// that does not ask for it. `none` (the default): no credentials.
pub const ANNOTATION_AUTH: &str = "leakhound.io/auth";

#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    /// Namespaces to look in; empty means all (needs a ClusterRole).
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub cluster: Option<String>,
    /// The bearer token sent to pods annotated `leakhound.io/auth: bearer` (a file: read at
    /// scrape time, never logged or stored).
    pub agent_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("listing pods in {scope}: {source}")]
    List {
        scope: String,
        #[source]
        source: kube::Error,
    },
}

impl DiscoveryError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DiscoveryError::List { source, .. } => match source {
                kube::Error::Api(s) => s.code >= 500 || s.code == 429,
                _ => true,
            },
            DiscoveryError::Config(_) => false,
        }
    }
}

/// The client configuration from a kubeconfig file, or inferred (in-cluster, then
/// `$KUBECONFIG`): the one loader, used by discovery here and by `leakhound-actuate`.
pub async fn kube_config(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Config, DiscoveryError> {
    match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| DiscoveryError::Config(format!("{}: {e}", p.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| DiscoveryError::Config(format!("{}: {e}", p.display())))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| DiscoveryError::Config(e.to_string())),
    }
}

/// A client from [`kube_config`].
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, DiscoveryError> {
    let config = kube_config(kubeconfig).await?;
    kube::Client::try_from(config).map_err(|e| DiscoveryError::Config(e.to_string()))
}

/// The annotated, running pods as scrape targets. Pods skipped for a reason (no port, no IP
/// yet) are returned in the second list with that reason.
pub async fn discover(
    client: &kube::Client,
    opts: &DiscoveryOptions,
) -> Result<(Vec<TargetSpec>, Vec<(String, String)>), DiscoveryError> {
    let mut lp = ListParams::default();
    if let Some(sel) = &opts.label_selector {
        lp = lp.labels(sel);
    }
    let mut pods = Vec::new();
    if opts.namespaces.is_empty() {
        let api: Api<Pod> = Api::all(client.clone());
        pods.extend(api.list(&lp).await.map_err(|source| DiscoveryError::List {
            scope: "all namespaces".into(),
            source,
        })?);
    } else {
        for ns in &opts.namespaces {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            pods.extend(api.list(&lp).await.map_err(|source| DiscoveryError::List {
                scope: format!("namespace {ns}"),
                source,
            })?);
        }
    }
    let mut owners: HashMap<(String, String), Option<(String, String)>> = HashMap::new();
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for pod in pods {
        let meta = &pod.metadata;
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let empty = BTreeMap::new();
        let ann = meta.annotations.as_ref().unwrap_or(&empty);
        if ann.get(ANNOTATION_SCRAPE).map(String::as_str) != Some("true") {
            continue;
        }
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
            skipped.push((key, "not Running".into()));
            continue;
        }
        let Some(ip) = status.and_then(|s| s.pod_ip.clone()) else {
            skipped.push((key, "no pod IP yet".into()));
            continue;
        };
        let spec = pod.spec.as_ref();
        let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
        let port = match ann.get(ANNOTATION_PORT) {
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    skipped.push((key, format!("{ANNOTATION_PORT} {p:?} is not a port")));
                    continue;
                }
            },
            None => containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| matches!(p.name.as_deref(), Some("pprof" | "metrics" | "http")))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        };
        let Some(port) = port else {
            skipped.push((
                key,
                format!("no {ANNOTATION_PORT} and no container port named pprof, metrics or http"),
            ));
            continue;
        };
        let bearer_token_file = match ann.get(ANNOTATION_AUTH).map(String::as_str) {
            None | Some("none") => None,
            Some("bearer") => match &opts.agent_token_file {
                Some(f) => Some(f.clone()),
                // Never scraped without the credentials it asks for (it would answer 401 every
                // minute); said once per pass.
                None => {
                    skipped.push((
                        key,
                        format!("{ANNOTATION_AUTH}: bearer, and no --agent-token-file was given"),
                    ));
                    continue;
                }
            },
            Some(other) => {
                skipped.push((
                    key,
                    format!("{ANNOTATION_AUTH} {other:?} is neither bearer nor none"),
                ));
                continue;
            }
        };
        let scheme = ann
            .get(ANNOTATION_SCHEME)
            .map(String::as_str)
            .unwrap_or("http");
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        let workload = match meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        {
            Some(o) if o.kind == "ReplicaSet" => {
                let k = (ns.clone(), o.name.clone());
                if !owners.contains_key(&k) {
                    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
                    // Without RBAC on replicasets, fall back to the ReplicaSet itself.
                    let owner = match rs.get_opt(&o.name).await {
                        Ok(Some(rs)) => rs
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .find(|r| r.controller == Some(true))
                            .map(|r| (r.kind.clone(), r.name.clone())),
                        _ => None,
                    };
                    owners.insert(k.clone(), owner);
                }
                owners
                    .get(&k)
                    .cloned()
                    .flatten()
                    .or_else(|| Some(("ReplicaSet".to_string(), o.name.clone())))
            }
            Some(o) => Some((o.kind.clone(), o.name.clone())),
            None => None,
        };
        let restarts: i64 = status
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| i64::from(c.restart_count)).sum())
            .unwrap_or(0);
        targets.push(TargetSpec {
            url: format!("{scheme}://{host}:{port}"),
            cluster: opts.cluster.clone(),
            namespace: Some(ns),
            pod: Some(name),
            uid: meta.uid.clone(),
            workload_kind: workload.as_ref().map(|w| w.0.clone()),
            workload: workload.map(|w| w.1),
            container: ann
                .get(ANNOTATION_CONTAINER)
                .cloned()
                .or_else(|| containers.first().map(|c| c.name.clone())),
            node: spec.and_then(|s| s.node_name.clone()),
            metrics_path: ann.get(ANNOTATION_METRICS_PATH).cloned(),
            pprof_path: ann.get(ANNOTATION_PATH).cloned(),
            pod_start_time: status
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0.to_string()),
            container_restarts: Some(restarts),
            bearer_token_file,
            ..Default::default()
        });
    }
    targets.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok((targets, skipped))
}
