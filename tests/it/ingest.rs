//! `leakhound ingest` against the real leaking Go program: counts, per-stack leak counts,
//! residence from goroutine ids, the leak profile, and targets that misbehave.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::goprog::Leaky;
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
