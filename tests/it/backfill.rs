//! `leakhound backfill` end to end on real captures of the leaking Go program in
//! `tests/goprogs` (see `tests/data/examples/expected.json` for what it had leaked at each
//! capture), then SQL over the store.

use serde_json::Value;

use crate::support::*;

fn expected() -> Value {
    let text = std::fs::read_to_string(data().join("examples-expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rfc3339_to_sql(t: &str) -> String {
    format!("TIMESTAMP '{t}'")
}

#[test]
fn examples_land_with_the_counts_the_program_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let examples = data().join("examples");
    let out = ok(&["backfill", "--store", store, examples.to_str().unwrap()]);
    assert!(out.contains(" 0 failed"), "{out}");

    let exp = expected();
    let ns = exp["namespace"].as_str().unwrap();
    let snaps = exp["snapshots"].as_array().unwrap();
    for s in snaps {
        let pod = s["pod"].as_str().unwrap();
        let ts = rfc3339_to_sql(s["time"].as_str().unwrap());
        let files = s["files"].as_array().unwrap().len();
        let want = s["goroutines"].as_i64().unwrap();
        // One count row per capture file, each with the total the program had.
        let rows = sql_json(
            store,
            &format!(
                "SELECT goroutines, format, source FROM goroutine_counts WHERE namespace = '{ns}' AND pod = '{pod}' AND ts = {ts} ORDER BY format"
            ),
        );
        let dumps: Vec<_> = rows.iter().filter(|r| r["source"] == "backfill").collect();
        assert_eq!(dumps.len(), files, "{pod} {ts}: {rows:?}");
        for r in &dumps {
            assert_eq!(r["goroutines"].as_i64(), Some(want), "{pod} {ts} {r:?}");
        }
        // Prometheus scraped the same process every second: within a few goroutines (its own
        // scrape and the capture request come and go, and client_golang's Registry.Gather runs
        // up to one worker goroutine per collector, 5 in leaky, while go_goroutines is read).
        for r in rows.iter().filter(|r| r["source"] == "prometheus") {
            let got = r["goroutines"].as_i64().unwrap();
            assert!(
                (-3..=3 + 5).contains(&(got - want)),
                "{pod} {ts}: prometheus {got} vs dump {want}"
            );
        }
        // The blocked-send leak: exactly the number of goroutines the program leaked, in
        // every format.
        let chansend = s["leaked"]["chansend"].as_i64().unwrap();
        let per_format = sql_json(
            store,
            &format!(
                "SELECT g.format, SUM(g.goroutines) AS n FROM goroutine_samples g \
                 JOIN (SELECT DISTINCT stack_id, top_function FROM stacks) s ON g.stack_id = s.stack_id \
                 WHERE g.pod = '{pod}' AND g.ts = {ts} AND s.top_function = 'main.leakChanSend' \
                 GROUP BY g.format ORDER BY g.format"
            ),
        );
        assert_eq!(per_format.len(), files, "{pod} {ts}: {per_format:?}");
        for r in &per_format {
            assert_eq!(r["n"].as_i64(), Some(chansend), "{pod} {ts} {r:?}");
        }
    }

    // The same moment captured at debug=0 and debug=1 gives the same stack ids.
    let both = snaps
        .iter()
        .rfind(|s| s["files"].as_array().unwrap().len() == 2)
        .expect("a snapshot captured in two formats");
    let by_format = sql_json(
        store,
        &format!(
            "SELECT format, array_sort(array_agg(DISTINCT stack_id)) AS ids FROM goroutine_samples \
             WHERE pod = '{}' AND ts = {} GROUP BY format ORDER BY format",
            both["pod"].as_str().unwrap(),
            rfc3339_to_sql(both["time"].as_str().unwrap())
        ),
    );
    assert_eq!(by_format.len(), 2, "{by_format:?}");
    assert_eq!(by_format[0]["ids"], by_format[1]["ids"]);

    // Each stack at most once per date partition.
    let dup = sql_i64(
        store,
        "SELECT COUNT(*) AS n FROM (SELECT date, stack_id FROM stacks GROUP BY date, stack_id HAVING COUNT(*) > 1)",
    );
    assert_eq!(dup, 0);
    // The Prometheus history landed as counts with its own source.
    let prom = sql_i64(
        store,
        "SELECT COUNT(*) AS n FROM goroutine_counts WHERE source = 'prometheus'",
    );
    assert!(prom > 10, "{prom}");

    // Re-running the same backfill adds nothing.
    let before = sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_samples");
    let out = ok(&["backfill", "--store", store, examples.to_str().unwrap()]);
    assert!(out.contains(" 0 imported"), "{out}");
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_samples"),
        before
    );
}

#[test]
fn bad_files_are_reported_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // Bad inputs laid out like good ones, so that only their content is wrong.
    let input = dir.path().join("in/prod/api-1");
    std::fs::create_dir_all(&input).unwrap();
    let mut bad = Vec::new();
    for e in std::fs::read_dir(data().join("bad")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let dst = input.join(format!("2026-11-28T04:00:{:02}Z.{name}", bad.len()));
        std::fs::copy(&p, &dst).unwrap();
        bad.push(dst);
    }
    // A 10 MB single line.
    let long = input.join("2026-11-28T04:01:00Z.longline.txt");
    std::fs::write(&long, vec![b'x'; 10 << 20]).unwrap();
    bad.push(long);
    let good = input.join("2026-11-28T05:00:00Z.debug2.txt");
    std::fs::copy(data().join("captures/go1.26/goroutine.debug2.txt"), &good).unwrap();

    let out = run(&[
        "backfill",
        "--store",
        store,
        dir.path().join("in").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for b in &bad {
        let name = b.display().to_string();
        let line = stdout
            .lines()
            .find(|l| l.contains("failed:") && l.contains(&name))
            .unwrap_or_else(|| panic!("no failure reported for {name}:\n{stdout}"));
        // A reason follows the name.
        assert!(line.len() > name.len() + 12, "{line}");
    }
    assert!(stdout.contains("1 imported"), "{stdout}");
    let pods = sql_json(store, "SELECT DISTINCT pod, ts FROM goroutine_counts");
    assert_eq!(pods.len(), 1, "only the good file lands: {pods:?}");
    let failed = sql_i64(
        store,
        "SELECT COUNT(*) AS n FROM ingest_log WHERE status = 'error'",
    );
    assert_eq!(failed as usize, bad.len());
    // Running again reports the same failures but logs them once and stores nothing new.
    let again = run(&[
        "backfill",
        "--store",
        store,
        dir.path().join("in").to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) AS n FROM ingest_log WHERE status = 'error'"
        ) as usize,
        bad.len()
    );
    assert_eq!(
        sql_i64(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        1
    );
}

#[test]
fn tarball_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // A .tar.gz of the examples' debug=2 files, named only by pod/time inside.
    let tar = dir.path().join("dumps.tgz");
    let status = std::process::Command::new("tar")
        .args([
            "czf",
            tar.to_str().unwrap(),
            "-C",
            data().join("examples").to_str().unwrap(),
            "shop/orders-7d9f8b6c5-x2kqp",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = ok(&["backfill", "--store", store, tar.to_str().unwrap()]);
    assert!(out.contains("6 imported"), "{out}");
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(DISTINCT ts) AS n FROM goroutine_counts WHERE pod = 'orders-7d9f8b6c5-x2kqp'"
        ),
        6
    );
    // A file with no usable path: flags give identity and time.
    let f = dir.path().join("dump.txt");
    std::fs::copy(data().join("captures/go1.26/goroutine.debug2.txt"), &f).unwrap();
    let out = run(&["backfill", "--store", store, f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no timestamp"));
    ok(&[
        "backfill",
        "--store",
        store,
        "--namespace",
        "ops",
        "--pod",
        "worker-0",
        "--timestamp",
        "2026-11-28T06:00:00Z",
        f.to_str().unwrap(),
    ]);
    assert_eq!(
        sql_i64(
            store,
            "SELECT COUNT(*) AS n FROM goroutine_counts WHERE namespace = 'ops' AND pod = 'worker-0' AND ts = TIMESTAMP '2026-11-28T06:00:00Z'"
        ),
        1
    );
}

/// Goroutine id -> the function it was started with, read off a debug=2 dump by hand (the
/// test's own reading, independent of leakhound's parser): the last frame before `created by`.
fn entry_functions(dump: &str) -> std::collections::HashMap<u64, String> {
    let mut out = std::collections::HashMap::new();
    for block in dump.split("\n\n") {
        let mut lines = block.lines();
        let Some(id) = lines
            .next()
            .and_then(|h| h.strip_prefix("goroutine "))
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        if block.contains("frames elided") {
            continue;
        }
        let entry = lines
            .rev()
            .find(|l| !l.starts_with('\t') && !l.starts_with("created by"))
            .map(|f| f.rsplit_once('(').map_or(f, |(name, _)| name).to_string());
        if let Some(e) = entry {
            out.insert(id, e);
        }
    }
    out
}

#[test]
fn dumps_of_a_restarted_process_start_their_ages_afresh() {
    // Saved dumps carry no process start time (live ingest reads it from /metrics). A restart
    // still shows in the ids: Go never reuses one within a process, and a goroutine keeps the
    // function it was started with for life.
    let first = crate::goprog::Leaky::start(&["-leak", "chansend:60"]);
    first.wait_steady();
    let before = first.get("/debug/pprof/goroutine?debug=2");
    drop(first);
    let b = entry_functions(&before);
    // The premise: both processes number from 1, and some id started another function. Go
    // hands out ids in per-processor batches, so which ids each process's 60 leaked goroutines
    // get varies with timing; a second process whose ids miss every one of the first's (rare)
    // is started again.
    let mut after = String::new();
    for _ in 0..5 {
        let second = crate::goprog::Leaky::start(&["-leak", "select:60"]);
        second.wait_steady();
        after = second.get("/debug/pprof/goroutine?debug=2");
        let a = entry_functions(&after);
        if a.iter().any(|(id, f)| b.get(id).is_some_and(|g| g != f)) {
            break;
        }
    }
    let a = entry_functions(&after);
    assert!(b.contains_key(&1) && a.contains_key(&1), "{b:?} {a:?}");
    assert!(
        a.iter().any(|(id, f)| b.get(id).is_some_and(|g| g != f)),
        "no id changed its function: {b:?} {a:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("dumps/shop/orders-1");
    std::fs::create_dir_all(&pod).unwrap();
    write(&pod.join("2026-11-28T06:00:00Z.debug2.txt"), &before);
    write(&pod.join("2026-11-28T06:10:00Z.debug2.txt"), &after);
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let out = ok(&[
        "backfill",
        "--store",
        store,
        dir.path().join("dumps").to_str().unwrap(),
    ]);
    assert!(out.contains("2 imported"), "{out}");
    let captures = sql_json(
        store,
        "SELECT ts, MIN(min_goroutine_id) AS min_id, \
         MAX(CAST(date_part('epoch', ts) - date_part('epoch', oldest_first_seen) AS DOUBLE)) AS max_age \
         FROM goroutine_samples GROUP BY ts ORDER BY ts",
    );
    assert_eq!(captures.len(), 2, "{captures:?}");
    assert!(captures.iter().all(|c| c["min_id"] == 1), "{captures:?}");
    // Ten minutes apart, yet no goroutine of the new process (seconds old, so no wait
    // annotation either) inherits an age from the old one.
    assert_eq!(captures[1]["max_age"].as_f64(), Some(0.0), "{captures:?}");
}
