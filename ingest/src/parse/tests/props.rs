//! Property tests: no input panics any parser, and debug=2 records survive render → parse.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use leakhound_schemas::model::{Frame, GoroutineRecord, Stack};
use proptest::prelude::*;

use crate::parse::{Debug1Parser, Debug2Parser, ParseOptions, ProtoParser, parse_snapshot_with};

fn small_opts() -> ParseOptions {
    ParseOptions {
        max_decompressed_bytes: 1 << 20,
        max_line_bytes: 512,
        max_record_bytes: 4096,
        max_frames: 64,
        max_goroutines: 1_000_000_000,
        threads: 1,
        max_ids_per_group: usize::MAX,
    }
}

/// Run every parser over `data` to the end; only panics matter.
fn exercise(data: &[u8]) {
    for opts in [ParseOptions::default(), small_opts()] {
        for r in Debug2Parser::new(data, &opts) {
            let _ = r;
        }
        if let Ok(p) = Debug1Parser::new(data, &opts) {
            for r in p {
                let _ = r;
            }
        }
        if let Ok(p) = ProtoParser::from_bytes(data, &opts) {
            for r in p {
                let _ = r;
            }
        }
        let _ = parse_snapshot_with(data, "prop", &opts);
    }
}

/// Lines of every format, for inputs that reach deep into the state machines.
pub(super) fn dump_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "goroutine [0-9]{1,25} \\[[a-z ()]{0,20}(, [0-9]{1,12} minutes)?(, locked to thread)?\\]:",
        "goroutine [0-9]{1,3} \\[[a-z]{1,6}( labels:\\{\"[a-z\\\\\"]{0,4}\": \"[a-z\\\\x0-9]{0,6}\"\\})?\\]:",
        "goroutine [0-9]{1,3} \\[[a-z]{1,6}\\]( \\{[a-z]{0,3}: [a-z\"]{0,3}(, [a-z]: \"[^\"]{0,3}\")?\\})?:",
        "goroutine [0-9]{1,3} gp=0x[0-9a-f]{1,8} m=(nil|[0-9]) \\[[a-z]{1,6}\\]:",
        "[a-z]{1,5}\\.[A-Za-z(*)\\[\\].]{0,12}\\((\\.\\.\\.|0x[0-9a-f]{1,4}\\??|\\{\\})?\\)",
        "\t/[a-z/: ]{0,12}\\.go:[0-9]{0,12}( \\+0x[0-9a-f]{1,3})?( fp=0x1 sp=0x2 pc=0x3)?",
        "created by [a-z.]{1,10}( in goroutine [0-9]{1,22})?",
        "\\.\\.\\.([0-9]{1,3} frames|additional frames) elided\\.\\.\\.",
        "\\[originating from goroutine [0-9]{1,3}\\]:",
        "(goroutine|goroutineleak) profile: total [0-9]{1,22}",
        "[0-9]{1,22} @( 0x[0-9a-f]{1,6}){0,3}",
        "# labels: \\{(\"[a-z\\\\]{0,3}\":\"[a-z\\\\x0-9]{0,5}\"(, )?){0,3}\\}",
        "#\t0x[0-9a-f]{1,6}(\t+[a-z.]{1,8}\\+0x[0-9a-f]{1,3}\t+/[a-z]{1,5}\\.go:[0-9]{1,12})?",
        "(panic|fatal error|SIGQUIT): [a-z ]{0,10}",
        "r[a-z0-9]{1,3} +0x[0-9a-f]{1,8}",
        "[ -~]{0,40}",
    ]
}

/// `lines` as a dump's text: joined by CRLF or LF, ending in a line break unless empty.
pub(super) fn soup_text(lines: &[String], crlf: bool) -> String {
    let mut text = lines.join(if crlf { "\r\n" } else { "\n" });
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

fn go_quote(s: &str) -> String {
    // The runtime's `printquoted`.
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if (c as u32) < 127 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x1_0000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go 1.27: bare when only `[A-Za-z0-9./_]`.
fn go127_item(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_'))
    {
        s.to_owned()
    } else {
        go_quote(s)
    }
}

#[derive(Debug, Clone)]
struct Gen {
    rec: GoroutineRecord,
    inlined: Vec<bool>,
    fp_suffix: bool,
    gp_header: bool,
    go127_labels: bool,
    elided_at: Option<usize>,
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        "[a-z]{1,6}(/[a-z]{1,6})?\\.(\\(\\*[A-Z][a-z]{0,4}\\)\\.)?[A-Za-z][a-z0-9]{0,6}(\\[\\.\\.\\.\\])?(\\.func[1-9](\\.[1-9])?)?",
        "/[a-zA-Z0-9_ -]{1,8}(/[a-z_]{1,8}){0,2}\\.go",
        1u32..200_000,
    )
        .prop_map(|(function, file, line)| Frame {
            function,
            file,
            line,
        })
}

fn record() -> impl Strategy<Value = Gen> {
    let state = prop::sample::select(vec![
        "running",
        "runnable",
        "chan send",
        "chan receive",
        "select",
        "IO wait",
        "sleep",
        "syscall",
        "sync.Mutex.Lock",
        "sync.WaitGroup.Wait",
        "chan receive (nil chan)",
        "select (no cases)",
        "GC worker (idle)",
        "trace reader (blocked)",
    ]);
    (
        (
            1u64..u64::MAX,
            state,
            prop::option::of(1u32..100_000),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(0u64..1000),
        ),
        prop::collection::btree_map(
            "[ -~\\n\\t\u{e9}\u{1F600}]{0,6}",
            "[ -~\\n\u{3a3}]{0,8}",
            0..4,
        ),
        prop::collection::vec((frame(), any::<bool>()), 0..12),
        prop::option::of((frame(), prop::option::of(1u64..1_000_000))),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<Option<prop::sample::Index>>(),
        ),
    )
        .prop_map(
            |(
                (id, state, wait, locked, leaked, durable, bubble),
                labels,
                frames,
                created,
                (fp_suffix, gp_header, go127_labels, elided),
            )| {
                let elided_at = elided
                    .filter(|_| !frames.is_empty())
                    .map(|i| i.index(frames.len()));
                let (frames, inlined): (Vec<Frame>, Vec<bool>) = frames.into_iter().unzip();
                let (created_by, creator_goroutine) = match created {
                    Some((f, g)) => (Some(f), g),
                    None => (None, None),
                };
                Gen {
                    rec: GoroutineRecord {
                        stack: Stack {
                            frames,
                            created_by,
                            elided: elided_at.is_some(),
                        },
                        state: state.to_owned(),
                        wait_minutes: wait,
                        labels,
                        count: 1,
                        goroutine_ids: vec![id],
                        creator_goroutine,
                        locked_to_thread: locked,
                        leaked,
                        durable,
                        synctest_bubble: bubble,
                    },
                    inlined,
                    fp_suffix,
                    gp_header,
                    go127_labels,
                    elided_at,
                }
            },
        )
}

/// Print a record the way `runtime/traceback.go` does.
fn render(g: &Gen, out: &mut String) {
    let r = &g.rec;
    let _ = write!(out, "goroutine {}", r.goroutine_ids[0]);
    if g.gp_header {
        out.push_str(" gp=0xc000002380 m=nil");
    }
    let _ = write!(out, " [{}", r.state);
    if r.leaked {
        out.push_str(" (leaked)");
    }
    if r.durable {
        out.push_str(" (durable)");
    }
    if let Some(w) = r.wait_minutes {
        let _ = write!(out, ", {w} minutes");
    }
    if r.locked_to_thread {
        out.push_str(", locked to thread");
    }
    if let Some(b) = r.synctest_bubble {
        let _ = write!(out, ", synctest bubble {b}");
    }
    let pairs = |f: &dyn Fn(&str) -> String| {
        r.labels
            .iter()
            .map(|(k, v)| format!("{}: {}", f(k), f(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if r.labels.is_empty() {
        out.push_str("]:\n");
    } else if g.go127_labels {
        let _ = writeln!(out, "] {{{}}}:", pairs(&go127_item));
    } else {
        let _ = writeln!(out, " labels:{{{}}}]:", pairs(&go_quote));
    }
    for (i, f) in r.stack.frames.iter().enumerate() {
        let args = if g.inlined[i] {
            "..."
        } else {
            "0xc000010000, {0x1, 0x2}, 0x3?"
        };
        let _ = writeln!(out, "{}({args})", f.function);
        let _ = write!(out, "\t{}:{}", f.file, f.line);
        if !g.inlined[i] {
            out.push_str(" +0x1d");
            if g.fp_suffix {
                out.push_str(" fp=0xc000050fd0 sp=0xc000050fb0 pc=0x4a1b2c");
            }
        }
        out.push('\n');
        if g.elided_at == Some(i) {
            out.push_str("...7 frames elided...\n");
        }
    }
    if let Some(c) = &r.stack.created_by {
        let _ = write!(out, "created by {}", c.function);
        if let Some(n) = r.creator_goroutine {
            let _ = write!(out, " in goroutine {n}");
        }
        let _ = writeln!(out, "\n\t{}:{} +0x45", c.file, c.line);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&data);
    }

    #[test]
    fn dump_shaped_lines_never_panic(lines in prop::collection::vec(dump_line(), 0..40), crlf in any::<bool>(), cut in any::<prop::sample::Index>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let text = lines.join(sep);
        exercise(text.as_bytes());
        // And every prefix-cut of it.
        let n = cut.index(text.len() + 1);
        exercise(&text.as_bytes()[..n]);
    }

    #[test]
    fn debug2_round_trips(recs in prop::collection::vec(record(), 1..6), preamble in any::<bool>()) {
        let mut text = String::new();
        if preamble {
            text.push_str("panic: boom\n[signal SIGSEGV: segmentation violation]\n\n");
        }
        for (i, g) in recs.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            render(g, &mut text);
        }
        let parsed: Vec<GoroutineRecord> = Debug2Parser::new(text.as_bytes(), &ParseOptions::default())
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        // A header without `, N minutes` waited under a minute: 0 (unknown when leaked).
        let want: Vec<GoroutineRecord> = recs
            .iter()
            .map(|g| {
                let mut r = g.rec.clone();
                if r.wait_minutes.is_none() && !r.leaked {
                    r.wait_minutes = Some(0);
                }
                r
            })
            .collect();
        prop_assert_eq!(parsed.len(), want.len(), "{}", text);
        for (p, w) in parsed.iter().zip(&want) {
            prop_assert_eq!(p, w, "{}", text);
        }
    }
}

#[test]
fn labels_round_trip_through_both_header_forms() {
    let mut labels = BTreeMap::new();
    labels.insert("a b".to_owned(), "x\n\"y\"\u{1}\u{e9}\u{1F600}".to_owned());
    labels.insert("k".to_owned(), String::new());
    for go127 in [false, true] {
        let g = Gen {
            rec: GoroutineRecord {
                state: "select".into(),
                labels: labels.clone(),
                count: 1,
                goroutine_ids: vec![3],
                ..Default::default()
            },
            inlined: vec![],
            fp_suffix: false,
            gp_header: false,
            go127_labels: go127,
            elided_at: None,
        };
        let mut text = String::new();
        render(&g, &mut text);
        let r = Debug2Parser::new(text.as_bytes(), &ParseOptions::default())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(r.labels, labels, "{text}");
    }
}
