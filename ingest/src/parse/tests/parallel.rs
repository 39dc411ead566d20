//! The parallel debug=2 parser gives exactly what the sequential one gives: same records, same
//! order, same error at the same position.

use std::path::Path;

use crate::parse::parallel::{MAX_CARRY, PIECE};
use crate::parse::{Debug2Parser, ParallelDebug2, ParseOptions};

fn both(input: &[u8]) {
    let seq: Vec<_> = Debug2Parser::new(input, &ParseOptions::default())
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    for threads in [2, 3] {
        let opts = ParseOptions {
            threads,
            ..Default::default()
        };
        let reader: Box<dyn std::io::Read> = Box::new(input);
        let par: Vec<_> = match ParallelDebug2::new(reader, &opts) {
            Ok(p) => p.map(|r| r.map_err(|e| e.to_string())).collect(),
            Err(e) => vec![Err(e.to_string())],
        };
        assert_eq!(par.len(), seq.len(), "threads={threads}");
        for (i, (p, s)) in par.iter().zip(&seq).enumerate() {
            assert_eq!(p, s, "item {i}, threads={threads}");
        }
    }
}

fn capture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read(p).unwrap_or_default()
}

fn big_input() -> Vec<u8> {
    let mut unit = Vec::new();
    for f in [
        "src/parse/testdata/gs-go1.26/crash_sigquit.stderr.txt",
        "src/parse/testdata/gs-go1.26/goroutine.debug2.txt",
        "src/parse/testdata/gs-go1.26/panic_all.stderr.txt",
        "../tests/data/captures/go1.27/goroutine.debug2.txt",
    ] {
        unit.extend(capture(f));
        unit.extend_from_slice(b"\n");
    }
    let mut out = Vec::new();
    while out.len() < 12 * PIECE {
        out.extend_from_slice(&unit);
    }
    out
}

#[test]
fn same_records_as_sequential() {
    let input = big_input();
    both(&input);
    // CRLF line ends.
    let crlf = super::crlf(&input);
    both(&crlf);
}

#[test]
fn same_errors_at_the_same_place() {
    let input = big_input();
    // Truncated in the middle of a frame.
    let cut = input.len() - 7;
    both(&input[..cut]);
    // A bad record far in: an absurd line number.
    let mut bad = input.clone();
    let at = bad.len() * 2 / 3;
    let nl = at + bad[at..].iter().position(|&c| c == b'\n').unwrap_or(0);
    bad.splice(
        nl..nl,
        b"\ngoroutine 1 [running]:\nmain.f()\n\t/x.go:99999999999\n"
            .iter()
            .copied(),
    );
    both(&bad);
}

#[test]
fn long_stretch_without_blank_lines_goes_sequential() {
    let mut input = big_input();
    // More than MAX_CARRY bytes of noise without a blank line, then more dumps.
    let noise: Vec<u8> = b"noise line without a blank line after it\n"
        .iter()
        .copied()
        .cycle()
        .take(MAX_CARRY + PIECE)
        .collect();
    let tail = input.clone();
    input.extend(noise);
    input.extend(tail);
    both(&input);
}
