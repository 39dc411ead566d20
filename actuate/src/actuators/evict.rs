//! `EvictActuator`: evicts the leaking pod through the Eviction API, so PodDisruptionBudgets
//! decide. A 429 (the PDB allows no disruption now) is `deferred` — tried again by a later run,
//! never forced with a delete. The client must not retry 429 itself (kube-rs does by default;
//! [`crate::kube_client`] turns that off), or a refusal would surface only minutes later.
//!
//! Before asking, the pod's workload (Deployment, StatefulSet, ReplicaSet or DaemonSet) must
//! keep at least `min_ready_replicas` ready pods after the eviction; otherwise the step is
//! deferred without a call. A pod of another kind of owner (whose readiness cannot be judged)
//! or of none (nothing would replace it) is not evicted: `skipped`, with the reason.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};
use serde_json::json;

use super::{ActContext, Actuator, Done, api_message, api_status};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, ValidTarget};
use crate::resolve;

#[derive(Debug, Default)]
pub struct EvictActuator;

#[async_trait::async_trait]
impl Actuator for EvictActuator {
    fn step(&self) -> Step {
        Step::Evict
    }

    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done> {
        let client = cx.client("eviction")?;
        let Some(pod) = target.pod.as_deref() else {
            return Ok(Done::new("evict", Outcome::Skipped, "no pod to evict"));
        };
        let ns = &target.namespace;
        let (Some(kind), Some(name)) =
            (target.workload_kind.as_deref(), target.workload.as_deref())
        else {
            return Ok(Done::new(
                "evict",
                Outcome::Skipped,
                format!("pod {pod} has no controller: an evicted pod would not be replaced"),
            ));
        };
        let status = match resolve::workload_status(client, ns, kind, name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Ok(Done::new(
                    "evict",
                    Outcome::Skipped,
                    format!("{kind} {ns}/{name} does not exist"),
                ));
            }
            Err(Error::Target { reason, .. }) => {
                return Ok(Done::new(
                    "evict",
                    Outcome::Skipped,
                    format!("{reason}: min_ready_replicas cannot be kept, so {pod} is not evicted"),
                ));
            }
            Err(e) => return Err(e),
        };
        let min = cx.policy.min_ready_replicas;
        if status.ready - 1 < min {
            return Ok(Done::new(
                "evict",
                Outcome::Deferred,
                format!(
                    "{kind} {name} has {} ready replicas; evicting {pod} would leave fewer than min_ready_replicas {min}",
                    status.ready
                ),
            ));
        }
        let params = EvictParams {
            delete_options: None,
            post_options: cx.post_params(),
        };
        let request = json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": { "name": pod, "namespace": ns },
            "dryRun": cx.dry_run,
        });
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        match pods.evict(pod, &params).await {
            Ok(_) => Ok(Done::new(
                "evict",
                cx.applied(),
                if cx.dry_run {
                    format!("eviction of {pod} accepted in dry-run")
                } else {
                    format!("evicted {pod}")
                },
            )
            .with_request(request)
            .with_status(201)),
            Err(e) if api_status(&e) == Some(429) => Ok(Done::new(
                "evict",
                Outcome::Deferred,
                format!(
                    "refused by a PodDisruptionBudget, retried later: {}",
                    api_message(&e)
                ),
            )
            .with_request(request)
            .with_status(429)),
            Err(e) if api_status(&e) == Some(404) => Ok(Done::new(
                "evict",
                Outcome::Skipped,
                format!("pod {pod} no longer exists"),
            )
            .with_request(request)
            .with_status(404)),
            Err(e) => Err(Error::kube(format!("evict pod {ns}/{pod}"), e)),
        }
    }
}
