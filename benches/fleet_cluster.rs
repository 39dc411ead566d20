//! The fleet bench of issue 19: the five named queries, one live `analyze` step (cold: nothing
//! to reuse) and the next (warm: reusing the first's findings, the CronJob's steady state), and the
//! STL + Isolation Forest scoring alone (`analyze --replay --detectors stl_iforest` over the
//! last `LEAKHOUND_FLEET_SCORE_HOURS`, 2 by default, with its 3 days of history) over a
//! synthetic fleet (`leakhound_analyze::fleetgen`: N pods x D days, a count a minute, a capture
//! every 30 minutes), run in-process and on a Ballista cluster of 1 and 2 executors
//! (`leakhound cluster ...`, real processes on loopback), each as a user runs it: one
//! `leakhound query` / `leakhound analyze` process per run, wall time. On a cluster the scoring
//! runs on the executors (`leak_stl_iforest`); the bench prints series scored and count rows
//! scanned per second, in all and per executor.
//!
//! `cargo bench --bench fleet_cluster` (`--profile dev` for a quick run).
//! `LEAKHOUND_FLEET_PODS` (default 5000), `LEAKHOUND_FLEET_DAYS` (30), `LEAKHOUND_FLEET_SAMPLE_MIN`
//! (30), `LEAKHOUND_FLEET_STORE` (a directory: built once, reused by later runs),
//! `LEAKHOUND_FLEET_EXECUTORS` (`0,1,2`; 0 = in-process), `LEAKHOUND_FLEET_SLOTS` (2 per executor),
//! `LEAKHOUND_FLEET_ROUNDS` (1: best of N), `LEAKHOUND_FLEET_SCORE_HOURS` (2).
//!
//! On one machine the executors share its cores with each other and with the scheduler: what
//! this measures there is the cluster's overhead and per-executor throughput (count rows
//! scanned per second), the basis of `docs/scale.md`; speed-up needs executors on machines of
//! their own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leakhound_analyze::fleetgen::{QUERIES, START_S, build, env_num, params};

// The store is generated in this process (the runs are `leakhound` processes, which use it too):
// with glibc's allocator, 60 % of the generation went to malloc and free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sample rows per capture of the example capture fleetgen writes (measured on the store: 960
/// rows over one pod's 48 captures of a day).
const SAMPLE_ROWS_PER_CAPTURE: i64 = 20;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_leakhound")
}

struct Service {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(args: &[&str]) -> Service {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leakhound cluster");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    Service { child, lines }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scheduler and `n` executors over `store`; the engine URL.
fn cluster(store: &str, n: usize, slots: i64, work: &Path) -> (Vec<Service>, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut services = vec![service(&[
        "cluster",
        "scheduler",
        "--store",
        store,
        "--listen",
        &addr,
    ])];
    wait("the scheduler", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    for i in 0..n {
        let dir = work.join(format!("executor-{i}"));
        std::fs::create_dir_all(&dir).expect("work dir");
        let e = service(&[
            "cluster",
            "executor",
            "--store",
            store,
            "--scheduler",
            &addr,
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--grpc-port",
            &free_port().to_string(),
            "--slots",
            &slots.to_string(),
            "--work-dir",
            dir.to_str().expect("utf-8"),
        ]);
        wait("an executor to register", || {
            e.lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains("Executor registration succeed"))
        });
        services.push(e);
    }
    (services, format!("ballista://{addr}"))
}

/// Best wall time of `rounds` runs of `leakhound ARGS`.
fn time(args: &[String], rounds: i64) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        // The answer is written and thrown away (a person's terminal or file, not this
        // process's memory).
        let out = Command::new(bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .output()
            .expect("run leakhound");
        assert!(
            out.status.success(),
            "leakhound {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let pods = env_num("LEAKHOUND_FLEET_PODS", 5000);
    let days = env_num("LEAKHOUND_FLEET_DAYS", 30);
    let sample_min = env_num("LEAKHOUND_FLEET_SAMPLE_MIN", 30);
    let slots = env_num("LEAKHOUND_FLEET_SLOTS", 2);
    let rounds = env_num("LEAKHOUND_FLEET_ROUNDS", 1);
    let executors: Vec<usize> = std::env::var("LEAKHOUND_FLEET_EXECUTORS")
        .unwrap_or_else(|_| "0,1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let tmp = tempfile::tempdir().expect("temp dir");
    let store_dir: PathBuf = std::env::var_os("LEAKHOUND_FLEET_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join(format!("fleet-{pods}x{days}")));
    let marker = store_dir.join(format!(".fleet-{pods}x{days}x{sample_min}-compacted"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if !marker.exists() {
        eprintln!("building the fleet store: {pods} pods x {days} days in {store_dir:?}");
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&store_dir);
        rt.block_on(build(&store_dir, pods, days, sample_min));
        eprintln!("  built in {:.0}s", t.elapsed().as_secs_f64());
        // As the chart's hourly `leakhound compact` leaves a store: a file per table and
        // partition, rows sorted by namespace and pod (what lets an analyze group's filter
        // skip the other groups' row groups).
        let t = Instant::now();
        let store =
            leakhound_ingest::Store::open(store_dir.to_str().expect("utf-8 path")).expect("store");
        let opts = leakhound_ingest::compact::CompactOptions {
            grace: Duration::ZERO,
            ..Default::default()
        };
        let summary = rt
            .block_on(leakhound_ingest::compact::compact(&store, &opts))
            .expect("compact");
        eprintln!(
            "  compacted in {:.0}s: {} files into {} partitions",
            t.elapsed().as_secs_f64(),
            summary.files_merged,
            summary.partitions_compacted
        );
        std::fs::write(&marker, b"").expect("marker");
    }
    let store = store_dir.to_str().expect("utf-8 path").to_string();
    let end_s = START_S + days * 86_400;
    let (from, to) = (
        chrono_rfc3339(START_S),
        chrono_rfc3339(end_s.saturating_sub(1)),
    );
    let count_rows = pods * days * 1440;
    // The scoring run: its evaluations, the series it scores (every pod and every workload:
    // fleetgen puts pod p in namespace p % 20, workload p % 50) and the count rows it reads.
    let score_hours = env_num("LEAKHOUND_FLEET_SCORE_HOURS", 2).max(1);
    let score_from = end_s - score_hours * 3_600;
    let workloads: std::collections::BTreeSet<(i64, i64)> =
        (0..pods).map(|p| (p % 20, p % 50)).collect();
    let series = pods + workloads.len() as i64;
    let score_rows = pods * ((score_hours * 3_600 + 3 * 86_400).min(days * 86_400) / 60);

    // results[engine][query] = seconds
    let mut names: Vec<String> = QUERIES.iter().map(|q| q.to_string()).collect();
    names.push("analyze, live step (cold)".into());
    names.push("analyze, next step (warm)".into());
    names.push(format!("stl_iforest scoring ({score_hours} h)"));
    let mut results: Vec<(usize, String, Vec<f64>)> = Vec::new();
    for &n in &executors {
        let (_services, engine) = if n == 0 {
            (Vec::new(), "inprocess".to_string())
        } else {
            cluster(&store, n, slots, tmp.path())
        };
        let label = if n == 0 {
            "in-process".to_string()
        } else {
            format!("{n} executor{}", if n == 1 { "" } else { "s" })
        };
        eprintln!("{label} ({engine})");
        let mut row = Vec::new();
        for q in QUERIES {
            let mut args: Vec<String> = [
                "query", q, "--store", &store, "--engine", &engine, "--format", "csv",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for (k, v) in fleet_params(q, &from, &to, end_s) {
                args.push("-p".into());
                args.push(format!("{k}={v}"));
            }
            let s = time(&args, rounds);
            eprintln!("  {q}: {s:.2}s");
            row.push(s);
        }
        // One live step with nothing to reuse (cold: the previous engine's findings removed),
        // then the next step 5 minutes later, which reuses 24 of its 25 evaluations (warm: the
        // CronJob's steady state).
        let live = |now: i64| -> Vec<String> {
            [
                "analyze",
                "--store",
                &store,
                "--engine",
                &engine,
                "--now",
                &now.to_string(),
                "--format",
                "jsonl",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let mut cold = f64::INFINITY;
        for _ in 0..rounds.max(1) {
            let _ = std::fs::remove_dir_all(store_dir.join("_state/analyze"));
            cold = cold.min(time(&live(end_s - 300), 1));
        }
        eprintln!("  analyze, cold: {cold:.2}s");
        row.push(cold);
        let s = time(&live(end_s), 1);
        eprintln!("  analyze, warm: {s:.2}s");
        row.push(s);
        let args: Vec<String> = [
            "analyze",
            "--store",
            &store,
            "--engine",
            &engine,
            "--replay",
            "--from",
            &score_from.to_string(),
            "--to",
            &end_s.to_string(),
            "--detectors",
            "stl_iforest",
            "--format",
            "jsonl",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = time(&args, rounds);
        eprintln!("  stl_iforest scoring: {s:.2}s");
        row.push(s);
        results.push((n, label, row));
    }

    println!(
        "\nfleet_cluster: {pods} pods x {days} days ({count_rows} count rows, a capture every {sample_min} min), {slots} slots per executor, best of {rounds}"
    );
    print!("{:<26}", "");
    for (_, label, _) in &results {
        print!("{label:>14}");
    }
    println!();
    for (i, name) in names.iter().enumerate() {
        print!("{name:<26}");
        for (_, _, row) in &results {
            print!("{:>13.2}s", row[i]);
        }
        println!();
    }
    // Throughput of the whole-month scans: leak_profile_stacks reads every sample row of the
    // month (twice: its span, then the last captures), oldest_blocked every one once.
    let sample_rows = pods * days * (1440 / sample_min.max(1)) * SAMPLE_ROWS_PER_CAPTURE;
    for q in ["oldest_blocked", "leak_profile_stacks"] {
        if let Some(i) = QUERIES.iter().position(|n| *n == q) {
            for (n, label, row) in &results {
                println!(
                    "{label}: {q} over {sample_rows} sample rows: {:.1} M rows/s ({:.1} M per executor)",
                    sample_rows as f64 / row[i] / 1e6,
                    sample_rows as f64 / row[i] / 1e6 / (*n).max(1) as f64,
                );
            }
        }
    }
    // The scoring's throughput, in all and per executor (in-process: one process).
    let s = names.len() - 1;
    for (n, label, row) in &results {
        let per = (*n).max(1) as f64;
        println!(
            "{label}: stl_iforest scored {series} series x {} evaluations in {:.2}s: {:.1} series/s ({:.1} per executor), {:.0} K count rows read/s ({:.0} K per executor)",
            score_hours * 12 + 1,
            row[s],
            series as f64 / row[s],
            series as f64 / row[s] / per,
            score_rows as f64 / row[s] / 1e3,
            score_rows as f64 / row[s] / 1e3 / per,
        );
    }
}

/// The named queries' parameters at fleet size, as people run them: the two that return a row
/// per sample (`goroutines_over_time`, `goroutines_by_state`) for one pod over the whole month
/// and for one namespace (a 20th of the fleet) over its last day; the aggregating three over the
/// whole fleet and month (`stack_growth`: its first day against the last two). Over the whole
/// fleet and month the first two return every row of their table (216 M and 37 M rows at
/// 5,000 x 30), which is an export, not a query: sorted in memory, it took all of this
/// machine's 24 GB in-process.
fn fleet_params(
    q: &str,
    from: &str,
    to: &str,
    end_s: i64,
) -> std::collections::BTreeMap<String, String> {
    let mut p = params(q, from, to);
    match q {
        "goroutines_over_time" => {
            p.insert("namespace".into(), "ns-3".into());
            p.insert("pod".into(), "svc-3-0003".into());
        }
        "goroutines_by_state" => {
            p.insert("namespace".into(), "ns-3".into());
            p.insert("from".into(), chrono_rfc3339(end_s - 86_400));
        }
        _ => {}
    }
    p
}

fn chrono_rfc3339(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
