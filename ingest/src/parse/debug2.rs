//! The runtime's traceback text: `/debug/pprof/goroutine?debug=2`, `runtime.Stack(buf, true)`,
//! and what a Go program prints when it dies (panic, `fatal error:`, SIGQUIT, `GOTRACEBACK`
//! `all|system|crash`).
//!
//! ```text
//! panic: boom                                        <- any text outside records is skipped
//!
//! goroutine 7 gp=0xc0 m=nil [chan send (leaked), 2 minutes, locked to thread labels:{"k": "v"}]:
//! main.(*T).send(0xc000010000, {0x1, 0x2})           <- function line: name + argument list
//!         /src/main.go:42 +0x1d fp=0x.. sp=0x.. pc=0x..   <- file line (suffixes optional)
//! main.F[...](...)                                   <- inlined frame, generic function
//!         /src/main.go:12
//! ...3 frames elided...
//! created by main.main in goroutine 1                <- creation site (+ its file line)
//!         /src/main.go:30 +0x45
//! [originating from goroutine 1]:                    <- GODEBUG=tracebackancestors: skipped
//! main.main(...)
//!         /src/main.go:30 +0x45
//!                                                    <- blank line ends the record
//! ```
//!
//! The header is written by `goroutineheader` in Go's `runtime/traceback.go`: the status (a
//! wait reason, which may itself contain parentheses: `chan receive (nil chan)`,
//! `select (no cases)`, `force gc (idle)`), then ` (leaked)`, ` (scan)`, ` (durable)`, then
//! `, N minutes`, `, locked to thread`, `, synctest bubble N`, then Go 1.27's ` labels:{...}`
//! (Go-quoted keys and values, sorted).
//!
//! Decisions:
//! - Lines that are not part of a record (panic messages, `PC=...`, register dumps,
//!   `exit status 2`, log lines) are skipped, inside records too — but a `FILE:LINE` line right
//!   after a skipped line means that line was a malformed function line: an error naming it
//!   (never a frame silently dropped), and so is a function line without its `FILE:LINE`, and
//!   a line over [`MAX_RECORD_LINE`] inside a record.
//! - `goroutine 0` records (an M's g0 stack under `GOTRACEBACK=crash|system`) are OS-thread
//!   stacks, not goroutines: their lines are consumed and the record is not yielded. So are the
//!   records after a `-----` line: `GOTRACEBACK=crash` then prints each thread's section (its
//!   signal line, its M's goroutine again, its registers).
//! - One input, one dump: a line that starts a dump (`SIGQUIT: quit`, `panic: `,
//!   `fatal error: `, a debug=1 header; not right after `-----`) after goroutines is
//!   [`ParseError::SeveralDumps`] at that line.
//! - Pasted dumps: a header indented as a whole gives its indent to the record's lines, and a
//!   file line may be indented with spaces instead of a tab; a line of spaces ends a record.
//! - Logged dumps: a header behind a logger's prefix ([`LogPrefix`]: syslog/journald
//!   `Mmm dd hh:mm:ss host prog[pid]: `, or an RFC 3339 time as `kubectl logs --timestamps`
//!   writes it) gives the record's lines that prefix to lose; rsyslog's `#011` is a tab. A
//!   line without the prefix (another process's) is noise.
//! - Truncation: records are yielded up to the cut, then one `Err(Truncated)` naming the
//!   offset of the cut record's last line; iteration then ends. A dump is cut if its last line
//!   inside a record has no `\n` and is not whole (a file line with its suffix, the elided
//!   marker: a missing final newline is not a cut), if it ends on a function line whose file
//!   line is missing, or if its last line is the start of a header (`gorou`).
//!   (`runtime/pprof` cuts its debug=2 buffer at 64 MiB mid-line; that is caught.)
//! - A goroutine without `, N minutes` waited under a minute: 0 (unknown if `(leaked)`, which
//!   loses the annotation).
//! - After any error the iterator ends (it is fused).
//! - Speed: outside a record, an ordinary record (header, frames, `created by`, elided marker,
//!   blank line) already in the line source's buffer is taken whole by a fast lane
//!   ([`Machine::fast_record`]) that makes the same sink calls the line-by-line path would;
//!   anything unusual (errors, limits, a missing blank line, ancestors) is left to the
//!   line-by-line path from the record's header. `tests::lane` checks both give the same.

use std::collections::BTreeMap;
use std::io::Read;

use leakhound_schemas::model::{Frame, GoroutineRecord};

use super::ParseOptions;
use super::error::{ParseError, Position, Result};
use super::lines::{Line, LineReader, LineSource, strip_cr};
use super::normalise::canonical_frames;
use super::quote::{QuoteError, parse_bare_label_set, parse_label_set};

const FORMAT: &str = "debug=2";

/// Streaming parser of debug=2 / crash text. Yields one record per goroutine (`count == 1`).
pub struct Debug2Parser<R> {
    inner: Machine<LineReader<R>, RecordSink>,
}

/// The debug=2 state machine over lines: which line starts, continues or ends a record, every
/// error and its position. It is the same for every [`Sink`]; the sink decides what is built
/// from the pieces it is handed. [`RecordSink`] builds a [`GoroutineRecord`] per goroutine
/// ([`Debug2Parser`]); the aggregating sink of [`super::aggregate`] folds them into a snapshot
/// without building them.
pub(crate) struct Machine<L, S> {
    lines: L,
    st: State<S>,
    /// Take ordinary records whole ([`Machine::fast_record`]); off only in tests, which check
    /// that both ways give the same.
    lane: bool,
}

/// How a Go 1.26 (`[STATUS labels:{"k": "v"}]:`) or Go 1.27 (`[STATUS] {k: v}:`) label set is
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LabelForm {
    Quoted,
    Bare,
}

/// A header line, parsed; `L` is what the sink made of its label set (`None`: no label set).
pub(crate) struct Header<'a, L> {
    pub(crate) id: u64,
    /// The status without its annotations, as printed (not UTF-8 checked).
    pub(crate) status: &'a [u8],
    pub(crate) labels: Option<L>,
    pub(crate) wait_minutes: Option<u32>,
    pub(crate) leaked: bool,
    pub(crate) durable: bool,
    pub(crate) locked_to_thread: bool,
    pub(crate) synctest_bubble: Option<u64>,
}

/// What the debug=2 state machine hands over, record by record. Byte slices are borrowed from
/// the current line and are not UTF-8 checked.
pub(crate) trait Sink {
    /// A parsed label set.
    type Labels;
    /// What a finished record becomes.
    type Out;
    /// Parse the label set at the start of `set` (which runs to the end of the header line):
    /// the labels and the bytes they took, or why they are malformed. Must depend on `form` and
    /// `set` only.
    fn labels(
        &mut self,
        form: LabelForm,
        set: &[u8],
    ) -> std::result::Result<(Self::Labels, usize), QuoteError>;
    /// A record starts (the previous one, if any, has ended). Resets everything the sink holds
    /// of a record: the fast lane ([`Machine::next`]) may start a record, hand over part of it
    /// and give it up, and the record is then started again from its header.
    fn start(&mut self, h: Header<'_, Self::Labels>);
    /// A frame of the stack, innermost first, with the name as printed (`panic` already turned
    /// into `runtime.gopanic`).
    fn frame(&mut self, function: &[u8], file: &[u8], line: u32);
    /// The `created by` frame (a later one replaces an earlier one).
    fn created_by(&mut self, function: &[u8], file: &[u8], line: u32);
    /// `created by ... in goroutine N`.
    fn creator_goroutine(&mut self, id: u64);
    /// `...N frames elided...`.
    fn elided(&mut self);
    /// The record ends; `emit` is false for a record that is not a goroutine (`goroutine 0`),
    /// whose output is dropped.
    fn end(&mut self, emit: bool) -> Option<Self::Out>;
}

/// The full path: every record built, frames normalised by [`canonical_frames`].
#[derive(Default)]
pub(crate) struct RecordSink {
    rec: GoroutineRecord,
    /// Scratch: the record's frames are collected here, then copied out at their exact size
    /// (reused from record to record, which keeps its capacity).
    frames: Vec<Frame>,
}

impl Sink for RecordSink {
    type Labels = BTreeMap<String, String>;
    type Out = GoroutineRecord;

    fn labels(
        &mut self,
        form: LabelForm,
        set: &[u8],
    ) -> std::result::Result<(Self::Labels, usize), QuoteError> {
        match form {
            LabelForm::Quoted => parse_label_set(set),
            LabelForm::Bare => parse_bare_label_set(set),
        }
    }

    fn start(&mut self, h: Header<'_, Self::Labels>) {
        self.frames.clear();
        self.rec = GoroutineRecord {
            count: 1,
            goroutine_ids: vec![h.id],
            labels: h.labels.unwrap_or_default(),
            state: lossy(h.status),
            wait_minutes: h.wait_minutes,
            leaked: h.leaked,
            durable: h.durable,
            locked_to_thread: h.locked_to_thread,
            synctest_bubble: h.synctest_bubble,
            ..Default::default()
        };
    }

    fn frame(&mut self, function: &[u8], file: &[u8], line: u32) {
        self.frames.push(Frame {
            function: lossy(function),
            file: lossy(file),
            line,
        });
    }

    fn created_by(&mut self, function: &[u8], file: &[u8], line: u32) {
        self.rec.stack.created_by = Some(Frame {
            function: lossy(function),
            file: lossy(file),
            line,
        });
    }

    fn creator_goroutine(&mut self, id: u64) {
        self.rec.creator_goroutine = Some(id);
    }

    fn elided(&mut self) {
        self.rec.stack.elided = true;
    }

    fn end(&mut self, emit: bool) -> Option<GoroutineRecord> {
        let mut rec = std::mem::take(&mut self.rec);
        if !emit {
            self.frames.clear();
            return None;
        }
        rec.stack.frames = canonical_frames(self.frames.drain(..).collect());
        Some(rec)
    }
}

struct State<S> {
    max_record_bytes: usize,
    max_frames: usize,
    max_line: usize,
    /// Inside a record: the sink has been `start`ed and not yet `end`ed.
    active: bool,
    sink: S,
    /// The current record's goroutine id (0: an M's g0, not yielded).
    id: u64,
    /// Its header's position.
    pos: Position,
    /// A function line waiting for its file line: its name (as printed) is in `pending_fn`.
    pending: Option<Pending>,
    pending_fn: Vec<u8>,
    in_ancestors: bool,
    /// Bytes of the current record so far.
    bytes: usize,
    /// Frames of the current record so far (not counting `created by`).
    frames: usize,
    done: bool,
    records: u64,
    first_line: Option<String>,
    /// The leading whitespace of the current record's header (a dump pasted indented): removed
    /// from the record's lines.
    indent: Vec<u8>,
    /// The log prefix of the current record's header (a dump read back from syslog, journald
    /// or `kubectl logs --timestamps`): removed from the record's lines.
    prefix: LogPrefix,
    /// After a `-----` line: the per-thread sections of a `GOTRACEBACK=crash` dump, whose
    /// records repeat goroutines the dump listed already (each M's current goroutine, or its
    /// g0): consumed, not yielded.
    threads: bool,
    /// The last non-blank line outside a record was `-----`.
    after_separator: bool,
    /// Records of this dump came before this machine's input (a stretch parsed on its own).
    seen_before: bool,
    /// The first line that starts a dump (`SIGQUIT: quit`, `panic: `, ...) met before any
    /// record, not after `-----`: where a second dump starts if records came before this
    /// stretch ([`Machine::first_dump_start`]).
    first_dump_start: Option<Position>,
    /// The last line of the current record that was skipped as noise, and its start: named
    /// when a `FILE:LINE` line follows it (then it was a malformed function line).
    noise_pos: Option<Position>,
    noise: Vec<u8>,
    /// The input ended inside the header of the record after the current one: the current one
    /// was yielded whole, the cut is reported next.
    cut_header: Option<Position>,
}

impl<S: Sink> State<S> {
    fn start(&mut self, h: Header<'_, S::Labels>, pos: Position, header_len: usize) {
        self.id = h.id;
        self.sink.start(h);
        self.pos = pos;
        self.pending = None;
        self.in_ancestors = false;
        self.bytes = header_len + 1;
        self.frames = 0;
        self.active = true;
        self.noise_pos = None;
    }
}

/// Longest line accepted inside a goroutine record. Function lines print at most ten argument
/// words and file lines a path; a longer line is not traceback text (a 10 MB line of garbage
/// after a header is an error, not a goroutine).
pub(crate) const MAX_RECORD_LINE: usize = 64 << 10;

#[derive(Clone, Copy)]
struct Pending {
    created_by: bool,
    pos: Position,
}

enum Step<T> {
    Continue,
    Emit(T),
    Fail(ParseError),
}

impl<R: Read> Debug2Parser<R> {
    /// A parser over `reader` (any `Read`; it is read in large chunks, so a `BufRead` wrapper
    /// adds nothing but costs nothing either).
    pub fn new(reader: R, opts: &ParseOptions) -> Self {
        Self::with_base(reader, opts, Position::default())
    }

    /// A parser over a piece of a larger input that starts at `base` (byte offset, lines
    /// before it) right after a blank line or at the start: positions are those of the whole.
    pub(crate) fn with_base(reader: R, opts: &ParseOptions, base: Position) -> Self {
        let lines = LineReader::with_base(reader, opts.max_line_bytes, base.offset, base.line);
        Debug2Parser {
            inner: Machine::new(lines, opts, RecordSink::default()),
        }
    }

    /// Goroutine records yielded so far.
    pub fn records(&self) -> u64 {
        self.inner.st.records
    }

    /// The same parser without the record fast lane: every line through [`State::on_line`].
    #[cfg(test)]
    pub(crate) fn line_by_line(mut self) -> Self {
        self.inner.lane = false;
        self
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }

    /// Goroutines of the same dump came before this input (a tail parsed on its own).
    pub(crate) fn set_seen_before(&mut self, seen: bool) {
        self.inner.set_seen_before(seen);
    }

    /// The first non-blank line of the input (at most 200 bytes), for error messages about
    /// text that holds no dump.
    pub fn first_line(&self) -> Option<&str> {
        self.inner.first_line()
    }
}

impl<R: Read> Iterator for Debug2Parser<R> {
    type Item = Result<GoroutineRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl<L: LineSource, S: Sink> Machine<L, S> {
    /// A machine over `lines` (positioned as the whole input's, as [`Debug2Parser::with_base`]
    /// does), handing what it reads to `sink`.
    pub(crate) fn new(lines: L, opts: &ParseOptions, sink: S) -> Self {
        Machine {
            lane: true,
            lines,
            st: State {
                max_record_bytes: opts.max_record_bytes,
                max_frames: opts.max_frames,
                max_line: opts.max_line_bytes,
                active: false,
                sink,
                id: 0,
                pos: Position::default(),
                pending: None,
                pending_fn: Vec::new(),
                in_ancestors: false,
                bytes: 0,
                frames: 0,
                done: false,
                records: 0,
                first_line: None,
                indent: Vec::new(),
                prefix: LogPrefix::None,
                threads: false,
                after_separator: false,
                seen_before: false,
                first_dump_start: None,
                noise_pos: None,
                noise: Vec::new(),
                cut_header: None,
            },
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.lines.offset()
    }

    /// The first non-blank line of the input (at most 200 bytes).
    pub(crate) fn first_line(&self) -> Option<&str> {
        self.st.first_line.as_deref()
    }

    /// Records of the same dump came before this input (which continues it): a line that starts
    /// a dump is then a second dump.
    pub(crate) fn set_seen_before(&mut self, seen: bool) {
        self.st.seen_before = seen;
    }

    /// Where the first line that starts a dump (`SIGQUIT: quit`, `panic: `, `fatal error: `,
    /// a debug=1 header) stood before any record of this input: if records came before this
    /// input, a second dump starts there.
    pub(crate) fn first_dump_start(&self) -> Option<Position> {
        self.st.first_dump_start
    }

    /// The sink (for one that accumulates).
    pub(crate) fn sink_mut(&mut self) -> &mut S {
        &mut self.st.sink
    }

    /// The sink, to reuse it (and its caches) on the next piece of input.
    pub(crate) fn into_sink(self) -> S {
        self.st.sink
    }

    /// The next record's output, or an error (after which the machine is fused), or `None` at
    /// the end.
    pub(crate) fn next(&mut self) -> Option<Result<S::Out>> {
        if self.st.done {
            return None;
        }
        loop {
            if self.lane
                && !self.st.active
                && let Some(out) = self.fast_record()
            {
                match out {
                    Some(rec) => {
                        self.st.records += 1;
                        return Some(Ok(rec));
                    }
                    None => continue,
                }
            }
            let line = match self.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.st.done = true;
                    return self.st.at_eof();
                }
                Err(e) => {
                    self.st.done = true;
                    return Some(Err(e));
                }
            };
            match self.st.on_line(&line) {
                Step::Continue => {}
                Step::Emit(rec) => {
                    self.st.records += 1;
                    return Some(Ok(rec));
                }
                Step::Fail(e) => {
                    self.st.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<L: LineSource, S: Sink> Machine<L, S> {
    /// The fast lane: outside a record, take the next record whole from the buffered input, if
    /// it is an ordinary one — a header, frames (function line, file line), `created by`,
    /// `...elided...`, other lines [`State::on_line`] skips, then a blank line — all there,
    /// within the limits. The sink gets exactly the calls [`State::on_line`] would make, without
    /// a [`Line`] built, a position kept or the function name copied per line.
    ///
    /// `None`: not taken (not a header, not all buffered, or anything unusual: another header,
    /// `[originating from`, a malformed or over-limit line, ...); nothing was consumed and the
    /// line-by-line path takes it from its header (starting the sink again). `Some(out)`: the
    /// record was consumed; `out` is what the sink made of it (`None` for a g0).
    fn fast_record(&mut self) -> Option<Option<S::Out>> {
        let data = self.lines.buffered();
        if !data.starts_with(b"goroutine ") {
            return None;
        }
        let st = &mut self.st;
        let nl = memchr::memchr(b'\n', data)?;
        if nl > st.max_line {
            return None;
        }
        let header = strip_cr(&data[..nl]);
        let h = parse_header(header, self.lines.here(), &mut st.sink).ok()??;
        let id = h.id;
        st.sink.start(h);
        let mut bytes = header.len() + 1;
        let mut frames = 0usize;
        let mut lines: u64 = 1;
        let mut at = nl + 1;
        // The function line waiting for its file line: name as printed, and whether it is the
        // `created by` frame.
        let mut pending: Option<(&[u8], bool)> = None;
        loop {
            let rest = &data[at..];
            let nl = memchr::memchr(b'\n', rest)?;
            if nl > st.max_line || nl > MAX_RECORD_LINE {
                return None;
            }
            let b = strip_cr(&rest[..nl]);
            at += nl + 1;
            lines += 1;
            let Some(&first) = b.first() else {
                break;
            };
            // Space-indented lines (pasted dumps, whitespace-only lines) and file lines without
            // a function line: the line-by-line path decides.
            // (O(1): a tab line whose second byte is blank is left to the slow path too.)
            if first == b' '
                || (first == b'\t' && b.get(1).is_none_or(|&c| c == b' ' || c == b'\t'))
            {
                return None;
            }
            bytes = bytes.saturating_add(b.len() + 1);
            if bytes > st.max_record_bytes {
                return None;
            }
            match first {
                b'\t' => {
                    // One tab, then not a blank (checked above): what the slow path trims to.
                    let rest = &b[1..];
                    let Some((name, created_by)) = pending.take() else {
                        if parse_file_line(rest).is_some() {
                            return None;
                        }
                        continue;
                    };
                    let (file, line_no) = parse_file_line(rest)?;
                    let line_no = u32::try_from(line_no).ok()?;
                    let function = symbol(name);
                    if created_by {
                        st.sink.created_by(function, file, line_no);
                    } else {
                        if frames >= st.max_frames {
                            return None;
                        }
                        frames += 1;
                        st.sink.frame(function, file, line_no);
                    }
                }
                b'g' if b.starts_with(b"goroutine ") => return None,
                b'c' if b.starts_with(b"created by ") => {
                    let rest = &b[b"created by ".len()..];
                    let (name, creator) = split_created_by(rest);
                    match creator.and_then(parse_u64) {
                        Some(Ok(v)) => st.sink.creator_goroutine(v),
                        Some(Err(())) => return None,
                        None => {}
                    }
                    pending = Some((name, true));
                }
                b'.' if b.starts_with(b"...") && b.ends_with(b" elided...") => st.sink.elided(),
                b'[' if b.starts_with(b"[originating from goroutine ") => return None,
                _ => {
                    if let Some(name) = parse_func_line(b) {
                        pending = Some((name, false));
                    } else if starts_a_dump(b) {
                        return None;
                    }
                }
            }
        }
        // The blank line: the record ends, as `State::emit` ends it (which fails on a function
        // line still waiting for its file line).
        if pending.is_some() {
            return None;
        }
        if st.first_line.is_none() {
            st.first_line = Some(super::error::excerpt(header));
        }
        st.id = id;
        st.pending = None;
        st.in_ancestors = false;
        st.after_separator = false;
        let out = st.sink.end(id != 0 && !st.threads);
        self.lines.consume(at, lines);
        Some(out)
    }
}

impl<S: Sink> State<S> {
    fn at_eof(&mut self) -> Option<Result<S::Out>> {
        if let Some(pos) = self.cut_header.take() {
            return Some(Err(truncated(pos, "goroutine header is cut (no newline)")));
        }
        if !self.active {
            return None;
        }
        self.active = false;
        if let Some(p) = self.pending.take() {
            return Some(Err(ParseError::Truncated {
                pos: p.pos,
                what: "function line without its file line at the end of the input",
            }));
        }
        let rec = self.sink.end(self.id != 0 && !self.threads)?;
        self.records += 1;
        Some(Ok(rec))
    }

    /// A file line (`rest`: the line after its tab or spaces; `b`: the whole line, for errors):
    /// the pending function line's location, or noise.
    fn file_line(&mut self, rest: &[u8], b: &[u8], line: &Line<'_>) -> Step<S::Out> {
        let Some(p) = self.pending.take() else {
            if self.in_ancestors || parse_file_line(rest).is_none() {
                // `\tgoroutine running on other thread; stack unavailable`, or noise.
                return Step::Continue;
            }
            // A `FILE:LINE` without its function line: the line before it was one,
            // malformed; or it is missing.
            return Step::Fail(match self.noise_pos {
                Some(pos) if pos.line + 1 == line.pos.line => ParseError::malformed(
                    FORMAT,
                    pos,
                    "malformed function line (expected `NAME(ARGS)`) before a `FILE:LINE` line",
                    &self.noise,
                ),
                _ => ParseError::malformed(
                    FORMAT,
                    line.pos,
                    "`FILE:LINE` line without a function line before it",
                    b,
                ),
            });
        };
        let Some((file, line_no)) = parse_file_line(rest) else {
            return Step::Fail(ParseError::malformed(
                FORMAT,
                line.pos,
                "expected `\\tFILE:LINE` after a function line",
                b,
            ));
        };
        let Ok(line_no) = u32::try_from(line_no) else {
            return Step::Fail(absurd(line.pos, "line number", line_no, u32::MAX.into()));
        };
        let function = symbol(&self.pending_fn);
        if p.created_by {
            self.sink.created_by(function, file, line_no);
        } else {
            if self.frames >= self.max_frames {
                return Step::Fail(ParseError::RecordTooLarge {
                    pos: self.pos,
                    limit: self.max_frames,
                    what: "frames",
                });
            }
            self.frames += 1;
            self.sink.frame(function, file, line_no);
        }
        Step::Continue
    }

    fn on_line(&mut self, line: &Line<'_>) -> Step<S::Out> {
        let b = line.bytes;
        if self.first_line.is_none() && !b.iter().all(u8::is_ascii_whitespace) {
            self.first_line = Some(super::error::excerpt(b));
        }
        if !self.active {
            // Outside a record: a header matters, and the lines that start a dump.
            if line.overlong || b.is_empty() {
                return Step::Continue;
            }
            // A dump pasted with an indent (an issue, a test log) has it on the header too.
            let t = trim_ws_start(b);
            if !t.starts_with(b"goroutine ") {
                // A dump written through a logger: every line carries its prefix.
                if let Some((prefix, at)) = LogPrefix::of_header(b)
                    && line.terminated
                    && let Ok(Some(h)) = parse_header(&b[at..], line.pos, &mut self.sink)
                {
                    self.after_separator = false;
                    self.start(h, line.pos, b.len() - at);
                    self.indent.clear();
                    self.prefix = prefix;
                    return Step::Continue;
                }
                if !line.terminated && !t.is_empty() && b"goroutine ".starts_with(t) {
                    return Step::Fail(truncated(line.pos, "goroutine header is cut (no newline)"));
                }
                return self.outside(t, line.pos);
            }
            if !line.terminated && t.get(10).is_some_and(u8::is_ascii_digit) {
                return Step::Fail(truncated(line.pos, "goroutine header is cut (no newline)"));
            }
            return match parse_header(t, line.pos, &mut self.sink) {
                Ok(Some(h)) => {
                    if !line.terminated {
                        return Step::Fail(truncated(line.pos, "goroutine header"));
                    }
                    self.after_separator = false;
                    self.start(h, line.pos, b.len());
                    self.indent.clear();
                    self.indent.extend_from_slice(&b[..b.len() - t.len()]);
                    self.prefix = LogPrefix::None;
                    Step::Continue
                }
                Ok(None) => self.outside(t, line.pos),
                Err(e) => Step::Fail(e),
            };
        }
        // Lines of a logged record lose the logger's prefix (a line without it is another
        // process's: noise), and rsyslog's `#011` is the tab it escaped.
        let (b, escaped_tab) = match self.prefix.strip(b) {
            Some(rest) => (rest, rest.len() > 4 && rest.starts_with(b"#011")),
            None => (b, false),
        };
        // Lines of an indented record lose the header's indent.
        let b = match b.strip_prefix(&self.indent[..]) {
            Some(rest) if !self.indent.is_empty() => rest,
            _ => b,
        };

        if line.overlong {
            return Step::Fail(ParseError::LineTooLong {
                pos: line.pos,
                limit: self.max_line,
            });
        }
        if b.iter().all(|&c| c == b' ' || c == b'\t') {
            // Blank line (or only whitespace, as pasted text has): end of the record (an
            // unterminated empty line cannot exist).
            return self.emit(None, line.pos, 0);
        }
        if b.len() > MAX_RECORD_LINE {
            return Step::Fail(ParseError::malformed(
                FORMAT,
                line.pos,
                "a line this long inside a goroutine record is not traceback text",
                b,
            ));
        }
        if !line.terminated && self.pending.is_none() && header_start(b) {
            // The input ends inside the next record's header (no blank line before it): this
            // record is whole; the cut is the next one's.
            self.cut_header = Some(line.pos);
            return self.emit(None, line.pos, 0);
        }
        if !line.terminated && !self.complete_last_line(b) && looks_like_dump_line(b) {
            // The input stops mid-line inside a record. (A trailing `exit status 2` without a
            // newline is not a cut, nor is a complete last frame without its newline; a
            // half-written frame or header is.)
            return Step::Fail(truncated(
                line.pos,
                "last line of a goroutine record is cut (no newline)",
            ));
        }
        self.bytes = self.bytes.saturating_add(b.len() + 1);
        if self.bytes > self.max_record_bytes {
            return Step::Fail(ParseError::RecordTooLarge {
                pos: self.pos,
                limit: self.max_record_bytes,
                what: "bytes",
            });
        }
        if escaped_tab {
            return self.file_line(trim_ws_start(&b[4..]), b, line);
        }
        match b[0] {
            // A file line: a tab, or spaces where a dump was pasted.
            b'\t' | b' ' => self.file_line(trim_ws_start(b), b, line),
            b'g' if b.starts_with(b"goroutine ") => match parse_header(b, line.pos, &mut self.sink)
            {
                // A header without the blank line before it: the previous record ends here.
                Ok(Some(h)) => self.emit(Some(h), line.pos, b.len()),
                Ok(None) => Step::Continue,
                Err(e) => Step::Fail(e),
            },
            b'c' if b.starts_with(b"created by ") => {
                if self.in_ancestors {
                    return Step::Continue;
                }
                let rest = &b[b"created by ".len()..];
                let (name, creator) = split_created_by(rest);
                if let Some(n) = creator {
                    match parse_u64(n) {
                        Some(Ok(v)) => self.sink.creator_goroutine(v),
                        Some(Err(())) => {
                            return Step::Fail(absurd(
                                line.pos,
                                "goroutine id",
                                lossy(n),
                                u64::MAX,
                            ));
                        }
                        None => {}
                    }
                }
                self.set_pending(name, true, line.pos);
                Step::Continue
            }
            b'.' if b.starts_with(b"...") && b.ends_with(b" elided...") => {
                if !self.in_ancestors {
                    self.sink.elided();
                }
                Step::Continue
            }
            b'[' if b.starts_with(b"[originating from goroutine ") => {
                // GODEBUG=tracebackancestors: the stacks of the goroutines that created this
                // one, at the time they did. Not goroutines of this dump; skipped to the end
                // of the record.
                self.in_ancestors = true;
                self.pending = None;
                Step::Continue
            }
            _ => {
                if self.in_ancestors {
                    return Step::Continue;
                }
                if starts_a_dump(b)
                    && (self.records > 0 || self.seen_before || (self.id != 0 && !self.threads))
                {
                    // A crash log's next dump right after this one's last line (its register
                    // dump, say), without a blank line between.
                    return Step::Fail(ParseError::SeveralDumps {
                        pos: Some(line.pos),
                        why: "a second dump starts here, after goroutines of a first one".into(),
                    });
                }
                if let Some(name) = parse_func_line(b) {
                    self.set_pending(name, false, line.pos);
                } else {
                    // Anything else (register dumps under GOTRACEBACK=crash, `non-Go function
                    // at pc=`, interleaved log lines) is skipped; remembered in case a
                    // `FILE:LINE` follows (then it was a malformed function line).
                    self.noise_pos = Some(line.pos);
                    self.noise.clear();
                    self.noise.extend_from_slice(&b[..b.len().min(256)]);
                }
                Step::Continue
            }
        }
    }

    /// A line outside a record that is not a header (`t`, leading whitespace removed): a
    /// `-----` separator, a line that starts a dump, or text that means nothing here.
    fn outside(&mut self, t: &[u8], pos: Position) -> Step<S::Out> {
        if t == b"-----" {
            // GOTRACEBACK=crash: the other threads' sections follow, each `-----`, a signal
            // line, its registers and its M's goroutine again.
            self.threads = true;
            self.after_separator = true;
            return Step::Continue;
        }
        if !self.after_separator && starts_a_dump(t) {
            if self.records > 0 || self.seen_before {
                return Step::Fail(ParseError::SeveralDumps {
                    pos: Some(pos),
                    why: "a second dump starts here, after goroutines of a first one".into(),
                });
            }
            if self.first_dump_start.is_none() {
                self.first_dump_start = Some(pos);
            }
            self.threads = false;
        }
        self.after_separator = false;
        Step::Continue
    }

    /// Whether `b`, the last line of the input without its newline, is whole: a file line
    /// (its function line waits for it) or the elided marker.
    fn complete_last_line(&self, b: &[u8]) -> bool {
        match b.first() {
            Some(b'\t' | b' ') => self.pending.is_some() && whole_file_line(trim_ws_start(b)),
            Some(b'.') => b.starts_with(b"...") && b.ends_with(b" elided..."),
            _ => false,
        }
    }

    fn set_pending(&mut self, name: &[u8], created_by: bool, pos: Position) {
        self.pending_fn.clear();
        self.pending_fn.extend_from_slice(name);
        self.pending = Some(Pending { created_by, pos });
    }

    /// Finish the current record, start `next` (if a header came without a blank line), and
    /// yield the finished one unless it is a g0 (`goroutine 0`).
    fn emit(
        &mut self,
        next: Option<Header<'_, S::Labels>>,
        pos: Position,
        header_len: usize,
    ) -> Step<S::Out> {
        if let Some(p) = self.pending.take() {
            // The record ends where a function line's `FILE:LINE` should be.
            return Step::Fail(ParseError::malformed(
                FORMAT,
                p.pos,
                "function line without its `FILE:LINE` line",
                &self.pending_fn,
            ));
        }
        let out = self.sink.end(self.id != 0 && !self.threads);
        match next {
            Some(h) => self.start(h, pos, header_len),
            None => self.active = false,
        }
        match out {
            Some(rec) => Step::Emit(rec),
            None => Step::Continue,
        }
    }
}

/// Where ` in goroutine N` starts in a `created by` line, if it has one.
/// The function name of a `created by NAME[ in goroutine N]` line (`rest` is what follows
/// `created by `), and the text of N when the line has it.
fn split_created_by(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match rfind_in_goroutine(rest) {
        Some(i) => (&rest[..i], Some(&rest[i + b" in goroutine ".len()..])),
        None => (rest, None),
    }
}

/// The symbol of a function name as the traceback prints it: `runtime.gopanic` is printed as
/// `panic` (Go `printFuncName`); every other format has the symbol.
fn symbol(printed: &[u8]) -> &[u8] {
    if printed == b"panic" {
        b"runtime.gopanic"
    } else {
        printed
    }
}

fn rfind_in_goroutine(rest: &[u8]) -> Option<usize> {
    let sp = memchr::memrchr(b' ', rest)?;
    rest[..sp]
        .ends_with(b" in goroutine")
        .then(|| sp - b" in goroutine".len())
}

/// Lines of the traceback itself, as opposed to text interleaved with it (and a cut that
/// leaves only the start of `goroutine `).
fn looks_like_dump_line(b: &[u8]) -> bool {
    matches!(b.first(), Some(b'\t' | b' '))
        || memchr::memchr(b'(', b).is_some()
        || b.starts_with(b"goroutine")
        || b"goroutine ".starts_with(b)
        || b.starts_with(b"created by ")
        || b.starts_with(b"...")
        || b.starts_with(b"[originating")
}

/// A file line that cannot be the start of a longer one cut short: `FILE:LINE` alone, or with
/// its ` +0xOFF` (or `... pc=0xPC`) suffix whole up to a hex digit. (A cut inside the digits
/// cannot be told from a whole line.)
fn whole_file_line(b: &[u8]) -> bool {
    let Some(colon) = memchr::memrchr(b':', b) else {
        return false;
    };
    let rest = &b[colon + 1..];
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let suffix = &rest[digits..];
    if suffix.is_empty() {
        return true;
    }
    let hex = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_hexdigit);
    match memchr::memmem::rfind(suffix, b"0x") {
        Some(i) => {
            hex(&suffix[i + 2..])
                && (suffix[..i].ends_with(b" +") || suffix[..i].ends_with(b" pc="))
        }
        None => false,
    }
}

/// The start of a header line, as far as it goes: `gorou`, `goroutine 12 [chan rec`.
fn header_start(b: &[u8]) -> bool {
    b.starts_with(b"goroutine ") || b"goroutine ".starts_with(b)
}

/// `b` without its leading spaces and tabs.
/// The prefix a logger writes before each line of a dump that went through it.
///
/// Recognised (the shapes dumps pasted into issues come in): a syslog line as journald and
/// rsyslog write it, `Oct 21 17:57:00 host prog[14238]: ` (fixed-width time; the rest of the
/// prefix, from the host on, is the same on every line of one process), and an RFC 3339 time
/// and a space, as `kubectl logs --timestamps` and `docker logs -t` write it. Anything else is
/// not taken for a prefix: a line is then read as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogPrefix {
    None,
    /// Bytes 15.. of the prefix (from the space after the time), and the prefix's length.
    Syslog {
        tail: Vec<u8>,
        len: usize,
    },
    /// A time up to the first space.
    Stamp,
}

impl LogPrefix {
    /// The prefix of a goroutine header written through a logger, and where the header starts.
    fn of_header(b: &[u8]) -> Option<(LogPrefix, usize)> {
        let at = memchr::memmem::find(&b[..b.len().min(256)], b"goroutine ")?;
        let p = &b[..at];
        if Self::syslog_time(p) && p.len() > 17 && p.ends_with(b": ") {
            return Some((
                LogPrefix::Syslog {
                    tail: p[15..].to_vec(),
                    len: at,
                },
                at,
            ));
        }
        if Self::stamp(p).is_some_and(|n| n + 1 == at) {
            return Some((LogPrefix::Stamp, at));
        }
        None
    }

    /// `Mmm dd hh:mm:ss` (the day space-padded).
    fn syslog_time(p: &[u8]) -> bool {
        p.len() >= 15
            && p[..3].iter().all(u8::is_ascii_alphabetic)
            && p[3] == b' '
            && (p[4] == b' ' || p[4].is_ascii_digit())
            && p[5].is_ascii_digit()
            && p[6] == b' '
            && p[9] == b':'
            && p[12] == b':'
            && [7, 8, 10, 11, 13, 14]
                .iter()
                .all(|&i| p[i].is_ascii_digit())
    }

    /// `YYYY-MM-DDT...` up to the first space: that space's index.
    fn stamp(p: &[u8]) -> Option<usize> {
        let date = p.get(..11)?;
        let ok = date[..4].iter().all(u8::is_ascii_digit)
            && date[4] == b'-'
            && date[7] == b'-'
            && date[10] == b'T';
        if !ok {
            return None;
        }
        p.iter().position(|&c| c == b' ').or(Some(p.len()))
    }

    /// The line without this prefix; `None` when there is no prefix or the line lacks it.
    fn strip<'a>(&self, b: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            LogPrefix::None => None,
            LogPrefix::Syslog { tail, len } => {
                if b.len() >= *len && Self::syslog_time(b) && b[15..*len] == tail[..] {
                    Some(&b[*len..])
                } else if b.len() + 1 == *len
                    && Self::syslog_time(b)
                    && b[15..] == tail[..tail.len() - 1]
                {
                    // An empty message, its trailing space trimmed.
                    Some(&[])
                } else {
                    None
                }
            }
            LogPrefix::Stamp => {
                let n = Self::stamp(b)?;
                Some(b.get(n + 1..).unwrap_or_default())
            }
        }
    }
}

pub(crate) fn trim_ws_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    &b[n..]
}

/// A line that starts a dump: the signal line of a crash (`SIGQUIT: quit`, `SIGABRT: abort`),
/// a panic or fatal error, a debug=1 profile header. Met after goroutines of a dump (and not
/// right after a `-----` separator), it starts a second one.
pub(crate) fn starts_a_dump(t: &[u8]) -> bool {
    if let Some(rest) = t.strip_prefix(b"SIG") {
        let n = rest
            .iter()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .count();
        return n > 0 && rest[n..].starts_with(b": ");
    }
    t.starts_with(b"panic: ")
        || t.starts_with(b"fatal error: ")
        || t.starts_with(b"goroutine profile: total ")
        || t.starts_with(b"goroutineleak profile: total ")
}

fn truncated(pos: Position, what: &'static str) -> ParseError {
    ParseError::Truncated { pos, what }
}

fn absurd(pos: Position, what: &'static str, value: impl ToString, limit: u64) -> ParseError {
    ParseError::AbsurdNumber {
        pos,
        what,
        value: value.to_string(),
        limit,
    }
}

fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Decimal digits to the end of `b`: `None` if `b` is not all digits (or empty), `Some(Err)` on
/// overflow.
fn parse_u64(b: &[u8]) -> Option<Result<u64, ()>> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in b {
        v = match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(v) => v,
            None => return Some(Err(())),
        };
    }
    Some(Ok(v))
}

/// `name(args)` → `name`. The argument list never contains `(` (hex words, `{`, `}`, `...`,
/// `?`, `_`), while names may (`main.(*T).m`), so the list starts at the last `(`.
fn parse_func_line(b: &[u8]) -> Option<&[u8]> {
    if b.last() != Some(&b')') {
        return None;
    }
    let i = memchr::memrchr(b'(', b)?;
    let name = &b[..i];
    if name.is_empty() || memchr::memchr(b' ', name).is_some() {
        return None;
    }
    Some(name)
}

/// `FILE:LINE[ +0xOFF][ fp=0x.. sp=0x.. pc=0x..]` → (FILE, LINE). Paths may contain `:` and
/// spaces (`C:/Program Files/...`), the suffixes contain neither `:` nor digits right after a
/// colon, so the line number follows the last `:`.
fn parse_file_line(b: &[u8]) -> Option<(&[u8], u64)> {
    let colon = memchr::memrchr(b':', b)?;
    let rest = &b[colon + 1..];
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || (digits < rest.len() && rest[digits] != b' ') {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &rest[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((&b[..colon], v))
}

/// Parse `goroutine N[ gp=.. m=.. mp=..] [STATUS...]:`. `Ok(None)` if the line is not a header
/// at all (text that merely starts with "goroutine "); `Err` if it is one with impossible
/// content. The label set, if any, is parsed by `sink`.
fn parse_header<'a, S: Sink>(
    b: &'a [u8],
    pos: Position,
    sink: &mut S,
) -> Result<Option<Header<'a, S::Labels>>> {
    let rest = &b[b"goroutine ".len()..];
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b' ') || !b.ends_with(b":") {
        return Ok(None);
    }
    // ` gp=0x.. m=N mp=0x..` (GOTRACEBACK=system|crash, or a fatal error's current
    // goroutine) comes before ` [`.
    let after = &rest[digits..];
    let Some(lb) = memchr::memchr(b'[', after) else {
        return Ok(None);
    };
    if lb == 0 || after[lb - 1] != b' ' || after[..lb].contains(&b']') {
        return Ok(None);
    }
    let content = &after[lb + 1..];
    // The status part never contains `]` nor `labels:{`; labels are quoted and may contain
    // anything, so find the end of the status before looking at them.
    let close = memchr::memchr(b']', content);
    // `{` cannot be in a status; only look for the Go 1.26 form when there is one before `]`.
    let brace = memchr::memchr(b'{', content);
    let old_labels = match brace {
        Some(i) if close.is_none_or(|c| i < c) => {
            memchr::memmem::find(&content[..i + 1], b" labels:{")
        }
        _ => None,
    };
    let (status_part, labels) = match (close, old_labels) {
        // Go 1.26 with GODEBUG=tracebacklabels=1: `[STATUS labels:{"k": "v"}]:`.
        (_, Some(i)) if close.is_none_or(|c| i < c) => {
            let set = &content[i + b" labels:".len()..];
            match sink.labels(LabelForm::Quoted, set) {
                Ok((labels, n)) if &set[n..] == b"]:" => (&content[..i], Some(labels)),
                Ok(_) => return Ok(None),
                Err(what) => return Err(ParseError::malformed(FORMAT, pos, what, b)),
            }
        }
        (Some(c), _) => {
            let tail = &content[c + 1..];
            if tail == b":" {
                (&content[..c], None)
            } else if let Some(set) = tail.strip_prefix(b" ") {
                // Go 1.27: `[STATUS] {k: v, k2: "v 2"}:`.
                match sink.labels(LabelForm::Bare, set) {
                    Ok((labels, n)) if &set[n..] == b":" => (&content[..c], Some(labels)),
                    Ok(_) => return Ok(None),
                    Err(what) => return Err(ParseError::malformed(FORMAT, pos, what, b)),
                }
            } else {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    };
    let id = match parse_u64(&rest[..digits]) {
        Some(Ok(v)) => v,
        _ => {
            return Err(absurd(
                pos,
                "goroutine id",
                lossy(&rest[..digits]),
                u64::MAX,
            ));
        }
    };

    let mut h = Header {
        id,
        status: b"",
        labels,
        wait_minutes: None,
        leaked: false,
        durable: false,
        locked_to_thread: false,
        synctest_bubble: None,
    };

    let mut parts = status_part.split(|&c| c == b',');
    let mut status = parts.next().unwrap_or_default();
    // Annotations after the status, in the order the runtime prints them; `(durable)` may
    // also be part of the wait reason itself (`chan receive (durable)`).
    loop {
        if let Some(s) = status.strip_suffix(b" (leaked)") {
            h.leaked = true;
            status = s;
        } else if let Some(s) = status.strip_suffix(b" (scan)") {
            status = s;
        } else if let Some(s) = status.strip_suffix(b" (durable)") {
            h.durable = true;
            status = s;
        } else {
            break;
        }
    }
    h.status = status;
    // No `, N minutes`: the goroutine has waited under a minute (or since before the last GC
    // stamped it) — 0, a true lower bound. Not for `(leaked)` goroutines: the runtime drops the
    // annotation from them whatever their wait, so theirs is unknown.
    if !h.leaked {
        h.wait_minutes = Some(0);
    }
    for part in parts {
        let part = part.strip_prefix(b" ").unwrap_or(part);
        if let Some(n) = part.strip_suffix(b" minutes") {
            match parse_u64(n) {
                Some(Ok(v)) => match u32::try_from(v) {
                    Ok(v) => h.wait_minutes = Some(v),
                    Err(_) => return Err(absurd(pos, "wait minutes", v, u32::MAX.into())),
                },
                Some(Err(())) => {
                    return Err(absurd(pos, "wait minutes", lossy(n), u32::MAX.into()));
                }
                None => {}
            }
        } else if part == b"locked to thread" {
            h.locked_to_thread = true;
        } else if let Some(n) = part
            .strip_prefix(b"synctest bubble ")
            .or_else(|| part.strip_prefix(b"synctest group "))
        {
            match parse_u64(n) {
                Some(Ok(v)) => h.synctest_bubble = Some(v),
                Some(Err(())) => return Err(absurd(pos, "synctest bubble", lossy(n), u64::MAX)),
                None => {}
            }
        }
        // Anything else: an annotation from a future Go; ignored.
    }

    Ok(Some(h))
}
