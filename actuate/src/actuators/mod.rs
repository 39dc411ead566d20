//! One module per actuator, each behind the [`Actuator`] trait: the engine decides *whether* a
//! step may run (idempotency, deny-list, cooldown, budget); an actuator decides *how* and talks
//! to the API server. In dry-run every write goes out with `dryRun=All`, so validation,
//! admission and RBAC are exercised and nothing changes.

pub mod capture;
pub mod evict;
pub mod hpa;
pub mod restart;
pub mod scale;
pub mod vpa;

use chrono::{DateTime, Utc};
use kube::api::{PatchParams, PostParams};
use leakhound_ingest::scrape::targets::TargetSpec;
use leakhound_ingest::store::Store;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{Outcome, Step, Target, Trigger, ValidTarget};
use crate::policy::Policy;

pub use capture::CaptureActuator;
pub use evict::EvictActuator;
pub use hpa::HpaActuator;
pub use restart::RolloutRestartActuator;
pub use scale::MinReplicasActuator;
pub use vpa::VpaActuator;

/// The field manager of every write leakhound makes.
pub const FIELD_MANAGER: &str = "leakhound";

/// What an actuator has to work with.
pub struct ActContext<'a> {
    pub client: Option<&'a kube::Client>,
    pub dry_run: bool,
    pub policy: &'a Policy,
    pub store: &'a Store,
    pub now: DateTime<Utc>,
    pub trigger: &'a Trigger,
    /// Static `namespace/pod → URL` capture targets, tried before Kubernetes discovery.
    pub capture_targets: &'a [TargetSpec],
    /// The Go agent's token (a file), for capturing pods annotated `leakhound.io/auth: bearer`
    /// (`--agent-token-file`, as ingest's); without it such pods are not captured.
    pub agent_token_file: Option<&'a std::path::Path>,
}

impl ActContext<'_> {
    pub fn client(&self, what: &'static str) -> Result<&kube::Client> {
        self.client.ok_or(Error::NoClient(what))
    }

    pub fn post_params(&self) -> PostParams {
        PostParams {
            dry_run: self.dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        }
    }

    pub fn patch_params(&self) -> PatchParams {
        PatchParams {
            dry_run: self.dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        }
    }

    /// `Taken`, or `DryRun` in dry-run.
    pub fn applied(&self) -> Outcome {
        if self.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Taken
        }
    }
}

/// How one step ended, as far as the actuator is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The verb recorded in the `action` column (e.g. `hpa_create` for the `hpa` step).
    pub action: String,
    pub outcome: Outcome,
    pub reason: String,
    pub request: Option<Value>,
    pub http_status: Option<i32>,
}

impl Done {
    pub fn new(action: &str, outcome: Outcome, reason: impl Into<String>) -> Done {
        Done {
            action: action.into(),
            outcome,
            reason: reason.into(),
            request: None,
            http_status: None,
        }
    }

    pub fn with_request(mut self, request: Value) -> Done {
        self.request = Some(request);
        self
    }

    pub fn with_status(mut self, status: u16) -> Done {
        self.http_status = Some(i32::from(status));
        self
    }
}

/// Turns one step for one resolved target into calls to the cluster (or the store).
#[async_trait::async_trait]
pub trait Actuator: Send + Sync {
    fn step(&self) -> Step;
    async fn act(&self, cx: &ActContext<'_>, target: &ValidTarget) -> Result<Done>;
}

/// The actuator for each step (record is handled by the engine itself).
pub fn for_step(step: Step) -> Option<Box<dyn Actuator>> {
    Some(match step {
        Step::Record => return None,
        Step::Hpa => Box::new(HpaActuator),
        Step::MinReplicas => Box::new(MinReplicasActuator),
        Step::Vpa => Box::new(VpaActuator),
        Step::Capture => Box::new(CaptureActuator::default()),
        Step::Evict => Box::new(EvictActuator),
        Step::RolloutRestart => Box::new(RolloutRestartActuator),
    })
}

/// The workload's name, or a target error saying it is missing.
pub(crate) fn workload_name(target: &Target) -> Result<(&str, &str)> {
    let name = target.workload.as_deref().ok_or_else(|| Error::Target {
        target: target.display(),
        reason: "no workload (the event names none and its pod has no owner)".into(),
    })?;
    Ok((
        target.workload_kind.as_deref().unwrap_or("Deployment"),
        name,
    ))
}

pub(crate) fn api_status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        e => e.to_string(),
    }
}
