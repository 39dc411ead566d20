//! Exactly-once under crashes and concurrent writers (issue 15, items 2 and 3): the real
//! `leakhound` killed between a batch's data files and its commit (`LEAKHOUND_FAULT`, a crash
//! injected at a chosen point — SIGABRT, no cleanup), re-run differently; two real backfills
//! of 1,000 files at once into one store, local and on S3 (moto_server); compaction crashed
//! and run twice at once. Every test counts rows per table against a store that imported the
//! same inputs once, undisturbed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use leakhound_ingest::Store;
use leakhound_ingest::compact::{CompactOptions, compact};

use crate::support::*;

/// A debug=1 dump of the bundled examples (its stacks carry labels, so it makes several
/// sample rows per snapshot).
pub fn debug1_example() -> PathBuf {
    data().join("examples/shop/orders-7d9f8b6c5-m4zt9/2026-11-28T04:38:10Z.debug1.txt")
}

pub fn debug2_examples() -> Vec<PathBuf> {
    let dir = data().join("examples/shop/orders-7d9f8b6c5-x2kqp");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// `n` dumps laid out `<dir>/<group>/shop/pod-<i % 37>/<unix time>.<fmt>.txt`, each at its own
/// pod and time (debug=1 and debug=2 alternating), spread over `groups` top directories.
pub fn make_inputs(dir: &Path, n: usize, groups: usize, first: usize) -> Vec<PathBuf> {
    let d1 = std::fs::read(debug1_example()).unwrap();
    let d2: Vec<Vec<u8>> = debug2_examples()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mut tops = Vec::new();
    for g in 0..groups {
        tops.push(dir.join(format!("g{g}")));
    }
    for i in first..first + n {
        let top = &tops[i % groups];
        let ts = 1_795_840_000 + (i as i64) * 7;
        let (body, fmt) = if i % 2 == 0 {
            (&d1, "debug1")
        } else {
            (&d2[i % d2.len()], "debug2")
        };
        let p = top.join(format!("shop/pod-{}/{ts}.{fmt}.txt", i % 37));
        write(&p, body);
    }
    tops
}

pub const TABLES: [&str; 4] = [
    "goroutine_counts",
    "goroutine_samples",
    "stacks",
    "ingest_log",
];

/// Rows per table, ingest-log rows that say "ok" only.
pub fn table_counts(store: &str, env: &[(&str, &str)]) -> Vec<(String, i64)> {
    TABLES
        .iter()
        .map(|t| {
            let sql = if *t == "ingest_log" {
                "SELECT COUNT(*) AS n FROM ingest_log WHERE status = 'ok'".to_string()
            } else {
                format!("SELECT COUNT(*) AS n FROM {t}")
            };
            (t.to_string(), sql_i64_env(store, &sql, env))
        })
        .collect()
}

/// Copies of a row, summed: 0 when every snapshot, sample and stack is there once.
pub fn doubled(store: &str, env: &[(&str, &str)]) -> i64 {
    let q = [
        "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT namespace, pod, ts, format, COUNT(*) AS c FROM goroutine_counts GROUP BY namespace, pod, ts, format)",
        "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT date, stack_id, COUNT(*) AS c FROM stacks GROUP BY date, stack_id)",
        "SELECT COALESCE(SUM(c - 1), 0) AS n FROM (SELECT ingest_key, COUNT(*) AS c FROM ingest_log WHERE status = 'ok' GROUP BY ingest_key)",
    ];
    q.iter().map(|s| sql_i64_env(store, s, env)).sum()
}

/// A store that imported `paths` once, undisturbed: the expected rows.
pub fn reference(dir: &Path, paths: &[&Path]) -> Vec<(String, i64)> {
    let store = dir.join("reference-store");
    let store = store.to_str().unwrap();
    let mut args = vec!["backfill", "--store", store];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    ok(&args);
    table_counts(store, &[])
}

pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("LEAKHOUND_STORE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("spawn leakhound")
}

/// Run with a crash injected; the process must have died of it.
pub fn crash(args: &[&str], fault: &str) {
    let out = run_env(args, &[("LEAKHOUND_FAULT", fault)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("injected crash"),
        "expected a crash at {fault}: {:?}\n{}\n{err}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    crate::compact::walk_files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

/// Kill backfill between a batch's data files and its commit; re-run it differently: every
/// row lands once. On today's code each variant doubled the crashed batch's rows.
#[test]
fn a_crashed_batch_is_never_visible_and_lands_once_when_rerun_differently() {
    let dir = tempfile::tempdir().unwrap();
    let tops = make_inputs(&dir.path().join("in"), 60, 2, 0);
    let extra = dir.path().join("extra");
    let extra_tops = make_inputs(&extra, 1, 1, 1000);
    let (a, b) = (tops[0].to_str().unwrap(), tops[1].to_str().unwrap());
    let all: Vec<&Path> = vec![&tops[0], &tops[1], &extra_tops[0]];
    let want_all = reference(dir.path(), &all);
    let want_60 = {
        let d = tempfile::tempdir().unwrap();
        reference(d.path(), &[&tops[0], &tops[1]])
    };

    for variant in ["reordered", "one-new-file", "after-compaction"] {
        let store = dir.path().join(format!("store-{variant}"));
        let store = store.to_str().unwrap();
        let args = ["backfill", "--store", store, "--batch-items", "20", a, b];
        // The first batch commits; the second dies with its data files written.
        crash(&args, "after-data-files:2");
        let counts = table_counts(store, &[]);
        assert_eq!(
            counts[0].1, 20,
            "{variant}: only the committed batch is visible: {counts:?}"
        );
        assert_eq!(counts[3].1, 20, "{variant}: {counts:?}");
        assert!(
            files_named(&PathBuf::from(store).join("goroutine_counts"), "tx-").len() >= 2,
            "{variant}: the crashed batch left its data files behind"
        );
        let (rerun, want) = match variant {
            "reordered" => (vec![b, a], &want_60),
            "one-new-file" => (vec![a, extra_tops[0].to_str().unwrap(), b], &want_all),
            _ => {
                ok(&["compact", "--store", store]);
                (vec![b, a], &want_60)
            }
        };
        let mut args = vec!["backfill", "--store", store, "--batch-items", "7"];
        args.extend(rerun);
        ok(&args);
        assert_eq!(&table_counts(store, &[]), want, "{variant}");
        assert_eq!(doubled(store, &[]), 0, "{variant}");
        // And once more: nothing new.
        ok(&args);
        assert_eq!(&table_counts(store, &[]), want, "{variant}");
    }
}

/// Compaction sweeps what crashed writers leave: uncommitted data files and the local object
/// store's staging files (`name#N`), after the grace period, never before; rows unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_and_staging_files_are_swept_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let tops = make_inputs(&dir.path().join("in"), 30, 1, 0);
    let store_path = dir.path().join("store");
    let store_s = store_path.to_str().unwrap().to_string();
    let args = [
        "backfill",
        "--store",
        &store_s,
        "--batch-items",
        "10",
        tops[0].to_str().unwrap(),
    ];
    crash(&args, "after-data-files:3");
    // A fake: what a put killed between its staging write and its rename leaves (the real
    // thing cannot be aimed at from outside object_store).
    let counts_dir = store_path.join("goroutine_counts");
    let some = files_named(&counts_dir, "tx-")[0].clone();
    let staging = some.with_file_name("tx-fake.parquet#7");
    std::fs::copy(&some, &staging).unwrap();
    let before = table_counts(&store_s, &[]);
    assert_eq!(before[0].1, 20, "{before:?}");
    let store = Store::open(&store_s).unwrap();
    // Within the grace period nothing goes.
    let s = compact(
        &store,
        &CompactOptions {
            min_files: usize::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((s.orphans_deleted, s.staging_deleted), (0, 0), "{s:?}");
    assert!(staging.exists());
    let s = compact(
        &store,
        &CompactOptions {
            min_files: usize::MAX,
            now: chrono::Utc::now() + chrono::Duration::hours(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(s.orphans_deleted >= 3, "{s:?}");
    assert_eq!(s.staging_deleted, 1, "{s:?}");
    assert!(!staging.exists());
    assert_eq!(table_counts(&store_s, &[]), before);
    // The re-run lands the rest, once.
    ok(&args);
    let want = reference(dir.path(), &[&tops[0]]);
    assert_eq!(table_counts(&store_s, &[]), want);
}

/// A compaction killed after writing its merged files, or right after its commit, leaves every
/// row visible once; the next compaction finishes the job.
#[test]
fn a_crashed_compaction_leaves_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let tops = make_inputs(&dir.path().join("in"), 24, 3, 0);
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    for t in &tops {
        ok(&["backfill", "--store", store, t.to_str().unwrap()]);
    }
    let paths: Vec<&Path> = tops.iter().map(|p| p.as_path()).collect();
    let want = reference(dir.path(), &paths);
    assert_eq!(table_counts(store, &[]), want);
    for fault in ["compact-after-output", "compact-after-commit"] {
        crash(&["compact", "--store", store], fault);
        assert_eq!(table_counts(store, &[]), want, "{fault}");
        assert_eq!(doubled(store, &[]), 0, "{fault}");
    }
    ok(&["compact", "--store", store]);
    assert_eq!(table_counts(store, &[]), want);
    assert_eq!(doubled(store, &[]), 0);
}

fn wait_ok(c: Child, what: &str) -> String {
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Two backfills of the same 1,000 files at once (different orders, so their batches differ),
/// then two compactions at once: each row once. On today's code the files landed twice.
pub fn two_writers_at_once(store: &str, env: &[(&str, &str)], dir: &Path) {
    let tops = make_inputs(&dir.join("in"), 1000, 4, 0);
    let fwd: Vec<&str> = tops.iter().map(|p| p.to_str().unwrap()).collect();
    let rev: Vec<&str> = fwd.iter().rev().copied().collect();
    let mut a = vec!["backfill", "--store", store, "--batch-items", "100"];
    a.extend(&fwd);
    let mut b = vec!["backfill", "--store", store, "--batch-items", "100"];
    b.extend(&rev);
    let (ca, cb) = (spawn(&a, env), spawn(&b, env));
    let (oa, ob) = (
        wait_ok(ca, "first backfill"),
        wait_ok(cb, "second backfill"),
    );
    let paths: Vec<&Path> = tops.iter().map(|p| p.as_path()).collect();
    let want = reference(dir, &paths);
    assert_eq!(want[0].1, 1000);
    assert_eq!(table_counts(store, env), want, "first: {oa}\nsecond: {ob}");
    assert_eq!(doubled(store, env), 0);
    let (ca, cb) = (
        spawn(&["compact", "--store", store], env),
        spawn(&["compact", "--store", store], env),
    );
    let (oa, ob) = (wait_ok(ca, "first compact"), wait_ok(cb, "second compact"));
    assert_eq!(table_counts(store, env), want, "first: {oa}\nsecond: {ob}");
    assert_eq!(doubled(store, env), 0);
}

#[test]
fn two_backfills_at_once_land_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    two_writers_at_once(store.to_str().unwrap(), &[], dir.path());
}

/// Compaction folds the commit log into a checkpoint and deletes the records it covers; readers
/// start from it; a writer that read the log before (its last record is gone now) re-reads the
/// ingest log and still drops what another writer committed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_keeps_readers_short_and_writers_behind_it_exact() {
    use leakhound_ingest::rows::{LogRow, Target};
    use leakhound_ingest::writer::{Batch, Writer, ingest_key};
    use leakhound_schemas::ProfileKind;

    let dir = tempfile::tempdir().unwrap();
    let tops = make_inputs(&dir.path().join("in"), 12, 3, 0);
    let store_path = dir.path().join("store");
    let store_s = store_path.to_str().unwrap().to_string();
    ok(&["backfill", "--store", &store_s, tops[0].to_str().unwrap()]);
    let store = Store::open(&store_s).unwrap();
    // A writer that has read the log (and the ingest log) as it is now.
    let mut w = Writer::new(store.clone());
    let seen = w.imported().await.unwrap();
    assert_eq!(seen.ok.len(), 4);
    // Another writer lands tops[1]; compaction folds everything into a checkpoint.
    ok(&["backfill", "--store", &store_s, tops[1].to_str().unwrap()]);
    let s = compact(
        &store,
        &CompactOptions {
            now: chrono::Utc::now() + chrono::Duration::hours(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(s.checkpoint.is_some() && s.records_folded >= 2, "{s:?}");
    let records: Vec<_> = crate::compact::walk_files(&store_path.join("_commits"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("checkpoint"))
        .collect();
    // What remains is at most the compaction's own commit (younger than the grace period).
    assert!(records.len() <= 1, "{records:?}");
    let paths: Vec<&Path> = vec![&tops[0], &tops[1]];
    let want = reference(dir.path(), &paths);
    assert_eq!(table_counts(&store_s, &[]), want);
    // The first writer now commits one of tops[1]'s files (as a racing backfill would):
    // dropped, not doubled.
    let file = crate::compact::walk_files(&tops[1])[0].clone();
    let bytes = std::fs::read(&file).unwrap();
    let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
    let snap = leakhound_ingest::parse::parse_snapshot(bytes.as_slice(), "x").unwrap();
    let pod = file
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let ts: i64 = file
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let target = Target {
        namespace: "shop".into(),
        pod: pod.into(),
        ..Default::default()
    };
    let fmt = snap.format.map(|f| f.as_str()).unwrap();
    let key = ingest_key(
        &hash,
        &target,
        ts * 1_000_000,
        ProfileKind::Goroutine,
        Some(fmt),
    );
    let mut b = Batch::default();
    let mut tracker = Default::default();
    b.add_snapshot(
        &mut tracker,
        &target,
        ts * 1_000_000,
        "backfill",
        &hash,
        &snap,
    );
    b.add_log(LogRow {
        ingested_at_us: 1,
        source: "racing writer".into(),
        content_hash: hash.clone(),
        status: "ok",
        ingest_key: Some(key),
        ..Default::default()
    });
    let stats = w.commit(b).await.unwrap();
    assert_eq!(stats.conflicts, 1, "{stats:?}");
    assert_eq!(table_counts(&store_s, &[]), want);
    assert_eq!(doubled(&store_s, &[]), 0);
    // And the next backfill of everything adds nothing.
    ok(&[
        "backfill",
        "--store",
        &store_s,
        tops[0].to_str().unwrap(),
        tops[1].to_str().unwrap(),
    ]);
    assert_eq!(table_counts(&store_s, &[]), want);
}

/// `analyze` killed between its result files and their commit leaves no event and no cluster
/// visible; the re-run lands them once, and an identical re-run adds nothing.
#[test]
fn a_crashed_analyze_leaves_no_half_results_and_lands_them_once_when_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let s = leakhound_analyze::scenarios::generate("fast_leak", 11).unwrap();
    let path = dir.path().join("store");
    let store = path.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(leakhound_analyze::backtest::load(
        &leakhound_ingest::Store::open(store).unwrap(),
        &s,
        leakhound_analyze::backtest::Evidence::CountsAndDumps,
    ))
    .unwrap();
    let (from, to) = (s.start_s.to_string(), s.end_s.to_string());
    let args = [
        "analyze",
        "--store",
        store,
        "--replay",
        "--from",
        &from,
        "--to",
        &to,
        "--detectors",
        "baseline_rule,growth_rule",
        "--format",
        "jsonl",
    ];
    let results = || {
        (
            sql_i64(store, "SELECT COUNT(*) FROM leak_events"),
            sql_i64(store, "SELECT COUNT(*) FROM leak_clusters"),
        )
    };
    // Killed after the first result file (events) and after all of them: nothing visible.
    crash(&args, "results-data-file");
    assert_eq!(results(), (0, 0));
    crash(&args, "results-data-file:2");
    assert_eq!(results(), (0, 0));
    // Killed right after its commit: the results are there.
    crash(&args, "results-after-commit");
    let (events, clusters) = results();
    assert!(
        events > 0 && clusters > 0,
        "the fast leak gives events and clusters"
    );
    // The same analysis again: the same files, committed already; nothing added.
    let printed = ok(&args).lines().count() as i64;
    assert_eq!(events, printed, "every event printed is stored, once");
    assert_eq!(results(), (events, clusters));
}
