//! The shipped Prometheus rules (the PrometheusRule of
//! deploy/prometheus-operator/leakhound-monitoring.yaml, rendered from the Helm chart) under
//! `promtool check rules` and `promtool test rules` (tests/promtool/leakhound-rules.test.yaml):
//! the baseline rule fires on the 3rd consecutive 5-minute evaluation above 1.8 x the P95 of the
//! previous 2 hours and not for 1.5 x; the growth rule fires for 1/s sustained and not 0.2/s.
//! Also `amtool check-config` on deploy/alertmanager/alertmanager-route.yaml.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::{repo, write};

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{cmd:?} (promtool ships with the Debian package prometheus)"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{cmd:?} failed:\n{text}");
    Ok(text)
}

/// The one PrometheusRule of deploy/prometheus-operator/leakhound-monitoring.yaml.
pub(crate) fn shipped_prometheus_rule() -> Result<Value> {
    let path = repo().join("deploy/prometheus-operator/leakhound-monitoring.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut rules = docs.into_iter().filter(|d| d["kind"] == "PrometheusRule");
    let cr = rules
        .next()
        .with_context(|| format!("{}: no PrometheusRule", path.display()))?;
    ensure!(
        rules.next().is_none(),
        "{}: more than one PrometheusRule",
        path.display()
    );
    Ok(cr)
}

#[test]
fn shipped_rules_pass_promtool_check_and_unit_tests() -> Result<()> {
    let cr = shipped_prometheus_rule()?;
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("leakhound-rules.yaml");
    write(&rules, serde_json::to_vec_pretty(&cr["spec"])?);
    let out = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules))?;
    ensure!(out.contains("SUCCESS: 2 rules found"), "{out}");
    let tests = dir.path().join("leakhound-rules.test.yaml");
    std::fs::copy(
        repo().join("tests/promtool/leakhound-rules.test.yaml"),
        &tests,
    )?;
    let out = run(Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&tests)
        .current_dir(dir.path()))?;
    ensure!(out.contains("SUCCESS"), "{out}");

    // A broken copy must fail: the unit tests can fail.
    let broken = serde_json::to_string(&cr["spec"])?.replace("> 0.5", "> 5");
    write(&rules, broken);
    let out = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&tests)
        .current_dir(dir.path())
        .output()?;
    ensure!(
        !out.status.success(),
        "promtool test passed on a broken growth rule"
    );
    Ok(())
}

#[test]
fn shipped_alertmanager_route_is_a_valid_configuration() -> Result<()> {
    let out = run(Command::new("amtool")
        .arg("check-config")
        .arg(repo().join("deploy/alertmanager/alertmanager-route.yaml")))
    .context("apt-get install prometheus-alertmanager (tests/run does)")?;
    ensure!(
        out.contains("SUCCESS") && out.contains("2 receivers"),
        "{out}"
    );
    Ok(())
}
