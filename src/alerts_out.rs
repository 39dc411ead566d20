//! `analyze --alertmanager URL`: the run's L2/L3 events posted to Alertmanager's v2 API
//! (`POST URL/api/v2/alerts`), so the routes people already have (Slack, PagerDuty) carry them.
//!
//! Labels (an alert's identity in Alertmanager):
//! - `alertname="GoroutineLeak"`, `severity` (`critical` for L3, `warning` for L2) — what
//!   existing routes match on;
//! - `leakhound_level` (L2/L3) — what leakhound's own route matches
//!   (`deploy/alertmanager/alertmanager-route.yaml`: `leakhound_level=~"L1|L2|L3"`) and what the
//!   receiver reads the level from;
//! - `namespace`, `workload_kind`, `workload`, `pod` (when the event is a pod's), `cluster` — the
//!   target, as the receiver reads it;
//! - `leakhound_event_id` — the event's stable id: leakhound's receiver (`serve`) keys the
//!   alert's actions on it, as `actuate` keys the event's (`Alert::trigger`), so an event acted on
//!   from the store and again from its alert is acted on once.
//!
//! `startsAt` is the onset; `endsAt` the detection plus three evaluation steps: a leak analyze
//! keeps seeing is re-posted every run and stays firing; one it no longer sees resolves on its
//! own. Annotations: a summary, the top cluster's blocking site, and the report's path on
//! `serve` (`/events/ID`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use leakhound_schemas::events::{LeakEvent, Level};
use serde_json::{Value, json};

/// The Alertmanager v2 alerts for the events at L2 or above.
pub fn alerts(events: &[LeakEvent], step_s: i64) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.level >= Level::L2)
        .map(|e| {
            let mut labels = serde_json::Map::new();
            let mut put = |k: &str, v: Option<&str>| {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    labels.insert(k.into(), json!(v));
                }
            };
            put("alertname", Some("GoroutineLeak"));
            put(
                "severity",
                Some(if e.level == Level::L3 {
                    "critical"
                } else {
                    "warning"
                }),
            );
            put("leakhound_level", Some(e.level.as_str()));
            put("leakhound_event_id", Some(&e.event_id));
            put("namespace", Some(&e.namespace));
            put("workload_kind", e.workload_kind.as_deref());
            put("workload", e.workload.as_deref());
            put("pod", e.pod.as_deref());
            put("cluster", e.cluster.as_deref());
            let scope = match (&e.pod, &e.workload) {
                (Some(p), _) => format!("pod {}/{}", e.namespace, p),
                (None, Some(w)) => format!("workload {}/{}", e.namespace, w),
                (None, None) => format!("namespace {}", e.namespace),
            };
            let mut annotations = serde_json::Map::new();
            annotations.insert(
                "summary".into(),
                json!(format!(
                    "{} goroutine leak in {scope}: {} goroutines, {:.2}/s",
                    e.level.as_str(),
                    e.goroutines,
                    e.growth_per_s
                )),
            );
            if let Some(c) = e.clusters.first() {
                annotations.insert(
                    "description".into(),
                    json!(format!(
                        "{} at {} ({} → {} goroutines{})",
                        c.pattern,
                        c.top_frame,
                        c.goroutines_baseline,
                        c.goroutines_now,
                        if c.confirmed {
                            ", confirmed by the runtime"
                        } else {
                            ""
                        }
                    )),
                );
            }
            annotations.insert(
                "leakhound_report".into(),
                json!(format!("/events/{}", e.event_id)),
            );
            let ends = e.detected_at + chrono::Duration::seconds(3 * step_s.max(60));
            json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": e.onset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        })
        .collect()
}

/// Post the alerts (if any) to `base` (`http://alertmanager:9093`); returns how many.
pub async fn post(base: &str, alerts: &[Value], timeout: Duration) -> Result<usize> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("HTTP client")?;
    let r = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(alerts)?)
        .send()
        .await
        .with_context(|| format!("posting {} alerts to {url}", alerts.len()))?;
    let status = r.status();
    if !status.is_success() {
        let body = r.text().await.unwrap_or_default();
        bail!(
            "{url}: {status}: {}",
            body.chars().take(500).collect::<String>()
        );
    }
    Ok(alerts.len())
}
