//! The receiver's connections: accepted always (so `/healthz` is answered however many clients
//! hold sockets open), bounded in number, timed out when silent.
//!
//! ```text
//!  accept ─ over max_connections? close the oldest connection with no request in flight
//!         ─ TLS handshake within header_timeout
//!         ─ hyper: request headers within header_timeout (HTTP/1: its timer also runs while a
//!           kept-alive connection waits for its next request)
//!         ─ no request in flight for idle_timeout (HTTP/2 too): closed
//! ```
//!
//! Why not `axum::serve`: it has no connection cap and no header timeout, and a listener that
//! stops accepting at a cap lets idle sockets fill the backlog in front of the health probe.
//! Idle connections are the ones an attacker can hold for free; a connection whose request is
//! being handled is never closed here (a burst of real work is bounded by the queue, not by
//! closing sockets under it).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Bounds on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at most; at the cap, a new one closes the oldest idle one.
    pub max_connections: usize,
    /// TLS handshake and request headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// One open connection, as the table sees it.
#[derive(Debug)]
struct Conn {
    inflight: AtomicUsize,
    /// Milliseconds since the table's epoch of the last request's end (or the accept).
    last_active_ms: AtomicU64,
    close: Notify,
}

/// Open connections in accept order; what the cap closes.
#[derive(Debug)]
struct Table {
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
    order: VecDeque<u64>,
}

impl Table {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Register a new connection; at the cap, first close the oldest idle one. `None` when
    /// every open connection is busy (the new one is then dropped: a client retries).
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.open.len() >= max {
            // Each id is looked at once per admission at most: busy ones go to the back.
            let mut budget = g.order.len();
            let mut freed = false;
            while budget > 0 {
                budget -= 1;
                let Some(id) = g.order.pop_front() else { break };
                let Some(c) = g.open.get(&id).cloned() else {
                    continue; // already closed
                };
                if c.inflight.load(Ordering::Acquire) > 0 {
                    g.order.push_back(id);
                    continue;
                }
                g.open.remove(&id);
                c.close.notify_one();
                freed = true;
                break;
            }
            if !freed {
                return None;
            }
        }
        let id = g.next;
        g.next += 1;
        let c = Arc::new(Conn {
            inflight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        g.open.insert(id, c.clone());
        g.order.push_back(id);
        Some((id, c))
    }

    fn remove(&self, id: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.open.remove(&id);
        // Drop closed ids from the front so the queue does not grow with closed connections.
        while let Some(front) = g.order.front() {
            if g.open.contains_key(front) {
                break;
            }
            g.order.pop_front();
        }
        if g.order.len() > 2 * g.open.len() + 64 {
            let open = std::mem::take(&mut g.open);
            g.order.retain(|i| open.contains_key(i));
            g.open = open;
        }
    }

    fn len(&self) -> usize {
        self.inner.lock().map(|g| g.open.len()).unwrap_or(0)
    }
}

/// Counts a request in flight on its connection until its response is produced.
struct InFlight {
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .last_active_ms
            .store(self.table.now_ms(), Ordering::Release);
        self.conn.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as a hyper service that marks its connection busy per request.
#[derive(Clone)]
struct Counted {
    app: Router,
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Counted {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.conn.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight {
            conn: self.conn.clone(),
            table: self.table.clone(),
        };
        let app = self.app.clone();
        Box::pin(async move {
            let _guard = guard;
            let req = req.map(axum::body::Body::new);
            let resp = tower::ServiceExt::oneshot(app, req).await;
            // Router's error type is Infallible.
            Ok(match resp {
                Ok(r) => r,
                Err(e) => match e {},
            })
        })
    }
}

/// Resolves once `conn` has had no request in flight for `idle`.
async fn idle_for(table: &Table, conn: &Conn, idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let last = conn.last_active_ms.load(Ordering::Acquire);
        let quiet = table.now_ms().saturating_sub(last);
        if conn.inflight.load(Ordering::Acquire) == 0 && quiet >= idle_ms {
            return;
        }
        let wait = idle_ms.saturating_sub(quiet).max(50);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Serve `app` on `listener` until `shutdown`, within `limits`; with `tls`, HTTPS. Then give
/// requests in flight a moment (2 s) and close the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let table = Arc::new(Table {
        epoch: Instant::now(),
        inner: Mutex::new(Inner::default()),
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let stop = Arc::new(Notify::new());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => {
                let stream = match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of file descriptors or a reset before accept: keep serving.
                        tracing::warn!(error = %e, open = table.len(), "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Some((id, conn)) = table.admit(limits.max_connections.max(1)) else {
                    tracing::warn!(open = table.len(), "Every connection is busy; closed a new one.");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (table, builder, tls, stop) =
                    (table.clone(), builder.clone(), tls.clone(), stop.clone());
                let svc = Counted { app: app.clone(), conn: conn.clone(), table: table.clone() };
                conns.spawn(async move {
                    let serve = async {
                        match tls {
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                            Some(acceptor) => {
                                let Ok(Ok(s)) = tokio::time::timeout(
                                    limits.header_timeout,
                                    acceptor.accept(stream),
                                ).await else {
                                    return;
                                };
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        () = conn.close.notified() => {}
                        () = idle_for(&table, &conn, limits.idle_timeout) => {}
                        () = stop.notified() => {}
                    }
                    table.remove(id);
                });
            }
            // Reap finished connections as we go.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Requests in flight get a moment; idle connections are closed at once (a client
    // reconnects). Their handles on the app go with them.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let busy = {
                let g = table.inner.lock().unwrap_or_else(|e| e.into_inner());
                g.open
                    .values()
                    .any(|c| c.inflight.load(Ordering::Acquire) > 0)
            };
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    stop.notify_waiters();
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    #[test]
    fn the_cap_closes_the_oldest_idle_connection_never_a_busy_one() {
        let t = table();
        let (a, ca) = t.admit(2).unwrap();
        let (_b, cb) = t.admit(2).unwrap();
        ca.inflight.store(1, Ordering::Release); // a is busy
        let (_c, _) = t.admit(2).unwrap();
        // b (idle) was closed, not a (busy, older).
        assert_eq!(t.len(), 2);
        let g = t.inner.lock().unwrap();
        assert!(g.open.contains_key(&a));
        drop(g);
        // b's task is told to close.
        let notified = cb.close.notified();
        futures::pin_mut!(notified);
        assert!(futures::FutureExt::now_or_never(notified).is_some());
        // Everything busy: a new connection is refused.
        let t = table();
        let (_, c1) = t.admit(1).unwrap();
        c1.inflight.store(1, Ordering::Release);
        assert!(t.admit(1).is_none());
    }

    #[test]
    fn the_order_queue_does_not_grow_with_closed_connections() {
        let t = table();
        for _ in 0..10_000 {
            let (id, _) = t.admit(100).unwrap();
            t.remove(id);
        }
        let g = t.inner.lock().unwrap();
        assert!(
            g.open.is_empty() && g.order.len() <= 64,
            "{}",
            g.order.len()
        );
    }
}
