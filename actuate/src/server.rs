//! `leakhound serve`: the Alertmanager webhook receiver.
//!
//! ```text
//!  connections (conns.rs): capped, oldest idle closed first, header and idle timeouts
//!  POST /alertmanager ─ auth (bearer | basic, constant-time; 401) ─ Content-Type JSON (415)
//!     ─ body limit (413) ─ parse v4 (400: Alertmanager does not retry 4xx) ─ de-dup per alert
//!       on group key + fingerprint + startsAt + status (bounded: size and TTL, O(1) an alert)
//!     ─ bounded queue (full: 503, retried) ─ 200 at once
//!  worker (a thread of its own): queue ─▶ Engine (decisions serialised) ─▶ actions table
//!  GET /metrics (Prometheus text; plus `ServerConfig::extra_metrics`) · GET /healthz
//!  ServerConfig::pages (the binary's /events reports): behind the same auth
//! ```
//!
//! A delivery whose actions were deferred or failed for a reason that may pass is forgotten by
//! the de-dup set once handled, so Alertmanager's next repeat tries again; the engine's own
//! idempotency keeps everything already done from being done twice — across restarts too, since
//! it reads the `actions` table (the de-dup set is memory only, a fast path). Every response
//! code is counted in `leakhound_webhook_requests_total`; duplicates and unmapped alerts are
//! logged once per delivery, summarised. Nothing in a payload is fetched.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::alertmanager::{Alert, Payload};
use crate::conns::{self, ConnLimits};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Who may post.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Only with `--no-auth` (tests, a sidecar on loopback).
    None,
    Bearer(String),
    Basic {
        user: String,
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Bearer(_) => "Auth::Bearer(…)",
            Auth::Basic { .. } => "Auth::Basic(…)",
        })
    }
}

fn read_secret(path: &Path) -> Result<String> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::Credentials {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(Error::Credentials {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    Ok(s)
}

impl Auth {
    pub fn bearer_file(path: &Path) -> Result<Auth> {
        Ok(Auth::Bearer(read_secret(path)?))
    }

    pub fn basic_file(user: &str, password_file: &Path) -> Result<Auth> {
        Ok(Auth::Basic {
            user: user.to_string(),
            password: read_secret(password_file)?,
        })
    }

    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match self {
            Auth::None => true,
            Auth::Bearer(token) => given
                .strip_prefix("Bearer ")
                .is_some_and(|t| bool::from(t.trim().as_bytes().ct_eq(token.as_bytes()))),
            Auth::Basic { user, password } => {
                let Some(enc) = given.strip_prefix("Basic ") else {
                    return false;
                };
                let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(enc.trim()) else {
                    return false;
                };
                let want = format!("{user}:{password}");
                bool::from(dec.as_slice().ct_eq(want.as_bytes()))
            }
        }
    }

    fn challenge(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "Basic realm=\"leakhound\"",
            _ => "Bearer realm=\"leakhound\"",
        }
    }
}

/// TLS certificate chain and key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub auth: Auth,
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted (413 above).
    pub body_limit: usize,
    /// Deliveries waiting for the worker; a full queue answers 503 (Alertmanager retries).
    pub queue: usize,
    /// How long a delivery key is remembered for de-duplication.
    pub dedup_ttl: Duration,
    /// How many delivery keys are remembered at most (the oldest go first).
    pub dedup_max: usize,
    /// Path of the webhook.
    pub path: String,
    /// Connection cap and timeouts.
    pub limits: ConnLimits,
    /// More pages, served behind the webhook's auth (the binary's `/events` and `/events/{id}`
    /// reports, which read the store through the analyze crate).
    pub pages: Option<Router>,
    /// More `/metrics` text, appended to the receiver's own (the binary's leak state).
    pub extra_metrics: Option<ExtraMetrics>,
}

/// A source of `/metrics` text computed per scrape (Prometheus exposition format).
#[derive(Clone)]
pub struct ExtraMetrics(
    pub Arc<dyn Fn() -> futures::future::BoxFuture<'static, String> + Send + Sync>,
);

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtraMetrics(…)")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: Auth::None,
            tls: None,
            body_limit: 1 << 20,
            queue: 1024,
            dedup_ttl: Duration::from_secs(24 * 3600),
            dedup_max: 200_000,
            path: "/alertmanager".into(),
            limits: ConnLimits::default(),
            pages: None,
            extra_metrics: None,
        }
    }
}

/// Counters for `/metrics` (labels are bounded: codes, actions, outcomes).
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: Mutex<BTreeMap<u16, u64>>,
    pub alerts_accepted: AtomicU64,
    pub alerts_duplicate: AtomicU64,
    pub alerts_resolved: AtomicU64,
    pub alerts_unmapped: AtomicU64,
    pub alerts_processed: AtomicU64,
    pub queue_depth: AtomicI64,
    pub actions: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub flush_errors: AtomicU64,
}

impl Metrics {
    fn request(&self, code: StatusCode) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(code.as_u16()).or_default() += 1;
        }
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP leakhound_webhook_requests_total Webhook requests by HTTP status."
        );
        let _ = writeln!(s, "# TYPE leakhound_webhook_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(s, "leakhound_webhook_requests_total{{code=\"{code}\"}} {n}");
            }
        }
        let _ = writeln!(
            s,
            "# HELP leakhound_webhook_alerts_total Alerts received, by what became of them."
        );
        let _ = writeln!(s, "# TYPE leakhound_webhook_alerts_total counter");
        for (k, v) in [
            ("accepted", &self.alerts_accepted),
            ("duplicate", &self.alerts_duplicate),
            ("resolved", &self.alerts_resolved),
            ("unmapped", &self.alerts_unmapped),
            ("processed", &self.alerts_processed),
        ] {
            let _ = writeln!(
                s,
                "leakhound_webhook_alerts_total{{result=\"{k}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP leakhound_webhook_queue_depth Deliveries waiting for the worker."
        );
        let _ = writeln!(s, "# TYPE leakhound_webhook_queue_depth gauge");
        let _ = writeln!(
            s,
            "leakhound_webhook_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP leakhound_actions_total Actuation decisions by action and outcome."
        );
        let _ = writeln!(s, "# TYPE leakhound_actions_total counter");
        if let Ok(m) = self.actions.lock() {
            for ((a, o), n) in m.iter() {
                let _ = writeln!(
                    s,
                    "leakhound_actions_total{{action=\"{a}\",outcome=\"{o}\"}} {n}"
                );
            }
        }
        let _ = writeln!(s, "# TYPE leakhound_audit_flush_errors_total counter");
        let _ = writeln!(
            s,
            "leakhound_audit_flush_errors_total {}",
            self.flush_errors.load(Ordering::Relaxed)
        );
        s
    }
}

/// Delivery keys seen recently: at most `max`, each for `ttl`, oldest forgotten first; O(1)
/// per alert under one short lock. Keys are stored as their 128-bit hash (16 bytes, whatever
/// the size of a group key). Forgetting early costs nothing but a second pass through the
/// engine, whose idempotency (the `actions` table) still acts once.
#[derive(Debug)]
struct Dedup {
    seen: Mutex<lru::LruCache<u128, Instant>>,
    ttl: Duration,
}

impl Dedup {
    fn new(max: usize, ttl: Duration) -> Dedup {
        Dedup {
            seen: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(max.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            ttl,
        }
    }

    fn hash(key: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128(key.as_bytes())
    }

    /// True when `key` is new (and now claimed).
    fn claim(&self, key: &str) -> bool {
        let k = Dedup::hash(key);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if seen
            .peek(&k)
            .is_some_and(|t| now.duration_since(*t) < self.ttl)
        {
            return false;
        }
        seen.put(k, now);
        true
    }

    fn release(&self, key: &str) {
        let k = Dedup::hash(key);
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).pop(&k);
    }

    fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }
}

struct Job {
    alerts: Vec<(String, Alert)>,
}

#[derive(Clone)]
struct AppState {
    extra_metrics: Option<ExtraMetrics>,
    auth: Arc<Auth>,
    body_limit: usize,
    dedup: Arc<Dedup>,
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

async fn require_auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.auth.allows(req.headers()) {
        return next.run(req).await;
    }
    st.metrics.request(StatusCode::UNAUTHORIZED);
    let mut r = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(st.auth.challenge()),
    );
    r
}

fn json_reply(code: StatusCode, v: serde_json::Value) -> Response {
    (code, axum::Json(v)).into_response()
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn webhook(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if !is_json(&headers) {
        st.metrics.request(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return json_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            serde_json::json!({ "error": "Content-Type must be application/json" }),
        );
    }
    let body = match axum::body::to_bytes(body, st.body_limit).await {
        Ok(b) => b,
        Err(e) => {
            // The only error reading a body in memory is its length, or the client going away.
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            let code = if too_big {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            st.metrics.request(code);
            return json_reply(
                code,
                serde_json::json!({ "error": if too_big {
                    format!("body larger than {} bytes", st.body_limit)
                } else {
                    format!("reading the body: {e}")
                } }),
            );
        }
    };
    let payload = match Payload::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "Refused a malformed webhook payload.");
            st.metrics.request(StatusCode::BAD_REQUEST);
            return json_reply(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": e.to_string() }),
            );
        }
    };
    let total = payload.alerts.len();
    let mut fresh = Vec::new();
    let mut dups = 0u64;
    for a in payload.alerts {
        let key = a.delivery_key(&payload.group_key);
        if st.dedup.claim(&key) {
            fresh.push((key, a));
        } else {
            dups += 1;
        }
    }
    st.metrics
        .alerts_duplicate
        .fetch_add(dups, Ordering::Relaxed);
    if dups > 0 {
        tracing::info!(
            alerts = total,
            duplicates = dups,
            "A re-delivery: duplicate alerts acknowledged, not queued."
        );
    }
    let n = fresh.len() as u64;
    if !fresh.is_empty() {
        match st.tx.try_send(Job { alerts: fresh }) {
            Ok(()) => {
                st.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
                st.metrics.alerts_accepted.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                let (mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
                    e;
                for (k, _) in &job.alerts {
                    st.dedup.release(k);
                }
                tracing::warn!(
                    alerts = n,
                    "Webhook queue full or closed; asking Alertmanager to retry."
                );
                st.metrics.request(StatusCode::SERVICE_UNAVAILABLE);
                return json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "error": "queue full, retry later" }),
                );
            }
        }
    }
    st.metrics.request(StatusCode::OK);
    json_reply(
        StatusCode::OK,
        serde_json::json!({ "accepted": n, "duplicates": dups }),
    )
}

async fn metrics_handler(State(st): State<AppState>) -> Response {
    use std::fmt::Write;
    let mut text = st.metrics.render();
    let _ = writeln!(
        text,
        "# HELP leakhound_webhook_dedup_entries Delivered alerts remembered for de-duplication."
    );
    let _ = writeln!(text, "# TYPE leakhound_webhook_dedup_entries gauge");
    let _ = writeln!(text, "leakhound_webhook_dedup_entries {}", st.dedup.len());
    if let Some(extra) = &st.extra_metrics {
        text.push_str(&(extra.0)().await);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn healthz(State(st): State<AppState>) -> Response {
    if st.tx.is_closed() {
        (StatusCode::SERVICE_UNAVAILABLE, "worker stopped\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// How long decided rows may wait in memory before they are written (they are logged at once).
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// ... or how many.
const FLUSH_ROWS: usize = 2048;

/// The worker: handles queued deliveries in order with one engine; writes the audit rows in
/// batches (every `FLUSH_EVERY` or `FLUSH_ROWS`, and at shutdown), so a burst costs a few
/// Parquet files, not one per delivery.
async fn worker(
    mut rx: mpsc::Receiver<Job>,
    mut engine: Engine,
    dedup: Arc<Dedup>,
    metrics: Arc<Metrics>,
) -> Engine {
    let mut last_flush = Instant::now();
    loop {
        let next = if engine.audit().pending().is_empty() {
            rx.recv().await
        } else {
            let left = FLUSH_EVERY.saturating_sub(last_flush.elapsed());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    flush(&mut engine, &metrics).await;
                    last_flush = Instant::now();
                    continue;
                }
            }
        };
        let Some(first) = next else { break };
        let mut jobs = vec![first];
        while jobs.len() < 512 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        for job in jobs {
            metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            let (mut unmapped, mut first_unmapped, mut replayed) = (0usize, None, 0usize);
            for (key, alert) in job.alerts {
                metrics.alerts_processed.fetch_add(1, Ordering::Relaxed);
                if !alert.firing() {
                    metrics.alerts_resolved.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let trigger = match alert.trigger() {
                    Ok(t) => t,
                    Err(why) => {
                        unmapped += 1;
                        first_unmapped.get_or_insert(why);
                        metrics.alerts_unmapped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let h = engine.handle(&trigger).await;
                if h.records.is_empty() && h.replayed > 0 {
                    replayed += 1;
                }
                if let Ok(mut m) = metrics.actions.lock() {
                    for r in &h.records {
                        *m.entry((r.action.clone(), r.outcome.as_str())).or_default() += 1;
                    }
                }
                if h.pending_retry() {
                    dedup.release(&key);
                }
            }
            // One line per delivery, however many alerts it carried.
            if let Some(why) = first_unmapped {
                tracing::warn!(alerts = unmapped, first = %why, "Ignored alerts that name no target.");
            }
            if replayed > 0 {
                tracing::info!(
                    alerts = replayed,
                    "Alerts already acted on (replays): nothing done."
                );
            }
        }
        if engine.audit().pending().len() >= FLUSH_ROWS || last_flush.elapsed() >= FLUSH_EVERY {
            flush(&mut engine, &metrics).await;
            last_flush = Instant::now();
        }
    }
    flush(&mut engine, &metrics).await;
    engine
}

async fn flush(engine: &mut Engine, metrics: &Metrics) {
    if let Err(e) = engine.flush().await {
        metrics.flush_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "Failed to write the actions table; rows kept for the next flush.");
    }
}

/// A bound receiver, ready to run.
pub struct Server {
    listener: TcpListener,
    cfg: ServerConfig,
    engine: Engine,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("cfg", &self.cfg).finish()
    }
}

/// What a server did, once stopped.
#[derive(Debug)]
pub struct Stopped {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
}

pub(crate) fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
        files, None,
    )?)))
}

/// A TLS server configuration that, with `client_ca`, requires a client certificate chaining
/// to one of the PEM file's certificates (mTLS); clients without one, or with another CA's,
/// fail the handshake.
pub(crate) fn tls_config(
    files: &TlsFiles,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, reason: String| Error::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, e.to_string()))? {
                roots
                    .add(c.map_err(|e| bad(ca, e.to_string()))?)
                    .map_err(|e| bad(ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad(ca, "no CA certificate in the file".into()));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| bad(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.cert, e.to_string()))
}

impl Server {
    pub async fn bind(addr: SocketAddr, cfg: ServerConfig, engine: Engine) -> Result<Server> {
        if let Some(t) = &cfg.tls {
            tls_acceptor(t)?; // fail at start, not at the first connection
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Server(format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            listener,
            cfg,
            engine,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Server(e.to_string()))
    }

    /// Serve until `shutdown` completes, then finish the queued work and flush the audit log.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<Stopped> {
        let Server {
            listener,
            cfg,
            engine,
        } = self;
        let metrics = Arc::new(Metrics::default());
        let dedup = Arc::new(Dedup::new(cfg.dedup_max, cfg.dedup_ttl));
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        // The worker runs on a thread and runtime of its own: deciding, calling the API server
        // and writing Parquet must never take the threads that answer webhooks and /healthz.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (wd, wm) = (dedup.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("leakhound-actuate-worker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let out = rt
                    .map(|rt| rt.block_on(worker(rx, engine, wd, wm)))
                    .map_err(|e| Error::Server(format!("worker runtime: {e}")));
                let _ = done_tx.send(out);
            })
            .map_err(|e| Error::Server(format!("worker thread: {e}")))?;
        let state = AppState {
            extra_metrics: cfg.extra_metrics.clone(),
            auth: Arc::new(cfg.auth.clone()),
            body_limit: cfg.body_limit,
            dedup,
            tx,
            metrics: metrics.clone(),
        };
        let hook = Router::new()
            .route(&cfg.path, post(webhook))
            .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
        let mut app = Router::new()
            .merge(hook)
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(healthz))
            .with_state(state.clone());
        if let Some(pages) = cfg.pages.clone() {
            app = app.merge(pages.route_layer(middleware::from_fn_with_state(state, require_auth)));
        }
        let acceptor = match &cfg.tls {
            Some(files) => Some(tls_acceptor(files)?),
            None => None,
        };
        // The connections' handles on the queue go with them, so the worker sees the end of
        // the queue once it has drained it.
        conns::serve(listener, app, acceptor, cfg.limits, shutdown).await;
        let engine = done_rx
            .await
            .map_err(|_| Error::Server("the worker thread ended without its engine".into()))??;
        Ok(Stopped { engine, metrics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_are_checked() {
        let mut h = HeaderMap::new();
        let bearer = Auth::Bearer("s3cret".into());
        assert!(!bearer.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(bearer.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!bearer.allows(&h));
        let basic = Auth::Basic {
            user: "am".into(),
            password: "pw".into(),
        };
        let enc = base64::engine::general_purpose::STANDARD.encode("am:pw");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap(),
        );
        assert!(basic.allows(&h));
        assert!(!bearer.allows(&h));
        let enc = base64::engine::general_purpose::STANDARD.encode("am:px");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap(),
        );
        assert!(!basic.allows(&h));
    }

    #[test]
    fn dedup_claims_once_until_released() {
        let d = Dedup::new(10, Duration::from_secs(60));
        assert!(d.claim("k"));
        assert!(!d.claim("k"));
        d.release("k");
        assert!(d.claim("k"));
    }

    #[test]
    fn dedup_is_bounded_and_forgets_the_oldest_and_the_expired() {
        let d = Dedup::new(1000, Duration::from_secs(60));
        for i in 0..5000 {
            assert!(d.claim(&format!("k{i}")));
        }
        assert_eq!(d.len(), 1000);
        assert!(d.claim("k0"), "the oldest key is forgotten at the cap");
        assert!(!d.claim("k4999"), "a recent key is remembered");
        let d = Dedup::new(10, Duration::ZERO);
        assert!(d.claim("k"));
        assert!(d.claim("k"), "an expired key is claimable again");
    }

    #[test]
    fn content_type_must_be_json() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(is_json(&h), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonp",
            "application/x-www-form-urlencoded",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            assert!(!is_json(&h), "{bad}");
        }
    }
}
