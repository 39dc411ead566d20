//! `VpaActuator`: keeps a leaking workload from being OOM-killed while it is investigated, with
//! a VerticalPodAutoscaler (a CRD, found through discovery: a cluster without it costs one 404
//! and the step is `skipped`).
//!
//! - Memory only (`controlledResources: [memory]`). For each container, `minAllowed.memory` is
//!   raised to the container's current memory — the largest over the workload's pods of its
//!   usage (`metrics.k8s.io`, where served) and its request — times `vpa.headroom`, rounded up
//!   to a Mi, never above `vpa.max_memory` (or a VPA's own `maxAllowed`).
//! - No VPA targets the workload: create `leakhound-<workload>` (label
//!   `app.kubernetes.io/managed-by: leakhound`; `updateMode` from `vpa.update_mode`).
//! - A VPA already targets it (someone else's, or ours): its mode and other fields stay; only the
//!   memory floors are raised (never lowered), in a merge patch carrying its resourceVersion
//!   (a concurrent change is a 409 and a retry). Nothing to raise: `skipped`, nothing sent.
//! - Reversible: a VPA leakhound created carries the managed-by label (delete it); a VPA it
//!   patched keeps its previous `resourcePolicy` in the annotation
//!   `leakhound.io/previous-resource-policy` (written once, so the first state is kept), and
//!   every VPA touched carries `leakhound.io/leak-level`, `-leak-trigger` and `-leak-at`.

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use super::{ActContext, Actuator, Done, api_status, workload_name};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, ValidTarget};
use crate::quantity::{format_memory, memory_bytes, round_up_mi};
use crate::resolve;

/// Where the annotation keeps a patched VPA's resource policy from before leakhound.
pub const PREVIOUS_POLICY: &str = "leakhound.io/previous-resource-policy";

#[derive(Debug, Default)]
pub struct VpaActuator;

/// The current memory of each container of the workload's pods: the largest usage
/// (metrics.k8s.io) or request seen for that container name.
async fn current_memory(
    client: &kube::Client,
    ns: &str,
    status: &resolve::WorkloadStatus,
) -> Result<BTreeMap<String, u64>> {
    let pods = resolve::pod_objects(client, ns, status).await?;
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut names = std::collections::HashSet::new();
    for p in &pods {
        if let Some(n) = &p.metadata.name {
            names.insert(n.clone());
        }
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("memory"))
                .and_then(|q| memory_bytes(&q.0).ok());
            if let Some(b) = req {
                let e = out.entry(c.name.clone()).or_default();
                *e = (*e).max(b);
            }
        }
    }
    // Usage, where a metrics server answers; its absence is normal (the test cluster, many
    // small ones) and not an error.
    let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "pods");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    if let Some(sel) = resolve::selector_string(&status.selector)
        && let Ok(list) = api.list(&ListParams::default().labels(&sel)).await
    {
        for m in list.items {
            if !m.metadata.name.as_ref().is_some_and(|n| names.contains(n)) {
                continue;
            }
            for c in m.data["containers"].as_array().into_iter().flatten() {
                let (Some(name), Some(mem)) = (c["name"].as_str(), c["usage"]["memory"].as_str())
                else {
                    continue;
                };
                if let Ok(b) = memory_bytes(mem) {
                    let e = out.entry(name.to_string()).or_default();
                    *e = (*e).max(b);
                }
            }
        }
    }
    Ok(out)
}

/// `containerPolicies` with each container's memory floor raised to `want` (never lowered,
/// never above that policy's own `maxAllowed.memory`), other fields kept; whether anything
/// rose.
fn raise_floors(existing: &Value, want: &BTreeMap<String, u64>, max: u64) -> (Vec<Value>, bool) {
    let mut policies: Vec<Value> = existing.as_array().cloned().unwrap_or_default();
    let mut changed = false;
    for (container, bytes) in want {
        let idx = policies
            .iter()
            .position(|p| p["containerName"].as_str() == Some(container.as_str()));
        let mut p = match idx {
            Some(i) => policies[i].clone(),
            None => json!({ "containerName": container, "controlledResources": ["memory"] }),
        };
        let their_max = p["maxAllowed"]["memory"]
            .as_str()
            .and_then(|q| memory_bytes(q).ok())
            .unwrap_or(u64::MAX);
        let target = (*bytes).min(max).min(their_max);
        let current = p["minAllowed"]["memory"]
            .as_str()
            .and_then(|q| memory_bytes(q).ok())
            .unwrap_or(0);
        if target > current {
            if !p["minAllowed"].is_object() {
                p["minAllowed"] = json!({});
            }
            p["minAllowed"]["memory"] = json!(format_memory(target));
            changed = true;
        }
        match idx {
            Some(i) => policies[i] = p,
            None if target > current => policies.push(p),
            None => {}
        }
    }
    (policies, changed)
}

#[async_trait::async_trait]
impl Actuator for VpaActuator {
    fn step(&self) -> Step {
        Step::Vpa
    }

    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done> {
        let client = cx.client("a VPA update")?;
        let (kind, name) = workload_name(target)?;
        let ns = &target.namespace;
        let vp = &cx.policy.vpa;
        let gvk = GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler");
        let ar = match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((ar, _)) => ar,
            Err(e) if api_status(&e) == Some(404) || matches!(e, kube::Error::Discovery(_)) => {
                return Ok(Done::new(
                    "vpa",
                    Outcome::Skipped,
                    "the VerticalPodAutoscaler CRD (autoscaling.k8s.io/v1) is not installed",
                ));
            }
            Err(e) => return Err(Error::kube("discover autoscaling.k8s.io/v1", e)),
        };
        let status = match resolve::workload_status(client, ns, kind, name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Ok(Done::new(
                    "vpa",
                    Outcome::Skipped,
                    format!("{kind} {ns}/{name} does not exist"),
                ));
            }
            Err(Error::Target { reason, .. }) => {
                return Ok(Done::new("vpa", Outcome::Skipped, reason));
            }
            Err(e) => return Err(e),
        };
        let max = memory_bytes(&vp.max_memory).map_err(Error::PolicyValue)?;
        let current = current_memory(client, ns, &status).await?;
        if current.is_empty() {
            return Ok(Done::new(
                "vpa",
                Outcome::Skipped,
                format!(
                    "no memory figure for {kind} {name}: its pods request no memory and metrics.k8s.io reports no usage"
                ),
            ));
        }
        let want: BTreeMap<String, u64> = current
            .iter()
            .map(|(c, b)| {
                (
                    c.clone(),
                    round_up_mi((*b as f64 * vp.headroom).ceil() as u64),
                )
            })
            .collect();
        let leak = json!({
            "leakhound.io/leak-level": cx.trigger.level.as_str(),
            "leakhound.io/leak-trigger": cx.trigger.id,
            "leakhound.io/leak-at": cx.trigger.detected_at.to_rfc3339(),
        });
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("list VerticalPodAutoscalers in {ns}"), e))?;
        let found = list.items.into_iter().find(|v| {
            let r = &v.data["spec"]["targetRef"];
            r["kind"] == kind && r["name"] == name
        });
        let floors = |w: &BTreeMap<String, u64>| {
            w.iter()
                .map(|(c, b)| format!("{c} {}", format_memory((*b).min(max))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(vpa) = found {
            let vpa_name = vpa.metadata.name.clone().unwrap_or_default();
            let old_policy = vpa.data["spec"]["resourcePolicy"].clone();
            let (policies, changed) = raise_floors(&old_policy["containerPolicies"], &want, max);
            if !changed {
                return Ok(Done::new(
                    "vpa_patch",
                    Outcome::Skipped,
                    format!(
                        "VPA {vpa_name} already keeps memory at or above {}",
                        floors(&want)
                    ),
                ));
            }
            let mut annotations = leak.clone();
            let has_previous = vpa
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(PREVIOUS_POLICY));
            if !has_previous {
                annotations[PREVIOUS_POLICY] = json!(old_policy.to_string());
            }
            let patch = json!({
                "metadata": {
                    "resourceVersion": vpa.metadata.resource_version,
                    "annotations": annotations,
                },
                "spec": { "resourcePolicy": { "containerPolicies": policies } },
            });
            api.patch(&vpa_name, &cx.patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::kube(format!("patch VPA {ns}/{vpa_name}"), e))?;
            return Ok(Done::new(
                "vpa_patch",
                cx.applied(),
                format!(
                    "raised the memory floor of VPA {vpa_name}: {}",
                    floors(&want)
                ),
            )
            .with_request(patch)
            .with_status(200));
        }

        let vpa_name = format!("{}{name}", vp.name_prefix);
        if let Err(e) = leakhound_schemas::k8s_names::check(
            "VPA name",
            &vpa_name,
            leakhound_schemas::k8s_names::NameKind::Object,
        ) {
            return Ok(Done::new("vpa_create", Outcome::Skipped, e.to_string()));
        }
        let (mut policies, _) = raise_floors(&Value::Null, &want, max);
        for p in &mut policies {
            p["maxAllowed"] = json!({ "memory": format_memory(max) });
        }
        let api_version = if kind == "Deployment"
            || kind == "StatefulSet"
            || kind == "ReplicaSet"
            || kind == "DaemonSet"
        {
            "apps/v1"
        } else {
            return Ok(Done::new(
                "vpa_create",
                Outcome::Skipped,
                format!("{kind} cannot be targeted by a VPA"),
            ));
        };
        let body = json!({
            "apiVersion": "autoscaling.k8s.io/v1",
            "kind": "VerticalPodAutoscaler",
            "metadata": {
                "name": vpa_name,
                "namespace": ns,
                "labels": { "app.kubernetes.io/managed-by": "leakhound" },
                "annotations": leak,
            },
            "spec": {
                "targetRef": { "apiVersion": api_version, "kind": kind, "name": name },
                "updatePolicy": { "updateMode": vp.update_mode },
                "resourcePolicy": { "containerPolicies": policies },
            }
        });
        let obj: DynamicObject =
            serde_json::from_value(body.clone()).map_err(|e| Error::Target {
                target: target.display(),
                reason: format!("building the VPA: {e}"),
            })?;
        let pp = PostParams {
            dry_run: cx.dry_run,
            field_manager: Some(super::FIELD_MANAGER.into()),
        };
        api.create(&pp, &obj)
            .await
            .map_err(|e| Error::kube(format!("create VPA {ns}/{vpa_name}"), e))?;
        Ok(Done::new(
            "vpa_create",
            cx.applied(),
            format!(
                "created VPA {vpa_name} ({} mode, memory floors {})",
                vp.update_mode,
                floors(&want)
            ),
        )
        .with_request(body)
        .with_status(201))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_rise_never_fall_and_stay_within_bounds() {
        let mi = |n: u64| n << 20;
        let theirs = json!([
            { "containerName": "app", "minAllowed": { "memory": "100Mi", "cpu": "50m" },
              "maxAllowed": { "memory": "300Mi" } },
            { "containerName": "side", "minAllowed": { "memory": "500Mi" } },
            { "containerName": "*", "mode": "Off" }
        ]);
        let want = BTreeMap::from([
            ("app".to_string(), mi(400)),
            ("side".to_string(), mi(200)),
            ("new".to_string(), mi(64)),
        ]);
        let (p, changed) = raise_floors(&theirs, &want, mi(1024));
        assert!(changed);
        // app: raised, but only to its own maxAllowed; cpu kept.
        assert_eq!(
            p[0]["minAllowed"],
            json!({ "memory": "300Mi", "cpu": "50m" })
        );
        // side: 500Mi already above 200Mi: unchanged.
        assert_eq!(p[1]["minAllowed"]["memory"], "500Mi");
        assert_eq!(p[2], json!({ "containerName": "*", "mode": "Off" }));
        assert_eq!(p[3]["containerName"], "new");
        assert_eq!(p[3]["minAllowed"]["memory"], "64Mi");
        // The policy ceiling.
        let (p, _) = raise_floors(
            &Value::Null,
            &BTreeMap::from([("a".into(), mi(9000))]),
            mi(512),
        );
        assert_eq!(p[0]["minAllowed"]["memory"], "512Mi");
        // Already there: nothing changes.
        let (_, changed) = raise_floors(
            &theirs,
            &BTreeMap::from([("side".into(), mi(100))]),
            mi(1024),
        );
        assert!(!changed);
    }
}
