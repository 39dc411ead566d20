//! What flows through the crate: a [`Trigger`] (a leak event or a firing alert) names a
//! [`Target`] and a level; the policy turns it into [`Step`]s; each step ends as one
//! [`ActionRecord`] (a row of the `actions` table) with an [`Outcome`].

use chrono::{DateTime, Utc};
use leakhound_schemas::events::{LeakEvent, Level};
use leakhound_schemas::k8s_names::NameError;
use serde::{Deserialize, Serialize};

/// What a trigger points at (`pod: None`: the whole workload): the one scope type of the
/// workspace, [`leakhound_schemas::scope::Scope`], which analyze's events are about too.
pub use leakhound_schemas::scope::Scope as Target;

/// A [`Target`] whose names passed [`Target::validate`]: the only kind an actuator is handed,
/// so no request is ever built from a name that was not checked. Reads as a `Target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidTarget(Target);

impl ValidTarget {
    pub fn new(t: Target) -> Result<ValidTarget, NameError> {
        t.validate()?;
        Ok(ValidTarget(t))
    }

    pub fn into_inner(self) -> Target {
        self.0
    }
}

impl std::ops::Deref for ValidTarget {
    type Target = Target;
    fn deref(&self) -> &Target {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Event,
    Alert,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Event => "event",
            TriggerKind::Alert => "alert",
        }
    }
}

/// A reason to act: a leak event from the store, or a firing Alertmanager alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// The event's `event_id` (stable per episode), or the alert's fingerprint + startsAt.
    pub id: String,
    pub level: Level,
    pub target: Target,
    /// When the leak was detected (the alert's startsAt); the age limit is measured from it.
    pub detected_at: DateTime<Utc>,
    pub summary: String,
}

impl Trigger {
    pub fn from_event(e: &LeakEvent) -> Trigger {
        Trigger {
            kind: TriggerKind::Event,
            id: e.event_id.clone(),
            level: e.level,
            target: Target {
                cluster: e.cluster.clone(),
                namespace: e.namespace.clone(),
                workload_kind: e.workload_kind.clone(),
                workload: e.workload.clone(),
                pod: e.pod.clone(),
            },
            detected_at: e.detected_at,
            summary: format!("{} {}: {}", e.detector, e.level.as_str(), e.reason),
        }
    }
}

/// One step a level's policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Write the decision down, nothing else (L1).
    Record,
    /// Ensure an autoscaling/v2 HPA on goroutines per pod (create, or patch the existing one).
    Hpa,
    /// Raise minReplicas of the HPA that owns the workload, or scale the workload out through
    /// its scale subresource when no HPA owns it; within bounds.
    MinReplicas,
    /// Raise the memory floor of the workload's VerticalPodAutoscaler (a CRD; only where it is
    /// installed), creating one when none targets the workload.
    Vpa,
    /// Capture a debug=2 goroutine dump of each leaking pod into the store.
    Capture,
    /// Evict the leaking pod through the Eviction API (PDBs respected).
    Evict,
    /// Restart the workload's pods the way `kubectl rollout restart` does.
    RolloutRestart,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Record => "record",
            Step::Hpa => "hpa",
            Step::MinReplicas => "min_replicas",
            Step::Vpa => "vpa",
            Step::Capture => "capture",
            Step::Evict => "evict",
            Step::RolloutRestart => "rollout_restart",
        }
    }

    /// Steps that act on one pod (the others act on the workload).
    pub fn per_pod(self) -> bool {
        matches!(self, Step::Capture | Step::Evict)
    }

    /// Steps that change something in the cluster (and so count against cooldowns).
    pub fn mutates(self) -> bool {
        !matches!(self, Step::Record | Step::Capture)
    }
}

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done for real.
    Taken,
    /// Sent with `dryRun=All` and accepted by the API server; nothing changed.
    DryRun,
    /// Not done, and not to be tried again for this trigger (deny-list, cooldown, not
    /// applicable).
    Skipped,
    /// Not now (a PDB's 429, the eviction budget, too few ready replicas): a later run or a
    /// re-delivery tries again.
    Deferred,
    /// An error; retried later when the error is retryable (see the reason).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Taken => "taken",
            Outcome::DryRun => "dry_run",
            Outcome::Skipped => "skipped",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "taken" => Outcome::Taken,
            "dry_run" => Outcome::DryRun,
            "skipped" => Outcome::Skipped,
            "deferred" => Outcome::Deferred,
            "failed" => Outcome::Failed,
            _ => return None,
        })
    }
}

/// One row of the `actions` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub decided_at: DateTime<Utc>,
    /// Idempotency key: a hash of trigger id + level + step + target (see [`action_key`]).
    pub action_key: String,
    pub trigger: TriggerKind,
    pub trigger_id: String,
    pub target: Target,
    pub level: Option<Level>,
    /// What was done: record | hpa_create | hpa_patch | min_replicas | scale | vpa |
    /// vpa_create | vpa_patch | capture | evict | rollout_restart.
    pub action: String,
    pub dry_run: bool,
    pub outcome: Outcome,
    /// Whether a failed action may be tried again (false for every other outcome).
    pub retryable: bool,
    pub reason: String,
    /// What was sent (JSON), for the audit.
    pub request: Option<String>,
    pub http_status: Option<i32>,
}

/// The idempotency key of one step for one trigger and target: the same event (or alert)
/// delivered twice yields the same keys, so it acts once.
pub fn action_key(trigger: &Trigger, step: Step, target: &Target) -> String {
    let s = format!(
        "{}|{}|{}|{}|{}",
        trigger.kind.as_str(),
        trigger.id,
        trigger.level.as_str(),
        step.as_str(),
        target.display()
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(s.as_bytes()))
}
