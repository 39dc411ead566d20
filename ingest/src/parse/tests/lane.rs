//! The debug=2 record fast lane (`Machine::fast_record`) against the line-by-line state
//! machine: the same records and the same error at the same position, on every capture and
//! fixture, cut anywhere, with CRLF, with small limits, read in small chunks, and on random
//! line soup. (The aggregating sink gets the same calls as the record sink, so this covers both.)

use std::io::Read;

use proptest::prelude::*;

use crate::parse::{Debug2Parser, ParseOptions};

use super::props::{dump_line, soup_text};

fn small_opts() -> ParseOptions {
    ParseOptions {
        max_line_bytes: 64,
        max_record_bytes: 700,
        max_frames: 5,
        ..Default::default()
    }
}

/// Reads at most `n` bytes per call: records straddle the reader's buffer.
struct Chunks<'a>(&'a [u8], usize);

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn same(input: &[u8], opts: &ParseOptions) {
    for chunk in [usize::MAX, 300] {
        let lane: Vec<String> = Debug2Parser::new(Chunks(input, chunk), opts)
            .map(|r| format!("{r:?}"))
            .collect();
        let lines: Vec<String> = Debug2Parser::new(Chunks(input, chunk), opts)
            .line_by_line()
            .map(|r| format!("{r:?}"))
            .collect();
        assert_eq!(lane, lines, "opts {opts:?}, chunk {chunk}");
    }
}

fn inputs() -> Vec<Vec<u8>> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![manifest.join("../tests/data/bad")];
    for root in [
        manifest.join("../tests/data/captures"),
        manifest.join("src/parse/testdata"),
    ] {
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_file()
                && let Ok(data) = std::fs::read(&p)
                && data.windows(10).any(|w| w == b"goroutine ")
            {
                out.push(data);
            }
        }
    }
    out
}

#[test]
fn every_capture_cut_anywhere_and_crlf() {
    let inputs = inputs();
    assert!(inputs.len() > 20, "captures missing: {}", inputs.len());
    for data in inputs {
        for opts in [ParseOptions::default(), small_opts()] {
            same(&data, &opts);
        }
        let step = (data.len() / 30).max(1);
        for cut in (0..data.len()).step_by(step) {
            same(&data[..cut], &ParseOptions::default());
        }
        let crlf = super::crlf(&data);
        same(&crlf, &ParseOptions::default());
        same(&crlf, &small_opts());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn line_soup(lines in proptest::collection::vec(dump_line(), 0..60), crlf in any::<bool>()) {
        let text = soup_text(&lines, crlf);
        same(text.as_bytes(), &ParseOptions::default());
        same(text.as_bytes(), &small_opts());
    }

    /// Whole records (what the lane takes) with odd lines in them.
    #[test]
    fn records_with_odd_lines(
        records in proptest::collection::vec(
            (
                "goroutine [0-9]{1,3} \\[[a-z ]{1,8}(, [0-9]{1,3} minutes)?\\]:",
                proptest::collection::vec(dump_line(), 0..8),
            ),
            1..8,
        ),
    ) {
        let mut text = String::new();
        for (header, lines) in records {
            text.push_str(&header);
            text.push('\n');
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
            text.push('\n');
        }
        same(text.as_bytes(), &ParseOptions::default());
        same(text.as_bytes(), &small_opts());
    }
}
