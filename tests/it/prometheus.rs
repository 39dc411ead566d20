//! History from a real Prometheus (Debian package `prometheus`) scraping the real leaking Go
//! program: `leakhound backfill --prometheus` lands exactly what Prometheus holds, paged under
//! the server's points-per-series limit, and a re-run over an overlapping window adds nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::goprog::Leaky;
use crate::support::*;

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-sf", url]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_prometheus(target: &str) -> Prometheus {
    let bin = std::env::var("LEAKHOUND_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: leaky\n    static_configs:\n      - targets: ['{target}']\n        labels: {{namespace: shop, pod: orders-1, container: orders}}\n"
        ),
    );
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e} (apt-get install prometheus; .ci/run does)"));
    let url = format!("http://127.0.0.1:{port}");
    let p = Prometheus {
        child,
        url,
        _dir: dir,
    };
    wait_until("prometheus ready", Duration::from_secs(60), || {
        curl(&format!("{}/-/ready", p.url)).is_some()
    });
    p
}

fn points(p: &Prometheus, from: i64, to: i64) -> Vec<(i64, i64)> {
    let body = curl(&format!(
        "{}/api/v1/query_range?query=go_goroutines%7Bjob%3D%22leaky%22%7D&start={from}&end={to}&step=1s",
        p.url
    ))
    .expect("query_range");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap() as i64,
                p[1].as_str().unwrap().parse::<f64>().unwrap() as i64,
            )
        })
        .collect()
}

#[test]
fn query_range_import_matches_what_prometheus_holds() {
    let leaky = Leaky::start(&["-leak", "chansend:3/s"]);
    let prom = start_prometheus(leaky.url.trim_start_matches("http://"));
    let from = chrono::Utc::now().timestamp();
    // Wait for at least 12 scrapes (readiness by data, not by sleeping a fixed time).
    wait_until("12 scrapes in Prometheus", Duration::from_secs(90), || {
        let now = chrono::Utc::now().timestamp();
        curl(&format!(
            "{}/api/v1/query_range?query=go_goroutines&start={from}&end={now}&step=1s",
            prom.url
        ))
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["data"]["result"][0]["values"].as_array().map(|a| a.len()))
        .unwrap_or(0)
            >= 12
    });
    let to = chrono::Utc::now().timestamp();
    let want = points(&prom, from, to);
    assert!(want.len() >= 12, "{want:?}");
    assert!(
        want.last().unwrap().1 > want.first().unwrap().1,
        "the program leaks: {want:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // 5 points per page: several requests, stitched without gaps or overlaps.
    let out = ok(&[
        "backfill",
        "--store",
        store,
        "--prometheus",
        &prom.url,
        "--query",
        "go_goroutines{job=\"leaky\"}",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--step",
        "1s",
        "--points-per-page",
        "5",
    ]);
    assert!(
        out.contains(&format!("{} rows", want.len())),
        "{out}\n{want:?}"
    );
    let got: Vec<(i64, i64)> = sql_json(
        store,
        "SELECT CAST(date_part('epoch', ts) AS BIGINT) AS t, goroutines FROM goroutine_counts \
         WHERE namespace = 'shop' AND pod = 'orders-1' AND source = 'prometheus' ORDER BY ts",
    )
    .iter()
    .map(|r| (r["t"].as_i64().unwrap(), r["goroutines"].as_i64().unwrap()))
    .collect();
    assert_eq!(got, want);

    // An overlapping window later: only the new points land.
    let out = ok(&[
        "backfill",
        "--store",
        store,
        "--prometheus",
        &prom.url,
        "--query",
        "go_goroutines{job=\"leaky\"}",
        "--from",
        &(from + 3).to_string(),
        "--to",
        &to.to_string(),
        "--step",
        "1s",
    ]);
    assert!(out.contains(" 0 rows"), "{out}");
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_counts") as usize,
        want.len()
    );
}
