//! Actuation: from leak events (the store) and Alertmanager alerts (a webhook) to safe
//! Kubernetes actions, every decision audited.
//!
//! ```text
//!  leak_events (store) ──events::run──┐                ┌─ HpaActuator ─────────── HPA create / patch
//!                                     ├─▶ Engine ──────┼─ MinReplicasActuator ─── HPA minReplicas / scale
//!  Alertmanager ─▶ server (auth, ─────┘   policy by    ├─ VpaActuator ─────────── VPA memory floor (CRD)
//!   webhook v4     dedup, queue)          level, gates ├─ CaptureActuator ─────── debug=2 dump ─▶ store
//!                                         │            ├─ EvictActuator ───────── Eviction API (PDB: 429 = deferred)
//!                                         │            └─ RolloutRestartActuator ─ restartedAt annotation
//!                                         └──▶ AuditLog ─▶ `actions` table + structured log
//! ```
//!
//! Every name from outside (alert labels, event rows) is checked against Kubernetes' rules
//! before anything is compared or sent: actuators only take a [`model::ValidTarget`].
//!
//! - [`policy`]: what each level does and the safety bounds, with shipped defaults.
//! - [`model`]: triggers, targets, steps, outcomes, the audit row and its idempotency key.
//! - [`engine`]: the gates in order (replay, names, scope, age, cooldown, budget) and the calls;
//!   a workload-wide L3 evicts its leaking pods one per run, oldest first.
//! - [`resolve`]: a pod's workload, a workload's readiness and pods (Deployment, StatefulSet,
//!   ReplicaSet, DaemonSet).
//! - [`actuators`]: one module per actuator behind the [`actuators::Actuator`] trait.
//! - [`audit`]: the `actions` table, read back for idempotency, cooldowns and the budget.
//! - [`events`]: `leakhound actuate` over new leak events; [`alertmanager`], [`server`] and
//!   [`conns`] (connection cap and timeouts): `leakhound serve`.
//! - [`push`]: `serve --push-listen`, the gRPC service the Go agent pushes snapshots to
//!   (landed by `leakhound_ingest::push`).
//! - [`quantity`]: Kubernetes memory quantities.
//! - [`clock`]: time is passed in, so cooldowns and windows are tested without sleeping.

pub mod actuators;
pub mod alertmanager;
pub mod audit;
pub mod clock;
pub mod conns;
pub mod engine;
pub mod error;
pub mod events;
pub mod model;
pub mod policy;
pub mod push;
pub mod quantity;
pub mod resolve;
pub mod server;

pub use error::{Error, Result};

/// A Kubernetes client from a kubeconfig file, or inferred (in-cluster, then `$KUBECONFIG`),
/// with kube-rs' retry of 429 turned off: a PodDisruptionBudget's "not now" must come back at
/// once as `deferred`, not after minutes of retries.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    let mut config = leakhound_ingest::scrape::discovery::kube_config(kubeconfig)
        .await
        .map_err(|e| match e {
            leakhound_ingest::scrape::discovery::DiscoveryError::Config(m) => Error::KubeConfig(m),
            other => Error::KubeConfig(other.to_string()),
        })?;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| Error::KubeConfig(e.to_string()))
}
