//! The README's command 1 (backfill the bundled recording, analyze it, write the HTML report),
//! run as the README writes it, and the report it writes loaded in a real headless Chromium:
//! no console error, the charts and flamegraphs rendered, the leaking stack's function and the
//! counts of the store in the DOM, a screenshot. And a page whose every string is hostile,
//! loaded the same way: nothing in it runs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};

use crate::chromium::{self, Browser};
use crate::support::*;

/// README command 1: the `sh` block under "## The two commands", one line of
/// `cargo run -q -- ARGS` joined by `&&`.
fn readme_command_1() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("README has '## The two commands'");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "command 1 is one line: {lines:?}");
    lines[0]
        .split(" && ")
        .map(|cmd| {
            let words = shell_words(cmd);
            assert_eq!(
                &words[..3],
                ["cargo", "run", "-q"],
                "each part runs the binary: {cmd}"
            );
            assert_eq!(words[3], "--", "{cmd}");
            words[4..].to_vec()
        })
        .collect()
}

/// Words of a command line with single-quoted parts (all README command 1 uses).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {s:?}");
    if any {
        out.push(cur);
    }
    out
}

struct Demo {
    store: String,
    html: PathBuf,
    /// stdout of each part of the command.
    outputs: Vec<String>,
}

/// Runs README command 1 once (into a store and report under the target's temporary folder).
fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        // Shared by the tests of this run (a static outlives them): a fixed folder under the
        // target's temporary folder, emptied first, so runs leave one copy behind, not one each.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-command-1");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let store = dir.join("store").to_str().expect("utf-8").to_string();
        let html = dir.join("leak-report.html");
        let mut outputs = Vec::new();
        for mut args in readme_command_1() {
            if let Some(i) = args.iter().position(|a| a == "--html") {
                args[i + 1] = html.to_str().expect("utf-8").to_string();
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = std::process::Command::new(bin())
                .args(&args)
                .current_dir(repo())
                .env("LEAKHOUND_STORE", &store)
                .env("RUST_LOG", "warn")
                .output()
                .expect("run leakhound");
            assert!(
                out.status.success(),
                "leakhound {args:?}: {:?}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            outputs.push(String::from_utf8(out.stdout).expect("utf-8"));
        }
        Demo {
            store,
            html,
            outputs,
        }
    })
}

const LEAKING_POD: &str = "orders-5c8d7f9b4-kq2xv";
const HEALTHY_POD: &str = "orders-5c8d7f9b4-w7n4m";

#[test]
fn readme_command_1_ends_with_the_leak_its_stack_and_the_report() {
    let d = demo();
    let last = d.outputs.last().expect("outputs");
    // The report's lines: the event, its level, the leaking stack's site, the file.
    let first = last.lines().next().unwrap_or_default();
    assert!(first.starts_with("event "), "{last}");
    assert!(first.contains(" L3 "), "the leak reaches L3: {last}");
    assert!(
        last.contains("chan_send") && last.contains("main.leakChanSend"),
        "{last}"
    );
    assert!(last.contains("patterns.go:"), "the code location: {last}");
    assert!(
        last.trim_end()
            .ends_with(&format!("report written to {}", d.html.display())),
        "{last}"
    );
    // In the store: L3 on the leaking pod (or its workload), never on the healthy one.
    let l3 = sql_i64(
        &d.store,
        &format!(
            "SELECT COUNT(*) AS n FROM leak_events WHERE level = 'L3' \
             AND (pod = '{LEAKING_POD}' OR pod IS NULL)"
        ),
    );
    assert!(l3 > 0, "no L3 event for the leaking pod");
    let healthy = sql_i64(
        &d.store,
        &format!(
            "SELECT COUNT(*) AS n FROM leak_events WHERE level <> 'L1' AND pod = '{HEALTHY_POD}'"
        ),
    );
    assert_eq!(healthy, 0, "the healthy pod must not reach L2");
    // The runtime's goroutineleak profile (taken at the end of the recording, after the
    // detections) confirms chansend and not httpbody: the report says so.
    let chansend = last
        .lines()
        .find(|l| l.contains("chan_send"))
        .unwrap_or_default();
    assert!(chansend.contains("runtime-confirmed at"), "{last}");
    let httpbody = last
        .lines()
        .find(|l| l.contains("http_body"))
        .unwrap_or_default();
    assert!(!httpbody.contains("runtime-confirmed"), "{last}");
}

fn js_str(v: &serde_json::Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[test]
fn the_report_renders_in_chromium_with_the_stores_counts() -> Result<()> {
    if chromium::skip() {
        return Ok(());
    }
    let d = demo();
    let mut b = Browser::start()?;
    b.load(&d.html)?;
    b.settle()?;
    let shot = b.screenshot()?;
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leak-report.png");
    std::fs::write(&png, &shot)?;
    eprintln!("screenshot: {} ({} bytes)", png.display(), shot.len());
    ensure!(shot.starts_with(b"\x89PNG"), "not a PNG");
    ensure!(
        b.console.errors.is_empty(),
        "console errors: {:?}",
        b.console.errors
    );

    // The count chart: one line per pod, drawn with a size.
    let lines = b.eval("document.querySelectorAll('svg.chart polyline.series').length")?;
    ensure!(lines == 2, "series drawn: {lines}");
    let w = b.eval("document.querySelector('svg.chart').getBoundingClientRect().width")?;
    ensure!(w.as_f64().unwrap_or(0.0) > 500.0, "chart width {w}");
    let onset = b.eval("document.querySelectorAll('svg.chart line.vmark.onset').length")?;
    ensure!(onset.as_u64().unwrap_or(0) >= 1, "no onset mark");
    // The flamegraphs: inferno's SVG inside each frame, laid out, with its frames drawn.
    let flames = b.eval(
        "Array.from(document.querySelectorAll('iframe.flame')).map(f => { \
           const d = f.contentDocument; const s = d && d.querySelector('svg'); \
           return s ? [s.getBoundingClientRect().width, d.querySelectorAll('#frames g').length] : null })",
    )?;
    let flames = flames.as_array().context("flames")?.clone();
    ensure!(flames.len() >= 2, "flamegraph frames: {flames:?}");
    for f in &flames {
        let f = f.as_array().context("a flamegraph did not load")?;
        ensure!(
            f[0].as_f64().unwrap_or(0.0) > 500.0,
            "flamegraph width {f:?}"
        );
        ensure!(f[1].as_u64().unwrap_or(0) > 3, "flamegraph frames {f:?}");
    }
    let in_flame = b.eval(
        "document.querySelector('iframe.flame.leaking').contentDocument.documentElement.textContent.includes('main.leakChanSend')",
    )?;
    ensure!(in_flame == true, "the flamegraph lacks main.leakChanSend");

    // The DOM against the store: the event's goroutines, each cluster's goroutines and site.
    let events = sql_json(
        &d.store,
        "SELECT event_id, goroutines FROM leak_events e WHERE detected_at = \
         (SELECT MAX(detected_at) FROM leak_events x WHERE x.event_id = e.event_id)",
    );
    let shown = b.eval(
        "Array.from(document.querySelectorAll('section.event')).map(s => [s.dataset.eventId, \
           s.querySelector('table.facts td[data-goroutines]').textContent])",
    )?;
    let shown = shown.as_array().context("events")?.clone();
    ensure!(!shown.is_empty(), "no event section");
    for s in &shown {
        let id = js_str(&s[0]);
        let g = js_str(&s[1]);
        let row = events
            .iter()
            .find(|r| r["event_id"] == id.as_str())
            .with_context(|| format!("event {id} not in the store"))?;
        ensure!(
            js_str(&row["goroutines"]) == g,
            "event {id}: page {g}, store {}",
            row["goroutines"]
        );
    }
    let clusters = b.eval(
        "Array.from(document.querySelectorAll('section.event')).flatMap(s => \
           Array.from(s.querySelectorAll('tr.cluster')).map(r => [s.dataset.eventId, \
             r.dataset.clusterId, r.querySelector('td.now').textContent, \
             r.querySelector('code.fn').textContent]))",
    )?;
    let clusters = clusters.as_array().context("clusters")?.clone();
    ensure!(!clusters.is_empty(), "no cluster rows");
    let mut saw_chansend = false;
    for c in &clusters {
        let (ev, id, now, func) = (js_str(&c[0]), js_str(&c[1]), js_str(&c[2]), js_str(&c[3]));
        let n = sql_i64(
            &d.store,
            &format!(
                "SELECT goroutines_now AS n FROM leak_clusters WHERE event_id = '{ev}' AND \
                 cluster_id = '{id}' AND detected_at = (SELECT MAX(detected_at) FROM \
                 leak_clusters WHERE event_id = '{ev}')"
            ),
        );
        ensure!(n.to_string() == now, "cluster {id}: page {now}, store {n}");
        saw_chansend |= func == "main.leakChanSend";
    }
    ensure!(
        saw_chansend,
        "no main.leakChanSend cluster on the page: {clusters:?}"
    );
    // Each pod's last count in the table is the store's last count in the report's range.
    let pods = b.eval(
        "Array.from(document.querySelectorAll('table.pods tr[data-pod]')).map(r => [r.dataset.pod, r.querySelector('td.last').textContent])",
    )?;
    let pods = pods.as_array().context("pods")?.clone();
    ensure!(pods.len() == 2, "{pods:?}");
    for p in &pods {
        let (pod, last) = (js_str(&p[0]), js_str(&p[1]));
        let n: i64 = last.parse()?;
        let max_in_store = sql_i64(
            &d.store,
            &format!("SELECT MAX(goroutines) AS n FROM goroutine_counts WHERE pod = '{pod}'"),
        );
        ensure!(
            n > 0 && n <= max_in_store,
            "{pod}: last {n}, store max {max_in_store}"
        );
    }
    // The pprof download is a data: URL that parses back as a gzip'd profile.
    let href = b.eval("document.querySelector('tr.cluster a[download]').href")?;
    let href = js_str(&href);
    let b64 = href
        .strip_prefix("data:application/octet-stream;base64,")
        .context("a data: URL")?;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let snap = leakhound_ingest::parse::parse_snapshot(&bytes[..], "cluster.pb.gz")?;
    ensure!(snap.total() > 0, "empty profile");
    Ok(())
}

#[test]
fn hostile_names_stay_text_in_chromium() -> Result<()> {
    use leakhound_analyze::html::{self, ClusterView, Detection, EventView, PodSeries, Report};
    if chromium::skip() {
        return Ok(());
    }
    let evil = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">'\"";
    let stack = leakhound_analyze::rootcause::StackInfo {
        frames: vec![leakhound_schemas::model::Frame {
            function: evil.into(),
            file: evil.into(),
            line: 7,
        }],
        created_by: None,
    };
    let report = Report {
        title: evil.into(),
        namespace: evil.into(),
        workload: Some(evil.into()),
        from_s: 1_000,
        to_s: 5_000,
        series: vec![PodSeries {
            pod: evil.into(),
            points: vec![(1_000, 3), (4_000, 30)],
            restarts: vec![(2_000, evil.into())],
        }],
        events: vec![EventView {
            id: evil.into(),
            namespace: evil.into(),
            pod: Some(evil.into()),
            detector: evil.into(),
            onset: 2_000,
            window_start: 2_000,
            window_end: 4_000,
            reason: evil.into(),
            detections: vec![Detection {
                detected_at: 4_000,
                level: evil.into(),
                goroutines: 30,
                growth_per_s: 0.01,
            }],
            clusters: vec![ClusterView {
                id: evil.into(),
                pattern: evil.into(),
                blocking_site: evil.into(),
                top_function: evil.into(),
                top_file: evil.into(),
                representative: vec![evil.into()],
                goroutines_now: 27,
                ..Default::default()
            }],
            flamegraph: html::flame::flamegraph(&[(stack, 27)], evil),
            ..Default::default()
        }],
        store: evil.into(),
        generated_at: 0,
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hostile.html");
    std::fs::write(&file, html::render::page(&report))?;
    let mut b = Browser::start()?;
    b.load(&file)?;
    b.settle()?;
    let pwned = b.eval(
        "[typeof window.pwned].concat(Array.from(document.querySelectorAll('iframe')).map(f => \
           typeof f.contentWindow.pwned))",
    )?;
    ensure!(
        pwned
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v == "undefined")),
        "a hostile string ran: {pwned}"
    );
    let imgs = b.eval(
        "document.querySelectorAll('img').length + Array.from(document.querySelectorAll('iframe')).map(f => f.contentDocument.querySelectorAll('img').length).reduce((a, b) => a + b, 0)",
    )?;
    ensure!(imgs == 0, "{imgs} <img> elements from the store's strings");
    // Shown as text, where a person reads it.
    let text = b.eval("document.querySelector('code.fn').textContent")?;
    ensure!(js_str(&text) == evil, "the function name as text: {text}");
    ensure!(
        b.console.errors.is_empty(),
        "console errors: {:?}",
        b.console.errors
    );
    Ok(())
}

#[tokio::test]
async fn serve_shows_the_events_and_their_reports_behind_its_auth() -> Result<()> {
    let d = demo();
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    write(&token, "t0ken\n");
    let serve = crate::serve::Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        &d.store,
        "--bearer-token-file",
        token.to_str().context("utf-8")?,
    ]);
    let http = reqwest::Client::new();
    let id = sql_json(
        &d.store,
        "SELECT event_id FROM leak_events WHERE level = 'L3' ORDER BY detected_at DESC LIMIT 1",
    )[0]["event_id"]
        .as_str()
        .context("event_id")?
        .to_string();
    for path in ["/events".to_string(), format!("/events/{id}")] {
        let r = http.get(format!("{}{path}", serve.url)).send().await?;
        ensure!(
            r.status() == 401,
            "{path} without credentials: {}",
            r.status()
        );
    }
    let list = http
        .get(format!("{}/events", serve.url))
        .bearer_auth("t0ken")
        .send()
        .await?;
    ensure!(list.status() == 200, "/events: {}", list.status());
    let list = list.text().await?;
    ensure!(list.contains(&format!("href=\"/events/{id}\"")), "{list}");
    let page = http
        .get(format!("{}/events/{id}", serve.url))
        .bearer_auth("t0ken")
        .send()
        .await?;
    ensure!(page.status() == 200, "/events/{id}: {}", page.status());
    ensure!(
        page.headers()
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("default-src 'none'")),
        "{:?}",
        page.headers()
    );
    let page = page.text().await?;
    ensure!(
        page.contains(&format!("data-event-id=\"{id}\"")),
        "not the event's report"
    );
    ensure!(
        page.contains("main.leakChanSend"),
        "no leaking stack in the report"
    );
    for bad in ["0123456789abcdef", "..%2F..%2Fetc", "%3Cscript%3E"] {
        let r = http
            .get(format!("{}/events/{bad}", serve.url))
            .bearer_auth("t0ken")
            .send()
            .await?;
        ensure!(r.status() == 404, "/events/{bad}: {}", r.status());
    }
    serve.stop();
    Ok(())
}

#[test]
fn a_named_query_with_an_empty_default_window_says_what_range_the_store_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let store = store.to_str().expect("utf-8");
    ok(&[
        "backfill",
        "--store",
        store,
        data().join("examples/shop").to_str().expect("utf-8"),
    ]);
    // The examples are from 2026-11-28; "now" a day later leaves the default window empty.
    let env = [("LEAKHOUND_NOW", "2026-11-29T12:00:00Z")];
    let out = ok_env(&["query", "--store", store, "goroutines_over_time"], &env);
    assert!(out.starts_with("(no rows) in the window from=2026-11-29T10:00:00Z (now-2h, default) to=2026-11-29T12:00:00Z"), "{out}");
    assert!(
        out.contains(
            "the store holds goroutines from 2026-11-28T04:37:59Z to 2026-11-28T04:38:25Z"
        ),
        "{out}"
    );
    assert!(!out.contains('+'), "no empty table: {out}");
    // The command it proposes finds rows.
    let cmd = out.lines().last().expect("a command line").trim();
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let mut with_store = vec![args[0], "--store", store];
    with_store.extend(&args[1..]);
    let rows = ok_env(&with_store, &env);
    assert!(rows.contains("orders-7d9f8b6c5-x2kqp"), "{rows}");
    // A window the user chose is theirs: an empty one prints the empty table as before.
    let out = ok_env(
        &[
            "query",
            "--store",
            store,
            "goroutines_over_time",
            "-p",
            "from=2026-11-29T00:00:00Z",
        ],
        &env,
    );
    assert!(
        out.contains("(no rows) in the window"),
        "a defaulted 'to' still gets the note: {out}"
    );
    let out = ok_env(
        &[
            "query",
            "--store",
            store,
            "goroutines_over_time",
            "-p",
            "from=2026-11-29T00:00:00Z",
            "-p",
            "to=2026-11-29T01:00:00Z",
        ],
        &env,
    );
    assert_eq!(out.trim(), "(no rows)", "{out}");
}

#[tokio::test]
async fn restarts_are_marked_where_the_counts_say_a_new_process_began() -> Result<()> {
    use leakhound_ingest::rows::{CountRow, Target};
    use leakhound_ingest::writer::{Batch, Writer};
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let store = store.to_str().context("utf-8")?;
    // Thirty minutes of a pod whose process restarts at minute 12 (a new process start time)
    // and whose container restarts at minute 20 (the restart count), and a steady pod.
    let t0 = 1_795_000_000 / 60 * 60;
    let mut rows = Vec::new();
    for (pod, restarts) in [("web-1", true), ("web-2", false)] {
        for m in 0..30i64 {
            rows.push(CountRow {
                target: Target {
                    namespace: "shop".into(),
                    workload: Some("web".into()),
                    pod: pod.into(),
                    ..Default::default()
                },
                ts_us: (t0 + m * 60) * 1_000_000,
                goroutines: 40 + m,
                process_start_time_us: Some(
                    1_000_000
                        * if restarts && m >= 12 {
                            t0 + 700
                        } else {
                            t0 - 60
                        },
                ),
                container_restarts: Some(if restarts && m >= 20 { 1 } else { 0 }),
                source: "scrape".into(),
                format: "metrics".into(),
                ..Default::default()
            });
        }
    }
    let mut b = Batch::default();
    b.add_counts(rows, "restarts");
    Writer::new(leakhound_ingest::Store::open(store)?)
        .commit(b)
        .await?;
    let html = dir.path().join("r.html");
    let out = ok(&[
        "report",
        "--store",
        store,
        "--html",
        html.to_str().context("utf-8")?,
        "--namespace",
        "shop",
        "--workload",
        "web",
    ]);
    ensure!(
        out.contains("no leak event in this scope and range"),
        "{out}"
    );
    let page = std::fs::read_to_string(&html)?;
    ensure!(
        page.matches("class=\"vmark restart\"").count() == 2,
        "two restart marks"
    );
    ensure!(
        page.contains("restart web-1 (new process start time)"),
        "the first restart"
    );
    ensure!(
        page.contains("restart web-1 (container restarted)"),
        "the second restart"
    );
    ensure!(!page.contains("restart web-2"), "web-2 never restarted");
    Ok(())
}
