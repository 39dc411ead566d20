//! `leakhound ingest`: flags into [`driver::RunOptions`], each pass printed as it ends
//! (`leakhound_ingest::scrape::driver` runs the passes and decides the exit status).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use leakhound_ingest::scrape::{self, driver, targets};

use crate::cli::{StoreArgs, usage};

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
    /// With --discover: the bearer token (a file, e.g. a mounted Secret) sent to the pods
    /// annotated leakhound.io/auth: bearer (the Go agent's handler), and to no other pod.
    #[arg(long, env = "LEAKHOUND_AGENT_TOKEN_FILE")]
    pub agent_token_file: Option<PathBuf>,
    /// Loop: one pass every this long (e.g. 60s, 1m30s). Without it, one pass.
    #[arg(long, env = "LEAKHOUND_EVERY", value_parser = crate::cli::duration)]
    pub every: Option<Duration>,
    /// With --every: stop after this many passes.
    #[arg(long, env = "LEAKHOUND_PASSES")]
    pub passes: Option<u64>,
    /// Targets scraped at once.
    #[arg(long, env = "LEAKHOUND_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Per target, all its requests together (e.g. 10s, 500ms).
    #[arg(long, env = "LEAKHOUND_SCRAPE_TIMEOUT", default_value = "10s", value_parser = crate::cli::duration)]
    pub timeout: Duration,
    /// For the whole pass.
    #[arg(long, env = "LEAKHOUND_PASS_DEADLINE", default_value = "50s", value_parser = crate::cli::duration)]
    pub deadline: Duration,
    /// Largest response accepted, in bytes (after gzip decoding). A goroutine profile is also
    /// held to 1/16 of --memory-budget at debug=2, 1/32 otherwise (what parsing it may take).
    #[arg(long, env = "LEAKHOUND_MAX_BODY", default_value_t = 64 << 20)]
    pub max_body: usize,
    /// Bytes the response bodies in flight (and their parsers) may hold together; bounds the
    /// pass's memory whatever the targets send. Default 96 MiB: 3/8 of the CronJob's limit.
    #[arg(long, env = "LEAKHOUND_MEMORY_BUDGET", default_value_t = scrape::DEFAULT_MEMORY_BUDGET)]
    pub memory_budget: usize,
    /// Commit the rows of every this many completed targets (then save the state): a crash
    /// loses at most the chunk in flight.
    #[arg(long, env = "LEAKHOUND_COMMIT_EVERY", default_value_t = scrape::DEFAULT_COMMIT_EVERY)]
    pub commit_every: usize,
    /// Exit 1 when at least this percentage of a pass's targets were down (and at least one
    /// was). Default 100: only a pass where every target was down fails; 0: any down target
    /// fails the run. Down targets are in scrape_status either way.
    #[arg(long, env = "LEAKHOUND_FAIL_WHEN_DOWN", default_value_t = 100.0, value_parser = percentage)]
    pub fail_when_down: f64,
    /// Take a debug=2 dump at least every N passes (and whenever goroutines grew by 20%).
    #[arg(long, env = "LEAKHOUND_DEBUG2_EVERY", default_value_t = 10)]
    pub debug2_every: u64,
    /// Scrape only shard I of N (0-based, e.g. `--shard 2/4`; `--shard job/4` takes I from
    /// `JOB_COMPLETION_INDEX`, as in an Indexed Job): the targets whose pod UID (else
    /// namespace/pod) falls to it by rendezvous hashing, with a state file of its own. Shards
    /// never scrape a target twice, and adding one moves about 1/N of the targets.
    #[arg(long, env = "LEAKHOUND_SHARD", value_parser = shard_flag)]
    pub shard: Option<scrape::shard::Shard>,
}

fn shard_flag(s: &str) -> Result<scrape::shard::Shard, String> {
    match s.strip_prefix("job/") {
        // An Indexed Job's pod: its index from the Job controller.
        Some(n) => match std::env::var("JOB_COMPLETION_INDEX") {
            Ok(i) => format!("{i}/{n}")
                .parse()
                .map_err(|e| format!("JOB_COMPLETION_INDEX={i:?} with {s:?}: {e}")),
            Err(_) => Err(format!(
                "{s:?}: JOB_COMPLETION_INDEX is not set (--shard job/N is for the pods of an Indexed Job)"
            )),
        },
        None => s.parse(),
    }
}

fn percentage(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
}

pub async fn run(a: IngestArgs) -> Result<ExitCode> {
    let store = a.store.open()?;
    let mut static_targets = Vec::new();
    for t in &a.targets {
        static_targets.push(
            targets::parse_target_flag(t).map_err(|e| usage(format!("--target {t:?}: {e}")))?,
        );
    }
    if let Some(f) = &a.targets_file {
        static_targets.extend(targets::read_targets_file(f).map_err(anyhow::Error::msg)?);
    }
    for s in &mut static_targets {
        if s.cluster.is_none() {
            s.cluster = a.cluster.clone();
        }
    }
    if static_targets.is_empty() && !a.discover {
        return Err(usage(
            "no targets: pass --target URL, --targets-file FILE or --discover",
        ));
    }
    let pass = scrape::PassOptions {
        concurrency: a.concurrency.max(1),
        timeout: a.timeout,
        deadline: a.deadline,
        max_body: a.max_body,
        memory_budget: a.memory_budget,
        commit_every: a.commit_every.max(1),
        debug2_every: a.debug2_every.max(1),
        shard: a.shard,
        ..Default::default()
    };
    if let Some(f) = &a.agent_token_file {
        if !a.discover {
            return Err(usage(
                "--agent-token-file is for --discover (static targets name their own bearer_token_file)",
            ));
        }
        // As at scrape time: a token file that cannot be read, or is empty, is refused now.
        let token = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("--agent-token-file {}: {e}", f.display()))?;
        if token.trim().is_empty() {
            anyhow::bail!("--agent-token-file {}: empty", f.display());
        }
    }
    if let Some(code) = crate::check::reached("ingest") {
        return Ok(code);
    }
    let discovery = if a.discover {
        let dopts = scrape::discovery::DiscoveryOptions {
            namespaces: a.namespaces.clone(),
            label_selector: a.selector.clone(),
            cluster: a.cluster.clone(),
            agent_token_file: a.agent_token_file.clone(),
        };
        Some((
            scrape::discovery::client(a.kubeconfig.as_deref()).await?,
            dopts,
        ))
    } else {
        None
    };
    let opts = driver::RunOptions {
        static_targets,
        discovery,
        pass,
        every: a.every,
        passes: a.passes,
        fail_when_down: a.fail_when_down,
    };
    // A failed commit ends the run (exit 1): the chunks committed before it stay.
    let failed = driver::run(&store, &opts, |r| {
        if let Some(e) = &r.discovery_error {
            println!("discovery failed: {e}");
        }
        for e in &r.skipped_targets {
            println!("skipped target: {e}");
        }
        let s = &r.summary;
        if let Some(sh) = a.shard {
            print!("shard {sh}: ");
        }
        println!(
            "pass {}: {} targets, {} up, {} debug=2 dumps, {} leak profiles, {} with errors; {} rows in {} files, {} chunks; {:.0} ms",
            r.number,
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
    })
    .await?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
