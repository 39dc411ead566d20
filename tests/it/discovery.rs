//! `leakhound ingest --discover` against the real control plane: the cluster's fake kubelets
//! (KWOK) give pods IPs in 127.1.0.0/16, and the test plays each annotated pod's server by
//! starting the real leaking Go program on that pod IP and the annotated port.
//!
//! ```text
//!  leakhound ingest --discover ──list pods──▶ kube-apiserver (annotations, IPs, owners, node)
//!           │
//!           └──scrape http://<pod IP>:<port>──▶ leaky (one per annotated pod, on 127.1.x.y)
//! ```

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use leakhound_schemas::events::Level;

use crate::goprog::Leaky;
use crate::k8s::{
    admin_client, create_namespace, delete_namespace, deployment, kubeconfigs, skip, unique_name,
    wait_ready_pods,
};
use crate::support::*;

fn annotate(d: &mut Deployment, ann: &[(&str, String)]) {
    let t = d
        .spec
        .template
        .metadata
        .as_mut()
        .expect("template metadata");
    let a = t.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in ann {
        a.insert((*k).to_string(), v.clone());
    }
}

async fn pod_ips(pods: &Api<Pod>, selector: &str) -> Result<BTreeMap<String, String>> {
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    let mut out = BTreeMap::new();
    for p in list.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ip = p
            .status
            .and_then(|s| s.pod_ip)
            .with_context(|| format!("pod {name} has no IP"))?;
        out.insert(name, ip);
    }
    Ok(out)
}

#[tokio::test]
async fn discovery_scrapes_exactly_the_annotated_pods_with_their_workload() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let (ns, other_ns) = (unique_name("disc"), unique_name("disc-other"));
    create_namespace(&client, &ns).await?;
    create_namespace(&client, &other_ns).await?;
    let r = scenario(&client, &ns, &other_ns).await;
    delete_namespace(&client, &ns).await;
    delete_namespace(&client, &other_ns).await;
    r
}

async fn scenario(client: &kube::Client, ns: &str, other_ns: &str) -> Result<()> {
    // The port every annotated pod serves on (free on 127.0.0.1, so almost surely on 127.1.x.y).
    let port = free_port();
    let scrape = [
        ("leakhound.io/scrape", "true".to_string()),
        ("leakhound.io/port", port.to_string()),
    ];
    let none = BTreeMap::new();
    // Annotated: a Deployment of 2 (owner chain Pod → ReplicaSet → Deployment).
    let mut checkout = deployment("checkout", 2, &none)?;
    annotate(&mut checkout, &scrape);
    // Not annotated, and annotated "false": never scraped.
    let plain = deployment("plain", 1, &none)?;
    let mut off = deployment("off", 1, &none)?;
    annotate(
        &mut off,
        &[
            ("leakhound.io/scrape", "false".to_string()),
            ("leakhound.io/port", port.to_string()),
        ],
    );
    // Annotated, but nothing answers at its address: a pod down, as a fleet always has some.
    // The pass still exits 0 (the row in scrape_status says it was down).
    let mut down = deployment("down", 1, &none)?;
    annotate(&mut down, &scrape);
    // Annotated, but in a namespace the run does not look at.
    let mut elsewhere = deployment("elsewhere", 1, &none)?;
    annotate(&mut elsewhere, &scrape);

    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for d in [&checkout, &plain, &off, &down] {
        deps.create(&PostParams::default(), d).await?;
    }
    Api::<Deployment>::namespaced(client.clone(), other_ns)
        .create(&PostParams::default(), &elsewhere)
        .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let names = wait_ready_pods(&pods, "app=checkout", 2).await?;
    wait_ready_pods(&pods, "app=plain", 1).await?;
    wait_ready_pods(&pods, "app=off", 1).await?;
    let down_pod = wait_ready_pods(&pods, "app=down", 1).await?;
    let other_pods: Api<Pod> = Api::namespaced(client.clone(), other_ns);
    wait_ready_pods(&other_pods, "app=elsewhere", 1).await?;

    // Serve every pod that has the port annotation (even those that must not be scraped: if
    // discovery took them, the store would show it), each with a leak of its own size.
    let mut servers = Vec::new();
    let mut leaked = BTreeMap::new();
    let mut all_ips = pod_ips(&pods, "app in (checkout,off)").await?;
    all_ips.extend(pod_ips(&other_pods, "app=elsewhere").await?);
    for (i, (pod, ip)) in all_ips.iter().enumerate() {
        ensure!(
            ip.starts_with("127."),
            "pod {pod} has IP {ip}, not on loopback (the control plane's pod CIDR)"
        );
        let n = 3 + i;
        let leaky = Leaky::start(&[
            "-addr",
            &format!("{ip}:{port}"),
            "-leak",
            &format!("chansend:{n}"),
        ]);
        leaky.wait_steady();
        leaked.insert(pod.clone(), n as i64);
        servers.push(leaky);
    }

    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("store path")?;
    let kubeconfig = kubeconfigs()?.admin.to_str().context("path")?.to_string();
    let out = ok(&[
        "ingest",
        "--store",
        store,
        "--discover",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        ns,
        "--cluster",
        "test",
        "--debug2-every",
        "1",
    ]);

    // Exactly the two annotated checkout pods, with their workload, node and start time.
    let rows = sql_json(
        store,
        "SELECT cluster, namespace, pod, workload_kind, workload, node, instance, \
         CAST(pod_start_time AS VARCHAR) AS started, container_restarts FROM goroutine_counts \
         WHERE format = 'metrics' ORDER BY pod",
    );
    let got: Vec<String> = rows
        .iter()
        .map(|r| r["pod"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(got == names, "scraped {got:?}, annotated {names:?}\n{out}");
    for r in &rows {
        let pod = r["pod"].as_str().unwrap_or_default();
        ensure!(r["cluster"] == "test" && r["namespace"] == ns, "{r:?}");
        ensure!(
            r["workload_kind"] == "Deployment" && r["workload"] == "checkout",
            "workload of {pod}: {r:?}"
        );
        ensure!(
            r["node"]
                .as_str()
                .is_some_and(|n| n.starts_with("kwok-node-")),
            "node of {pod}: {r:?}"
        );
        ensure!(r["started"].is_string(), "pod start time of {pod}: {r:?}");
        ensure!(r["container_restarts"] == 0, "restarts of {pod}: {r:?}");
        let ip = &all_ips[pod];
        ensure!(
            r["instance"]
                .as_str()
                .is_some_and(|i| i.contains(ip.as_str())),
            "instance of {pod} is not its pod IP {ip}: {r:?}"
        );
    }
    // Each pod's own leak, from its own server: the stack counts tell the pods apart.
    for pod in &names {
        let n = sql_i64(
            store,
            &format!(
                "SELECT SUM(g.goroutines) FROM goroutine_samples g \
                 JOIN (SELECT DISTINCT stack_id, top_function FROM stacks) s ON g.stack_id = s.stack_id \
                 WHERE g.pod = '{pod}' AND s.top_function = 'main.leakChanSend' AND g.format = 'debug2'"
            ),
        );
        ensure!(
            n == leaked[pod],
            "{pod}: {n} chansend leaks stored, {} leaked",
            leaked[pod]
        );
    }
    let up = sql_json(
        store,
        "SELECT pod, up, debug2_taken FROM scrape_status ORDER BY pod",
    );
    ensure!(up.len() == 3, "{up:?}");
    for r in &up {
        let is_down = down_pod.iter().any(|p| r["pod"] == p.as_str());
        ensure!(
            r["up"] == !is_down && r["debug2_taken"] == !is_down,
            "{up:?}"
        );
    }
    Ok(())
}

/// Issue 20: a pod annotated `leakhound.io/auth: bearer` (the Go agent behind a token) is
/// scraped with the token of `--agent-token-file` (a mounted Secret in the chart) — its rows
/// land, which the agent allows only with the token — and is skipped, not scraped without it,
/// when ingest has none; an auth annotation of another kind is refused. `actuate`'s capture of
/// that pod before an eviction (L3) likewise: without `--agent-token-file` it fails and says
/// why, with it the debug=2 dump lands (rows with source `capture`).
#[tokio::test]
async fn discovery_sends_the_agent_token_only_to_pods_that_ask_for_it() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("disc-auth");
    create_namespace(&client, &ns).await?;
    let r = auth_scenario(&client, &ns).await;
    delete_namespace(&client, &ns).await;
    r
}

async fn auth_scenario(client: &kube::Client, ns: &str) -> Result<()> {
    let port = free_port();
    let none = BTreeMap::new();
    let mut agent = deployment("agent", 1, &none)?;
    annotate(
        &mut agent,
        &[
            ("leakhound.io/scrape", "true".to_string()),
            ("leakhound.io/port", port.to_string()),
            ("leakhound.io/auth", "bearer".to_string()),
        ],
    );
    let mut odd = deployment("odd", 1, &none)?;
    annotate(
        &mut odd,
        &[
            ("leakhound.io/scrape", "true".to_string()),
            ("leakhound.io/port", port.to_string()),
            ("leakhound.io/auth", "basic".to_string()),
        ],
    );
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deps.create(&PostParams::default(), &agent).await?;
    deps.create(&PostParams::default(), &odd).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let agent_pod = wait_ready_pods(&pods, "app=agent", 1).await?;
    wait_ready_pods(&pods, "app=odd", 1).await?;
    let ips = pod_ips(&pods, "app=agent").await?;
    let ip = &ips[&agent_pod[0]];

    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-agent-token\n")?;
    let token_s = token.to_str().context("path")?;
    let _server = crate::agent::AgentLeaky::start(&[
        "-addr",
        &format!("{ip}:{port}"),
        "-token-file",
        token_s,
        "-leak",
        "5",
    ]);
    let store = dir.path().join("store");
    let store = store.to_str().context("store path")?;
    let kubeconfig = kubeconfigs()?.admin.to_str().context("path")?.to_string();
    let ingest = |extra: &[&str]| {
        let mut args = vec![
            "ingest",
            "--store",
            store,
            "--discover",
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            ns,
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    ingest(&["--agent-token-file", token_s]);
    let status = sql_json(
        store,
        "SELECT pod, up, error FROM scrape_status ORDER BY pod",
    );
    ensure!(
        status.len() == 1 && status[0]["pod"] == agent_pod[0].as_str() && status[0]["up"] == true,
        "with the token only the agent pod, up: {status:?}"
    );
    ensure!(
        sql_i64(
            store,
            &format!(
                "SELECT COUNT(*) FROM goroutine_counts WHERE pod = '{}'",
                agent_pod[0]
            )
        ) >= 1
    );
    // Without a token file: the agent pod is skipped (no new scrape_status row), not scraped.
    ingest(&[]);
    ensure!(
        sql_i64(store, "SELECT COUNT(*) FROM scrape_status") == 1,
        "scraped without its token: {:?}",
        sql_json(store, "SELECT pod, up, error FROM scrape_status")
    );
    // The flag is for --discover, and its file must hold a token.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "")?;
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--discover",
        "--kubeconfig",
        &kubeconfig,
        "--agent-token-file",
        empty.to_str().context("path")?,
    ]);
    ensure!(out.status.code() == Some(1), "an empty token file: {out:?}");
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--target",
        "http://127.0.0.1:1",
        "--agent-token-file",
        token_s,
    ]);
    ensure!(out.status.code() == Some(2), "without --discover: {out:?}");

    // actuate's capture (L3: capture only), without and then with the agent's token.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "levels: { l3: [capture] }\n")?;
    let policy_s = policy.to_str().context("path")?;
    let captures = |rows: Vec<leakhound_actuate::model::ActionRecord>, id: &str| {
        rows.into_iter()
            .filter(|r| r.trigger_id == id && r.action == "capture")
            .map(|r| (r.outcome.as_str().to_string(), r.reason))
            .collect::<Vec<_>>()
    };
    let actuate = |extra: &[&str]| {
        let mut args = vec![
            "actuate",
            "--store",
            store,
            "--kubeconfig",
            &kubeconfig,
            "--policy",
            policy_s,
        ];
        args.extend_from_slice(extra);
        // A failed capture makes the run exit 1; the actions table says why.
        let _ = run(&args);
    };
    let event = |id: &str| crate::actuate::event(id, ns, "agent", Some(&agent_pod[0]), Level::L3);
    crate::actuate::write_events(store, &[event("cap-without")]).await?;
    actuate(&[]);
    let without = captures(crate::actuate::actions(store).await?, "cap-without");
    ensure!(
        without.len() == 1
            && without[0].0 == "failed"
            && without[0].1.contains("leakhound.io/auth: bearer"),
        "capture without the token: {without:?}"
    );
    let before = sql_i64(
        store,
        "SELECT COUNT(*) FROM goroutine_counts WHERE source = 'capture'",
    );
    ensure!(before == 0, "{before} capture rows without the token");
    crate::actuate::write_events(store, &[event("cap-with")]).await?;
    actuate(&["--agent-token-file", token_s]);
    let with = captures(crate::actuate::actions(store).await?, "cap-with");
    ensure!(
        with.len() == 1 && with[0].0 == "taken",
        "capture with the token: {with:?}"
    );
    ensure!(
        sql_i64(
            store,
            &format!(
                "SELECT COUNT(*) FROM goroutine_counts WHERE source = 'capture' AND pod = '{}'",
                agent_pod[0]
            )
        ) == 1
    );
    Ok(())
}
