//! From what a trigger names to what the actuators need: the workload of a pod (through its
//! controller owner references, a ReplicaSet followed to its Deployment), and for a
//! workload-wide L3 the pod to isolate (the oldest Ready one: it has leaked longest).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
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

/// The oldest Ready pod of a Deployment (for a workload-wide eviction), if any.
pub async fn oldest_ready_pod(client: &kube::Client, target: &Target) -> Result<Option<String>> {
    let (Some("Deployment"), Some(name)) =
        (target.workload_kind.as_deref(), target.workload.as_deref())
    else {
        return Ok(None);
    };
    let ns = &target.namespace;
    let d: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let Some(dep) = d
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get Deployment {ns}/{name}"), e))?
    else {
        return Ok(None);
    };
    let labels = dep.spec.selector.match_labels.unwrap_or_default();
    if labels.is_empty() {
        return Ok(None);
    }
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|e| Error::kube(format!("list pods of Deployment {ns}/{name}"), e))?;
    let mut ready: Vec<_> = list
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &a.metadata.name,
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &b.metadata.name,
            ))
    });
    Ok(ready.into_iter().next().and_then(|p| p.metadata.name))
}
