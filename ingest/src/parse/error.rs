//! The parsers' one error type.
//!
//! Every variant that is about a place in the input carries a [`Position`]: the byte offset and
//! the 1-based line number of the line at fault. For gzip'd input, offsets count bytes of the
//! *decompressed* stream (that is the text a person opens to look at the problem).

use std::fmt;

/// Where in the (decompressed) input an error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset of the start of the offending line (0-based).
    pub offset: u64,
    /// Line number (1-based). 0 for binary formats, where only the offset means anything.
    pub line: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "byte offset {}", self.offset)
        } else {
            write!(f, "line {} (byte offset {})", self.line, self.offset)
        }
    }
}

/// `Result` with [`ParseError`].
pub type Result<T, E = ParseError> = std::result::Result<T, E>;

/// Everything that can go wrong reading a goroutine dump. No input makes a parser panic: every
/// malformed, truncated, oversized or foreign input ends up here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Reading the underlying stream failed.
    #[error("read failed at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    /// The input has no bytes at all.
    #[error("the input is empty (0 bytes): nothing to parse")]
    Empty,

    /// An HTML document where a dump was expected: typically a proxy's or the app's error page.
    #[error(
        "looks like an HTML page (HTTP error page?), not a goroutine dump; check the URL and \
         that the endpoint serves /debug/pprof/goroutine"
    )]
    Html,

    /// Binary garbage, or text of a kind that is certainly not a dump.
    #[error("not a goroutine dump: {reason}")]
    NotAGoroutineDump { reason: String },

    /// A pprof profile of another kind (heap, mutex, threadcreate, ...).
    #[error(
        "this is a pprof `{profile}` profile, not a goroutine profile; fetch \
         /debug/pprof/goroutine instead"
    )]
    OtherProfile { profile: String },

    /// Prometheus `query_range` JSON: not a dump, but the backfill source that reads
    /// Prometheus history handles it.
    #[error(
        "this is Prometheus query_range JSON, not a goroutine dump; import it as Prometheus history"
    )]
    PrometheusQueryRange,

    /// Text input without a single `goroutine N [state]:` header.
    #[error(
        "not a goroutine dump: no `goroutine N [state]:` header in {bytes} bytes of text \
         (first line: {first_line:?})"
    )]
    NoGoroutines { bytes: u64, first_line: String },

    /// The gzip stream is corrupt.
    #[error("invalid gzip data after {decompressed} decompressed bytes: {source}")]
    Gzip {
        decompressed: u64,
        #[source]
        source: std::io::Error,
    },

    /// More decompressed bytes than [`super::ParseOptions::max_decompressed_bytes`].
    #[error(
        "decompressed size exceeds {limit} bytes (gzip bomb?); raise the decompression limit if \
         this dump is genuine"
    )]
    DecompressedTooLarge { limit: u64 },

    /// A single line longer than [`super::ParseOptions::max_line_bytes`].
    #[error("line longer than {limit} bytes at {pos}: not a goroutine dump line")]
    LineTooLong { pos: Position, limit: usize },

    /// A single record (one goroutine, or one debug=1 stack) over the configured size.
    #[error("goroutine record starting at {pos} is larger than {limit} ({what})")]
    RecordTooLarge {
        pos: Position,
        limit: usize,
        what: &'static str,
    },

    /// The input stops in the middle of a record.
    #[error("the dump is truncated: {what} at {pos}")]
    Truncated { pos: Position, what: &'static str },

    /// A line that the format does not allow where it stands.
    #[error("malformed {format} dump at {pos}: {what}: {line:?}")]
    Malformed {
        format: &'static str,
        pos: Position,
        what: &'static str,
        /// The start of the offending line (at most 200 bytes, lossily decoded).
        line: String,
    },

    /// A number that cannot be real (a count over the limit, an id that overflows, ...).
    #[error("absurd {what} {value} at {pos} (limit {limit})")]
    AbsurdNumber {
        pos: Position,
        what: &'static str,
        value: String,
        limit: u64,
    },

    /// The sum of goroutine counts overflows.
    #[error("goroutine count overflows at {pos}")]
    CountOverflow { pos: Position },

    /// One input holding more than one dump (a log with two SIGQUIT dumps, two debug=1
    /// profiles one after the other, two `runtime.Stack` outputs): their goroutines must not
    /// be counted as one snapshot.
    #[error(
        "this input holds more than one goroutine dump{}: {why}; split it into one file per dump",
        pos.map(|p| format!(" (the second starts at {p})")).unwrap_or_default()
    )]
    SeveralDumps { pos: Option<Position>, why: String },

    /// The profile.proto could not be decoded.
    #[error("invalid profile.proto ({len} bytes): {reason}")]
    Proto { len: u64, reason: String },
}

impl ParseError {
    /// Whether reading the same input again could succeed. Only I/O failures of the underlying
    /// stream (a dropped connection while scraping) qualify; every other error is a property of
    /// the bytes and repeats.
    pub fn is_retryable(&self) -> bool {
        match self {
            ParseError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    /// The position the error refers to, where it has one.
    pub fn position(&self) -> Option<Position> {
        match self {
            ParseError::LineTooLong { pos, .. }
            | ParseError::RecordTooLarge { pos, .. }
            | ParseError::Truncated { pos, .. }
            | ParseError::Malformed { pos, .. }
            | ParseError::AbsurdNumber { pos, .. }
            | ParseError::CountOverflow { pos } => Some(*pos),
            ParseError::SeveralDumps { pos, .. } => *pos,
            ParseError::Io { offset, .. } => Some(Position {
                offset: *offset,
                line: 0,
            }),
            _ => None,
        }
    }

    pub(crate) fn malformed(
        format: &'static str,
        pos: Position,
        what: &'static str,
        line: &[u8],
    ) -> Self {
        ParseError::Malformed {
            format,
            pos,
            what,
            line: excerpt(line),
        }
    }
}

/// The first 200 bytes of a line, for error messages.
pub(crate) fn excerpt(line: &[u8]) -> String {
    let cut = line.len().min(200);
    let mut s = String::from_utf8_lossy(&line[..cut]).into_owned();
    if cut < line.len() {
        s.push('…');
    }
    s
}

/// Marker carried inside an `io::Error` by the decompression cap, so that the parsers can turn
/// it back into [`ParseError::DecompressedTooLarge`] whatever layer it surfaces through.
#[derive(Debug)]
pub(crate) struct LimitExceeded {
    pub(crate) limit: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decompressed size exceeds {} bytes (gzip bomb?)",
            self.limit
        )
    }
}

impl std::error::Error for LimitExceeded {}

/// Marker for errors of the gzip decoder, so they are reported as [`ParseError::Gzip`].
#[derive(Debug)]
pub(crate) struct GzipFailure {
    pub(crate) decompressed: u64,
    pub(crate) source: std::io::Error,
}

impl fmt::Display for GzipFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gzip: {}", self.source)
    }
}

impl std::error::Error for GzipFailure {}

/// Turn an `io::Error` from the input stream into the right [`ParseError`].
pub(crate) fn from_io(err: std::io::Error, offset: u64) -> ParseError {
    if err
        .get_ref()
        .is_some_and(|e| e.downcast_ref::<LimitExceeded>().is_some())
    {
        let limit = err
            .into_inner()
            .and_then(|e| e.downcast::<LimitExceeded>().ok())
            .map_or(0, |l| l.limit);
        return ParseError::DecompressedTooLarge { limit };
    }
    if err
        .get_ref()
        .is_some_and(|e| e.downcast_ref::<GzipFailure>().is_some())
    {
        if let Some(Ok(g)) = err.into_inner().map(|e| e.downcast::<GzipFailure>()) {
            return ParseError::Gzip {
                decompressed: g.decompressed,
                source: g.source,
            };
        }
        return ParseError::Gzip {
            decompressed: offset,
            source: std::io::Error::other("corrupt gzip stream"),
        };
    }
    ParseError::Io {
        offset,
        source: err,
    }
}
