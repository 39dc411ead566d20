//! Fault bench: the real `leakhound` killed at random points of backfill, compact and ingest,
//! N times each, then re-run with shuffled and extended inputs; rows expected vs found per
//! table. The claim it checks: lost 0, doubled 0.
//!
//! ```sh
//! cargo bench --bench faults                        # N = 3 per scenario
//! LEAKHOUND_FAULT_BENCH_N=20 LEAKHOUND_FAULT_BENCH_SEED=7 cargo bench --bench faults
//! ```
//!
//! The crash is `LEAKHOUND_FAULT=<point>:<n>` (see `leakhound_ingest::fault`): the process
//! aborts the n-th time it passes the point — a crash aimed between two writes of one commit,
//! which a `kill -9` from outside can only hit by luck. Points and occurrences are drawn from
//! a seeded generator (printed, so a failing run can be replayed). Expected rows come from a
//! store that imported the same inputs once, undisturbed. Exit status 1 if anything was lost
//! or doubled.

use leakhound_analyze::rng::SplitMix64;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TABLES: [&str; 4] = [
    "goroutine_counts",
    "goroutine_samples",
    "stacks",
    "ingest_log",
];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_leakhound")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Crash points drawn from the crate's one seeded stream (SplitMix64, `leakhound_analyze::rng`),
/// seeded and printed for replays.
struct Rng(SplitMix64);

impl Rng {
    /// Uniform-ish in 0..n (modulo, as the seeds printed by earlier runs were drawn).
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("LEAKHOUND_STORE")
        .env("RUST_LOG", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run leakhound")
}

fn ok(args: &[&str]) -> String {
    let out = run(args, &[]);
    assert!(
        out.status.success(),
        "leakhound {args:?}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sql_i64(store: &str, sql: &str) -> i64 {
    let out = ok(&["sql", "--store", store, "--format", "csv", sql]);
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn counts(store: &str) -> Vec<i64> {
    TABLES
        .iter()
        .map(|t| {
            if *t == "ingest_log" {
                sql_i64(
                    store,
                    "SELECT COUNT(*) AS n FROM ingest_log WHERE status = 'ok'",
                )
            } else {
                sql_i64(store, &format!("SELECT COUNT(*) AS n FROM {t}"))
            }
        })
        .collect()
}

/// Copies of a row beyond the first, summed over counts, stacks and the ingest log.
fn duplicates(store: &str) -> i64 {
    [
        "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT namespace, pod, ts, format, source, COUNT(*) AS c FROM goroutine_counts GROUP BY namespace, pod, ts, format, source)",
        "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT date, stack_id, COUNT(*) AS c FROM stacks GROUP BY date, stack_id)",
        "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT ingest_key, COUNT(*) AS c FROM ingest_log WHERE status = 'ok' AND ingest_key IS NOT NULL GROUP BY ingest_key)",
    ]
    .iter()
    .map(|q| sql_i64(store, q))
    .sum()
}

/// `n` dumps (the bundled examples' debug=1 and debug=2 captures) at distinct pods and times,
/// spread over `groups` top directories.
fn make_inputs(dir: &Path, n: usize, groups: usize, first: usize) -> Vec<PathBuf> {
    let ex = repo().join("tests/data/examples/shop");
    let mut bodies: Vec<(Vec<u8>, &str)> = Vec::new();
    for pod in ["orders-7d9f8b6c5-m4zt9", "orders-7d9f8b6c5-x2kqp"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(ex.join(pod))
            .expect("examples")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for f in files {
            let fmt = if f.to_string_lossy().contains("debug1") {
                "debug1"
            } else {
                "debug2"
            };
            bodies.push((std::fs::read(&f).expect("read example"), fmt));
        }
    }
    let tops: Vec<PathBuf> = (0..groups).map(|g| dir.join(format!("g{g}"))).collect();
    for i in first..first + n {
        let (body, fmt) = &bodies[i % bodies.len()];
        let ts = 1_795_840_000 + (i as i64) * 11;
        let p = tops[i % groups].join(format!("shop/pod-{}/{ts}.{fmt}.txt", i % 29));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write input");
    }
    tops
}

fn backfill_args<'a>(store: &'a str, batch: &'a str, paths: &'a [String]) -> Vec<&'a str> {
    let mut a = vec!["backfill", "--store", store, "--batch-items", batch];
    a.extend(paths.iter().map(String::as_str));
    a
}

#[derive(Default)]
struct Tally {
    runs: usize,
    crashed: usize,
    expected: [i64; 4],
    found: [i64; 4],
    lost: [i64; 4],
    doubled: [i64; 4],
    duplicate_rows: i64,
}

impl Tally {
    fn add(&mut self, want: &[i64], got: &[i64], dups: i64) {
        self.runs += 1;
        for i in 0..TABLES.len() {
            self.expected[i] += want[i];
            self.found[i] += got[i];
            self.lost[i] += (want[i] - got[i]).max(0);
            self.doubled[i] += (got[i] - want[i]).max(0);
        }
        self.duplicate_rows += dups;
    }

    fn print(&self, name: &str) -> bool {
        println!(
            "{name}: {} runs, {} crashed at the drawn point",
            self.runs, self.crashed
        );
        println!(
            "  {:<18} {:>10} {:>10} {:>8} {:>8}   (rows, summed over the runs)",
            "table", "expected", "found", "lost", "doubled"
        );
        for (i, t) in TABLES.iter().enumerate() {
            println!(
                "  {:<18} {:>10} {:>10} {:>8} {:>8}",
                t, self.expected[i], self.found[i], self.lost[i], self.doubled[i]
            );
        }
        println!("  duplicate rows (same key twice): {}", self.duplicate_rows);
        self.lost.iter().all(|l| *l == 0)
            && self.doubled.iter().all(|d| *d == 0)
            && self.duplicate_rows == 0
    }
}

fn crashed(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("injected crash")
}

fn backfill_scenario(rng: &mut Rng, n: usize, work: &Path) -> bool {
    let tops = make_inputs(&work.join("in"), 120, 4, 0);
    let extra = make_inputs(&work.join("extra"), 20, 1, 500);
    let mut all: Vec<String> = tops.iter().map(|p| p.display().to_string()).collect();
    all.push(extra[0].display().to_string());
    let reference = work.join("reference");
    let reference = reference.to_str().expect("utf-8");
    ok(&backfill_args(reference, "256", &all));
    let want = counts(reference);
    let mut t = Tally::default();
    for i in 0..n {
        let store = work.join(format!("store-backfill-{i}"));
        let store = store.to_str().expect("utf-8");
        let mut first: Vec<String> = tops.iter().map(|p| p.display().to_string()).collect();
        rng.shuffle(&mut first);
        let batch = (5 + rng.below(40)).to_string();
        let point = ["data-file", "after-data-files", "after-commit"][rng.below(3) as usize];
        let fault = format!("{point}:{}", 1 + rng.below(6));
        let out = run(
            &backfill_args(store, &batch, &first),
            &[("LEAKHOUND_FAULT", fault.clone())],
        );
        if crashed(&out) {
            t.crashed += 1;
        }
        if rng.below(2) == 0 {
            ok(&["compact", "--store", store]);
        }
        // Re-run: another order, another batch size, plus files never seen.
        let mut again = all.clone();
        rng.shuffle(&mut again);
        let batch2 = (5 + rng.below(40)).to_string();
        ok(&backfill_args(store, &batch2, &again));
        let got = counts(store);
        let dups = duplicates(store);
        if got != want || dups != 0 {
            println!("  run {i}: fault {fault}, batch {batch} then {batch2}: {got:?} vs {want:?}");
        }
        t.add(&want, &got, dups);
    }
    t.print("backfill killed, re-run shuffled and extended")
}

fn compact_scenario(rng: &mut Rng, n: usize, work: &Path) -> bool {
    let tops = make_inputs(&work.join("in-compact"), 60, 6, 0);
    let paths: Vec<String> = tops.iter().map(|p| p.display().to_string()).collect();
    let reference = work.join("reference-compact");
    let reference = reference.to_str().expect("utf-8");
    ok(&backfill_args(reference, "256", &paths));
    let want = counts(reference);
    let mut t = Tally::default();
    for i in 0..n {
        let store = work.join(format!("store-compact-{i}"));
        let store = store.to_str().expect("utf-8");
        // Several commits per partition, and one compaction already done, so that the crash
        // can land in the merge, the commit or the garbage collection of replaced files.
        let split = 1 + rng.below(paths.len() as u64 - 1) as usize;
        ok(&backfill_args(store, "9", &paths[..split]));
        ok(&["compact", "--store", store, "--grace", "0s"]);
        ok(&backfill_args(store, "7", &paths[split..]));
        let point = [
            "compact-after-output",
            "compact-after-commit",
            "compact-mid-gc",
            "compact-after-checkpoint",
        ][rng.below(4) as usize];
        // Merged files and deletes happen several times a run; the commit and the checkpoint
        // once.
        let n = match point {
            "compact-after-output" | "compact-mid-gc" => 1 + rng.below(3),
            _ => 1,
        };
        let fault = format!("{point}:{n}");
        let out = run(
            &["compact", "--store", store, "--grace", "0s"],
            &[("LEAKHOUND_FAULT", fault.clone())],
        );
        if crashed(&out) {
            t.crashed += 1;
        } else if std::env::var_os("LEAKHOUND_FAULT_BENCH_VERBOSE").is_some() {
            println!(
                "  run {i}: {fault} not reached: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        let mid = counts(store);
        ok(&["compact", "--store", store, "--grace", "0s"]);
        let got = counts(store);
        let dups = duplicates(store) + duplicates_between(&mid, &got);
        if got != want || dups != 0 {
            println!(
                "  run {i}: fault {fault}: after crash {mid:?}, after re-run {got:?} vs {want:?}"
            );
        }
        t.add(&want, &got, dups);
    }
    t.print("compact killed, run again")
}

/// Rows that differ between the store right after the crash and after the re-run: a crashed
/// compaction must change nothing readers see.
fn duplicates_between(a: &[i64], b: &[i64]) -> i64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

/// A Go-like target on loopback: `/metrics` and `/debug/pprof/goroutine?debug=1` from the
/// bundled examples, served by a thread (the bench's own, not a mock of leakhound).
fn serve_target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let debug1 =
        std::fs::read(repo().join(
            "tests/data/examples/shop/orders-7d9f8b6c5-m4zt9/2026-11-28T04:38:10Z.debug1.txt",
        ))
        .expect("example");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(match s.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let (code, body): (&str, Vec<u8>) = if line.contains("/metrics") {
                (
                    "200 OK",
                    b"# TYPE go_goroutines gauge\ngo_goroutines 34\n".to_vec(),
                )
            } else if line.contains("debug=1") {
                ("200 OK", debug1.clone())
            } else {
                ("404 Not Found", b"404 page not found\n".to_vec())
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn ingest_scenario(rng: &mut Rng, n: usize, work: &Path) -> bool {
    let url = serve_target();
    let mut t = Tally::default();
    for i in 0..n {
        let store = work.join(format!("store-ingest-{i}"));
        let store = store.to_str().expect("utf-8");
        let targets: Vec<String> = (0..5)
            .map(|k| format!("--target=shop/pod-{k}={url}"))
            .collect();
        let mut args = vec!["ingest", "--store", store];
        args.extend(targets.iter().map(String::as_str));
        // One clean pass: what a pass writes.
        ok(&args);
        let per_pass = counts(store);
        let point = ["data-file", "after-data-files", "after-commit"][rng.below(3) as usize];
        let fault = format!("{point}:{}", 1 + rng.below(3));
        let out = run(&args, &[("LEAKHOUND_FAULT", fault.clone())]);
        let committed = if crashed(&out) {
            t.crashed += 1;
            point == "after-commit"
        } else {
            true
        };
        ok(&args);
        // Passes are observations at distinct times: every committed pass once, the crashed
        // one either whole (killed after its commit) or not at all.
        let passes = if committed { 3 } else { 2 };
        let want: Vec<i64> = per_pass
            .iter()
            .enumerate()
            .map(|(k, v)| {
                if TABLES[k] == "stacks" {
                    *v
                } else {
                    v * passes
                }
            })
            .collect();
        let got = counts(store);
        let dups = sql_i64(
            store,
            "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT date, stack_id, COUNT(*) AS c FROM stacks GROUP BY date, stack_id)",
        );
        if got != want || dups != 0 {
            println!("  run {i}: fault {fault}: {got:?} vs {want:?}");
        }
        t.add(&want, &got, dups);
    }
    t.print("ingest killed, next pass")
}

fn main() {
    let n: usize = std::env::var("LEAKHOUND_FAULT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("LEAKHOUND_FAULT_BENCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    println!("fault bench: N = {n} per scenario, seed {seed} (LEAKHOUND_FAULT_BENCH_SEED)");
    let work = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(SplitMix64::new(seed));
    let mut all_ok = true;
    all_ok &= backfill_scenario(&mut rng, n, work.path());
    all_ok &= compact_scenario(&mut rng, n, work.path());
    all_ok &= ingest_scenario(&mut rng, n, work.path());
    println!(
        "{}",
        if all_ok {
            "lost 0, doubled 0"
        } else {
            "ROWS LOST OR DOUBLED"
        }
    );
    if !all_ok {
        std::process::exit(1);
    }
}
