//! Push mode (issue 20): the real agentleaky (`tests/goprogs/cmd/agentleaky`, agent/push)
//! streams its snapshots over gRPC into a real `leakhound serve --push-listen`.
//!
//! - The rows of pull (`leakhound ingest` scraping the same process with its token) and push
//!   for the same moments are equal (the leaked stack's samples: format, stack id, count,
//!   pprof labels); a wrong push token is refused (UNAUTHENTICATED) and lands nothing.
//! - `serve` killed (SIGKILL) mid-stream and restarted, and crashed exactly between a commit
//!   and the save of its push state (`LEAKHOUND_FAULT=after-commit`): every snapshot the agent
//!   took is in the store once.
//! - mTLS (`serve --push-tls-cert/--push-tls-key/--push-client-ca`): an agent with a client
//!   certificate of the CA lands its rows without a token; one without a certificate (even
//!   with the right token) or with another CA's is refused at the handshake and lands nothing.
//! - The network dropped by [`FaultProxy`] (a loopback TCP proxy the test controls: it cuts
//!   every connection and refuses new ones until told): nothing lost, nothing doubled.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::AgentLeaky;
use crate::support::*;

/// A running `leakhound serve` with a push listener.
pub(crate) struct PushServe {
    child: Child,
    pub(crate) push: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl PushServe {
    pub(crate) fn start(
        store: &str,
        token: &Path,
        push_listen: &str,
        env: &[(&str, &str)],
    ) -> PushServe {
        Self::start_args(store, token, push_listen, &[], env)
    }

    /// `start` with more arguments for `serve`.
    pub(crate) fn start_args(
        store: &str,
        token: &Path,
        push_listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> PushServe {
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                store,
                "--bearer-token-file",
                token.to_str().unwrap(),
                "--push-listen",
                push_listen,
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("LEAKHOUND_STORE")
            .env_remove("LEAKHOUND_FAULT")
            .env_remove("KUBECONFIG")
            .env_remove("LEAKHOUND_KUBECONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start leakhound serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on "), "{line:?}");
        line.clear();
        out.read_line(&mut line).unwrap();
        let push = line
            .trim()
            .strip_prefix("push listening on http://")
            .or_else(|| line.trim().strip_prefix("push listening on https://"))
            .unwrap_or_else(|| panic!("unexpected second line from serve: {line:?}"))
            .to_string();
        PushServe {
            child,
            push,
            _stdout: out,
        }
    }

    /// SIGKILL.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for PushServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn curl(method: &str, url: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-X", method, url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "{method} {url} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stats(app: &AgentLeaky) -> serde_json::Value {
    curl("GET", &format!("{}/push/stats", app.url))
}

pub(crate) fn stat(app: &AgentLeaky, k: &str) -> u64 {
    stats(app)[k].as_u64().unwrap_or(0)
}

fn start_pusher(token: &Path, push_token: &Path, addr: &str, pod: &str, every: &str) -> AgentLeaky {
    AgentLeaky::start(&[
        "-token-file",
        token.to_str().unwrap(),
        "-leak",
        "25",
        "-push",
        addr,
        "-push-token-file",
        push_token.to_str().unwrap(),
        "-push-interval",
        every,
        "-pod",
        pod,
    ])
}

/// The leaked stack's sample rows of `pod`, per snapshot in time order:
/// `rank|format|stack_id|goroutines|labels`.
fn leaked_rows(store: &str, pod: &str) -> Vec<String> {
    sql_json(
        store,
        &format!(
            "SELECT DENSE_RANK() OVER (ORDER BY g.ts) AS rank, g.format, g.stack_id, g.goroutines, \
             g.labels FROM goroutine_samples g \
             JOIN (SELECT DISTINCT stack_id, top_function FROM stacks) s ON g.stack_id = s.stack_id \
             WHERE s.top_function = 'main.leakOrderResult' AND g.pod = '{pod}' \
             ORDER BY rank, g.format, g.labels"
        ),
    )
    .iter()
    .map(|r| {
        format!(
            "{}|{}|{}|{}|{}",
            r["rank"], r["format"], r["stack_id"], r["goroutines"], r["labels"]
        )
    })
    .collect()
}

#[test]
fn pull_and_push_land_equal_rows_and_a_wrong_push_token_lands_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "agent-token-pp\n");
    let push_token = dir.path().join("push-token");
    write(&push_token, "push-token-5e1\n");
    let wrong = dir.path().join("wrong");
    write(&wrong, "push-token-5e2\n");
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let serve = PushServe::start(store, &push_token, "127.0.0.1:0", &[]);
    let app = start_pusher(&token, &push_token, &serve.push, "orders-push", "0");
    let targets = dir.path().join("targets.json");
    write(
        &targets,
        serde_json::json!([{"url": app.url, "namespace": "shop", "pod": "orders-pull",
                            "bearer_token_file": token}])
        .to_string(),
    );
    // Three moments: a pull pass and a push capture each (the leak does not change between).
    for _ in 0..3 {
        ok(&[
            "ingest",
            "--store",
            store,
            "--targets-file",
            targets.to_str().unwrap(),
            "--passes",
            "1",
        ]);
        curl("POST", &format!("{}/push/capture", app.url));
    }
    wait_until("the pushes acknowledged", Duration::from_secs(30), || {
        stat(&app, "Acked") == 3
    });
    let pull = leaked_rows(store, "orders-pull");
    let push = leaked_rows(store, "orders-push");
    // A debug=2 at the first moment (both sides start the goroutine-id tracking there), then
    // debug=1: 4 rows each.
    assert_eq!(pull.len(), 4, "{pull:#?}");
    assert_eq!(pull, push);
    assert!(
        pull[0].contains("|\"debug1\"|") && pull[1].contains("|\"debug2\"|"),
        "{pull:#?}"
    );
    assert!(pull.iter().all(|r| r.contains("|25|")), "{pull:#?}");
    // One count row per push, source push, with the process's context.
    let counts = sql_json(
        store,
        "SELECT COUNT(*) AS n, MIN(source) AS source, MIN(os_threads) AS threads, \
         COUNT(DISTINCT ts) AS moments FROM goroutine_counts WHERE pod = 'orders-push'",
    );
    assert_eq!(counts[0]["n"], 3, "{counts:?}");
    assert_eq!(counts[0]["moments"], 3, "{counts:?}");
    assert_eq!(counts[0]["source"], "push", "{counts:?}");
    assert!(counts[0]["threads"].as_i64().unwrap() >= 2, "{counts:?}");

    // The wrong token: refused, retried, nothing lands.
    let bad = start_pusher(&token, &wrong, &serve.push, "orders-wrong", "0");
    curl("POST", &format!("{}/push/capture", bad.url));
    wait_until("the wrong token refused", Duration::from_secs(30), || {
        stats(&bad)["LastError"]
            .as_str()
            .is_some_and(|e| e.contains("Unauthenticated"))
    });
    let s = stats(&bad);
    assert_eq!(s["Acked"], 0, "{s}");
    assert_eq!(s["Buffered"], 1, "{s}");
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) FROM goroutine_counts WHERE pod = 'orders-wrong'"
        ),
        0
    );
}

/// Stop capturing, wait until the agent has every snapshot acknowledged, and check the store
/// holds each once.
fn drain_and_count(app: &AgentLeaky, store: &str, pod: &str) -> u64 {
    curl("POST", &format!("{}/push/stop", app.url));
    wait_until(
        "the agent's buffer drained",
        Duration::from_secs(60),
        || {
            let s = stats(app);
            s["Buffered"] == 0 && s["Acked"] == s["Captured"]
        },
    );
    let s = stats(app);
    let captured = s["Captured"].as_u64().unwrap();
    assert_eq!(s["Dropped"], 0, "{s}");
    let rows = sql_json(
        store,
        &format!(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT ts) AS moments, \
             (SELECT COUNT(*) FROM ingest_log WHERE pod = '{pod}' AND source = 'push') AS logged \
             FROM goroutine_counts WHERE pod = '{pod}'"
        ),
    );
    assert_eq!(
        rows[0]["n"], captured,
        "nothing lost, nothing doubled: {rows:?} {s}"
    );
    assert_eq!(rows[0]["moments"], captured, "{rows:?}");
    assert_eq!(rows[0]["logged"], captured, "{rows:?}");
    captured
}

#[test]
fn serve_killed_mid_stream_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "agent-token-kk\n");
    let push_token = dir.path().join("push-token");
    write(&push_token, "push-token-kk\n");
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // First a crash between a commit and the push state's save (the 3rd commit): the
    // acknowledgements of that commit are neither sent nor saved.
    let serve = PushServe::start(
        store,
        &push_token,
        &addr,
        &[("LEAKHOUND_FAULT", "after-commit:3")],
    );
    let app = start_pusher(&token, &push_token, &addr, "orders-kill", "20ms");
    let mut child = serve;
    let status = child.child.wait().unwrap();
    assert!(!status.success(), "serve was to crash after its 3rd commit");
    let before = stat(&app, "Acked");
    // It buffers while serve is away.
    wait_until("snapshots buffered", Duration::from_secs(30), || {
        stat(&app, "Captured") >= before + 10
    });
    drop(child);
    let serve = PushServe::start(store, &push_token, &addr, &[]);
    wait_until("pushing again", Duration::from_secs(30), || {
        stat(&app, "Acked") >= before + 30
    });
    // SIGKILL mid-stream, wherever it is.
    serve.kill();
    let acked = stat(&app, "Acked");
    wait_until("snapshots buffered", Duration::from_secs(30), || {
        stat(&app, "Captured") >= acked + 10
    });
    let _serve = PushServe::start(store, &push_token, &addr, &[]);
    wait_until("pushing again", Duration::from_secs(30), || {
        stat(&app, "Acked") >= acked + 20
    });
    let n = drain_and_count(&app, store, "orders-kill");
    assert!(n >= 60, "{n}");
}

/// A loopback TCP proxy the test controls: the fault injector for "the network dropped".
/// `cut` closes every connection through it and refuses new ones (accepted, then closed at
/// once) until `restore`.
struct FaultProxy {
    addr: String,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    fn start(upstream: String) -> FaultProxy {
        let ln = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ln.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for c in ln.incoming() {
                let Ok(c) = c else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = c.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(u) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut g = o.lock().unwrap();
                    g.push(c.try_clone().unwrap());
                    g.push(u.try_clone().unwrap());
                }
                for (mut from, mut to) in [(c.try_clone().unwrap(), u.try_clone().unwrap()), (u, c)]
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 << 10];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        FaultProxy { addr, down, open }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[test]
fn the_network_dropped_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "agent-token-nn\n");
    let push_token = dir.path().join("push-token");
    write(&push_token, "push-token-nn\n");
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let _serve_guard;
    let serve = PushServe::start(store, &push_token, "127.0.0.1:0", &[]);
    let proxy = FaultProxy::start(serve.push.clone());
    _serve_guard = serve;
    let app = start_pusher(&token, &push_token, &proxy.addr, "orders-net", "20ms");
    for round in 0..3 {
        let acked = stat(&app, "Acked");
        wait_until("pushing", Duration::from_secs(30), || {
            stat(&app, "Acked") >= acked + 15
        });
        // Cut in the middle of the traffic: snapshots in flight, acknowledgements of commits
        // lost on the way back.
        proxy.cut();
        let captured = stat(&app, "Captured");
        wait_until("the agent buffering", Duration::from_secs(30), || {
            stat(&app, "Captured") >= captured + 10
        });
        proxy.restore();
        eprintln!("round {round}: {}", stats(&app));
    }
    let n = drain_and_count(&app, store, "orders-net");
    assert!(n >= 75, "{n}");
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl; tests/run does)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `name` in `dir` (`name.pem`, `name.key`).
fn make_ca(dir: &Path, name: &str) {
    let p = |ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN=leakhound-test-{name}"),
        "-keyout",
        &p("key"),
        "-out",
        &p("pem"),
    ]);
}

/// A leaf certificate `name` signed by CA `ca`, with the extensions `ext` (`name.pem`,
/// `name.key`).
fn make_leaf(dir: &Path, ca: &str, name: &str, serial: u32, ext: &str) {
    let p = |n: &str, e: &str| dir.join(format!("{n}.{e}")).display().to_string();
    write(&dir.join(format!("{name}.ext")), ext);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &p(name, "key"),
        "-out",
        &p(name, "csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-set_serial",
        &serial.to_string(),
        "-in",
        &p(name, "csr"),
        "-CA",
        &p(ca, "pem"),
        "-CAkey",
        &p(ca, "key"),
        "-extfile",
        &p(name, "ext"),
        "-out",
        &p(name, "pem"),
    ]);
}

#[test]
fn mtls_on_the_push_listener_lands_the_cas_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    make_leaf(
        d,
        "ca",
        "server",
        2,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    let client = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
    make_leaf(d, "ca", "client", 3, client);
    make_leaf(d, "other-ca", "stranger", 4, client);
    let f = |n: &str| d.join(n).display().to_string();
    let token = d.join("token");
    write(&token, "agent-token-mtls\n");
    let push_token = d.join("push-token");
    write(&push_token, "push-token-mtls\n");
    let store = d.join("store");
    let store = store.to_str().unwrap();
    let serve = PushServe::start_args(
        store,
        &push_token,
        "127.0.0.1:0",
        &[
            "--push-tls-cert",
            &f("server.pem"),
            "--push-tls-key",
            &f("server.key"),
            "--push-client-ca",
            &f("ca.pem"),
        ],
        &[],
    );
    let agent = |pod: &str, extra: &[&str]| {
        let mut args = vec![
            "-token-file",
            token.to_str().unwrap(),
            "-leak",
            "5",
            "-push",
            &serve.push,
            "-pod",
            pod,
        ];
        args.extend_from_slice(extra);
        AgentLeaky::start(&args)
    };
    let (ca, cert, key) = (f("ca.pem"), f("client.pem"), f("client.key"));
    let (other_cert, other_key) = (f("stranger.pem"), f("stranger.key"));
    // The CA's client, no token.
    let good = agent(
        "mtls-good",
        &[
            "-push-tls-ca",
            &ca,
            "-push-tls-cert",
            &cert,
            "-push-tls-key",
            &key,
        ],
    );
    // No client certificate, the right token.
    let bare = agent(
        "mtls-nocert",
        &[
            "-push-tls-ca",
            &ca,
            "-push-token-file",
            push_token.to_str().unwrap(),
        ],
    );
    // A certificate of another CA.
    let stranger = agent(
        "mtls-stranger",
        &[
            "-push-tls-ca",
            &ca,
            "-push-tls-cert",
            &other_cert,
            "-push-tls-key",
            &other_key,
        ],
    );
    for app in [&good, &bare, &stranger] {
        for _ in 0..2 {
            curl("POST", &format!("{}/push/capture", app.url));
        }
    }
    wait_until(
        "the CA's client acknowledged",
        Duration::from_secs(30),
        || stat(&good, "Acked") == 2,
    );
    for app in [&bare, &stranger] {
        wait_until("a refused stream", Duration::from_secs(30), || {
            stats(app)["LastError"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        });
        assert_eq!(stat(app, "Acked"), 0, "{}", stats(app));
    }
    let rows = sql_json(
        store,
        "SELECT pod, COUNT(*) AS n FROM goroutine_counts GROUP BY pod ORDER BY pod",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["pod"], "mtls-good");
    assert_eq!(rows[0]["n"], 2, "{rows:?}");
    // Nothing of the refused ones was buffered away: they still hold their snapshots.
    for app in [&bare, &stranger] {
        assert_eq!(stats(app)["Buffered"], 2, "{}", stats(app));
    }
}
