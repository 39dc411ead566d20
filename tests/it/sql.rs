//! `leakhound sql`: one statement, -f FILE, statements on stdin; table, CSV and JSON output.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

fn store_with_history(dir: &std::path::Path) -> String {
    let store = dir.join("store");
    let f = dir.join("h.json");
    write(
        &f,
        query_range_json("prod", "api-0", 1_795_839_000, 60, &[3, 5, 8]),
    );
    ok(&[
        "backfill",
        "--store",
        store.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    store.to_str().unwrap().to_string()
}

#[test]
fn statement_file_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path());
    let csv = ok(&[
        "sql",
        "--store",
        &store,
        "--format",
        "csv",
        "SELECT pod, goroutines FROM goroutine_counts ORDER BY ts",
    ]);
    assert_eq!(csv, "pod,goroutines\napi-0,3\napi-0,5\napi-0,8\n");
    let table = ok(&[
        "sql",
        "--store",
        &store,
        "SELECT MAX(goroutines) AS peak FROM goroutine_counts",
    ]);
    assert!(
        table.contains("| peak |") && table.contains("| 8    |"),
        "{table}"
    );

    let script = dir.path().join("q.sql");
    write(
        &script,
        "-- two statements; the second one's ';' is in a string\nSELECT COUNT(*) AS n FROM goroutine_counts;\nSELECT 'a;b' AS s;\n",
    );
    let out = ok(&[
        "sql",
        "--store",
        &store,
        "--format",
        "json",
        "-f",
        script.to_str().unwrap(),
    ]);
    assert_eq!(out, "[{\"n\":3}]\n[{\"s\":\"a;b\"}]\n", "{out}");

    let mut child = Command::new(bin())
        .args(["sql", "--store", &store, "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT SUM(goroutines) AS s\n  FROM goroutine_counts;\nSELECT nope FROM goroutine_counts;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("s\n16\n"), "{stdout}");
    assert!(stderr.contains("nope"), "{stderr}");
    // A failed statement from a pipe makes the run fail.
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["sql", "--format", "xml", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["query", "no_such_query"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("known queries"));
}
