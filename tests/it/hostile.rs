//! `leakhound serve` against hostile clients, as an attacker on the cluster network would try it.
//!
//! - Names from alert labels that Kubernetes would refuse (`orders#x`, `orders-1?dryRun=`,
//!   `../../kube-system/pods/x`, `%2F`, `KUBE-SYSTEM`, `kube‐system` with U+2010) are refused
//!   before any request is built: on the real API server, with `--apply` off, no object's
//!   resourceVersion moves, and each alert is a `skipped` row saying why. (Before the fix,
//!   `deployment="orders#x"` sent a real PATCH without `dryRun=All`: the `#` cut the query.)
//! - 20,000 idle connections: `/healthz` still answers within 1 s, and a webhook still lands; a
//!   client that never finishes its headers is cut at the header timeout.
//! - 25 posts of 8,000 new alerts each (200,000 de-duplication entries): every post answers
//!   within 1 s, `/healthz` too; a re-delivery is acknowledged as duplicates.
//! - A restart forgets the de-duplication set, not what was done: the same alerts again act
//!   on nothing (the `actions` table).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::actuate::{actions, bind_shipped_role, unbind};
use crate::k8s::{
    admin_client, create_namespace, delete_namespace, deployment, kubeconfigs, skip, unique_name,
    wait_ready_pods,
};
use crate::serve::{Serve, alert, metric, payload};
use crate::support::write;

/// Wait until the receiver has processed `n` alerts (its own counter), polling `/metrics`.
async fn processed(http: &reqwest::Client, url: &str, n: f64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let got = metric(
            &text,
            "leakhound_webhook_alerts_total{result=\"processed\"}",
        );
        if got >= n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "processed {got} of {n} alerts in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(http: &reqwest::Client, hook: &str, body: &Value) -> Result<(u16, Value)> {
    post_text(http, hook, body.to_string()).await
}

async fn post_text(http: &reqwest::Client, hook: &str, body: String) -> Result<(u16, Value)> {
    let r = http
        .post(hook)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let code = r.status().as_u16();
    let text = r.text().await?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn serve_refuses_hostile_names_and_changes_nothing_on_the_api_server() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("hostile");
    create_namespace(&client, &ns).await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let result = hostile_scenario(&client, &ns).await;
    unbind(&client, &role).await;
    if result.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    result
}

/// `kind/name → resourceVersion` of every object of kind `K` in `ns`.
async fn versions_of<K>(
    client: &kube::Client,
    ns: &str,
    kind: &str,
) -> Result<Vec<(String, String)>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|o| {
            let m = o.meta();
            (
                format!("{kind}/{}", m.name.clone().unwrap_or_default()),
                m.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect())
}

async fn versions(client: &kube::Client, ns: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    out.extend(versions_of::<Deployment>(client, ns, "deployment").await?);
    out.extend(versions_of::<Pod>(client, ns, "pod").await?);
    out.extend(versions_of::<HorizontalPodAutoscaler>(client, ns, "hpa").await?);
    Ok(out)
}

async fn hostile_scenario(client: &kube::Client, ns: &str) -> Result<()> {
    let kc = &kubeconfigs()?.restricted;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    deployments
        .create(
            &PostParams::default(),
            &deployment("orders", 2, &BTreeMap::new())?,
        )
        .await?;
    let ready = wait_ready_pods(&pods, "app=orders", 2).await?;
    let before = versions(client, ns).await?;

    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    write(
        &policy,
        "levels:\n  l2: [hpa, min_replicas, vpa]\n  l3: [rollout_restart, capture, evict]\n",
    );
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--no-auth",
        "--policy",
        policy.to_str().context("utf-8")?,
        "--kubeconfig",
        kc.to_str().context("utf-8")?,
    ]);
    let http = reqwest::Client::new();
    let hook = format!("{}/alertmanager", serve.url);
    let pod = ready[0].as_str();
    let l3 = |labels: Value| {
        let mut l = labels;
        l["alertname"] = json!("GoroutineLeak");
        l["severity"] = json!("critical");
        l
    };
    let hostile = vec![
        // `#` starts a fragment: before the fix the query string after it (dryRun=All) was lost.
        json!({ "namespace": ns, "deployment": "orders#x" }),
        json!({ "namespace": ns, "pod": format!("{pod}?dryRun=") }),
        json!({ "namespace": ns, "workload": "../../kube-system/pods/x" }),
        json!({ "namespace": ns, "deployment": "orders%2Fx" }),
        json!({ "namespace": ns, "deployment": "orders/../orders" }),
        json!({ "namespace": ns, "deployment": "orders", "workload_kind": "Deployment/../../x" }),
        json!({ "namespace": ns, "deployment": "Orders" }),
        json!({ "namespace": format!("{ns}/../kube-system"), "pod": "x" }),
        json!({ "namespace": "KUBE-SYSTEM", "deployment": "coredns" }),
        json!({ "namespace": "kube\u{2010}system", "deployment": "coredns" }),
        json!({ "namespace": ns, "pod": "x".repeat(300) }),
        json!({ "namespace": ns, "deployment": "orders\n" }),
    ];
    let n_hostile = hostile.len();
    let mut alerts: Vec<Value> = hostile
        .into_iter()
        .enumerate()
        .map(|(i, l)| alert(&format!("hostile-{i}"), "firing", l3(l)))
        .collect();
    // Controls: the deny-list (the real spelling) and a valid alert, which in dry-run goes out
    // with dryRun=All and changes nothing either.
    alerts.push(alert(
        "control-denied",
        "firing",
        l3(json!({ "namespace": "kube-system", "deployment": "coredns" })),
    ));
    alerts.push(alert(
        "control-valid",
        "firing",
        l3(json!({ "namespace": ns, "deployment": "orders" })),
    ));
    let total = alerts.len();
    let (code, v) = post(&http, &hook, &payload("{}:{hostile}", alerts)).await?;
    ensure!(code == 200, "{code} {v}");
    processed(&http, &serve.url, total as f64, Duration::from_secs(60)).await?;
    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");

    let after = versions(client, ns).await?;
    ensure!(
        after == before,
        "objects changed while dry-run:\nbefore {before:#?}\nafter {after:#?}"
    );
    let rows = actions(store).await?;
    for i in 0..n_hostile {
        let id = format!("hostile-{i}@");
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.trigger_id.starts_with(&id))
            .collect();
        ensure!(
            !mine.is_empty()
                && mine.iter().all(|r| r.outcome.as_str() == "skipped"
                    && r.reason.contains("invalid")
                    && r.http_status.is_none()
                    && r.request.is_none()),
            "hostile alert {i}: {mine:#?}"
        );
    }
    let denied: Vec<_> = rows
        .iter()
        .filter(|r| r.trigger_id.starts_with("control-denied@"))
        .collect();
    ensure!(
        !denied.is_empty()
            && denied
                .iter()
                .all(|r| r.outcome.as_str() == "skipped" && r.reason.contains("deny-list")),
        "{denied:#?}"
    );
    let valid: Vec<_> = rows
        .iter()
        .filter(|r| r.trigger_id.starts_with("control-valid@") && r.action == "rollout_restart")
        .collect();
    ensure!(
        valid.len() == 1 && valid[0].outcome.as_str() == "dry_run" && valid[0].dry_run,
        "the valid control must reach the API server in dry-run: {valid:#?}"
    );
    Ok(())
}

/// A child process that opens `n` connections to `port` and holds them until its stdin closes;
/// prints `open N` once they are open. (A separate process: the test's own descriptors stay
/// free, and 20,000 sockets need two of them under a 20,000 descriptor limit.)
fn hold_connections(port: u16, n: usize) -> Result<std::process::Child> {
    let script = r#"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    held.append(s)
print("open", len(held), flush=True)
sys.stdin.read()
"#;
    Command::new("python3")
        .args(["-c", script, &port.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("python3 (holds the idle connections)")
}

async fn timed_health(http: &reqwest::Client, url: &str) -> Result<Duration> {
    let t = Instant::now();
    let r = http
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    ensure!(r.status() == 200, "healthz: {}", r.status());
    Ok(t.elapsed())
}

#[tokio::test]
async fn serve_answers_health_under_20000_idle_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--no-auth",
        "--max-connections",
        "512",
        "--header-timeout",
        "2s",
    ]);
    let port: u16 = serve
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("port")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;

    // A client that starts a request and never finishes its headers is cut off.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port))?;
    slow.write_all(b"POST /alertmanager HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(Duration::from_secs(10)))?;
    let t = Instant::now();
    let mut buf = [0u8; 512];
    let n = slow.read(&mut buf).unwrap_or(0);
    let cut = t.elapsed();
    ensure!(
        cut < Duration::from_secs(8),
        "a half-sent request held its connection {cut:?} (header timeout 2 s); read {n} bytes"
    );

    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut child = hold_connections(port, 10_000)?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        ensure!(line.trim() == "open 10000", "holder: {line:?}");
        holders.push(child);
        // Health in the middle of the flood, too.
        let d = timed_health(&http, &serve.url).await?;
        ensure!(
            d < Duration::from_secs(1),
            "healthz took {d:?} during the flood"
        );
    }
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        worst = worst.max(timed_health(&http, &serve.url).await?);
    }
    ensure!(
        worst < Duration::from_secs(1),
        "healthz took {worst:?} with 20,000 idle connections held"
    );
    // Work still lands.
    let hook = format!("{}/alertmanager", serve.url);
    let body = payload(
        "{}:{idle}",
        vec![alert(
            "idle-1",
            "firing",
            json!({ "alertname": "X", "namespace": "shop", "pod": "orders-1", "leakhound_level": "L1" }),
        )],
    );
    let (code, v) = post(&http, &hook, &body).await?;
    ensure!(code == 200 && v["accepted"] == 1, "{code} {v}");
    processed(&http, &serve.url, 1.0, Duration::from_secs(30)).await?;
    for mut c in holders {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");
    ensure!(
        actions(store).await?.len() == 1,
        "the alert was not recorded"
    );
    Ok(())
}

#[tokio::test]
async fn serve_takes_25_posts_of_8000_new_alerts_each_under_a_second() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--no-auth",
        "--max-body",
        "4194304",
    ]);
    let http = reqwest::Client::new();
    let hook = format!("{}/alertmanager", serve.url);
    // Small alerts, as in the report: ~1 MB a post. L1 (record) each: nothing to call.
    let batch = |b: usize| {
        let alerts = (0..8000)
            .map(|i| {
                json!({ "status": "firing", "labels": { "namespace": "shop", "pod": format!("p-{b}-{i}") },
                        "startsAt": "2026-12-03T10:00:00Z", "fingerprint": format!("{b:02}{i:05}") })
            })
            .collect();
        payload(&format!("{{}}:{{b=\"{b}\"}}"), alerts)
    };
    let mut worst = Duration::ZERO;
    let mut worst_health = Duration::ZERO;
    for b in 0..25 {
        let body = batch(b).to_string();
        if b == 0 {
            eprintln!("one post: {} bytes", body.len());
        }
        let t = Instant::now();
        let (code, v) = post_text(&http, &hook, body).await?;
        let d = t.elapsed();
        ensure!(code == 200 && v["accepted"] == 8000, "post {b}: {code} {v}");
        worst = worst.max(d);
        worst_health = worst_health.max(timed_health(&http, &serve.url).await?);
    }
    eprintln!(
        "25 posts of 8,000 new alerts: slowest post {worst:?}, slowest /healthz {worst_health:?}"
    );
    ensure!(worst < Duration::from_secs(1), "slowest post {worst:?}");
    ensure!(
        worst_health < Duration::from_secs(1),
        "slowest healthz {worst_health:?}"
    );
    // A re-delivery of one of them: all duplicates, answered as fast.
    let again = batch(24).to_string();
    let t = Instant::now();
    let (code, v) = post_text(&http, &hook, again).await?;
    ensure!(
        code == 200 && v["duplicates"] == 8000 && t.elapsed() < Duration::from_secs(1),
        "{code} {v} in {:?}",
        t.elapsed()
    );
    let text = http
        .get(format!("{}/metrics", serve.url))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metric(&text, "leakhound_webhook_dedup_entries") == 200_000.0,
        "de-duplication entries: {}",
        metric(&text, "leakhound_webhook_dedup_entries")
    );
    processed(&http, &serve.url, 200_000.0, Duration::from_secs(600)).await?;
    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");
    Ok(())
}

#[tokio::test]
async fn serve_acts_once_across_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let body = payload(
        "{}:{restart}",
        (0..50)
            .map(|i| {
                alert(
                    &format!("r-{i}"),
                    "firing",
                    json!({ "namespace": "shop", "pod": format!("p-{i}") }),
                )
            })
            .collect(),
    );
    let args = ["--listen", "127.0.0.1:0", "--store", store, "--no-auth"];
    let http = reqwest::Client::new();
    for round in 0..2 {
        let serve = Serve::start(&args);
        let (code, v) = post(&http, &format!("{}/alertmanager", serve.url), &body).await?;
        // The de-duplication set is new after a restart: the alerts are accepted again ...
        ensure!(
            code == 200 && v["accepted"] == 50,
            "round {round}: {code} {v}"
        );
        processed(&http, &serve.url, 50.0, Duration::from_secs(60)).await?;
        let status = serve.stop();
        ensure!(status.success(), "serve exited with {status}");
        // ... and the actions table keeps them from acting twice.
        let rows = actions(store).await?;
        ensure!(rows.len() == 50, "round {round}: {} rows", rows.len());
    }
    Ok(())
}
