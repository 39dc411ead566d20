//! Helpers shared by the end-to-end tests: run the real `leakhound` binary, temporary stores,
//! readiness polling for services the tests start (never fixed sleeps).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_leakhound")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data() -> PathBuf {
    repo().join("tests/data")
}

/// Run `leakhound ARGS` with extra environment; returns the output whatever the exit code.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("LEAKHOUND_STORE")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run leakhound")
}

pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// Run and require success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

pub fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_env(args, env);
    assert!(
        out.status.success(),
        "leakhound {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `leakhound sql --format json` → rows as JSON objects.
pub fn sql_json(store: &str, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    sql_json_env(store, sql, &[])
}

pub fn sql_json_env(
    store: &str,
    sql: &str,
    env: &[(&str, &str)],
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = ok_env(&["sql", "--store", store, "--format", "json", sql], env);
    let trimmed = out.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(trimmed)
        .unwrap_or_else(|e| panic!("bad JSON from sql {sql:?}: {e}\n{out}"));
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| r.as_object().expect("object").clone())
        .collect()
}

/// The single integer of `SELECT ... AS n`: exactly one row whose first value is an integer
/// (or an integer string); anything else — no row, NULL, a store that is not there — fails the
/// test instead of reading as 0.
pub fn sql_i64(store: &str, sql: &str) -> i64 {
    sql_i64_env(store, sql, &[])
}

pub fn sql_i64_env(store: &str, sql: &str, env: &[(&str, &str)]) -> i64 {
    let rows = sql_json_env(store, sql, env);
    assert_eq!(
        rows.len(),
        1,
        "{sql:?} returned {} rows: {rows:?}",
        rows.len()
    );
    let v = rows[0].values().next();
    v.and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
    .unwrap_or_else(|| panic!("{sql:?} returned {v:?}, not an integer"))
}

/// Poll `check` until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A Prometheus query_range answer for one pod, `n` points from `start` every `step` s.
pub fn query_range_json(ns: &str, pod: &str, start: i64, step: i64, values: &[i64]) -> String {
    let vals: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("[{},\"{}\"]", start + i as i64 * step, v))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"go_goroutines","namespace":"{ns}","pod":"{pod}","instance":"127.0.0.1:1"}},"values":[{}]}}]}}}}"#,
        vals.join(",")
    )
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}
