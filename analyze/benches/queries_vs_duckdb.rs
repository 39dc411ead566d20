//! The named queries over a month of a fleet, next to DuckDB on the same Parquet files.
//!
//! `cargo bench -p leakhound-analyze --bench queries_vs_duckdb`
//!
//! Builds (once, cached under `$LEAKHOUND_QBENCH_DIR`, default `/var/tmp/leakhound-qbench`) a
//! store of `LEAKHOUND_QBENCH_PODS` pods (500) x `LEAKHOUND_QBENCH_DAYS` days (30): a
//! `/metrics` count row per pod per minute, and every `LEAKHOUND_QBENCH_SAMPLE_MIN` minutes (30)
//! a debug=2 capture of a real leaking Go program (`tests/data/examples`) whose leaking stacks
//! grow with time, through the same writer `ingest` uses (one file per partition). Then runs
//! each named query over the whole month, best of 3, with leakhound (DataFusion, the session
//! `leakhound query` uses) and with DuckDB (Python package, from `$LEAKHOUND_DUCKDB_PYTHON`,
//! default `/var/tmp/leakhound-duckdb/bin/python`; `python3 -m venv … && pip install duckdb`)
//! over the same files (`read_parquet(…, hive_partitioning = true)`), both on 2 threads, and
//! checks that both return the same number of rows.
//!
//! Two modes, each engine in the same one (`LEAKHOUND_QBENCH_MODE=cold|warm`, default both):
//! **cold**, every run from nothing, as a one-query `leakhound sql` process or a new DuckDB
//! connection (the files' listing, footers and statistics are read again); **warm**, one session
//! for every run, as `leakhound analyze` (and `leakhound sql -f` over several statements) uses,
//! next to DuckDB with `parquet_metadata_cache` on. The OS page cache holds the files in both.
//!
//! While tuning: `LEAKHOUND_QBENCH_ONLY=oldest_blocked,stack_growth` runs only those queries,
//! `LEAKHOUND_QBENCH_EXPLAIN=1` prints leakhound's `EXPLAIN ANALYZE` of each,
//! `LEAKHOUND_QBENCH_SET='datafusion.x.y = v; ...'` applies settings to leakhound's session,
//! `LEAKHOUND_QBENCH_ADHOC=file.json` (name -> SQL) runs ad hoc SQL too,
//! `LEAKHOUND_QBENCH_PHASES=1` the time of each run's session set-up, planning and execution, and
//! `LEAKHOUND_QBENCH_NO_DUCKDB=1` skips DuckDB. `LEAKHOUND_QBENCH_ROUNDS=N` (1) repeats the
//! comparison N times, the engines one after the other in each round, and prints the best of
//! all rounds for each engine and the range of the rounds' own ratios.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use leakhound_analyze::queries;
use leakhound_ingest::Store;

// The allocator the `leakhound` binary uses (src/main.rs): measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use leakhound_analyze::fleetgen::{QUERIES, START_S, build, env_num, params};

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys, time
store, qfile, mode = sys.argv[1], sys.argv[2], sys.argv[3]
queries = json.load(open(qfile))
def connect():
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("SET TimeZone = 'UTC'")
    # warm: keep each file's footer across queries, as leakhound's session does
    con.execute(f"SET parquet_metadata_cache = {'true' if mode == 'warm' else 'false'}")
    for t in ["goroutine_counts", "goroutine_samples", "stacks"]:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{store}/{t}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)")
    return con
con = connect() if mode == "warm" else None
out = {}
for name, sql in queries.items():
    best, rows, err = None, None, None
    for _ in range(3):
        # cold: a new connection per run, as a new `duckdb` process would have (set up untimed)
        c = con if mode == "warm" else connect()
        t0 = time.perf_counter()
        try:
            rows = len(c.execute(sql).fetchall())
        except Exception as e:
            err = str(e).splitlines()[0]
            break
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    out[name] = {"seconds": best, "rows": rows, "error": err}
print(json.dumps(out))
"#;

fn main() {
    let pods = env_num("LEAKHOUND_QBENCH_PODS", 500);
    let days = env_num("LEAKHOUND_QBENCH_DAYS", 30);
    let sample_min = env_num("LEAKHOUND_QBENCH_SAMPLE_MIN", 30).clamp(1, 1440);
    let root = PathBuf::from(
        std::env::var("LEAKHOUND_QBENCH_DIR").unwrap_or("/var/tmp/leakhound-qbench".into()),
    );
    let dir = root.join(format!("p{pods}-d{days}-s{sample_min}"));
    let python = std::env::var("LEAKHOUND_DUCKDB_PYTHON")
        .unwrap_or("/var/tmp/leakhound-duckdb/bin/python".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let done = dir.join("_complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        eprintln!("building the store in {} ...", dir.display());
        let t = Instant::now();
        rt.block_on(build(&dir, pods, days, sample_min));
        std::fs::write(&done, "").expect("marker");
        eprintln!("built in {:.0}s", t.elapsed().as_secs_f64());
    }
    let store = Store::open(dir.to_str().expect("utf-8")).expect("store");
    let from = "2026-10-01T00:00:00Z";
    let to = chrono::DateTime::from_timestamp(START_S + days * 86_400, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let only = std::env::var("LEAKHOUND_QBENCH_ONLY").unwrap_or_default();
    let explain = std::env::var_os("LEAKHOUND_QBENCH_EXPLAIN").is_some();
    let phases = std::env::var_os("LEAKHOUND_QBENCH_PHASES").is_some();
    let sets = std::env::var("LEAKHOUND_QBENCH_SET").unwrap_or_default();
    let mut rendered = BTreeMap::new();
    // Ad hoc SQL next to the named queries, while tuning: a JSON object of name -> SQL.
    let adhoc: BTreeMap<String, String> = std::env::var("LEAKHOUND_QBENCH_ADHOC")
        .ok()
        .map(|f| {
            serde_json::from_slice(&std::fs::read(&f).expect("LEAKHOUND_QBENCH_ADHOC file"))
                .expect("LEAKHOUND_QBENCH_ADHOC: a JSON object of name -> SQL")
        })
        .unwrap_or_default();
    let named = QUERIES
        .iter()
        .filter(|n| only.is_empty() || only.split(',').any(|o| o.trim() == **n))
        .map(|name| {
            let q = queries::find(name, None).expect("query");
            let sql = q.render(&params(name, from, &to), now).expect("render");
            (name.to_string(), sql)
        });
    let all: Vec<(String, String)> = named.chain(adhoc).collect();
    for (name, sql) in &all {
        // DuckDB reads the same SQL; strip the trailing `;` for its Python API.
        rendered.insert(name.clone(), sql.trim().trim_end_matches(';').to_string());
    }
    let qfile = dir.join("_queries.json");
    std::fs::write(&qfile, serde_json::to_string(&rendered).expect("json")).expect("write");
    let script = dir.join("_duckdb_bench.py");
    std::fs::write(&script, DUCKDB_SCRIPT).expect("write");
    // cold: every run starts from nothing, as a `leakhound sql` process (or a new DuckDB
    // connection) does: listing, footers and statistics are read again. warm: one session for
    // all runs, as `leakhound analyze` uses one session for all its queries, and DuckDB with its
    // Parquet metadata cache on. Both: the OS page cache holds the files.
    let modes: &[&str] = match std::env::var("LEAKHOUND_QBENCH_MODE").as_deref() {
        Ok("cold") => &["cold"],
        Ok("warm") => &["warm"],
        _ => &["cold", "warm"],
    };
    let new_session = || {
        rt.block_on(async {
            let ctx = leakhound_analyze::session::session(&store)
                .await
                .expect("session");
            for kv in sets.split(';').filter(|kv| !kv.trim().is_empty()) {
                ctx.sql(&format!("SET {kv}")).await.expect("SET");
            }
            ctx
        })
    };
    // Rounds: each engine's best of 3 per round, the two one after the other, so that a slow
    // spell of the machine (they last minutes here) hits both engines of a round alike.
    let rounds = env_num("LEAKHOUND_QBENCH_ROUNDS", 1).max(1);
    let mut report = Vec::new();
    for round in 0..rounds {
        for &mode in modes {
            eprintln!("round {}/{rounds}, {mode}", round + 1);
            let shared = (mode == "warm").then(new_session);
            let mut ours = BTreeMap::new();
            for (name, sql) in &all {
                let mut best = f64::MAX;
                let mut rows = 0;
                for _ in 0..3 {
                    let t = Instant::now();
                    let ctx = shared.clone().unwrap_or_else(new_session);
                    let t1 = Instant::now();
                    let n = rt.block_on(async {
                        let df = ctx.sql(sql).await.expect("plan");
                        let plan = df.create_physical_plan().await.expect("physical plan");
                        let t2 = Instant::now();
                        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
                            .await
                            .expect("run");
                        if phases {
                            eprintln!(
                                "  {mode} {name}: session {:.0} ms, plan {:.0} ms, run {:.0} ms",
                                (t1 - t).as_secs_f64() * 1e3,
                                (t2 - t1).as_secs_f64() * 1e3,
                                t2.elapsed().as_secs_f64() * 1e3
                            );
                        }
                        batches.iter().map(|b| b.num_rows()).sum::<usize>()
                    });
                    best = best.min(t.elapsed().as_secs_f64());
                    rows = n;
                }
                ours.insert(name.clone(), (best, rows));
                if explain && mode == modes[0] && round == 0 {
                    let ctx = new_session();
                    let text = rt.block_on(async {
                        let batches = ctx
                            .sql(&format!("EXPLAIN ANALYZE {sql}"))
                            .await
                            .expect("plan")
                            .collect()
                            .await
                            .expect("run");
                        arrow::util::pretty::pretty_format_batches(&batches)
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    });
                    println!("{name}:\n{text}");
                }
            }
            let out = if std::env::var_os("LEAKHOUND_QBENCH_NO_DUCKDB").is_some() {
                Err(std::io::Error::other("LEAKHOUND_QBENCH_NO_DUCKDB is set"))
            } else {
                std::process::Command::new(&python)
                    .arg(&script)
                    .arg(&dir)
                    .arg(&qfile)
                    .arg(mode)
                    .output()
            };
            let duck: serde_json::Value = match out {
                Ok(o) if o.status.success() => {
                    serde_json::from_slice(&o.stdout).unwrap_or_default()
                }
                Ok(o) => {
                    eprintln!("duckdb failed: {}", String::from_utf8_lossy(&o.stderr));
                    serde_json::Value::Null
                }
                Err(e) => {
                    eprintln!("cannot run {python}: {e} (set LEAKHOUND_DUCKDB_PYTHON)");
                    serde_json::Value::Null
                }
            };
            report.push((mode, ours, duck));
        }
    }
    let counts: usize = (pods * days * 1440) as usize;
    println!(
        "queries_vs_duckdb: {pods} pods x {days} days: {counts} count rows, samples every {sample_min} min; best of 3, 2 threads"
    );
    for &mode in modes {
        println!(
            "{:<22} {:>10} {:>12} {:>12} {:>14} {:>16}",
            format!("query ({mode})"),
            "rows",
            "leakhound",
            "duckdb",
            "duckdb/ours",
            "rounds' ratios"
        );
        let runs: Vec<_> = report.iter().filter(|(m, _, _)| *m == mode).collect();
        let Some((_, first, _)) = runs.first() else {
            continue;
        };
        for (name, (_, rows)) in first {
            let ours_best = runs
                .iter()
                .map(|(_, o, _)| o[name].0)
                .fold(f64::MAX, f64::min);
            let duck_secs: Vec<Option<f64>> = runs
                .iter()
                .map(|(_, _, d)| d[name]["seconds"].as_f64())
                .collect();
            let duck_best = duck_secs.iter().flatten().copied().reduce(f64::min);
            let ratios: Vec<f64> = runs
                .iter()
                .zip(&duck_secs)
                .filter_map(|((_, o, _), d)| d.map(|d| d / o[name].0))
                .collect();
            let spread = match (
                ratios.iter().copied().reduce(f64::min),
                ratios.iter().copied().reduce(f64::max),
            ) {
                (Some(lo), Some(hi)) if ratios.len() > 1 => format!("{lo:.2}-{hi:.2}x"),
                _ => "-".into(),
            };
            let d = &runs[0].2[name];
            let rows_note = match d["rows"].as_u64() {
                Some(r) if r as usize == *rows => format!("{rows}"),
                Some(r) => format!("{rows}≠{r}"),
                None => format!("{rows}"),
            };
            println!(
                "{:<22} {:>10} {:>10.0}ms {:>12} {:>14} {:>16}{}",
                name,
                rows_note,
                ours_best * 1000.0,
                duck_best
                    .map(|x| format!("{:.0}ms", x * 1000.0))
                    .unwrap_or("-".into()),
                duck_best
                    .map(|x| format!("{:.2}x", x / ours_best))
                    .unwrap_or("-".into()),
                spread,
                d["error"]
                    .as_str()
                    .map(|e| format!("  duckdb error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
}
