//! Command-line flags (clap derive, every flag also an `LEAKHOUND_*` environment variable so the
//! Kubernetes manifests configure through the environment) and the dispatch to the crates.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use leakhound_analyze::output::{self, Format};
use leakhound_analyze::{queries, session};
use leakhound_ingest::backfill::{self, BackfillOptions, Outcome, Overrides, Progress};
use leakhound_ingest::compact::{self, CompactOptions};
use leakhound_ingest::pathpattern::{self, PathPattern};
use leakhound_ingest::store::{DEFAULT_STORE, Store};

#[derive(Debug, Parser)]
#[command(
    name = "leakhound",
    version,
    about = "Finds goroutine leaks in Go services on Kubernetes, explains them down to the stack, and acts on them."
)]
pub struct Cli {
    /// Log format on stderr: text, or json for in-cluster runs.
    #[arg(
        long,
        global = true,
        env = "LEAKHOUND_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,

    /// Parse and validate the flags and environment (durations, policy file, targets, store URL,
    /// credential files), then exit 0 before doing any work (src/check.rs).
    #[arg(long, global = true)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store: a directory, file:///abs/path, or s3://bucket/prefix (AWS_* variables for S3).
    #[arg(long, env = "LEAKHOUND_STORE", default_value = DEFAULT_STORE)]
    pub store: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scrape Go targets: /metrics, goroutine profiles (debug=1 every pass, debug=2 when due),
    /// the goroutineleak profile where served. One pass by default (CronJob); --every loops.
    Ingest(IngestArgs),
    /// Import archived dumps, profiles, tarballs and saved Prometheus query_range JSON.
    Backfill(BackfillArgs),
    /// Read dumps or profiles (or stdin) and print what a person debugging a leak wants first.
    Inspect(InspectArgs),
    /// Run SQL over the store: one statement, -f FILE, or an interactive prompt.
    Sql(SqlArgs),
    /// Run a named query from queries/ (see --list).
    Query(QueryArgs),
    /// Merge small files of each partition atomically; drop old partitions with --retain.
    Compact(CompactArgs),
    /// Print what is in the store: tables, rows, time range, targets.
    Status(StatusArgs),
    /// Detect leaks over the stored history: one evaluation now (CronJob), or --replay over a
    /// range; writes leak_events and leak_clusters.
    Analyze(crate::analyze_cmd::AnalyzeArgs),
    /// Write a leak cluster as a goroutine profile for `go tool pprof`.
    Report(crate::analyze_cmd::ReportArgs),
    /// Act on new leak events in the store (HPA, eviction, restart, capture) within the safety
    /// bounds; dry-run unless --apply.
    Actuate(crate::actuate_cmd::ActuateArgs),
    /// Receive Alertmanager webhooks (payload v4) and act on firing alerts; dry-run unless --apply.
    Serve(crate::actuate_cmd::ServeArgs),
}

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
    #[arg(long, default_value = "now-1d")]
    pub from: String,
    /// With --prometheus: end.
    #[arg(long, default_value = "now")]
    pub to: String,
    /// With --prometheus: resolution (e.g. 15s, 1m).
    #[arg(long, default_value = "60s")]
    pub step: String,
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
    #[arg(long, env = "LEAKHOUND_TIMESTAMP")]
    pub timestamp: Option<String>,
    /// Largest decompressed size accepted per file or archive, in bytes (gzip-bomb guard).
    #[arg(long, env = "LEAKHOUND_MAX_DECOMPRESSED", default_value_t = backfill::DEFAULT_MAX_DECOMPRESSED)]
    pub max_decompressed: u64,
    /// Items per commit: each commit makes its items' rows visible at once; a crash loses at
    /// most the items since the last commit (a re-run imports them).
    #[arg(long, env = "LEAKHOUND_BATCH_ITEMS", default_value_t = 256)]
    pub batch_items: usize,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// A target: URL or NAMESPACE/POD=URL (repeatable).
    #[arg(long = "target", env = "LEAKHOUND_TARGETS", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// A JSON file: an array of {url, namespace, pod, workload, metrics_path, pprof_path,
    /// bearer_token_file, basic_auth_user, basic_auth_password_file, ca_file,
    /// insecure_skip_verify, ...}.
    #[arg(long, env = "LEAKHOUND_TARGETS_FILE")]
    pub targets_file: Option<PathBuf>,
    /// Discover targets in Kubernetes: running pods annotated leakhound.io/scrape=true.
    #[arg(long, env = "LEAKHOUND_DISCOVER")]
    pub discover: bool,
    /// With --discover: kubeconfig file (default: in-cluster, then $KUBECONFIG).
    #[arg(long, env = "LEAKHOUND_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// With --discover: namespaces to look in (repeatable; default all).
    #[arg(
        long = "namespace",
        env = "LEAKHOUND_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// With --discover: a label selector (e.g. app=orders).
    #[arg(long, env = "LEAKHOUND_SELECTOR")]
    pub selector: Option<String>,
    /// Cluster name recorded on every row.
    #[arg(long, env = "LEAKHOUND_CLUSTER")]
    pub cluster: Option<String>,
    /// Loop: one pass every this long (e.g. 60s). Without it, one pass.
    #[arg(long, env = "LEAKHOUND_EVERY")]
    pub every: Option<String>,
    /// With --every: stop after this many passes.
    #[arg(long, env = "LEAKHOUND_PASSES")]
    pub passes: Option<u64>,
    /// Targets scraped at once.
    #[arg(long, env = "LEAKHOUND_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Per target, all its requests together.
    #[arg(long, env = "LEAKHOUND_SCRAPE_TIMEOUT", default_value = "10s")]
    pub timeout: String,
    /// For the whole pass.
    #[arg(long, env = "LEAKHOUND_PASS_DEADLINE", default_value = "50s")]
    pub deadline: String,
    /// Largest response accepted, in bytes (after gzip decoding). A goroutine profile is also
    /// held to 1/16 of --memory-budget at debug=2, 1/32 otherwise (what parsing it may take).
    #[arg(long, env = "LEAKHOUND_MAX_BODY", default_value_t = 64 << 20)]
    pub max_body: usize,
    /// Bytes the response bodies in flight (and their parsers) may hold together; bounds the
    /// pass's memory whatever the targets send. Default 96 MiB: 3/8 of the CronJob's limit.
    #[arg(long, env = "LEAKHOUND_MEMORY_BUDGET", default_value_t = leakhound_ingest::scrape::DEFAULT_MEMORY_BUDGET)]
    pub memory_budget: usize,
    /// Commit the rows of every this many completed targets (then save the state): a crash
    /// loses at most the chunk in flight.
    #[arg(long, env = "LEAKHOUND_COMMIT_EVERY", default_value_t = leakhound_ingest::scrape::DEFAULT_COMMIT_EVERY)]
    pub commit_every: usize,
    /// Exit 1 when at least this percentage of a pass's targets were down (and at least one
    /// was). Default 100: only a pass where every target was down fails; 0: any down target
    /// fails the run. Down targets are in scrape_status either way.
    #[arg(long, env = "LEAKHOUND_FAIL_WHEN_DOWN", default_value_t = 100.0)]
    pub fail_when_down: f64,
    /// Take a debug=2 dump at least every N passes (and whenever goroutines grew by 20%).
    #[arg(long, env = "LEAKHOUND_DEBUG2_EVERY", default_value_t = 10)]
    pub debug2_every: u64,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dumps or profiles; `-` (or nothing) reads stdin.
    pub files: Vec<PathBuf>,
    /// text or json.
    #[arg(long, env = "LEAKHOUND_INSPECT_FORMAT", default_value = "text")]
    pub format: String,
    /// Frames printed per stack in text output (0 = all).
    #[arg(long, default_value_t = 12)]
    pub frames: usize,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The statement to run; without it and without -f, an interactive prompt reads stdin.
    pub statement: Option<String>,
    /// Read statements from a file (separated by `;`).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    /// table, csv or json.
    #[arg(long, env = "LEAKHOUND_OUTPUT_FORMAT", default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The query's name (queries/NAME.sql).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// A parameter as NAME=VALUE (repeatable).
    #[arg(short = 'p', long = "param", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// table, csv or json.
    #[arg(long, env = "LEAKHOUND_OUTPUT_FORMAT", default_value = "table")]
    pub format: Format,
    /// A folder of extra or overriding .sql files.
    #[arg(long, env = "LEAKHOUND_QUERIES_DIR")]
    pub queries_dir: Option<PathBuf>,
    /// List the named queries with what each answers and its parameters.
    #[arg(long)]
    pub list: bool,
    /// Print the SQL instead of running it.
    #[arg(long)]
    pub show_sql: bool,
    /// "Now" for relative times (now-2h), RFC 3339; defaults to the clock.
    #[arg(long, env = "LEAKHOUND_NOW")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Drop date partitions older than this (e.g. 30d).
    #[arg(long, env = "LEAKHOUND_RETAIN")]
    pub retain: Option<String>,
    /// How long replaced files stay readable for queries already running.
    #[arg(long, env = "LEAKHOUND_COMPACT_GRACE", default_value = "10m")]
    pub grace: String,
    /// Compact a partition once it holds at least this many files.
    #[arg(long, default_value_t = 2)]
    pub min_files: usize,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_kv(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ingest(a) => run_ingest(a).await,
        Command::Backfill(a) => run_backfill(a).await,
        Command::Inspect(a) => crate::inspect::run(a),
        Command::Sql(a) => run_sql(a).await,
        Command::Query(a) => run_query(a).await,
        Command::Compact(a) => run_compact(a).await,
        Command::Status(a) => run_status(a).await,
        Command::Analyze(a) => crate::analyze_cmd::run_analyze(a).await,
        Command::Report(a) => crate::analyze_cmd::run_report(a).await,
        Command::Actuate(a) => crate::actuate_cmd::run_actuate(a).await,
        Command::Serve(a) => crate::actuate_cmd::run_serve(a).await,
    }
}

fn open_store(a: &StoreArgs) -> Result<Store> {
    Store::open(&a.store).with_context(|| format!("cannot open the store {:?}", a.store))
}

pub(crate) fn duration_arg(flag: &str, v: &str) -> Result<std::time::Duration> {
    compact::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

async fn run_ingest(a: IngestArgs) -> Result<ExitCode> {
    use leakhound_ingest::scrape::{self, targets};
    let store = open_store(&a.store)?;
    let mut static_specs = Vec::new();
    for t in &a.targets {
        static_specs.push(targets::parse_target_flag(t).map_err(anyhow::Error::msg)?);
    }
    if let Some(f) = &a.targets_file {
        static_specs.extend(targets::read_targets_file(f).map_err(anyhow::Error::msg)?);
    }
    for s in &mut static_specs {
        if s.cluster.is_none() {
            s.cluster = a.cluster.clone();
        }
    }
    if static_specs.is_empty() && !a.discover {
        bail!("no targets: pass --target URL, --targets-file FILE or --discover");
    }
    let dopts = scrape::discovery::DiscoveryOptions {
        namespaces: a.namespaces.clone(),
        label_selector: a.selector.clone(),
        cluster: a.cluster.clone(),
    };
    let opts = scrape::PassOptions {
        concurrency: a.concurrency.max(1),
        timeout: duration_arg("timeout", &a.timeout)?,
        deadline: duration_arg("deadline", &a.deadline)?,
        max_body: a.max_body,
        memory_budget: a.memory_budget,
        commit_every: a.commit_every.max(1),
        debug2_every: a.debug2_every.max(1),
        ..Default::default()
    };
    if !(0.0..=100.0).contains(&a.fail_when_down) {
        bail!(
            "--fail-when-down {}: a percentage from 0 to 100",
            a.fail_when_down
        );
    }
    let every = match &a.every {
        Some(e) => Some(duration_arg("every", e)?),
        None => None,
    };
    if let Some(code) = crate::check::reached("ingest") {
        return Ok(code);
    }
    let kube = if a.discover {
        Some(scrape::discovery::client(a.kubeconfig.as_deref()).await?)
    } else {
        None
    };
    let clients = scrape::http::Clients::new();
    let mut writer = leakhound_ingest::writer::Writer::new(store.clone());
    let mut state = scrape::IngestState::load(&store).await?;
    let mut n = 0u64;
    let mut failed_passes = 0u64;
    loop {
        let pass_start = tokio::time::Instant::now();
        let mut specs = static_specs.clone();
        let mut discovery_failed = false;
        if let Some(client) = &kube {
            match scrape::discovery::discover(client, &dopts).await {
                Ok((found, skipped)) => {
                    for (pod, why) in skipped {
                        tracing::info!(pod = %pod, reason = %why, "Skipped an annotated pod.");
                    }
                    specs.extend(found);
                }
                // A failed discovery keeps the static targets going; the pass reports it.
                Err(e) => {
                    tracing::warn!(error = %e, "Failed to discover pods.");
                    println!("discovery failed: {e}");
                    discovery_failed = true;
                }
            }
        }
        let mut list = Vec::new();
        for s in specs {
            match s.into_target() {
                Ok(t) => list.push(t),
                Err(e) => println!("skipped target: {e}"),
            }
        }
        let now_us = chrono::Utc::now().timestamp_micros();
        // A failed commit ends the run (exit 1): the chunks committed before it stay.
        let s = scrape::run_pass(&mut writer, &clients, &list, &mut state, &opts, now_us).await?;
        n += 1;
        println!(
            "pass {n}: {} targets, {} up, {} debug=2 dumps, {} leak profiles, {} with errors; {} rows in {} files, {} chunks; {:.0} ms",
            s.targets,
            s.up,
            s.debug2_taken,
            s.leak_profiles,
            s.failed.len(),
            s.commit.rows,
            s.commit.files,
            s.chunks,
            s.duration.as_secs_f64() * 1000.0
        );
        for (t, e) in &s.failed {
            println!("  {t}: {e}");
        }
        if discovery_failed || pass_failed(s.targets, s.down(), a.fail_when_down) {
            failed_passes += 1;
        }
        match every {
            Some(d) if a.passes.is_none_or(|p| n < p) => {
                tokio::time::sleep_until(pass_start + d).await;
            }
            _ => break,
        }
    }
    // Down targets are recorded in scrape_status (like Prometheus' `up`): a fleet always has
    // some pods down, so they fail the run only past --fail-when-down.
    Ok(if failed_passes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether a pass with `down` of `targets` down fails the run under `--fail-when-down PCT`.
fn pass_failed(targets: usize, down: usize, pct: f64) -> bool {
    down > 0 && down as f64 * 100.0 >= pct * targets as f64
}

async fn run_backfill_prometheus(a: BackfillArgs, url: &str) -> Result<ExitCode> {
    let store = open_store(&a.store)?;
    let now = chrono::Utc::now();
    let t = |flag: &str, v: &str| {
        queries::parse_time(v, now)
            .map(|t| t.timestamp())
            .with_context(|| {
                format!("--{flag} {v:?} is not a time (RFC 3339, Unix seconds, now-2h)")
            })
    };
    let (from, to) = (t("from", &a.from)?, t("to", &a.to)?);
    let step = duration_arg("step", &a.step)?.as_secs().max(1) as i64;
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

async fn run_backfill(a: BackfillArgs) -> Result<ExitCode> {
    if let Some(url) = a.prometheus.clone() {
        return run_backfill_prometheus(a, &url).await;
    }
    let store = open_store(&a.store)?;
    let pattern = PathPattern::parse(&a.path_pattern).map_err(anyhow::Error::msg)?;
    let timestamp_us = match &a.timestamp {
        Some(t) => Some(
            pathpattern::parse_timestamp(t)
                .with_context(|| format!("--timestamp {t:?} is not RFC 3339 or Unix seconds"))?,
        ),
        None => None,
    };
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
            timestamp_us,
        },
        max_decompressed: a.max_decompressed,
        batch_items: a.batch_items.max(1),
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

async fn run_statements(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    format: Format,
) -> Result<()> {
    let df = ctx.sql(sql).await?;
    let batches = df.collect().await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    output::write(&mut out, &batches, format)?;
    out.flush()?;
    Ok(())
}

/// Split a script on `;` outside quotes and comments.
fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !in_quote && c == '-' && chars.peek() == Some(&'-') {
            // Comment to end of line.
            for c2 in chars.by_ref() {
                if c2 == '\n' {
                    break;
                }
            }
            cur.push('\n');
            continue;
        }
        if c == '\'' {
            in_quote = !in_quote;
        }
        if c == ';' && !in_quote {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

async fn run_sql(a: SqlArgs) -> Result<ExitCode> {
    let store = open_store(&a.store)?;
    if let Some(code) = crate::check::reached("sql") {
        return Ok(code);
    }
    let ctx = session::session(&store).await?;
    if let Some(stmt) = &a.statement {
        for s in split_statements(stmt) {
            run_statements(&ctx, &s, a.format).await?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &a.file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for s in split_statements(&text) {
            run_statements(&ctx, &s, a.format).await?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Interactive: statements end with `;`. Errors are printed and the prompt goes on.
    let interactive = std::io::stdin().is_terminal();
    let mut failed = false;
    let mut buf = String::new();
    if interactive {
        eprintln!(
            "leakhound sql on {}: tables goroutine_counts, goroutine_samples, stacks, ingest_log. End statements with ';', Ctrl-D quits.",
            store.url()
        );
    }
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!(
                "{}",
                if buf.is_empty() {
                    "leakhound> "
                } else {
                    "        -> "
                }
            );
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        buf.push_str(&line);
        if !buf.trim_end().ends_with(';') {
            continue;
        }
        for s in split_statements(&buf) {
            if let Err(e) = run_statements(&ctx, &s, a.format).await {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
        buf.clear();
    }
    if !buf.trim().is_empty() {
        for s in split_statements(&buf) {
            if let Err(e) = run_statements(&ctx, &s, a.format).await {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed && !interactive {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_query(a: QueryArgs) -> Result<ExitCode> {
    if a.list {
        let mut list = queries::builtin()?;
        if let Some(dir) = &a.queries_dir {
            for e in
                std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == "sql") {
                    let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                    list.retain(|q| q.name != name);
                    list.push(queries::find(name, Some(dir))?);
                }
            }
        }
        for q in list {
            println!("{}: {}", q.name, q.summary);
            for p in &q.params {
                println!("    -p {}=…   ({:?}, default {})", p.name, p.ty, p.default);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = &a.name else {
        bail!("name a query, or pass --list");
    };
    let q = queries::find(name, a.queries_dir.as_deref())?;
    let now = match &a.now {
        Some(n) => queries::parse_time(n, chrono::Utc::now())
            .with_context(|| format!("--now {n:?} is not a time"))?,
        None => chrono::Utc::now(),
    };
    let params: BTreeMap<String, String> = a.params.into_iter().collect();
    let sql = q.render(&params, now)?;
    if let Some(code) = crate::check::reached("query") {
        return Ok(code);
    }
    if a.show_sql {
        println!("{sql}");
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store(&a.store)?;
    let ctx = session::session(&store).await?;
    for s in split_statements(&sql) {
        run_statements(&ctx, &s, a.format).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_compact(a: CompactArgs) -> Result<ExitCode> {
    let store = open_store(&a.store)?;
    let opts = CompactOptions {
        grace: compact::parse_duration(&a.grace).map_err(anyhow::Error::msg)?,
        min_files: a.min_files.max(2),
        retain: match &a.retain {
            Some(r) => Some(compact::parse_duration(r).map_err(anyhow::Error::msg)?),
            None => None,
        },
        now: chrono::Utc::now(),
    };
    if let Some(code) = crate::check::reached("compact") {
        return Ok(code);
    }
    let s = compact::compact(&store, &opts).await?;
    println!(
        "compact {}: {} partitions compacted ({} files merged, {} rows), {} replaced files deleted, {} orphans deleted, {} staging files deleted, {} partitions dropped by retention, {} partitions left to a concurrent compaction",
        store.url(),
        s.partitions_compacted,
        s.files_merged,
        s.rows_written,
        s.replaced_files_deleted,
        s.orphans_deleted,
        s.staging_deleted,
        s.partitions_dropped,
        s.conflicts
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_status(a: StatusArgs) -> Result<ExitCode> {
    let store = open_store(&a.store)?;
    if let Some(code) = crate::check::reached("status") {
        return Ok(code);
    }
    let ctx = session::session(&store).await?;
    println!("store {}", store.url());
    let sql = "SELECT 'goroutine_counts' AS table_name, COUNT(*) AS row_count, MIN(ts) AS first, MAX(ts) AS last FROM goroutine_counts \
       UNION ALL SELECT 'goroutine_samples', COUNT(*), MIN(ts), MAX(ts) FROM goroutine_samples \
       UNION ALL SELECT 'stacks', COUNT(*), MIN(first_seen), MAX(first_seen) FROM stacks \
       UNION ALL SELECT 'ingest_log', COUNT(*), MIN(ingested_at), MAX(ingested_at) FROM ingest_log";
    run_statements(&ctx, sql, Format::Table).await?;
    let sql = "SELECT namespace, pod, COUNT(*) AS snapshots, MIN(ts) AS first, MAX(ts) AS last, \
       MIN(goroutines) AS min_goroutines, MAX(goroutines) AS max_goroutines, \
       array_agg(DISTINCT source) AS sources \
       FROM goroutine_counts GROUP BY namespace, pod ORDER BY namespace, pod";
    run_statements(&ctx, sql, Format::Table).await?;
    let sql = "SELECT status, COUNT(*) AS files, SUM(goroutines) AS goroutines FROM ingest_log GROUP BY status ORDER BY status";
    run_statements(&ctx, sql, Format::Table).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::pass_failed;

    #[test]
    fn fail_when_down() {
        // Default 100: only a pass where every target was down fails.
        assert!(!pass_failed(10, 9, 100.0));
        assert!(pass_failed(10, 10, 100.0));
        assert!(!pass_failed(0, 0, 100.0), "no targets: nothing failed");
        assert!(
            !pass_failed(10, 0, 0.0),
            "0: fails on any down target, not on none"
        );
        assert!(pass_failed(10, 1, 0.0));
        assert!(pass_failed(4, 2, 50.0));
        assert!(!pass_failed(4, 1, 50.0));
    }
}
