//! analyze uses the container context (issue 20): a real leaking Go service with the agent
//! (`tests/goprogs/cmd/agentleaky`) pushes its snapshots into a real `leakhound serve`, its
//! memory (the process's real RSS: each leaked goroutine holds its stack) growing with its
//! goroutines; `leakhound analyze --replay` over those rows gives events that carry the memory,
//! the limit and the time until the limit at the memory's slope — and, for the same program
//! with no limit, the memory with a null limit and time to the limit. With thresholds that
//! keep the goroutines alone at L2, the memory heading for the limit raises it to L3.
//!
//! The limit is the agent's cgroup `memory.max` read from a directory the test writes (no
//! cgroup v2 can be made on these hosts; `memory.current` left out, so memory is the real
//! VmRSS). The snapshots are taken one a second of real time but stamped a minute apart
//! (agentleaky's `-push-clock-start`): analyze needs tens of minutes of history to sustain an
//! episode, and what is captured at each stamp is the process as it really is.

use std::path::Path;
use std::time::Duration;

use crate::agent::AgentLeaky;
use crate::push::{PushServe, curl, stat};
use crate::support::*;

const CAPTURES: i64 = 36;
const LEAK_PER_CAPTURE: usize = 1_000;
const LIMIT: i64 = 512 << 20;

fn pusher(
    token: &Path,
    push_token: &Path,
    addr: &str,
    pod: &str,
    cgroup: &Path,
    start: i64,
) -> AgentLeaky {
    AgentLeaky::start(&[
        "-token-file",
        token.to_str().unwrap(),
        "-push",
        addr,
        "-push-token-file",
        push_token.to_str().unwrap(),
        "-pod",
        pod,
        "-cgroup-dir",
        cgroup.to_str().unwrap(),
        "-push-clock-start",
        &start.to_string(),
        "-push-clock-step",
        "1m",
    ])
}

#[test]
fn a_leaking_agents_events_carry_the_time_until_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "agent-token-mem\n");
    let push_token = dir.path().join("push-token");
    write(&push_token, "push-token-mem\n");
    let limited = dir.path().join("cg-limited");
    let unlimited = dir.path().join("cg-unlimited");
    for (cg, max) in [(&limited, LIMIT.to_string()), (&unlimited, "max".into())] {
        std::fs::create_dir_all(cg).unwrap();
        write(&cg.join("memory.max"), format!("{max}\n"));
    }
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let serve = PushServe::start(store, &push_token, "127.0.0.1:0", &[]);
    // Minutes stamped from two hours ago (aligned to analyze's 5-minute step).
    let start = (chrono::Utc::now().timestamp() / 300) * 300 - 7_200;
    let apps = [
        pusher(
            &token,
            &push_token,
            &serve.push,
            "orders-mem",
            &limited,
            start,
        ),
        pusher(
            &token,
            &push_token,
            &serve.push,
            "orders-nolimit",
            &unlimited,
            start,
        ),
    ];
    for _ in 0..CAPTURES {
        for app in &apps {
            curl(
                "POST",
                &format!("{}/api/orders?n={LEAK_PER_CAPTURE}", app.url),
            );
            curl("POST", &format!("{}/push/capture", app.url));
        }
    }
    wait_until("the pushes acknowledged", Duration::from_secs(120), || {
        apps.iter().all(|a| stat(a, "Acked") == CAPTURES as u64)
    });
    // The rows: the real RSS grows, the limit is the agent's memory.max, memory.current null.
    let rows = sql_json(
        store,
        "SELECT pod, COUNT(*) AS n, MIN(rss_bytes) AS rss0, MAX(rss_bytes) AS rss1, \
         MAX(mem_max_bytes) AS lim, COUNT(mem_current_bytes) AS cur, \
         regr_slope(CAST(rss_bytes AS DOUBLE), CAST(to_unixtime(ts) AS DOUBLE)) AS slope \
         FROM goroutine_counts GROUP BY pod ORDER BY pod",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (mem, nolimit) = (&rows[0], &rows[1]);
    assert_eq!(mem["pod"], "orders-mem");
    assert_eq!(mem["n"], CAPTURES, "{mem:?}");
    assert_eq!(mem["lim"], LIMIT, "{mem:?}");
    assert_eq!(mem["cur"], 0, "{mem:?}");
    assert!(
        nolimit.get("lim").is_none_or(|l| l.is_null()),
        "{nolimit:?}"
    );
    let rss1 = mem["rss1"].as_f64().unwrap();
    let slope = mem["slope"].as_f64().unwrap();
    // 36,000 goroutines hold at least 2 KiB of stack each: the RSS grew by tens of MiB.
    assert!(
        rss1 - mem["rss0"].as_f64().unwrap() > 32.0 * 1_048_576.0,
        "{mem:?}"
    );
    assert!(slope > 0.0 && rss1 < LIMIT as f64, "{mem:?}");

    let out = ok(&[
        "analyze",
        "--store",
        store,
        "--replay",
        "--from",
        &start.to_string(),
        "--to",
        &(start + CAPTURES * 60).to_string(),
        "--detectors",
        "growth_rule",
        "--format",
        "jsonl",
    ]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |pod: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["pod"] == pod).collect()
    };
    let (mem_events, nolimit_events) = (of("orders-mem"), of("orders-nolimit"));
    assert!(!mem_events.is_empty(), "no event:\n{out}");
    assert!(!nolimit_events.is_empty(), "no event:\n{out}");
    // The leak is found, and its events carry memory, limit and the time until the limit;
    // the last one, over the episode's window, agrees with the slope of every row to within
    // a factor of 2 (the RSS of a Go process grows in steps as the heap and stacks grow).
    assert!(mem_events.iter().any(|e| e["level"] == "L3"), "{out}");
    let last = mem_events.last().unwrap();
    assert_eq!(last["memory_limit_bytes"], LIMIT, "{last}");
    let m = last["memory_bytes"].as_f64().unwrap();
    assert!(m > 0.0 && m < LIMIT as f64, "{last}");
    let ttl = last["time_to_limit_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no time_to_limit_s: {last}"));
    let expected = (LIMIT as f64 - rss1) / slope;
    assert!(
        ttl > expected / 2.0 && ttl < expected * 2.0,
        "time_to_limit_s {ttl} against {expected} from the rows' slope: {last}"
    );
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the limit in")),
        "{last}"
    );
    // No limit: the memory, and null for the limit and the time until it.
    for e in &nolimit_events {
        assert!(e["memory_bytes"].as_f64().is_some_and(|m| m > 0.0), "{e}");
        assert!(e["memory_limit_bytes"].is_null(), "{e}");
        assert!(e["time_to_limit_s"].is_null(), "{e}");
    }
    // The raise by one, on the same rows: with residence and alive share held at warning (their
    // danger thresholds out of reach) and growth at warning, the goroutines alone make L2; the
    // memory heading for the limit makes the limited pod's L3 — not with a horizon shorter
    // than its time to the limit, and never for the pod without a limit.
    let levels = |horizon: &str| -> Vec<(String, String)> {
        let out = ok(&[
            "analyze",
            "--store",
            store,
            "--replay",
            "--from",
            &start.to_string(),
            "--to",
            &(start + CAPTURES * 60).to_string(),
            "--detectors",
            "growth_rule",
            "--residence-s",
            "30",
            "1000000",
            "--alive-share",
            "0.001",
            "2",
            "--memory-horizon",
            horizon,
            "--no-write",
            "--format",
            "jsonl",
        ]);
        let mut max: std::collections::BTreeMap<String, String> = Default::default();
        for l in out.lines() {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            let (pod, level) = (e["pod"].as_str().unwrap(), e["level"].as_str().unwrap());
            let m = max.entry(pod.to_string()).or_default();
            if level > m.as_str() {
                *m = level.to_string();
            }
        }
        max.into_iter().collect()
    };
    let l = |p: &str, v: &str| (p.to_string(), v.to_string());
    assert_eq!(
        levels("24h"),
        [l("orders-mem", "L3"), l("orders-nolimit", "L2")]
    );
    assert_eq!(
        levels("1m"),
        [l("orders-mem", "L2"), l("orders-nolimit", "L2")]
    );
    // The report shows it.
    let text = ok(&[
        "report",
        "--store",
        store,
        "--html",
        dir.path().join("r.html").to_str().unwrap(),
        "--namespace",
        "shop",
        "--from",
        &start.to_string(),
        "--to",
        &(start + CAPTURES * 60).to_string(),
    ]);
    assert!(
        text.contains("memory ") && text.contains("the limit in"),
        "{text}"
    );
    let page = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(
        page.contains("data-time-to-limit=\""),
        "no memory row in the page"
    );
}
