//! What `leakhound serve` shows besides the webhook, from the store (`leakhound_analyze`):
//! - `GET /events`: the latest events (500), each linked to its report;
//! - `GET /events/{id}`: the event's HTML report, the page `report --html --event ID` writes
//!   (the link an alert's `leakhound_report` annotation gives);
//! - `/metrics` (appended to the receiver's): the leak state — `leakhound_leak_level`, the
//!   goroutines of each root-cause cluster, events by level, and when each CronJob last
//!   committed its output.
//!
//! Both pages sit behind serve's auth (`ServerConfig::pages`); `/metrics` stays open as the
//! receiver's own does (labels are namespace/workload/pod names, cluster ids and patterns).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leakhound_analyze::html::{self, render::esc};
use leakhound_ingest::Store;

/// Events and clusters older than this are not "current" for `/metrics`.
const CURRENT_S: i64 = 86_400;
/// Events listed on `/events` (the latest first).
const MAX_LISTED: usize = 500;
/// Cluster series at most in `/metrics` (the latest detections first).
const MAX_CLUSTER_SERIES: usize = 500;

/// The `/events` pages, serving reports from `store`.
pub fn pages(store: Store) -> Router {
    Router::new()
        .route("/events", get(list))
        .route("/events/{id}", get(one))
        .with_state(store)
}

fn html_reply(code: StatusCode, body: String) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 img-src data:; frame-src 'self' about: data:",
            ),
        ],
        body,
    )
        .into_response()
}

fn error_page(code: StatusCode, what: &str) -> Response {
    html_reply(
        code,
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>leakhound</title></head>\
             <body><p>{}</p><p><a href=\"/events\">all events</a></p></body></html>",
            esc(what)
        ),
    )
}

async fn one(State(store): State<Store>, Path(id): Path<String>) -> Response {
    // Event ids are 16 hex digits; anything else is not looked up.
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return error_page(StatusCode::NOT_FOUND, "no such event");
    }
    match html::gather(&store, &html::Select::Event(id)).await {
        Ok(r) if !r.events.is_empty() => html_reply(StatusCode::OK, html::render::page(&r)),
        Ok(_) => error_page(StatusCode::NOT_FOUND, "no such event"),
        Err(e) if e.to_string().starts_with("analyze: no event") => {
            error_page(StatusCode::NOT_FOUND, "no such event")
        }
        Err(e) => {
            tracing::warn!(error = %e, "An event report failed.");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the report failed (see the log)",
            )
        }
    }
}

async fn list(State(store): State<Store>) -> Response {
    let sql = format!(
        "SELECT event_id, MAX(detected_at) AS at, MAX(level) AS level, MAX(namespace) AS ns, \
                MAX(workload) AS wl, MAX(pod) AS pod, MAX(detector) AS detector, \
                MAX(goroutines) AS goroutines \
         FROM leak_events GROUP BY event_id ORDER BY at DESC LIMIT {MAX_LISTED}"
    );
    let rows = match query_json(&store, &sql).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "Listing events failed.");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "listing events failed");
        }
    };
    let mut body = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>leakhound events</title>\
         <style>body{font:14px system-ui,sans-serif;margin:16px}table{border-collapse:collapse}\
         th,td{border:1px solid #d0d7de;padding:4px 6px}</style></head><body>\
         <h1>Leak events, latest first</h1><table><tr><th>event</th><th>level</th>\
         <th>detected</th><th>namespace</th><th>workload</th><th>pod</th><th>detector</th>\
         <th>goroutines</th></tr>",
    );
    let s = |r: &serde_json::Value, k: &str| {
        r.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .filter(|v| v != "null")
            .unwrap_or_default()
    };
    for r in &rows {
        let id = s(r, "event_id");
        let _ = write!(
            body,
            "<tr><td><a href=\"/events/{id}\"><code>{id}</code></a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s(r, "level")),
            esc(&s(r, "at")),
            esc(&s(r, "ns")),
            esc(&s(r, "wl")),
            esc(&s(r, "pod")),
            esc(&s(r, "detector")),
            esc(&s(r, "goroutines")),
            id = esc(&id),
        );
    }
    body.push_str("</table></body></html>\n");
    html_reply(StatusCode::OK, body)
}

async fn query_json(store: &Store, sql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let ctx = leakhound_analyze::session::session(store).await?;
    let batches = leakhound_analyze::sql::run(&ctx, sql).await?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&buf)?)
}

/// A label value in the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn level_number(l: &str) -> u8 {
    match l {
        "L3" => 3,
        "L2" => 2,
        "L1" => 1,
        _ => 0,
    }
}

/// The leak state as Prometheus text (each scrape reads the store; errors become a comment
/// and `leakhound_store_up 0`).
pub async fn metrics(store: Store) -> String {
    match metrics_text(&store).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "Reading the leak state for /metrics failed.");
            "# HELP leakhound_store_up Whether serve could read the leak state from the store.\n\
             # TYPE leakhound_store_up gauge\nleakhound_store_up 0\n"
                .to_string()
        }
    }
}

async fn metrics_text(store: &Store) -> anyhow::Result<String> {
    let mut s = String::new();
    let str_of = |r: &serde_json::Value, k: &str| {
        r.get(k)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let num_of = |r: &serde_json::Value, k: &str| {
        r.get(k)
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
            })
            .unwrap_or(0.0)
    };
    // The level of each workload now: the highest level of its latest detection (the last
    // analyze run that fired on it) within the last day; 0 where it has none.
    let levels = query_json(
        store,
        &format!(
            "WITH latest AS (SELECT namespace, COALESCE(workload, pod) AS workload, \
                    MAX(detected_at) AS at FROM leak_events \
                    WHERE detected_at >= now() - INTERVAL '{CURRENT_S} seconds' GROUP BY 1, 2) \
             SELECT e.namespace, COALESCE(e.workload, e.pod) AS workload, MAX(e.level) AS level \
             FROM leak_events e JOIN latest l ON e.namespace = l.namespace \
               AND COALESCE(e.workload, e.pod) = l.workload AND e.detected_at = l.at \
             GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await?;
    s.push_str(
        "# HELP leakhound_leak_level The leak level of a workload at its latest detection within a day (0 none, 1-3 for L1-L3).\n\
         # TYPE leakhound_leak_level gauge\n",
    );
    for r in &levels {
        let _ = writeln!(
            s,
            "leakhound_leak_level{{namespace=\"{}\",workload=\"{}\"}} {}",
            label(&str_of(r, "namespace")),
            label(&str_of(r, "workload")),
            level_number(&str_of(r, "level"))
        );
    }
    let clusters = query_json(
        store,
        &format!(
            "WITH latest AS (SELECT event_id, MAX(detected_at) AS at FROM leak_clusters \
                    WHERE detected_at >= now() - INTERVAL '{CURRENT_S} seconds' GROUP BY 1) \
             SELECT c.namespace, COALESCE(c.workload, '') AS workload, COALESCE(c.pod, '') AS pod, \
                    c.cluster_id, c.pattern, c.blocking_site, MAX(c.goroutines_now) AS n \
             FROM leak_clusters c JOIN latest l ON c.event_id = l.event_id AND c.detected_at = l.at \
             GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY n DESC LIMIT {MAX_CLUSTER_SERIES}"
        ),
    )
    .await?;
    s.push_str(
        "# HELP leakhound_cluster_goroutines Goroutines of a root-cause cluster at its latest detection within a day.\n\
         # TYPE leakhound_cluster_goroutines gauge\n",
    );
    for r in &clusters {
        let _ = writeln!(
            s,
            "leakhound_cluster_goroutines{{namespace=\"{}\",workload=\"{}\",pod=\"{}\",cluster_id=\"{}\",pattern=\"{}\",blocking_site=\"{}\"}} {}",
            label(&str_of(r, "namespace")),
            label(&str_of(r, "workload")),
            label(&str_of(r, "pod")),
            label(&str_of(r, "cluster_id")),
            label(&str_of(r, "pattern")),
            label(&str_of(r, "blocking_site")),
            num_of(r, "n")
        );
    }
    let events = query_json(
        store,
        "SELECT level, COUNT(DISTINCT event_id) AS n FROM leak_events GROUP BY level ORDER BY level",
    )
    .await?;
    s.push_str(
        "# HELP leakhound_leak_events_total Leak events in the store, by the level of their rows.\n\
         # TYPE leakhound_leak_events_total counter\n",
    );
    for r in &events {
        let _ = writeln!(
            s,
            "leakhound_leak_events_total{{level=\"{}\"}} {}",
            label(&str_of(r, "level")),
            num_of(r, "n")
        );
    }
    // Each CronJob's last success: the last time its output was committed to the store.
    let last = query_json(
        store,
        "SELECT 'ingest' AS cronjob, CAST(to_unixtime(MAX(ingested_at)) AS DOUBLE) AS t \
           FROM ingest_log WHERE status = 'ok' \
         UNION ALL SELECT 'analyze', CAST(to_unixtime(MAX(detected_at)) AS DOUBLE) FROM leak_events \
         UNION ALL SELECT 'actuate', CAST(to_unixtime(MAX(decided_at)) AS DOUBLE) FROM actions",
    )
    .await?;
    s.push_str(
        "# HELP leakhound_cronjob_last_success_timestamp_seconds When a CronJob last committed its output to the store (ingest: an imported capture; analyze: an event; actuate: an audit row).\n\
         # TYPE leakhound_cronjob_last_success_timestamp_seconds gauge\n",
    );
    for r in &last {
        let t = num_of(r, "t");
        if t > 0.0 {
            let _ = writeln!(
                s,
                "leakhound_cronjob_last_success_timestamp_seconds{{cronjob=\"{}\"}} {t}",
                label(&str_of(r, "cronjob"))
            );
        }
    }
    s.push_str(
        "# HELP leakhound_store_up Whether serve could read the leak state from the store.\n\
         # TYPE leakhound_store_up gauge\nleakhound_store_up 1\n",
    );
    Ok(s)
}
