//! The Helm chart (`deploy/helm/leakhound`) and the plain manifests generated from it.
//!
//! - `helm lint --strict` and `helm template` with the default values and with every component
//!   on (cluster-wide and namespaced RBAC, ingest as a CronJob and as a Deployment, the Secrets
//!   made by the chart, a policy file); bad values fail with the chart's own message.
//! - `deploy/*.yaml`, `deploy/prometheus-operator/` and `deploy/secrets/` are exactly what
//!   `deploy/generate` renders from the chart now (no drift).
//! - The PrometheusRule and ServiceMonitor render only when the cluster serves their kinds.
//! - On the test control plane (`k8s.rs`): every rendered object passes server-side dry-run with
//!   strict field validation, in the namespaces the chart names (created for the test, labelled
//!   `pod-security.kubernetes.io/enforce: restricted` as the chart's Namespace is), cluster-wide
//!   with the Prometheus Operator's kinds served (minimal structural CRDs from tests/helm/crds
//!   installed for real) and namespaced without them (a Role and RoleBinding per namespace);
//!   every pod template, dry-run created as a Pod, is admitted by Pod Security `restricted`.
//! - The install test: every container's `args:` and environment (secrets, the policy
//!   ConfigMap, the webhook token mounted as files in a temporary folder) run through the real
//!   binary's `--check-config` (src/check.rs), and every `LEAKHOUND_*` variable a container sets
//!   is one its command reads (`--help` lists it), so a renamed flag fails here.
//!
//! Helm: `LEAKHOUND_HELM`, else `tests/helm/build` builds it from the Go module proxy (cached
//! under /var/tmp, rebuilt when the version changes; `tests/run` does it first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::k8s::{
    Doc, Target, admin_client, delete_namespace, dry_run_all_to, parse_documents, skip, unique_name,
};
use crate::support::{bin, repo};

const RELEASE: &str = "leakhound";

fn chart() -> PathBuf {
    repo().join("deploy/helm/leakhound")
}

/// The Helm binary: `LEAKHOUND_HELM`, else the path `tests/helm/build` prints last (once per
/// test binary; the script itself is a no-op when the cached binary is current).
fn helm() -> Result<&'static Path> {
    static CELL: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    CELL.get_or_init(|| locate_helm().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| anyhow!("no helm: {e}"))
}

fn locate_helm() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LEAKHOUND_HELM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        ensure!(p.is_file(), "LEAKHOUND_HELM={} is not a file", p.display());
        return Ok(p);
    }
    let script = repo().join("tests/helm/build");
    eprintln!("LEAKHOUND_HELM is unset: running {}", script.display());
    let out = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8(out.stdout)?;
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("tests/helm/build printed no path")?;
    Ok(PathBuf::from(last.trim()))
}

/// Runs helm; returns stdout, or the error with stderr.
fn run_helm(args: &[&str]) -> Result<String> {
    let out = Command::new(helm()?)
        .args(args)
        .current_dir(repo())
        .output()
        .context("running helm")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "helm {args:?}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// `helm template leakhound deploy/helm/leakhound --namespace NS ARGS...`
fn template(ns: &str, args: &[&str]) -> Result<String> {
    let chart = chart();
    let mut all = vec![
        "template",
        RELEASE,
        chart.to_str().context("chart path")?,
        "--namespace",
        ns,
    ];
    all.extend_from_slice(args);
    run_helm(&all)
}

/// Values with every component and option on: the chart makes both Secrets, ingest runs as a
/// Deployment, a policy file, discovery scoped to two namespaces with a selector.
fn all_on_values(
    dir: &Path,
    scope: &str,
    ingest_mode: &str,
    namespaces: &[&str],
) -> Result<PathBuf> {
    let values = json!({
        "namespace": { "create": true },
        "store": { "create": true, "url": "s3://leakhound-test/store", "env": { "AWS_REGION": "eu-west-1" } },
        "discovery": { "namespaces": namespaces, "selector": "tier=backend", "cluster": "test-cluster" },
        "rbac": { "scope": scope },
        // A CronJob's passes sharded over an Indexed Job of 4 pods (issue 19).
        "ingest": { "enabled": true, "mode": ingest_mode, "every": "60s",
                    "agentTokenSecret": "payments-agent-token",
                    "shards": if ingest_mode == "cronjob" { 4 } else { 1 } },
        "analyze": { "enabled": true },
        "actuate": { "enabled": true },
        "serve": { "enabled": true, "webhook": { "create": true, "token": "" } },
        "compact": { "enabled": true, "retain": "31d" },
        // Ballista's scheduler and executors, the analyze CronJob's SQL on them (issue 19).
        "cluster": { "enabled": true, "analyze": true, "executors": 3 },
        "networkPolicy": { "enabled": true },
        "prometheus": { "rules": { "enabled": true }, "serviceMonitor": { "enabled": true } },
        "policy": {
            "apply": false,
            "file": {
                "levels": { "l1": ["record"], "l2": ["hpa"], "l3": ["capture", "evict"] },
                "hpa": { "goroutines_per_pod": "400", "min_replicas": 2, "max_replicas": 8 },
            },
        },
    });
    let path = dir.join(format!("values-{scope}-{ingest_mode}.json"));
    // JSON is YAML: helm reads it as a values file.
    std::fs::write(&path, serde_json::to_vec_pretty(&values)?)?;
    Ok(path)
}

const OPERATOR_APIS: [&str; 4] = [
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
];

fn docs_of(text: &str, origin: &str) -> Result<Vec<Doc>> {
    parse_documents(text, origin)
}

fn kinds(docs: &[Doc]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in docs {
        if let Some(k) = d.value["kind"].as_str() {
            *m.entry(k.to_owned()).or_default() += 1;
        }
    }
    m
}

fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .map(|d| &d.value)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// Without a cluster
// ---------------------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_with_default_values_and_every_component_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let chart = chart();
    let chart = chart.to_str().context("chart path")?;
    let out = run_helm(&["lint", "--strict", chart])?;
    ensure!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    for (scope, mode) in [("cluster", "deployment"), ("namespaced", "cronjob")] {
        let values = all_on_values(dir.path(), scope, mode, &["shop", "payments"])?;
        let values = values.to_str().context("values path")?;
        let out = run_helm(&["lint", "--strict", chart, "-f", values])?;
        ensure!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{scope}/{mode}: {out}"
        );
    }
    // Values the chart refuses, each with its own message.
    for (set, message) in [
        ("rbac.scope=namespaced", "needs discovery.namespaces"),
        (
            "rbac.scope=everywhere",
            "rbac.scope must be cluster or namespaced",
        ),
        (
            "ingest.mode=daemonset",
            "ingest.mode must be cronjob or deployment",
        ),
        ("store.create=true", "store.create=true needs store.url"),
        (
            "store.existingSecret=",
            "store.existingSecret: name the Secret",
        ),
    ] {
        let err = template("leakhound", &["--set", set])
            .err()
            .with_context(|| format!("--set {set} rendered"))?;
        ensure!(
            format!("{err:#}").contains(message),
            "--set {set}: want {message:?}, got {err:#}"
        );
    }
    Ok(())
}

/// deploy/ holds exactly what `deploy/generate` renders from the chart now.
#[test]
fn helm_plain_manifests_are_the_chart_rendered() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(repo().join("deploy/generate"))
        .arg("--out")
        .arg(dir.path())
        .env("HELM", helm()?)
        .output()
        .context("running deploy/generate")?;
    ensure!(
        out.status.success(),
        "deploy/generate: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = files_under(dir.path())?;
    ensure!(generated.len() == 3, "deploy/generate wrote {generated:?}");
    for rel in &generated {
        let want = std::fs::read_to_string(dir.path().join(rel))?;
        let have = std::fs::read_to_string(repo().join("deploy").join(rel))
            .with_context(|| format!("deploy/{rel} is missing: run deploy/generate"))?;
        if want != have {
            let line = want
                .lines()
                .zip(have.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| want.lines().count().min(have.lines().count()))
                + 1;
            bail!(
                "deploy/{rel} differs from the chart's rendering from line {line}: run deploy/generate"
            );
        }
    }
    // No other manifest beside them: `kubectl apply -f deploy/` reads every top-level YAML file,
    // and the generated folders hold nothing hand-written.
    let top: Vec<String> = std::fs::read_dir(repo().join("deploy"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
        .collect();
    ensure!(
        top == ["leakhound.yaml"],
        "deploy/ top-level manifests: {top:?}"
    );
    for sub in ["prometheus-operator", "secrets"] {
        let have: Vec<String> = files_under(&repo().join("deploy").join(sub))?
            .into_iter()
            .map(|f| format!("{sub}/{f}"))
            .collect();
        let want: Vec<String> = generated
            .iter()
            .filter(|f| f.starts_with(&format!("{sub}/")))
            .cloned()
            .collect();
        ensure!(have == want, "deploy/{sub}: {have:?}, generated {want:?}");
    }
    Ok(())
}

/// Relative paths of the files under `dir`, sorted.
fn files_under(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir)?.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn helm_operator_objects_render_only_where_their_kinds_are_served() -> Result<()> {
    let without = docs_of(&template("leakhound", &[])?, "default")?;
    let k = kinds(&without);
    ensure!(
        !k.contains_key("PrometheusRule") && !k.contains_key("ServiceMonitor"),
        "rendered without the Operator's APIs: {k:?}"
    );
    let with = docs_of(&template("leakhound", &OPERATOR_APIS)?, "operator")?;
    let k = kinds(&with);
    ensure!(
        k.get("PrometheusRule") == Some(&1) && k.get("ServiceMonitor") == Some(&1),
        "{k:?}"
    );
    let rules_only = docs_of(&template("leakhound", &OPERATOR_APIS[..2])?, "rules only")?;
    let k = kinds(&rules_only);
    ensure!(
        k.get("PrometheusRule") == Some(&1) && !k.contains_key("ServiceMonitor"),
        "{k:?}"
    );
    // Off by value, even where served.
    let off = docs_of(
        &template(
            "leakhound",
            &[
                &OPERATOR_APIS[..],
                &[
                    "--set",
                    "prometheus.rules.enabled=false",
                    "--set",
                    "serve.enabled=false",
                ],
            ]
            .concat(),
        )?,
        "off",
    )?;
    let k = kinds(&off);
    ensure!(
        !k.contains_key("PrometheusRule") && !k.contains_key("ServiceMonitor"),
        "{k:?}"
    );
    Ok(())
}

/// The defaults keep a month and act on nothing: dry-run on, compaction hourly.
#[test]
fn helm_defaults_are_dry_run_and_keep_a_month() -> Result<()> {
    let docs = docs_of(&template("leakhound", &[])?, "default")?;
    let mut policy_containers = 0;
    for d in &docs {
        for (_, c) in containers(&d.value) {
            for e in c["env"].as_array().into_iter().flatten() {
                if e["name"] == "LEAKHOUND_APPLY" {
                    ensure!(e["value"] == "false", "{}: {e}", d.origin);
                    policy_containers += 1;
                }
            }
        }
    }
    ensure!(
        policy_containers == 2,
        "actuate and serve carry LEAKHOUND_APPLY: {policy_containers}"
    );
    let compact = find(&docs, "CronJob", "leakhound-compact").context("no compact CronJob")?;
    ensure!(
        compact["spec"]["schedule"] == "17 * * * *",
        "{}",
        compact["spec"]["schedule"]
    );
    let args = &compact["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"];
    ensure!(
        *args == json!(["compact", "--retain", "31d", "--grace", "10m"]),
        "{args}"
    );
    let ns = docs_of(
        &template("leakhound", &["--set", "namespace.create=true"])?,
        "ns",
    )?;
    let ns = find(&ns, "Namespace", "leakhound").context("no Namespace")?;
    ensure!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted",
        "{ns}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The install test: every container's command line through the real binary
// ---------------------------------------------------------------------------------------------

/// The pod spec of a workload, if it is one.
fn pod_spec(v: &Value) -> Option<&Value> {
    match v["kind"].as_str()? {
        "CronJob" => Some(&v["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => Some(&v["spec"]["template"]["spec"]),
        _ => None,
    }
}

/// (pod spec, container) of every container of a workload.
fn containers(v: &Value) -> Vec<(&Value, &Value)> {
    let Some(spec) = pod_spec(v) else {
        return Vec::new();
    };
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (spec, c))
        .collect()
}

/// The string data of a rendered Secret or ConfigMap.
fn string_data(docs: &[Doc], kind: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let v = find(docs, kind, name)?;
    let field = if kind == "Secret" {
        "stringData"
    } else {
        "data"
    };
    Some(
        v[field]
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
    )
}

/// One container as the binary sees it: its args, its environment, and the files its mounts
/// hold, under `root`.
struct Invocation {
    what: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn invocation(
    docs: &[Doc],
    origin: &str,
    pod: &Value,
    c: &Value,
    root: &Path,
) -> Result<Invocation> {
    let name = c["name"].as_str().context("container without a name")?;
    let what = format!("{origin} container {name}");
    let dir = root.join(name);
    let store = dir.join("store");
    std::fs::create_dir_all(&store)?;
    // Mounts: each volume's files written where the container would see them, remapped.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().context("volumeMount without a name")?;
        let path = m["mountPath"]
            .as_str()
            .context("volumeMount without a path")?;
        let vol = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == vname)
            .with_context(|| format!("{what}: no volume {vname}"))?;
        let host = dir.join("mnt").join(vname);
        std::fs::create_dir_all(&host)?;
        let files: BTreeMap<String, String> = if let Some(s) = vol["secret"].as_object() {
            let sname = s["secretName"].as_str().context("secretName")?;
            // A Secret the chart makes has its data here; one that exists beforehand (the
            // defaults) gets a stand-in value for each key it must hold.
            let data = string_data(docs, "Secret", sname);
            let mut out = BTreeMap::new();
            for item in s["items"].as_array().into_iter().flatten() {
                let key = item["key"].as_str().context("item key")?;
                let p = item["path"].as_str().unwrap_or(key);
                let value = match &data {
                    Some(d) => d
                        .get(key)
                        .cloned()
                        .with_context(|| format!("{what}: Secret {sname} has no key {key}"))?,
                    None => format!("stand-in value of an existing Secret {sname}/{key}"),
                };
                out.insert(p.to_owned(), value);
            }
            out
        } else if let Some(cm) = vol["configMap"].as_object() {
            let cname = cm["name"].as_str().context("configMap name")?;
            string_data(docs, "ConfigMap", cname)
                .with_context(|| format!("{what}: the chart does not render ConfigMap {cname}"))?
        } else if vol.get("emptyDir").is_some() {
            BTreeMap::new()
        } else {
            bail!("{what}: volume {vname} of a kind this test does not know: {vol}");
        };
        for (f, content) in files {
            std::fs::write(host.join(&f), content)?;
        }
        mounts.push((path.trim_end_matches('/').to_owned(), host));
    }
    let remap = |s: &str| -> String {
        for (from, to) in &mounts {
            if let Some(rest) = s.strip_prefix(from.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", to.display());
            }
        }
        s.to_owned()
    };
    let args: Vec<String> = c["args"]
        .as_array()
        .with_context(|| format!("{what}: no args"))?
        .iter()
        .map(|a| a.as_str().map(&remap).context("a non-string arg"))
        .collect::<Result<_>>()?;
    ensure!(
        c.get("command").is_none(),
        "{what}: sets command (the image's entrypoint is the binary)"
    );
    let mut env = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let n = e["name"].as_str().context("env without a name")?.to_owned();
        if let Some(v) = e["value"].as_str() {
            env.push((n, remap(v)));
        } else if e["valueFrom"]["secretKeyRef"]["key"] == "url" {
            env.push((n, store.display().to_string()));
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" {
            // What the kubelet puts there.
            env.push((n, "10.244.1.17".into()));
        } else {
            bail!("{what}: env {n} from a source this test does not know: {e}");
        }
    }
    // An Indexed Job's pod: the Job controller sets its index (`--shard job/N` reads it).
    if let Some(n) = args
        .iter()
        .find_map(|a| a.strip_prefix("job/"))
        .and_then(|n| n.parse::<u32>().ok())
    {
        env.push(("JOB_COMPLETION_INDEX".into(), (n - 1).to_string()));
    }
    Ok(Invocation { what, args, env })
}

/// The last rendering's ingest CronJob when it is sharded.
fn ingest_sharded(docs: &[Doc]) -> Result<&Value> {
    find(docs, "CronJob", "leakhound-ingest")
        .filter(|v| v["spec"]["jobTemplate"]["spec"]["completionMode"] == "Indexed")
        .context("no sharded ingest CronJob")
}

/// `leakhound --check-config ARGS` with exactly the container's environment.
fn check_config(inv: &Invocation) -> std::process::Output {
    Command::new(bin())
        .arg("--check-config")
        .args(&inv.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run leakhound")
}

/// The `LEAKHOUND_*` variables a command reads, from its `--help`.
fn env_vars_of(command: &str) -> Result<BTreeSet<String>> {
    let out = Command::new(bin())
        .args(command.split(' '))
        .arg("--help")
        .env_clear()
        .output()?;
    ensure!(
        out.status.success(),
        "leakhound {command} --help: {}",
        out.status
    );
    // clap wraps long lines; one space between words again.
    let text = String::from_utf8(out.stdout)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let vars: BTreeSet<String> = text
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(['=', ']']).next())
        .map(str::to_owned)
        .collect();
    ensure!(
        vars.contains("LEAKHOUND_STORE"),
        "{command} --help names no LEAKHOUND_STORE: {text}"
    );
    Ok(vars)
}

/// Checks every container of `docs`; returns how many.
fn check_all(docs: &[Doc], root: &Path) -> Result<usize> {
    let mut n = 0;
    for d in docs {
        for (pod, c) in containers(&d.value) {
            let inv = invocation(docs, &d.origin, pod, c, root)?;
            let out = check_config(&inv);
            let stdout = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success() && stdout.contains("configuration ok"),
                "{}: leakhound --check-config {:?} with {:?}: {}\n{stdout}{}",
                inv.what,
                inv.args,
                inv.env,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            // `cluster scheduler` and `cluster executor` are two words.
            let command = if inv.args[0] == "cluster" {
                inv.args[..2].join(" ")
            } else {
                inv.args[0].clone()
            };
            let known = env_vars_of(&command)?;
            for (k, _) in &inv.env {
                ensure!(
                    !k.starts_with("LEAKHOUND_") || known.contains(k),
                    "{}: sets {k}, which `leakhound {command}` does not read",
                    inv.what
                );
            }
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn helm_every_container_command_line_passes_the_binarys_check_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The defaults: ingest, analyze, actuate, serve, compact.
    let docs = docs_of(&template("leakhound", &[])?, "default")?;
    let n = check_all(&docs, &dir.path().join("default"))?;
    ensure!(n == 5, "default values: {n} containers checked");
    // Every option on, both ingest modes, both RBAC scopes.
    let mut sharded = Vec::new();
    for (scope, mode) in [("cluster", "deployment"), ("namespaced", "cronjob")] {
        let values = all_on_values(dir.path(), scope, mode, &["shop", "payments"])?;
        let text = template("leakhound", &["-f", values.to_str().context("path")?])?;
        let docs = docs_of(&text, &format!("{scope}/{mode}"))?;
        let n = check_all(&docs, &dir.path().join(format!("{scope}-{mode}")))?;
        // ingest, analyze, actuate, serve, compact, the scheduler and the executors.
        ensure!(n == 7, "{scope}/{mode}: {n} containers checked");
        let analyze = find(&docs, "CronJob", "leakhound-analyze").context("analyze")?;
        let env_of = |name: &str| {
            containers(analyze)[0].1["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        let engine = env_of("LEAKHOUND_ENGINE");
        ensure!(
            engine == Some(json!("ballista://leakhound-scheduler:50050")),
            "{scope}/{mode}: analyze's engine {engine:?}"
        );
        // The scoring's tasks: 4 per slot of 3 executors x 2 slots.
        let partitions = env_of("LEAKHOUND_SCORE_PARTITIONS");
        ensure!(
            partitions == Some(json!("24")),
            "{scope}/{mode}: analyze's scoring partitions {partitions:?}"
        );
        let ingest = find(
            &docs,
            if mode == "cronjob" {
                "CronJob"
            } else {
                "Deployment"
            },
            "leakhound-ingest",
        )
        .context("no ingest workload")?;
        let args = &containers(ingest)[0].1["args"];
        let want = if mode == "cronjob" {
            let job = &ingest["spec"]["jobTemplate"]["spec"];
            ensure!(
                job["completionMode"] == "Indexed"
                    && job["completions"] == 4
                    && job["parallelism"] == 4,
                "{scope}/{mode}: ingest.shards 4 is not an Indexed Job of 4: {job}"
            );
            json!(["ingest", "--discover", "--shard", "job/4"])
        } else {
            json!(["ingest", "--discover", "--every", "60s"])
        };
        ensure!(*args == want, "{scope}/{mode}: ingest args {args}");
        if mode == "cronjob" {
            sharded = docs;
        }
    }

    // A sharded pod outside an Indexed Job (no JOB_COMPLETION_INDEX) is refused.
    let (pod, c) = containers(ingest_sharded(&sharded)?)[0];
    let mut inv = invocation(&sharded, "ingest", pod, c, &dir.path().join("neg0"))?;
    inv.env.retain(|(k, _)| k != "JOB_COMPLETION_INDEX");
    let out = check_config(&inv);
    ensure!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("JOB_COMPLETION_INDEX"),
        "--shard job/4 without an index: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Shards need the CronJob mode; fewer than one is refused.
    for set in ["ingest.mode=deployment,ingest.shards=2", "ingest.shards=0"] {
        ensure!(
            template("leakhound", &["--set", set]).is_err(),
            "--set {set} rendered"
        );
    }

    // The check can fail: a renamed flag, a value the binary refuses, a variable it does not read.
    let d = &docs[..];
    let ingest = find(d, "CronJob", "leakhound-ingest").context("ingest")?;
    let (pod, c) = containers(ingest)[0];
    let mut inv = invocation(d, "ingest", pod, c, &dir.path().join("neg"))?;
    inv.args = vec!["ingest".into(), "--discovery".into()];
    let out = check_config(&inv);
    ensure!(
        out.status.code() == Some(2),
        "a renamed flag: {:?}",
        out.status
    );
    let actuate = find(d, "CronJob", "leakhound-actuate").context("actuate")?;
    let (pod, c) = containers(actuate)[0];
    let mut inv = invocation(d, "actuate", pod, c, &dir.path().join("neg2"))?;
    for (k, v) in &mut inv.env {
        if k == "LEAKHOUND_COOLDOWN" {
            *v = "ten minutes".into();
        }
    }
    let out = check_config(&inv);
    // A value that does not parse is a usage error, as an unknown flag is.
    ensure!(
        out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains("cooldown"),
        "a bad duration: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let known = env_vars_of("actuate")?;
    ensure!(!known.contains("LEAKHOUND_COOL_DOWN") && known.contains("LEAKHOUND_COOLDOWN"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// On the test control plane
// ---------------------------------------------------------------------------------------------

/// Creates the namespaces, labelled as the chart's Namespace object is (so Pod Security
/// `restricted` is enforced in the release namespace).
async fn create_namespaces(client: &Client, release_ns: &str, others: &[&str]) -> Result<()> {
    let api = Api::<Namespace>::all(client.clone());
    for (ns, restricted) in
        std::iter::once((release_ns, true)).chain(others.iter().map(|n| (*n, false)))
    {
        let mut labels = json!({ "leakhound.dev/test": "it" });
        if restricted {
            labels["pod-security.kubernetes.io/enforce"] = json!("restricted");
        }
        let obj: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": ns, "labels": labels } }))?;
        api.create(&PostParams::default(), &obj).await?;
    }
    Ok(())
}

/// Every pod template, dry-run created as a Pod in the release namespace, passes Pod Security
/// `restricted` (the ServiceAccounts the pods name are created for real first); a pod without
/// the chart's security settings is refused, so the check can fail.
async fn pods_pass_pod_security(client: &Client, ns: &str, docs: &[Doc]) -> Result<usize> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    for d in docs.iter().filter(|d| d.value["kind"] == "ServiceAccount") {
        let mut v = d.value.clone();
        v["metadata"]["namespace"] = json!(ns);
        sas.create(&PostParams::default(), &serde_json::from_value(v)?)
            .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut n = 0;
    for d in docs {
        let Some(spec) = pod_spec(&d.value) else {
            continue;
        };
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "generateName": "psa-", "namespace": ns },
            "spec": spec,
        }))?;
        pods.create(&dry, &pod).await.map_err(|e| {
            anyhow!(
                "{}: pod template refused: {}",
                d.origin,
                crate::k8s::describe::<()>(&Err(e))
            )
        })?;
        n += 1;
        if n == 1 {
            let mut bare = spec.clone();
            bare.as_object_mut()
                .context("spec")?
                .remove("securityContext");
            for c in bare["containers"].as_array_mut().into_iter().flatten() {
                c.as_object_mut()
                    .context("container")?
                    .remove("securityContext");
            }
            let pod: Pod = serde_json::from_value(json!({
                "metadata": { "generateName": "psa-", "namespace": ns },
                "spec": bare,
            }))?;
            let r = pods.create(&dry, &pod).await;
            ensure!(
                matches!(&r, Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("PodSecurity")),
                "a pod without securityContext must be refused by Pod Security: {}",
                crate::k8s::describe(&r)
            );
        }
    }
    Ok(n)
}

/// Installs nothing but what the chart renders (dry-run) and the CRDs given.
async fn dry_run_chart(
    client: &Client,
    text: &str,
    origin: &str,
    crds: &[&str],
) -> Result<Vec<Doc>> {
    let mut docs = docs_of(text, origin)?;
    let rendered = docs.len();
    for f in crds {
        let path = repo().join("tests/helm/crds").join(f);
        docs.extend(docs_of(&std::fs::read_to_string(&path)?, f)?);
    }
    let report = dry_run_all_to(client, Target::AsWritten, &docs).await?;
    ensure!(
        report.failures.is_empty(),
        "{origin}: server-side dry-run failed:\n{}",
        report.failures.join("\n")
    );
    ensure!(
        report.applied == rendered,
        "{origin}: {} of {rendered} objects dry-run, skipped {:?}",
        report.applied,
        report.skipped
    );
    docs.truncate(rendered);
    Ok(docs)
}

#[tokio::test]
async fn helm_chart_passes_server_side_dry_run_cluster_wide_with_the_operator_crds() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("helm");
    let (a, b) = (format!("{ns}-a"), format!("{ns}-b"));
    create_namespaces(&client, &ns, &[a.as_str(), b.as_str()]).await?;
    let result = async {
        let dir = tempfile::tempdir()?;
        // The defaults (what deploy/leakhound.yaml holds, in this namespace).
        let text = template(&ns, &["--set", "namespace.create=true"])?;
        let docs = dry_run_chart(&client, &text, "default", &[]).await?;
        let k = kinds(&docs);
        ensure!(
            k.get("ClusterRole") == Some(&2) && !k.contains_key("Role"),
            "default: {k:?}"
        );
        // Everything on, with the Prometheus Operator's kinds served.
        let values = all_on_values(dir.path(), "cluster", "deployment", &[a.as_str(), b.as_str()])?;
        let args = [&["-f", values.to_str().context("path")?][..], &OPERATOR_APIS[..]].concat();
        let text = template(&ns, &args)?;
        let docs = dry_run_chart(
            &client,
            &text,
            "all-on cluster-wide",
            &["prometheusrules.yaml", "servicemonitors.yaml"],
        )
        .await?;
        let k = kinds(&docs);
        ensure!(
            k.get("PrometheusRule") == Some(&1) && k.get("ServiceMonitor") == Some(&1),
            "{k:?}"
        );
        let n = pods_pass_pod_security(&client, &ns, &docs).await?;
        ensure!(n == 7, "{n} pod templates checked");
        eprintln!("helm cluster-wide: {} objects passed strict server-side dry-run; {n} pod templates admitted by Pod Security restricted", docs.len());
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_ok() {
        for n in [&ns, &a, &b] {
            delete_namespace(&client, n).await;
        }
    }
    result
}

#[tokio::test]
async fn helm_chart_passes_server_side_dry_run_namespaced() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let client = admin_client().await?;
    let ns = unique_name("helmns");
    let (a, b) = (format!("{ns}-a"), format!("{ns}-b"));
    create_namespaces(&client, &ns, &[a.as_str(), b.as_str()]).await?;
    let result = async {
        let dir = tempfile::tempdir()?;
        let values = all_on_values(
            dir.path(),
            "namespaced",
            "cronjob",
            &[a.as_str(), b.as_str()],
        )?;
        // The Operator's kinds are not announced: nothing of theirs renders.
        let text = template(&ns, &["-f", values.to_str().context("path")?])?;
        let docs = dry_run_chart(&client, &text, "all-on namespaced", &[]).await?;
        let k = kinds(&docs);
        ensure!(
            !k.contains_key("ClusterRole")
                && !k.contains_key("ClusterRoleBinding")
                && k.get("Role") == Some(&4)
                && k.get("RoleBinding") == Some(&4)
                && !k.contains_key("PrometheusRule"),
            "{k:?}"
        );
        // A Role and a RoleBinding per component in each allowed namespace, bound to the
        // ServiceAccount in the release namespace.
        for d in docs.iter().filter(|d| d.value["kind"] == "RoleBinding") {
            let at = d.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default();
            ensure!(at == a || at == b, "RoleBinding in {at}");
            ensure!(
                d.value["subjects"][0]["namespace"] == ns.as_str(),
                "{}",
                d.value
            );
        }
        let n = pods_pass_pod_security(&client, &ns, &docs).await?;
        ensure!(n == 7, "{n} pod templates checked");
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_ok() {
        for n in [&ns, &a, &b] {
            delete_namespace(&client, n).await;
        }
    }
    result
}

/// `--check-config` validates what a run validates and does no work: a store folder stays empty,
/// nothing listens, no target is scraped; an invalid setting fails with its reason.
#[test]
fn check_config_validates_and_does_no_work() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store_s = store.to_str().context("path")?;
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken")?;
    let token_s = token.to_str().context("path")?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "hpa: { min_replicas: 3, max_replicas: 2 }\n")?;
    let policy_s = policy.to_str().context("path")?;
    let run = |args: &[&str]| {
        Command::new(bin())
            .arg("--check-config")
            .args(args)
            .env_clear()
            .env("LEAKHOUND_STORE", store_s)
            .output()
            .expect("run leakhound")
    };
    // Valid: exit 0, and nothing happened (an unreachable target is not scraped; the port is
    // not bound: a real `serve` on port 1 would fail).
    for args in [
        &[
            "ingest",
            "--target",
            "http://127.0.0.1:1/",
            "--every",
            "60s",
        ][..],
        &["analyze", "--format", "jsonl"],
        &["actuate", "--cooldown", "5m"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--bearer-token-file",
            token_s,
        ],
        &["compact", "--retain", "31d"],
        &["status"],
    ] {
        let out = run(args);
        ensure!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("configuration ok"),
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let left: Vec<_> = std::fs::read_dir(&store)?.collect();
    ensure!(
        left.is_empty(),
        "the store holds {} entries after --check-config",
        left.len()
    );
    // Invalid: each fails with its reason.
    for (args, code, reason) in [
        (&["ingest"][..], 2, "no targets"),
        (&["ingest", "--discover", "--every", "soon"], 2, "--every"),
        (&["compact", "--retain", "a month"], 2, "duration"),
        (&["actuate", "--policy", policy_s], 1, "max_replicas"),
        (
            &["actuate", "--policy", "/nonexistent/policy.yaml"],
            1,
            "policy",
        ),
        (
            &["serve", "--bearer-token-file", "/nonexistent/token"],
            1,
            "token",
        ),
        (&["analyze", "--detectors", "magic"], 2, "magic"),
        (
            &["ingest", "--discover", "--max-body", "1.5e6"],
            2,
            "max-body",
        ),
        (&["analyse"], 2, "unrecognized subcommand"),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(code) && stderr.contains(reason),
            "{args:?}: want exit {code} with {reason:?}, got {:?}: {stderr}",
            out.status
        );
    }
    Ok(())
}
