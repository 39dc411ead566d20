//! The command line: the top-level flags and the list of commands (clap derive; every flag also
//! an `LEAKHOUND_*` environment variable, so the Kubernetes manifests configure through the
//! environment), the value parsers every command shares, and how an error becomes an exit code.
//!
//! Conventions, for every command:
//! - durations and times go through one parser ([`leakhound_schemas::time`]): `500ms`,
//!   `1m30s`, `1w`; RFC 3339, Unix seconds, `now-2h`. A value that does not parse is a usage
//!   error (exit 2) naming the flag, as is any other flag clap refuses;
//! - closed sets of values are clap `ValueEnum`s (their values listed in `--help` and in the
//!   shell completions, `leakhound completions SHELL`);
//! - commands that only read the store (`status`, `sql`, `query`, `report`) refuse a store that
//!   does not exist (exit 1) instead of creating it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use leakhound_ingest::store::{DEFAULT_STORE, Store};
use leakhound_schemas::time::TimeSpec;

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
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,

    /// Parse and validate the flags and environment (durations, policy file, targets, store URL,
    /// credential files), then exit 0 before doing any work (src/check.rs).
    #[arg(long, global = true)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scrape Go targets: /metrics, goroutine profiles (debug=1 every pass, debug=2 when due),
    /// the goroutineleak profile where served. One pass by default (CronJob); --every loops.
    Ingest(crate::ingest_cmd::IngestArgs),
    /// Import archived dumps, profiles, tarballs and saved Prometheus query_range JSON.
    Backfill(crate::backfill_cmd::BackfillArgs),
    /// Read dumps or profiles (or stdin) and print what a person debugging a leak wants first.
    Inspect(crate::inspect_cmd::InspectArgs),
    /// Run SQL over the store: one statement, -f FILE, or an interactive prompt.
    Sql(crate::sql_cmd::SqlArgs),
    /// Run a named query from queries/ (see --list).
    Query(crate::query_cmd::QueryArgs),
    /// Merge small files of each partition atomically; drop old partitions with --retain.
    Compact(crate::compact_cmd::CompactArgs),
    /// Print what is in the store: every table's rows and time range, targets, the ingest log.
    Status(crate::status_cmd::StatusArgs),
    /// Detect leaks over the stored history: one evaluation now (CronJob), or --replay over a
    /// range; writes leak_events and leak_clusters.
    Analyze(crate::analyze_cmd::AnalyzeArgs),
    /// Write a leak as a self-contained HTML page (--html), or a cluster as a pprof profile.
    Report(crate::report_cmd::ReportArgs),
    /// Act on new leak events in the store (HPA, eviction, restart, capture) within the safety
    /// bounds; dry-run unless --apply.
    Actuate(crate::actuate_cmd::ActuateArgs),
    /// Receive Alertmanager webhooks (payload v4) and act on firing alerts; dry-run unless --apply.
    Serve(crate::actuate_cmd::ServeArgs),
    /// Run leakhound's Apache Ballista scheduler or executor (`--engine ballista://HOST:PORT`
    /// of sql, query and analyze runs on them).
    #[command(subcommand)]
    Cluster(crate::cluster_cmd::ClusterCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ingest(a) => crate::ingest_cmd::run(a).await,
        Command::Backfill(a) => crate::backfill_cmd::run(a).await,
        Command::Inspect(a) => crate::inspect_cmd::run(a),
        Command::Sql(a) => crate::sql_cmd::run(a).await,
        Command::Query(a) => crate::query_cmd::run(a).await,
        Command::Compact(a) => crate::compact_cmd::run(a).await,
        Command::Status(a) => crate::status_cmd::run(a).await,
        Command::Analyze(a) => crate::analyze_cmd::run(a).await,
        Command::Report(a) => crate::report_cmd::run(a).await,
        Command::Actuate(a) => crate::actuate_cmd::run_actuate(a).await,
        Command::Serve(a) => crate::actuate_cmd::run_serve(a).await,
        Command::Cluster(c) => crate::cluster_cmd::run(c).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "leakhound",
                &mut std::io::stdout().lock(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A spinner with the elapsed time and a message on stderr, for long runs — only when `wanted`
/// and stderr is a terminal (never when piped or redirected, so logs and CI output stay clean).
pub fn spinner(wanted: bool) -> Option<indicatif::ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

/// `--engine`: where the SQL runs.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Where SQL runs: inprocess (default), or ballista://HOST:PORT, a `leakhound cluster
    /// scheduler` over the same store.
    #[arg(long, env = "LEAKHOUND_ENGINE", default_value = "inprocess", value_parser = engine)]
    pub engine: leakhound_analyze::session::Engine,
}

fn engine(s: &str) -> Result<leakhound_analyze::session::Engine, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store: a directory, file:///abs/path, or s3://bucket/prefix (AWS_* variables for S3).
    #[arg(long, env = "LEAKHOUND_STORE", default_value = DEFAULT_STORE)]
    pub store: String,
}

impl StoreArgs {
    /// The store, created if it is a local directory that does not exist (commands that write).
    pub fn open(&self) -> Result<Store> {
        Store::open(&self.store).map_err(|e| self.context(e))
    }

    /// The store, which must exist (commands that only read); call
    /// [`StoreArgs::ensure_exists`] after `--check-config`'s stop for S3.
    pub fn open_existing(&self) -> Result<Store> {
        Store::open_existing(&self.store).map_err(|e| self.context(e))
    }

    pub async fn ensure_exists(&self, store: &Store) -> Result<()> {
        store.ensure_exists().await.map_err(|e| self.context(e))
    }

    fn context(&self, e: leakhound_ingest::Error) -> anyhow::Error {
        match e {
            e @ leakhound_ingest::Error::NoStore { .. } => e.into(),
            e => anyhow::Error::new(e).context(format!("cannot open the store {:?}", self.store)),
        }
    }
}

/// A usage error found after clap parsed the flags (a query parameter, a combination of
/// flags): exit 2, like the ones clap finds.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// Value parser: a duration (`500ms`, `1m30s`, `30d`, `1w`, bare seconds).
pub fn duration(s: &str) -> std::result::Result<Duration, String> {
    leakhound_schemas::time::parse_duration(s).map_err(|e| e.to_string())
}

/// Value parser: a time (RFC 3339, Unix seconds, `now`, `now-2h`), resolved later.
pub fn time(s: &str) -> std::result::Result<TimeSpec, String> {
    TimeSpec::parse(s).map_err(|e| e.to_string())
}

/// Value parser: `NAME=VALUE`.
pub fn key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// `spec` resolved against the clock (or `now`).
pub fn resolve(
    flag: &str,
    spec: TimeSpec,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>> {
    spec.resolve(now)
        .ok_or_else(|| usage(format!("--{flag}: out of range")))
}

/// Logs to stderr at `RUST_LOG`'s levels, else at `default` (`warn` for the commands a person
/// or a CronJob runs; the cluster's long-running services say `info`, as their readiness —
/// "Executor registration succeed" — is a log line).
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The exit code for a command's error, and what stderr says: a usage error 2; stdout closed
/// by the reader (`| head`) 0, silently; anything else 1 with the cause chain, each cause once.
pub fn exit_for(e: &anyhow::Error) -> ExitCode {
    if broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    if let Some(u) = e.downcast_ref::<Usage>() {
        eprintln!("error: {u}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
    }
    eprintln!("error: {}", chain(e));
    ExitCode::from(1)
}

/// The error and its causes, `: `-separated, a cause whose text is already said skipped.
pub fn chain(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if message.contains(&s) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&s);
    }
    message
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_hold_together() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_cause_is_said_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = anyhow::Error::new(inner).context("sending request");
        assert_eq!(chain(&e), "sending request: refused");
        let e = anyhow::anyhow!("x: refused").context("y");
        assert_eq!(chain(&e), "y: x: refused");
    }
}
