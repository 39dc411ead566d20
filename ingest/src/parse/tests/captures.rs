//! Real captures: every file under `tests/data/captures/<variant>/` (written by real Go
//! programs, with an `expected.json` from an independent Go tool) and under
//! `src/parse/testdata/<variant>/`.
//!
//! - every dump parses, and agrees with `expected.json` where it says something;
//! - equivalence: one capture at debug=0, 1 and 2 gives the same total and the same stack ids;
//! - insta snapshots of the parsed output (`src/parse/snapshots/`). A capture without a
//!   committed snapshot fails the test; add it with
//!   `INSTA_UPDATE=always cargo test -p leakhound-ingest parse::tests::captures` (or
//!   `cargo insta test -p leakhound-ingest --accept -- parse::tests::captures`) and review it.
//!
//! Each test asserts that it compared something: a missing capture folder, a file named in
//! `expected.json` that is not there, or no format pair to compare fails instead of passing
//! empty.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use leakhound_schemas::model::{GoroutineRecord, Snapshot, StackId};

use crate::parse::{Opened, ParseOptions, open, parse_snapshot};

fn variant_dirs() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = Vec::new();
    for root in [
        manifest.join("../tests/data/captures"),
        manifest.join("src/parse/testdata"),
    ] {
        let rd = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("no captures at {}: {e}", root.display()));
        for e in rd.flatten() {
            // `_gen/`: the Go program that writes `testdata/`.
            if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('_') {
                dirs.push(e.path());
            }
        }
    }
    dirs.sort();
    dirs
}

fn dump_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .extension()
                    .is_some_and(|e| e == "json" || e == "go" || e == "sh" || e == "md")
        })
        .collect();
    files.sort();
    files
}

fn records(path: &Path) -> Vec<GoroutineRecord> {
    let f = std::fs::File::open(path).unwrap();
    match open(f, &ParseOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        Opened::Dump { records, .. } => records
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        Opened::PrometheusQueryRange(_) => panic!("{}: Prometheus JSON", path.display()),
    }
}

fn snapshot(path: &Path) -> Snapshot {
    let f = std::fs::File::open(path).unwrap();
    parse_snapshot(f, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The goroutine that wrote the profile has a different stack in each format.
fn is_profiler(r: &GoroutineRecord) -> bool {
    r.stack.frames.iter().any(|f| {
        f.function.starts_with("runtime/pprof.") || f.function.starts_with("net/http/pprof.")
    })
}

/// Stack id → goroutines, leaving out the profiler's own goroutine and stacks that no two
/// formats can agree on (cut by the traceback's 100-frame limit or the profiler's depth).
fn by_stack(recs: &[GoroutineRecord]) -> BTreeMap<StackId, u64> {
    let mut m = BTreeMap::new();
    for r in recs {
        if is_profiler(r) || r.stack.elided || r.stack.frames.len() >= 100 {
            continue;
        }
        *m.entry(r.stack.id()).or_default() += r.count;
    }
    m
}

fn total(recs: &[GoroutineRecord]) -> u64 {
    recs.iter().map(|r| r.count).sum()
}

fn describe(recs: &[GoroutineRecord], id: StackId) -> String {
    recs.iter()
        .find(|r| r.stack.id() == id)
        .map(|r| {
            r.stack
                .frames
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(" <- ")
        })
        .unwrap_or_default()
}

/// Compare two formats of one capture. `live` captures (three HTTP requests in a row to a
/// running server) may differ by the goroutines serving those requests and by goroutines
/// created but not started yet (a stack of `runtime.goexit` alone, printed as no frame at
/// all): allow a few goroutines of difference in those stacks only.
fn compare(dir: &Path, a: (&str, &[GoroutineRecord]), b: (&str, &[GoroutineRecord]), live: bool) {
    assert_eq!(
        total(a.1),
        total(b.1),
        "{}: total of {} != {}",
        dir.display(),
        a.0,
        b.0
    );
    let (ma, mb) = (by_stack(a.1), by_stack(b.1));
    let mut diffs = Vec::new();
    for id in ma
        .keys()
        .chain(mb.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (x, y) = (
            ma.get(id).copied().unwrap_or(0),
            mb.get(id).copied().unwrap_or(0),
        );
        if x != y {
            let d = if x > 0 {
                describe(a.1, *id)
            } else {
                describe(b.1, *id)
            };
            diffs.push((*id, x, y, d));
        }
    }
    let tolerated =
        |d: &str| live && (d.is_empty() || d.contains("net/http.") || d.contains("net/textproto."));
    let bad: Vec<_> = diffs.iter().filter(|(_, _, _, d)| !tolerated(d)).collect();
    assert!(
        bad.is_empty(),
        "{}: stacks differ between {} and {}:\n{}",
        dir.display(),
        a.0,
        b.0,
        bad.iter()
            .map(|(id, x, y, d)| format!("  {id}: {x} vs {y}: [{d}]"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (id, x, y, d) in &diffs {
        eprintln!(
            "{}: {} vs {}: tolerated {id}: {x} vs {y}: [{d}]",
            dir.display(),
            a.0,
            b.0
        );
    }
    let n: u64 = diffs.iter().map(|(_, x, y, _)| x.abs_diff(*y)).sum();
    assert!(
        n <= 4,
        "{}: {n} goroutines differ in net/http stacks",
        dir.display()
    );
}

#[test]
fn same_capture_same_totals_and_stack_ids() {
    let mut compared = 0;
    for dir in variant_dirs() {
        // Captures from a live server over HTTP vs. written in-process by the test program.
        let live = dir.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests"));
        for profile in ["goroutine", "goroutineleak"] {
            let load = |name: String| {
                let p = dir.join(&name);
                p.exists().then(|| (name, records(&p)))
            };
            let d0 = load(format!("{profile}.debug0.pb.gz"));
            let d1 = load(format!("{profile}.debug1.txt"));
            let mut d2 = load(format!("{profile}.debug2.txt"));
            if profile == "goroutineleak" {
                // goroutineleak?debug=2 lists every goroutine; the leaked ones are marked.
                if let Some((_, recs)) = &mut d2 {
                    recs.retain(|r| r.leaked);
                }
            }
            let present: Vec<_> = [d0, d1, d2].into_iter().flatten().collect();
            for pair in present.windows(2) {
                compare(
                    &dir,
                    (&pair[0].0, &pair[0].1),
                    (&pair[1].0, &pair[1].1),
                    live,
                );
                compared += 1;
            }
        }
    }
    eprintln!("{compared} format pairs compared");
    assert!(
        compared >= 10,
        "only {compared} format pairs compared: captures missing?"
    );
}

/// What an independent Go tool (tests/goprogs cmd/dumpstat) counted in each capture.
#[test]
fn captures_agree_with_expected_json() {
    let mut checked = 0;
    for dir in variant_dirs() {
        let Ok(text) = std::fs::read_to_string(dir.join("expected.json")) else {
            continue;
        };
        let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
        let Some(files) = expected["files"].as_object() else {
            continue;
        };
        for (name, want) in files {
            let path = dir.join(name);
            assert!(
                path.exists(),
                "{} names {name}, which is missing",
                dir.join("expected.json").display()
            );
            checked += 1;
            let what = path.display().to_string();
            let recs = records(&path);
            let raw = std::fs::read(&path).unwrap();
            let format = want["format"].as_str().unwrap_or_default();
            if format == "debug=2" {
                // The tool counts every header; goroutine 0 (an M's g0) is not a goroutine, nor
                // are the headers of GOTRACEBACK=crash's per-thread sections (after `-----`),
                // which repeat goroutines listed above.
                let sections = memchr::memmem::find(&raw, b"\n-----\n").unwrap_or(raw.len());
                let g0 = raw
                    .split(|&c| c == b'\n')
                    .filter(|l| l.starts_with(b"goroutine 0 "))
                    .count() as u64
                    + raw[sections..]
                        .split(|&c| c == b'\n')
                        .filter(|l| l.starts_with(b"goroutine ") && !l.starts_with(b"goroutine 0 "))
                        .count() as u64;
                assert_eq!(
                    Some(total(&recs) + g0),
                    want["goroutines"].as_u64(),
                    "{what}: goroutines"
                );
                if let Some(n) = want["leaked_status"].as_u64() {
                    assert_eq!(
                        recs.iter().filter(|r| r.leaked).count() as u64,
                        n,
                        "{what}: leaked"
                    );
                }
                if let Some(n) = want["headers_with_labels"].as_u64() {
                    assert_eq!(
                        recs.iter().filter(|r| !r.labels.is_empty()).count() as u64,
                        n,
                        "{what}: labelled headers"
                    );
                }
            } else {
                assert_eq!(
                    Some(total(&recs)),
                    want["goroutines"].as_u64(),
                    "{what}: goroutines"
                );
                assert_eq!(
                    Some(recs.len() as u64),
                    want["records"].as_u64(),
                    "{what}: records"
                );
            }
            if let Some(by) = want["by_pattern_label"].as_object() {
                let mut got: BTreeMap<String, u64> = BTreeMap::new();
                for r in &recs {
                    if let Some(p) = r.labels.get("pattern") {
                        *got.entry(p.clone()).or_default() += r.count;
                    }
                }
                let want: BTreeMap<String, u64> = by
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect();
                assert_eq!(got, want, "{what}: by pattern label");
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} captures checked against expected.json"
    );
}

/// A stable, readable rendering of a parsed snapshot for insta.
fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kind={} format={} declared_total={:?} total={} groups={}",
        s.kind.as_str(),
        s.format.map_or("?", |f| f.as_str()),
        s.declared_total,
        s.total(),
        s.groups.len()
    );
    for g in &s.groups {
        let _ = write!(
            out,
            "\n{} x [{}] wait={} stack={:016x}",
            g.count, g.state, g.wait_bucket, g.stack_id.0
        );
        if g.leaked {
            out.push_str(" leaked");
        }
        if g.stack.elided {
            out.push_str(" elided");
        }
        if !g.labels.is_empty() {
            let _ = write!(out, " labels={:?}", g.labels);
        }
        if !g.goroutine_ids.is_empty() {
            let _ = write!(out, " ids={:?}", g.goroutine_ids);
        }
        out.push('\n');
        for f in &g.stack.frames {
            let _ = writeln!(out, "  {f}");
        }
        if let Some(c) = &g.stack.created_by {
            let _ = writeln!(out, "  created by {c}");
        }
    }
    out
}

#[test]
fn snapshots_of_real_captures() {
    let updating = std::env::var_os("INSTA_UPDATE").is_some();
    let mut checked = 0;
    let snap_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/parse/snapshots");
    for dir in variant_dirs() {
        let variant = dir.file_name().unwrap().to_string_lossy().into_owned();
        for path in dump_files(&dir) {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let name = format!("{variant}__{file}").replace(['.', '-'], "_");
            let snap_file = snap_dir.join(format!(
                "leakhound_ingest__parse__tests__captures__{name}.snap"
            ));
            assert!(
                snap_file.exists() || updating,
                "no snapshot for {}: add it with INSTA_UPDATE=always (see the module header)",
                path.display()
            );
            checked += 1;
            let rendered = render(&snapshot(&path));
            insta::with_settings!({
                snapshot_path => "../snapshots",
                prepend_module_to_snapshot => true,
                description => format!("{variant}/{file}"),
                omit_expression => true,
            }, {
                insta::assert_snapshot!(name, rendered);
            });
        }
    }
    assert!(checked >= 10, "only {checked} snapshots compared");
}
