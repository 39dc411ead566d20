//! `leakhound backfill`: flags into `leakhound_ingest::backfill`'s options, a progress bar on a
//! terminal, and the summary it returns.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use leakhound_ingest::backfill::{self, BackfillOptions, Outcome, Overrides, Progress};
use leakhound_ingest::pathpattern::{self, PathPattern};
use leakhound_schemas::time::TimeSpec;

use crate::cli::{StoreArgs, usage};

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Files, directories, .tar / .tar.gz / .gz archives.
    #[arg(required_unless_present = "prometheus")]
    pub paths: Vec<PathBuf>,
    /// Import history from this Prometheus server's query_range API instead of files.
    #[arg(long, env = "LEAKHOUND_PROMETHEUS_URL", conflicts_with = "paths")]
    pub prometheus: Option<String>,
    /// With --prometheus: the PromQL query.
    #[arg(long, default_value = "go_goroutines")]
    pub query: String,
    /// With --prometheus: start (RFC 3339, Unix seconds, or now-7d).
    #[arg(long, default_value = "now-1d", value_parser = crate::cli::time)]
    pub from: TimeSpec,
    /// With --prometheus: end.
    #[arg(long, default_value = "now", value_parser = crate::cli::time)]
    pub to: TimeSpec,
    /// With --prometheus: resolution (e.g. 15s, 1m).
    #[arg(long, default_value = "60s", value_parser = crate::cli::duration)]
    pub step: Duration,
    /// With --prometheus: points per series per request (the server refuses more than 11,000).
    #[arg(long, default_value_t = leakhound_ingest::sources::prometheus::DEFAULT_POINTS_PER_PAGE)]
    pub points_per_page: i64,
    /// How target identity and time are read from each file's path (matched against its last
    /// components). Placeholders: {namespace} {pod} {workload} {container} {cluster} {node}
    /// {timestamp}; `*` matches any component.
    #[arg(long, env = "LEAKHOUND_PATH_PATTERN", default_value = pathpattern::DEFAULT_PATTERN)]
    pub path_pattern: String,
    /// Namespace for every file (wins over the path pattern).
    #[arg(long, env = "LEAKHOUND_NAMESPACE")]
    pub namespace: Option<String>,
    /// Pod for every file (wins over the path pattern).
    #[arg(long, env = "LEAKHOUND_POD")]
    pub pod: Option<String>,
    #[arg(long, env = "LEAKHOUND_WORKLOAD")]
    pub workload: Option<String>,
    #[arg(long, env = "LEAKHOUND_CONTAINER")]
    pub container: Option<String>,
    #[arg(long, env = "LEAKHOUND_CLUSTER")]
    pub cluster: Option<String>,
    /// Snapshot time for every file: RFC 3339 or Unix seconds (wins over the path pattern).
    #[arg(long, env = "LEAKHOUND_TIMESTAMP", value_parser = timestamp)]
    pub timestamp: Option<i64>,
    /// Largest decompressed size accepted per file or archive, in bytes (gzip-bomb guard).
    #[arg(long, env = "LEAKHOUND_MAX_DECOMPRESSED", default_value_t = backfill::DEFAULT_MAX_DECOMPRESSED)]
    pub max_decompressed: u64,
    /// Items per commit: each commit makes its items' rows visible at once; a crash loses at
    /// most the items since the last commit (a re-run imports them).
    #[arg(long, env = "LEAKHOUND_BATCH_ITEMS", default_value_t = 256)]
    pub batch_items: usize,
    /// Saved Prometheus query_range files imported at once, each committed on its own (default:
    /// one per core, at most 4; memory grows with each, about 30 MiB).
    #[arg(long, env = "LEAKHOUND_BACKFILL_JOBS")]
    pub jobs: Option<usize>,
}

/// Value parser of `--timestamp`: µs since the epoch.
fn timestamp(s: &str) -> Result<i64, String> {
    pathpattern::parse_timestamp(s).ok_or_else(|| format!("{s:?} is not RFC 3339 or Unix seconds"))
}

pub async fn run(a: BackfillArgs) -> Result<ExitCode> {
    // Freed memory back to the OS at once: RSS follows what is in flight (`alloc/`).
    leakhound_alloc::purge_freed_memory_at_once();
    if let Some(url) = a.prometheus.clone() {
        return run_prometheus(a, &url).await;
    }
    let store = a.store.open()?;
    let pattern =
        PathPattern::parse(&a.path_pattern).map_err(|e| usage(format!("--path-pattern: {e}")))?;
    if let Some(code) = crate::check::reached("backfill") {
        return Ok(code);
    }
    let opts = BackfillOptions {
        pattern,
        overrides: Overrides {
            cluster: a.cluster,
            namespace: a.namespace,
            workload: a.workload,
            pod: a.pod,
            container: a.container,
            timestamp_us: a.timestamp,
        },
        max_decompressed: a.max_decompressed,
        batch_items: a.batch_items.max(1),
        jobs: a.jobs.unwrap_or_else(backfill::default_jobs).max(1),
        ..Default::default()
    };
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::hidden();
    if tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }
    let mut progress = |p: Progress| match p {
        Progress::Total(n) => bar.set_length(n),
        Progress::Item { name, outcome } => {
            bar.inc(1);
            if let Outcome::Failed(e) = &outcome {
                tracing::warn!(file = %name, error = %e, "Failed to import file.");
            }
            bar.set_message(name);
        }
    };
    let summary = backfill::backfill(&store, &a.paths, &opts, &mut progress).await?;
    bar.finish_and_clear();
    println!(
        "backfill into {}: {} items, {} imported, {} already imported, {} failed; {} goroutines, {} rows, {} files written",
        store.url(),
        summary.items,
        summary.imported,
        summary.already_imported,
        summary.failed.len(),
        summary.goroutines,
        summary.rows,
        summary.files_written
    );
    for (name, reason) in &summary.failed {
        println!("  failed: {name}: {reason}");
    }
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_prometheus(a: BackfillArgs, url: &str) -> Result<ExitCode> {
    let store = a.store.open()?;
    let now = chrono::Utc::now();
    let from = crate::cli::resolve("from", a.from, now)?.timestamp();
    let to = crate::cli::resolve("to", a.to, now)?.timestamp();
    let step = a.step.as_secs().max(1) as i64;
    if let Some(code) = crate::check::reached("backfill") {
        return Ok(code);
    }
    let mut progress = |_done: i64, _total: i64| {};
    let range = leakhound_ingest::sources::prometheus::RangeQuery {
        query: a.query.clone(),
        from_s: from,
        to_s: to,
        step_s: step,
        points_per_page: a.points_per_page,
    };
    let s = backfill::backfill_prometheus(&store, url, &range, &mut progress).await?;
    println!(
        "backfill from {url} ({}): {} pages, {} imported, {} already imported; {} rows, {} files written",
        a.query, s.items, s.imported, s.already_imported, s.rows, s.files_written
    );
    Ok(ExitCode::SUCCESS)
}
