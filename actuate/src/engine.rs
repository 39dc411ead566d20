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
use crate::model::{ActionRecord, Outcome, Step, Target, Trigger, ValidTarget, action_key};
use crate::policy::Policy;
use crate::resolve;

/// What handling one trigger did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Handled {
    /// The decisions recorded now.
    pub records: Vec<ActionRecord>,
    /// Steps found already done (a replay): nothing was sent, nothing recorded.
    pub replayed: usize,
    /// A workload-wide eviction has more pods to go (the next run goes on).
    pub more: bool,
}

impl Handled {
    /// Whether something is left to try again later (deferred, or a retryable failure).
    pub fn pending_retry(&self) -> bool {
        self.more
            || self.records.iter().any(|r| {
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
    agent_token_file: Option<std::path::PathBuf>,
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
        Step::Vpa => &["vpa", "vpa_create", "vpa_patch"],
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
            agent_token_file: None,
        })
    }

    /// Static `namespace/pod → URL` targets for captures (tried before discovery).
    pub fn with_capture_targets(mut self, targets: Vec<TargetSpec>) -> Engine {
        self.capture_targets = targets;
        self
    }

    /// The Go agent's token file, for captures of agent pods found by discovery.
    pub fn with_agent_token_file(mut self, file: Option<std::path::PathBuf>) -> Engine {
        self.agent_token_file = file;
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

    /// Record the same decision for each of `steps`.
    fn record_all(
        &mut self,
        trigger: &Trigger,
        steps: Vec<(Step, String)>,
        target: &Target,
        outcome: Outcome,
        reason: &str,
        out: &mut Handled,
    ) {
        for (step, key) in steps {
            let done = Done::new(step.as_str(), outcome, reason.to_string());
            out.records
                .push(self.record(trigger, key, target, done, false));
        }
    }

    /// Record the same failure for each of `steps`.
    fn record_failed(
        &mut self,
        trigger: &Trigger,
        steps: Vec<(Step, String)>,
        target: &Target,
        e: &Error,
        out: &mut Handled,
    ) {
        for (step, key) in steps {
            let done = Done {
                http_status: e.http_status().map(i32::from),
                ..Done::new(step.as_str(), Outcome::Failed, e.to_string())
            };
            out.records
                .push(self.record(trigger, key, target, done, e.is_retryable()));
        }
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

        // Gates that hold for every step of the trigger. Names first: a name Kubernetes would
        // refuse never reaches a comparison, a path or a request.
        let gate: Option<String> = if let Err(e) = trigger.target.validate() {
            Some(format!("{e}; nothing was sent"))
        } else if let Some(why) = self.policy.out_of_scope(&trigger.target.namespace) {
            Some(why)
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
            let target = trigger.target.clone();
            self.record_all(
                trigger,
                pending,
                &target,
                Outcome::Skipped,
                &reason,
                &mut out,
            );
            return out;
        }

        // The target as the actuators need it: the workload of a pod.
        let needs_cluster = pending.iter().any(|(s, _)| *s != Step::Record);
        let mut target = trigger.target.clone();
        let client = self.client.clone().filter(|_| needs_cluster);
        if let Some(client) = &client {
            match resolve::workload_of_pod(client, &target).await {
                Ok(t) => target = t,
                Err(e) => {
                    // Recording needs no cluster; every other step failed with the resolution.
                    let (record, rest): (Vec<_>, Vec<_>) =
                        pending.into_iter().partition(|(s, _)| *s == Step::Record);
                    for (_, key) in record {
                        let done = Done::new("record", Outcome::Taken, trigger.summary.clone());
                        out.records
                            .push(self.record(trigger, key, &target, done, false));
                    }
                    self.record_failed(trigger, rest, &target, &e, &mut out);
                    return out;
                }
            }
        }
        // What the API server named is checked too: every actuator takes a ValidTarget.
        let target = match ValidTarget::new(target.clone()) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("resolved {e}; nothing was sent");
                self.record_all(
                    trigger,
                    pending,
                    &target,
                    Outcome::Skipped,
                    &reason,
                    &mut out,
                );
                return out;
            }
        };

        // A workload-wide trigger with per-pod steps: the pods are chosen here.
        let rolling =
            target.pod.is_none() && client.is_some() && pending.iter().any(|(s, _)| s.per_pod());
        let mut pod_steps_done = false;
        for (step, key) in pending.iter().cloned() {
            if rolling && step.per_pod() {
                if !pod_steps_done {
                    pod_steps_done = true;
                    let pod_steps: Vec<(Step, String)> = pending
                        .iter()
                        .filter(|(s, _)| s.per_pod())
                        .cloned()
                        .collect();
                    self.workload_pods(trigger, &target, pod_steps, now, &mut out)
                        .await;
                }
                continue;
            }
            let (done, retryable) = self.run_step(trigger, step, &target, now).await;
            out.records
                .push(self.record(trigger, key, &target, done, retryable));
        }
        out
    }

    /// The per-pod steps (capture, evict) of a workload-wide trigger.
    ///
    /// With `evict`: every pod of the workload that was running when the leak was detected is
    /// evicted, one per call, oldest first (it has leaked longest), each behind the eviction
    /// budget, `min_ready_replicas` and the PDB; the next only once the workload is back to all
    /// its replicas Ready (the last replacement is up). Pods created after the detection are
    /// replacements, not leaking. Each pod's steps are keyed on that pod, so a later run (the
    /// next `leakhound actuate`, a re-delivered alert) goes on where this one stopped; the
    /// workload-level step is recorded once no pod is left. Without `evict` (a capture alone),
    /// the oldest Ready pod is captured.
    async fn workload_pods(
        &mut self,
        trigger: &Trigger,
        target: &ValidTarget,
        steps: Vec<(Step, String)>,
        now: chrono::DateTime<chrono::Utc>,
        out: &mut Handled,
    ) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let ns = target.namespace.clone();
        let (kind, name) = match (target.workload_kind.clone(), target.workload.clone()) {
            (Some(k), Some(n)) => (k, n),
            _ => {
                let reason = "the trigger names no workload whose pods could be chosen";
                self.record_all(trigger, steps, target, Outcome::Skipped, reason, out);
                return;
            }
        };
        let status = match resolve::workload_status(&client, &ns, &kind, &name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let reason = format!("{kind} {ns}/{name} does not exist");
                self.record_all(trigger, steps, target, Outcome::Skipped, &reason, out);
                return;
            }
            Err(Error::Target { reason, .. }) => {
                self.record_all(trigger, steps, target, Outcome::Skipped, &reason, out);
                return;
            }
            Err(e) => {
                self.record_failed(trigger, steps, target, &e, out);
                return;
            }
        };
        let pods = match resolve::pods_of(&client, &ns, &status).await {
            Ok(p) => p,
            Err(e) => {
                self.record_failed(trigger, steps, target, &e, out);
                return;
            }
        };
        let with_pod = |pod: &str| {
            let mut t = (**target).clone();
            t.pod = Some(pod.to_string());
            ValidTarget::new(t)
        };
        let evicting = steps.iter().any(|(s, _)| *s == Step::Evict);
        // Creation times are whole seconds: a pod created in the second of the detection may
        // be a replacement, and is left alone.
        let detected = chrono::DateTime::from_timestamp(trigger.detected_at.timestamp(), 0)
            .unwrap_or(trigger.detected_at);
        let chosen: Vec<String> = if evicting {
            pods.iter()
                .filter(|p| p.created.is_none_or(|c| c < detected))
                .filter(|p| {
                    with_pod(&p.name).is_ok_and(|t| {
                        !self
                            .audit
                            .is_done(&action_key(trigger, Step::Evict, &t), self.dry_run)
                    })
                })
                .map(|p| p.name.clone())
                .collect()
        } else {
            pods.iter()
                .find(|p| p.ready)
                .map(|p| p.name.clone())
                .into_iter()
                .collect()
        };
        let Some(first) = chosen.first() else {
            let reason = if evicting {
                format!(
                    "no pod of {kind} {name} that ran when the leak was detected is left to evict"
                )
            } else {
                format!("{kind} {name} has no Ready pod")
            };
            self.record_all(trigger, steps, target, Outcome::Skipped, &reason, out);
            return;
        };
        let pod_target = match with_pod(first) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("resolved {e}; nothing was sent");
                self.record_all(trigger, steps, target, Outcome::Skipped, &reason, out);
                return;
            }
        };
        // One at a time: the previous eviction's replacement must be Ready first.
        // The pods' own conditions first: the controller's status lags an eviction by a moment.
        let ready_now = pods.iter().filter(|p| p.ready).count() as i32;
        let ready = ready_now.min(status.ready);
        let waiting = evicting && ready < status.desired;
        for (step, _) in &steps {
            let key = action_key(trigger, *step, &pod_target);
            if self.audit.is_done(&key, self.dry_run) {
                continue;
            }
            let (done, retryable) = if waiting && *step == Step::Evict {
                (
                    Done::new(
                        "evict",
                        Outcome::Deferred,
                        format!(
                            "one pod at a time: {kind} {name} has {ready} of {} replicas Ready; {first} goes once they all are",
                            status.desired
                        ),
                    ),
                    false,
                )
            } else {
                self.run_step(trigger, *step, &pod_target, now).await
            };
            let outcome = done.outcome;
            out.records
                .push(self.record(trigger, key, &pod_target, done, retryable));
            if *step == Step::Evict
                && matches!(outcome, Outcome::Taken | Outcome::DryRun)
                && chosen.len() > 1
            {
                out.more = true;
            }
        }
        if !evicting {
            // A capture alone is done for the workload once its pod is captured.
            for (step, key) in steps {
                let done = Done::new(
                    step.as_str(),
                    Outcome::Skipped,
                    format!("done on the oldest Ready pod {first}"),
                );
                out.records
                    .push(self.record(trigger, key, target, done, false));
            }
        }
    }

    async fn run_step(
        &self,
        trigger: &Trigger,
        step: Step,
        target: &ValidTarget,
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
            agent_token_file: self.agent_token_file.as_deref(),
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
