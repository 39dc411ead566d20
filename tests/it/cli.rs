//! The command line's conventions (src/cli.rs), one test each, on the real binary: one parser
//! for durations and times, usage errors exit 2, read-only commands refuse a missing store, one
//! spelling of a stack id, `status` over every table, whole query descriptions, a closed stdout
//! ends quietly, errors with their causes, SQL split by a tokenizer, shell completions.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::support::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A store with the bundled example captures.
fn example_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").to_str().unwrap().to_string();
    ok(&[
        "backfill",
        "--store",
        &store,
        data().join("examples").to_str().unwrap(),
    ]);
    (dir, store)
}

#[test]
fn durations_and_times_take_one_syntax_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    for args in [
        &[
            "ingest",
            "--target",
            "http://127.0.0.1:9/",
            "--timeout",
            "500ms",
            "--deadline",
            "1m30s",
            "--every",
            "1w",
        ][..],
        &["compact", "--retain", "1w", "--grace", "1m30s"],
        &[
            "analyze",
            "--step",
            "1m30s",
            "--now",
            "now-1w",
            "--memory-horizon",
            "1w",
        ],
        &[
            "analyze",
            "--replay",
            "--from",
            "now-1w",
            "--to",
            "2026-11-28T04:00:00Z",
        ],
        &["actuate", "--cooldown", "1m30s", "--max-trigger-age", "1w"],
        &[
            "query",
            "stack_growth",
            "-p",
            "from=now-1m30s",
            "-p",
            "base_from=now-1w",
        ],
        &[
            "backfill",
            "--prometheus",
            "http://127.0.0.1:9",
            "--from",
            "now-1w",
            "--step",
            "1m30s",
        ],
    ] {
        let mut a = args.to_vec();
        a.extend(["--store", store, "--check-config"]);
        let out = run(&a);
        assert_eq!(out.status.code(), Some(0), "{a:?}: {}", stderr(&out));
    }
    // The same value that does not parse is refused the same way by every flag.
    for args in [
        &[
            "ingest",
            "--target",
            "http://127.0.0.1:9/",
            "--timeout",
            "5 parsecs",
        ][..],
        &["compact", "--retain", "5 parsecs"],
        &["actuate", "--cooldown", "5 parsecs"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("1m30s"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn every_usage_error_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    for (args, says) in [
        (&["analyze", "--format", "yaml"][..], "yaml"),
        (&["analyze", "--detectors", "foo"], "foo"),
        (&["analyze", "--min-level", "L4"], "L4"),
        (&["analyze", "--from", "now-1h"], "--replay"),
        (&["analyze", "--replay", "--from", "now-1h"], "--to"),
        (
            &["query", "stack_growth", "-p", "from=yesterday"],
            "yesterday",
        ),
        (&["query", "stack_growth", "-p", "nope=1"], "nope"),
        (
            &[
                "ingest",
                "--target",
                "http://127.0.0.1:9/",
                "--timeout",
                "soon",
            ],
            "soon",
        ),
        (&["ingest"], "no targets"),
        (
            &["ingest", "--target", "x", "--fail-when-down", "101"],
            "101",
        ),
        (&["inspect", "--format", "xml"], "xml"),
        (&["sql", "--format", "xml", "SELECT 1"], "xml"),
        (&["serve"], "no credentials"),
        (&["analyze", "--memory-horizon", "soon"], "soon"),
        (
            &[
                "serve",
                "--no-auth",
                "--push-listen",
                "127.0.0.1:0",
                "--push-client-ca",
                "/nonexistent/ca.pem",
            ],
            "--push-client-ca needs TLS",
        ),
        (&["--log-format", "yaml", "status"], "yaml"),
    ] {
        let mut a = args.to_vec();
        if a[0] != "inspect" {
            a.extend(["--store", store]);
        }
        let out = run(&a);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{a:?}: {}", stderr(&out));
    }
}

#[test]
fn read_only_commands_refuse_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-store");
    let m = missing.to_str().unwrap();
    let pprof = dir.path().join("c.pb.gz");
    for args in [
        &["status", "--store", m][..],
        &["sql", "--store", m, "SELECT 1"],
        &["query", "--store", m, "goroutines_over_time"],
        &[
            "report",
            "--store",
            m,
            "--cluster",
            "x",
            "--pprof",
            pprof.to_str().unwrap(),
        ],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("no store at"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!missing.exists(), "{args:?} created the store");
    }
}

#[test]
fn a_stack_id_is_spelled_one_way_in_inspect_sql_queries_and_json() {
    let (dir, store) = example_store();
    let dump = data().join("examples/shop");
    // Any debug=2 capture of the examples.
    let file = walk(&dump)
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("goroutine ")))
        .expect("a debug=2 example");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "inspect",
        "--format",
        "json",
        file.to_str().unwrap(),
    ]))
    .unwrap();
    let id = report["stacks"][0]["stack_id"]
        .as_str()
        .expect("a JSON string")
        .to_string();
    id.parse::<i64>().expect("the decimal of the Int64 column");
    // What inspect printed finds the stack in SQL, as a string or as a number.
    for cond in [format!("'{id}'"), id.clone()] {
        let n = sql_i64(
            &store,
            &format!("SELECT COUNT(*) AS n FROM stacks WHERE stack_id = {cond}"),
        );
        assert!(n >= 1, "stack_id = {cond}: {n}");
    }
    let text = ok(&["inspect", file.to_str().unwrap()]);
    assert!(text.contains(&format!("stack {id}")), "{text}");
    // JSON output carries stack ids as strings, in tables and in named queries.
    let rows = sql_json(&store, "SELECT stack_id FROM stacks LIMIT 3");
    assert!(rows.iter().all(|r| r["stack_id"].is_string()), "{rows:?}");
    let out = ok(&[
        "query",
        "--store",
        &store,
        "--format",
        "json",
        "oldest_blocked",
        "-p",
        "from=2026-11-28T04:00:00Z",
        "-p",
        "to=2026-11-28T05:00:00Z",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = rows[0]["stack_id"].as_str().expect("a string");
    let n = sql_i64(
        &store,
        &format!("SELECT COUNT(*) AS n FROM stacks WHERE stack_id = '{first}'"),
    );
    assert!(n >= 1, "{first}");
    drop(dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn status_lists_every_table() {
    let (_dir, store) = example_store();
    let out = ok(&["status", "--store", &store]);
    for t in [
        "goroutine_counts",
        "goroutine_samples",
        "stacks",
        "ingest_log",
        "scrape_status",
        "leak_events",
        "leak_clusters",
        "actions",
    ] {
        assert!(out.contains(&format!("| {t} ")), "{t} missing:\n{out}");
    }
    // In one order, run after run (Table::ALL's).
    let pos: Vec<usize> = ["goroutine_counts", "stacks", "goroutine_samples", "actions"]
        .iter()
        .map(|t| out.find(&format!("| {t} ")).unwrap())
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{out}");
}

#[test]
fn query_list_prints_whole_descriptions() {
    let out = ok(&["query", "--list"]);
    // The second and third lines of stack_growth's description.
    assert!(
        out.contains("Answers: which code paths are accumulating goroutines?"),
        "{out}"
    );
    assert!(out.contains("counts as 0 there."), "{out}");
    assert!(out.contains("-p limit=…"), "{out}");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let big = data().join("captures/go1.26/goroutine.debug2.txt");
    let mut child = Command::new(bin())
        .args(["inspect", "--frames", "0"])
        .args([big.to_str().unwrap(); 20])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing on stderr");
    // SQL results too, in every format.
    let (_dir, store) = example_store();
    for format in ["table", "csv", "json"] {
        let mut child = Command::new(bin())
            .args(["sql", "--store", &store, "--format", format])
            .arg("SELECT * FROM generate_series(1, 300000)")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{format}: nothing on stderr");
    }
}

#[test]
fn errors_say_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let port = free_port();
    let out = run(&[
        "backfill",
        "--store",
        store,
        "--prometheus",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out).to_lowercase();
    assert!(e.contains("connection refused"), "{e}");
}

#[test]
fn sql_splits_statements_with_a_tokenizer() {
    let (_dir, store) = example_store();
    let out = ok(&[
        "sql",
        "--store",
        &store,
        "--format",
        "csv",
        "select 1 AS one /* ; */",
    ]);
    assert_eq!(out, "one\n1\n");
    let out = ok(&[
        "sql",
        "--store",
        &store,
        "--format",
        "csv",
        "select 'a;b' AS s; -- a comment; with a semicolon\nselect \"n;\" FROM (SELECT 2 AS \"n;\")",
    ]);
    assert_eq!(out, "s\na;b\nn;\n2\n");
}

#[test]
fn shell_completions() {
    let out = ok(&["completions", "bash"]);
    assert!(
        out.contains("leakhound") && out.contains("--store"),
        "{out}"
    );
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The prompt on a terminal (a pseudo-terminal from util-linux `script`) runs a statement and
/// keeps it in `~/.leakhound_history`.
#[test]
fn the_sql_prompt_keeps_a_history() {
    use std::io::Write;
    let (dir, store) = example_store();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} sql --store {store}", bin()),
            "/dev/null",
        ])
        .env("HOME", &home)
        .env_remove("LEAKHOUND_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the prompt on a pseudo-terminal");
    // The statement, then Ctrl-D.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"select 41 + 1 as answer;\n\x04")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("| 42 "), "{stdout}");
    let history = std::fs::read_to_string(home.join(".leakhound_history")).unwrap();
    assert!(history.contains("select 41 + 1 as answer;"), "{history}");
}

/// Progress on long runs (issue 16): `analyze --replay` and `compact` show the stage they are in
/// on a terminal (a pseudo-terminal from util-linux `script`), and nothing when stderr is piped.
#[test]
fn long_runs_show_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let demo = data().join("demo/shop");
    ok(&[
        "backfill",
        "--store",
        store,
        "--path-pattern",
        "{namespace}/{workload}/{pod}/{timestamp}",
        demo.to_str().unwrap(),
    ]);
    let replay = format!(
        "{} analyze --store {store} --replay --from 2026-12-03T16:05:00Z --to 2026-12-03T16:45:00Z --detectors growth_rule,baseline_rule --no-write",
        bin()
    );
    let compact = format!("{} compact --store {store}", bin());
    for (cmd, stage) in [(&replay, "detector growth_rule"), (&compact, "compacting")] {
        let out = std::process::Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .env_remove("LEAKHOUND_STORE")
            .output()
            .expect("util-linux `script`");
        assert!(out.status.success(), "{cmd}: {out:?}");
        let tty = String::from_utf8_lossy(&out.stdout);
        assert!(
            tty.contains(stage),
            "{cmd} on a terminal: no {stage:?} in\n{tty}"
        );
        // Piped: the same command, no progress on stderr.
        let args: Vec<&str> = cmd.split(' ').skip(1).collect();
        let piped = run(&args);
        assert!(piped.status.success(), "{piped:?}");
        let stderr = String::from_utf8_lossy(&piped.stderr);
        assert!(
            !stderr.contains(stage),
            "{cmd} piped printed progress: {stderr}"
        );
    }
}
