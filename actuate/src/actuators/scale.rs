//! `MinReplicasActuator`: more replicas for a leaking workload, within bounds, without
//! fighting an autoscaler. When an HPA owns the workload's replicas, its `minReplicas` is raised
//! by `hpa.min_replicas_step` (never above its `maxReplicas` nor the policy's `max_replicas`)
//! and the workload itself is never scaled. Without an HPA, the workload's scale subresource is
//! raised the same way.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, Patch};
use serde_json::json;

use super::hpa::find_hpa;
use super::{ActContext, Actuator, Done, workload_name};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, ValidTarget};

#[derive(Debug, Default)]
pub struct MinReplicasActuator;

#[async_trait::async_trait]
impl Actuator for MinReplicasActuator {
    fn step(&self) -> Step {
        Step::MinReplicas
    }

    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done> {
        let client = cx.client("raising replicas")?;
        let (kind, name) = workload_name(target)?;
        let ns = &target.namespace;
        let hp = &cx.policy.hpa;
        if let Some(hpa) = find_hpa(client, ns, kind, name).await? {
            let hpa_name = hpa.metadata.name.clone().unwrap_or_default();
            let spec = hpa.spec.clone();
            let current = spec.min_replicas.unwrap_or(1);
            let ceiling = spec.max_replicas.min(hp.max_replicas.max(current));
            let want = (current + hp.min_replicas_step).min(ceiling);
            if want <= current {
                return Ok(Done::new(
                    "min_replicas",
                    Outcome::Skipped,
                    format!("HPA {hpa_name} minReplicas {current} is at its bound {ceiling}"),
                ));
            }
            let patch = json!({
                "metadata": { "resourceVersion": hpa.metadata.resource_version },
                "spec": { "minReplicas": want },
            });
            let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
            api.patch(&hpa_name, &cx.patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::kube(format!("patch HPA {ns}/{hpa_name}"), e))?;
            return Ok(Done::new(
                "min_replicas",
                cx.applied(),
                format!("raised HPA {hpa_name} minReplicas {current} → {want}"),
            )
            .with_request(patch)
            .with_status(200));
        }
        if kind != "Deployment" {
            return Ok(Done::new(
                "scale",
                Outcome::Skipped,
                format!("scaling a {kind} is not supported"),
            ));
        }
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let scale = api
            .get_scale(name)
            .await
            .map_err(|e| Error::kube(format!("get scale of Deployment {ns}/{name}"), e))?;
        let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        let want = (current + hp.min_replicas_step).min(hp.max_replicas.max(current));
        if want <= current {
            return Ok(Done::new(
                "scale",
                Outcome::Skipped,
                format!(
                    "Deployment {name} has {current} replicas, at the bound {}",
                    hp.max_replicas
                ),
            ));
        }
        let patch = json!({ "spec": { "replicas": want } });
        api.patch_scale(name, &cx.patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube(format!("scale Deployment {ns}/{name}"), e))?;
        Ok(Done::new(
            "scale",
            cx.applied(),
            format!("scaled Deployment {name} {current} → {want} (no HPA owns it)"),
        )
        .with_request(patch)
        .with_status(200))
    }
}
