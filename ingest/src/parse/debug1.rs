//! `runtime/pprof`'s legacy text profile: `/debug/pprof/goroutine?debug=1` and
//! `/debug/pprof/goroutineleak?debug=1`.
//!
//! ```text
//! goroutine profile: total 11                 <- or `goroutineleak profile: total N`
//! 3 @ 0x48482e 0x41715c 0x51aec5 0x48b341     <- N goroutines share this stack (PCs ignored)
//! # labels: {"handler":"/api/orders"}         <- optional, `%q`-quoted, sorted
//! #→0x51aec4→main.f+0x24→→/src/main.go:22  <- PC, function+offset, file:line (→ = tab)
//! #→0x4a1b2c                              <- a PC without symbol
//!                                             <- blank line ends the record
//! ```
//!
//! The profile goes through a `text/tabwriter` with tab padding, so fields are separated by
//! *runs* of tabs. Records group goroutines by stack and labels only: there is no wait state,
//! no goroutine id and no creation site in this format.
//!
//! Decisions:
//! - The format is machine-written, so any line that does not fit is an error (with its
//!   position) rather than noise to skip.
//! - The header's total is checked against the sum of the records at the end: a dump cut at a
//!   line boundary is caught that way and reported as truncated (after the records read).
//! - A missing final newline after a complete frame line is accepted; a last line that may be
//!   cut (a record header, a PC alone) is a cut.
//! - A second `... profile: total N` header is a second dump: [`ParseError::SeveralDumps`].
//! - `#\t0x0` alone is how `printStackRecord` prints an *empty* stack (no PC at all): no frame,
//!   as profile.proto has none for it.

use std::io::Read;

use leakhound_schemas::model::{Frame, GoroutineRecord, ProfileKind};

use super::ParseOptions;
use super::error::{ParseError, Position, Result, excerpt};
use super::lines::{Line, LineReader};
use super::normalise::canonical_frames;
use super::quote::parse_label_set;

const FORMAT: &str = "debug=1";

/// The [`ParseError::Truncated`] text of records that add up to *more* than the header's total
/// (not a cut).
pub(crate) const MORE_THAN_TOTAL: &str =
    "the records add up to more goroutines than the header's total";

/// Streaming parser of a debug=1 goroutine (or goroutineleak) profile. Each record stands for
/// `count` goroutines.
pub struct Debug1Parser<R> {
    lines: LineReader<R>,
    kind: ProfileKind,
    declared_total: u64,
    sum: u64,
    max_goroutines: u64,
    max_frames: usize,
    max_line: usize,
    cur: Option<(GoroutineRecord, Position)>,
    done: bool,
}

impl<R: Read> Debug1Parser<R> {
    /// Read the `... profile: total N` header line and return a parser positioned on the first
    /// record.
    pub fn new(reader: R, opts: &ParseOptions) -> Result<Self> {
        Self::with_base(reader, opts, Position::default())
    }

    /// [`Debug1Parser::new`] over input whose first byte is at `base` (after a byte-order
    /// mark): positions are those of the whole.
    pub(crate) fn with_base(reader: R, opts: &ParseOptions, base: Position) -> Result<Self> {
        let mut lines = LineReader::with_base(reader, opts.max_line_bytes, base.offset, base.line);
        let (kind, declared_total) = loop {
            let Some(line) = lines.next_line()? else {
                return Err(ParseError::Empty);
            };
            if line.bytes.iter().all(u8::is_ascii_whitespace) && !line.overlong {
                continue;
            }
            break parse_profile_header(&line, opts.max_goroutines)?;
        };
        Ok(Debug1Parser {
            lines,
            kind,
            declared_total,
            sum: 0,
            max_goroutines: opts.max_goroutines,
            max_frames: opts.max_frames,
            max_line: opts.max_line_bytes,
            cur: None,
            done: false,
        })
    }

    /// `goroutine` or `goroutineleak`, from the header.
    pub fn kind(&self) -> ProfileKind {
        self.kind
    }

    /// The `total N` of the header.
    pub fn declared_total(&self) -> u64 {
        self.declared_total
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.lines.offset()
    }

    fn step(&mut self) -> Result<Option<GoroutineRecord>> {
        loop {
            let Some(line) = self.lines.next_line()? else {
                let here = self.lines.here();
                if let Some((rec, _)) = self.cur.take() {
                    return Ok(Some(finish(rec)));
                }
                if self.sum != self.declared_total {
                    return Err(ParseError::Truncated {
                        pos: here,
                        what: if self.sum < self.declared_total {
                            "the records add up to fewer goroutines than the header's total"
                        } else {
                            MORE_THAN_TOTAL
                        },
                    });
                }
                return Ok(None);
            };
            if line.overlong {
                return Err(ParseError::LineTooLong {
                    pos: line.pos,
                    limit: self.max_line,
                });
            }
            // A complete frame line is whole without its newline; anything else may be cut.
            let whole = line.terminated
                || line.bytes.is_empty()
                || (self.cur.is_some() && complete_frame_line(line.bytes));
            if !whole {
                return Err(ParseError::Truncated {
                    pos: line.pos,
                    what: "last line is cut (no newline)",
                });
            }
            let b = line.bytes;
            if b.is_empty() {
                if let Some((rec, _)) = self.cur.take() {
                    return Ok(Some(finish(rec)));
                }
                continue;
            }
            if b[0] == b'#' {
                let Some((rec, start)) = self.cur.as_mut() else {
                    return Err(malformed(&line, "`#` line outside a record"));
                };
                if let Some(set) = b.strip_prefix(b"# labels: ") {
                    match parse_label_set(set) {
                        Ok((labels, n)) if n == set.len() => rec.labels = labels,
                        Ok(_) => return Err(malformed(&line, "text after the label set")),
                        Err(what) => return Err(malformed(&line, what)),
                    }
                    continue;
                }
                if rec.stack.frames.len() >= self.max_frames {
                    return Err(ParseError::RecordTooLarge {
                        pos: *start,
                        limit: self.max_frames,
                        what: "frames",
                    });
                }
                if let Some(frame) = parse_frame(&line)? {
                    rec.stack.frames.push(frame);
                }
                continue;
            }
            if b.starts_with(b"goroutine profile: total ")
                || b.starts_with(b"goroutineleak profile: total ")
            {
                return Err(ParseError::SeveralDumps {
                    pos: Some(line.pos),
                    why: "a second `profile: total` header".into(),
                });
            }
            // `N @ 0x.. 0x..`: a new record.
            if self.cur.is_some() {
                return Err(malformed(
                    &line,
                    "record without the blank line that ends the previous one",
                ));
            }
            let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || !b[digits..].starts_with(b" @") {
                return Err(malformed(&line, "expected `N @ 0x...` to start a record"));
            }
            let count = parse_count(
                &b[..digits],
                line.pos,
                "goroutine count",
                self.max_goroutines,
            )?;
            self.sum = self
                .sum
                .checked_add(count)
                .ok_or(ParseError::CountOverflow { pos: line.pos })?;
            let rec = GoroutineRecord {
                count,
                leaked: self.kind == ProfileKind::GoroutineLeak,
                ..Default::default()
            };
            self.cur = Some((rec, line.pos));
        }
    }
}

impl<R: Read> Iterator for Debug1Parser<R> {
    type Item = Result<GoroutineRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn finish(mut rec: GoroutineRecord) -> GoroutineRecord {
    rec.stack.frames = canonical_frames(std::mem::take(&mut rec.stack.frames));
    rec
}

fn malformed(line: &Line<'_>, what: &'static str) -> ParseError {
    ParseError::malformed(FORMAT, line.pos, what, line.bytes)
}

fn parse_count(b: &[u8], pos: Position, what: &'static str, limit: u64) -> Result<u64> {
    let mut v: u64 = 0;
    for &d in b {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(n) if n <= limit => v = n,
            _ => {
                return Err(ParseError::AbsurdNumber {
                    pos,
                    what,
                    value: excerpt(b),
                    limit,
                });
            }
        }
    }
    Ok(v)
}

fn parse_profile_header(line: &Line<'_>, max: u64) -> Result<(ProfileKind, u64)> {
    let b = line.bytes;
    let (kind, rest) = if let Some(r) = b.strip_prefix(b"goroutine profile: total ") {
        (ProfileKind::Goroutine, r)
    } else if let Some(r) = b.strip_prefix(b"goroutineleak profile: total ") {
        (ProfileKind::GoroutineLeak, r)
    } else {
        return Err(malformed(line, "expected `goroutine profile: total N`"));
    };
    if rest.is_empty() || !rest.iter().all(u8::is_ascii_digit) {
        return Err(malformed(line, "expected a number after `total`"));
    }
    Ok((kind, parse_count(rest, line.pos, "declared total", max)?))
}

/// A frame line with all its fields (`#\tPC\tFUNC+0xOFF\tFILE:LINE`, the line number whole).
fn complete_frame_line(b: &[u8]) -> bool {
    b.starts_with(b"#\t")
        && b[2..]
            .split(|&c| c == b'\t')
            .filter(|f| !f.is_empty())
            .count()
            == 3
        && memchr::memrchr(b':', b)
            .is_some_and(|i| b[i + 1..].iter().all(u8::is_ascii_digit) && i + 1 < b.len())
}

/// `#\tPC\tFUNC+0xOFF\tFILE:LINE` (runs of tabs between fields), or `#\tPC` alone. `None` for
/// `#\t0x0`: an empty stack.
fn parse_frame(line: &Line<'_>) -> Result<Option<Frame>> {
    let b = line.bytes;
    let mut fields = b[1..].split(|&c| c == b'\t').filter(|f| !f.is_empty());
    let pc = fields.next();
    if !pc.is_some_and(|p| p.starts_with(b"0x")) {
        return Err(malformed(line, "expected `#\\t0xPC` frame"));
    }
    let Some(func) = fields.next() else {
        if pc == Some(b"0x0") {
            // `printStackRecord` over a stack without a single PC.
            return Ok(None);
        }
        // A PC the runtime could not symbolise.
        return Ok(Some(Frame {
            function: "?".into(),
            file: "?".into(),
            line: 0,
        }));
    };
    let Some(file_line) = fields.next() else {
        return Err(malformed(line, "frame without `FILE:LINE`"));
    };
    if fields.next().is_some() {
        return Err(malformed(line, "extra fields after `FILE:LINE`"));
    }
    let func = match memchr::memmem::rfind(func, b"+0x") {
        Some(i) => &func[..i],
        None => func,
    };
    let Some(colon) = memchr::memrchr(b':', file_line) else {
        return Err(malformed(line, "frame without `FILE:LINE`"));
    };
    let num = &file_line[colon + 1..];
    if num.is_empty() || !num.iter().all(u8::is_ascii_digit) {
        return Err(malformed(line, "bad line number"));
    }
    let line_no = parse_count(num, line.pos, "line number", u32::MAX.into())?;
    Ok(Some(Frame {
        function: String::from_utf8_lossy(func).into_owned(),
        file: String::from_utf8_lossy(&file_line[..colon]).into_owned(),
        // Bounded by `parse_count` above.
        line: u32::try_from(line_no).unwrap_or(u32::MAX),
    }))
}
