//! `VpaActuator`: where the VerticalPodAutoscaler CRD is installed (found through discovery, so
//! a cluster without it costs one 404) and a VPA targets the workload, annotate that VPA with
//! the leak (`leakhound.io/leak-level`, `leakhound.io/leak-trigger`, `leakhound.io/leak-at`)
//! through the dynamic API. Its spec — update mode, resource policy — is its owner's and is
//! left alone: the VPA recommender sizes memory from usage, which a leak inflates, so the
//! annotation is a signal to whoever tunes it, not a change of behaviour. No CRD or no VPA:
//! `skipped`, with the reason.

use kube::api::{Api, DynamicObject, ListParams, Patch};
use kube::core::GroupVersionKind;
use serde_json::json;

use super::{ActContext, Actuator, Done, api_status, workload_name};
use crate::error::{Error, Result};
use crate::model::{Outcome, Step, Target};

#[derive(Debug, Default)]
pub struct VpaActuator;

#[async_trait::async_trait]
impl Actuator for VpaActuator {
    fn step(&self) -> Step {
        Step::Vpa
    }

    async fn act(&self, cx: &ActContext<'_>, target: &Target) -> Result<Done> {
        let client = cx.client("a VPA update")?;
        let (kind, name) = workload_name(target)?;
        let ns = &target.namespace;
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
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("list VerticalPodAutoscalers in {ns}"), e))?;
        let found = list.items.into_iter().find(|v| {
            let r = &v.data["spec"]["targetRef"];
            r["kind"] == kind && r["name"] == name
        });
        let Some(vpa) = found else {
            return Ok(Done::new(
                "vpa",
                Outcome::Skipped,
                format!("no VerticalPodAutoscaler targets {kind}/{name}"),
            ));
        };
        let vpa_name = vpa.metadata.name.clone().unwrap_or_default();
        let patch = json!({ "metadata": { "annotations": {
            "leakhound.io/leak-level": cx.trigger.level.as_str(),
            "leakhound.io/leak-trigger": cx.trigger.id,
            "leakhound.io/leak-at": cx.trigger.detected_at.to_rfc3339(),
        } } });
        api.patch(&vpa_name, &cx.patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube(format!("patch VPA {ns}/{vpa_name}"), e))?;
        Ok(Done::new(
            "vpa",
            cx.applied(),
            format!("annotated VPA {vpa_name} with the leak"),
        )
        .with_request(patch)
        .with_status(200))
    }
}
