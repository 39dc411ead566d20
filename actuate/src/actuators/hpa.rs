//! `HpaActuator`: makes sure the workload scales on goroutines per pod — an `autoscaling/v2`
//! HorizontalPodAutoscaler with a `Pods` metric `go_goroutines`, target `AverageValue`.
//!
//! - No HPA targets the workload: create `leakhound-<workload>` with minReplicas = max(policy
//!   min, current replicas) (never a scale-in) and maxReplicas = max(policy max, that).
//! - An HPA already targets it (someone else's, or ours): do not fight it. Its other metrics,
//!   bounds and behaviour stay as they are; the goroutine metric is appended when missing
//!   (a merge patch carrying the resourceVersion, so a concurrent change is a 409 and a retry,
//!   not a lost update). When it already scales on goroutines, nothing is sent.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams, Patch};
use serde_json::{Value, json};

use super::{ActContext, Actuator, Done, api_status, workload_name};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, ValidTarget};

#[derive(Debug, Default)]
pub struct HpaActuator;

/// The HPA in `namespace` whose scaleTargetRef is `kind/name`, if any.
pub async fn find_hpa(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<HorizontalPodAutoscaler>> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("list HorizontalPodAutoscalers in {namespace}"), e))?;
    Ok(list
        .items
        .into_iter()
        .find(|h| h.spec.scale_target_ref.kind == kind && h.spec.scale_target_ref.name == name))
}

/// The goroutines-per-pod metric leakhound asks for.
pub fn goroutine_metric(metric: &str, average: &str) -> Value {
    json!({
        "type": "Pods",
        "pods": {
            "metric": { "name": metric },
            "target": { "type": "AverageValue", "averageValue": average }
        }
    })
}

fn scales_on(hpa: &HorizontalPodAutoscaler, metric: &str) -> bool {
    hpa.spec.metrics.as_ref().is_some_and(|ms| {
        ms.iter()
            .any(|m| m.pods.as_ref().is_some_and(|p| p.metric.name == metric))
    })
}

#[async_trait::async_trait]
impl Actuator for HpaActuator {
    fn step(&self) -> Step {
        Step::Hpa
    }

    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done> {
        let client = cx.client("an HPA")?;
        let (kind, name) = workload_name(target)?;
        let ns = &target.namespace;
        let hp = &cx.policy.hpa;
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
        if let Some(existing) = find_hpa(client, ns, kind, name).await? {
            let hpa_name = existing.metadata.name.clone().unwrap_or_default();
            if scales_on(&existing, &hp.metric) {
                return Ok(Done::new(
                    "hpa_patch",
                    Outcome::Skipped,
                    format!(
                        "HPA {hpa_name} already scales {kind}/{name} on {}",
                        hp.metric
                    ),
                ));
            }
            let mut metrics: Vec<Value> = existing
                .spec
                .metrics
                .as_ref()
                .map(|ms| {
                    ms.iter()
                        .filter_map(|m| serde_json::to_value(m).ok())
                        .collect()
                })
                .unwrap_or_default();
            metrics.push(goroutine_metric(&hp.metric, &hp.goroutines_per_pod));
            let patch = json!({
                "metadata": {
                    "resourceVersion": existing.metadata.resource_version,
                    "annotations": { "leakhound.io/patched-by": cx.trigger.id },
                },
                "spec": { "metrics": metrics },
            });
            api.patch(&hpa_name, &cx.patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::kube(format!("patch HPA {ns}/{hpa_name}"), e))?;
            return Ok(Done::new(
                "hpa_patch",
                cx.applied(),
                format!("added the {} Pods metric to HPA {hpa_name}", hp.metric),
            )
            .with_request(patch)
            .with_status(200));
        }

        // No HPA: create one, never below the workload's current replicas.
        let current = if kind == "Deployment" {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            match deployments.get(name).await {
                Ok(d) => d.spec.replicas.unwrap_or(1),
                Err(e) if api_status(&e) == Some(404) => {
                    return Ok(Done::new(
                        "hpa_create",
                        Outcome::Skipped,
                        format!("Deployment {ns}/{name} does not exist"),
                    )
                    .with_status(404));
                }
                Err(e) => return Err(Error::kube(format!("get Deployment {ns}/{name}"), e)),
            }
        } else {
            hp.min_replicas
        };
        let min = hp.min_replicas.max(current);
        let max = hp.max_replicas.max(min);
        let api_version = if kind == "Deployment" || kind == "StatefulSet" || kind == "ReplicaSet" {
            "apps/v1"
        } else {
            return Ok(Done::new(
                "hpa_create",
                Outcome::Skipped,
                format!("{kind} cannot be scaled by an HPA"),
            ));
        };
        let hpa_name = format!("{}{name}", hp.name_prefix);
        let body = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": hpa_name,
                "namespace": ns,
                "labels": { "app.kubernetes.io/managed-by": "leakhound" },
                "annotations": { "leakhound.io/created-by": cx.trigger.id },
            },
            "spec": {
                "scaleTargetRef": { "apiVersion": api_version, "kind": kind, "name": name },
                "minReplicas": min,
                "maxReplicas": max,
                "metrics": [goroutine_metric(&hp.metric, &hp.goroutines_per_pod)],
            }
        });
        let hpa: HorizontalPodAutoscaler =
            serde_json::from_value(body.clone()).map_err(|e| Error::Target {
                target: target.display(),
                reason: format!("building the HPA: {e}"),
            })?;
        match api.create(&cx.post_params(), &hpa).await {
            Ok(_) => Ok(Done::new(
                "hpa_create",
                cx.applied(),
                format!(
                    "created HPA {hpa_name} ({min}..{max} replicas, {} {} per pod)",
                    hp.goroutines_per_pod, hp.metric
                ),
            )
            .with_request(body)
            .with_status(201)),
            // Someone created it between our list and create: the next run patches it.
            Err(e) if api_status(&e) == Some(409) => {
                Err(Error::kube(format!("create HPA {ns}/{hpa_name}"), e))
            }
            Err(e) => Err(Error::kube(format!("create HPA {ns}/{hpa_name}"), e)),
        }
    }
}
