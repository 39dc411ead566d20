//! `leakhound serve --push-listen ADDR`: the gRPC service the Go agent (`agent/push`) streams
//! its snapshots to, on a listener of its own (the webhook's stays as it is).
//!
//! ```text
//!  agent ── Stream(stream Snapshot) ─▶ auth (the webhook's: bearer | basic, constant time;
//!           UNAUTHENTICATED)  ─ TLS: the push listener's (`--push-tls-cert/-key`), else the
//!           webhook's; mTLS with `--push-client-ca`: the handshake requires a client
//!           certificate chaining to that CA, and such a client needs no token
//!    per stream: reads at most `credit` snapshots ahead of their acknowledgements (beyond
//!    that it stops reading: HTTP/2 flow control holds the agent), checks each one's shape
//!    (REJECTED for good: the agent drops it) ─▶ the landing queue (bounded: a full queue
//!    holds every stream)
//!  lander (one task): takes what is queued, up to `max_batch`, waits `batch_wait` for more
//!    ─ ingest::push::Lander::land: duplicates by seq (and by key after a crash), fold, one
//!      commit through the ingest writer, then _state/push.json
//!    ─ replies ─▶ each stream sends Control{ack_seq, credit, want_debug2, lamport,
//!      min_interval_ms (the queue is 3/4 full: capture less often)} in order
//! ```
//!
//! Acknowledgements come after the commit only, so what the agent drops from its buffer is in
//! the store; what it resends after a reconnect or a restart of `serve` is recognised (see
//! `leakhound_ingest::push`). The proto is `proto/leakhound/push/v1/push.proto`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use leakhound_ingest::Store;
use leakhound_ingest::context::ContainerContext;
use leakhound_ingest::push::{LandOptions, Lander, Outcome, Pushed, Reply};
use leakhound_ingest::rows::Target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::server::{Auth, TlsFiles};

/// The generated messages and service (`build.rs`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("leakhound.push.v1");
}

use pb::push_server::{Push, PushServer as PushService};

#[derive(Debug, Clone)]
pub struct PushConfig {
    pub auth: Auth,
    pub tls: Option<TlsFiles>,
    /// With `tls`: require client certificates chaining to this PEM file's CAs (mTLS). Every
    /// connection is then a verified client, and `auth` is not asked.
    pub client_ca: Option<std::path::PathBuf>,
    /// Snapshots an agent may have unacknowledged.
    pub credit: u32,
    /// Snapshots landed in one commit at most.
    pub max_batch: usize,
    /// How long the lander waits for more snapshots before committing what it has.
    pub batch_wait: Duration,
    /// Snapshots waiting for the lander, all streams together.
    pub queue: usize,
    /// Largest snapshot message, bytes.
    pub max_message: usize,
    pub land: LandOptions,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            auth: Auth::None,
            tls: None,
            client_ca: None,
            credit: 8,
            max_batch: 512,
            batch_wait: Duration::from_millis(50),
            queue: 4096,
            max_message: 32 << 20,
            land: LandOptions::default(),
        }
    }
}

impl PushConfig {
    /// The TLS files (and client CA) load: what `bind` checks first, for `--check-config`.
    pub fn validate(&self) -> Result<()> {
        match (&self.tls, &self.client_ca) {
            (Some(t), ca) => crate::server::tls_config(t, ca.as_deref()).map(drop),
            (None, Some(_)) => Err(Error::Server(
                "push: a client CA needs TLS (a certificate and key)".into(),
            )),
            (None, None) => Ok(()),
        }
    }
}

/// Counters of a run (also logged when it stops).
#[derive(Debug, Default)]
pub struct PushMetrics {
    pub landed: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
    pub commit_errors: AtomicU64,
    pub streams: AtomicU64,
    pub unauthenticated: AtomicU64,
}

struct Job {
    snap: Pushed,
    reply: oneshot::Sender<std::result::Result<Reply, String>>,
}

/// The landing task: groups what is queued into commits.
async fn lander(
    mut lander: Lander,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    wait: Duration,
    metrics: Arc<PushMetrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + wait;
        while jobs.len() < max_batch.max(1) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) | Err(_) => break,
            }
        }
        let snaps: Vec<Pushed> = jobs.iter().map(|j| j.snap.clone()).collect();
        match lander.land(&snaps).await {
            Ok((replies, _stats)) => {
                metrics.commits.fetch_add(1, Ordering::Relaxed);
                for (j, r) in jobs.into_iter().zip(replies) {
                    let c = match &r.outcome {
                        Outcome::Landed => &metrics.landed,
                        Outcome::Duplicate => &metrics.duplicates,
                        Outcome::Rejected(_) => &metrics.rejected,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    let _ = j.reply.send(Ok(r));
                }
            }
            Err(e) => {
                metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, snapshots = jobs.len(), "Failed to land pushed snapshots; the agents resend them.");
                let msg = e.to_string();
                for j in jobs {
                    let _ = j.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

#[derive(Clone)]
struct Svc {
    auth: Arc<Auth>,
    jobs: mpsc::Sender<Job>,
    queue: usize,
    credit: u32,
    metrics: Arc<PushMetrics>,
}

const MAX_ID: usize = 256;
const MAX_NAME: usize = 253;

fn text(what: &str, s: &str, max: usize, required: bool) -> std::result::Result<(), String> {
    if required && s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > max {
        return Err(format!("{what} is longer than {max} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} has control characters"));
    }
    Ok(())
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A snapshot's shape: identity, numbers, sizes. Its bodies are parsed by the lander.
fn check(s: pb::Snapshot) -> std::result::Result<Pushed, String> {
    text("agent_id", &s.agent_id, MAX_ID, true)?;
    if s.seq == 0 {
        return Err("seq starts at 1".into());
    }
    let t = s.target.ok_or("no target")?;
    for (what, v, req) in [
        ("namespace", &t.namespace, true),
        ("pod", &t.pod, true),
        ("cluster", &t.cluster, false),
        ("workload_kind", &t.workload_kind, false),
        ("workload", &t.workload, false),
        ("container", &t.container, false),
        ("node", &t.node, false),
        ("instance", &t.instance, false),
    ] {
        text(what, v, MAX_NAME, req)?;
    }
    // Not before 2000, not more than a day ahead of this clock.
    let now = chrono::Utc::now().timestamp_micros();
    if s.captured_unix_us < 946_684_800_000_000 || s.captured_unix_us > now + 86_400_000_000 {
        return Err(format!(
            "captured_unix_us {} is not a plausible time",
            s.captured_unix_us
        ));
    }
    if s.debug1.is_empty() {
        return Err("no debug=1 profile".into());
    }
    let c = s.context.unwrap_or_default();
    let nn = |what: &str, v: Option<i64>| match v {
        Some(v) if v < 0 => Err(format!("context {what} is negative")),
        v => Ok(v),
    };
    let context = ContainerContext {
        mem_current_bytes: nn("memory_current_bytes", c.memory_current_bytes)?,
        mem_max_bytes: nn("memory_max_bytes", c.memory_max_bytes)?,
        cpu_throttled_us: nn("cpu_throttled_usec", c.cpu_throttled_usec)?,
        pids_current: nn("pids_current", c.pids_current)?,
        os_threads: nn("threads", c.threads)?,
        rss_bytes: nn("vm_rss_bytes", c.vm_rss_bytes)?,
    };
    Ok(Pushed {
        agent_id: s.agent_id,
        seq: s.seq,
        lamport: s.lamport,
        ts_us: s.captured_unix_us,
        target: Target {
            cluster: opt(t.cluster),
            namespace: t.namespace,
            workload_kind: opt(t.workload_kind),
            workload: opt(t.workload),
            pod: t.pod,
            container: opt(t.container),
            node: opt(t.node),
            instance: opt(t.instance),
        },
        debug1: s.debug1.into(),
        debug2: (!s.debug2.is_empty()).then(|| s.debug2.into()),
        context,
        process_start_us: (s.process_start_unix_us > 0).then_some(s.process_start_unix_us),
    })
}

type Replies = Pin<Box<dyn Future<Output = (u64, std::result::Result<Reply, String>)> + Send>>;

#[tonic::async_trait]
impl Push for Svc {
    type StreamStream = ReceiverStream<std::result::Result<pb::Control, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<pb::Snapshot>>,
    ) -> std::result::Result<Response<Self::StreamStream>, Status> {
        let headers = req.metadata().clone().into_headers();
        if !self.auth.allows(&headers) {
            self.metrics.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return Err(Status::unauthenticated("credentials required"));
        }
        self.metrics.streams.fetch_add(1, Ordering::Relaxed);
        let mut inbound = req.into_inner();
        let credit = self.credit.max(1);
        let (out, out_rx) = mpsc::channel(credit as usize + 4);
        let svc = self.clone();
        tokio::spawn(async move {
            let control = |r: &Reply, slow: bool| pb::Control {
                ack_seq: r.acked_seq,
                credit,
                want_debug2: r.want_debug2,
                lamport: r.lamport,
                min_interval_ms: if slow { 30_000 } else { 0 },
                rejected: match &r.outcome {
                    Outcome::Rejected(why) => why.clone(),
                    _ => String::new(),
                },
                rejected_seq: 0,
            };
            let hello = pb::Control {
                credit,
                ..Default::default()
            };
            if out.send(Ok(hello)).await.is_err() {
                return;
            }
            let mut pending: FuturesOrdered<Replies> = FuturesOrdered::new();
            let mut reading = true;
            loop {
                tokio::select! {
                    Some((seq, r)) = pending.next(), if !pending.is_empty() => {
                        let msg = match r {
                            Ok(mut r) => {
                                let slow = svc.jobs.capacity() < svc.queue / 4;
                                if let Outcome::Rejected(_) = r.outcome {
                                    r.acked_seq = r.acked_seq.max(seq);
                                }
                                let mut c = control(&r, slow);
                                if !c.rejected.is_empty() {
                                    c.rejected_seq = seq;
                                }
                                Ok(c)
                            }
                            // The commit failed: end the stream; the agent reconnects and
                            // resends what is unacknowledged.
                            Err(e) => Err(Status::unavailable(format!("landing failed: {e}"))),
                        };
                        let end = msg.is_err();
                        if out.send(msg).await.is_err() || end {
                            return;
                        }
                    }
                    m = inbound.message(), if reading && pending.len() < credit as usize => match m {
                        Ok(Some(snap)) => {
                            let seq = snap.seq;
                            match check(snap) {
                                Ok(p) => {
                                    let (tx, rx) = oneshot::channel();
                                    if svc.jobs.send(Job { snap: p, reply: tx }).await.is_err() {
                                        return;
                                    }
                                    pending.push_back(Box::pin(async move {
                                        (seq, rx.await.unwrap_or_else(|_| Err("the lander stopped".into())))
                                    }));
                                }
                                Err(why) => {
                                    svc.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                                    // Out of band: the agent drops this one whatever its place.
                                    let c = pb::Control {
                                        credit,
                                        rejected: why,
                                        rejected_seq: seq,
                                        ..Default::default()
                                    };
                                    if out.send(Ok(c)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        // The agent closed its side: acknowledge what is pending, then end.
                        Ok(None) => reading = false,
                        Err(_) => return,
                    },
                    else => return,
                }
                if !reading && pending.is_empty() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

/// A connection, plain or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Io {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A bound push listener, ready to run.
pub struct PushServer {
    listener: TcpListener,
    cfg: PushConfig,
    store: Store,
}

impl std::fmt::Debug for PushServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushServer")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl PushServer {
    pub async fn bind(addr: SocketAddr, cfg: PushConfig, store: Store) -> Result<PushServer> {
        cfg.validate()?; // fail at start, not at the first connection
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Server(format!("cannot listen on {addr}: {e}")))?;
        Ok(PushServer {
            listener,
            cfg,
            store,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Server(e.to_string()))
    }

    /// Serve until `shutdown`; then land what is queued and stop.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<PushMetrics>> {
        let PushServer {
            listener,
            cfg,
            store,
        } = self;
        let lander_state = Lander::open(store, cfg.land.clone())
            .await
            .map_err(|e| Error::Server(format!("push state: {e}")))?;
        let metrics = Arc::new(PushMetrics::default());
        let (jobs, rx) = mpsc::channel(cfg.queue.max(1));
        // The lander runs on a thread and runtime of its own (as the webhook's worker does):
        // parsing and writing Parquet never take the threads that serve the streams.
        let (landed_tx, landing) = oneshot::channel::<()>();
        let (max_batch, wait, lm) = (cfg.max_batch, cfg.batch_wait, metrics.clone());
        std::thread::Builder::new()
            .name("leakhound-push-lander".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(lander(lander_state, rx, max_batch, wait, lm)),
                    Err(e) => tracing::error!(error = %e, "push: lander runtime"),
                }
                let _ = landed_tx.send(());
            })
            .map_err(|e| Error::Server(format!("push lander thread: {e}")))?;
        let svc = Svc {
            // mTLS: the handshake authenticated every client.
            auth: Arc::new(if cfg.client_ca.is_some() {
                Auth::None
            } else {
                cfg.auth.clone()
            }),
            jobs,
            queue: cfg.queue.max(1),
            credit: cfg.credit,
            metrics: metrics.clone(),
        };
        let acceptor = match &cfg.tls {
            Some(t) => {
                let mut c = crate::server::tls_config(t, cfg.client_ca.as_deref())?;
                // gRPC is HTTP/2: clients (grpc-go since 1.67) insist on ALPN h2.
                c.alpn_protocols = vec![b"h2".to_vec()];
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(c)))
            }
            None => None,
        };
        // Connections (TLS handshakes each on a task of their own, under a timeout).
        let (conn_tx, conn_rx) = mpsc::channel::<std::io::Result<Io>>(64);
        let am = metrics.clone();
        let accepting = tokio::spawn(async move {
            loop {
                let (s, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "push: accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = s.set_nodelay(true);
                match &acceptor {
                    None => {
                        if conn_tx.send(Ok(Io::Plain(s))).await.is_err() {
                            return;
                        }
                    }
                    Some(a) => {
                        let (a, tx, m) = (a.clone(), conn_tx.clone(), am.clone());
                        tokio::spawn(async move {
                            match tokio::time::timeout(Duration::from_secs(10), a.accept(s)).await {
                                Ok(Ok(t)) => {
                                    let _ = tx.send(Ok(Io::Tls(Box::new(t)))).await;
                                }
                                // A refused client certificate (mTLS), or no TLS at all.
                                Ok(Err(e)) => {
                                    m.unauthenticated.fetch_add(1, Ordering::Relaxed);
                                    tracing::debug!(error = %e, "push: TLS handshake failed");
                                }
                                Err(_) => {}
                            }
                        });
                    }
                }
            }
        });
        let service = PushService::new(svc)
            .max_decoding_message_size(cfg.max_message)
            .max_encoding_message_size(64 << 10);
        let served = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(service)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), shutdown)
            .await;
        accepting.abort();
        // The streams' handles on the queue went with them: the lander drains it and ends.
        let _ = tokio::time::timeout(Duration::from_secs(30), landing).await;
        served.map_err(|e| Error::Server(format!("push: {e}")))?;
        tracing::info!(
            landed = metrics.landed.load(Ordering::Relaxed),
            duplicates = metrics.duplicates.load(Ordering::Relaxed),
            rejected = metrics.rejected.load(Ordering::Relaxed),
            commits = metrics.commits.load(Ordering::Relaxed),
            "Push listener stopped."
        );
        Ok(metrics)
    }
}
