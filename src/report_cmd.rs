//! `leakhound report`: a leak as a self-contained HTML page (`--html FILE`, for `--event ID` or
//! a scope: `leakhound_analyze::html`), or a cluster as a goroutine profile (`--cluster ID
//! --pprof FILE`: `leakhound_analyze::report::cluster_profile`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use leakhound_analyze::html;
use leakhound_schemas::time::TimeSpec;

use crate::cli::{StoreArgs, resolve, usage};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Write an HTML report (one self-contained file: counts, clusters, flamegraphs, actions,
    /// pprof downloads) of --event ID, or of the events of --namespace [--workload] [--from --to].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cluster", "pprof"])]
    pub html: Option<PathBuf>,
    /// With --html: the event (leak_events.event_id).
    #[arg(long, requires = "html", conflicts_with_all = ["namespace", "workload", "from", "to"])]
    pub event: Option<String>,
    /// With --html: the namespace whose events to show.
    #[arg(long, requires = "html")]
    pub namespace: Option<String>,
    /// With --html --namespace: one workload.
    #[arg(long, requires = "namespace")]
    pub workload: Option<String>,
    /// With --html --namespace: events detected from (RFC 3339, Unix seconds, now-2h).
    #[arg(long, requires = "namespace", value_parser = crate::cli::time)]
    pub from: Option<TimeSpec>,
    /// With --html --namespace: events detected until.
    #[arg(long, requires = "namespace", value_parser = crate::cli::time)]
    pub to: Option<TimeSpec>,
    /// The cluster's id (leak_clusters.cluster_id, `clusters[].id` of an event).
    #[arg(long, requires = "pprof")]
    pub cluster: Option<String>,
    /// Write the cluster as a goroutine profile (gzip'd profile.proto) for `go tool pprof`.
    #[arg(long, requires = "cluster")]
    pub pprof: Option<PathBuf>,
}

/// A string from the store as one line of terminal text (no control characters, no escapes).
fn term(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

pub async fn run(a: ReportArgs) -> Result<ExitCode> {
    let select = if let Some(file) = &a.html {
        let now = chrono::Utc::now();
        let select = match (&a.event, &a.namespace) {
            (Some(id), _) => html::Select::Event(id.clone()),
            (None, Some(ns)) => html::Select::Scope {
                namespace: ns.clone(),
                workload: a.workload.clone(),
                from_s: a
                    .from
                    .map(|t| resolve("from", t, now).map(|t| t.timestamp()))
                    .transpose()?,
                to_s: a
                    .to
                    .map(|t| resolve("to", t, now).map(|t| t.timestamp()))
                    .transpose()?,
            },
            (None, None) => return Err(usage("--html needs --event ID or --namespace NS")),
        };
        Some((file.clone(), select))
    } else if a.cluster.is_none() {
        return Err(usage(
            "say what to write: --html FILE (--event ID or --namespace NS) or --cluster ID --pprof FILE",
        ));
    } else {
        None
    };
    let store = a.store.open_existing()?;
    if let Some(code) = crate::check::reached("report") {
        return Ok(code);
    }
    a.store.ensure_exists(&store).await?;
    if let Some((file, select)) = select {
        let report = html::gather(&store, &select).await?;
        let page = html::render::page(&report);
        std::fs::write(&file, page.as_bytes())
            .with_context(|| format!("writing {}", file.display()))?;
        let abs = std::fs::canonicalize(&file).unwrap_or(file.clone());
        for e in &report.events {
            let last = e.latest();
            println!(
                "event {} {} {}/{}: {} goroutines, onset {}",
                term(&e.id),
                term(&e.max_level()),
                term(&e.namespace),
                term(
                    e.pod
                        .as_deref()
                        .or(e.workload.as_deref())
                        .unwrap_or("(namespace)")
                ),
                last.goroutines,
                chrono::DateTime::from_timestamp(e.onset, 0).unwrap_or_default()
            );
            if let Some(m) = e.memory_bytes {
                println!(
                    "  memory {} MiB of {}{}",
                    m >> 20,
                    e.memory_limit_bytes
                        .map_or("no limit".to_string(), |l| format!("{} MiB", l >> 20)),
                    e.time_to_limit_s
                        .map(|t| format!(", the limit in {:.0} min at the current slope", t / 60.0))
                        .unwrap_or_default()
                );
            }
            for c in &e.clusters {
                println!(
                    "  {} {} goroutines (at onset {}), {:.2}/s{}: {} {}:{}",
                    term(&c.pattern),
                    c.goroutines_now,
                    c.goroutines_at_onset,
                    c.growth_per_s,
                    match (c.confirmed, c.confirmed_at) {
                        (true, _) => ", runtime-confirmed".to_string(),
                        (false, Some(t)) => format!(
                            ", runtime-confirmed at {} (after the detection)",
                            chrono::DateTime::from_timestamp(t, 0).unwrap_or_default()
                        ),
                        (false, None) => String::new(),
                    },
                    term(&c.top_function),
                    term(&c.top_file),
                    c.top_line
                );
            }
        }
        if report.events.is_empty() {
            println!("no leak event in this scope and range");
        }
        println!("report written to {}", abs.display());
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(cluster), Some(pprof)) = (&a.cluster, &a.pprof) else {
        return Err(usage("--cluster ID --pprof FILE"));
    };
    let p = leakhound_analyze::report::cluster_profile(&store, cluster).await?;
    std::fs::write(pprof, &p.bytes).with_context(|| format!("writing {}", pprof.display()))?;
    println!(
        "cluster {} ({} stacks, {} goroutines) written to {} — open with `go tool pprof -traces {}`",
        cluster,
        p.stacks,
        p.goroutines,
        pprof.display(),
        pprof.display()
    );
    Ok(ExitCode::SUCCESS)
}
