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

// ---- Issue 15: identity, the walk, archives ----

use std::path::Path;

use crate::store_trust::{debug1_example, debug2_examples};

fn count(store: &str, sql: &str) -> i64 {
    sql_i64(store, sql)
}

/// The same debug=1 bytes at two pods and two times are three snapshots (idle replicas of one
/// binary give identical dumps); re-running adds nothing. Today: "1 imported, 2 already
/// imported" and one row.
#[test]
fn identical_dumps_of_other_pods_or_times_are_separate_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let body = std::fs::read(debug1_example()).unwrap();
    let input = dir.path().join("in");
    for p in [
        "shop/pod-a/2026-11-28T10:00:00Z.txt",
        "shop/pod-a/2026-11-28T10:01:00Z.txt",
        "shop/pod-b/2026-11-28T10:00:00Z.txt",
    ] {
        write(&input.join(p), &body);
    }
    let out = ok(&["backfill", "--store", store, input.to_str().unwrap()]);
    assert!(out.contains("3 imported, 0 already imported"), "{out}");
    let rows = sql_json(
        store,
        "SELECT pod, CAST(ts AS VARCHAR) AS ts FROM goroutine_counts ORDER BY pod, ts",
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let samples = count(store, "SELECT COUNT(*) AS n FROM goroutine_samples");
    let out = ok(&["backfill", "--store", store, input.to_str().unwrap()]);
    assert!(out.contains("0 imported, 3 already imported"), "{out}");
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        3
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM goroutine_samples"),
        samples
    );
}

/// One `--timestamp` over a tarball of several dumps of one pod would stack them at one
/// instant: the second is refused, named, exit 1 — never silently summed.
#[test]
fn one_timestamp_over_several_dumps_of_a_pod_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let src = dir.path().join("src");
    let d2 = debug2_examples();
    write(
        &src.join("shop/pod-a/a.txt"),
        std::fs::read(&d2[0]).unwrap(),
    );
    write(
        &src.join("shop/pod-a/b.txt"),
        std::fs::read(&d2[1]).unwrap(),
    );
    let tarball = dir.path().join("dumps.tar");
    let st = std::process::Command::new("tar")
        .args([
            "-cf",
            tarball.to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            "shop",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let out = run(&[
        "backfill",
        "--store",
        store,
        "--path-pattern",
        "{namespace}/{pod}/*",
        "--timestamp",
        "2026-11-28T10:00:00Z",
        tarball.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 imported"), "{stdout}");
    // Whichever entry comes second in the archive is refused.
    assert!(
        stdout.lines().any(|l| l.contains("failed:")
            && (l.contains("pod-a/a.txt") || l.contains("pod-a/b.txt"))
            && l.contains("would stack")),
        "{stdout}"
    );
    let rows = sql_json(store, "SELECT goroutines FROM goroutine_counts");
    assert_eq!(rows.len(), 1, "{rows:?}");
}

/// Two symbolic-link loops end the walk; each real file is imported once (the walk used to
/// run for 600 s and 3 GB, landing nothing).
#[test]
fn symlink_loops_end_and_each_real_file_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let input = dir.path().join("in");
    let d2 = debug2_examples();
    write(
        &input.join("shop/pod-a/2026-11-28T10:00:00Z.txt"),
        std::fs::read(&d2[0]).unwrap(),
    );
    write(
        &input.join("shop/pod-b/2026-11-28T10:00:00Z.txt"),
        std::fs::read(&d2[1]).unwrap(),
    );
    std::os::unix::fs::symlink("..", input.join("shop/pod-a/up")).unwrap();
    std::os::unix::fs::symlink("../pod-a", input.join("shop/pod-b/side")).unwrap();
    std::os::unix::fs::symlink(&input, input.join("shop/root")).unwrap();
    let mut child = crate::store_trust::spawn(
        &["backfill", "--store", store, input.to_str().unwrap()],
        &[],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("backfill over symlink loops did not end in 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("2 items, 2 imported"), "{stdout}");
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        2
    );
}

/// `cmd` run as the unprivileged user `nobody` (we run as root, and root reads everything).
fn as_nobody(args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(args)
        .env_remove("LEAKHOUND_STORE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("setpriv (util-linux) runs the binary as nobody")
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An unreadable file and an unreadable subdirectory are each a failed item under their own
/// path; the rest lands; exit 1. Today: exit 0 and "0 failed" for the file, and the directory
/// aborted its whole argument under the wrong name.
#[test]
fn unreadable_files_and_directories_fail_under_their_own_path() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    chmod(&store, 0o777);
    let store = store.to_str().unwrap();
    let input = dir.path().join("in");
    let d2 = debug2_examples();
    let good = input.join("shop/pod-a/2026-11-28T10:00:00Z.txt");
    let secret = input.join("shop/pod-a/2026-11-28T10:01:00Z.txt");
    let locked_dir = input.join("shop/pod-b");
    let good2 = input.join("shop/pod-c/2026-11-28T10:00:00Z.txt");
    write(&good, std::fs::read(&d2[0]).unwrap());
    write(&secret, std::fs::read(&d2[1]).unwrap());
    write(
        &locked_dir.join("2026-11-28T10:00:00Z.txt"),
        std::fs::read(&d2[2]).unwrap(),
    );
    write(&good2, std::fs::read(&d2[3]).unwrap());
    for d in ["", "shop", "shop/pod-a", "shop/pod-c"] {
        chmod(&input.join(d), 0o755);
    }
    chmod(&good, 0o644);
    chmod(&good2, 0o644);
    chmod(&secret, 0o000);
    chmod(&locked_dir, 0o000);
    let out = as_nobody(&["backfill", "--store", store, input.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in [&secret, &locked_dir] {
        let name = p.display().to_string();
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("failed:") && l.contains(&format!("{name}:"))),
            "no failure for {name}:\n{stdout}"
        );
    }
    assert!(stdout.contains("2 imported"), "{stdout}");
    assert!(stdout.contains("2 failed"), "{stdout}");
    chmod(&locked_dir, 0o755);
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        2
    );
}

/// Tar entry names are data from outside: `..`, absolute paths and names that are not
/// Kubernetes names never become a namespace or pod; each refusal says what and why; a clean
/// entry lands; a corrupt archive gets an ingest-log row.
#[test]
fn hostile_tar_entry_names_never_become_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let d2 = debug2_examples();
    let body = std::fs::read(&d2[0]).unwrap();
    // The tar crate refuses to write `..` and absolute names, so the headers are built by hand
    // (ustar, as GNU tar reads them).
    let names = [
        "shop/pod-a/2026-11-28T10:00:00Z.txt",
        "shop/../kube-system/coredns-0/2026-11-28T10:00:00Z.txt",
        "/kube-system/etcd-0/2026-11-28T10:00:00Z.txt",
        "Bad_NS/pod-a/2026-11-28T10:00:00Z.txt",
    ];
    let mut tar = Vec::new();
    for n in names {
        tar.extend(ustar_header(n, body.len()));
        tar.extend(&body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend([0u8; 1024]);
    let tarball = dir.path().join("dumps.tar");
    std::fs::write(&tarball, &tar).unwrap();
    let out = run(&["backfill", "--store", store, tarball.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 imported"), "{stdout}");
    assert!(stdout.contains("a `..` component"), "{stdout}");
    assert!(stdout.contains("an absolute path"), "{stdout}");
    assert!(stdout.contains("\"Bad_NS\""), "{stdout}");
    let ns = sql_json(
        store,
        "SELECT DISTINCT namespace, pod FROM goroutine_counts",
    );
    assert_eq!(ns.len(), 1, "{ns:?}");
    assert_eq!(ns[0]["namespace"], "shop");
    assert_eq!(ns[0]["pod"], "pod-a");

    // A corrupt archive: a valid first header, then garbage where the next header belongs.
    let mut bad = ustar_header("shop/pod-z/2026-11-28T10:00:00Z.txt", body.len());
    bad.extend(&body);
    bad.resize(bad.len().div_ceil(512) * 512, 0);
    bad.extend(vec![0x55u8; 512]);
    let bad_tar = dir.path().join("corrupt.tar");
    std::fs::write(&bad_tar, &bad).unwrap();
    let out = run(&["backfill", "--store", store, bad_tar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let logged = count(
        store,
        &format!(
            "SELECT COUNT(*) AS n FROM ingest_log WHERE status = 'error' AND source = '{}'",
            bad_tar.display()
        ),
    );
    assert_eq!(logged, 1, "{}", String::from_utf8_lossy(&out.stdout));
}

fn ustar_header(name: &str, size: usize) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    let (prefix, base) = if name.len() > 100 {
        let cut = name[..name.len() - 100]
            .len()
            .max(name.rfind('/').unwrap_or(0));
        (&name[..cut], &name[cut + 1..])
    } else {
        ("", name)
    };
    h[..base.len()].copy_from_slice(base.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A big tar entry is parsed streaming: peak RSS stays far below the entry's size (a 2 GiB
/// entry took 1.6 GB when entries were buffered whole). 256 MiB by default;
/// `LEAKHOUND_TEST_BIG_ENTRY_MIB=2048` for the full size.
#[test]
fn a_big_tar_entry_is_streamed_not_buffered() {
    let mib: usize = std::env::var("LEAKHOUND_TEST_BIG_ENTRY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let src = dir.path().join("src/shop/pod-big");
    std::fs::create_dir_all(&src).unwrap();
    let dump = src.join("2026-11-28T10:00:00Z.txt");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&dump).unwrap());
        // Deep stacks (20 frames, ~1.3 KB a goroutine): the ids the store tracks per goroutine
        // stay small next to the bytes, so what is measured is the buffering of the entry.
        let mut frames = String::new();
        for k in 0..20 {
            frames.push_str(&format!(
                "main.level{k}(0x1, 0x2)\n\t/src/app/deep.go:{} +0x1f\n",
                10 + k
            ));
        }
        let mut id = 1u64;
        let mut written = 0usize;
        while written < mib << 20 {
            let rec = format!(
                "goroutine {id} [chan receive, {} minutes]:\nmain.worker({:#x})\n\t/src/app/worker.go:{} +0x3c\n{frames}created by main.start in goroutine 1\n\t/src/app/main.go:20 +0x25\n\n",
                id % 50,
                id,
                id % 9 + 10
            );
            w.write_all(rec.as_bytes()).unwrap();
            written += rec.len();
            id += 1;
        }
    }
    let tarball = dir.path().join("big.tar");
    let st = std::process::Command::new("tar")
        .args([
            "-cf",
            tarball.to_str().unwrap(),
            "-C",
            dir.path().join("src").to_str().unwrap(),
            "shop",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(&dump).unwrap();
    let max = format!("{}", (mib as u64 + 64) << 20);
    let mut child = crate::store_trust::spawn(
        &[
            "backfill",
            "--store",
            store,
            "--max-decompressed",
            &max,
            tarball.to_str().unwrap(),
        ],
        &[],
    );
    // VmHWM is the process's peak resident set so far; the last reading before exit holds the
    // peak of the parse, which lasts seconds.
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(l) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_mib = peak_kib / 1024;
    eprintln!("backfill of a {mib} MiB tar entry: peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < (mib as u64 / 2).max(128),
        "peak RSS {peak_mib} MiB for a {mib} MiB entry: buffered, not streamed"
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        1
    );
}

/// A large saved `query_range` file is imported as a stream: every point lands (the count is
/// exact) and peak RSS stays far below what the file held whole took (a 20 MB file took 2.5 GB
/// when answers were read whole, issue 22). 16 MiB of JSON by default;
/// `LEAKHOUND_TEST_BIG_PROM_MIB` for another size.
#[test]
fn a_big_query_range_file_is_streamed_not_held() {
    let mib: usize = std::env::var("LEAKHOUND_TEST_BIG_PROM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let file = dir.path().join("history.json");
    // Two days at 1-minute resolution per pod, as many pods as the size asks.
    let points_per_pod = 2 * 1440;
    let mut points = 0u64;
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        write!(
            w,
            r#"{{"status":"success","data":{{"resultType":"matrix","result":["#
        )
        .unwrap();
        let mut written = 0usize;
        let mut pod = 0usize;
        while written < mib << 20 {
            let mut s = format!(
                r#"{}{{"metric":{{"__name__":"go_goroutines","namespace":"shop","pod":"api-{pod}","instance":"10.0.{}.{}:8080"}},"values":["#,
                if pod > 0 { "," } else { "" },
                pod / 256,
                pod % 256
            );
            for m in 0..points_per_pod {
                let sep = if m > 0 { "," } else { "" };
                s.push_str(&format!(
                    r#"{sep}[{},"{}"]"#,
                    1_795_824_000 + 60 * m,
                    100 + m % 37
                ));
            }
            s.push_str("]}");
            w.write_all(s.as_bytes()).unwrap();
            written += s.len();
            points += points_per_pod as u64;
            pod += 1;
        }
        w.write_all(b"]}}").unwrap();
    }
    let mut child =
        crate::store_trust::spawn(&["backfill", "--store", store, file.to_str().unwrap()], &[]);
    // VmHWM is the process's peak resident set so far: polled until the process ends.
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(l) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_mib = peak_kib / 1024;
    eprintln!(
        "backfill of a {mib} MiB query_range file ({points} points): peak RSS {peak_mib} MiB"
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM goroutine_counts"),
        points as i64
    );
    assert!(
        peak_mib < (mib as u64 * 4).max(192),
        "peak RSS {peak_mib} MiB for a {mib} MiB file: held, not streamed"
    );
}
