//! `leakhound ingest` against the real leaking Go program: counts, per-stack leak counts,
//! residence from goroutine ids, the leak profile, and targets that misbehave.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::goprog::{Fleet, Leaky};
use crate::support::*;

/// A pod whose process restarted between two runs: the new process numbers its goroutines from
/// 1 again, the same ids as the old one's, and its leaked goroutines must not inherit the old
/// ones' ages (the process start from /metrics says it is a new process).
#[test]
fn a_restarted_process_starts_its_ages_afresh() {
    let first = Leaky::start(&["-leak", "chansend:5"]);
    first.wait_steady();
    let addr = first.url.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let target = format!("shop/orders-1={}", first.url);
    let ingest = || {
        ok(&[
            "ingest",
            "--store",
            store,
            "--target",
            &target,
            "--passes",
            "1",
            "--debug2-every",
            "1",
        ])
    };
    ingest();
    drop(first);
    // The same pod, a new process on the same address.
    let second = Leaky::start(&["-addr", &addr, "-leak", "chansend:5"]);
    second.wait_steady();
    ingest();
    let captures = sql_json(
        store,
        "SELECT ts, MIN(min_goroutine_id) AS min_id, \
         MAX(CAST(date_part('epoch', ts) - date_part('epoch', oldest_first_seen) AS DOUBLE)) AS max_age \
         FROM goroutine_samples WHERE format = 'debug2' GROUP BY ts ORDER BY ts",
    );
    assert_eq!(captures.len(), 2, "{captures:?}");
    // Both processes number their goroutines from 1 (main): the same ids (the premise) ...
    assert!(captures.iter().all(|c| c["min_id"] == 1), "{captures:?}");
    // ... yet every goroutine of the new process is as old as its first capture says: none.
    assert_eq!(captures[1]["max_age"].as_f64(), Some(0.0), "{captures:?}");
}

#[test]
fn passes_over_a_leaking_program_land_what_it_leaked() {
    let leaky = Leaky::start(&["-leak", "chansend:5,select:3,httpbody:2"]);
    let leaks = leaky.wait_steady();
    assert_eq!(leaks["started"]["chansend"], 5);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let target = format!("shop/orders-1={}", leaky.url);
    let out = ok(&[
        "ingest",
        "--store",
        store,
        "--target",
        &target,
        "--every",
        "1s",
        "--passes",
        "3",
        "--debug2-every",
        "1",
    ]);
    assert_eq!(out.matches(" 1 up").count(), 3, "{out}");
    let steady = leaky.leaks()["goroutines"].as_i64().unwrap();

    // One count row per pass, within a few goroutines of what the program reports: its own
    // HTTP handling comes and goes, and client_golang's Registry.Gather runs up to one worker
    // goroutine per collector while go_goroutines is read (5 collectors in leaky: go, process,
    // and its three promauto metrics), more of them on a loaded machine (CI saw +5).
    let counts = sql_json(
        store,
        "SELECT goroutines, threads FROM goroutine_counts ORDER BY ts",
    );
    assert_eq!(counts.len(), 3);
    for c in &counts {
        let g = c["goroutines"].as_i64().unwrap();
        assert!((-4..=4 + 5).contains(&(g - steady)), "{g} vs {steady}");
        assert!(c["threads"].as_i64().unwrap() > 0);
    }
    // Per stack, per pass and format: exactly what was leaked.
    for (func, want) in [
        ("main.leakChanSend", 5),
        ("main.leakSelect", 3),
        ("net/http.(*persistConn).readLoop", 2),
        ("main.waitForStreamEnd", 2),
    ] {
        let rows = sql_json(
            store,
            &format!(
                "SELECT g.ts, g.format, SUM(g.goroutines) AS n FROM goroutine_samples g \
                 JOIN (SELECT DISTINCT stack_id, top_function FROM stacks) s ON g.stack_id = s.stack_id \
                 WHERE s.top_function = '{func}' AND g.profile = 'goroutine' GROUP BY g.ts, g.format"
            ),
        );
        assert_eq!(
            rows.len(),
            6,
            "{func}: debug=1 and debug=2 in each of 3 passes: {rows:?}"
        );
        assert!(rows.iter().all(|r| r["n"] == want), "{func}: {rows:?}");
    }
    // Residence: the leaked goroutines were there before the first pass and stay; their age
    // at the last pass spans the passes (ids tracked across snapshots).
    let ages = sql_json(
        store,
        "SELECT CAST(date_part('epoch', ts) - date_part('epoch', oldest_first_seen) AS DOUBLE) AS age \
         FROM goroutine_samples WHERE format = 'debug2' AND min_goroutine_id IS NOT NULL \
         AND state = 'chan send' ORDER BY ts",
    );
    assert_eq!(ages.len(), 3, "{ages:?}");
    let a: Vec<f64> = ages.iter().map(|r| r["age"].as_f64().unwrap()).collect();
    assert!(
        a[2] >= 1.5 && a[2] > a[1] && a[1] > a[0],
        "ages must grow pass over pass: {a:?}"
    );
    // Status rows: one per pass, all up.
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM scrape_status WHERE up"),
        3
    );
}

/// A listener that accepts and never answers.
fn hung_server() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// Answers every request with an HTML error page.
fn html_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten().take(32) {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "<html><body>502 Bad Gateway</body></html>";
            let _ = write!(
                s,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_hung_or_broken_target_does_not_hold_up_the_others() {
    let leaky = Leaky::start(&["-leak", "chansend:2"]);
    leaky.wait_steady();
    let (_hung, hung_url) = hung_server();
    let html_url = html_server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let t0 = Instant::now();
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--target",
        &format!("shop/good={}", leaky.url),
        "--target",
        &format!("shop/hung={hung_url}"),
        "--target",
        &format!("shop/broken={html_url}"),
        "--timeout",
        "2s",
    ]);
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(took < Duration::from_secs(10), "pass took {took:?}");
    let rows = sql_json(
        store,
        "SELECT pod, up, error FROM scrape_status ORDER BY pod",
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let by = |p: &str| rows.iter().find(|r| r["pod"] == p).unwrap().clone();
    assert_eq!(by("good")["up"], true);
    assert_eq!(by("hung")["up"], false);
    assert!(
        by("hung")["error"].as_str().unwrap().contains("timed out"),
        "{rows:?}"
    );
    assert_eq!(by("broken")["up"], false);
    assert!(
        by("broken")["error"].as_str().unwrap().contains("502"),
        "{rows:?}"
    );
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        1
    );

    // A response over the size cap is refused, not buffered.
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--target",
        &format!("shop/big={}", leaky.url),
        "--max-body",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = sql_json(store, "SELECT error FROM scrape_status WHERE pod = 'big'");
    assert!(
        err[0]["error"]
            .as_str()
            .unwrap()
            .contains("larger than 200 bytes"),
        "{err:?}"
    );
}

/// The memory limit of the ingest CronJob's container, in bytes (`deploy/leakhound.yaml`, the
/// chart rendered with its defaults).
fn cronjob_memory_limit() -> u64 {
    let text = std::fs::read_to_string(repo().join("deploy/leakhound.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let doc = docs
        .iter()
        .find(|d| {
            d["kind"] == "CronJob"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-ingest"))
        })
        .expect("deploy/leakhound.yaml has the ingest CronJob");
    let limit = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        ["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit")
        .to_string();
    let mib: u64 = limit
        .strip_suffix("Mi")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("memory limit {limit:?}: expected NNNMi"));
    mib << 20
}

/// Run `leakhound ARGS` to its end, sampling its peak RSS (VmHWM, which only grows) until it
/// exits; returns the output and the peak in bytes.
fn run_measured(args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, u64) {
    let mut c = std::process::Command::new(bin());
    c.args(args)
        .env_remove("LEAKHOUND_STORE")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().expect("run leakhound");
    let status_file = format!("/proc/{}/status", child.id());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                }) {
                    peak = peak.max(kib << 10);
                }
                // Sampling, not synchronisation: VmHWM keeps the peak between two reads.
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let out = child.wait_with_output().expect("wait for leakhound");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

/// Endless bodies (ever-new stacks, ever-new series; endless dumps behind a /metrics that
/// fails at once), a byte a second, gzip bombs and endless headers, all at once next to good
/// targets: the pass stays under the CronJob's memory limit
/// (before: one endless target took it to 248-274 MB, 16 to 1.4 GB), each hostile target has
/// its row saying why it is down, the good ones land, and the pass exits 0.
#[test]
fn hostile_targets_cannot_take_a_pass_past_the_cronjob_memory_limit() {
    let fleet = Fleet::start(14, "endless=3,endlessdump=5,drip=1,gzipbomb=2,headers=1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let (out, peak) = run_measured(
        &[
            "ingest",
            "--store",
            store,
            "--targets-file",
            fleet.targets(),
            "--timeout",
            "5s",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let limit = cronjob_memory_limit();
    println!(
        "peak RSS {} MiB, CronJob limit {} MiB",
        peak >> 20,
        limit >> 20
    );
    assert!(peak > 0, "no RSS sample");
    assert!(
        peak < limit,
        "peak RSS {} MiB over the CronJob's limit of {} MiB\n{stdout}",
        peak >> 20,
        limit >> 20
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rows = sql_json(
        store,
        "SELECT pod, up, error FROM scrape_status ORDER BY pod",
    );
    assert_eq!(rows.len(), 14, "{rows:?}");
    for r in &rows {
        let pod = r["pod"].as_str().unwrap();
        let error = r.get("error").and_then(|e| e.as_str()).unwrap_or_default();
        if pod.starts_with("pod-") {
            assert!(r["up"] == true && error.is_empty(), "{r:?}");
            continue;
        }
        assert_eq!(r["up"], false, "{r:?}");
        let why: &[&str] = if pod.contains("endlessdump") {
            // The memory budget (a body alone past it, or others holding it), or the timeout
            // (a dev build on a loaded machine parses slower than the budget fills).
            &["memory budget", "timed out"]
        } else if pod.contains("endless") {
            // The size cap, or the timeout (as above).
            &["larger than", "timed out"]
        } else if pod.contains("drip") {
            &["timed out"]
        } else if pod.contains("gzipbomb") {
            // Zeros: the metrics reader's line cap, the dump parser's refusal of binary data;
            // or the timeout, when the endless dumps' parsers keep a loaded machine's cores.
            &["longer than", "timed out"]
        } else {
            &["message head is too large"]
        };
        assert!(
            why.iter().any(|w| error.contains(w)),
            "{pod}: {error:?} should say one of {why:?}"
        );
    }
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        2
    );
}

/// A pass killed (kill -9) while a target is still in flight keeps the chunks it committed:
/// their rows are there, once; the next pass adds its own, and nothing is doubled.
#[test]
fn a_pass_killed_mid_way_keeps_the_chunks_it_committed() {
    // 4 good targets and one that sends a byte a second: the pass waits on it.
    let fleet = Fleet::start(5, "drip=1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let mut child = std::process::Command::new(bin())
        .args([
            "ingest",
            "--store",
            store,
            "--targets-file",
            fleet.targets(),
            "--timeout",
            "300s",
            "--deadline",
            "300s",
        ])
        .env_remove("LEAKHOUND_STORE")
        .env("LEAKHOUND_COMMIT_EVERY", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "two chunks of two targets committed",
        Duration::from_secs(120),
        || {
            std::path::Path::new(store).join("scrape_status").exists()
                && sql_i64(store, "SELECT COUNT(*) AS n FROM scrape_status") == 4
        },
    );
    assert!(child.try_wait().unwrap().is_none(), "the pass ended early");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let per_table = |table: &str| {
        sql_json(
            store,
            &format!("SELECT pod, COUNT(*) AS n FROM {table} GROUP BY pod ORDER BY pod"),
        )
    };
    for table in ["goroutine_counts", "scrape_status"] {
        let rows = per_table(table);
        assert_eq!(rows.len(), 4, "{table}: {rows:?}");
        assert!(
            rows.iter()
                .all(|r| r["n"] == 1 && r["pod"].as_str().unwrap().starts_with("pod-")),
            "{table}: {rows:?}"
        );
    }
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(DISTINCT pod) AS n FROM goroutine_samples"
        ),
        4
    );
    let samples_before = sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_samples");

    // The next pass (the drip target now times out): each target once more, nothing twice.
    let out = run(&[
        "ingest",
        "--store",
        store,
        "--targets-file",
        fleet.targets(),
        "--timeout",
        "3s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for table in ["goroutine_counts", "scrape_status"] {
        let dup = sql_i64(
            store,
            &format!(
                "SELECT COUNT(*) AS n FROM (SELECT pod, ts FROM {table} GROUP BY pod, ts HAVING COUNT(*) > 1)"
            ),
        );
        assert_eq!(dup, 0, "{table}: rows doubled");
    }
    let counts = per_table("goroutine_counts");
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.iter().all(|r| r["n"] == 2), "{counts:?}");
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM scrape_status"),
        4 + 5
    );
    // Samples of the second pass: debug=1 again for the same 4 targets (the debug=2 dumps of
    // the first pass are not due again), as many groups as the first pass's debug=1.
    let d1 = sql_json(
        store,
        "SELECT ts, COUNT(*) AS n FROM goroutine_samples WHERE format = 'debug1' GROUP BY ts ORDER BY ts",
    );
    assert_eq!(d1.len(), 2, "{d1:?}");
    assert_eq!(d1[0]["n"], d1[1]["n"], "{d1:?}");
    assert!(sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_samples") > samples_before);
}

/// A /metrics that does not parse is an error (it passed as good before: metrics_ok = true),
/// naming the line; the count comes from the goroutine profile instead.
#[test]
fn a_malformed_metrics_page_is_recorded_as_an_error() {
    let fleet = Fleet::start(2, "badmetrics=1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    ok(&[
        "ingest",
        "--store",
        store,
        "--targets-file",
        fleet.targets(),
    ]);
    let rows = sql_json(
        store,
        "SELECT s.pod, s.up, s.metrics_ok, s.debug1_ok, s.error, c.format, c.goroutines \
         FROM scrape_status s JOIN goroutine_counts c ON s.pod = c.pod ORDER BY s.pod",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let bad = &rows[0];
    assert_eq!(bad["pod"], "hostile-badmetrics-0000", "{rows:?}");
    assert!(
        bad["up"] == true && bad["metrics_ok"] == false && bad["debug1_ok"] == true,
        "{bad:?}"
    );
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/metrics") && error.contains("line 4") && error.contains("not a metric"),
        "{error:?}"
    );
    assert_eq!(bad["format"], "debug1", "{bad:?}");
    assert!(bad["goroutines"].as_i64().unwrap() > 100, "{bad:?}");
    let good = &rows[1];
    assert!(
        good["metrics_ok"] == true
            && good["format"] == "metrics"
            && good.get("error").is_none_or(|e| e.is_null()),
        "{good:?}"
    );
}

/// The exit status of a pass: 0 when it committed, whatever some targets did (they are in
/// scrape_status; a fleet always has some pods down); 1 when every target was down, when
/// `--fail-when-down` is reached, or when the rows could not be committed.
#[test]
fn a_pass_exits_0_with_some_targets_down_and_1_when_all_are_or_the_commit_fails() {
    let fleet = Fleet::start(1, "");
    let good = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(&fleet.targets_file).unwrap(),
    )
    .unwrap()[0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let broken = html_server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let pass = |targets: &[String], env: &[(&str, &str)], store: &str| {
        let mut args = vec!["ingest", "--store", store];
        for t in targets {
            args.extend(["--target", t.as_str()]);
        }
        run_env(&args, env)
    };
    let some_down = [format!("shop/good={good}"), format!("shop/broken={broken}")];
    let out = pass(&some_down, &[], store);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) AS n FROM scrape_status WHERE NOT up"
        ),
        1
    );
    // Half down, with --fail-when-down 50: 1.
    let out = pass(&some_down, &[("LEAKHOUND_FAIL_WHEN_DOWN", "50")], store);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The rows of that pass are committed all the same.
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) AS n FROM scrape_status WHERE NOT up"
        ),
        2
    );
    // Every target down: 1.
    let out = pass(&[format!("shop/broken={broken}")], &[], store);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The commit fails (a file where a table's folder must be): 1, and it says why.
    let bad_store = dir.path().join("bad-store");
    std::fs::create_dir_all(&bad_store).unwrap();
    std::fs::write(bad_store.join("goroutine_counts"), "not a folder").unwrap();
    let out = pass(&some_down, &[], bad_store.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("goroutine_counts"),
        "{out:?}"
    );
}

/// `--shard I/N` (issue 19): four shards run at once over one store and one fleet; every target
/// lands exactly once (counts, scrape_status, no stack twice), each shard keeps its own state
/// file, and a fifth shard takes about a fifth of the targets — with their state, so their
/// pass counters go on from where the old shard left them.
#[test]
fn four_shards_at_once_scrape_every_target_once_and_a_fifth_takes_its_share_with_its_state() {
    let fleet = Fleet::start(40, "");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let shard_run = |shard: &str| {
        std::process::Command::new(bin())
            .args([
                "ingest",
                "--store",
                store,
                "--targets-file",
                fleet.targets(),
                "--shard",
                shard,
            ])
            .env_remove("LEAKHOUND_STORE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..4).map(|i| shard_run(&format!("{i}/4"))).collect();
    let mut scraped = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // "shard I/4: pass 1: N targets, N up, …"
        let n: usize = stdout
            .split("pass 1: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(n > 0 && n < 40, "one shard took {n} of 40: {stdout}");
        scraped += n;
    }
    assert_eq!(
        scraped, 40,
        "the shards' targets do not add up to the fleet"
    );
    for table in ["goroutine_counts", "scrape_status"] {
        assert_eq!(
            sql_i64(store, &format!("SELECT COUNT(*) AS n FROM {table}")),
            40,
            "{table}"
        );
        assert_eq!(
            sql_i64(
                store,
                &format!("SELECT COUNT(DISTINCT pod) AS n FROM {table}")
            ),
            40,
            "{table}"
        );
    }
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) AS n FROM (SELECT date, stack_id FROM stacks GROUP BY date, stack_id HAVING COUNT(*) > 1)"
        ),
        0,
        "a stack written twice by two shards"
    );
    let state = |i: u32| -> serde_json::Map<String, serde_json::Value> {
        let p = dir
            .path()
            .join("store/_state")
            .join(format!("ingest-shard-{i}.json"));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
                .unwrap();
        v["targets"].as_object().unwrap().clone()
    };
    let mut before = std::collections::BTreeMap::new();
    for i in 0..4 {
        for k in state(i).keys() {
            assert!(
                before.insert(k.clone(), i).is_none(),
                "{k} in two shards' state"
            );
        }
    }
    assert_eq!(before.len(), 40);

    // A fifth shard: it takes its share, each with the pass count the old shard left (1), so
    // its second pass is number 2.
    let out = shard_run("4/5").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let fifth = state(4);
    assert!(
        (3..=14).contains(&fifth.len()),
        "the fifth shard took {} of 40",
        fifth.len()
    );
    for (k, v) in &fifth {
        assert!(before.contains_key(k), "{k}: not a fleet target");
        assert_eq!(v["passes"], 2, "{k}: state not carried over: {v}");
    }
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        40 + fifth.len() as i64
    );
    // A shard flag that does not parse is a usage error.
    for bad in ["4/4", "1/0", "x/2", "-1/2"] {
        let out = run(&[
            "ingest",
            "--store",
            store,
            "--target",
            "http://127.0.0.1:1",
            "--shard",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "--shard {bad}: {out:?}");
    }
}
