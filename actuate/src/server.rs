//! `leakhound serve`: the Alertmanager webhook receiver.
//!
//! ```text
//!  POST /alertmanager ─ auth (bearer | basic, constant-time; 401) ─ body limit (413)
//!     ─ parse v4 (400: Alertmanager does not retry 4xx) ─ de-dup per alert on
//!       group key + fingerprint + startsAt + status ─ bounded queue (full: 503, retried)
//!     ─ 200 at once
//!  worker: queue ─▶ Engine (one task: decisions are serialised) ─▶ actions table
//!  GET /metrics (Prometheus text) · GET /healthz
//! ```
//!
//! A delivery whose actions were deferred or failed for a reason that may pass is forgotten by
//! the de-dup set once handled, so Alertmanager's next repeat tries again; the engine's own
//! idempotency keeps everything already done from being done twice. Nothing in a payload is
//! fetched.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::alertmanager::{Alert, Payload};
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

    fn allows(&self, headers: &HeaderMap) -> bool {
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
    /// Path of the webhook.
    pub path: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: Auth::None,
            tls: None,
            body_limit: 1 << 20,
            queue: 1024,
            dedup_ttl: Duration::from_secs(24 * 3600),
            path: "/alertmanager".into(),
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

/// Delivery keys seen recently.
#[derive(Debug)]
struct Dedup {
    seen: Mutex<HashMap<String, Instant>>,
    ttl: Duration,
}

impl Dedup {
    /// True when `key` is new (and now claimed).
    fn claim(&self, key: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        let now = Instant::now();
        if seen.len() > 100_000 {
            let ttl = self.ttl;
            seen.retain(|_, t| now.duration_since(*t) < ttl);
        }
        match seen.get(key) {
            Some(t) if now.duration_since(*t) < self.ttl => false,
            _ => {
                seen.insert(key.to_string(), now);
                true
            }
        }
    }

    fn release(&self, key: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(key);
        }
    }
}

struct Job {
    alerts: Vec<(String, Alert)>,
}

#[derive(Clone)]
struct AppState {
    auth: Arc<Auth>,
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

async fn webhook(State(st): State<AppState>, body: Bytes) -> Response {
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
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
            for (key, alert) in job.alerts {
                metrics.alerts_processed.fetch_add(1, Ordering::Relaxed);
                if !alert.firing() {
                    metrics.alerts_resolved.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let trigger = match alert.trigger() {
                    Ok(t) => t,
                    Err(why) => {
                        tracing::warn!(reason = %why, "Ignored an alert that names no target.");
                        metrics.alerts_unmapped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let h = engine.handle(&trigger).await;
                if let Ok(mut m) = metrics.actions.lock() {
                    for r in &h.records {
                        *m.entry((r.action.clone(), r.outcome.as_str())).or_default() += 1;
                    }
                }
                if h.pending_retry() {
                    dedup.release(&key);
                }
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

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor> {
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
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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
        let dedup = Arc::new(Dedup {
            seen: Mutex::new(HashMap::new()),
            ttl: cfg.dedup_ttl,
        });
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let work = tokio::spawn(worker(rx, engine, dedup.clone(), metrics.clone()));
        let state = AppState {
            auth: Arc::new(cfg.auth.clone()),
            dedup,
            tx,
            metrics: metrics.clone(),
        };
        let hook = Router::new()
            .route(&cfg.path, post(webhook))
            .layer(DefaultBodyLimit::max(cfg.body_limit))
            .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
        let app = Router::new()
            .merge(hook)
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(healthz))
            .with_state(state);
        match &cfg.tls {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .map_err(|e| Error::Server(e.to_string()))?;
            }
            Some(files) => {
                let acceptor = tls_acceptor(files)?;
                let mut shutdown = std::pin::pin!(shutdown);
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        () = &mut shutdown => break,
                        r = listener.accept() => {
                            let Ok((stream, _)) = r else { continue };
                            let acceptor = acceptor.clone();
                            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                            conns.spawn(async move {
                                let Ok(tls) = acceptor.accept(stream).await else { return };
                                let _ = hyper_util::server::conn::auto::Builder::new(
                                    hyper_util::rt::TokioExecutor::new(),
                                )
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await;
                            });
                        }
                        // Reap finished connections as we go.
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    }
                }
                drop(listener);
                // Requests in flight get a moment; idle keep-alive connections are then closed
                // (a client reconnects). Their handles on the queue go with them, so the worker
                // sees the end of the queue once it has drained it.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while conns.join_next().await.is_some() {}
                })
                .await;
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                drop(app);
            }
        }
        let engine = work
            .await
            .map_err(|e| Error::Server(format!("worker task: {e}")))?;
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
        let d = Dedup {
            seen: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(60),
        };
        assert!(d.claim("k"));
        assert!(!d.claim("k"));
        d.release("k");
        assert!(d.claim("k"));
    }
}
