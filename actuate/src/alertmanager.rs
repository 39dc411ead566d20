//! Alertmanager's webhook payload (version 4) and how an alert becomes a [`Trigger`].
//!
//! - Delivery is at least once: an alert is identified by group key + fingerprint + startsAt +
//!   status ([`Alert::delivery_key`]); the same key again is a duplicate.
//! - Target: the `namespace` label (required), `pod`, and the workload from `workload` /
//!   `deployment` labels, else the pod's owner (resolved in the cluster), else the `job` label
//!   as a Deployment name. Nothing in a payload is ever fetched: `generatorURL` and
//!   `externalURL` are kept as text only.
//! - Level: `leakhound_level` (L1/L2/L3), else `severity` (critical → L3, warning → L2,
//!   anything else → L1).
//! - Only firing alerts act; resolved ones are acknowledged and counted.
//! - leakhound's own alerts (`analyze --alertmanager`) carry `leakhound_event_id` (16 hex
//!   digits): their trigger is that event, keyed as `actuate` keys it, so an event acted on from
//!   the store is a replay when its alert arrives, and the other way round.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leakhound_schemas::events::Level;
use serde::{Deserialize, Serialize};

use crate::model::{Target, Trigger, TriggerKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// `0001-01-01T00:00:00Z` while firing.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Why a payload is refused (→ 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unsupported payload version {0:?} (want \"4\")")]
    Version(String),
    #[error("alert {index}: {reason}")]
    Alert { index: usize, reason: String },
}

impl Payload {
    /// Parse and check a request body.
    pub fn parse(body: &[u8]) -> Result<Payload, PayloadError> {
        let p: Payload =
            serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
        if p.version != "4" {
            return Err(PayloadError::Version(p.version));
        }
        for (index, a) in p.alerts.iter().enumerate() {
            if a.fingerprint.is_empty() {
                return Err(PayloadError::Alert {
                    index,
                    reason: "empty fingerprint".into(),
                });
            }
            if a.status != "firing" && a.status != "resolved" {
                return Err(PayloadError::Alert {
                    index,
                    reason: format!("status {:?} is neither firing nor resolved", a.status),
                });
            }
        }
        Ok(p)
    }
}

impl Alert {
    /// The de-duplication key of one alert in one delivery.
    pub fn delivery_key(&self, group_key: &str) -> String {
        format!(
            "{group_key}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.fingerprint,
            self.starts_at.timestamp_micros(),
            self.status
        )
    }

    pub fn firing(&self) -> bool {
        self.status == "firing"
    }

    pub fn level(&self) -> Level {
        if let Some(l) = self
            .labels
            .get("leakhound_level")
            .and_then(|l| Level::parse(l))
        {
            return l;
        }
        match self.labels.get("severity").map(String::as_str) {
            Some("critical" | "page") => Level::L3,
            Some("warning") => Level::L2,
            _ => Level::L1,
        }
    }

    /// The trigger of a firing alert, or why it has none.
    pub fn trigger(&self) -> Result<Trigger, String> {
        let label = |k: &str| self.labels.get(k).filter(|v| !v.is_empty()).cloned();
        let namespace = label("namespace").ok_or_else(|| {
            format!(
                "alert {} ({}) has no namespace label",
                self.fingerprint,
                label("alertname").unwrap_or_default()
            )
        })?;
        let pod = label("pod");
        // leakhound's own alert (`analyze --alertmanager`): the event it carries, keyed as
        // `actuate` keys it (its target as the event names it, nothing defaulted), so the event
        // is acted on once whichever way it arrives.
        let own = label("leakhound_event_id")
            .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut workload = label("workload").or_else(|| label("deployment"));
        let mut workload_kind = label("workload_kind");
        if workload.is_some() && workload_kind.is_none() && own.is_none() {
            workload_kind = Some("Deployment".into());
        }
        if workload.is_none() && pod.is_none() {
            workload = label("job");
            workload_kind = workload.as_ref().map(|_| "Deployment".to_string());
        }
        if workload.is_none() && pod.is_none() {
            return Err(format!(
                "alert {} names no pod, workload, deployment or job",
                self.fingerprint
            ));
        }
        let (kind, id) = match own {
            Some(id) => (TriggerKind::Event, id),
            None => (
                TriggerKind::Alert,
                format!("{}@{}", self.fingerprint, self.starts_at.to_rfc3339()),
            ),
        };
        Ok(Trigger {
            kind,
            id,
            level: self.level(),
            target: Target {
                cluster: label("cluster"),
                namespace,
                workload_kind,
                workload,
                pod,
            },
            detected_at: self.starts_at,
            summary: format!(
                "alert {}: {}",
                label("alertname").unwrap_or_default(),
                self.annotations
                    .get("summary")
                    .or_else(|| self.annotations.get("description"))
                    .cloned()
                    .unwrap_or_default()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"GoroutineLeakGrowth\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "leakhound",
      "groupLabels": {"alertname": "GoroutineLeakGrowth"},
      "commonLabels": {"alertname": "GoroutineLeakGrowth"}, "commonAnnotations": {},
      "externalURL": "http://am.example:9093",
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "GoroutineLeakGrowth", "namespace": "shop", "pod": "orders-1",
                   "severity": "critical", "job": "orders"},
        "annotations": {"summary": "goroutines grow"},
        "startsAt": "2026-11-28T10:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom.example/graph", "fingerprint": "a1b2c3"
      }]
    }"#;

    #[test]
    fn a_v4_payload_maps_to_a_trigger() {
        let p = Payload::parse(SAMPLE.as_bytes()).unwrap();
        let a = &p.alerts[0];
        assert!(a.firing());
        let t = a.trigger().unwrap();
        assert_eq!(t.level, Level::L3);
        assert_eq!(t.target.namespace, "shop");
        assert_eq!(t.target.pod.as_deref(), Some("orders-1"));
        // With a pod, the workload is resolved from the pod's owner, not guessed from `job`.
        assert_eq!(t.target.workload, None);
        assert!(
            t.id.starts_with("a1b2c3@2026-11-28T10:00:00.123"),
            "{}",
            t.id
        );
        assert_ne!(a.delivery_key(&p.group_key), a.delivery_key("other"));
    }

    #[test]
    fn leakhounds_own_alert_is_its_event() {
        let mut p = Payload::parse(SAMPLE.as_bytes()).unwrap();
        let a = &mut p.alerts[0];
        a.labels
            .insert("leakhound_event_id".into(), "00ff00ff00ff00ff".into());
        let t = a.trigger().unwrap();
        assert_eq!(t.kind, TriggerKind::Event);
        assert_eq!(t.id, "00ff00ff00ff00ff");
        // Anything else in that label is not an event id: an ordinary alert.
        a.labels
            .insert("leakhound_event_id".into(), "x/../00ff00ff00ff".into());
        let t = a.trigger().unwrap();
        assert_eq!(t.kind, TriggerKind::Alert);
        assert!(t.id.starts_with("a1b2c3@"), "{}", t.id);
    }

    #[test]
    fn job_names_the_workload_when_there_is_no_pod() {
        let mut p = Payload::parse(SAMPLE.as_bytes()).unwrap();
        let a = &mut p.alerts[0];
        a.labels.remove("pod");
        a.labels.insert("leakhound_level".into(), "L2".into());
        let t = a.trigger().unwrap();
        assert_eq!(t.level, Level::L2);
        assert_eq!(t.target.workload.as_deref(), Some("orders"));
        assert_eq!(t.target.workload_kind.as_deref(), Some("Deployment"));
        a.labels.remove("namespace");
        assert!(a.trigger().unwrap_err().contains("namespace"));
    }

    #[test]
    fn malformed_payloads_are_refused_with_the_reason() {
        let e = Payload::parse(b"{not json").unwrap_err();
        assert!(matches!(e, PayloadError::Json(_)), "{e}");
        let e = Payload::parse(SAMPLE.replace("\"4\"", "\"3\"").as_bytes()).unwrap_err();
        assert_eq!(e, PayloadError::Version("3".into()));
        let e = Payload::parse(SAMPLE.replace("a1b2c3", "").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("alert 0: empty fingerprint"), "{e}");
        let e = Payload::parse(br#"{"version":"4"}"#).unwrap_err();
        assert!(e.to_string().contains("groupKey"), "{e}");
    }
}
