//! `leakhound analyze`: flags into `leakhound_analyze::engine`'s configuration, and the events
//! it returns printed (text or JSON lines); the work is in the analyze crate.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use leakhound_analyze::detect::{self, DetectorKind};
use leakhound_analyze::engine::{self, AnalyzeConfig, Emit};
use leakhound_schemas::events::Level;
use leakhound_schemas::time::TimeSpec;

use crate::cli::{StoreArgs, resolve, usage};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub engine: crate::cli::EngineArgs,
    /// Evaluate every step over stored history, as if live (backtesting; after a backfill).
    #[arg(long, requires_all = ["from", "to"])]
    pub replay: bool,
    /// With --replay: first evaluation (RFC 3339, Unix seconds, now-2d).
    #[arg(long, requires = "replay", value_parser = crate::cli::time)]
    pub from: Option<TimeSpec>,
    /// With --replay: last evaluation.
    #[arg(long, requires = "replay", value_parser = crate::cli::time)]
    pub to: Option<TimeSpec>,
    /// The evaluation time of a live run (default: the clock).
    #[arg(long, env = "LEAKHOUND_NOW", value_parser = crate::cli::time)]
    pub now: Option<TimeSpec>,
    /// Evaluation period (at least 1m).
    #[arg(long, env = "LEAKHOUND_ANALYZE_STEP", default_value = "5m", value_parser = crate::cli::duration)]
    pub step: Duration,
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
    #[arg(long, env = "LEAKHOUND_MIN_LEVEL", default_value = "L1", value_parser = level)]
    pub min_level: Level,
    /// Clusters per event.
    #[arg(long, default_value_t = 5)]
    pub max_clusters: usize,
    /// text, jsonl (one event per line, docs/leak-events.md) or none.
    #[arg(long, env = "LEAKHOUND_OUTPUT_FORMAT", value_enum, default_value_t = EventFormat::Text)]
    pub format: EventFormat,
    /// Do not write leak_events / leak_clusters.
    #[arg(long)]
    pub no_write: bool,
    /// The baseline rule's factor over the 2 h P95.
    #[arg(long, env = "LEAKHOUND_BASELINE_FACTOR", default_value_t = 1.8)]
    pub baseline_factor: f64,
    /// The growth rule's slope threshold, goroutines per second.
    #[arg(long, env = "LEAKHOUND_GROWTH_MIN_PER_S", default_value_t = 0.5)]
    pub growth_min_per_s: f64,
    /// Analyse the workloads in groups of at most this many count rows each (peak memory
    /// follows the largest group, not the fleet; a workload larger than that is a group of its
    /// own); 0: the fleet at once. On a cluster too: this process holds a group's series.
    #[arg(long, env = "LEAKHOUND_GROUP_ROWS", default_value_t = 2_000_000)]
    pub group_rows: u64,
    /// On a cluster (`--engine ballista://…`): the tasks the STL + Isolation Forest scoring is
    /// spread over (about 4 per task slot of the cluster balances best); 0: one per workload,
    /// at most 256.
    #[arg(long, env = "LEAKHOUND_SCORE_PARTITIONS", default_value_t = 0)]
    pub score_partitions: usize,
    /// Recompute every evaluation of the live window instead of reusing the previous live
    /// step's findings (kept in the store's `_state/analyze/`; late rows are recomputed
    /// anyway). Replays and --no-write never reuse.
    #[arg(long, env = "LEAKHOUND_NO_REUSE")]
    pub no_reuse: bool,
    /// Consecutive firings before an episode counts as sustained (L2/L3).
    #[arg(long, env = "LEAKHOUND_SUSTAIN_EVALS", default_value_t = 3)]
    pub sustain_evals: u32,
    /// Level thresholds: residence P99 warning/danger seconds.
    #[arg(long, default_values_t = [30.0, 120.0], num_args = 2, value_names = ["WARN", "DANGER"])]
    pub residence_s: Vec<f64>,
    /// Level thresholds: share alive over 5 minutes, warning/danger.
    #[arg(long, default_values_t = [0.001, 0.01], num_args = 2, value_names = ["WARN", "DANGER"])]
    pub alive_share: Vec<f64>,
    /// Post the run's L2/L3 events to this Alertmanager (its v2 API, `URL/api/v2/alerts`;
    /// labels in src/alerts_out.rs).
    #[arg(long, env = "LEAKHOUND_ALERTMANAGER_URL", value_name = "URL", value_parser = http_url)]
    pub alertmanager: Option<String>,
    /// Level thresholds: growth per second, warning/danger.
    #[arg(long, default_values_t = [10.0, 50.0], num_args = 2, value_names = ["WARN", "DANGER"])]
    pub growth_levels: Vec<f64>,
    /// Goroutines growing while memory heads for the container's limit (the Go agent's
    /// context) raise the level by one when the limit is this near at memory's slope.
    #[arg(long, env = "LEAKHOUND_MEMORY_HORIZON", default_value = "24h", value_parser = crate::cli::duration)]
    pub memory_horizon: Duration,
}

/// `--format` of `analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    Text,
    /// One event per line (docs/leak-events.md).
    Jsonl,
    None,
}

/// `--detectors`: the registered detectors' names (an unknown one is a usage error).
fn detector_parser() -> impl clap::builder::TypedValueParser<Value = DetectorKind> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = detect::all().iter().map(|d| d.as_str()).collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<DetectorKind>())
}

/// An http(s) URL (`--alertmanager`).
fn http_url(s: &str) -> std::result::Result<String, String> {
    let u = reqwest::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{s:?}: want http(s)://HOST[:PORT][/PATH]"));
    }
    Ok(s.to_string())
}

fn level(s: &str) -> std::result::Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{s:?}: want L1, L2 or L3"))
}

pub async fn run(a: AnalyzeArgs) -> Result<ExitCode> {
    let store = a.store.open()?;
    let clock = chrono::Utc::now();
    let step = a.step.as_secs().max(60) as i64;
    let min_level = a.min_level;
    let mut cfg = AnalyzeConfig {
        step_s: step,
        engine: a.engine.engine.clone(),
        detectors: a.detectors.clone(),
        namespace: a.namespace.clone(),
        baseline_factor: a.baseline_factor,
        growth_min_per_s: a.growth_min_per_s,
        group_rows: a.group_rows,
        reuse: !a.replay && !a.no_write && !a.no_reuse,
        score_partitions: a.score_partitions,
        ..Default::default()
    };
    cfg.levels.sustain_evals = a.sustain_evals;
    cfg.levels.residence_warn_s = a.residence_s[0];
    cfg.levels.residence_danger_s = a.residence_s[1];
    cfg.levels.alive_warn_share = a.alive_share[0];
    cfg.levels.alive_danger_share = a.alive_share[1];
    cfg.levels.growth_warn_per_s = a.growth_levels[0];
    cfg.levels.growth_danger_per_s = a.growth_levels[1];
    cfg.levels.memory_horizon_s = a.memory_horizon.as_secs_f64();

    let (from, to, emit) = if a.replay {
        // clap requires both with --replay.
        let (Some(from), Some(to)) = (a.from, a.to) else {
            return Err(usage("--replay needs --from and --to"));
        };
        let from = resolve("from", from, clock)?.timestamp();
        let to = resolve("to", to, clock)?.timestamp();
        if to < from {
            return Err(usage("--to is before --from"));
        }
        (from, to, Emit::Changes)
    } else {
        let now = match a.now {
            Some(v) => resolve("now", v, clock)?.timestamp(),
            None => clock.timestamp(),
        };
        let now = now.div_euclid(step) * step;
        (now - cfg.live_window_s, now, Emit::All)
    };
    if let Some(code) = crate::check::reached("analyze") {
        return Ok(code);
    }
    let started = std::time::Instant::now();
    // Progress of a replay on a terminal (stderr), never when piped: the stage it is in.
    let bar = crate::cli::spinner(a.replay);
    if let Some(bar) = &bar {
        let b = bar.clone();
        cfg.progress = Some(engine::StageHook(std::sync::Arc::new(move |s: &str| {
            b.set_message(s.to_string())
        })));
    }
    let analysis = engine::analyze(&store, from, to, emit, &cfg).await?;
    if let Some(bar) = &bar {
        bar.set_message("root-cause clusters");
    }
    let mut events: Vec<_> = analysis
        .events
        .into_iter()
        .filter(|e| e.level >= min_level)
        .collect();
    let clusters = engine::attach_clusters(&store, &mut events, a.max_clusters).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let files = if a.no_write || events.is_empty() {
        0
    } else {
        engine::write_results(&store, &events, &clusters).await?
    };
    let posted = match &a.alertmanager {
        Some(url) => {
            let alerts = crate::alerts_out::alerts(&events, step);
            crate::alerts_out::post(url, &alerts, Duration::from_secs(30)).await?
        }
        None => 0,
    };
    let mut out = std::io::stdout().lock();
    match a.format {
        EventFormat::Jsonl => {
            for e in &events {
                serde_json::to_writer(&mut out, e)?;
                out.write_all(b"\n")?;
            }
        }
        EventFormat::Text => {
            for e in &events {
                writeln!(
                    out,
                    "{} {} {}/{}{} {} score {:.2} growth {:.3}/s goroutines {}{}{}",
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
                        .unwrap_or_default(),
                    memory_text(e)
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
                "analyze: {} evaluations over {} series{}, {} events ({} L3, {} L2), {} files written, {:.1}s",
                analysis.evaluations,
                analysis.scopes,
                match analysis
                    .reused_evaluations
                    .checked_div(analysis.reused_groups)
                {
                    Some(n) => format!(
                        " ({n} of them the previous step's, in {} groups)",
                        analysis.reused_groups
                    ),
                    None => String::new(),
                },
                events.len(),
                events.iter().filter(|e| e.level == Level::L3).count(),
                events.iter().filter(|e| e.level == Level::L2).count(),
                files,
                started.elapsed().as_secs_f64()
            )?;
        }
        EventFormat::None => {}
    }
    if let Some(url) = &a.alertmanager {
        eprintln!("analyze: {posted} alerts (L2/L3 events) posted to {url}");
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// ` memory 212/256 MiB, limit in 38 min` (the Go agent's context), or nothing.
pub(crate) fn memory_text(e: &leakhound_schemas::events::LeakEvent) -> String {
    let Some(m) = e.memory_bytes else {
        return String::new();
    };
    let limit = e
        .memory_limit_bytes
        .map_or("no limit".to_string(), |l| format!("{} MiB", l >> 20));
    let ttl = e
        .time_to_limit_s
        .map(|t| format!(", limit in {:.0} min", t / 60.0))
        .unwrap_or_default();
    format!(" memory {}/{limit}{ttl}", m >> 20)
}
