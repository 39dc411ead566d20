//! A burst of 10,000 Alertmanager deliveries (payload v4, bearer auth) to `leakhound serve`'s
//! receiver on loopback, from 32 concurrent senders that retry a 503 the way Alertmanager does.
//! One delivery in five re-sends an alert already delivered (Alertmanager's at-least-once), so
//! 8,000 distinct alerts, each an L1 decision that lands as one row of the actions table.
//!
//! Then the same burst again with the receiver's de-duplication state already holding 200,000
//! alerts (25 posts of 8,000, `LEAKHOUND_BENCH_DEDUP_STATE`), and the reference again.
//!
//! It checks, and fails otherwise: every delivery answered 2xx in the end (none lost), exactly
//! 8,000 rows with 8,000 distinct idempotency keys (no duplicate action), 2,000 duplicates
//! counted. It prints the latency of the 2xx replies (p50/p90/p99/max) next to a reference
//! measured in the same run under the same load: an axum handler that reads the body and does
//! nothing else.
//!
//! `cargo bench -p leakhound-actuate --bench webhook_burst` (release), or
//! `cargo test -p leakhound-actuate --bench webhook_burst` for the dev profile.
//!
//! Figures (2 cores, 24 GiB; 10,000 deliveries; 10,000 2xx, 0 lost, 0 retried; 8,000 rows with
//! 8,000 distinct keys in 4 Parquet files; queue drained 5 ms after the last reply):
//!
//! | profile, machine | reference p50 / p99 | receiver p50 / p99 | receiver max | req/s ref / receiver |
//! |---|---|---|---|---|
//! | release, quiet (load 1.1) | 0.46 / 0.92 ms | 0.73–0.77 / 1.81–1.84 ms | 3.1–5.5 ms | 66k / 39–41k |
//! | release, other builds running (load 3+) | 0.77 / 1.88 ms | 1.32 / 6.26 ms | 12.3 ms | 40k / 21k |
//! | dev, load ~2 | 4.62 / 8.01 ms | 7.10 / 17.57 ms | 25.6 ms | 6.8k / 4.3k |
//! | dev, 2026-12-03, empty de-dup state | 8.21 / 12.93 ms | 13.00 / 22.77 ms | 42.0 ms | 3.8k / 2.4k |
//! | dev, 2026-12-03, 200,000-entry de-dup state | 9.27 / 15.54 ms | 14.06 / 29.04 ms | 45.7 ms | 3.4k / 1.7k (512 retried 503s, none lost) |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use leakhound_actuate::clock::SystemClock;
use leakhound_actuate::engine::Engine;
use leakhound_actuate::policy::Policy;
use leakhound_actuate::server::{Auth, Server, ServerConfig};
use leakhound_ingest::store::Store;
use leakhound_schemas::tables::Table;

const DELIVERIES: usize = 10_000;
const CONCURRENCY: usize = 32;
const TOKEN: &str = "bench-token";

fn payload(i: usize) -> (String, bool) {
    // Every 5th delivery re-sends the alert of the delivery before it.
    let dup = i % 5 == 4;
    let unique = if dup { i - 1 } else { i };
    let body = format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"GoroutineLeakGrowth\"}}","truncatedAlerts":0,"status":"firing","receiver":"leakhound","groupLabels":{{"alertname":"GoroutineLeakGrowth"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am.invalid","alerts":[{{"status":"firing","labels":{{"alertname":"GoroutineLeakGrowth","namespace":"shop","pod":"orders-{unique}","leakhound_level":"L1"}},"annotations":{{"summary":"goroutines grow"}},"startsAt":"2026-11-28T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom.invalid/graph","fingerprint":"fp-{unique:08}"}}]}}"#
    );
    (body, dup)
}

struct Figures {
    wall: Duration,
    latencies: Vec<Duration>,
    retries_503: usize,
    failures: usize,
}

async fn burst(url: String, bearer: bool) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, next, retries, failures) = (
            client.clone(),
            url.clone(),
            next.clone(),
            retries.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= DELIVERIES {
                    break;
                }
                let (body, _) = payload(i);
                // Alertmanager retries 5xx with backoff; so does this sender (bounded).
                let mut attempt = 0;
                loop {
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    if bearer {
                        req = req.bearer_auth(TOKEN);
                    }
                    let t = Instant::now();
                    let status = req.send().await.map(|r| r.status().as_u16());
                    let took = t.elapsed();
                    match status {
                        Ok(s) if (200..300).contains(&s) => {
                            lat.push(took);
                            break;
                        }
                        Ok(503) if attempt < 50 => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("sender task"));
    }
    latencies.sort();
    Figures {
        wall: started.elapsed(),
        latencies,
        retries_503: retries.load(Ordering::Relaxed),
        failures: failures.load(Ordering::Relaxed),
    }
}

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return f64::NAN;
    }
    let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
    l[i].as_secs_f64() * 1000.0
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>6} ok  {:>4} failed  {:>5} retried(503)  {:>7.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        f.latencies.len(),
        f.failures,
        f.retries_503,
        f.latencies.len() as f64 / f.wall.as_secs_f64(),
        pct(&f.latencies, 0.50),
        pct(&f.latencies, 0.90),
        pct(&f.latencies, 0.99),
        f.latencies
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN),
    );
}

async fn reference() -> Figures {
    let app = Router::new().route(
        "/alertmanager",
        post(|body: Bytes| async move {
            std::hint::black_box(body.len());
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    let f = burst(format!("http://{addr}/alertmanager"), false).await;
    let _ = tx.send(());
    let _ = server.await;
    f
}

/// Fill the receiver's de-duplication state with `n` distinct alerts (posts of 8,000, as a
/// large Alertmanager group sends them) before the burst; wait until the worker has them.
async fn prefill(addr: SocketAddr, n: usize) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/alertmanager");
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(8000);
        let alerts: Vec<String> = (sent..sent + k)
            .map(|i| format!(r#"{{"status":"firing","labels":{{"namespace":"shop","pod":"pre-{i}"}},"annotations":{{}},"startsAt":"2026-11-28T09:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"pre-{i:08}"}}"#))
            .collect();
        let body = format!(
            r#"{{"version":"4","groupKey":"{{}}:{{prefill=\"{sent}\"}}","truncatedAlerts":0,"status":"firing","receiver":"leakhound","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am.invalid","alerts":[{}]}}"#,
            alerts.join(",")
        );
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .expect("prefill post");
        assert!(r.status().is_success(), "prefill: {}", r.status());
        sent += k;
    }
    wait_processed(addr, n, Duration::from_secs(1200)).await;
}

/// Poll `/metrics` until the worker has processed `n` alerts (or the deadline).
async fn wait_processed(addr: SocketAddr, n: usize, limit: Duration) -> Instant {
    let metrics_url = format!("http://{addr}/metrics");
    let deadline = Instant::now() + limit;
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let processed = text
            .lines()
            .find_map(|l| l.strip_prefix("leakhound_webhook_alerts_total{result=\"processed\"} "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if processed >= n || Instant::now() > deadline {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn receiver(prefilled: usize) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().to_str().expect("utf-8")).expect("store");
    let engine = Engine::new(&store, Policy::default(), None, true, Arc::new(SystemClock))
        .await
        .expect("engine");
    let cfg = ServerConfig {
        auth: Auth::Bearer(TOKEN.into()),
        queue: 1024,
        body_limit: 4 << 20,
        ..Default::default()
    };
    let server = Server::bind("127.0.0.1:0".parse().expect("addr"), cfg, engine)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    if prefilled > 0 {
        prefill(addr, prefilled).await;
    }
    let f = burst(format!("http://{addr}/alertmanager"), true).await;
    let burst_end = Instant::now();

    // Wait for the worker to have handled every accepted alert (bounded), then stop.
    let want_unique = (0..DELIVERIES).filter(|i| !payload(*i).1).count();
    let drained_at = wait_processed(addr, prefilled + want_unique, Duration::from_secs(120)).await;
    let _ = tx.send(());
    let stopped = running.await.expect("server task").expect("server");
    let m = &stopped.metrics;
    let dups = m.alerts_duplicate.load(Ordering::Relaxed) as usize;
    let accepted = m.alerts_accepted.load(Ordering::Relaxed) as usize;

    // The audit: one row per distinct alert, no key twice.
    let schema = Table::Actions.schema();
    let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut keys = std::collections::HashSet::new();
    let mut rows = 0;
    for b in store
        .read_columns(Table::Actions, &cols, None)
        .await
        .expect("read actions")
    {
        for r in leakhound_actuate::audit::records_from_batch(&b) {
            let r = r.expect("row");
            rows += 1;
            keys.insert(r.action_key);
        }
    }
    let files = store.list_files(Table::Actions).await.expect("list").len();
    println!(
        "receiver: {accepted} alerts accepted, {dups} duplicates, {rows} action rows ({} distinct keys) in {files} Parquet files; queue drained {:.0} ms after the last reply",
        keys.len(),
        drained_at.duration_since(burst_end).as_secs_f64() * 1000.0
    );
    assert_eq!(f.failures, 0, "deliveries lost");
    assert_eq!(f.latencies.len(), DELIVERIES, "deliveries without a 2xx");
    assert_eq!(accepted, prefilled + want_unique, "accepted alerts");
    assert_eq!(dups, DELIVERIES - want_unique, "duplicates counted");
    assert_eq!(
        rows,
        prefilled + want_unique,
        "one action row per distinct alert"
    );
    assert_eq!(keys.len(), prefilled + want_unique, "no action twice");
    f
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; run the same either way.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let profile = if cfg!(debug_assertions) {
        "dev (debug assertions)"
    } else {
        "release"
    };
    println!(
        "webhook burst: {DELIVERIES} deliveries, {CONCURRENCY} concurrent senders, loopback, 2 runtime workers, profile {profile}"
    );
    let first = rt.block_on(reference());
    print("reference (axum, no-op)", &first);
    let r = rt.block_on(receiver(0));
    print("leakhound serve receiver", &r);
    // The de-duplication state at 200,000 entries (LEAKHOUND_BENCH_DEDUP_STATE to change).
    let state: usize = std::env::var("LEAKHOUND_BENCH_DEDUP_STATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    if state > 0 {
        let r = rt.block_on(receiver(state));
        print(&format!("receiver, {}k dedup state", state / 1000), &r);
        let again = rt.block_on(reference());
        print("reference again (axum)", &again);
    }
}
