//! `leakhound inspect` as a person runs it: on a file, on stdin, text and JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::*;

fn inspect_json(path: &std::path::Path) -> Value {
    let out = ok(&["inspect", "--format", "json", path.to_str().unwrap()]);
    serde_json::from_str(&out).unwrap()
}

/// Goroutines per stack id, leaving out the goroutine that served the capture request itself
/// (each of the three formats was a separate HTTP request, so that one differs by design).
fn ids(v: &Value) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for s in v["stacks"].as_array().unwrap() {
        let profiler = s["frames"].as_array().unwrap().iter().any(|f| {
            let f = f["function"].as_str().unwrap();
            f.starts_with("runtime/pprof.") || f.starts_with("net/http/pprof.")
        });
        if !profiler {
            *m.entry(s["stack_id"].as_str().unwrap().to_string())
                .or_default() += s["count"].as_i64().unwrap();
        }
    }
    m
}

/// Equal but for at most two goroutines caught mid-flight by one of the three requests (the
/// request's own connection, a goroutine created but not started yet).
fn assert_same_stacks(a: &Value, b: &Value) {
    let (ia, ib) = (ids(a), ids(b));
    let keys: BTreeSet<&String> = ia.keys().chain(ib.keys()).collect();
    let off: i64 = keys
        .iter()
        .map(|k| (ia.get(*k).unwrap_or(&0) - ib.get(*k).unwrap_or(&0)).abs())
        .sum();
    assert!(
        off <= 2,
        "{} vs {}: {ia:?} {ib:?}",
        a["format"],
        b["format"]
    );
    let shared = ia.keys().filter(|k| ib.contains_key(*k)).count();
    assert!(shared >= 15, "{shared} shared stacks");
}

#[test]
fn same_capture_in_three_formats_agrees() {
    let dir = data().join("captures/go1.26");
    let d0 = inspect_json(&dir.join("goroutine.debug0.pb.gz"));
    let d1 = inspect_json(&dir.join("goroutine.debug1.txt"));
    let d2 = inspect_json(&dir.join("goroutine.debug2.txt"));
    assert_eq!(d0["format"], "proto");
    assert_eq!(d1["format"], "debug1");
    assert_eq!(d2["format"], "debug2");
    assert_eq!(d0["total"], d1["total"]);
    assert_eq!(d1["total"], d2["total"]);
    assert_same_stacks(&d0, &d1);
    assert_same_stacks(&d1, &d2);
    // debug=2 knows states, ids and creators; stacks are largest first.
    let stacks = d2["stacks"].as_array().unwrap();
    let counts: Vec<u64> = stacks
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    let send = stacks
        .iter()
        .find(|s| s["frames"][0]["function"] == "main.leakChanSend")
        .expect("the blocked-send leak");
    assert_eq!(send["state"], "chan send");
    assert_eq!(
        send["goroutine_ids"].as_array().unwrap().len() as u64,
        send["count"].as_u64().unwrap()
    );
    assert_eq!(send["created_by"]["function"], "main.spawnChanSend");
    // debug=1 keeps the pprof labels.
    let send1 = d1["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["frames"][0]["function"] == "main.leakChanSend")
        .unwrap();
    assert_eq!(send1["labels"][0]["pattern"], "chansend");
    assert_eq!(send1["count"], send["count"]);
}

#[test]
fn stdin_and_text_output() {
    let dump = std::fs::read(data().join("captures/go1.26/panic.stderr.txt")).unwrap();
    let mut child = Command::new(bin())
        .args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&dump).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("stdin: "), "{text}");
    assert!(text.contains("by state:"), "{text}");
    assert!(text.contains("main.leakChanSend"), "{text}");
}

#[test]
fn bad_input_names_the_file_and_exits_1() {
    let bad = data().join("bad/bad_gateway.debug2.txt");
    let out = run(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_gateway.debug2.txt"), "{err}");
    assert!(err.to_lowercase().contains("html"), "{err}");
}

/// A stack with more goroutines than `inspect` keeps ids for: the count is exact, the ids are
/// the lowest 100, ascending, wherever they were in the dump and whatever their wait bucket.
#[test]
fn ids_of_a_large_stack_are_the_lowest_100() {
    let mut dump = String::new();
    // Ids 1000, 999, ..., 751 (250 goroutines), in two wait buckets, then one other stack.
    for (i, id) in (751..=1000u64).rev().enumerate() {
        let wait = if i % 2 == 0 { "" } else { ", 7 minutes" };
        dump.push_str(&format!(
            "goroutine {id} [chan send{wait}]:\nmain.leak(0x{id:x})\n\t/src/main.go:10 +0x1d\n\
             created by main.main in goroutine 1\n\t/src/main.go:5 +0x25\n\n"
        ));
    }
    dump.push_str("goroutine 1 [select]:\nmain.main()\n\t/src/main.go:3 +0x1\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.debug2.txt");
    std::fs::write(&path, dump).unwrap();
    let v = inspect_json(&path);
    assert_eq!(v["total"], 251);
    let leak = &v["stacks"][0];
    assert_eq!(leak["count"], 250);
    let ids: Vec<u64> = leak["goroutine_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert_eq!(ids, (751..851).collect::<Vec<u64>>());
    assert_eq!(v["stacks"][1]["goroutine_ids"], serde_json::json!([1]));
}

/// panicparse's conveniences: a directory as input, `--match`/`--filter` on any frame, colour
/// on a terminal only (a pseudo-terminal from util-linux `script`), never with `NO_COLOR`.
#[test]
fn directories_match_filter_and_colour_on_a_terminal_only() {
    let dir = data().join("examples/shop/orders-7d9f8b6c5-x2kqp");
    let d = dir.to_str().unwrap();
    // JSON Lines: one report object per file, the same shape as one file's output.
    let files: Vec<Value> = ok(&["inspect", "--format", "json", d])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(files.len(), 6, "six debug=2 dumps");
    assert!(
        files
            .iter()
            .all(|f| f["stacks"].is_array() && f["source"].is_string()),
        "every line is a report object"
    );
    let tops = |v: &Value| -> Vec<String> {
        v["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["frames"][0]["function"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let one = dir.join("2026-11-28T04:38:25Z.debug2.txt");
    let one = one.to_str().unwrap();
    let all: Value = serde_json::from_str(&ok(&["inspect", "--format", "json", one])).unwrap();
    let kept: Value = serde_json::from_str(&ok(&[
        "inspect",
        "--format",
        "json",
        "--match",
        r"leakChanSend|patterns\.go:8",
        one,
    ]))
    .unwrap();
    assert!(!tops(&kept).is_empty());
    assert!(
        tops(&kept).iter().all(|f| f == "main.leakChanSend"),
        "{:?}",
        tops(&kept)
    );
    let dropped: Value = serde_json::from_str(&ok(&[
        "inspect",
        "--format",
        "json",
        "--filter",
        "leakChanSend",
        one,
    ]))
    .unwrap();
    assert!(!tops(&dropped).iter().any(|f| f == "main.leakChanSend"));
    assert_eq!(
        tops(&kept).len() + tops(&dropped).len(),
        tops(&all).len(),
        "match and filter split the stacks"
    );
    assert_eq!(
        run(&["inspect", "--match", "(", one]).status.code(),
        Some(2)
    );

    // Piped: no escape codes. On a terminal: runtime frames dimmed; NO_COLOR: none.
    assert!(!ok(&["inspect", one]).contains('\x1b'));
    let tty = |no_color: bool| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &format!("{} inspect {one}", bin()), "/dev/null"]);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().expect("util-linux `script`");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = tty(false);
    assert!(
        coloured.contains("\x1b[2m    runtime.gopark") || coloured.contains("\x1b[2m    net/http."),
        "{coloured}"
    );
    assert!(coloured.contains("\x1b[1m"), "{coloured}");
    assert!(
        !coloured.contains("\x1b[2m    main."),
        "user code is not dimmed"
    );
    assert!(!tty(true).contains('\x1b'));
}
