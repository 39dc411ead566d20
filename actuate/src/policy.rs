//! Policies: what each level does, and the safety bounds around it. Shipped defaults
//! ([`Policy::default`]) are what `leakhound actuate` and `leakhound serve` use without a policy
//! file; a file (YAML or JSON, `--policy`) overrides any part of it:
//!
//! ```yaml
//! levels: { l1: [record], l2: [hpa], l3: [capture, evict] }
//! deny_namespaces: [kube-system]
//! allow_namespaces: []            # empty: every namespace not denied
//! cooldown: 10m
//! eviction_budget: 5
//! eviction_window: 10m
//! min_ready_replicas: 1
//! max_trigger_age: 2h
//! hpa: { goroutines_per_pod: "500", min_replicas: 2, max_replicas: 10, min_replicas_step: 1 }
//! vpa: { update_mode: Initial, headroom: 1.5, max_memory: 8Gi }
//! ```
//!
//! Namespaces in both lists are Kubernetes namespace names (checked at load; `KUBE-SYSTEM` or a
//! look-alike with a Unicode hyphen is refused, since no namespace can have that name) and
//! compared after trimming and lower-casing. A trigger's own namespace is validated before it is
//! compared (the engine), so a hostile spelling never reaches the comparison.

use std::path::Path;
use std::time::Duration;

use leakhound_schemas::events::Level;
use leakhound_schemas::k8s_names::{self, NameKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::model::Step;

/// Steps per level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Levels {
    pub l1: Vec<Step>,
    pub l2: Vec<Step>,
    pub l3: Vec<Step>,
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            l1: vec![Step::Record],
            l2: vec![Step::Hpa],
            l3: vec![Step::Capture, Step::Evict],
        }
    }
}

/// The HPA leakhound creates or patches at L2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HpaPolicy {
    /// Target of the `Pods` metric `go_goroutines` (AverageValue, a Kubernetes quantity).
    pub goroutines_per_pod: String,
    /// minReplicas of a created HPA (raised to the workload's current replicas).
    pub min_replicas: i32,
    /// maxReplicas of a created HPA, and the ceiling of every raise.
    pub max_replicas: i32,
    /// How much `min_replicas` raises an existing HPA's minReplicas (or a workload's replicas).
    pub min_replicas_step: i32,
    /// Name of a created HPA: prefix + workload name.
    pub name_prefix: String,
    /// The metric name (as the custom-metrics adapter exposes it).
    pub metric: String,
}

impl Default for HpaPolicy {
    fn default() -> Self {
        HpaPolicy {
            goroutines_per_pod: "500".into(),
            min_replicas: 2,
            max_replicas: 10,
            min_replicas_step: 1,
            name_prefix: "leakhound-".into(),
            metric: "go_goroutines".into(),
        }
    }
}

/// The VerticalPodAutoscaler leakhound creates or patches (`vpa` step): memory only, its
/// `minAllowed` raised to the pods' current memory times `headroom`, so that a leaking pod is not
/// OOM-killed while it is investigated; never above `max_memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VpaPolicy {
    /// `updatePolicy.updateMode` of a VPA leakhound creates (Off | Initial | Recreate |
    /// InPlaceOrRecreate | Auto). An existing VPA keeps its own mode.
    pub update_mode: String,
    /// minAllowed memory = current memory x headroom.
    pub headroom: f64,
    /// Ceiling of minAllowed and the maxAllowed of a created VPA (a Kubernetes quantity).
    pub max_memory: String,
    /// Name of a created VPA: prefix + workload name.
    pub name_prefix: String,
}

impl Default for VpaPolicy {
    fn default() -> Self {
        VpaPolicy {
            update_mode: "Initial".into(),
            headroom: 1.5,
            max_memory: "8Gi".into(),
            name_prefix: "leakhound-".into(),
        }
    }
}

/// The debug=2 capture before an eviction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapturePolicy {
    #[serde(with = "dur")]
    pub timeout: Duration,
    pub max_bytes: usize,
}

impl Default for CapturePolicy {
    fn default() -> Self {
        CapturePolicy {
            timeout: Duration::from_secs(10),
            max_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub levels: Levels,
    /// Namespaces never acted on (decisions there are recorded as skipped).
    pub deny_namespaces: Vec<String>,
    /// When not empty, the only namespaces acted on (others are recorded as skipped). Pair it
    /// with the namespaced RBAC (`deploy/`) so the API server enforces the same scope.
    pub allow_namespaces: Vec<String>,
    /// After a change to a workload (HPA, scale, restart, VPA), the same step on the same
    /// workload waits this long. Evictions are bounded by the budget instead.
    #[serde(with = "dur")]
    pub cooldown: Duration,
    /// Evictions allowed across the cluster per `eviction_window`.
    pub eviction_budget: u32,
    #[serde(with = "dur")]
    pub eviction_window: Duration,
    /// An eviction or restart never leaves the workload with fewer ready replicas than this.
    pub min_ready_replicas: i32,
    /// Triggers detected longer ago than this are not acted on (recorded as skipped).
    #[serde(with = "dur")]
    pub max_trigger_age: Duration,
    pub hpa: HpaPolicy,
    pub vpa: VpaPolicy,
    pub capture: CapturePolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            levels: Levels::default(),
            deny_namespaces: vec!["kube-system".into()],
            allow_namespaces: Vec::new(),
            cooldown: Duration::from_secs(600),
            eviction_budget: 5,
            eviction_window: Duration::from_secs(600),
            min_ready_replicas: 1,
            max_trigger_age: Duration::from_secs(2 * 3600),
            hpa: HpaPolicy::default(),
            vpa: VpaPolicy::default(),
            capture: CapturePolicy::default(),
        }
    }
}

impl Policy {
    pub fn steps(&self, level: Level) -> &[Step] {
        match level {
            Level::L1 => &self.levels.l1,
            Level::L2 => &self.levels.l2,
            Level::L3 => &self.levels.l3,
        }
    }

    /// Whether `namespace` is on the deny-list, or off a non-empty allow-list; the reason.
    pub fn out_of_scope(&self, namespace: &str) -> Option<String> {
        let norm = |n: &String| n.trim().to_ascii_lowercase();
        let ns = namespace.trim().to_ascii_lowercase();
        if self.deny_namespaces.iter().any(|n| norm(n) == ns) {
            return Some(format!("namespace {namespace} is on the deny-list"));
        }
        if !self.allow_namespaces.is_empty() && !self.allow_namespaces.iter().any(|n| norm(n) == ns)
        {
            return Some(format!(
                "namespace {namespace} is not on the allow-list ({})",
                self.allow_namespaces.join(", ")
            ));
        }
        None
    }

    pub fn denied(&self, namespace: &str) -> bool {
        self.out_of_scope(namespace).is_some()
    }

    /// Parse a policy from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> std::result::Result<Policy, String> {
        let p: Policy = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Policy {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Policy::from_yaml(&text).map_err(|reason| Error::Policy {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let h = &self.hpa;
        if h.min_replicas < 1 {
            return Err(format!(
                "hpa.min_replicas is {}, must be ≥ 1",
                h.min_replicas
            ));
        }
        if h.max_replicas < h.min_replicas {
            return Err(format!(
                "hpa.max_replicas ({}) is below hpa.min_replicas ({})",
                h.max_replicas, h.min_replicas
            ));
        }
        if h.min_replicas_step < 1 {
            return Err("hpa.min_replicas_step must be ≥ 1".into());
        }
        if h.goroutines_per_pod.trim().is_empty() {
            return Err("hpa.goroutines_per_pod is empty".into());
        }
        if self.min_ready_replicas < 0 {
            return Err("min_ready_replicas must be ≥ 0".into());
        }
        for (list, names) in [
            ("deny_namespaces", &self.deny_namespaces),
            ("allow_namespaces", &self.allow_namespaces),
        ] {
            for n in names {
                let n = n.trim().to_ascii_lowercase();
                k8s_names::check(list, &n, NameKind::Namespace).map_err(|e| e.to_string())?;
            }
        }
        for (what, prefix) in [
            ("hpa.name_prefix", &self.hpa.name_prefix),
            ("vpa.name_prefix", &self.vpa.name_prefix),
        ] {
            if !prefix.is_empty() {
                k8s_names::check(what, &format!("{prefix}x"), NameKind::Object)
                    .map_err(|e| e.to_string())?;
            }
        }
        let v = &self.vpa;
        if !matches!(
            v.update_mode.as_str(),
            "Off" | "Initial" | "Recreate" | "InPlaceOrRecreate" | "Auto"
        ) {
            return Err(format!(
                "vpa.update_mode {:?} is not one of Off, Initial, Recreate, InPlaceOrRecreate, Auto",
                v.update_mode
            ));
        }
        if !(v.headroom.is_finite() && (1.0..=10.0).contains(&v.headroom)) {
            return Err(format!("vpa.headroom {} must be within 1..10", v.headroom));
        }
        crate::quantity::memory_bytes(&v.max_memory).map_err(|e| format!("vpa.max_memory: {e}"))?;
        Ok(())
    }
}

/// Durations as `30s`, `10m`, `2h`, `1d` in files.
mod dur {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        leakhound_ingest::compact::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let p = Policy::default();
        assert_eq!(p.steps(Level::L1), &[Step::Record]);
        assert_eq!(p.steps(Level::L2), &[Step::Hpa]);
        assert_eq!(p.steps(Level::L3), &[Step::Capture, Step::Evict]);
        assert!(p.denied("kube-system"));
        assert!(!p.denied("shop"));
        p.validate().unwrap();
    }

    #[test]
    fn scope_lists_are_names_compared_normalised() {
        let p = Policy::from_yaml(
            "deny_namespaces: [' Kube-System ', prod]\nallow_namespaces: [shop, prod]\n",
        )
        .unwrap();
        assert!(p.denied("kube-system"));
        assert!(p.denied("KUBE-SYSTEM"));
        assert!(p.denied("prod"), "deny wins over allow");
        assert!(!p.denied("shop"));
        assert!(p.out_of_scope("other").unwrap().contains("allow-list"));
        // A name no namespace can have is a mistake in the file, not a silent no-match.
        let e = Policy::from_yaml("deny_namespaces: [\"kube\u{2010}system\"]").unwrap_err();
        assert!(e.contains("deny_namespaces"), "{e}");
        let e = Policy::from_yaml("vpa: { update_mode: Sometimes }").unwrap_err();
        assert!(e.contains("update_mode"), "{e}");
        let e = Policy::from_yaml("vpa: { max_memory: lots }").unwrap_err();
        assert!(e.contains("max_memory"), "{e}");
        let e = Policy::from_yaml("hpa: { name_prefix: 'Bad/' }").unwrap_err();
        assert!(e.contains("name_prefix"), "{e}");
    }

    #[test]
    fn a_file_overrides_parts_and_keeps_the_rest() {
        let p = Policy::from_yaml(
            "levels: { l3: [capture, rollout_restart] }\ncooldown: 30m\nhpa: { max_replicas: 4 }\n",
        )
        .unwrap();
        assert_eq!(p.steps(Level::L3), &[Step::Capture, Step::RolloutRestart]);
        assert_eq!(p.steps(Level::L2), &[Step::Hpa]);
        assert_eq!(p.cooldown, Duration::from_secs(1800));
        assert_eq!(p.hpa.max_replicas, 4);
        assert_eq!(p.hpa.min_replicas, 2);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = Policy::from_yaml("levels: { l2: [scale_to_zero] }").unwrap_err();
        assert!(e.contains("scale_to_zero"), "{e}");
        let e = Policy::from_yaml("cooldown: soon").unwrap_err();
        assert!(e.contains("soon"), "{e}");
        let e = Policy::from_yaml("hpa: { min_replicas: 5, max_replicas: 3 }").unwrap_err();
        assert!(e.contains("max_replicas"), "{e}");
        let e = Policy::from_yaml("colldown: 5m").unwrap_err();
        assert!(e.contains("colldown"), "{e}");
    }
}
