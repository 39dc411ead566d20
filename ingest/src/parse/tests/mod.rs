//! Tests of the parsers: inline real excerpts per format, the real captures under
//! `tests/data/captures/` and `src/parse/testdata/` (equivalence across formats, insta
//! snapshots), property tests.

mod aggregate;
mod captures;
mod debug1;
mod debug2;
mod lane;
mod parallel;
mod props;
mod proto;
mod realworld;
mod snapshot;

use leakhound_schemas::model::GoroutineRecord;

use super::{Debug1Parser, Debug2Parser, ParseError, ParseOptions};

/// All records of a debug=2 text, or the first error.
pub(super) fn d2(text: &str) -> Result<Vec<GoroutineRecord>, ParseError> {
    Debug2Parser::new(text.as_bytes(), &ParseOptions::default()).collect()
}

/// The records before the first error, and the error.
pub(super) fn d2_partial(text: &[u8]) -> (Vec<GoroutineRecord>, Option<ParseError>) {
    let mut ok = Vec::new();
    for r in Debug2Parser::new(text, &ParseOptions::default()) {
        match r {
            Ok(r) => ok.push(r),
            Err(e) => return (ok, Some(e)),
        }
    }
    (ok, None)
}

/// `data` with every `\n` line end turned into `\r\n`.
pub(super) fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &c in data {
        if c == b'\n' {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

pub(super) fn d1(text: &str) -> Result<Vec<GoroutineRecord>, ParseError> {
    Debug1Parser::new(text.as_bytes(), &ParseOptions::default())?.collect()
}

pub(super) fn fns(r: &GoroutineRecord) -> Vec<&str> {
    r.stack.frames.iter().map(|f| f.function.as_str()).collect()
}
