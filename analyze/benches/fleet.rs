//! Fleet size on one machine (issue 22): the Prometheus import next to DuckDB, and one live
//! `analyze` step at growing fleet sizes; wall time and peak RSS of each, in one run.
//!
//! `cargo bench -p leakhound-analyze --bench fleet`
//!
//! **Import.** Generates (once, cached under `$LEAKHOUND_FLEET_DIR`, default
//! `/var/tmp/leakhound-fleet`) `LEAKHOUND_FLEET_PODS` pods (1,000) x `LEAKHOUND_FLEET_DAYS` days
//! (7) of `go_goroutines` at 1-minute resolution as saved `query_range` answers, in
//! `LEAKHOUND_FLEET_FILES` files (10, the pods split evenly, each series whole), then imports
//! them with leakhound (`backfill::backfill`, the code `leakhound backfill` runs, into a fresh
//! store) and with DuckDB (Python package from `$LEAKHOUND_DUCKDB_PYTHON`, default
//! `/var/tmp/leakhound-duckdb/bin/python`; `python3 -m venv … && pip install duckdb`), which
//! turns the same files into one Parquet file of the same rows (namespace, pod, workload, ts,
//! goroutines), 2 threads. Both sides check the row count. Each import runs in a process of its
//! own (this bench started again with `LEAKHOUND_FLEET_PHASE`, or the Python interpreter), so
//! each peak RSS (`VmHWM`; `ru_maxrss` for Python) is its own. Leakhound's import is measured
//! on the first file alone, on as many files as it imports at once (`--jobs`, its default, or
//! `LEAKHOUND_FLEET_JOBS`) and on all of them: the RSS must not grow with the input.
//!
//! **Analyze.** For each of `LEAKHOUND_FLEET_ANALYZE_PODS` (1000,5000,10000) builds (once,
//! cached) a store of that many pods over the history a live step reads (the STL context, 3
//! days, plus the live window) through the writer `ingest` uses, then runs one live step
//! (`engine::analyze` over the live window, clusters, events written: what `leakhound analyze`
//! does) in a child process: time, peak RSS, time per pod.
//!
//! The stores are compacted once built (the chart compacts hourly). `LEAKHOUND_FLEET_GROUP_ROWS`
//! sets `analyze --group-rows` (2,000,000; 0 = the fleet at once), `LEAKHOUND_FLEET_STAGES=1`
//! prints each stage's start with the RSS then.
//!
//! `LEAKHOUND_FLEET_ONLY=import|analyze` runs one half; `LEAKHOUND_FLEET_NO_DUCKDB=1` skips DuckDB;
//! `LEAKHOUND_FLEET_WHOLE_JSON=1` imports with the whole-document reader (before streaming);
//! `LEAKHOUND_FLEET_JOBS` sets the files imported at once (`backfill --jobs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use leakhound_analyze::engine::{self, AnalyzeConfig, Emit};
use leakhound_ingest::Store;
use leakhound_ingest::backfill::{self, BackfillOptions};
use leakhound_ingest::rows::{CountRow, Target};
use leakhound_ingest::writer::{Batch, Writer};

// The allocator of the `leakhound` binary (src/main.rs): peak RSS depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START_S: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Pods per namespace and per workload of the generated fleet.
const PODS_PER_NS: i64 = 50;
const PODS_PER_WORKLOAD: i64 = 5;

fn target(p: i64) -> Target {
    let w = p / PODS_PER_WORKLOAD;
    Target {
        cluster: None,
        namespace: format!("ns-{}", p / PODS_PER_NS),
        workload_kind: None,
        workload: Some(format!("svc-{w}")),
        pod: format!("svc-{w}-{p:05}"),
        container: None,
        node: None,
        instance: Some(format!(
            "10.{}.{}.{}:8080",
            p / 65_536,
            (p / 256) % 256,
            p % 256
        )),
    }
}

/// The goroutine count of pod `p` at minute `m` since the start: a daily wave, noise; one pod
/// in 20 leaks a goroutine every 10 minutes, and one in 100 leaks 40 a minute from 3 days in
/// (the analyze stores' live window: events to write).
fn value(p: i64, m: i64) -> i64 {
    let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
    let noise = ((p.wrapping_mul(2_654_435_761) ^ m.wrapping_mul(40_503)) % 7) as f64;
    let mut leak = if p % 20 == 7 { (m / 10) as f64 } else { 0.0 };
    if p % 100 == 3 && m > 3 * 1440 {
        leak += ((m - 3 * 1440) * 40) as f64;
    }
    (200.0 + 40.0 * day.sin() + noise + leak) as i64
}

/// Write the `query_range` files of `pods` x `days` (pods split over `files`).
fn generate_json(dir: &Path, pods: i64, days: i64, files: i64) {
    std::fs::create_dir_all(dir).expect("json dir");
    let minutes = days * 1440;
    for f in 0..files {
        let (lo, hi) = (f * pods / files, (f + 1) * pods / files);
        let path = dir.join(format!("part-{f:03}.json"));
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path).expect("create"),
        );
        write!(
            out,
            "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":["
        )
        .unwrap();
        for p in lo..hi {
            let t = target(p);
            if p > lo {
                out.write_all(b",").unwrap();
            }
            write!(
                out,
                "\n{{\"metric\":{{\"__name__\":\"go_goroutines\",\"instance\":\"{}\",\"job\":\"kubernetes-pods\",\"namespace\":\"{}\",\"pod\":\"{}\",\"workload\":\"{}\"}},\"values\":[",
                t.instance.as_deref().unwrap_or(""),
                t.namespace,
                t.pod,
                t.workload.as_deref().unwrap_or("")
            )
            .unwrap();
            for m in 0..minutes {
                if m > 0 {
                    out.write_all(b",").unwrap();
                }
                write!(out, "[{},\"{}\"]", START_S + m * 60, value(p, m)).unwrap();
            }
            out.write_all(b"]}").unwrap();
        }
        out.write_all(b"]}}\n").unwrap();
        out.flush().unwrap();
    }
}

fn json_dir(root: &Path, pods: i64, days: i64, files: i64) -> PathBuf {
    let dir = root.join(format!("json-p{pods}-d{days}-f{files}"));
    let done = dir.join(".complete-compacted");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "generating {pods} pods x {days} days in {files} files under {}",
            dir.display()
        );
        let t = Instant::now();
        generate_json(&dir, pods, days, files);
        std::fs::write(&done, b"").unwrap();
        eprintln!("  {:.1}s", t.elapsed().as_secs_f64());
    }
    dir
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// Files leakhound imports at once: `LEAKHOUND_FLEET_JOBS`, else `leakhound backfill`'s default.
fn import_jobs() -> usize {
    std::env::var("LEAKHOUND_FLEET_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(backfill::default_jobs)
        .max(1)
}

/// Child: import `files` into a fresh store at `store`; prints `rows secs hwm_kib`.
fn child_import(store: &Path, files: &[PathBuf]) {
    // As `leakhound backfill` does (src/backfill_cmd.rs).
    leakhound_alloc::purge_freed_memory_at_once();
    let _ = std::fs::remove_dir_all(store);
    std::fs::create_dir_all(store).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = Instant::now();
    let s = rt.block_on(async {
        let st = Store::open(store.to_str().unwrap()).expect("store");
        let opts = BackfillOptions {
            stream_json: std::env::var_os("LEAKHOUND_FLEET_WHOLE_JSON").is_none(),
            jobs: import_jobs(),
            ..Default::default()
        };
        backfill::backfill(&st, files, &opts, &mut |_| {})
            .await
            .expect("backfill")
    });
    let secs = t.elapsed().as_secs_f64();
    assert!(s.failed.is_empty(), "failed: {:?}", s.failed);
    println!("RESULT {} {secs} {}", s.rows, vm_hwm_kib());
}

const DUCKDB_PY: &str = r#"
import duckdb, resource, sys, time
files, out = sys.argv[1:-1], sys.argv[-1]
con = duckdb.connect()
con.execute("SET threads = 2")
t = time.time()
con.execute(f"""
COPY (
  WITH s AS (SELECT unnest(data.result) AS r
             FROM read_json({files!r}, maximum_object_size = 2000000000,
                            columns = {{'status': 'VARCHAR',
                                        'data': 'STRUCT(resultType VARCHAR, result STRUCT(metric MAP(VARCHAR, VARCHAR), "values" VARCHAR[][])[])'}})),
       p AS (SELECT r.metric['namespace'] AS namespace, r.metric['pod'] AS pod,
                    r.metric['workload'] AS workload, unnest(r."values") AS v FROM s)
  SELECT namespace, pod, workload,
         to_timestamp(CAST(v[1] AS DOUBLE)) AS ts, CAST(v[2] AS BIGINT) AS goroutines
  FROM p
) TO '{out}' (FORMAT parquet)
""")
secs = time.time() - t
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print("RESULT", rows, secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

fn parse_result(out: &[u8]) -> Option<(u64, f64, u64)> {
    let s = String::from_utf8_lossy(out);
    let line = s.lines().find(|l| l.starts_with("RESULT "))?;
    let mut it = line.split_whitespace().skip(1);
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

fn run_child(phase: &str, args: &[String]) -> (u64, f64, u64) {
    let o = Command::new(std::env::current_exe().unwrap())
        .env("LEAKHOUND_FLEET_PHASE", phase)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run child");
    if !o.status.success() {
        panic!("{phase} child failed (its stderr above)");
    }
    parse_result(&o.stdout).unwrap_or_else(|| panic!("{phase}: no RESULT line"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn bench_import(root: &Path) {
    let pods = env_num("LEAKHOUND_FLEET_PODS", 1000);
    let days = env_num("LEAKHOUND_FLEET_DAYS", 7);
    let nfiles = env_num("LEAKHOUND_FLEET_FILES", 10);
    let dir = json_dir(root, pods, days, nfiles);
    let files = json_files(&dir);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let expect = (pods * days * 1440) as u64;
    println!(
        "fleet import: {pods} pods x {days} days at 1 min = {expect} points, {} files, {:.0} MB of query_range JSON",
        files.len(),
        bytes as f64 / 1e6
    );
    let store = root.join("import-store");
    let arg = |fs: &[PathBuf]| -> Vec<String> {
        std::iter::once(store.display().to_string())
            .chain(fs.iter().map(|f| f.display().to_string()))
            .collect()
    };
    let (r1, s1, m1) = run_child("import", &arg(&files[..1]));
    println!(
        "  leakhound, 1 file:   {r1:>10} rows  {s1:>7.2} s  peak RSS {:>7.0} MiB",
        mib(m1)
    );
    // With `jobs` files imported at once, `jobs` files is the unit memory is compared with.
    let jobs = import_jobs();
    let mj = if jobs > 1 && jobs < files.len() {
        let (rj, sj, mj) = run_child("import", &arg(&files[..jobs]));
        println!(
            "  leakhound, {jobs} files:  {rj:>10} rows  {sj:>7.2} s  peak RSS {:>7.0} MiB  ({jobs} jobs: one file each)",
            mib(mj)
        );
        Some(mj)
    } else {
        None
    };
    let (r, s, m) = run_child("import", &arg(&files));
    println!(
        "  leakhound, {} files: {r:>10} rows  {s:>7.2} s  peak RSS {:>7.0} MiB  (RSS {:.2}x of 1 file{})",
        files.len(),
        mib(m),
        m as f64 / m1.max(1) as f64,
        mj.map(|mj| format!(", {:.2}x of {jobs} files", m as f64 / mj.max(1) as f64))
            .unwrap_or_default()
    );
    assert_eq!(r, expect, "leakhound rows");
    let _ = std::fs::remove_dir_all(&store);
    if std::env::var_os("LEAKHOUND_FLEET_NO_DUCKDB").is_some() {
        return;
    }
    let py = std::env::var("LEAKHOUND_DUCKDB_PYTHON")
        .unwrap_or("/var/tmp/leakhound-duckdb/bin/python".into());
    let script = root.join("_fleet_duckdb.py");
    std::fs::write(&script, DUCKDB_PY).unwrap();
    let out = root.join("duckdb-out.parquet");
    let o = Command::new(&py)
        .arg(&script)
        .args(&files)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e} (python3 -m venv … && pip install duckdb)"));
    if !o.status.success() {
        panic!("duckdb failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let (dr, ds, dm) = parse_result(&o.stdout).expect("duckdb RESULT");
    let _ = std::fs::remove_file(&out);
    println!(
        "  duckdb,    {} files: {dr:>10} rows  {ds:>7.2} s  peak RSS {:>7.0} MiB",
        files.len(),
        mib(dm)
    );
    assert_eq!(dr, expect, "duckdb rows");
    println!(
        "  leakhound/duckdb: time {:.2}x, peak RSS {:.2}x",
        s / ds,
        m as f64 / dm.max(1) as f64
    );
}

/// The history a live step reads: the STL context (3 days) and the live window (2 h), plus an
/// hour of margin.
const ANALYZE_HISTORY_S: i64 = 3 * 86_400 + 3 * 3_600;

/// The live step's evaluation time in the analyze stores.
fn analyze_now() -> i64 {
    START_S + ANALYZE_HISTORY_S
}

async fn build_store(dir: &Path, pods: i64) {
    let store = Store::open(dir.to_str().unwrap()).expect("store");
    let mut w = Writer::new(store.clone());
    let minutes = ANALYZE_HISTORY_S / 60;
    // One commit per 500 pods and day: the writer's batches stay small.
    let chunk = 500;
    for lo in (0..pods).step_by(chunk as usize) {
        for day in 0..(minutes + 1439) / 1440 {
            let mut b = Batch::default();
            let mut rows = Vec::new();
            for p in lo..(lo + chunk).min(pods) {
                let t = target(p);
                for m in day * 1440..((day + 1) * 1440).min(minutes) {
                    rows.push(CountRow {
                        target: t.clone(),
                        ts_us: (START_S + m * 60) * 1_000_000,
                        goroutines: value(p, m),
                        source: "prometheus".into(),
                        format: "prometheus".into(),
                        ..Default::default()
                    });
                }
            }
            b.add_counts(rows, &format!("fleet-{lo}-{day}"));
            w.commit(b).await.expect("commit");
        }
    }
    // As the chart's hourly `leakhound compact` leaves a store: one file per hour, rows sorted
    // by namespace and pod (what lets a group's filter skip the other groups' row groups).
    let opts = leakhound_ingest::compact::CompactOptions {
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    leakhound_ingest::compact::compact(&store, &opts)
        .await
        .expect("compact");
}

fn analyze_store(root: &Path, pods: i64) -> PathBuf {
    let dir = root.join(format!("analyze-p{pods}"));
    let done = dir.join(".complete-compacted");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        eprintln!(
            "building an analyze store of {pods} pods under {}",
            dir.display()
        );
        let t = Instant::now();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(build_store(&dir, pods));
        std::fs::write(&done, b"").unwrap();
        eprintln!("  {:.1}s", t.elapsed().as_secs_f64());
    }
    dir
}

/// Child: one live analyze step over `store`, `back_s` before the stores' evaluation time;
/// prints `events secs hwm_kib`. With `reuse` (the CLI's default for a live step) it reuses
/// the findings a previous step left in the store and leaves its own.
fn child_analyze(store: &Path, back_s: i64, reuse: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t0 = Instant::now();
    let cfg = AnalyzeConfig {
        group_rows: env_num("LEAKHOUND_FLEET_GROUP_ROWS", 2_000_000) as u64,
        // Each stage's start on stderr: where the time and the memory go.
        progress: std::env::var_os("LEAKHOUND_FLEET_STAGES").map(|_| {
            engine::StageHook(std::sync::Arc::new(move |s: &str| {
                eprintln!(
                    "    {:>7.2} s  RSS {:>5.0} MiB  peak {:>5.0} MiB  {s}",
                    t0.elapsed().as_secs_f64(),
                    mib(status_kib("VmRSS:")),
                    mib(vm_hwm_kib())
                )
            }))
        }),
        reuse,
        ..AnalyzeConfig::default()
    };
    let now = analyze_now().div_euclid(cfg.step_s) * cfg.step_s - back_s;
    let t = Instant::now();
    let n = rt.block_on(async {
        let st = Store::open(store.to_str().unwrap()).expect("store");
        let a = engine::analyze(&st, now - cfg.live_window_s, now, Emit::All, &cfg)
            .await
            .expect("analyze");
        if let Some(per) = a.reused_evaluations.checked_div(a.reused_groups) {
            eprintln!(
                "    reused {per} of {} evaluations in {} of the groups",
                a.evaluations, a.reused_groups
            );
        }
        let mut events = a.events;
        let clusters = engine::attach_clusters(&st, &mut events, 5)
            .await
            .expect("clusters");
        if !events.is_empty() {
            engine::write_results(&st, &events, &clusters)
                .await
                .expect("write");
        }
        events.len()
    });
    println!("RESULT {n} {} {}", t.elapsed().as_secs_f64(), vm_hwm_kib());
}

fn bench_analyze(root: &Path) {
    let sizes: Vec<i64> = std::env::var("LEAKHOUND_FLEET_ANALYZE_PODS")
        .unwrap_or("1000,5000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("fleet analyze: one live step (2 h window, 3 days of STL context), every detector");
    println!(
        "  cold: no previous step (the first, or after a change of configuration or version);"
    );
    println!(
        "  warm: the next step, 5 minutes later, reusing the cold step's findings (the steady state)"
    );
    for pods in sizes {
        let dir = analyze_store(root, pods);
        // A live step writes its events: each measured step starts from the same store.
        let work = root.join("analyze-work");
        let _ = std::fs::remove_dir_all(&work);
        let st = Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&work)
            .status()
            .expect("cp");
        assert!(st.success());
        for (what, back) in [("cold", "300"), ("warm", "0")] {
            let (events, secs, hwm) = run_child(
                "analyze",
                &[work.display().to_string(), back.into(), "reuse".into()],
            );
            println!(
                "  {pods:>6} pods, {what}: {secs:>7.2} s  peak RSS {:>7.0} MiB  {:>6.2} ms/pod  {events} events",
                mib(hwm),
                secs * 1000.0 / pods as f64
            );
        }
        let _ = std::fs::remove_dir_all(&work);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match std::env::var("LEAKHOUND_FLEET_PHASE").as_deref() {
        Ok("import") => {
            let files: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
            return child_import(Path::new(&args[0]), &files);
        }
        Ok("analyze") => {
            let back = args.get(1).and_then(|b| b.parse().ok()).unwrap_or(0);
            let reuse = args.get(2).is_some_and(|r| r == "reuse");
            return child_analyze(Path::new(&args[0]), back, reuse);
        }
        _ => {}
    }
    let root = PathBuf::from(
        std::env::var("LEAKHOUND_FLEET_DIR").unwrap_or("/var/tmp/leakhound-fleet".into()),
    );
    std::fs::create_dir_all(&root).unwrap();
    let only = std::env::var("LEAKHOUND_FLEET_ONLY").unwrap_or_default();
    if only.is_empty() || only == "import" {
        bench_import(&root);
    }
    if only.is_empty() || only == "analyze" {
        bench_analyze(&root);
    }
}
