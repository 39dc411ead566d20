//! Real-world shapes of dumps (issue 15, "Parsers on real-world shapes"): pasted and indented
//! dumps, a byte-order mark, two dumps in one file, cut dumps, malformed frame lines, creators,
//! waits under a minute, `(leaked)` per goroutine, ids across formats. Each case is read by
//! both paths (the records and the aggregating fast path, which must agree: `same`).
//!
//! Inputs: files of the real-world corpus (`tests/data/realworld/`, written by others), real
//! captures (`tests/data/captures/`), and short excerpts of the runtime's output where a case
//! needs a cut or an edit (named as such).

use std::path::{Path, PathBuf};

use leakhound_schemas::model::{DumpFormat, Frame, Snapshot, StackId};

use super::aggregate::same;
use crate::parse::{ParseError, ParseOptions, parse_snapshot, parse_snapshot_with};

fn realworld(name: &str) -> Vec<u8> {
    read(&repo().join("tests/data/realworld").join(name))
}

fn capture(name: &str) -> Vec<u8> {
    read(&repo().join("tests/data/captures").join(name))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Both paths agree on `input` (default and small options, one and several threads); the
/// snapshot or error with the default options.
fn parse(input: &[u8]) -> Result<Snapshot, ParseError> {
    for threads in [1, 2] {
        let opts = ParseOptions {
            threads,
            ..Default::default()
        };
        same(input, &opts);
    }
    parse_snapshot(input, "t")
}

fn ids(s: &Snapshot) -> Vec<u64> {
    let mut v: Vec<u64> = s
        .groups
        .iter()
        .flat_map(|g| g.goroutine_ids.iter().copied())
        .collect();
    v.sort_unstable();
    v
}

const TWO: &str = "goroutine 1 [running]:
main.main()
\t/x/main.go:10 +0x1d

goroutine 7 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.main in goroutine 1
\t/x/main.go:9 +0x45
";

// --- pasted dumps ---------------------------------------------------------------------------

#[test]
fn frames_indented_with_spaces_parse() {
    // As a dump reads once pasted into an issue: every tab turned into spaces.
    let pasted = TWO.replace('\t', "    ");
    let s = parse(pasted.as_bytes()).unwrap();
    assert_eq!(ids(&s), vec![1, 7]);
    let reference = parse(TWO.as_bytes()).unwrap();
    assert_eq!(format!("{s:?}"), format!("{reference:?}"));
}

#[test]
fn indented_dump_from_a_test_log_parses() {
    // panicparse's "Indented" case: a dump inside a test framework's report, indented by two
    // spaces, frames by eight.
    let s = parse(&realworld("panicparse/Indented.txt")).unwrap();
    assert_eq!(s.total(), 1);
    let g = &s.groups[0];
    assert_eq!(g.state, "running");
    assert_eq!(g.goroutine_ids, vec![8]);
    let fns: Vec<&str> = g.stack.frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(
        fns,
        vec![
            "foo/bar.TestArchiveFail.func1.2",
            "foo/bar.TestArchiveFail",
            "testing.tRunner"
        ]
    );
    assert_eq!(g.stack.frames[0].file, "/home/maruel/go/foo/bar_test.go");
    assert_eq!(g.stack.frames[0].line, 209);
    assert_eq!(
        g.stack.created_by.as_ref().map(|f| f.function.as_str()),
        Some("testing.(*T).Run")
    );
}

// --- byte-order mark ------------------------------------------------------------------------

#[test]
fn byte_order_mark_keeps_the_first_goroutine() {
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(TWO.as_bytes());
    let s = parse(&bom).unwrap();
    assert_eq!(ids(&s), vec![1, 7]);

    // A real capture with a BOM: every goroutine still there.
    let raw = capture("go1.26/goroutine.debug2.txt");
    let want = parse(&raw).unwrap().total();
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&raw);
    assert_eq!(parse(&bom).unwrap().total(), want);

    // debug=1 too; positions stay those of the file (the BOM's 3 bytes count).
    let raw = capture("go1.26/goroutine.debug1.txt");
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&raw);
    let s = parse_snapshot(&bom[..], "t").unwrap();
    assert_eq!(s.total(), parse_snapshot(&raw[..], "t").unwrap().total());
    let mut bad = bom.clone();
    bad.extend_from_slice(b"junk\n");
    let e = parse_snapshot(&bad[..], "t").unwrap_err();
    assert_eq!(
        e.position().map(|p| p.offset),
        Some(bom.len() as u64),
        "{e}"
    );
}

// --- two dumps in one input -----------------------------------------------------------------

#[test]
fn two_sigquit_dumps_in_one_log_are_an_error_naming_the_second() {
    let one = capture("go1.26/sigquit.stderr.txt");
    let mut log = b"service starting\n".to_vec();
    log.extend_from_slice(&one);
    log.extend_from_slice(b"exit status 2\nservice restarted\n");
    let second_at = log.len();
    log.extend_from_slice(&one);
    for threads in [1, 2] {
        let opts = ParseOptions {
            threads,
            ..Default::default()
        };
        same(&log, &opts);
    }
    let e = parse_snapshot(&log[..], "t").unwrap_err();
    match &e {
        ParseError::SeveralDumps { pos: Some(p), .. } => {
            assert_eq!(p.offset, second_at as u64, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains("more than one goroutine dump"),
        "{e}"
    );
    // Inspect's summary options see it too (the line says so, whatever ids are kept).
    let e = parse_snapshot_with(&log[..], "t", &ParseOptions::one_large_dump()).unwrap_err();
    assert!(matches!(e, ParseError::SeveralDumps { .. }), "{e}");
}

#[test]
fn two_runtime_stack_outputs_back_to_back_are_an_error() {
    // No line between them says "a new dump": goroutine 1 appears twice.
    let text = format!("{TWO}\n{TWO}");
    let e = parse(text.as_bytes()).unwrap_err();
    assert!(
        matches!(&e, ParseError::SeveralDumps { why, .. } if why.contains("goroutine 1")),
        "{e}"
    );
}

#[test]
fn two_debug1_profiles_are_an_error() {
    let one = capture("go1.26/goroutine.debug1.txt");
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let e = parse_snapshot(&two[..], "t").unwrap_err();
    match &e {
        ParseError::SeveralDumps { pos: Some(p), .. } => assert_eq!(p.offset, one.len() as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn crash_thread_sections_are_not_counted_twice() {
    // GOTRACEBACK=crash + SIGQUIT: after the dump, each thread's section (`-----`, `SIGQUIT:
    // quit`, its M's goroutine again, registers). Goroutine 52 (os/signal.loop) is printed twice.
    let raw = capture("go1.26/gotraceback_crash_sigquit.stderr.txt");
    let s = parse(&raw).unwrap();
    let ids = ids(&s);
    assert!(ids.contains(&52));
    let mut dedup = ids.clone();
    dedup.dedup();
    assert_eq!(ids, dedup, "a goroutine counted twice");
    // Every header before the first `-----`, but goroutine 0 (an M's g0).
    let text = String::from_utf8_lossy(&raw);
    let main = &text[..text.find("\n-----\n").unwrap()];
    let headers = main
        .lines()
        .filter(|l| l.starts_with("goroutine ") && !l.starts_with("goroutine 0 "))
        .count() as u64;
    assert_eq!(s.total(), headers);
}

// --- cuts and final newlines ----------------------------------------------------------------

#[test]
fn missing_final_newline_is_accepted() {
    let text = TWO.trim_end_matches('\n');
    let s = parse(text.as_bytes()).unwrap();
    assert_eq!(ids(&s), vec![1, 7]);
    assert_eq!(s.partial, None);
    let d1 = "goroutine profile: total 2\n2 @ 0x1\n#\t0x1\tmain.f+0x1\t/x.go:3";
    let s = parse_snapshot(d1.as_bytes(), "t").unwrap();
    assert_eq!(s.total(), 2);
    assert_eq!(s.partial, None);
}

#[test]
fn a_cut_dump_keeps_its_complete_records_and_names_the_cut() {
    // The last goroutine's file line is cut after ` +`.
    let cut = &TWO[..TWO.len() - 5];
    let s = parse(cut.as_bytes()).unwrap();
    assert_eq!(ids(&s), vec![1]);
    let c = s.partial.expect("flagged partial");
    assert_eq!(c.line, 9);
    assert_eq!(c.offset, TWO.rfind("\t/x/main.go:9").unwrap() as u64);
    // A real capture cut in the middle: every record before the cut, flagged.
    let raw = capture("go1.26/goroutine.debug2.txt");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let at = text.len() / 2 + 7;
    let before = text[..at].matches("\ngoroutine ").count() as u64 + 1;
    let s = parse(&raw[..at]).unwrap();
    let c = s.partial.clone().expect("flagged partial");
    assert!(c.offset < at as u64 && c.line > 1, "{c}");
    // The record the cut falls in is not counted.
    assert_eq!(s.total(), before - 1);
}

#[test]
fn a_cut_inside_the_next_header_is_a_cut() {
    for tail in [
        "g",
        "gorou",
        "goroutine",
        "goroutine 12",
        "goroutine 12 [chan rec",
    ] {
        for sep in ["\n", ""] {
            // After the blank line that ends a record, and without it (inside the record).
            let text = format!("{TWO}{sep}{tail}");
            let s = parse(text.as_bytes()).unwrap();
            assert_eq!(ids(&s), vec![1, 7], "{tail:?}");
            let c = s
                .partial
                .unwrap_or_else(|| panic!("{tail:?} accepted silently"));
            assert_eq!(c.offset, (TWO.len() + sep.len()) as u64, "{tail:?}");
        }
    }
}

#[test]
fn a_cut_debug1_profile_is_partial() {
    let raw = capture("go1.26/goroutine.debug1.txt");
    let text = String::from_utf8_lossy(&raw).into_owned();
    // Cut after a whole record: the records add up to less than the header's total.
    let at = text[..text.len() / 2].rfind("\n\n").unwrap() + 2;
    let s = parse_snapshot(&raw[..at], "t").unwrap();
    let c = s.partial.clone().expect("partial");
    assert!(c.what.contains("fewer goroutines"), "{c}");
    assert!(s.total() < s.declared_total.unwrap());
}

// --- malformed lines ------------------------------------------------------------------------

#[test]
fn a_malformed_function_line_is_an_error_naming_it() {
    // gostackparse's errorhandling fixture: goroutine 2's function line is `main.main)(`.
    let raw = realworld("gostackparse/errorhandling.txt");
    let e = parse(&raw).unwrap_err();
    let text = String::from_utf8_lossy(&raw);
    let pos = e.position().expect("a position");
    assert_eq!(pos.line, 6, "{e}");
    assert_eq!(pos.offset, text.find("main.main)(").unwrap() as u64, "{e}");
    assert!(e.to_string().contains("main.main)("), "{e}");
}

#[test]
fn a_long_garbage_line_after_a_header_is_an_error() {
    let mut text = b"goroutine 1 [running]:\nmain.main()\n\t/x/main.go:10 +0x1d\n\n".to_vec();
    let at = text.len();
    text.extend_from_slice(b"goroutine 2 [running]:\n");
    text.extend(std::iter::repeat_n(b'x', 10 << 20));
    text.extend_from_slice(b"\n\n");
    let e = parse_snapshot(&text[..], "t").unwrap_err();
    let pos = e.position().expect("a position");
    assert_eq!(pos.line, 6, "{e}");
    assert_eq!(
        pos.offset,
        (at + "goroutine 2 [running]:\n".len()) as u64,
        "{e}"
    );
}

// --- creators, waits, leaked ----------------------------------------------------------------

#[test]
fn every_creator_of_a_stack_is_kept() {
    let text = "goroutine 5 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.a in goroutine 1
\t/x/main.go:30 +0x45

goroutine 6 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.b in goroutine 1
\t/x/main.go:40 +0x45

goroutine 7 [chan send]:
main.leak(...)
\t/x/main.go:20
created by main.b in goroutine 1
\t/x/main.go:40 +0x45
";
    let s = parse(text.as_bytes()).unwrap();
    assert_eq!(s.groups.len(), 1);
    let site = |f: &str, line| Frame {
        function: f.into(),
        file: "/x/main.go".into(),
        line,
    };
    assert_eq!(
        s.creators.get(&s.groups[0].stack_id),
        Some(&vec![(site("main.b", 40), 2), (site("main.a", 30), 1)])
    );
}

#[test]
fn a_wait_under_a_minute_is_zero_minutes() {
    let text = "goroutine 5 [chan send]:
main.leak(...)
\t/x/main.go:20

goroutine 6 [chan send, 3 minutes]:
main.leak(...)
\t/x/main.go:20

goroutine 7 [chan send (leaked)]:
main.leak(...)
\t/x/main.go:20
";
    let s = parse(text.as_bytes()).unwrap();
    let under: Vec<_> = s
        .groups
        .iter()
        .filter(|g| g.wait_bucket == "<1m" && !g.leaked)
        .collect();
    assert_eq!(under.len(), 1);
    assert_eq!(
        (under[0].wait_minutes_min, under[0].wait_minutes_max),
        (Some(0), Some(0))
    );
    // The runtime drops the annotation from leaked goroutines: their wait is unknown.
    let leaked: Vec<_> = s.groups.iter().filter(|g| g.leaked).collect();
    assert_eq!(leaked[0].wait_minutes_max, None);
}

#[test]
fn leaked_is_counted_per_goroutine() {
    // One stack, two goroutines, one of them `(leaked)`.
    let text = "goroutine 5 [chan send]:
main.leak(...)
\t/x/main.go:20

goroutine 6 [chan send (leaked)]:
main.leak(...)
\t/x/main.go:20
";
    let s = parse(text.as_bytes()).unwrap();
    let leaked: u64 = s.groups.iter().filter(|g| g.leaked).map(|g| g.count).sum();
    assert_eq!((s.total(), leaked), (2, 1));
    let stacks: std::collections::BTreeSet<StackId> = s.groups.iter().map(|g| g.stack_id).collect();
    assert_eq!(stacks.len(), 1);
}

// --- the same id whatever printed it --------------------------------------------------------

#[test]
fn empty_stack_record_is_empty_in_debug1_as_in_debug0() {
    // `printStackRecord` over a stack without PCs prints `#\t0x0`; profile.proto has a sample
    // without locations. Both are the empty stack.
    let d1 = "goroutineleak profile: total 1\n1 @\n#\t0x0\n\n";
    let s = parse_snapshot(d1.as_bytes(), "t").unwrap();
    assert_eq!(s.format, Some(DumpFormat::Debug1));
    assert!(s.groups[0].stack.frames.is_empty());
    assert_eq!(
        s.groups[0].stack_id,
        leakhound_schemas::model::stack_id(&[])
    );
}

#[test]
fn wrappers_and_deep_cuts_give_the_debug1_ids_in_crash_output() {
    // The real captures of leaky: SIGQUIT and GOTRACEBACK=system print `main.spawnX.gowrap1`
    // wrappers and runtime frames; the stacks of the leaked goroutines have the ids of debug=1.
    for variant in ["go1.26", "go1.27"] {
        let d1 = parse_snapshot(
            &capture(&format!("{variant}/goroutine.debug1.txt"))[..],
            "t",
        )
        .unwrap();
        let leaks = |s: &Snapshot| -> std::collections::BTreeMap<StackId, u64> {
            let mut m = std::collections::BTreeMap::new();
            for g in &s.groups {
                if g.stack
                    .frames
                    .iter()
                    .any(|f| f.function.starts_with("main.leak"))
                {
                    *m.entry(g.stack_id).or_default() += g.count;
                }
            }
            m
        };
        let want = leaks(&d1);
        assert!(want.len() >= 8, "{variant}: {want:?}");
        for f in ["sigquit.stderr.txt", "gotraceback_system.stderr.txt"] {
            let s = parse(&capture(&format!("{variant}/{f}"))).unwrap();
            assert_eq!(leaks(&s), want, "{variant}/{f}");
        }
    }
}

#[test]
fn a_deep_stack_has_one_id_whatever_cut_it() {
    // The gs program's `recurse(120)`: cut by the traceback, 128 PCs in debug=0/1.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/parse/testdata/gs-go1.26");
    let deep = |name: &str| -> Vec<StackId> {
        let s = parse_snapshot(&read(&dir.join(name))[..], "t").unwrap();
        let mut v: Vec<StackId> = s
            .groups
            .iter()
            .filter(|g| {
                g.stack
                    .frames
                    .iter()
                    .filter(|f| f.function == "main.recurse")
                    .count()
                    > 40
            })
            .map(|g| g.stack_id)
            .collect();
        v.dedup();
        v
    };
    let want = deep("goroutine.debug1.txt");
    assert_eq!(want.len(), 1);
    for f in [
        "goroutine.debug0.pb.gz",
        "goroutine.debug2.txt",
        "crash_sigquit.stderr.txt",
    ] {
        assert_eq!(deep(f), want, "{f}");
    }
}

// --- dumps that went through a logger -------------------------------------------------------

/// The frames of each group, innermost first, as `function file:line`.
fn frames_of(s: &Snapshot) -> Vec<(u64, Vec<String>)> {
    let mut out: Vec<(u64, Vec<String>)> = s
        .groups
        .iter()
        .map(|g| {
            (
                g.count,
                g.stack
                    .frames
                    .iter()
                    .map(|f| format!("{} {}:{}", f.function, f.file, f.line))
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_syslog_prefixed_dump_reads_as_the_plain_one() {
    // The corpus file (syslog prefix on every line, tabs escaped as `#011`, no blank line
    // between records) against the same dump written plainly.
    let logged = realworld("issue-shapes/syslog-prefixed.txt");
    let plain: String = String::from_utf8(logged.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let rest = &l["Oct 21 17:57:00 edge-1 agent[14238]: ".len()..];
            format!("{}\n", rest.replace("#011", "\t"))
        })
        .collect();
    let a = parse(&logged).unwrap();
    let b = parse(plain.as_bytes()).unwrap();
    assert_eq!(a.total(), 2);
    assert_eq!(frames_of(&a), frames_of(&b));
    assert_eq!(a.creators, b.creators);
    assert!(frames_of(&a).iter().any(|(_, f)| {
        f.iter()
            .any(|l| l == "main.watchLeases /root/src/agent/agent.go:889")
    }));
}

#[test]
fn kubectl_timestamps_of_any_width_are_not_part_of_the_dump() {
    let text = "2026-12-03T10:00:00.123456789Z goroutine 7 [chan send, 3 minutes]:
2026-12-03T10:00:00.1234567Z main.leak(...)
2026-12-03T10:00:00.12Z \t/x/main.go:20
2026-12-03T10:00:00Z created by main.main in goroutine 1
2026-12-03T10:00:00.5Z \t/x/main.go:30 +0x45
2026-12-03T10:00:00.5Z
2026-12-03T10:00:01.000000001Z goroutine 8 [chan send, 3 minutes]:
2026-12-03T10:00:01.000000001Z main.leak(...)
2026-12-03T10:00:01.000000001Z \t/x/main.go:20
2026-12-03T10:00:01.000000001Z created by main.main in goroutine 1
2026-12-03T10:00:01.000000001Z \t/x/main.go:30 +0x45
";
    let s = parse(text.as_bytes()).unwrap();
    assert_eq!(s.total(), 2);
    assert_eq!(s.groups.len(), 1, "one stack: {:?}", frames_of(&s));
    assert_eq!(
        frames_of(&s),
        vec![(2, vec!["main.leak /x/main.go:20".to_string()])]
    );
    assert_eq!(s.groups[0].wait_minutes_min, Some(3));
}

#[test]
fn another_process_line_inside_a_logged_record_is_noise_not_a_frame() {
    let text = "Oct  1 09:00:00 web-1 api[7]: goroutine 7 [select]:
Oct  1 09:00:00 web-1 api[7]: main.loop(...)
Oct  1 09:00:00 web-1 cron[99]: starting job
Oct  1 09:00:00 web-1 api[7]: #011/x/main.go:20
Oct  1 09:00:00 web-1 api[7]:
";
    let s = parse(text.as_bytes()).unwrap();
    assert_eq!(
        frames_of(&s),
        vec![(1, vec!["main.loop /x/main.go:20".to_string()])]
    );
    // A prefix-shaped line that is not a logger's (no `host prog[pid]: `) is not stripped.
    let odd = "Oct  1 09:00:00 goroutine 7 [select]:\nmain.loop(...)\n\t/x/main.go:20\n";
    assert!(parse(odd.as_bytes()).is_err());
}
