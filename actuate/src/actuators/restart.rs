//! `RolloutRestartActuator`: what `kubectl rollout restart` does — a new
//! `kubectl.kubernetes.io/restartedAt` annotation on the pod template, so the Deployment
//! controller replaces the pods under the workload's own rollout strategy (Deployment,
//! StatefulSet, DaemonSet; other kinds are skipped). Deferred while the workload is below
//! `min_ready_replicas` or still rolling out.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, Patch};
use serde_json::json;

use super::{ActContext, Actuator, Done, workload_name};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, ValidTarget};
use crate::resolve;

#[derive(Debug, Default)]
pub struct RolloutRestartActuator;

#[async_trait::async_trait]
impl Actuator for RolloutRestartActuator {
    fn step(&self) -> Step {
        Step::RolloutRestart
    }

    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done> {
        let client = cx.client("a rollout restart")?;
        let (kind, name) = workload_name(target)?;
        if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Skipped,
                format!(
                    "rollout restart of a {kind} is not supported (Deployment, StatefulSet, DaemonSet)"
                ),
            ));
        }
        let ns = &target.namespace;
        let Some(st) = resolve::workload_status(client, ns, kind, name).await? else {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Skipped,
                format!("{kind} {ns}/{name} does not exist"),
            ));
        };
        let min = cx.policy.min_ready_replicas;
        if st.ready < min {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Deferred,
                format!(
                    "{kind} {name} has {} ready replicas, below min_ready_replicas {min}",
                    st.ready
                ),
            ));
        }
        if st.updated < st.desired {
            return Ok(Done::new(
                "rollout_restart",
                Outcome::Deferred,
                format!("{kind} {name} is still rolling out"),
            ));
        }
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            "kubectl.kubernetes.io/restartedAt": cx.now.to_rfc3339(),
        } } } } });
        let (pp, p) = (cx.patch_params(), Patch::Merge(&patch));
        let what = format!("patch {kind} {ns}/{name}");
        match kind {
            "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &pp, &p)
                .await
                .map(drop),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &p)
                .await
                .map(drop),
            _ => Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &p)
                .await
                .map(drop),
        }
        .map_err(|e| Error::kube(what, e))?;
        Ok(Done::new(
            "rollout_restart",
            cx.applied(),
            format!("restarted the pods of {kind} {name}"),
        )
        .with_request(patch)
        .with_status(200))
    }
}
