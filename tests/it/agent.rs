//! The Go agent (`agent/`) in a real service (`tests/goprogs/cmd/agentleaky`, its own Go module
//! with a `replace` to the agent): `leakhound ingest` without the token is refused (401: a
//! target down, the reason in `scrape_status`), with the token from a file lands the rows,
//! pprof labels with the trace ids included; a debug=2 that the agent's fuse serves as debug=1
//! is not landed as a second snapshot.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::support::*;

static AGENTLEAKY: OnceLock<PathBuf> = OnceLock::new();

/// Build `tests/goprogs/cmd/agentleaky` (cached by Go's build cache).
pub(crate) fn agentleaky_binary() -> PathBuf {
    AGENTLEAKY
        .get_or_init(|| {
            crate::goprog::go_build("tests/goprogs/cmd/agentleaky", ".", "agentleaky-test", None)
        })
        .clone()
}

pub(crate) struct AgentLeaky {
    child: Child,
    pub(crate) url: String,
}

impl Drop for AgentLeaky {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AgentLeaky {
    /// Start agentleaky with `args`; returns once it listens (its leaks run before that).
    pub(crate) fn start(args: &[&str]) -> AgentLeaky {
        let mut child = Command::new(agentleaky_binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agentleaky");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from agentleaky: {line:?}"))
            .to_string();
        AgentLeaky { child, url }
    }
}

fn targets_file(dir: &Path, url: &str, pod: &str, token_file: &Path) -> String {
    let path = dir.join(format!("{pod}.json"));
    let spec = serde_json::json!([{
        "url": url,
        "namespace": "shop",
        "pod": pod,
        "bearer_token_file": token_file,
    }]);
    write(&path, spec.to_string());
    path.to_str().unwrap().to_string()
}

/// Goroutines of agentleaky's leaked stack per format in the store.
fn leaked_by_format(store: &str, pod: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    sql_json(
        store,
        &format!(
            "SELECT g.format, SUM(g.goroutines) AS n, MIN(g.labels) AS labels FROM goroutine_samples g \
             JOIN (SELECT DISTINCT stack_id, top_function FROM stacks) s ON g.stack_id = s.stack_id \
             WHERE s.top_function = 'main.leakOrderResult' AND g.pod = '{pod}' \
             AND g.profile = 'goroutine' GROUP BY g.format ORDER BY g.format"
        ),
    )
}

#[test]
fn ingest_scrapes_the_agent_with_a_token_file_and_is_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "agent-token-7f3c91\n");
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let app = AgentLeaky::start(&["-token-file", token.to_str().unwrap(), "-leak", "25"]);

    // No token: every endpoint answers 401; the only target is down, so the pass exits 1.
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--target",
        &format!("shop/orders-agent-0={}", app.url),
        "--passes",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = sql_json(store, "SELECT up, error FROM scrape_status");
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["up"], false, "{status:?}");
    let err = status[0].get("error").and_then(|e| e.as_str());
    assert!(err.is_some_and(|e| e.contains("HTTP 401")), "{status:?}");

    // A wrong token in the file: refused the same way.
    let wrong = dir.path().join("wrong");
    write(&wrong, "agent-token-7f3c92");
    let tf = targets_file(dir.path(), &app.url, "orders-agent-0", &wrong);
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--targets-file",
        &tf,
        "--passes",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) FROM scrape_status WHERE NOT up AND error LIKE '%HTTP 401%'"
        ),
        2
    );

    // The token from its file: up, and the rows land — the 25 leaked goroutines in debug=1 and
    // debug=2, their pprof labels carrying the trace and span ids they were started under.
    let tf = targets_file(dir.path(), &app.url, "orders-agent-0", &token);
    ok(&[
        "ingest",
        "--store",
        store,
        "--targets-file",
        &tf,
        "--passes",
        "1",
        "--debug2-every",
        "1",
    ]);
    let up = sql_json(
        store,
        "SELECT up, error, metrics_ok, debug1_ok, debug2_taken FROM scrape_status WHERE up",
    );
    assert_eq!(up.len(), 1, "{up:?}");
    // (sql's JSON leaves out nulls)
    assert!(up[0].get("error").is_none_or(|e| e.is_null()), "{up:?}");
    assert_eq!(up[0]["metrics_ok"], true, "{up:?}");
    assert_eq!(up[0]["debug2_taken"], true, "{up:?}");
    let counts = sql_json(store, "SELECT goroutines FROM goroutine_counts");
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        counts[0]["goroutines"].as_i64().unwrap() >= 25,
        "{counts:?}"
    );
    let leaked = leaked_by_format(store, "orders-agent-0");
    assert_eq!(leaked.len(), 2, "{leaked:?}");
    assert_eq!(leaked[0]["format"], "debug1");
    assert_eq!(leaked[1]["format"], "debug2");
    assert!(leaked.iter().all(|r| r["n"] == 25), "{leaked:?}");
    let labels = leaked[0]["labels"].as_str().unwrap();
    assert!(
        labels.contains(r#""trace_id":"0af7651916cd43dd8448eb211c80319c""#)
            && labels.contains(r#""span_id":"b7ad6b7169203331""#),
        "{labels}"
    );

    // The fuse: above 5 goroutines the agent serves debug=1 for debug=2. ingest lands that
    // pass's debug=1 once, no debug=2, and says why.
    let fused = AgentLeaky::start(&[
        "-token-file",
        token.to_str().unwrap(),
        "-leak",
        "25",
        "-max-goroutines",
        "5",
    ]);
    let tf = targets_file(dir.path(), &fused.url, "orders-agent-1", &token);
    ok(&[
        "ingest",
        "--store",
        store,
        "--targets-file",
        &tf,
        "--passes",
        "1",
        "--debug2-every",
        "1",
    ]);
    let leaked = leaked_by_format(store, "orders-agent-1");
    assert_eq!(leaked.len(), 1, "{leaked:?}");
    assert_eq!(leaked[0]["format"], "debug1", "{leaked:?}");
    assert_eq!(leaked[0]["n"], 25, "{leaked:?}");
    let st = sql_json(
        store,
        "SELECT up, error, debug2_taken FROM scrape_status WHERE pod = 'orders-agent-1'",
    );
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0]["up"], true, "{st:?}");
    assert_eq!(st[0]["debug2_taken"], false, "{st:?}");
    let err = st[0].get("error").and_then(|e| e.as_str());
    assert!(
        err.is_some_and(|e| e.contains("debug=2 answered with debug1")),
        "{st:?}"
    );
}

/// The container context the agent sends in `Leakhound-Context` lands on the count row: the
/// cgroup v2 values from the directory it is pointed at (fixture files the test writes: no
/// cgroup v2 can be made on these hosts), OS threads and RSS from `/proc/self/status`. A plain
/// `net/http/pprof` target (leaky) in the same pass has the columns null.
#[test]
fn ingest_lands_the_agents_container_context_and_null_for_plain_pprof() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "agent-token-ctx\n");
    let cg = dir.path().join("cgroup");
    std::fs::create_dir_all(&cg).unwrap();
    write(&cg.join("cgroup.controllers"), "cpu memory pids\n");
    write(&cg.join("memory.current"), "73400320\n");
    write(&cg.join("memory.max"), "268435456\n");
    write(
        &cg.join("cpu.stat"),
        "usage_usec 912345\nnr_periods 100\nnr_throttled 7\nthrottled_usec 52000\n",
    );
    write(&cg.join("pids.current"), "14\n");
    let app = AgentLeaky::start(&[
        "-token-file",
        token.to_str().unwrap(),
        "-leak",
        "5",
        "-cgroup-dir",
        cg.to_str().unwrap(),
    ]);
    let plain = crate::goprog::Leaky::start(&[]);
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let targets = dir.path().join("targets.json");
    write(
        &targets,
        serde_json::json!([
            {"url": app.url, "namespace": "shop", "pod": "ctx-agent", "bearer_token_file": token},
            {"url": plain.url, "namespace": "shop", "pod": "ctx-plain"},
        ])
        .to_string(),
    );
    ok(&[
        "ingest",
        "--store",
        store,
        "--targets-file",
        targets.to_str().unwrap(),
        "--passes",
        "1",
    ]);
    let rows = sql_json(
        store,
        "SELECT pod, mem_current_bytes, mem_max_bytes, cpu_throttled_us, pids_current, \
         os_threads, rss_bytes, \
         (mem_current_bytes IS NULL AND mem_max_bytes IS NULL AND cpu_throttled_us IS NULL \
          AND pids_current IS NULL AND os_threads IS NULL AND rss_bytes IS NULL) AS all_null \
         FROM goroutine_counts ORDER BY pod",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (agent, plain_row) = (&rows[0], &rows[1]);
    assert_eq!(agent["pod"], "ctx-agent");
    assert_eq!(agent["mem_current_bytes"], 73_400_320, "{agent:?}");
    assert_eq!(agent["mem_max_bytes"], 268_435_456, "{agent:?}");
    assert_eq!(agent["cpu_throttled_us"], 52_000, "{agent:?}");
    assert_eq!(agent["pids_current"], 14, "{agent:?}");
    // The process's own: a Go program has a few OS threads and some MiB resident.
    assert!(agent["os_threads"].as_i64().unwrap() >= 2, "{agent:?}");
    assert!(agent["rss_bytes"].as_i64().unwrap() > 1 << 20, "{agent:?}");
    assert_eq!(agent["all_null"], false);
    assert_eq!(plain_row["pod"], "ctx-plain");
    assert_eq!(plain_row["all_null"], true, "{plain_row:?}");
    // Both scrapes were clean: no refused header.
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) FROM scrape_status WHERE up AND error IS NULL"
        ),
        2
    );
}
