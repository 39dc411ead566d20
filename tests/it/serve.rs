//! `leakhound serve`, the Alertmanager webhook receiver, driven as a user runs it.
//!
//! - Without a cluster: 401 without or with wrong credentials, 400 for a malformed payload or a
//!   wrong version, 413 above the body limit, 2xx for a good one; the same delivery twice acts
//!   once (one row in the actions table after a clean SIGTERM shutdown); /healthz, /metrics.
//! - End to end: the real leaking Go program plays a pod of a Deployment on the test control
//!   plane (at the pod's loopback IP and annotated port); a real Prometheus scrapes it and
//!   evaluates the shipped rules (deploy/prometheus-operator/, windows shortened and `for: 0s`
//!   in a test copy); a real Alertmanager, configured from deploy/alertmanager/alertmanager-route.yaml,
//!   posts to `leakhound serve --apply` with a bearer token from a file; the L3 growth alert
//!   makes the receiver capture the pod's debug=2 dump into the store and evict the pod. The
//!   Alertmanager re-delivers the firing alert (repeat_interval 2 s): de-duplicated, nothing is
//!   done twice.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::actuate::{actions, bind_shipped_role, unbind};
use crate::goprog::Leaky;
use crate::k8s::{
    admin_client, create_namespace, delete_namespace, deployment, kubeconfigs, poll, skip,
    unique_name, wait_ready_pods,
};
use crate::support::{bin, free_port, repo, wait_until, write};

/// A running `leakhound serve`.
pub(crate) struct Serve {
    child: Option<Child>,
    /// Kept open so that the receiver's last words do not hit a closed pipe.
    stdout: Option<BufReader<std::process::ChildStdout>>,
    pub(crate) url: String,
}

impl Serve {
    pub(crate) fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("LEAKHOUND_STORE")
            .env_remove("LEAKHOUND_APPLY")
            .env_remove("KUBECONFIG")
            // tests/run exports it for the k8s tests; a test that wants a cluster says so.
            .env_remove("LEAKHOUND_KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start leakhound serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the first line of leakhound serve");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from leakhound serve: {line:?}"))
            .to_string();
        Serve {
            child: Some(child),
            stdout: Some(stdout),
            url,
        }
    }

    /// SIGTERM, then wait: the receiver finishes its queue and flushes the audit log.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
        if let Some(mut out) = self.stdout.take() {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        }
        child.wait().expect("wait for leakhound serve")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// When the test alerts started: ten minutes before this test binary first asked, fixed for the
/// run (de-duplication keys on it), and recent enough for the policy's `max_trigger_age`.
fn alert_start() -> chrono::DateTime<chrono::Utc> {
    static START: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        let t = chrono::Utc::now() - chrono::Duration::minutes(10);
        chrono::DateTime::from_timestamp(t.timestamp() / 60 * 60, 0).unwrap_or(t)
    })
}

pub(crate) fn alert(fingerprint: &str, status: &str, labels: Value) -> Value {
    let start = alert_start();
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": "goroutines grow" },
        "startsAt": rfc(start),
        "endsAt": if status == "firing" {
            "0001-01-01T00:00:00Z".to_string()
        } else {
            rfc(start + chrono::Duration::minutes(5))
        },
        "generatorURL": "http://prometheus.invalid/graph",
        "fingerprint": fingerprint,
    })
}

pub(crate) fn payload(group_key: &str, alerts: Vec<Value>) -> Value {
    json!({
        "version": "4", "groupKey": group_key, "truncatedAlerts": 0, "status": "firing",
        "receiver": "leakhound", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid", "alerts": alerts,
    })
}

pub(crate) fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn serve_authenticates_validates_and_acts_once_per_alert() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    write(&token, "s3cret\n");
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--bearer-token-file",
        token.to_str().context("utf-8")?,
        "--max-body",
        "4096",
    ]);
    let http = reqwest::Client::new();
    let hook = format!("{}/alertmanager", serve.url);

    let r = http.get(format!("{}/healthz", serve.url)).send().await?;
    ensure!(r.status() == 200, "healthz: {}", r.status());

    let good = payload(
        "{}:{alertname=\"GoroutineLeakGrowth\"}",
        vec![
            alert(
                "fp-1",
                "firing",
                json!({ "alertname": "GoroutineLeakGrowth", "namespace": "shop", "pod": "orders-1", "leakhound_level": "L1" }),
            ),
            alert(
                "fp-2",
                "resolved",
                json!({ "alertname": "GoroutineLeakGrowth", "namespace": "shop", "pod": "orders-2", "leakhound_level": "L1" }),
            ),
        ],
    );
    // Unauthenticated, and wrong credentials: 401 with a challenge.
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .body(good.to_string())
        .send()
        .await?;
    ensure!(r.status() == 401, "no credentials: {}", r.status());
    ensure!(
        r.headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Bearer")),
        "{:?}",
        r.headers()
    );
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .bearer_auth("s3cre")
        .body(good.to_string())
        .send()
        .await?;
    ensure!(r.status() == 401, "wrong token: {}", r.status());
    // Malformed: 400 with the reason (Alertmanager does not retry 4xx).
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .bearer_auth("s3cret")
        .body("{\"version\": \"4\", \"alerts\": [")
        .send()
        .await?;
    ensure!(r.status() == 400, "malformed: {}", r.status());
    let body = r.text().await?;
    ensure!(body.contains("malformed JSON"), "{body}");
    let mut v3 = good.clone();
    v3["version"] = json!("3");
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .bearer_auth("s3cret")
        .body(v3.to_string())
        .send()
        .await?;
    ensure!(r.status() == 400, "version 3: {}", r.status());
    ensure!(r.text().await?.contains("unsupported payload version"));
    // Above the body limit: 413.
    let big = "x".repeat(10_000);
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .bearer_auth("s3cret")
        .body(big)
        .send()
        .await?;
    ensure!(r.status() == 413, "big body: {}", r.status());
    // Not JSON by its Content-Type: 415, before the body is read.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = http
            .post(&hook)
            .bearer_auth("s3cret")
            .body(good.to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await?;
        ensure!(r.status() == 415, "content-type {ct:?}: {}", r.status());
    }

    // Good: 200 at once; the same delivery again is a duplicate.
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .bearer_auth("s3cret")
        .body(good.to_string())
        .send()
        .await?;
    ensure!(r.status() == 200, "good: {}", r.status());
    let v: Value = serde_json::from_str(&r.text().await?)?;
    ensure!(v == json!({ "accepted": 2, "duplicates": 0 }), "{v}");
    let r = http
        .post(&hook)
        .header("content-type", "application/json")
        .bearer_auth("s3cret")
        .body(good.to_string())
        .send()
        .await?;
    let v: Value = serde_json::from_str(&r.text().await?)?;
    ensure!(v == json!({ "accepted": 0, "duplicates": 2 }), "{v}");

    let metrics_url = format!("{}/metrics", serve.url);
    let mut text = String::new();
    for _ in 0..1200 {
        text = http.get(&metrics_url).send().await?.text().await?;
        if metric(
            &text,
            "leakhound_webhook_alerts_total{result=\"processed\"}",
        ) >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    ensure!(
        metric(
            &text,
            "leakhound_webhook_alerts_total{result=\"processed\"}"
        ) == 2.0
            && metric(&text, "leakhound_webhook_alerts_total{result=\"resolved\"}") == 1.0
            && metric(
                &text,
                "leakhound_webhook_alerts_total{result=\"duplicate\"}"
            ) == 2.0
            && metric(&text, "leakhound_webhook_requests_total{code=\"401\"}") == 2.0
            && metric(&text, "leakhound_webhook_requests_total{code=\"400\"}") == 2.0
            // Every refusal is counted, 413 and 415 included.
            && metric(&text, "leakhound_webhook_requests_total{code=\"413\"}") == 1.0
            && metric(&text, "leakhound_webhook_requests_total{code=\"415\"}") == 3.0
            && metric(
                &text,
                "leakhound_actions_total{action=\"record\",outcome=\"taken\"}"
            ) == 1.0,
        "{text}"
    );

    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");
    let rows = actions(store).await?;
    ensure!(rows.len() == 1, "{rows:#?}");
    let r = &rows[0];
    ensure!(
        r.action == "record"
            && r.outcome.as_str() == "taken"
            && r.trigger.as_str() == "alert"
            && r.trigger_id.starts_with("fp-1@")
            && r.target.pod.as_deref() == Some("orders-1"),
        "{r:#?}"
    );
    Ok(())
}

pub(crate) struct Daemon {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(url: &str) -> bool {
    Command::new("curl")
        .args(["-sf", url])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shipped rules with their windows shortened for a test that lasts seconds: the same
/// expressions' shape, `for: 0s`, evaluated every second.
fn test_rules(dir: &Path) -> Result<PathBuf> {
    let cr = crate::rules::shipped_prometheus_rule()?;
    let mut spec = cr["spec"].clone();
    for g in spec["groups"].as_array_mut().context("spec.groups")? {
        g["interval"] = json!("1s");
        for r in g["rules"].as_array_mut().context("rules")? {
            r["for"] = json!("0s");
            let expr = r["expr"].as_str().context("expr")?;
            let expr = expr
                .replace("[2h] offset 15m", "[30s] offset 5s")
                .replace("[1h]", "[10s]");
            r["expr"] = json!(expr);
        }
    }
    let out = dir.join("rules.yaml");
    write(&out, serde_json::to_vec_pretty(&spec)?);
    Ok(out)
}

fn start_prometheus(target: &str, labels: &Value, rules: &Path, alertmanager: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("prometheus.yml");
    let config = json!({
        "global": { "scrape_interval": "1s", "evaluation_interval": "1s" },
        "rule_files": [rules],
        "alerting": { "alertmanagers": [{ "static_configs": [{ "targets": [alertmanager] }] }] },
        "scrape_configs": [{
            "job_name": "leaky",
            "static_configs": [{ "targets": [target], "labels": labels }],
        }],
    });
    write(&cfg, serde_json::to_vec_pretty(&config).expect("json"));
    let port = free_port();
    let bin = std::env::var("LEAKHOUND_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
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
        .unwrap_or_else(|e| {
            panic!("start {bin}: {e} (apt-get install prometheus; tests/run does)")
        });
    let d = Daemon {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_until("prometheus ready", Duration::from_secs(60), || {
        ready(&format!("{}/-/ready", d.url))
    });
    d
}

/// The shipped Alertmanager configuration, pointed at the receiver under test, with the
/// token file of the test and timings in seconds.
pub(crate) fn start_alertmanager(port: u16, webhook: &str, token_file: &Path) -> Result<Daemon> {
    let dir = tempfile::tempdir()?;
    let path = repo().join("deploy/alertmanager/alertmanager-route.yaml");
    let mut cfg: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let route = cfg["route"]["routes"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["receiver"] == "leakhound"))
        .context("no route to the leakhound receiver")?;
    route["group_wait"] = json!("0s");
    route["group_interval"] = json!("1s");
    route["repeat_interval"] = json!("2s");
    let receiver = cfg["receivers"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["name"] == "leakhound"))
        .context("no leakhound receiver")?;
    let hook = &mut receiver["webhook_configs"][0];
    hook["url"] = json!(webhook);
    hook["http_config"]["authorization"]["credentials_file"] = json!(token_file);
    let file = dir.path().join("alertmanager.yml");
    write(&file, serde_json::to_vec_pretty(&cfg)?);
    let check = Command::new("amtool")
        .args(["check-config"])
        .arg(&file)
        .output()
        .context("run amtool (apt-get install prometheus-alertmanager; tests/run does)")?;
    ensure!(
        check.status.success(),
        "amtool check-config: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let bin = std::env::var("LEAKHOUND_ALERTMANAGER")
        .unwrap_or_else(|_| "prometheus-alertmanager".into());
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {bin} (apt-get install prometheus-alertmanager)"))?;
    let d = Daemon {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_until("alertmanager ready", Duration::from_secs(60), || {
        ready(&format!("{}/-/ready", d.url))
    });
    Ok(d)
}

#[tokio::test]
async fn alertmanager_and_prometheus_drive_serve_to_capture_and_evict() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("serve");
    create_namespace(&client, &ns).await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let r = am_scenario(&client, &ns).await;
    unbind(&client, &role).await;
    if r.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    r
}

async fn am_scenario(client: &kube::Client, ns: &str) -> Result<()> {
    // A Deployment of 2 whose pods say where their pprof server is; the real leaking program
    // plays the first pod's server, at the pod's (loopback) IP.
    let port = free_port();
    let mut d: Deployment = deployment("orders", 2, &Default::default())?;
    let ann = d
        .spec
        .template
        .metadata
        .as_mut()
        .context("template metadata")?
        .annotations
        .get_or_insert_with(Default::default);
    ann.insert("leakhound.io/scrape".into(), "true".into());
    ann.insert("leakhound.io/port".into(), port.to_string());
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let names = wait_ready_pods(&pods, "app=orders", 2).await?;
    let pod = names[0].clone();
    let ip = pods
        .get(&pod)
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .context("pod without IP")?;
    ensure!(
        ip.starts_with("127."),
        "pod {pod} has IP {ip}, not on loopback"
    );
    let leaky = Leaky::start(&["-addr", &format!("{ip}:{port}"), "-leak", "chansend:20/s"]);

    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    write(&token, "am-token\n");
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let kc = kubeconfigs()?
        .restricted
        .to_str()
        .context("utf-8")?
        .to_string();
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--bearer-token-file",
        token.to_str().context("utf-8")?,
        "--kubeconfig",
        &kc,
        "--apply",
    ]);
    let am_port = free_port();
    let _am = start_alertmanager(am_port, &format!("{}/alertmanager", serve.url), &token)?;
    let rules = test_rules(dir.path())?;
    let _prom = start_prometheus(
        leaky.url.trim_start_matches("http://"),
        &json!({ "namespace": ns, "pod": pod }),
        &rules,
        &format!("127.0.0.1:{am_port}"),
    );

    // The growth alert (L3) reaches the receiver: capture, then evict.
    let evicted = poll(
        "the L3 alert's eviction",
        Duration::from_secs(120),
        async || {
            let rows = actions(store).await?;
            let ev: Vec<_> = rows
                .iter()
                .filter(|r| r.action == "evict" && r.target.pod.as_deref() == Some(pod.as_str()))
                .cloned()
                .collect();
            Ok(if ev.is_empty() {
                Err(format!(
                    "{} rows: {:?}",
                    rows.len(),
                    rows.iter()
                        .map(|r| (&r.action, r.outcome))
                        .collect::<Vec<_>>()
                ))
            } else {
                Ok((rows, ev))
            })
        },
    )
    .await?;
    let (rows, ev) = evicted;
    ensure!(
        ev.len() == 1 && ev[0].outcome.as_str() == "taken" && ev[0].trigger.as_str() == "alert",
        "{ev:#?}"
    );
    ensure!(ev[0].level.map(|l| l.as_str()) == Some("L3"), "{ev:#?}");
    let capture: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "capture" && r.trigger_id == ev[0].trigger_id)
        .collect();
    ensure!(
        capture.len() == 1 && capture[0].outcome.as_str() == "taken",
        "{capture:#?}"
    );
    // The dump is in the store: raw, and as rows the usual SQL sees.
    let raw_dir = Path::new(store).join("captures").join(ns).join(&pod);
    let raw: Vec<_> = std::fs::read_dir(&raw_dir)
        .with_context(|| format!("{}", raw_dir.display()))?
        .collect::<std::result::Result<_, _>>()?;
    ensure!(raw.len() == 1, "{raw:?}");
    let text = std::fs::read_to_string(raw[0].path())?;
    ensure!(
        text.contains("main.leakChanSend"),
        "not a leaky debug=2 dump"
    );
    let n = crate::support::sql_i64(
        store,
        &format!(
            "SELECT COUNT(*) AS n FROM goroutine_counts WHERE source = 'capture' AND pod = '{pod}' AND goroutines > 20"
        ),
    );
    ensure!(n == 1, "capture rows: {n}");
    // The pod is going (KWOK finalises it).
    poll(
        "the evicted pod to go",
        Duration::from_secs(30),
        async || {
            let list = pods
                .list(&ListParams::default().labels("app=orders"))
                .await?;
            let still = list.items.iter().any(|p| {
                p.metadata.name.as_deref() == Some(pod.as_str())
                    && p.metadata.deletion_timestamp.is_none()
            });
            Ok(if still {
                Err("still there".to_string())
            } else {
                Ok(())
            })
        },
    )
    .await?;

    // Alertmanager delivers the still-firing alert again (repeat_interval): de-duplicated.
    let http = reqwest::Client::new();
    let metrics_url = format!("{}/metrics", serve.url);
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        text = http.get(&metrics_url).send().await?.text().await?;
        if metric(
            &text,
            "leakhound_webhook_alerts_total{result=\"duplicate\"}",
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if metric(
        &text,
        "leakhound_webhook_alerts_total{result=\"duplicate\"}",
    ) < 1.0
    {
        bail!("no duplicate delivery seen within 60 s:\n{text}");
    }
    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");
    let rows = actions(store).await?;
    let ev: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "evict" && r.target.pod.as_deref() == Some(pod.as_str()))
        .collect();
    ensure!(
        ev.len() == 1,
        "the eviction was decided more than once: {ev:#?}"
    );
    let caps = rows
        .iter()
        .filter(|r| r.action == "capture" && r.outcome.as_str() == "taken")
        .count();
    ensure!(caps == 1, "captured {caps} times");
    Ok(())
}

/// TLS (a self-signed certificate made by openssl for 127.0.0.1) with basic auth from a file:
/// the right user and password over HTTPS are accepted, anything else is 401 with a Basic
/// challenge, and plain HTTP to the TLS port gets no answer.
#[tokio::test]
async fn serve_over_tls_with_basic_auth() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A CA and a server certificate it signs (webpki refuses a self-signed leaf).
    let d = dir.path();
    let (ca_cert, cert, key) = (d.join("ca.pem"), d.join("cert.pem"), d.join("key.pem"));
    let ext = d.join("ext.cnf");
    write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=leakhound-test-ca", "-keyout"],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain([
            d.join("ca.key").display().to_string(),
            "-out".into(),
            ca_cert.display().to_string(),
        ])
        .collect(),
        [&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout"]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain([
                key.display().to_string(),
                "-out".into(),
                d.join("req.csr").display().to_string(),
            ])
            .collect(),
        ["x509", "-req", "-days", "1", "-set_serial", "2", "-in"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                d.join("req.csr").display().to_string(),
                "-CA".into(),
                ca_cert.display().to_string(),
                "-CAkey".into(),
                d.join("ca.key").display().to_string(),
                "-extfile".into(),
                ext.display().to_string(),
                "-out".into(),
                cert.display().to_string(),
            ])
            .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .context("run openssl (apt-get install openssl; tests/run does)")?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pw = dir.path().join("password");
    write(&pw, "hunter2\n");
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--basic-auth-user",
        "alertmanager",
        "--basic-auth-password-file",
        pw.to_str().context("utf-8")?,
        "--tls-cert-file",
        cert.to_str().context("utf-8")?,
        "--tls-key-file",
        key.to_str().context("utf-8")?,
    ]);
    ensure!(serve.url.starts_with("https://127.0.0.1:"), "{}", serve.url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_cert)?)?;
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    let hook = format!("{}/alertmanager", serve.url);
    let body = payload(
        "{}:{}",
        vec![alert(
            "fp-tls",
            "firing",
            json!({ "alertname": "GoroutineLeakGrowth", "namespace": "shop", "pod": "orders-9", "leakhound_level": "L1" }),
        )],
    )
    .to_string();
    let r = https
        .post(&hook)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 401, "no credentials: {}", r.status());
    ensure!(
        r.headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Basic")),
        "{:?}",
        r.headers()
    );
    let r = https
        .post(&hook)
        .header("content-type", "application/json")
        .basic_auth("alertmanager", Some("hunter3"))
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 401, "wrong password: {}", r.status());
    let r = https
        .post(&hook)
        .header("content-type", "application/json")
        .basic_auth("alertmanager", Some("hunter2"))
        .body(body.clone())
        .send()
        .await?;
    ensure!(r.status() == 200, "good: {}", r.status());
    let plain = reqwest::Client::new()
        .post(hook.replacen("https://", "http://", 1))
        .basic_auth("alertmanager", Some("hunter2"))
        .body(body)
        .send()
        .await;
    ensure!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "plain HTTP was served: {plain:?}"
    );
    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");
    let rows = actions(store).await?;
    ensure!(
        rows.len() == 1 && rows[0].trigger_id.starts_with("fp-tls@"),
        "{rows:#?}"
    );
    Ok(())
}

/// Through the receiver, a PDB's "not now" is retried on the next delivery: the first L3 alert
/// evicts its pod; the second pod's eviction is refused (429) and recorded as deferred, and the
/// receiver forgets that delivery so Alertmanager's repeat tries again (deferred again while the
/// replacement cannot run); once it is Ready, the repeat evicts. After that the same delivery is
/// a duplicate: nothing more is sent or written.
#[tokio::test]
async fn serve_retries_a_deferred_eviction_on_redelivery() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("serve-pdb");
    create_namespace(&client, &ns).await?;
    let role = bind_shipped_role(&client, &ns).await?;
    let node_key = format!("leakhound.dev/{ns}");
    crate::k8s::label_fake_nodes(&client, &node_key, Some("true")).await?;
    let r = redelivery_scenario(&client, &ns, &node_key).await;
    let _ = crate::k8s::label_fake_nodes(&client, &node_key, None).await;
    unbind(&client, &role).await;
    if r.is_ok() {
        delete_namespace(&client, &ns).await;
    }
    r
}

async fn redelivery_scenario(client: &kube::Client, ns: &str, node_key: &str) -> Result<()> {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let selector = std::collections::BTreeMap::from([(node_key.to_owned(), "true".to_owned())]);
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment("web", 3, &selector)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ready = wait_ready_pods(&pods, "app=web", 3).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": "web" } } }
    }))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    crate::k8s::wait_pdb(&pdbs, "web", 3, 1).await?;
    crate::k8s::label_fake_nodes(client, node_key, None).await?;

    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    write(&token, "t0ken\n");
    let policy = dir.path().join("policy.yaml");
    write(&policy, "levels: { l3: [evict] }\n");
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    let kc = kubeconfigs()?
        .restricted
        .to_str()
        .context("utf-8")?
        .to_string();
    let serve = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--bearer-token-file",
        token.to_str().context("utf-8")?,
        "--kubeconfig",
        &kc,
        "--policy",
        policy.to_str().context("utf-8")?,
        "--apply",
    ]);
    let http = reqwest::Client::new();
    let hook = format!("{}/alertmanager", serve.url);
    let delivery = |fp: &str, pod: &str| {
        payload(
            "{}:{alertname=\"GoroutineLeakGrowth\"}",
            vec![alert(
                fp,
                "firing",
                json!({ "alertname": "GoroutineLeakGrowth", "namespace": ns, "pod": pod, "severity": "critical" }),
            )],
        )
        .to_string()
    };
    let post = async |body: String| -> Result<Value> {
        let r = http
            .post(&hook)
            .header("content-type", "application/json")
            .bearer_auth("t0ken")
            .body(body)
            .send()
            .await?;
        ensure!(r.status() == 200, "{}", r.status());
        Ok(serde_json::from_str(&r.text().await?)?)
    };
    // Waits until the pod's eviction rows reach `n`; returns their outcomes.
    let evictions = async |pod: &str, n: usize| -> Result<Vec<String>> {
        poll(
            &format!("{n} eviction rows for {pod}"),
            Duration::from_secs(30),
            async || {
                let rows = actions(store).await?;
                let out: Vec<String> = rows
                    .iter()
                    .filter(|r| r.action == "evict" && r.target.pod.as_deref() == Some(pod))
                    .map(|r| r.outcome.as_str().to_string())
                    .collect();
                Ok(if out.len() >= n {
                    Ok(out)
                } else {
                    Err(format!("{out:?}"))
                })
            },
        )
        .await
    };
    let (a, b) = (ready[0].as_str(), ready[1].as_str());
    post(delivery("fp-a", a)).await?;
    ensure!(evictions(a, 1).await? == ["taken"]);
    let v = post(delivery("fp-b", b)).await?;
    ensure!(v["accepted"] == 1, "{v}");
    ensure!(evictions(b, 1).await? == ["deferred"]);
    // Alertmanager's repeat of the same delivery: accepted again (not a duplicate), deferred again.
    let v = post(delivery("fp-b", b)).await?;
    ensure!(v["accepted"] == 1 && v["duplicates"] == 0, "{v}");
    ensure!(evictions(b, 2).await? == ["deferred", "deferred"]);
    // A's delivery repeated is a duplicate: it was done.
    let v = post(delivery("fp-a", a)).await?;
    ensure!(v["duplicates"] == 1, "{v}");

    crate::k8s::label_fake_nodes(client, node_key, Some("true")).await?;
    wait_ready_pods(&pods, "app=web", 3).await?;
    crate::k8s::wait_pdb(&pdbs, "web", 3, 1).await?;
    post(delivery("fp-b", b)).await?;
    ensure!(evictions(b, 3).await? == ["deferred", "deferred", "taken"]);
    let v = post(delivery("fp-b", b)).await?;
    ensure!(v["duplicates"] == 1, "done, so a duplicate now: {v}");
    let status = serve.stop();
    ensure!(status.success(), "serve exited with {status}");
    let rows = actions(store).await?;
    ensure!(rows.len() == 4, "{rows:#?}");
    Ok(())
}
