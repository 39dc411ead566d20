//! From what a trigger names to what the actuators need: the workload of a pod (through its
//! controller owner references, a ReplicaSet followed to its Deployment); a workload's desired
//! and ready replicas and its pods (Deployment, StatefulSet, ReplicaSet, DaemonSet — other kinds
//! cannot be judged, and say so); for a workload-wide L3 the pods to isolate, oldest first.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};

use crate::error::{Error, Result};
use crate::model::Target;

fn controller(meta: &kube::api::ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// Fill in the workload of a pod-only target.
pub async fn workload_of_pod(client: &kube::Client, target: &Target) -> Result<Target> {
    let mut t = target.clone();
    let (Some(pod), None) = (target.pod.as_deref(), target.workload.as_deref()) else {
        return Ok(t);
    };
    let ns = &target.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p = pods
        .get_opt(pod)
        .await
        .map_err(|e| Error::kube(format!("get pod {ns}/{pod}"), e))?
        .ok_or_else(|| Error::Target {
            target: target.display(),
            reason: "the pod does not exist (any more)".into(),
        })?;
    match controller(&p.metadata) {
        Some((kind, name)) if kind == "ReplicaSet" => {
            let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            let owner = rs
                .get_opt(&name)
                .await
                .map_err(|e| Error::kube(format!("get ReplicaSet {ns}/{name}"), e))?
                .and_then(|r| controller(&r.metadata));
            let (k, n) = owner.unwrap_or((kind, name));
            t.workload_kind = Some(k);
            t.workload = Some(n);
        }
        Some((kind, name)) => {
            t.workload_kind = Some(kind);
            t.workload = Some(name);
        }
        None => {}
    }
    Ok(t)
}

/// A Kubernetes timestamp as chrono's.
pub fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

/// A workload's replicas as its controller reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadStatus {
    pub kind: String,
    /// Replicas wanted (a DaemonSet: nodes it should run on).
    pub desired: i32,
    /// Replicas Ready now.
    pub ready: i32,
    /// Replicas on the current template (a rollout is in progress while below `desired`).
    pub updated: i32,
    pub selector: LabelSelector,
    /// The kind of a pod's controller owner for this workload (a Deployment's pods are owned
    /// by its ReplicaSets).
    pub pod_owner_kind: &'static str,
}

/// The kinds whose readiness leakhound can judge.
pub const JUDGED_KINDS: [&str; 4] = ["Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"];

/// The status of `kind/name` in `ns`; `Ok(None)` when the workload does not exist, an error
/// naming the kind when it is not one of [`JUDGED_KINDS`].
pub async fn workload_status(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Option<WorkloadStatus>> {
    let what = format!("get {kind} {ns}/{name}");
    let err = |e| Error::kube(what.clone(), e);
    Ok(match kind {
        "Deployment" => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
            api.get_opt(name).await.map_err(err)?.map(|d| {
                let st = d.status.unwrap_or_default();
                WorkloadStatus {
                    kind: kind.into(),
                    desired: d.spec.replicas.unwrap_or(1),
                    ready: st.ready_replicas.unwrap_or(0),
                    updated: st.updated_replicas.unwrap_or(0),
                    selector: d.spec.selector,
                    pod_owner_kind: "ReplicaSet",
                }
            })
        }
        "StatefulSet" => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            api.get_opt(name).await.map_err(err)?.map(|d| {
                let st = d.status.unwrap_or_default();
                let desired = d.spec.replicas.unwrap_or(1);
                WorkloadStatus {
                    kind: kind.into(),
                    desired,
                    ready: st.ready_replicas.unwrap_or(0),
                    updated: st.updated_replicas.unwrap_or(desired),
                    selector: d.spec.selector,
                    pod_owner_kind: "StatefulSet",
                }
            })
        }
        "ReplicaSet" => {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            api.get_opt(name).await.map_err(err)?.map(|d| {
                let st = d.status.unwrap_or_default();
                let desired = d.spec.replicas.unwrap_or(1);
                WorkloadStatus {
                    kind: kind.into(),
                    desired,
                    ready: st.ready_replicas.unwrap_or(0),
                    updated: desired,
                    selector: d.spec.selector,
                    pod_owner_kind: "ReplicaSet",
                }
            })
        }
        "DaemonSet" => {
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
            api.get_opt(name).await.map_err(err)?.map(|d| {
                let st = d.status.unwrap_or_default();
                WorkloadStatus {
                    kind: kind.into(),
                    desired: st.desired_number_scheduled,
                    ready: st.number_ready,
                    updated: st
                        .updated_number_scheduled
                        .unwrap_or(st.desired_number_scheduled),
                    selector: d.spec.selector,
                    pod_owner_kind: "DaemonSet",
                }
            })
        }
        other => {
            return Err(Error::Target {
                target: format!("{ns}/{other}/{name}"),
                reason: format!(
                    "cannot judge the ready replicas of a {other} (only {})",
                    JUDGED_KINDS.join(", ")
                ),
            });
        }
    })
}

/// A label selector as the list API takes it (`matchLabels` and `matchExpressions`); the
/// values come from the API server, which validated them as label keys and values.
pub fn selector_string(sel: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            _ => return None,
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// A pod of a workload, as the rolling eviction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadPod {
    pub name: String,
    pub created: Option<DateTime<Utc>>,
    pub ready: bool,
}

/// The pod objects of a workload that are not being deleted, controlled by the workload's kind
/// of owner, in no particular order.
pub async fn pod_objects(
    client: &kube::Client,
    ns: &str,
    status: &WorkloadStatus,
) -> Result<Vec<Pod>> {
    let Some(selector) = selector_string(&status.selector) else {
        return Ok(Vec::new());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("list pods in {ns} ({selector})"), e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| controller(&p.metadata).is_some_and(|(k, _)| k == status.pod_owner_kind))
        .collect())
}

/// The pods of a workload that are not being deleted, oldest first (creation time, then name),
/// controlled by the workload's kind of owner.
pub async fn pods_of(
    client: &kube::Client,
    ns: &str,
    status: &WorkloadStatus,
) -> Result<Vec<WorkloadPod>> {
    let mut out: Vec<WorkloadPod> = pod_objects(client, ns, status)
        .await?
        .into_iter()
        .filter_map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(WorkloadPod {
                created: p
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| to_chrono(&t.0)),
                name: p.metadata.name?,
                ready,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// The oldest Ready pod of a workload (for a workload-wide capture), if any.
pub async fn oldest_ready_pod(client: &kube::Client, target: &Target) -> Result<Option<String>> {
    let (Some(kind), Some(name)) = (target.workload_kind.as_deref(), target.workload.as_deref())
    else {
        return Ok(None);
    };
    let ns = &target.namespace;
    let Some(status) = workload_status(client, ns, kind, name).await? else {
        return Ok(None);
    };
    Ok(pods_of(client, ns, &status)
        .await?
        .into_iter()
        .find(|p| p.ready)
        .map(|p| p.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_render_as_the_list_api_takes_them() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_string(&sel).as_deref(),
            Some("app=web,tier in (a,b),!canary")
        );
        assert_eq!(selector_string(&LabelSelector::default()), None);
    }
}
