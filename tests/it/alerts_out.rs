//! `analyze --alertmanager URL` round trip with the real Debian `prometheus-alertmanager`,
//! configured from the shipped route (deploy/alertmanager/alertmanager-route.yaml), delivering
//! to `leakhound serve`:
//! - analyze posts its L3 event to the v2 API; Alertmanager holds it active with the labels
//!   existing routes match (`alertname`, `severity`) and leakhound's own (`leakhound_level`,
//!   the target, `leakhound_event_id`);
//! - Alertmanager routes it to the receiver, which acts on it as that event (`trigger` event,
//!   `trigger_id` the event id);
//! - `leakhound actuate` on the same store then finds the event already handled: its decision
//!   is not taken twice.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use leakhound_ingest::rows::{CountRow, Target};
use leakhound_ingest::writer::{Batch, Writer};
use serde_json::Value;

use crate::actuate::actions;
use crate::k8s::poll;
use crate::serve::{Serve, start_alertmanager};
use crate::support::*;

#[tokio::test]
async fn analyze_alerts_reach_alertmanager_and_come_back_to_serve_as_the_event() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let token = dir.path().join("token");
    write(&token, "t0ken\n");
    // Only the record step: acting needs no cluster, and a recorded decision is done.
    let policy = dir.path().join("policy.yaml");
    write(&policy, "levels:\n  l2: [record]\n  l3: [record]\n");

    // Three hours of one-minute counts up to now; api-0 leaks 3 goroutines a second for the
    // last 40 minutes, api-1 holds steady.
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    let mut rows = Vec::new();
    for (i, pod) in ["api-0", "api-1"].iter().enumerate() {
        for m in 0..180i64 {
            let t = now - (179 - m) * 60;
            let jitter = ((m * 7 + i as i64 * 13) % 11) as f64 - 5.0;
            let leak = if i == 0 && m >= 140 {
                3.0 * ((m - 140) * 60) as f64
            } else {
                0.0
            };
            rows.push(CountRow {
                target: Target {
                    namespace: "shop".into(),
                    workload_kind: Some("Deployment".into()),
                    workload: Some("api".into()),
                    pod: pod.to_string(),
                    ..Default::default()
                },
                ts_us: t * 1_000_000,
                goroutines: (300.0 + jitter + leak) as i64,
                source: "scrape".into(),
                format: "metrics".into(),
                ..Default::default()
            });
        }
    }
    let s = leakhound_ingest::Store::open(store)?;
    let mut b = Batch::default();
    b.add_counts(rows, "alerts_out");
    Writer::new(s).commit(b).await?;

    let policy = policy.to_str().context("utf-8")?;
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--bearer-token-file",
        token.to_str().context("utf-8")?,
        "--policy",
        policy,
    ]);
    let am = start_alertmanager(free_port(), &format!("{}/alertmanager", serve.url), &token)?;

    let out = ok(&[
        "analyze",
        "--store",
        store,
        "--now",
        &now.to_string(),
        "--detectors",
        "baseline_rule,growth_rule",
        "--min-level",
        "L2",
        "--format",
        "jsonl",
        "--alertmanager",
        &am.url,
    ]);
    let events: Vec<Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let l3: Vec<&Value> = events.iter().filter(|e| e["level"] == "L3").collect();
    ensure!(!l3.is_empty(), "no L3 event:\n{out}");
    let id = l3[0]["event_id"].as_str().context("event_id")?.to_string();

    // Alertmanager holds it, active, labelled for the existing routes and for leakhound's.
    let http = reqwest::Client::new();
    let alert = poll(
        "the alert in Alertmanager",
        Duration::from_secs(30),
        async || {
            let text = http
                .get(format!("{}/api/v2/alerts", am.url))
                .send()
                .await?
                .text()
                .await?;
            let all: Vec<Value> = serde_json::from_str(&text)?;
            Ok(all
                .into_iter()
                .find(|a| a["labels"]["leakhound_event_id"] == id.as_str())
                .ok_or_else(|| "not yet".to_string()))
        },
    )
    .await?;
    let l = &alert["labels"];
    ensure!(l["alertname"] == "GoroutineLeak", "{alert}");
    ensure!(l["severity"] == "critical", "{alert}");
    ensure!(l["leakhound_level"] == "L3", "{alert}");
    ensure!(l["namespace"] == "shop" && l["pod"] == "api-0", "{alert}");
    ensure!(alert["status"]["state"] == "active", "{alert}");
    ensure!(
        alert["annotations"]["leakhound_report"] == format!("/events/{id}").as_str(),
        "{alert}"
    );

    // Routed to the receiver, which acts on it as the event itself.
    let by_serve = poll(
        "the receiver's decision",
        Duration::from_secs(60),
        async || {
            let rows = actions(store).await?;
            let mine: Vec<_> = rows.into_iter().filter(|r| r.trigger_id == id).collect();
            Ok(if mine.is_empty() {
                Err("no row yet".to_string())
            } else {
                Ok(mine)
            })
        },
    )
    .await?;
    for r in &by_serve {
        ensure!(
            r.trigger == leakhound_actuate::model::TriggerKind::Event,
            "the receiver did not recognise its own event: {r:?}"
        );
    }
    // The receiver's /metrics carries the leak state it read from the store.
    let metrics = http
        .get(format!("{}/metrics", serve.url))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("leakhound_leak_level{namespace=\"shop\",workload=\"api\"} 3"),
        "{metrics}"
    );
    ensure!(
        metrics.contains("leakhound_leak_events_total{level=\"L3\"}"),
        "{metrics}"
    );
    ensure!(
        metrics.contains("leakhound_cronjob_last_success_timestamp_seconds{cronjob=\"analyze\"}"),
        "{metrics}"
    );
    let status = serve.stop();
    ensure!(status.success(), "serve: {status:?}");

    // actuate on the same store: the event is already handled, nothing decided twice.
    let again = std::process::Command::new(bin())
        .args(["actuate", "--store", store, "--policy", policy])
        .env_remove("LEAKHOUND_STORE")
        .env_remove("LEAKHOUND_APPLY")
        .env_remove("LEAKHOUND_KUBECONFIG")
        .env_remove("KUBECONFIG")
        .output()?;
    ensure!(
        again.status.success(),
        "actuate: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    // It read the event and found it done.
    let said = String::from_utf8_lossy(&again.stdout).to_string();
    let done: u64 = said
        .split(" already done")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("actuate's summary: {said}"))?;
    ensure!(done >= 1, "actuate found nothing already done: {said}");
    let rows = actions(store).await?;
    let mine = rows.iter().filter(|r| r.trigger_id == id).count();
    ensure!(
        mine == by_serve.len(),
        "actuate decided again on the event the receiver handled: {} rows, then {mine}",
        by_serve.len()
    );
    Ok(())
}
