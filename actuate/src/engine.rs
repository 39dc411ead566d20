//! The engine: for one trigger, the steps its level's policy asks for, each through the safety
//! gates in order, each ending as one row of the audit log.
//!
//! ```text
//!  trigger ─▶ steps of its level ─▶ for each step:
//!     already done (same trigger, level, step, target)?  ─▶ nothing (a replay)
//!     namespace on the deny-list?                          ─▶ skipped
//!     detected longer ago than max_trigger_age?            ─▶ skipped
//!     workload changed by this step within the cooldown?   ─▶ skipped
//!     eviction budget of the window used up?               ─▶ deferred
//!     actuator (min ready replicas, PDB 429 → deferred)    ─▶ taken | dry_run | skipped | deferred | failed
//! ```
//!
//! A deferred step, and a failure that may pass (5xx, 409, 429, transport), is tried again the
//! next time the same trigger comes (the next `leakhound actuate`, a re-delivered alert); every
//! other outcome is final for that trigger, so a replay acts once.

use std::collections::BTreeMap;
use std::sync::Arc;

use leakhound_ingest::scrape::targets::TargetSpec;
use leakhound_ingest::store::Store;

use crate::actuators::{self, ActContext, Actuator, Done};
use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{ActionRecord, Outcome, Step, Target, Trigger, action_key};
use crate::policy::Policy;
use crate::resolve;

/// What handling one trigger did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Handled {
    /// The decisions recorded now.
    pub records: Vec<ActionRecord>,
    /// Steps found already done (a replay): nothing was sent, nothing recorded.
    pub replayed: usize,
}

impl Handled {
    /// Whether something is left to try again later (deferred, or a retryable failure).
    pub fn pending_retry(&self) -> bool {
        self.records.iter().any(|r| {
            r.outcome == Outcome::Deferred || (r.outcome == Outcome::Failed && r.retryable)
        })
    }
}

pub struct Engine {
    policy: Policy,
    client: Option<kube::Client>,
    dry_run: bool,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    actuators: BTreeMap<&'static str, Box<dyn Actuator>>,
    capture_targets: Vec<TargetSpec>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dry_run", &self.dry_run)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The actions a step is recorded under (for cooldowns).
fn actions_of(step: Step) -> &'static [&'static str] {
    match step {
        Step::Record => &["record"],
        Step::Hpa => &["hpa_create", "hpa_patch"],
        Step::MinReplicas => &["min_replicas", "scale"],
        Step::Vpa => &["vpa"],
        Step::Capture => &["capture"],
        Step::Evict => &["evict"],
        Step::RolloutRestart => &["rollout_restart"],
    }
}

impl Engine {
    /// An engine over `store`'s audit log (loaded back `max(cooldown, window, age) + 1 day`).
    pub async fn new(
        store: &Store,
        policy: Policy,
        client: Option<kube::Client>,
        dry_run: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine> {
        policy.validate().map_err(Error::PolicyValue)?;
        let horizon = policy
            .cooldown
            .max(policy.eviction_window)
            .max(policy.max_trigger_age);
        let since = clock.now()
            - chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::days(1))
            - chrono::Duration::days(1);
        let audit = AuditLog::load(store, since).await?;
        let mut acts = BTreeMap::new();
        for step in [
            Step::Hpa,
            Step::MinReplicas,
            Step::Vpa,
            Step::Capture,
            Step::Evict,
            Step::RolloutRestart,
        ] {
            if let Some(a) = actuators::for_step(step) {
                acts.insert(step.as_str(), a);
            }
        }
        Ok(Engine {
            policy,
            client,
            dry_run,
            clock,
            audit,
            actuators: acts,
            capture_targets: Vec::new(),
        })
    }

    /// Static `namespace/pod → URL` targets for captures (tried before discovery).
    pub fn with_capture_targets(mut self, targets: Vec<TargetSpec>) -> Engine {
        self.capture_targets = targets;
        self
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn audit_mut(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Write the decisions recorded so far to the `actions` table.
    pub async fn flush(&mut self) -> Result<usize> {
        self.audit.flush().await
    }

    fn record(
        &mut self,
        trigger: &Trigger,
        key: String,
        target: &Target,
        done: Done,
        retryable: bool,
    ) -> ActionRecord {
        let r = ActionRecord {
            decided_at: self.clock.now(),
            action_key: key,
            trigger: trigger.kind,
            trigger_id: trigger.id.clone(),
            target: target.clone(),
            level: Some(trigger.level),
            action: done.action,
            dry_run: self.dry_run,
            outcome: done.outcome,
            retryable,
            reason: done.reason,
            request: done.request.map(|v| v.to_string()),
            http_status: done.http_status,
        };
        self.audit.push(r.clone());
        r
    }

    /// Decide and act on one trigger.
    pub async fn handle(&mut self, trigger: &Trigger) -> Handled {
        let mut out = Handled::default();
        let steps: Vec<Step> = self.policy.steps(trigger.level).to_vec();
        let pending: Vec<(Step, String)> = steps
            .iter()
            .map(|s| (*s, action_key(trigger, *s, &trigger.target)))
            .filter(|(_, k)| {
                let done = self.audit.is_done(k, self.dry_run);
                if done {
                    out.replayed += 1;
                }
                !done
            })
            .collect();
        if pending.is_empty() {
            if out.replayed > 0 {
                tracing::debug!(trigger_id = %trigger.id, "Trigger already handled; nothing to do.");
            }
            return out;
        }
        let now = self.clock.now();
        let ns = trigger.target.namespace.clone();

        // Gates that hold for every step of the trigger.
        let gate: Option<String> = if self.policy.denied(&ns) {
            Some(format!("namespace {ns} is on the deny-list"))
        } else {
            let age = now.signed_duration_since(trigger.detected_at);
            let max = chrono::Duration::from_std(self.policy.max_trigger_age)
                .unwrap_or(chrono::Duration::MAX);
            (age > max).then(|| {
                format!(
                    "detected {} min ago, older than max_trigger_age {} min",
                    age.num_minutes(),
                    max.num_minutes()
                )
            })
        };
        if let Some(reason) = gate {
            for (step, key) in pending {
                let done = Done::new(step.as_str(), Outcome::Skipped, reason.clone());
                let target = trigger.target.clone();
                out.records
                    .push(self.record(trigger, key, &target, done, false));
            }
            return out;
        }

        // The target as the actuators need it: the workload of a pod, the pod of a workload.
        let needs_cluster = pending.iter().any(|(s, _)| *s != Step::Record);
        let mut target = trigger.target.clone();
        if needs_cluster && let Some(client) = self.client.clone() {
            let mut resolved = resolve::workload_of_pod(&client, &target).await;
            if let Ok(t) = &resolved
                && t.pod.is_none()
                && pending.iter().any(|(s, _)| s.per_pod())
            {
                match resolve::oldest_ready_pod(&client, t).await {
                    Ok(pod) => {
                        let mut t = t.clone();
                        t.pod = pod;
                        resolved = Ok(t);
                    }
                    Err(e) => resolved = Err(e),
                }
            }
            match resolved {
                Ok(t) => target = t,
                Err(e) => {
                    let retryable = e.is_retryable();
                    for (step, key) in pending {
                        if step == Step::Record {
                            let done = Done::new("record", Outcome::Taken, trigger.summary.clone());
                            out.records
                                .push(self.record(trigger, key, &target, done, false));
                            continue;
                        }
                        let done = Done {
                            http_status: e.http_status().map(i32::from),
                            ..Done::new(step.as_str(), Outcome::Failed, e.to_string())
                        };
                        out.records
                            .push(self.record(trigger, key, &target, done, retryable));
                    }
                    return out;
                }
            }
        }

        for (step, key) in pending {
            let (done, retryable) = self.run_step(trigger, step, &target, now).await;
            out.records
                .push(self.record(trigger, key, &target, done, retryable));
        }
        out
    }

    async fn run_step(
        &self,
        trigger: &Trigger,
        step: Step,
        target: &Target,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Done, bool) {
        if step == Step::Record {
            return (
                Done::new("record", Outcome::Taken, trigger.summary.clone()),
                false,
            );
        }
        let cooldown =
            chrono::Duration::from_std(self.policy.cooldown).unwrap_or(chrono::Duration::MAX);
        if step.mutates()
            && step != Step::Evict
            && let Some(last) =
                self.audit
                    .last_change(&target.workload_key(), actions_of(step), self.dry_run)
            && now.signed_duration_since(last) < cooldown
        {
            return (
                Done::new(
                    step.as_str(),
                    Outcome::Skipped,
                    format!(
                        "cooldown: {} on {} at {}, cooldown {} s",
                        step.as_str(),
                        target.workload_key(),
                        last.to_rfc3339(),
                        cooldown.num_seconds()
                    ),
                ),
                false,
            );
        }
        if step == Step::Evict {
            let window = chrono::Duration::from_std(self.policy.eviction_window)
                .unwrap_or(chrono::Duration::MAX);
            let used = self.audit.evictions_since(now - window, self.dry_run);
            if used >= self.policy.eviction_budget as usize {
                return (
                    Done::new(
                        "evict",
                        Outcome::Deferred,
                        format!(
                            "eviction budget used: {used} of {} per {} s",
                            self.policy.eviction_budget,
                            window.num_seconds()
                        ),
                    ),
                    false,
                );
            }
        }
        let Some(actuator) = self.actuators.get(step.as_str()) else {
            return (
                Done::new(step.as_str(), Outcome::Skipped, "no actuator for this step"),
                false,
            );
        };
        let store = self.audit.store();
        let cx = ActContext {
            client: self.client.as_ref(),
            dry_run: self.dry_run,
            policy: &self.policy,
            store,
            now,
            trigger,
            capture_targets: &self.capture_targets,
        };
        match actuator.act(&cx, target).await {
            Ok(done) => (done, false),
            Err(e) => {
                tracing::warn!(error = %e, step = step.as_str(), target = %target.display(), "Failed to act.");
                let retryable = e.is_retryable();
                (
                    Done {
                        http_status: e.http_status().map(i32::from),
                        ..Done::new(step.as_str(), Outcome::Failed, e.to_string())
                    },
                    retryable,
                )
            }
        }
    }
}
