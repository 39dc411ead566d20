//! The aggregating fast path (`parse_snapshot_with` on debug=2) gives exactly the snapshot of
//! the full path (`parse_snapshot_via_records`: every record built, then `SnapshotBuilder`):
//! same groups in the same order, stacks, states, wait ranges, labels, goroutine ids; same
//! error at the same position. Checked on every capture, every bad-input fixture, cuts and
//! variants of them, on one and several threads, and on random line soup.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::parse::parallel::PIECE;
use crate::parse::{ParseOptions, parse_snapshot_via_records, parse_snapshot_with};

use super::props::{dump_line, soup_text};

fn small_opts(threads: usize) -> ParseOptions {
    ParseOptions {
        max_decompressed_bytes: 1 << 20,
        max_line_bytes: 256,
        max_record_bytes: 2048,
        max_frames: 32,
        max_goroutines: 1_000_000,
        threads,
        max_ids_per_group: 3,
    }
}

fn all_opts() -> Vec<ParseOptions> {
    let mut v = Vec::new();
    for threads in [1, 2, 3] {
        v.push(ParseOptions {
            threads,
            ..Default::default()
        });
        v.push(small_opts(threads));
    }
    v
}

/// Both paths over `input` with `opts`: equal results. Returns whether they succeeded.
pub(crate) fn same(input: &[u8], opts: &ParseOptions) -> bool {
    let fast = parse_snapshot_with(input, "fast", opts);
    let full = parse_snapshot_via_records(input, "full", opts);
    match (fast, full) {
        (Ok(a), Ok(b)) => {
            assert_eq!(format!("{a:#?}"), format!("{b:#?}"), "opts {opts:?}");
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "opts {opts:?}");
            false
        }
        (a, b) => panic!(
            "fast {:?} but full {:?} (opts {opts:?})",
            a.map(|s| s.total()),
            b.map(|s| s.total())
        ),
    }
}

fn files() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![manifest.join("../tests/data/bad")];
    for root in [
        manifest.join("../tests/data/captures"),
        manifest.join("src/parse/testdata"),
    ] {
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('_') {
                dirs.push(e.path());
            }
        }
    }
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_file() && !p.extension().is_some_and(|x| x == "json" || x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_capture_and_fixture() {
    let files = files();
    assert!(files.len() > 40, "captures missing: {}", files.len());
    let mut ok = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        for opts in all_opts() {
            if same(&data, &opts) && opts.threads == 1 && opts.max_frames > 32 {
                ok += 1;
            }
        }
    }
    // Most of them are dumps that parse (debug=2 or not, both paths agree either way).
    assert!(ok > 30, "only {ok} files parsed");
}

#[test]
fn cut_anywhere_and_crlf() {
    for f in files() {
        let data = std::fs::read(&f).unwrap();
        if !data.starts_with(b"goroutine ") && !data.windows(11).any(|w| w == b"\ngoroutine ") {
            continue;
        }
        // Cuts at many places (mid-line, at line ends, in headers).
        let step = (data.len() / 40).max(1);
        for cut in (0..data.len())
            .step_by(step)
            .chain([data.len().saturating_sub(1)])
        {
            same(&data[..cut], &ParseOptions::default());
        }
        let crlf = super::crlf(&data);
        same(&crlf, &ParseOptions::default());
        same(&crlf, &small_opts(1));
    }
}

/// Every capture concatenated and repeated past many pieces: the parallel path merges many
/// partials; then the same with a bad record far in, and cut.
#[test]
fn many_pieces() {
    let mut unit = Vec::new();
    for f in files() {
        let data = std::fs::read(&f).unwrap();
        if data.starts_with(b"\x1f\x8b") || !data.windows(10).any(|w| w == b"goroutine ") {
            continue;
        }
        unit.extend_from_slice(&data);
        unit.extend_from_slice(b"\n\n");
    }
    // An empty unit would never reach the size below.
    assert!(
        unit.len() > 10_000,
        "captures missing: {} bytes",
        unit.len()
    );
    let mut input = Vec::new();
    while input.len() < 20 * PIECE {
        input.extend_from_slice(&unit);
    }
    for (threads, max_ids_per_group) in [(1, usize::MAX), (2, usize::MAX), (4, usize::MAX), (2, 7)]
    {
        let opts = ParseOptions {
            threads,
            max_ids_per_group,
            ..Default::default()
        };
        same(&input, &opts);
        same(&input[..input.len() - 5], &opts);
        let mut bad = input.clone();
        let at = bad.len() * 3 / 4;
        let nl = at + bad[at..].iter().position(|&c| c == b'\n').unwrap_or(0);
        bad.splice(
            nl..nl,
            b"\n\ngoroutine 7 [running]:\nmain.f()\n\t/x.go:99999999999\n"
                .iter()
                .copied(),
        );
        assert!(!same(&bad, &opts));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn line_soup(lines in proptest::collection::vec(dump_line(), 0..60), crlf in any::<bool>()) {
        let text = soup_text(&lines, crlf);
        for opts in [ParseOptions::default(), small_opts(1)] {
            same(text.as_bytes(), &opts);
        }
    }

    /// Records that repeat (cache hits) with small variations (states, labels, waits, created
    /// by, elided) between them.
    #[test]
    fn repeated_records(picks in proptest::collection::vec(0usize..8, 1..80)) {
        const RECS: [&str; 8] = [
            "goroutine 1 [chan send]:\nmain.f()\n\t/a.go:1\ncreated by main.main in goroutine 1\n\t/a.go:9 +0x1\n",
            "goroutine 2 [chan send, 3 minutes]:\nmain.f()\n\t/a.go:1\n",
            "goroutine 3 [chan send]:\nmain.f()\n\t/a.go:1\ncreated by main.other\n\t/b.go:2\n",
            "goroutine 4 [chan send (leaked)]:\nmain.f()\n\t/a.go:1\n...1 frames elided...\n",
            "goroutine 5 [chan send] {k: v}:\nmain.f()\n\t/a.go:1\n",
            "goroutine 6 [chan send labels:{\"k\": \"v\"}]:\nmain.f()\n\t/a.go:1\n",
            "goroutine 0 gp=0x1 m=0 [idle]:\nruntime.mstart()\n\t/r.go:1\n",
            "goroutine 8 [select, 200 minutes]:\nruntime.gopark()\n\t/r.go:1\nmain.f()\n\t/a.go:1\nruntime.goexit()\n\t/r.go:2\n",
        ];
        let mut text = String::new();
        for p in picks {
            text.push_str(RECS[p]);
            text.push('\n');
        }
        same(text.as_bytes(), &ParseOptions::default());
        same(text.as_bytes(), &small_opts(1));
    }
}
