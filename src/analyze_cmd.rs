//! `leakhound analyze` and `leakhound report`: flags and wiring; the work is in the analyze crate.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use leakhound_analyze::detect::{self, DetectorKind};
use leakhound_analyze::engine::{self, AnalyzeConfig, Emit};
use leakhound_analyze::queries;
use leakhound_ingest::Store;
use leakhound_schemas::events::Level;

use crate::cli::StoreArgs;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Evaluate every step over stored history, as if live (backtesting; after a backfill).
    #[arg(long, requires_all = ["from", "to"])]
    pub replay: bool,
    /// With --replay: first evaluation (RFC 3339, Unix seconds, now-2d).
    #[arg(long)]
    pub from: Option<String>,
    /// With --replay: last evaluation.
    #[arg(long)]
    pub to: Option<String>,
    /// The evaluation time of a live run (default: the clock).
    #[arg(long, env = "LEAKHOUND_NOW")]
    pub now: Option<String>,
    /// Evaluation period.
    #[arg(long, env = "LEAKHOUND_ANALYZE_STEP", default_value = "5m")]
    pub step: String,
    /// Detectors to run, comma-separated (default: every registered one).
    #[arg(
        long,
        env = "LEAKHOUND_DETECTORS",
        value_delimiter = ',',
        value_parser = detector_parser(),
        default_values_t = detect::all()
    )]
    pub detectors: Vec<DetectorKind>,
    /// Namespaces to analyze (SQL LIKE pattern).
    #[arg(long, env = "LEAKHOUND_NAMESPACE", default_value = "%")]
    pub namespace: String,
    /// Lowest level to output and store (L1 records jitter too).
    #[arg(long, env = "LEAKHOUND_MIN_LEVEL", default_value = "L1")]
    pub min_level: String,
    /// Clusters per event.
    #[arg(long, default_value_t = 5)]
    pub max_clusters: usize,
    /// text, jsonl (one event per line, docs/leak-events.md) or none.
    #[arg(long, env = "LEAKHOUND_OUTPUT_FORMAT", default_value = "text")]
    pub format: String,
    /// Do not write leak_events / leak_clusters.
    #[arg(long)]
    pub no_write: bool,
    /// The baseline rule's factor over the 2 h P95.
    #[arg(long, env = "LEAKHOUND_BASELINE_FACTOR", default_value_t = 1.8)]
    pub baseline_factor: f64,
    /// The growth rule's slope threshold, goroutines per second.
    #[arg(long, env = "LEAKHOUND_GROWTH_MIN_PER_S", default_value_t = 0.5)]
    pub growth_min_per_s: f64,
    /// Consecutive firings before an episode counts as sustained (L2/L3).
    #[arg(long, env = "LEAKHOUND_SUSTAIN_EVALS", default_value_t = 3)]
    pub sustain_evals: u32,
    /// Level thresholds: residence P99 warning/danger seconds.
    #[arg(long, default_values_t = [30.0, 120.0], num_args = 2, value_names = ["WARN", "DANGER"])]
    pub residence_s: Vec<f64>,
    /// Level thresholds: share alive over 5 minutes, warning/danger.
    #[arg(long, default_values_t = [0.001, 0.01], num_args = 2, value_names = ["WARN", "DANGER"])]
    pub alive_share: Vec<f64>,
    /// Level thresholds: growth per second, warning/danger.
    #[arg(long, default_values_t = [10.0, 50.0], num_args = 2, value_names = ["WARN", "DANGER"])]
    pub growth_levels: Vec<f64>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The cluster's id (leak_clusters.cluster_id, `clusters[].id` of an event).
    #[arg(long)]
    pub cluster: String,
    /// Write the cluster as a goroutine profile (gzip'd profile.proto) for `go tool pprof`.
    #[arg(long)]
    pub pprof: PathBuf,
}

/// `--detectors`: the registered detectors' names (an unknown one is a usage error).
fn detector_parser() -> impl clap::builder::TypedValueParser<Value = DetectorKind> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = detect::all().iter().map(|d| d.as_str()).collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<DetectorKind>())
}

fn open_store(a: &StoreArgs) -> Result<Store> {
    Store::open(&a.store).with_context(|| format!("cannot open the store {:?}", a.store))
}

fn time_arg(flag: &str, v: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64> {
    queries::parse_time(v, now)
        .map(|t| t.timestamp())
        .with_context(|| format!("--{flag} {v:?} is not a time (RFC 3339, Unix seconds, now-2h)"))
}

pub async fn run_analyze(a: AnalyzeArgs) -> Result<ExitCode> {
    let store = open_store(&a.store)?;
    let clock = chrono::Utc::now();
    let step = crate::cli::duration_arg("step", &a.step)?.as_secs().max(60) as i64;
    let min_level = Level::parse(&a.min_level)
        .with_context(|| format!("--min-level {:?}: want L1, L2 or L3", a.min_level))?;
    if !matches!(a.format.as_str(), "text" | "jsonl" | "none") {
        bail!("--format {:?}: want text, jsonl or none", a.format);
    }
    let mut cfg = AnalyzeConfig {
        step_s: step,
        detectors: a.detectors.clone(),
        namespace: a.namespace.clone(),
        baseline_factor: a.baseline_factor,
        growth_min_per_s: a.growth_min_per_s,
        ..Default::default()
    };
    cfg.levels.sustain_evals = a.sustain_evals;
    cfg.levels.residence_warn_s = a.residence_s[0];
    cfg.levels.residence_danger_s = a.residence_s[1];
    cfg.levels.alive_warn_share = a.alive_share[0];
    cfg.levels.alive_danger_share = a.alive_share[1];
    cfg.levels.growth_warn_per_s = a.growth_levels[0];
    cfg.levels.growth_danger_per_s = a.growth_levels[1];

    let (from, to, emit) = if a.replay {
        let from = time_arg("from", a.from.as_deref().unwrap_or_default(), clock)?;
        let to = time_arg("to", a.to.as_deref().unwrap_or_default(), clock)?;
        if to < from {
            bail!("--to is before --from");
        }
        (from, to, Emit::Changes)
    } else {
        let now = match &a.now {
            Some(v) => time_arg("now", v, clock)?,
            None => clock.timestamp(),
        };
        let now = now.div_euclid(step) * step;
        (now - cfg.live_window_s, now, Emit::All)
    };
    if let Some(code) = crate::check::reached("analyze") {
        return Ok(code);
    }
    let started = std::time::Instant::now();
    let analysis = engine::analyze(&store, from, to, emit, &cfg).await?;
    let mut events: Vec<_> = analysis
        .events
        .into_iter()
        .filter(|e| e.level >= min_level)
        .collect();
    let clusters = engine::attach_clusters(&store, &mut events, a.max_clusters).await?;
    let files = if a.no_write || events.is_empty() {
        0
    } else {
        engine::write_results(&store, &events, &clusters).await?
    };
    let mut out = std::io::stdout().lock();
    match a.format.as_str() {
        "jsonl" => {
            for e in &events {
                serde_json::to_writer(&mut out, e)?;
                out.write_all(b"\n")?;
            }
        }
        "text" => {
            for e in &events {
                writeln!(
                    out,
                    "{} {} {}/{}{} {} score {:.2} growth {:.3}/s goroutines {}{}",
                    e.detected_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    e.level.as_str(),
                    e.namespace,
                    e.workload.as_deref().unwrap_or("-"),
                    e.pod
                        .as_deref()
                        .map(|p| format!(" pod {p}"))
                        .unwrap_or_default(),
                    e.detector,
                    e.score,
                    e.growth_per_s,
                    e.goroutines,
                    e.residence_p99_s
                        .map(|r| format!(" residence p99 {r:.0}s"))
                        .unwrap_or_default()
                )?;
                for c in &e.clusters {
                    writeln!(
                        out,
                        "    cluster {} {}{} {} → {} at {}",
                        c.id,
                        c.pattern,
                        if c.confirmed { " (confirmed)" } else { "" },
                        c.goroutines_baseline,
                        c.goroutines_now,
                        c.top_frame
                    )?;
                }
            }
            writeln!(
                out,
                "analyze: {} evaluations over {} series, {} events ({} L3, {} L2), {} files written, {:.1}s",
                analysis.evaluations,
                analysis.scopes,
                events.len(),
                events.iter().filter(|e| e.level == Level::L3).count(),
                events.iter().filter(|e| e.level == Level::L2).count(),
                files,
                started.elapsed().as_secs_f64()
            )?;
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_report(a: ReportArgs) -> Result<ExitCode> {
    let store = open_store(&a.store)?;
    if let Some(code) = crate::check::reached("report") {
        return Ok(code);
    }
    let ctx = leakhound_analyze::session::session(&store).await?;
    let id = a.cluster.replace('\'', "''");
    let rows = ctx
        .sql(&format!(
            "SELECT c.event_id, c.namespace, c.workload, c.pod, \
                    CAST(to_unixtime(c.detected_at) AS BIGINT) AS at, \
                    CAST(to_unixtime(e.onset) AS BIGINT) AS onset, c.stack_ids \
             FROM leak_clusters c JOIN leak_events e \
               ON c.event_id = e.event_id AND c.detected_at = e.detected_at \
             WHERE c.cluster_id = '{id}' ORDER BY c.detected_at DESC LIMIT 1"
        ))
        .await?
        .collect()
        .await?;
    let Some(b) = rows.iter().find(|b| b.num_rows() > 0) else {
        bail!(
            "no cluster {:?} in {} (see `leakhound sql \"SELECT cluster_id, pattern FROM leak_clusters\"`)",
            a.cluster,
            a.store.store
        );
    };
    let v = |name: &str| -> Option<String> {
        let c = b.column_by_name(name)?;
        let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok()?;
        use arrow::array::{Array, AsArray};
        let s = c.as_string::<i32>();
        (!s.is_null(0)).then(|| s.value(0).to_string())
    };
    let num = |name: &str| v(name).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let namespace = v("namespace").unwrap_or_default();
    let (workload, pod) = (v("workload"), v("pod"));
    let (at, onset) = (num("at"), num("onset"));
    let stack_ids: Vec<i64> = {
        use arrow::array::AsArray;
        let l = b
            .column_by_name("stack_ids")
            .context("stack_ids")?
            .as_list::<i32>()
            .value(0);
        l.as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .flatten()
            .collect()
    };
    let growth = leakhound_analyze::rootcause::growth(
        &ctx,
        &namespace,
        workload.as_deref(),
        pod.as_deref(),
        onset - 600,
        at,
    )
    .await?;
    let info = leakhound_analyze::rootcause::stack_info(&ctx, &stack_ids).await?;
    let stacks: Vec<_> = stack_ids
        .iter()
        .filter_map(|id| {
            let n = growth.get(id).map(|g| g.now).unwrap_or(0);
            info.get(id).map(|s| (s.clone(), n))
        })
        .collect();
    let bytes = leakhound_analyze::report::pprof_bytes(&stacks, at * 1_000_000_000)?;
    std::fs::write(&a.pprof, bytes).with_context(|| format!("writing {}", a.pprof.display()))?;
    println!(
        "cluster {} ({} stacks, {} goroutines) written to {} — open with `go tool pprof -traces {}`",
        a.cluster,
        stacks.len(),
        stacks.iter().map(|s| s.1).sum::<i64>(),
        a.pprof.display(),
        a.pprof.display()
    );
    Ok(ExitCode::SUCCESS)
}
