//! deploy/grafana/leakhound-dashboard.json: every panel's query names only metrics that
//! leakhound (`serve`'s /metrics, read from a running receiver) or client_golang (the real Go
//! program's /metrics, tests/goprogs/cmd/leaky) exports, and the dashboard shows both the leak
//! state and `go_goroutines`.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::goprog::Leaky;
use crate::serve::Serve;
use crate::support::*;

const FUNCTIONS_AND_KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "group",
    "count_values",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "time",
    "abs",
    "ceil",
    "floor",
    "round",
    "clamp_min",
    "clamp_max",
    "histogram_quantile",
    "label_replace",
    "label_join",
    "vector",
    "scalar",
    "timestamp",
    "absent",
    "changes",
    "resets",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "last_over_time",
    "predict_linear",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
];

/// The metric names a PromQL expression selects (a small scanner: strings, label matchers
/// `{…}`, ranges `[…]` and grouping lists `by (…)` are skipped; an identifier followed by `(`
/// is a function).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < b.len() && b[i] as char != c {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < b.len() && b[i] as char != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
                skip_group = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < b.len()
                    && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && (b[j] as char).is_whitespace() {
                    j += 1;
                }
                let call = j < b.len() && b[j] == b'(';
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word)
                {
                    skip_group = true;
                } else if !call && !FUNCTIONS_AND_KEYWORDS.contains(&word) {
                    out.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Metric names of an exposition (`# TYPE` lines and samples).
fn exported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.insert(name);
        }
    }
    // Histograms and summaries export suffixed series.
    let base: Vec<String> = out.iter().cloned().collect();
    for n in base {
        for s in ["_bucket", "_sum", "_count"] {
            out.insert(format!("{n}{s}"));
        }
    }
    out
}

fn panels(v: &Value, out: &mut Vec<Value>) {
    for p in v["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            panels(p, out);
        } else {
            out.push(p.clone());
        }
    }
}

#[test]
fn the_scanner_finds_metrics_not_functions_labels_or_strings() {
    let got = metric_names(
        "sum by (namespace, pod) (rate(foo_total{job=\"go_goroutines\"}[5m])) / on (pod) group_left bar - time() + baz:rule",
    );
    let want: BTreeSet<String> = ["foo_total", "bar", "baz:rule"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_leakhound_or_client_golang_exports() -> Result<()> {
    let path = repo().join("deploy/grafana/leakhound-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    ensure!(
        dash["uid"].is_string() && dash["title"].is_string(),
        "uid and title"
    );

    // What leakhound serves (a receiver on an empty store still declares every metric).
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    ok(&[
        "backfill",
        "--store",
        store,
        data().join("examples/shop").to_str().context("utf-8")?,
    ]);
    let serve = Serve::start(&["--listen", "127.0.0.1:0", "--store", store, "--no-auth"]);
    let http = reqwest::Client::new();
    let ours = http
        .get(format!("{}/metrics", serve.url))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        ours.contains("leakhound_store_up 1"),
        "serve could not read the store:\n{ours}"
    );
    // What client_golang serves in a real Go program.
    let leaky = Leaky::start(&[]);
    let go = http
        .get(format!("{}/metrics", leaky.url))
        .send()
        .await?
        .text()
        .await?;
    let mut known = exported(&ours);
    known.extend(exported(&go));

    let mut all = Vec::new();
    panels(&dash, &mut all);
    ensure!(all.len() >= 5, "{} panels", all.len());
    let mut used = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        let targets = p["targets"]
            .as_array()
            .with_context(|| format!("panel {title}: no targets"))?;
        ensure!(!targets.is_empty(), "panel {title}: no targets");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .with_context(|| format!("panel {title}: no expr"))?;
            let names = metric_names(expr);
            ensure!(!names.is_empty(), "panel {title}: {expr:?} names no metric");
            for n in &names {
                ensure!(
                    known.contains(n),
                    "panel {title}: {n} is exported neither by leakhound nor by client_golang ({expr})"
                );
            }
            used.extend(names);
        }
    }
    for must in [
        "go_goroutines",
        "leakhound_leak_level",
        "leakhound_cluster_goroutines",
        "leakhound_leak_events_total",
        "leakhound_cronjob_last_success_timestamp_seconds",
    ] {
        ensure!(used.contains(must), "no panel shows {must}");
    }
    serve.stop();
    Ok(())
}
