//! `RolloutRestartActuator`: what `kubectl rollout restart` does — a new
//! `kubectl.kubernetes.io/restartedAt` annotation on the pod template, so the Deployment
//! controller replaces the pods under the Deployment's own rollout strategy. Deferred while the
//! Deployment is below `min_ready_replicas` or still rolling out.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch};
use serde_json::json;

use super::{ActContext, Actuator, Done, workload_name};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, Target};

#[derive(Debug, Default)]
pub struct RolloutRestartActuator;

#[async_trait::async_trait]
impl Actuator for RolloutRestartActuator {
    fn step(&self) -> Step {
        Step::RolloutRestart
    }

    async fn act(&self, cx: &ActContext<'_>, target: &Target) -> Result<Done> {
        let client = cx.client("a rollout restart")?;
        let (kind, name) = workload_name(target)?;
        if kind != "Deployment" {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Skipped,
                format!("rollout restart of a {kind} is not supported"),
            ));
        }
        let ns = &target.namespace;
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let d = api
            .get(name)
            .await
            .map_err(|e| Error::kube(format!("get Deployment {ns}/{name}"), e))?;
        let st = d.status.clone().unwrap_or_default();
        let replicas = d.spec.replicas.unwrap_or(1);
        let ready = st.ready_replicas.unwrap_or(0);
        let min = cx.policy.min_ready_replicas;
        if ready < min {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Deferred,
                format!(
                    "Deployment {name} has {ready} ready replicas, below min_ready_replicas {min}"
                ),
            ));
        }
        if st.updated_replicas.unwrap_or(0) < replicas {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Deferred,
                format!("Deployment {name} is still rolling out"),
            ));
        }
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            "kubectl.kubernetes.io/restartedAt": cx.now.to_rfc3339(),
        } } } } });
        api.patch(name, &cx.patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube(format!("patch Deployment {ns}/{name}"), e))?;
        Ok(Done::new(
            "rollout_restart",
            cx.applied(),
            format!("restarted the pods of Deployment {name}"),
        )
        .with_request(patch)
        .with_status(200))
    }
}
