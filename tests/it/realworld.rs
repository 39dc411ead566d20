//! Dumps people really have (issue 15, "Parsers on real-world shapes"):
//!
//! - the corpus of dumps written by others (`tests/data/realworld/`, see its README), read by
//!   `leakhound inspect --format json` beside a reference parser run here
//!   (github.com/DataDog/gostackparse v0.7.0 from the Go module proxy, `tests/realworld-ref`):
//!   totals, goroutine ids and goroutines by state must agree wherever the reference reads the
//!   file without error; every deliberate difference is listed in [`DIFFERENT`] with its reason.
//!   The reference must be there: without Go the test fails, unless `LEAKHOUND_SKIP_REFERENCE=1`
//!   (then only our side is checked);
//! - one code path, one stack id, whatever printed it: a real Go program (`stackshapes`) dumped
//!   at debug=0, 1, 2 and by SIGQUIT at every GOTRACEBACK level;
//! - backfill of a cut dump (lands the complete records, flags them partial, exits 1, adds
//!   nothing when run again) and of a file with two dumps (lands nothing, exits 1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Files where leakhound reads differently from gostackparse on purpose: (file, what we read,
/// why). `Ok(n)`: n goroutines, no error; `Err(text)`: refused with an error containing `text`,
/// exit 1.
const DIFFERENT: &[(&str, Expect, &str)] = &[
    (
        "issue-shapes/go14-pasted-mojibake.txt",
        Expect::Ok(4),
        "file lines pasted with eight spaces instead of a tab are file lines (an issue's code block)",
    ),
    (
        "issue-shapes/markdown-indented.txt",
        Expect::Ok(3),
        "a dump indented as a whole (a markdown list's code block) is read",
    ),
    (
        "issue-shapes/syslog-prefixed.txt",
        Expect::Ok(2),
        "a dump behind a syslog prefix (tabs as `#011`) is read through it",
    ),
    (
        "gostackparse/empty_input.txt",
        Expect::Err("empty"),
        "an empty file is not a dump with 0 goroutines",
    ),
    (
        "gostackparse/empty_stack.txt",
        Expect::Ok(2),
        "headers without frames are goroutines without frames (a goroutine not started yet prints none)",
    ),
    (
        "panicparse/CreatedErr.txt",
        Expect::Err("line 7"),
        "a `created by` file line whose line number overflows is malformed, named",
    ),
    (
        "panicparse/LineErr.txt",
        Expect::Err("line 5"),
        "a line number over 2^32 is absurd, named",
    ),
    (
        "gostackparse/errorhandling.txt",
        Expect::Err("line 6"),
        "a malformed function line (`main.main)(`) fails the dump, naming it, instead of dropping goroutine 2",
    ),
    (
        "panicparse/Indented.txt",
        Expect::Ok(1),
        "a dump indented as a whole (a test framework's report) is read, as panicparse does",
    ),
    (
        "panicparse/InconsistentIndent.txt",
        Expect::Ok(1),
        "a file line indented with a space and a tab is still a file line",
    ),
    (
        "panicparse/Created.txt",
        Expect::Ok(1),
        "`exit status 2` after the last record is text around the dump, not a frame",
    ),
    (
        "panicparse/Unavail.txt",
        Expect::Ok(1),
        "`goroutine running on other thread; stack unavailable`: a goroutine without frames",
    ),
    (
        "panicparse/UnavailCreated.txt",
        Expect::Ok(1),
        "as Unavail, with its `created by`",
    ),
    ("panicparse/UnavailError.txt", Expect::Ok(1), "as Unavail"),
    (
        "panicparse/WithCarriageReturn.txt",
        Expect::Ok(1),
        "CRLF line ends, and a cgo frame's ` ??:0` file line indented with a space",
    ),
    (
        "panicparse/WithCarriageReturn1_18Inaccurate.txt",
        Expect::Ok(1),
        "as WithCarriageReturn",
    ),
    (
        "panicparse/CCode.txt",
        Expect::Err("not a goroutine dump"),
        "only goroutine 0 (a thread's g0, space-indented frames): no goroutine at all",
    ),
    (
        "panicparse/OrderErr.txt",
        Expect::Err("without a function line"),
        "a file line where the function line should be",
    ),
    (
        "panicparse/HeaderError.txt",
        Expect::Ok(1),
        "`junk` after a header, then the end: text that is not a frame (as `exit status 2` is), a goroutine without frames",
    ),
    (
        "panicparse/FileError.txt",
        Expect::Err("without its file line"),
        "the input ends where the file line should be (`junk` between is skipped: other writers' lines interleave with crash output)",
    ),
    (
        "panicparse/CreatedError.txt",
        Expect::Err("without its file line"),
        "as FileError, for the `created by` file line",
    ),
    (
        "gostackparse/partial_stack.txt",
        Expect::Err("without its `FILE:LINE`"),
        "goroutine 1's function line has no file line: malformed, not a goroutine with 0 frames",
    ),
    (
        "gostackparse/partial_createdby.txt",
        Expect::Err("without its `FILE:LINE`"),
        "a `created by` line without its file line",
    ),
];

#[derive(Debug, Clone, Copy)]
enum Expect {
    Ok(u64),
    Err(&'static str),
}

fn corpus() -> Vec<PathBuf> {
    let root = data().join("realworld");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap().flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "txt") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn key(p: &Path) -> String {
    format!(
        "{}/{}",
        p.parent().unwrap().file_name().unwrap().to_string_lossy(),
        p.file_name().unwrap().to_string_lossy()
    )
}

fn go(dir: &Path) -> Command {
    let mut c = Command::new("go");
    c.current_dir(dir)
        .env(
            "GOCACHE",
            std::env::var("GOCACHE").unwrap_or_else(|_| "/var/tmp/leakhound-gocache".into()),
        )
        .env(
            "GOMODCACHE",
            std::env::var("GOMODCACHE").unwrap_or_else(|_| "/var/tmp/leakhound-gomodcache".into()),
        )
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0");
    c
}

fn build_go(dir: &str, pkg: &str, name: &str) -> PathBuf {
    let out = std::env::var("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir())
        .join(name);
    let st = go(&repo().join(dir))
        .args(["build", "-o", out.to_str().unwrap(), pkg])
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run `go build` in {dir} ({e}); set LEAKHOUND_SKIP_REFERENCE=1 to skip the reference")
        });
    assert!(st.success(), "go build {pkg} in {dir} failed");
    out
}

/// The reference's reading of every corpus file, by `dir/file`; `None` when skipped on purpose.
fn reference(files: &[PathBuf]) -> Option<BTreeMap<String, Value>> {
    if std::env::var_os("LEAKHOUND_SKIP_REFERENCE").is_some_and(|v| v == "1") {
        eprintln!("LEAKHOUND_SKIP_REFERENCE=1: gostackparse not run, our side checked alone");
        return None;
    }
    let bin = build_go("tests/realworld-ref", ".", "realworld-ref");
    let out = Command::new(bin).args(files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), files.len());
    Some(v)
}

/// What `leakhound inspect --format json FILE` read.
struct Ours {
    exit: i32,
    stderr: String,
    total: u64,
    ids: Vec<u64>,
    by_state: BTreeMap<String, u64>,
    partial: bool,
}

fn ours(p: &Path) -> Ours {
    let out = run(&["inspect", "--format", "json", p.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let exit = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A refused file prints an empty array (no report).
    let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    if !v.is_object() {
        return Ours {
            exit,
            stderr,
            total: 0,
            ids: Vec::new(),
            by_state: BTreeMap::new(),
            partial: false,
        };
    }
    let mut ids: Vec<u64> = v["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["goroutine_ids"].as_array().unwrap().clone())
        .map(|i| i.as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    Ours {
        exit,
        stderr,
        total: v["total"].as_u64().unwrap(),
        ids,
        by_state: serde_json::from_value(v["by_state"].clone()).unwrap(),
        partial: !v["partial"].is_null(),
    }
}

#[test]
fn corpus_against_gostackparse() {
    let files = corpus();
    assert!(files.len() >= 30, "corpus missing: {} files", files.len());
    let reference = reference(&files);
    let mut table = vec![format!(
        "{:<48} {:>9} {:>6} {:>9}  {}",
        "file", "reference", "errors", "leakhound", "leakhound says"
    )];
    let mut bad = Vec::new();
    let mut agreed = 0;
    for f in &files {
        let k = key(f);
        let o = ours(f);
        let r = reference.as_ref().map(|r| &r[&k]);
        let (r_total, r_errors) = r.map_or((String::from("-"), String::from("-")), |r| {
            (
                r["goroutines"].to_string(),
                r["errors"].as_array().unwrap().len().to_string(),
            )
        });
        let said = if o.exit == 0 {
            "ok".to_string()
        } else {
            o.stderr
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(90)
                .collect()
        };
        table.push(format!(
            "{k:<48} {r_total:>9} {r_errors:>6} {:>9}  {said}",
            o.total
        ));
        if let Some((_, want, why)) = DIFFERENT.iter().find(|(n, _, _)| *n == k) {
            let fine = match want {
                Expect::Ok(n) => o.exit == 0 && o.total == *n && !o.partial,
                Expect::Err(text) => o.exit == 1 && o.stderr.contains(text),
            };
            if !fine {
                bad.push(format!(
                    "{k}: expected {want:?} ({why}), got exit {} total {} partial {}: {}",
                    o.exit, o.total, o.partial, o.stderr
                ));
            }
            continue;
        }
        let Some(r) = r else {
            // No reference: ours must at least read the file.
            if o.exit != 0 {
                bad.push(format!("{k}: {}", o.stderr));
            }
            continue;
        };
        if !r["errors"].as_array().unwrap().is_empty() {
            bad.push(format!(
                "{k}: the reference reports errors {}; list what leakhound does in DIFFERENT",
                r["errors"]
            ));
            continue;
        }
        // The reference counts goroutine 0 (an M's g0, not a goroutine) and its state.
        let r_ids: Vec<u64> = r["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .filter(|&i| i != 0)
            .collect();
        let r_states: BTreeMap<String, u64> =
            serde_json::from_value(r["by_state"].clone()).unwrap();
        let g0 = r["ids"].as_array().unwrap().iter().any(|i| i == 0);
        let fine = o.exit == 0
            && o.total == r_ids.len() as u64
            && o.ids == r_ids
            && (g0 || o.by_state == r_states);
        if fine {
            agreed += 1;
        } else {
            bad.push(format!(
                "{k}: reference {} goroutines {r_ids:?} {r_states:?}, leakhound exit {} {} {:?} {:?}: {}",
                r_ids.len(),
                o.exit,
                o.total,
                o.ids,
                o.by_state,
                o.stderr
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    eprintln!(
        "{agreed} files read alike, {} read differently on purpose (DIFFERENT)",
        DIFFERENT.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    if reference.is_some() {
        assert!(agreed >= 15, "only {agreed} files compared");
    }
    // Every deliberate difference names a file of the corpus.
    let names: BTreeSet<String> = files.iter().map(|f| key(f)).collect();
    for (n, _, _) in DIFFERENT {
        assert!(names.contains(*n), "{n} is not in the corpus");
    }
}

/// Stack id → goroutines, for the stacks of `stackshapes`' parked goroutines.
fn parked(report: &Value) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in report["stacks"].as_array().unwrap() {
        let ours = s["frames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["function"] == "main.park");
        if ours {
            *m.entry(s["stack_id"].as_str().unwrap().to_string())
                .or_default() += s["count"].as_u64().unwrap();
        }
    }
    m
}

#[test]
fn one_code_path_one_stack_id_whatever_printed_it() {
    let bin = build_go("tests/goprogs", "./cmd/stackshapes", "stackshapes");
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(&bin)
        .args(["dump", dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut files: Vec<(String, PathBuf)> = ["debug0.pb.gz", "debug1.txt", "debug2.txt"]
        .iter()
        .map(|f| (f.to_string(), dir.path().join(format!("goroutine.{f}"))))
        .collect();
    // SIGQUIT prints at the `system` level whatever GOTRACEBACK says (wrappers, runtime frames
    // counted in the 100-frame cut); `crash` adds every thread's section.
    for level in ["single", "all", "system", "crash"] {
        let out = Command::new(&bin)
            .arg("quit")
            .env("GOTRACEBACK", level)
            .output()
            .unwrap();
        assert!(!out.status.success(), "SIGQUIT ends the program");
        let p = dir.path().join(format!("sigquit.{level}.txt"));
        std::fs::write(&p, &out.stderr).unwrap();
        files.push((format!("SIGQUIT GOTRACEBACK={level}"), p));
    }
    let mut seen: Vec<(String, BTreeMap<String, u64>)> = Vec::new();
    for (what, p) in &files {
        let v: Value =
            serde_json::from_str(&ok(&["inspect", "--format", "json", p.to_str().unwrap()]))
                .unwrap();
        seen.push((what.clone(), parked(&v)));
    }
    let (first, want) = &seen[0];
    // 3 started by `go park(i)` (a gowrap closure), 2 through a method value (`-fm`), 1 30
    // frames deep, and the 97- and 150-deep ones: deep stacks are identified by their innermost
    // 40 frames (park and 39 recurse), which they share — four ids.
    let mut counts: Vec<u64> = want.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 2, 2, 3], "{first}: {want:?}");
    for (what, got) in &seen[1..] {
        assert_eq!(got, want, "{what} vs {first}");
    }
}

fn backfill(store: &Path, path: &Path) -> std::process::Output {
    run(&[
        "backfill",
        "--store",
        store.to_str().unwrap(),
        path.to_str().unwrap(),
    ])
}

#[test]
fn backfill_of_a_cut_dump_lands_its_complete_records_flags_them_and_exits_1() {
    let raw = std::fs::read(data().join("captures/go1.26/goroutine.debug2.txt")).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    // Cut inside a frame line halfway: a crash log cut by a full disk.
    let at = text[..text.len() / 2].rfind("\t/").unwrap() + 10;
    let complete = text[..at].matches("\ngoroutine ").count() as i64 + 1 - 1;
    let root = tempfile::tempdir().unwrap();
    let file = root
        .path()
        .join("in/shop/orders-1/2026-11-28T04:00:00Z.debug2.txt");
    write(&file, &raw[..at]);
    let store = root.path().join("store");
    let out = backfill(&store, &root.path().join("in"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = text[..at].matches('\n').count() + 1;
    assert!(
        stdout.contains("1 imported") && stdout.contains(&format!("cut at line {line}")),
        "{stdout}"
    );
    let s = store.to_str().unwrap();
    assert_eq!(
        sql_i64(
            s,
            "SELECT CAST(SUM(goroutines) AS BIGINT) FROM goroutine_counts"
        ),
        complete
    );
    assert_eq!(
        sql_i64(
            s,
            "SELECT CAST(SUM(goroutines) AS BIGINT) FROM goroutine_samples"
        ),
        complete
    );
    assert_eq!(
        sql_i64(
            s,
            "SELECT COUNT(*) FROM ingest_log WHERE status = 'partial'"
        ),
        1
    );
    // The snapshot's own row says it is partial (its count is a lower bound).
    assert_eq!(
        sql_i64(
            s,
            "SELECT COUNT(*) FROM goroutine_counts WHERE partial AND pod = 'orders-1'"
        ),
        1
    );
    // Again: nothing more lands (the partial import is an import), and it still says so.
    let out = backfill(&store, &root.path().join("in"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 already imported"));
    assert_eq!(
        sql_i64(
            s,
            "SELECT CAST(SUM(goroutines) AS BIGINT) FROM goroutine_samples"
        ),
        complete
    );
}

#[test]
fn backfill_keeps_every_creator_of_a_stack_with_its_goroutines() {
    // One leaking stack started from two places (3 goroutines from main.b, 1 from main.a), in
    // two states: the sites and their counts land once per snapshot, whatever the states.
    let dump = "goroutine 5 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.a in goroutine 1
\t/x/main.go:30 +0x45

goroutine 6 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.b in goroutine 1
\t/x/main.go:40 +0x45

goroutine 7 [chan send, 5 minutes]:
main.leak(...)
\t/x/main.go:20
created by main.b in goroutine 1
\t/x/main.go:40 +0x45

goroutine 8 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.b in goroutine 1
\t/x/main.go:40 +0x45
";
    let root = tempfile::tempdir().unwrap();
    for t in ["04:00:00", "04:01:00"] {
        write(
            &root
                .path()
                .join(format!("in/shop/orders-1/2026-11-28T{t}Z.debug2.txt")),
            dump.as_bytes(),
        );
    }
    let store = root.path().join("store");
    let out = backfill(&store, &root.path().join("in"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = store.to_str().unwrap();
    let per_site = |function: &str| {
        sql_i64(
            s,
            &format!(
                "SELECT CAST(SUM(c['goroutines']) AS BIGINT) FROM \
                 (SELECT unnest(created_by) AS c FROM goroutine_samples) \
                 WHERE c['function'] = '{function}'"
            ),
        )
    };
    // Two snapshots: 3 + 3 from main.b, 1 + 1 from main.a.
    assert_eq!(per_site("main.b"), 6);
    assert_eq!(per_site("main.a"), 2);
    // Two sample rows per snapshot (two wait buckets), the sites on one of them.
    assert_eq!(sql_i64(s, "SELECT COUNT(*) FROM goroutine_samples"), 4);
    assert_eq!(
        sql_i64(
            s,
            "SELECT COUNT(*) FROM goroutine_samples WHERE created_by IS NOT NULL"
        ),
        2
    );
    assert_eq!(
        sql_i64(s, "SELECT COUNT(*) FROM goroutine_counts WHERE NOT partial"),
        2
    );
}

#[test]
fn backfill_of_two_dumps_in_one_file_lands_nothing_and_exits_1() {
    let one = std::fs::read(data().join("captures/go1.26/sigquit.stderr.txt")).unwrap();
    let mut two = one.clone();
    two.extend_from_slice(b"\n");
    two.extend_from_slice(&one);
    let root = tempfile::tempdir().unwrap();
    write(
        &root
            .path()
            .join("in/shop/orders-1/2026-11-28T04:00:00Z.crash.log"),
        &two,
    );
    let store = root.path().join("store");
    let out = backfill(&store, &root.path().join("in"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("more than one goroutine dump") && stdout.contains("second starts at line"),
        "{stdout}"
    );
    assert_eq!(
        sql_i64(
            store.to_str().unwrap(),
            "SELECT COUNT(*) FROM ingest_log WHERE status = 'ok' OR status = 'partial'"
        ),
        0
    );
}
