//! Goroutine-dump parsers: every format Go writes goroutines in, read as a stream.
//!
//! ```text
//!  bytes ─▶ detect ─gzip?─▶ gunzip (capped) ─▶ detect ─┬─▶ ParallelDebug2 ─┐ (Debug2Parser per piece)
//!                                                     ├─▶ Debug1Parser ───┼─▶ GoroutineRecord* ─▶ SnapshotBuilder ─▶ Snapshot
//!                                                     ├─▶ ProtoParser ────┘
//!                                                     └─▶ Prometheus JSON (handed back, not parsed here)
//! ```
//!
//! - [`detect`]: the format from the first bytes (gzip, profile.proto, debug=1, debug=2 /
//!   crash text, Prometheus JSON), with clear refusals for HTML error pages, other pprof
//!   profiles and binary data.
//! - [`debug2`]: `?debug=2`, `runtime.Stack(buf, true)`, panic / `fatal error` / SIGQUIT /
//!   `GOTRACEBACK=crash` output. One record per goroutine, with state, wait minutes, ids,
//!   `created by`, Go 1.27 header labels.
//! - [`parallel`]: debug=2 on every core: the input cut at blank lines, pieces parsed by
//!   worker threads, records in input order, identical to one sequential pass.
//! - [`debug1`]: `?debug=1` (`goroutine profile: total N` and `goroutineleak profile`). One
//!   record per distinct stack and label set, with its count and labels.
//! - [`proto`]: `?debug=0`, profile.proto, decoded with prost; same grain as debug=1.
//! - [`normalise`]: the canonical frame list that makes one capture give the same stack ids at
//!   debug=0, 1 and 2.
//!
//! Truncated dumps (crash logs are often cut): the iterators yield every record before the cut,
//! then one error naming the offset and line of the cut record, then end; [`parse_snapshot`]
//! returns the complete records as a snapshot flagged [`Snapshot::partial`] (with the cut's
//! line, offset and what was cut), or the error if no record came before it. A missing final
//! newline after a complete last line is not a cut; a last line that stops short (inside a
//! frame, inside the next header) is.
//!
//! One input, one dump: a second dump in the same input (a log with two SIGQUIT dumps, two
//! debug=1 profiles, two `runtime.Stack` outputs one after the other) is
//! [`ParseError::SeveralDumps`], naming where the second starts — never one snapshot with
//! doubled counts and repeated goroutine ids. The per-thread sections of a `GOTRACEBACK=crash`
//! dump (after `-----`) repeat goroutines of the dump and are not counted again.
//!
//! Shapes of real-world text that are read: a UTF-8 byte-order mark, CRLF line ends, dumps
//! pasted into an issue (indented as a whole, frames indented with spaces instead of a tab),
//! a missing final newline. A frame line that does not parse is an error naming its line and
//! offset, never a frame silently dropped; so is a line over 64 KiB inside a record.
//!
//! Not supported: tracebacks whose lines carry a prefix (log collectors that prepend a
//! timestamp to every line); strip it first.
//!
//! Memory: the text parsers hold one line (at most [`ParseOptions::max_line_bytes`]) and one
//! record (at most [`ParseOptions::max_record_bytes`]) whatever the dump size; profile.proto is
//! decoded whole, within [`ParseOptions::max_decompressed_bytes`]. A debug=2 [`Snapshot`]
//! keeps the goroutine ids of each group, 8 bytes per goroutine, unless
//! [`ParseOptions::max_ids_per_group`] bounds them (`leakhound inspect` does). No input makes
//! them panic: everything ends in a [`ParseError`] naming the offset and line where it matters.

mod aggregate;
pub mod debug1;
pub mod debug2;
pub mod detect;
pub mod error;
mod lines;
pub mod normalise;
pub mod parallel;
pub mod proto;
mod quote;

#[cfg(test)]
mod tests;

use std::io::{Cursor, Read};

use leakhound_schemas::model::{Cut, DumpFormat, GoroutineRecord, ProfileKind, Snapshot};

pub use debug1::Debug1Parser;
pub use debug2::Debug2Parser;
pub use detect::{DETECT_PREFIX, Detected, detect};
pub use error::{ParseError, Position, Result};
pub use normalise::canonical_frames;
pub use parallel::ParallelDebug2;
pub use proto::ProtoParser;

use error::{GzipFailure, LimitExceeded, from_io};

/// Limits that keep a hostile or broken input from taking unbounded memory or time. The
/// defaults fit every real dump we know of by a wide margin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Cap on the bytes a gzip'd input may decompress to (and on an uncompressed
    /// profile.proto, which is read whole). Default 1 GiB.
    pub max_decompressed_bytes: u64,
    /// Longest line the text parsers accept inside a record. Longer lines outside records
    /// (log noise around a crash) are skipped without being buffered. Default 16 MiB.
    pub max_line_bytes: usize,
    /// Largest single record (one goroutine's text in debug=2). Default 16 MiB.
    pub max_record_bytes: usize,
    /// Most frames in one record. The runtime prints at most 100 per goroutine in a traceback
    /// and at most 1024 PCs per profile stack. Default 10,000.
    pub max_frames: usize,
    /// Most goroutines in one record, and in a declared total: more cannot exist in one
    /// process (each needs at least a 2 KiB stack). Default 10^9.
    pub max_goroutines: u64,
    /// Threads parsing a large debug=2 dump ([`ParallelDebug2`]): 1 = all on the calling
    /// thread (the default), 0 = one per core (at most 4), N = N workers. Inputs under one
    /// piece (1 MiB) never start a thread. Default 1 because on a 2-core machine with glibc
    /// malloc the parallel path measured *slower* (0.52 s vs 0.38 s on 200 MiB): the records
    /// are allocated on worker threads and freed by the consumer, and cross-arena frees plus the
    /// extra copies cost more than the second core brings. Revisit with more cores or another
    /// allocator.
    pub threads: usize,
    /// Goroutine ids kept per group of a [`Snapshot`] (debug=2): a group with more goroutines
    /// keeps its lowest this many ids, ascending (a group with fewer keeps them all, in input
    /// order). Default unbounded: the store's residence tracking needs every id. A bound makes
    /// the memory of a parse independent of the number of goroutines per stack, which is what
    /// [`ParseOptions::one_large_dump`] is for. Records ([`open`]) always carry their id.
    pub max_ids_per_group: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_decompressed_bytes: 1 << 30,
            max_line_bytes: 16 << 20,
            max_record_bytes: 16 << 20,
            max_frames: 10_000,
            max_goroutines: 1_000_000_000,
            threads: 1,
            max_ids_per_group: usize::MAX,
        }
    }
}

impl ParseOptions {
    /// The defaults, but on one thread per core (at most 4) and with at most
    /// [`ParseOptions::SUMMARY_IDS`] goroutine ids per group: for one large dump summarised on
    /// its own, as `leakhound inspect` does. [`parse_snapshot_with`] on debug=2 then parses
    /// pieces of the input on every core and merges their aggregates (only a few groups per
    /// piece cross threads, so this scales where records did not), in memory that does not grow
    /// with the dump.
    pub fn one_large_dump() -> Self {
        ParseOptions {
            threads: 0,
            max_ids_per_group: Self::SUMMARY_IDS,
            ..Default::default()
        }
    }

    /// Goroutine ids per group kept by [`ParseOptions::one_large_dump`].
    pub const SUMMARY_IDS: usize = 100;
}

/// The records of one dump, whichever format it is in.
// One per input, moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum DumpRecords<'a> {
    /// debug=2 / crash text: one record per goroutine.
    Debug2(ParallelDebug2<'a>),
    /// debug=1 text: one record per stack and label set.
    Debug1(Debug1Parser<Box<dyn Read + 'a>>),
    /// profile.proto: one record per sample.
    Proto(ProtoParser),
}

impl DumpRecords<'_> {
    /// The detected format.
    pub fn format(&self) -> DumpFormat {
        match self {
            DumpRecords::Debug2(_) => DumpFormat::Debug2,
            DumpRecords::Debug1(_) => DumpFormat::Debug1,
            DumpRecords::Proto(_) => DumpFormat::Proto,
        }
    }

    /// Which profile: debug=0/1 say; debug=2 text is always reported as `Goroutine` (a
    /// `goroutineleak?debug=2` dump lists every goroutine, the leaked ones marked `(leaked)`,
    /// which sets [`GoroutineRecord::leaked`]).
    pub fn kind(&self) -> ProfileKind {
        match self {
            DumpRecords::Debug2(_) => ProfileKind::Goroutine,
            DumpRecords::Debug1(p) => p.kind(),
            DumpRecords::Proto(p) => p.kind(),
        }
    }

    /// `goroutine profile: total N` (debug=1 only).
    pub fn declared_total(&self) -> Option<u64> {
        match self {
            DumpRecords::Debug1(p) => Some(p.declared_total()),
            _ => None,
        }
    }

    /// When the profile was taken (profile.proto only).
    pub fn time_nanos(&self) -> Option<i64> {
        match self {
            DumpRecords::Proto(p) => p.time_nanos(),
            _ => None,
        }
    }

    /// Bytes of (decompressed) input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        match self {
            DumpRecords::Debug2(p) => p.bytes_read(),
            DumpRecords::Debug1(p) => p.bytes_read(),
            DumpRecords::Proto(p) => p.bytes_read(),
        }
    }
}

impl Iterator for DumpRecords<'_> {
    type Item = Result<GoroutineRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            DumpRecords::Debug2(p) => p.next(),
            DumpRecords::Debug1(p) => p.next(),
            DumpRecords::Proto(p) => p.next(),
        }
    }
}

/// An input opened by [`open`].
// One per input, moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Opened<'a> {
    /// A goroutine dump: iterate its records.
    Dump {
        records: DumpRecords<'a>,
        /// The input was gzip'd (error offsets are into the decompressed text).
        compressed: bool,
    },
    /// Prometheus `query_range` JSON, for the Prometheus backfill to parse: the reader yields
    /// the (decompressed, capped) JSON from its first byte.
    PrometheusQueryRange(Box<dyn Read + 'a>),
}

/// Detect the format of `reader` from its content, gunzipping transparently (within
/// [`ParseOptions::max_decompressed_bytes`]), and return a streaming record iterator.
pub fn open<'a>(reader: impl Read + 'a, opts: &ParseOptions) -> Result<Opened<'a>> {
    let input = detect_input(reader, opts)?;
    open_detected(input, opts)
}

/// A detected input: its format, a reader of its (decompressed, capped) content from the
/// first byte after a byte-order mark, whether it was gzip'd, and where that reader starts.
struct Input<'a> {
    detected: Detected,
    reader: Box<dyn Read + 'a>,
    compressed: bool,
    /// After a UTF-8 byte-order mark: offset 3 (positions stay those of the file).
    base: Position,
}

/// The UTF-8 byte-order mark some editors and Windows tools put first.
const BOM: &[u8] = b"\xef\xbb\xbf";

fn detect_input<'a>(reader: impl Read + 'a, opts: &ParseOptions) -> Result<Input<'a>> {
    let (detected, reader, compressed) = detect_raw(reader, opts)?;
    if detected == Detected::Proto || detected == Detected::PrometheusQueryRange {
        return Ok(Input {
            detected,
            reader,
            compressed,
            base: Position::default(),
        });
    }
    // Text: skip a byte-order mark, which would hide the first header (its line would not start
    // with `goroutine `).
    let mut reader = reader;
    let head = read_prefix(&mut reader, BOM.len())?;
    let (skip, head) = if head == BOM {
        (BOM.len() as u64, Vec::new())
    } else {
        (0, head)
    };
    Ok(Input {
        detected,
        reader: Box::new(Cursor::new(head).chain(reader)),
        compressed,
        base: Position {
            offset: skip,
            line: 0,
        },
    })
}

/// The format of `reader` and a reader of its (decompressed, capped) content from the first
/// byte, and whether it was gzip'd.
fn detect_raw<'a>(
    reader: impl Read + 'a,
    opts: &ParseOptions,
) -> Result<(Detected, Box<dyn Read + 'a>, bool)> {
    let mut reader: Box<dyn Read + 'a> = Box::new(reader);
    let prefix = read_prefix(&mut reader, DETECT_PREFIX)?;
    let mut detected = detect(&prefix)?;
    let mut reader: Box<dyn Read + 'a> = Box::new(Cursor::new(prefix).chain(reader));
    let mut compressed = false;
    if detected == Detected::Gzip {
        compressed = true;
        let mut gz: Box<dyn Read + 'a> = Box::new(Capped::gzip(
            flate2::read::MultiGzDecoder::new(reader),
            opts.max_decompressed_bytes,
        ));
        let prefix = read_prefix(&mut gz, DETECT_PREFIX)?;
        if prefix.is_empty() {
            return Err(ParseError::Empty);
        }
        detected = detect(&prefix)?;
        reader = Box::new(Cursor::new(prefix).chain(gz));
        // Only after a first gunzip: one layer is what servers and archivers produce; more is
        // refused rather than unwrapped (each layer would multiply the bomb).
        if detected == Detected::Gzip {
            return Err(ParseError::NotAGoroutineDump {
                reason: "gzip data inside gzip data".into(),
            });
        }
    }
    Ok((detected, reader, compressed))
}

fn open_detected<'a>(input: Input<'a>, opts: &ParseOptions) -> Result<Opened<'a>> {
    let Input {
        detected,
        reader,
        compressed,
        base,
    } = input;
    let records = match detected {
        // `detect_input` refuses gzip inside gzip; a first layer is already gone.
        Detected::Gzip => {
            return Err(ParseError::NotAGoroutineDump {
                reason: "gzip data inside gzip data".into(),
            });
        }
        Detected::PrometheusQueryRange => return Ok(Opened::PrometheusQueryRange(reader)),
        Detected::Proto => DumpRecords::Proto(ProtoParser::new(reader, opts)?),
        Detected::Debug1(_) => DumpRecords::Debug1(Debug1Parser::with_base(reader, opts, base)?),
        Detected::Debug2 => DumpRecords::Debug2(ParallelDebug2::with_base(reader, opts, base)?),
    };
    Ok(Opened::Dump {
        records,
        compressed,
    })
}

/// Parse a whole dump of any format (detected from content, gunzipped transparently) into an
/// aggregated [`Snapshot`], with the default [`ParseOptions`]. `source_name` is used only for
/// logging; callers add it to the error.
pub fn parse_snapshot(reader: impl Read, source_name: &str) -> Result<Snapshot> {
    parse_snapshot_with(reader, source_name, &ParseOptions::default())
}

/// [`parse_snapshot`] with explicit limits.
///
/// A dump cut after some records gives a snapshot of them flagged [`Snapshot::partial`]; any
/// other error fails the whole dump.
///
/// debug=2 text takes the aggregating fast path ([`aggregate`]: no record built per
/// goroutine, on [`ParseOptions::threads`] threads); the result is exactly that of
/// [`parse_snapshot_via_records`].
pub fn parse_snapshot_with(
    reader: impl Read,
    source_name: &str,
    opts: &ParseOptions,
) -> Result<Snapshot> {
    let input = detect_input(reader, opts)?;
    if input.detected != Detected::Debug2 {
        return snapshot_of(open_detected(input, opts)?, source_name, opts);
    }
    let compressed = input.compressed;
    let snap = parallel::snapshot_debug2(input.reader, opts, input.base)?;
    tracing::debug!(
        source = source_name,
        format = DumpFormat::Debug2.as_str(),
        compressed,
        groups = snap.groups.len(),
        goroutines = snap.total(),
        "Parsed goroutine dump."
    );
    Ok(snap)
}

/// [`parse_snapshot_with`] the long way: every record built (as [`open`] yields them), then
/// folded by [`Snapshot::builder`]. The reference the fast path is tested against (and the
/// benchmark's `ours-records` path); slower, same result.
pub fn parse_snapshot_via_records(
    reader: impl Read,
    source_name: &str,
    opts: &ParseOptions,
) -> Result<Snapshot> {
    snapshot_of(open(reader, opts)?, source_name, opts)
}

fn snapshot_of(opened: Opened<'_>, source_name: &str, opts: &ParseOptions) -> Result<Snapshot> {
    let Opened::Dump {
        mut records,
        compressed,
    } = opened
    else {
        return Err(ParseError::PrometheusQueryRange);
    };
    let mut b = Snapshot::builder(records.kind());
    b.set_format(records.format());
    if let Some(t) = records.declared_total() {
        b.set_declared_total(t);
    }
    if let Some(t) = records.time_nanos() {
        b.set_time_nanos(t);
    }
    let mut n: u64 = 0;
    for rec in records.by_ref() {
        match rec {
            Ok(rec) => {
                b.push(rec);
                n += 1;
            }
            Err(e) => match cut_of(&e) {
                // Records came before the cut: they are the snapshot, flagged partial.
                Some(cut) if n > 0 => {
                    b.set_partial(cut);
                    break;
                }
                _ => return Err(e),
            },
        }
    }
    if let DumpRecords::Debug2(p) = &records
        && n == 0
    {
        return Err(ParseError::NoGoroutines {
            bytes: p.bytes_read(),
            first_line: p.first_line().unwrap_or_default().to_owned(),
        });
    }
    tracing::debug!(
        source = source_name,
        format = records.format().as_str(),
        compressed,
        records = n,
        bytes = records.bytes_read(),
        "Parsed goroutine dump."
    );
    let mut snap = b.finish();
    if records.format() == DumpFormat::Debug2 {
        check_one_dump(&snap, opts)?;
    }
    for g in &mut snap.groups {
        aggregate::cap_ids(&mut g.goroutine_ids, opts.max_ids_per_group);
    }
    Ok(snap)
}

/// The cut an error describes, if it is one: the input stops inside a record (or, debug=1,
/// the records add up to fewer goroutines than the header says).
pub(crate) fn cut_of(e: &ParseError) -> Option<Cut> {
    match e {
        ParseError::Truncated { pos, what } if *what != debug1::MORE_THAN_TOTAL => Some(Cut {
            offset: pos.offset,
            line: pos.line,
            what: (*what).to_owned(),
        }),
        _ => None,
    }
}

/// A goroutine id appears at most once in one dump: a repeated id means the input holds two
/// dumps (two `runtime.Stack` outputs one after the other have no line between them that says
/// so). Checked where every id is kept ([`ParseOptions::max_ids_per_group`] unbounded, as
/// ingest and backfill parse); a summary that keeps 100 ids per stack cannot see it.
pub(crate) fn check_one_dump(snap: &Snapshot, opts: &ParseOptions) -> Result<()> {
    if opts.max_ids_per_group != usize::MAX {
        return Ok(());
    }
    let mut ids: Vec<u64> = snap
        .groups
        .iter()
        .flat_map(|g| g.goroutine_ids.iter().copied())
        .collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(ParseError::SeveralDumps {
            pos: None,
            why: format!("goroutine {} appears twice", w[0]),
        }),
        None => Ok(()),
    }
}

/// Read up to `n` bytes (fewer only at EOF).
fn read_prefix(r: &mut dyn Read, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(from_io(e, got as u64)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// A reader with a cap on what comes through it, the gzip-bomb guard of every decompressed
/// input (the parsers' and backfill's archives and JSON): past `limit` bytes it fails with
/// [`LimitExceeded`]. Over a decompressor ([`Capped::gzip`]) its read errors are marked as the
/// gzip layer's ([`GzipFailure`]), so they are reported as such.
pub(crate) struct Capped<R> {
    inner: R,
    produced: u64,
    limit: u64,
    gzip: bool,
}

impl<R> Capped<R> {
    pub(crate) fn gzip(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            produced: 0,
            limit,
            gzip: true,
        }
    }

    pub(crate) fn plain(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            produced: 0,
            limit,
            gzip: false,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted || !self.gzip => return Err(e),
            Err(e) => {
                return Err(std::io::Error::other(GzipFailure {
                    decompressed: self.produced,
                    source: e,
                }));
            }
        };
        self.produced += n as u64;
        if self.produced > self.limit {
            return Err(std::io::Error::other(LimitExceeded { limit: self.limit }));
        }
        Ok(n)
    }
}
