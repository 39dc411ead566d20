//! Prometheus `query_range` results (`resultType: matrix`) as goroutine-count rows.
//!
//! Series labels map to the target identity the way the Kubernetes service-discovery relabelling
//! conventions name them: `namespace` (or `kubernetes_namespace`, `exported_namespace`), `pod`
//! (or `kubernetes_pod_name`, `pod_name`; the `instance` when there is no pod label),
//! `container`, `cluster`, `node`. The metric name picks the column: `go_goroutines` →
//! goroutines, `go_threads` → threads, `go_memstats_heap_alloc_bytes` → heap bytes; a series
//! without `__name__` (an expression result) is taken as goroutines.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::rows::{CountRow, Target};

#[derive(Debug, Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Why a JSON document could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromJsonError {
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("Prometheus answered status {status:?}: {error}")]
    Status { status: String, error: String },
    #[error(
        "resultType is {0:?}, expected \"matrix\" (save the output of /api/v1/query_range, not /api/v1/query)"
    )]
    NotMatrix(String),
    #[error("series {index}: {message}")]
    Series { index: usize, message: String },
}

fn json_err(e: serde_json::Error) -> PromJsonError {
    PromJsonError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Parse a saved `query_range` answer into count rows (one per target and timestamp).
pub fn parse_query_range(bytes: &[u8], source: &str) -> Result<Vec<CountRow>, PromJsonError> {
    let resp: Response = serde_json::from_slice(bytes).map_err(json_err)?;
    if resp.status != "success" {
        return Err(PromJsonError::Status {
            status: resp.status,
            error: resp.error.unwrap_or_default(),
        });
    }
    let data = resp
        .data
        .ok_or_else(|| PromJsonError::NotMatrix("(no data)".into()))?;
    if data.result_type != "matrix" {
        return Err(PromJsonError::NotMatrix(data.result_type));
    }
    let series: Vec<Series> = serde_json::from_value(data.result).map_err(json_err)?;
    let mut rows: BTreeMap<(Target, i64), CountRow> = BTreeMap::new();
    for (index, s) in series.into_iter().enumerate() {
        let target = target_from_labels(&s.metric).ok_or_else(|| PromJsonError::Series {
            index,
            message: format!(
                "labels {:?} name no pod or instance; cannot tell which target it is",
                s.metric
            ),
        })?;
        let name = s
            .metric
            .get("__name__")
            .map(String::as_str)
            .unwrap_or("go_goroutines");
        for (t, v) in s.values {
            let Ok(v) = v.parse::<f64>() else {
                return Err(PromJsonError::Series {
                    index,
                    message: format!("value {v:?} at {t} is not a number"),
                });
            };
            if !v.is_finite() || !t.is_finite() {
                continue; // NaN/Inf: a stale marker or a failed scrape, not a value.
            }
            if !(0.0..=1e15).contains(&v) {
                return Err(PromJsonError::Series {
                    index,
                    message: format!("value {v} at {t} is out of range"),
                });
            }
            let ts_us = (t * 1e6).round() as i64;
            let row = rows
                .entry((target.clone(), ts_us))
                .or_insert_with(|| CountRow {
                    target: target.clone(),
                    ts_us,
                    goroutines: -1,
                    source: "prometheus".into(),
                    format: "prometheus".into(),
                    content_hash: Some(source.to_string()),
                    ..Default::default()
                });
            let v = v.round() as i64;
            match name {
                "go_threads" => row.threads = Some(v),
                "go_memstats_heap_alloc_bytes" => row.heap_bytes = Some(v),
                _ => row.goroutines = v,
            }
        }
    }
    Ok(rows.into_values().filter(|r| r.goroutines >= 0).collect())
}

fn target_from_labels(m: &BTreeMap<String, String>) -> Option<Target> {
    let get = |keys: &[&str]| keys.iter().find_map(|k| m.get(*k).cloned());
    let instance = get(&["instance"]);
    let pod = get(&["pod", "kubernetes_pod_name", "pod_name"]).or_else(|| instance.clone())?;
    Some(Target {
        cluster: get(&["cluster"]),
        namespace: get(&["namespace", "kubernetes_namespace", "exported_namespace"])
            .unwrap_or_default(),
        workload_kind: None,
        workload: get(&["workload", "deployment", "job"]),
        pod,
        container: get(&["container", "container_name"]),
        node: get(&["node", "kubernetes_node"]),
        instance,
    })
}

/// Whether the head of a document looks like a Prometheus API answer.
pub fn looks_like_json(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        let j = br#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"__name__":"go_goroutines","namespace":"prod","pod":"api-1","instance":"10.0.0.1:8080"},
           "values":[[1795839000,"12"],[1795839015,"NaN"],[1795839030,"14"]]},
          {"metric":{"__name__":"go_threads","namespace":"prod","pod":"api-1","instance":"10.0.0.1:8080"},
           "values":[[1795839000,"7"]]}]}}"#;
        let rows = parse_query_range(j, "h").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].goroutines, 12);
        assert_eq!(rows[0].threads, Some(7));
        assert_eq!(rows[1].goroutines, 14);
        assert_eq!(rows[0].target.pod, "api-1");
    }

    #[test]
    fn not_matrix() {
        let j = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            parse_query_range(j, "h"),
            Err(PromJsonError::NotMatrix("vector".into()))
        );
        assert!(matches!(
            parse_query_range(b"{\"status\":", "h"),
            Err(PromJsonError::Json { .. })
        ));
    }
}

/// Prometheus refuses a `query_range` whose answer would exceed this many points per series.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Points per page by default: a margin below the server's limit.
pub const DEFAULT_POINTS_PER_PAGE: i64 = 10_000;

/// A `query_range` request: PromQL, `[from, to]` in Unix seconds, the step, and how many points
/// per series one page may hold.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub query: String,
    pub from_s: i64,
    pub to_s: i64,
    pub step_s: i64,
    pub points_per_page: i64,
}

/// Fetch `query` over `[from, to]` at `step_s` from a Prometheus server, in pages that stay
/// under [`MAX_POINTS_PER_SERIES`], and turn every page into count rows. Each page's rows carry
/// a content hash of that page's answer.
pub async fn fetch_query_range(
    client: &reqwest::Client,
    base_url: &str,
    range: &RangeQuery,
    progress: &mut dyn FnMut(i64, i64),
) -> Result<Vec<(String, Vec<CountRow>)>, String> {
    let RangeQuery {
        query,
        from_s,
        to_s,
        step_s,
        points_per_page,
    } = range;
    let (from_s, to_s, step_s) = (*from_s, *to_s, *step_s);
    if step_s <= 0 || to_s < from_s {
        return Err(format!("bad range: from {from_s} to {to_s} step {step_s}s"));
    }
    let per_page = (*points_per_page).clamp(2, MAX_POINTS_PER_SERIES);
    let span = step_s * (per_page - 1);
    let url = format!("{}/api/v1/query_range", base_url.trim_end_matches('/'));
    let mut pages = Vec::new();
    let mut start = from_s;
    while start <= to_s {
        let end = (start + span).min(to_s);
        let resp = client
            .get(&url)
            .query(&[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", format!("{step_s}s")),
            ])
            .send()
            .await
            .map_err(|e| format!("{url}: {}", crate::error::chain(&e.without_url())))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{url}: {}", crate::error::chain(&e.without_url())))?;
        if !status.is_success() && body.first() != Some(&b'{') {
            return Err(format!("{url}: HTTP {status}"));
        }
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body));
        let rows =
            parse_query_range(&body, &hash).map_err(|e| format!("{url} [{start}, {end}]: {e}"))?;
        pages.push((hash, rows));
        progress(end - from_s, to_s - from_s);
        // Prometheus includes both ends: the next page starts one step later.
        start = end + step_s;
    }
    Ok(pages)
}
