//! Push bench (issue 20): N agents (default 1,000) as goroutines of one Go process
//! (`tests/goprogs/cmd/agentleaky/pushfleet`), each its own agent/push Pusher with its own gRPC
//! stream, capturing every 10 s (staggered) into one `leakhound serve --push-listen`: snapshots
//! per second landed, acknowledgement latency (capture to ack: p50, p99, max), `serve`'s peak
//! RSS (VmHWM). Then, in the same run, the pull path over the same N targets (the same
//! process, a pprof endpoint behind a token per agent, one listener each, serving the same
//! shared capture): one `leakhound ingest` pass to start (it asks everyone for debug=2, which
//! these endpoints answer with debug=1: not landed) and one steady-state pass (debug=1), its
//! wall time and peak RSS (`/usr/bin/time`). /metrics is not served (404): each target is up
//! by its profile.
//!
//! ```sh
//! cargo bench --profile dev --bench push_fleet   # LEAKHOUND_BENCH_AGENTS=1000, LEAKHOUND_BENCH_SECONDS=60
//! ```
//!
//! `--profile dev` builds the binary as CI does (a release build is ~39 min on 2 cores); the
//! figures in docs/benchmarks.md say which profile they are of. Needs `/usr/bin/time` (Debian
//! package `time`) and Go.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_leakhound")
}

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// `/usr/bin/time -f "%e %M"` around one ingest pass: (seconds, peak RSS KiB).
fn ingest_pass(store: &str, targets: &str) -> (f64, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M", bin(), "ingest", "--store", store])
        .args([
            "--targets-file",
            targets,
            "--passes",
            "1",
            "--concurrency",
            "64",
        ])
        .args(["--deadline", "600s"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time (Debian package time)");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("TIME "))
        .unwrap_or_else(|| panic!("no time output: {err}"));
    let mut it = line.split_whitespace();
    (
        it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
        it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
    )
}

fn main() {
    let agents = env_or("LEAKHOUND_BENCH_AGENTS", 1000);
    let seconds = env_or("LEAKHOUND_BENCH_SECONDS", 60);
    let repo = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fleet = d.join("pushfleet");
    let st = Command::new("go")
        .args(["build", "-o", fleet.to_str().unwrap(), "./pushfleet"])
        .current_dir(format!("{repo}/tests/goprogs/cmd/agentleaky"))
        .status()
        .expect("go build");
    assert!(st.success());
    std::fs::write(d.join("ptok"), "push-bench-token\n").unwrap();
    std::fs::write(d.join("atok"), "agent-bench-token\n").unwrap();
    let store = d.join("store-push");
    let mut serve = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--push-listen",
            "127.0.0.1:0",
        ])
        .args(["--store", store.to_str().unwrap()])
        .args(["--bearer-token-file", d.join("ptok").to_str().unwrap()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(serve.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let push = line
        .trim()
        .strip_prefix("push listening on http://")
        .expect("push line")
        .to_string();
    let targets = d.join("targets.json");
    let mut fl = Command::new(&fleet)
        .args(["-n", &agents.to_string(), "-push", &push])
        .args(["-push-token-file", d.join("ptok").to_str().unwrap()])
        .args(["-token-file", d.join("atok").to_str().unwrap()])
        .args(["-interval", "10s", "-duration", &format!("{seconds}s")])
        .args(["-targets", targets.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut fout = BufReader::new(fl.stdout.take().unwrap());
    line.clear();
    fout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    line.clear();
    fout.read_line(&mut line).unwrap();
    let r: serde_json::Value = serde_json::from_str(line.trim()).expect("pushfleet summary");
    let serve_hwm = vm_hwm_kib(serve.id());
    let _ = serve.kill();
    let _ = serve.wait();
    let rows = Command::new(bin())
        .args(["sql", "--store", store.to_str().unwrap(), "--format", "csv"])
        .arg("SELECT COUNT(*) AS n, COUNT(DISTINCT pod) AS pods FROM goroutine_counts")
        .output()
        .unwrap();
    let snapshots = r["snapshots"].as_f64().unwrap_or(0.0);
    let secs = r["seconds"].as_f64().unwrap_or(1.0);
    println!("push: {agents} agents, {seconds} s, 10 s interval");
    println!(
        "  snapshots {snapshots} acked {} dropped {} in {secs:.1} s: {:.1} snapshots/s",
        r["acked"],
        r["dropped"],
        snapshots / secs
    );
    println!(
        "  ack latency p50 {} ms, p99 {} ms, max {} ms; serve peak RSS {:.0} MiB",
        r["p50_ms"],
        r["p99_ms"],
        r["max_ms"],
        serve_hwm as f64 / 1024.0
    );
    println!(
        "  store: {}",
        String::from_utf8_lossy(&rows.stdout).replace('\n', " ")
    );

    let pull = d.join("store-pull");
    let (t1, m1) = ingest_pass(pull.to_str().unwrap(), targets.to_str().unwrap());
    let (t2, m2) = ingest_pass(pull.to_str().unwrap(), targets.to_str().unwrap());
    println!("pull: the same {agents} targets, one ingest pass each");
    println!(
        "  first pass (debug=2 of every target) {t1:.1} s, peak RSS {:.0} MiB",
        m1 as f64 / 1024.0
    );
    println!(
        "  steady pass (debug=1) {t2:.1} s = {:.0} snapshots/s, peak RSS {:.0} MiB",
        agents as f64 / t2.max(0.001),
        m2 as f64 / 1024.0
    );
    drop(fl.stdin.take());
    let _ = fl.wait();
}
