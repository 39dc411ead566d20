//! leakhound on Apache Ballista (issue 19), for real: `leakhound cluster scheduler` and two
//! `leakhound cluster executor`s on loopback, over a store on the S3-compatible server
//! (moto_server). Every named query gives on the cluster what it gives in-process (and its
//! golden result); `analyze --replay` gives the same events on both engines; an executor
//! killed (SIGKILL) in the middle of a query still leaves a right answer or a clear error, and
//! the cluster answers the next query with the executor left.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::s3::{create_bucket, start_moto};
use crate::support::*;

/// A `leakhound cluster ...` process; its stderr lines are kept for readiness checks.
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

impl Service {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut c = Command::new(bin());
        c.args(args)
            .env_remove("LEAKHOUND_STORE")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("start leakhound cluster");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Service { child, lines }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait_for(&mut self, what: &str, needle: &str) {
        wait_until(what, Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{what}: the process ended ({status}):\n{}",
                    self.lines.lock().unwrap().join("\n")
                );
            }
            self.count(needle) > 0
        });
    }
}

/// The processes `analyze` says scored stl_iforest through `leak_stl_iforest` (its info log
/// line), or None when it did not score that way.
fn scorers(stderr: &str) -> Option<Vec<u32>> {
    let line = stderr
        .lines()
        .find(|l| l.contains("stl_iforest scored by the engine"))?;
    let set = line.split("processes={").nth(1)?.split('}').next()?;
    Some(
        set.split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect(),
    )
}

/// The counts of scenario `fast_leak` (seed 11) as Prometheus `query_range` files, one per pod.
fn scenario_files(dir: &std::path::Path) -> (Vec<String>, i64) {
    let s = leakhound_analyze::scenarios::generate("fast_leak", 11).unwrap();
    let mut per_pod: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for r in &s.rows {
        per_pod
            .entry(r.target.pod.as_str())
            .or_default()
            .push(format!("[{},\"{}\"]", r.ts_us / 1_000_000, r.goroutines));
    }
    let mut files = Vec::new();
    for (pod, values) in per_pod {
        let json = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"go_goroutines","namespace":"{}","pod":"{pod}"}},"values":[{}]}}]}}}}"#,
            s.namespace,
            values.join(",")
        );
        let f = dir.join(format!("{pod}.json"));
        write(&f, json);
        files.push(f.to_str().unwrap().to_string());
    }
    (files, s.leak.unwrap().onset_s)
}

#[test]
fn named_queries_and_analyze_on_a_ballista_cluster_equal_in_process_and_survive_a_lost_executor() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "leakhound");
    let env = moto.client_env();
    let store = "s3://leakhound/cluster-store";
    let dir = tempfile::tempdir().unwrap();
    // The golden fixture (the bundled captures) and a scenario's counts, in one store.
    ok_env(
        &[
            "backfill",
            "--store",
            store,
            data().join("examples").to_str().unwrap(),
        ],
        &env,
    );
    let (files, onset) = scenario_files(dir.path());
    let mut args = vec!["backfill", "--store", store];
    args.extend(files.iter().map(String::as_str));
    ok_env(&args, &env);

    let sport = free_port();
    let scheduler_addr = format!("127.0.0.1:{sport}");
    let mut scheduler = Service::start(
        &[
            "cluster",
            "scheduler",
            "--store",
            store,
            "--listen",
            &scheduler_addr,
            "--executor-timeout",
            "4s",
        ],
        &env,
    );
    wait_until("the scheduler to listen", Duration::from_secs(60), || {
        if let Ok(Some(s)) = scheduler.child.try_wait() {
            panic!("the scheduler ended: {s}");
        }
        std::net::TcpStream::connect(("127.0.0.1", sport)).is_ok()
    });
    let mut executors: Vec<Service> = (0..2)
        .map(|i| {
            let (flight, grpc) = (free_port(), free_port());
            let work = dir.path().join(format!("work-{i}"));
            std::fs::create_dir_all(&work).unwrap();
            Service::start(
                &[
                    "cluster",
                    "executor",
                    "--store",
                    store,
                    "--scheduler",
                    &scheduler_addr,
                    "--listen",
                    &format!("127.0.0.1:{flight}"),
                    "--grpc-port",
                    &grpc.to_string(),
                    "--slots",
                    "2",
                    "--heartbeat",
                    "1s",
                    "--work-dir",
                    work.to_str().unwrap(),
                ],
                &env,
            )
        })
        .collect();
    for (i, e) in executors.iter_mut().enumerate() {
        e.wait_for(
            &format!("executor {i} to register"),
            "Executor registration succeed",
        );
    }
    let engine = format!("ballista://{scheduler_addr}");

    // Every named query: the same CSV on both engines, and the golden one.
    for (name, params) in crate::golden::PARAMS {
        let mut args = vec!["query", name, "--store", store, "--format", "csv"];
        for p in *params {
            args.push("-p");
            args.push(p);
        }
        let local = ok_env(&args, &env);
        args.extend(["--engine", engine.as_str()]);
        let remote = ok_env(&args, &env);
        assert_eq!(remote, local, "{name}: Ballista and in-process differ");
        let golden =
            std::fs::read_to_string(repo().join(format!("queries/{name}.sql.expected"))).unwrap();
        assert_eq!(remote, golden, "{name}: not its golden result on Ballista");
    }
    // A filter that makes a column constant, then a window partitioned by it: Ballista 55
    // dropped the constant at the stage boundary and the executor failed ("Expects PARTITION
    // BY expression to be ordered") until leakhound's scheduler kept the sort keys
    // (`WindowSortKeys`).
    let args = [
        "query",
        "rule_baseline",
        "--store",
        store,
        "--format",
        "csv",
        "-p",
        "namespace=shop",
        "-p",
        "from=2026-11-28T04:00:00Z",
        "-p",
        "to=2026-11-28T05:00:00Z",
    ];
    let local = ok_env(&args, &env);
    assert!(
        local.lines().count() > 1,
        "no row for namespace shop: {local}"
    );
    let mut remote_args = args.to_vec();
    remote_args.extend(["--engine", engine.as_str()]);
    assert_eq!(
        ok_env(&remote_args, &env),
        local,
        "rule_baseline for one namespace differs on Ballista"
    );
    // Both executors did work (a cluster of one would pass the above too).
    for (i, e) in executors.iter().enumerate() {
        assert!(
            e.count("Execute task") > 0,
            "executor {i} ran no task:\n{}",
            e.lines.lock().unwrap().join("\n")
        );
    }

    // analyze --replay: the same events, line for line; on the cluster the STL + Isolation
    // Forest scoring runs on the executors (leak_stl_iforest), in-process in this process.
    let from = (onset - 3600).to_string();
    let to = (onset + 3600).to_string();
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "analyze",
            "--store",
            store,
            "--replay",
            "--from",
            &from,
            "--to",
            &to,
            "--detectors",
            "baseline_rule,growth_rule,stl_iforest",
            "--format",
            "jsonl",
        ];
        args.extend(extra);
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "info"));
        let out = run_env(&args, &env);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(out.status.success(), "analyze {extra:?}: {stderr}");
        let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
        lines.sort();
        (lines, scorers(&stderr))
    };
    let (local, local_scorers) = replay(&[]);
    assert!(
        local.iter().any(|l| l.contains("\"L3\"")),
        "no L3 in-process over a fast leak: {local:?}"
    );
    assert!(
        local.iter().any(|l| l.contains("\"stl_iforest\"")),
        "stl_iforest raised no event in-process over a fast leak: {local:?}"
    );
    assert_eq!(
        local_scorers, None,
        "in-process, the detector scores in its own loop, not through the SQL function"
    );
    let (remote, remote_scorers) = replay(&["--engine", &engine]);
    assert_eq!(remote, local, "analyze --replay differs on Ballista");
    let executor_pids: Vec<u32> = executors.iter().map(|e| e.child.id()).collect();
    // The scoring of a run (the processes its stderr names) was the executors' alone.
    let on_executors = |what: &str, by: Option<Vec<u32>>| {
        let by = by.unwrap_or_else(|| panic!("{what}: stl_iforest not scored by leak_stl_iforest"));
        assert!(
            !by.is_empty() && by.iter().all(|p| executor_pids.contains(p)),
            "{what}: the scoring ran in processes {by:?}, not (only) the executors {executor_pids:?}"
        );
        by
    };
    let scorers = on_executors("replay", remote_scorers);
    eprintln!("stl_iforest scored by executors {scorers:?} of {executor_pids:?}");
    // In groups of one workload each (the bounded step): the same events, each group's
    // queries and scoring on the cluster.
    let (grouped, grouped_scorers) = replay(&["--engine", &engine, "--group-rows", "1"]);
    assert_eq!(
        grouped, local,
        "analyze --replay in groups differs on Ballista"
    );
    on_executors("replay in groups", grouped_scorers);

    // Live steps on the cluster: the second reuses the first's findings (24 of its 25
    // evaluations, kept in the store) and gives the events of an in-process step that computes
    // every evaluation.
    let live = |now: i64, extra: &[&str]| {
        let now = now.to_string();
        let mut args = vec![
            "analyze", "--store", store, "--now", &now, "--format", "jsonl",
        ];
        args.extend(extra);
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "info"));
        let out = run_env(&args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "analyze --now {now} {extra:?}: {stderr}"
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        (lines.join("\n"), stderr)
    };
    let t1 = (onset + 1_800).div_euclid(300) * 300;
    let (first, log) = live(t1, &["--engine", &engine]);
    assert!(
        first.contains("\"L3\""),
        "no L3 in a live step on the cluster 30 minutes into a fast leak: {first}"
    );
    assert!(log.contains("reused_evaluations=0"), "{log}");
    let (want, _) = live(t1 + 300, &["--no-reuse", "--no-write"]);
    let (got, log) = live(t1 + 300, &["--engine", &engine]);
    assert!(
        log.contains("reused_evaluations=24 reused_groups=1"),
        "the second live step on the cluster reused nothing: {log}"
    );
    on_executors("the second live step", self::scorers(&log));
    assert!(!want.trim().is_empty(), "no event at the second step");
    assert_eq!(
        got, want,
        "a live step on the cluster reusing findings differs from one computing everything"
    );

    // An executor killed while a query runs.
    let slow = "SELECT COUNT(*) AS n FROM goroutine_counts a JOIN goroutine_counts b \
                ON a.pod = b.pod AND a.goroutines <= b.goroutines";
    let want = ok_env(&["sql", "--store", store, "--format", "csv", slow], &env);
    let before: Vec<usize> = executors.iter().map(|e| e.count("Execute task")).collect();
    let mut query = Command::new(bin())
        .args([
            "sql", "--store", store, "--format", "csv", "--engine", &engine, slow,
        ])
        .env_remove("LEAKHOUND_STORE")
        .env("RUST_LOG", "warn")
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first executor that takes a task of it is killed (SIGKILL) while the query runs.
    let mut victim = None;
    wait_until(
        "an executor to run a task of the slow query",
        Duration::from_secs(120),
        || {
            victim = (0..executors.len()).find(|&i| executors[i].count("Execute task") > before[i]);
            victim.is_some()
        },
    );
    let victim = victim.unwrap();
    assert!(
        query.try_wait().unwrap().is_none(),
        "the slow query ended before an executor could be killed"
    );
    executors[victim].child.kill().unwrap();
    executors[victim].child.wait().unwrap();
    wait_until(
        "the query to end after the executor was lost",
        Duration::from_secs(180),
        || query.try_wait().unwrap().is_some(),
    );
    let out = query.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if out.status.success() {
        assert_eq!(stdout, want, "a wrong answer after losing an executor");
    } else {
        assert!(
            stderr.starts_with("error: ") && stdout.trim().is_empty(),
            "neither the answer nor a clear error: {:?}\n{stdout}\n{stderr}",
            out.status
        );
    }
    eprintln!(
        "lost executor: {}",
        if out.status.success() {
            "right answer".to_string()
        } else {
            format!("error: {}", stderr.trim())
        }
    );
    // The cluster goes on with the executor left.
    let after = ok_env(
        &[
            "sql", "--store", store, "--format", "csv", "--engine", &engine, slow,
        ],
        &env,
    );
    assert_eq!(after, want, "the cluster's answer after losing an executor");
}
