//! `leakhound actuate` and `leakhound serve` (one file: they share their policy and safety
//! flags): flags and wiring only; every decision lives in `leakhound-actuate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use leakhound_actuate::clock::{Clock, ManualClock, SystemClock};
use leakhound_actuate::conns::ConnLimits;
use leakhound_actuate::engine::Engine;
use leakhound_actuate::policy::Policy;
use leakhound_actuate::server::{Auth, ExtraMetrics, Server, ServerConfig, TlsFiles};
use leakhound_ingest::scrape::targets;
use leakhound_ingest::store::Store;
use leakhound_schemas::time::TimeSpec;

use crate::cli::StoreArgs;

/// Policy and safety flags shared by `actuate` and `serve`; each overrides the policy file.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Act for real. Without it every write is sent with dryRun=All (validated, nothing changes).
    #[arg(long, env = "LEAKHOUND_APPLY")]
    pub apply: bool,
    /// Kubeconfig file (default: in-cluster, then $KUBECONFIG).
    #[arg(long, env = "LEAKHOUND_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// A policy file (YAML or JSON): levels, deny-list, cooldown, budget, HPA bounds.
    #[arg(long, env = "LEAKHOUND_POLICY")]
    pub policy: Option<PathBuf>,
    /// Namespaces never acted on (replaces the policy's list; default kube-system).
    #[arg(
        long = "deny-namespace",
        env = "LEAKHOUND_DENY_NAMESPACES",
        value_delimiter = ','
    )]
    pub deny_namespaces: Vec<String>,
    /// Act only in these namespaces (replaces the policy's list; default: every namespace not
    /// denied). Pair with the namespaced RBAC of deploy/ so the API server enforces it too.
    #[arg(
        long = "allow-namespace",
        env = "LEAKHOUND_ALLOW_NAMESPACES",
        value_delimiter = ','
    )]
    pub allow_namespaces: Vec<String>,
    /// Per-workload cooldown between changes (e.g. 10m).
    #[arg(long, env = "LEAKHOUND_COOLDOWN", value_parser = crate::cli::duration)]
    pub cooldown: Option<Duration>,
    /// Evictions allowed per window across the cluster.
    #[arg(long, env = "LEAKHOUND_EVICTION_BUDGET")]
    pub eviction_budget: Option<u32>,
    /// The eviction budget's window (e.g. 10m).
    #[arg(long, env = "LEAKHOUND_EVICTION_WINDOW", value_parser = crate::cli::duration)]
    pub eviction_window: Option<Duration>,
    /// Never leave a workload with fewer ready replicas than this.
    #[arg(long, env = "LEAKHOUND_MIN_READY_REPLICAS")]
    pub min_ready_replicas: Option<i32>,
    /// Do not act on triggers detected longer ago than this (e.g. 2h).
    #[arg(long, env = "LEAKHOUND_MAX_TRIGGER_AGE", value_parser = crate::cli::duration)]
    pub max_trigger_age: Option<Duration>,
    /// Where to capture a pod's debug=2 dump from: NAMESPACE/POD=URL (repeatable); other pods
    /// are found through their leakhound.io/scrape annotations.
    #[arg(
        long = "capture-target",
        env = "LEAKHOUND_CAPTURE_TARGETS",
        value_delimiter = ','
    )]
    pub capture_targets: Vec<String>,
    /// "Now", RFC 3339, Unix seconds or now-2h (default: the clock). For replays and tests.
    #[arg(long, env = "LEAKHOUND_NOW", value_parser = crate::cli::time)]
    pub now: Option<TimeSpec>,
    /// The Go agent's bearer token (a file, re-read at each capture), sent when capturing pods
    /// annotated leakhound.io/auth: bearer (found through discovery) and to no other pod;
    /// without it those pods are not captured (the capture fails and says why).
    #[arg(long, env = "LEAKHOUND_AGENT_TOKEN_FILE")]
    pub agent_token_file: Option<PathBuf>,
}

impl PolicyArgs {
    fn policy(&self) -> Result<Policy> {
        let mut p = match &self.policy {
            Some(f) => Policy::load(f)?,
            None => Policy::default(),
        };
        if !self.deny_namespaces.is_empty() {
            p.deny_namespaces = self.deny_namespaces.clone();
        }
        if !self.allow_namespaces.is_empty() {
            p.allow_namespaces = self.allow_namespaces.clone();
        }
        if let Some(v) = self.cooldown {
            p.cooldown = v;
        }
        if let Some(v) = self.eviction_budget {
            p.eviction_budget = v;
        }
        if let Some(v) = self.eviction_window {
            p.eviction_window = v;
        }
        if let Some(v) = self.min_ready_replicas {
            p.min_ready_replicas = v;
        }
        if let Some(v) = self.max_trigger_age {
            p.max_trigger_age = v;
        }
        p.validate().map_err(|e| anyhow::anyhow!("policy: {e}"))?;
        Ok(p)
    }

    fn clock(&self) -> Result<Arc<dyn Clock>> {
        Ok(match self.now {
            Some(t) => Arc::new(ManualClock::new(crate::cli::resolve(
                "now",
                t,
                chrono::Utc::now(),
            )?)),
            None => Arc::new(SystemClock),
        })
    }

    /// The flags' settings, validated (the policy file read, the capture targets parsed); no
    /// other IO. `--check-config` stops after this.
    fn prepare(&self) -> Result<Prepared> {
        let policy = self.policy()?;
        let mut capture = Vec::new();
        for t in &self.capture_targets {
            let spec = targets::parse_target_flag(t)
                .map_err(|e| crate::cli::usage(format!("--capture-target {t:?}: {e}")))?;
            if spec.namespace.is_none() || spec.pod.is_none() {
                return Err(crate::cli::usage(format!(
                    "--capture-target {t:?}: want NAMESPACE/POD=URL"
                )));
            }
            capture.push(spec);
        }
        // As ingest's: a token file that cannot be read, or is empty, is refused now.
        if let Some(f) = &self.agent_token_file {
            let token = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--agent-token-file {}: {e}", f.display()))?;
            if token.trim().is_empty() {
                anyhow::bail!("--agent-token-file {}: empty", f.display());
            }
        }
        Ok(Prepared {
            policy,
            capture,
            clock: self.clock()?,
        })
    }

    async fn engine(&self, store: &Store, prepared: Prepared) -> Result<Engine> {
        let Prepared {
            policy,
            capture,
            clock,
        } = prepared;
        // Without a kubeconfig and outside a cluster, L1 still works; other steps record why
        // they could not act.
        let client = match leakhound_actuate::kube_client(self.kubeconfig.as_deref()).await {
            Ok(c) => Some(c),
            Err(e) if self.kubeconfig.is_none() => {
                tracing::warn!(error = %e, "No Kubernetes client; only record steps can act.");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let engine = Engine::new(store, policy, client, !self.apply, clock)
            .await?
            .with_capture_targets(capture)
            .with_agent_token_file(self.agent_token_file.clone());
        Ok(engine)
    }
}

/// What [`PolicyArgs::prepare`] validated.
struct Prepared {
    policy: Policy,
    capture: Vec<targets::TargetSpec>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Args)]
pub struct ActuateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub async fn run_actuate(a: ActuateArgs) -> Result<ExitCode> {
    let store = a.store.open()?;
    let prepared = a.policy.prepare()?;
    if let Some(code) = crate::check::reached("actuate") {
        return Ok(code);
    }
    let mut engine = a.policy.engine(&store, prepared).await?;
    let now = a.policy.clock()?.now();
    let s = leakhound_actuate::events::run(&mut engine, &store, now).await?;
    println!(
        "actuate ({}): {} events, {} taken, {} dry-run, {} skipped, {} deferred, {} failed, {} already done; {} rows written to actions",
        if engine.dry_run() {
            "dry-run; --apply to act"
        } else {
            "apply"
        },
        s.events,
        s.taken,
        s.dry_run,
        s.skipped,
        s.deferred,
        s.failed,
        s.replayed,
        s.rows_written
    );
    for r in &s.decisions {
        println!(
            "  {:<8} {:<16} {:<48} {}",
            r.outcome.as_str(),
            r.action,
            r.target.display(),
            r.reason
        );
    }
    for e in &s.unreadable {
        println!("  unreadable: {e}");
    }
    Ok(if s.failed > 0 || !s.unreadable.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Address to listen on.
    #[arg(long, env = "LEAKHOUND_LISTEN", default_value = "0.0.0.0:9095")]
    pub listen: SocketAddr,
    /// Path of the Alertmanager webhook.
    #[arg(long, env = "LEAKHOUND_WEBHOOK_PATH", default_value = "/alertmanager")]
    pub path: String,
    /// Require `Authorization: Bearer <the file's content>`.
    #[arg(
        long,
        env = "LEAKHOUND_BEARER_TOKEN_FILE",
        conflicts_with = "basic_auth_user"
    )]
    pub bearer_token_file: Option<PathBuf>,
    /// Require basic auth with this user (and --basic-auth-password-file).
    #[arg(
        long,
        env = "LEAKHOUND_BASIC_AUTH_USER",
        requires = "basic_auth_password_file"
    )]
    pub basic_auth_user: Option<String>,
    #[arg(long, env = "LEAKHOUND_BASIC_AUTH_PASSWORD_FILE")]
    pub basic_auth_password_file: Option<PathBuf>,
    /// Accept unauthenticated requests (only behind something that authenticates).
    #[arg(long, env = "LEAKHOUND_NO_AUTH")]
    pub no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM) ...
    #[arg(long, env = "LEAKHOUND_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// ... and this key (PEM).
    #[arg(long, env = "LEAKHOUND_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Largest request body, in bytes (413 above).
    #[arg(long, env = "LEAKHOUND_MAX_BODY", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Deliveries queued for the worker (503 when full; Alertmanager retries).
    #[arg(long, env = "LEAKHOUND_QUEUE", default_value_t = 1024)]
    pub queue: usize,
    /// How long a delivered alert is remembered for de-duplication.
    #[arg(long, env = "LEAKHOUND_DEDUP_TTL", default_value = "24h", value_parser = crate::cli::duration)]
    pub dedup_ttl: Duration,
    /// How many delivered alerts are remembered at most (the oldest are forgotten first; the
    /// actions table still keeps a forgotten one from acting twice).
    #[arg(long, env = "LEAKHOUND_DEDUP_MAX", default_value_t = 200_000)]
    pub dedup_max: usize,
    /// Open connections at most; at the cap a new connection closes the oldest idle one.
    #[arg(long, env = "LEAKHOUND_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// A request's headers (and a TLS handshake) must arrive within this; an HTTP/1.1
    /// keep-alive connection waiting longer for its next request is closed too.
    #[arg(long, env = "LEAKHOUND_HEADER_TIMEOUT", default_value = "10s", value_parser = crate::cli::duration)]
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 included).
    #[arg(long, env = "LEAKHOUND_IDLE_TIMEOUT", default_value = "60s", value_parser = crate::cli::duration)]
    pub idle_timeout: Duration,
    /// The push listener's flags (boxed: they would make every command's arguments larger).
    #[command(flatten)]
    pub push: Box<PushArgs>,
}

/// `serve`'s push listener (the Go agent's gRPC stream).
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Also receive the Go agent's pushed snapshots (gRPC) on this address, with the same
    /// credentials as the webhook and its TLS (or --push-tls-cert's; mTLS with
    /// --push-client-ca); they land in --store like `ingest`'s rows.
    #[arg(long, env = "LEAKHOUND_PUSH_LISTEN")]
    pub push_listen: Option<SocketAddr>,
    /// Push: snapshots an agent may send ahead of their acknowledgements.
    #[arg(long, env = "LEAKHOUND_PUSH_CREDIT", default_value_t = 8)]
    pub push_credit: u32,
    /// Push: the listener's own TLS certificate (PEM; default: the webhook's --tls-cert-file).
    #[arg(long, env = "LEAKHOUND_PUSH_TLS_CERT", requires_all = ["push_listen", "push_tls_key"])]
    pub push_tls_cert: Option<PathBuf>,
    /// Push: the key of --push-tls-cert (PEM).
    #[arg(long, env = "LEAKHOUND_PUSH_TLS_KEY", requires = "push_tls_cert")]
    pub push_tls_key: Option<PathBuf>,
    /// Push: require client certificates chaining to this CA (PEM) — mTLS; a client with one
    /// needs no token, one without (or with another CA's) fails the TLS handshake. Needs TLS
    /// on the push listener (--push-tls-cert, or the webhook's).
    #[arg(long, env = "LEAKHOUND_PUSH_CLIENT_CA", requires = "push_listen")]
    pub push_client_ca: Option<PathBuf>,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn run_serve(a: ServeArgs) -> Result<ExitCode> {
    let auth = match (&a.bearer_token_file, &a.basic_auth_user, a.no_auth) {
        (Some(f), None, false) => Auth::bearer_file(f)?,
        (None, Some(u), false) => {
            let f = a
                .basic_auth_password_file
                .as_deref()
                .context("--basic-auth-user needs --basic-auth-password-file")?;
            Auth::basic_file(u, f)?
        }
        (None, None, true) => Auth::None,
        (None, None, false) => {
            return Err(crate::cli::usage(
                "no credentials: pass --bearer-token-file FILE or --basic-auth-user USER --basic-auth-password-file FILE (or --no-auth)",
            ));
        }
        _ => {
            return Err(crate::cli::usage(
                "--no-auth excludes --bearer-token-file and --basic-auth-user",
            ));
        }
    };
    let tls = match (&a.tls_cert_file, &a.tls_key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let mut cfg = ServerConfig {
        auth,
        tls,
        body_limit: a.max_body,
        queue: a.queue,
        dedup_ttl: a.dedup_ttl,
        dedup_max: a.dedup_max,
        path: a.path.clone(),
        limits: ConnLimits {
            max_connections: a.max_connections.max(1),
            header_timeout: a.header_timeout,
            idle_timeout: a.idle_timeout,
        },
        ..Default::default()
    };
    let store = a.store.open()?;
    // The reports and the leak state, from the same store (src/serve_pages.rs).
    cfg.pages = Some(crate::serve_pages::pages(store.clone()));
    let for_metrics = store.clone();
    cfg.extra_metrics = Some(ExtraMetrics(Arc::new(move || {
        Box::pin(crate::serve_pages::metrics(for_metrics.clone()))
    })));
    let push_tls = match (&a.push.push_tls_cert, &a.push.push_tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => cfg.tls.clone(),
    };
    if a.push.push_client_ca.is_some() && push_tls.is_none() {
        return Err(crate::cli::usage(
            "--push-client-ca needs TLS on the push listener (--push-tls-cert and --push-tls-key, or --tls-cert-file)",
        ));
    }
    let push_scheme = if push_tls.is_some() { "https" } else { "http" };
    let push_cfg = a.push.push_listen.map(|at| {
        (
            at,
            leakhound_actuate::push::PushConfig {
                auth: cfg.auth.clone(),
                tls: push_tls,
                client_ca: a.push.push_client_ca.clone(),
                credit: a.push.push_credit.max(1),
                ..Default::default()
            },
        )
    });
    if let Some((_, pc)) = &push_cfg {
        pc.validate()?;
    }
    let prepared = a.policy.prepare()?;
    if let Some(code) = crate::check::reached("serve") {
        return Ok(code);
    }
    let engine = a.policy.engine(&store, prepared).await?;
    let dry_run = engine.dry_run();
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let server = Server::bind(a.listen, cfg, engine).await?;
    let addr = server.local_addr()?;
    let push = match push_cfg {
        Some((at, pc)) => {
            Some(leakhound_actuate::push::PushServer::bind(at, pc, store.clone()).await?)
        }
        None => None,
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{addr}")?;
        if let Some(p) = &push {
            writeln!(out, "push listening on {push_scheme}://{}", p.local_addr()?)?;
        }
        out.flush()?;
    }
    let push = push.map(|p| tokio::spawn(p.run(shutdown_signal())));
    tracing::info!(%addr, dry_run, "Alertmanager webhook receiver started.");
    let stopped = server.run(shutdown_signal()).await?;
    if let Some(p) = push {
        p.await.context("the push listener's task")??;
    }
    let pending = stopped.engine.audit().pending().len();
    // Whoever started us may have stopped reading stdout: not a reason to fail.
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "stopped: {pending} rows not written to the actions table"
        );
    }
    Ok(if pending == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
