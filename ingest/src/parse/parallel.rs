//! debug=2 on several cores.
//!
//! A blank line always leaves the debug=2 state machine between records (it ends the record in
//! progress, and outside a record it means nothing). So the input can be cut right after any
//! blank line into pieces that parse independently, to the same records and the same errors at
//! the same positions as one sequential pass: each piece is parsed with the byte offset and line
//! number of its first byte. The calling thread reads and cuts (the reader need not be `Send`),
//! worker threads parse, and records come back in input order.
//!
//! Two things are not local to a piece, and the pieces do not see them: the per-thread sections
//! of a `GOTRACEBACK=crash` dump (after a `-----` line, records repeat goroutines listed above),
//! and a line that starts a second dump (`SIGQUIT: quit` after goroutines). A piece holding a
//! `-----` line is not dispatched: it and the rest of the input are parsed sequentially. A piece
//! reports the first dump-start line it meets before any record ([`PieceOut::first_dump_start`]);
//! the caller turns it into [`ParseError::SeveralDumps`] if goroutines came before.
//!
//! Memory stays bounded: at most `in_flight` pieces of about [`PIECE`] bytes (and their parsed
//! records) exist at once. Input without a blank line for [`MAX_CARRY`] bytes cannot be cut, so
//! the rest of it is parsed sequentially on the calling thread (bounded as before). Small inputs
//! (one piece) never start a thread.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use leakhound_schemas::model::{GoroutineRecord, Snapshot};

use super::ParseOptions;
use super::aggregate::{AggSink, Aggregate, Partial, PieceOut, finish, parse_stretch};
use super::debug2::{Debug2Parser, Machine, RecordSink};
use super::error::{ParseError, Position, Result, from_io};
use super::lines::{LineReader, SliceLines};

/// Target size of one piece (smaller in tests, to get many pieces from small inputs).
pub const PIECE: usize = if cfg!(test) { 16 << 10 } else { 1 << 20 };
/// Bytes without a blank line after which the input is no longer cut.
pub const MAX_CARRY: usize = if cfg!(test) { 256 << 10 } else { 32 << 20 };

/// A piece of the input: whole lines, starting right after a blank line (or at the start).
pub(crate) struct Job {
    seq: u64,
    base: Position,
    data: Vec<u8>,
}

/// What a worker does with a piece. One value per worker thread, kept across its pieces.
pub(crate) trait PieceParser: Default + Send + 'static {
    type Out: Send + 'static;
    fn parse(&mut self, data: &[u8], base: Position, opts: &ParseOptions) -> Self::Out;
    /// The output for a piece whose parse panicked (a bug; reported as a failed thread).
    fn failed(base: Position) -> Self::Out;
}

/// Threads to use for `opts.threads`.
fn thread_count(opts: &ParseOptions) -> usize {
    match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        n => n,
    }
}

/// The input cut into pieces at blank lines, parsed by worker threads, outputs handed back in
/// input order; what cannot be cut (or everything, on one thread or for one piece) is left to
/// the caller as [`Pieces::rest`].
pub(crate) struct Pieces<'a, P: PieceParser> {
    reader: Option<Box<dyn Read + 'a>>,
    /// Read, not yet dispatched; starts right after a blank line (or at the start).
    carry: Vec<u8>,
    /// Position of `carry[0]`.
    base: Position,
    jobs: Option<mpsc::SyncSender<Job>>,
    results: Option<mpsc::Receiver<Parsed<P::Out>>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    next_seq: u64,
    want: u64,
    ready: BTreeMap<u64, P::Out>,
    /// `carry[..scanned]` holds no blank line (spares rescanning it).
    scanned: usize,
    /// Buffers of parsed pieces, handed back by the workers for the next pieces: no fresh
    /// pages (faults, zeroing) per piece, and a fixed footprint.
    spare: Vec<Vec<u8>>,
}

/// A worker's output for the piece `seq`, and the piece's buffer to reuse.
type Parsed<T> = (u64, T, Vec<u8>);

impl<'a, P: PieceParser> Pieces<'a, P> {
    /// Start on `reader`. Reads the first piece; if that is the whole input, or only one thread
    /// is allowed, no thread is started and everything is [`Pieces::rest`].
    pub(crate) fn new(
        reader: Box<dyn Read + 'a>,
        opts: &ParseOptions,
        base: Position,
    ) -> Result<Self> {
        let threads = thread_count(opts);
        let mut me = Pieces {
            reader: Some(reader),
            carry: Vec::new(),
            base,
            jobs: None,
            results: None,
            workers: Vec::new(),
            in_flight: threads * 2,
            next_seq: 0,
            want: 0,
            ready: BTreeMap::new(),
            scanned: 0,
            spare: Vec::new(),
        };
        let at_eof = if threads > 1 {
            me.read_more(PIECE)?
        } else {
            true
        };
        if threads <= 1 || at_eof {
            return Ok(me);
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(me.in_flight);
        let (done_tx, done_rx) = mpsc::channel::<Parsed<P::Out>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let (rx, tx, opts) = (Arc::clone(&job_rx), done_tx.clone(), opts.clone());
            me.workers
                .push(std::thread::spawn(move || worker::<P>(&rx, &tx, &opts)));
        }
        me.jobs = Some(job_tx);
        me.results = Some(done_rx);
        Ok(me)
    }

    /// Position just past what was dispatched to workers.
    pub(crate) fn base(&self) -> Position {
        self.base
    }

    /// Append up to `n` more bytes to `carry`. Returns whether the input is exhausted.
    fn read_more(&mut self, n: usize) -> Result<bool> {
        let Some(r) = self.reader.as_mut() else {
            return Ok(true);
        };
        let start = self.carry.len();
        self.carry.reserve(n);
        // `read_to_end` reads into the spare capacity (without zeroing it first, for a `File`),
        // and stops at EOF or after `n` bytes.
        let res = r.take(n as u64).read_to_end(&mut self.carry);
        let got = self.carry.len() - start;
        match res {
            Ok(_) => Ok(got < n),
            Err(e) => Err(from_io(e, self.base.offset + (start + got) as u64)),
        }
    }

    /// Cut and dispatch pieces until enough are in flight or the input is all dispatched.
    fn dispatch(&mut self) -> Result<()> {
        while self.jobs.is_some() && ((self.next_seq - self.want) as usize) < self.in_flight {
            let mut at_eof = self.reader.is_none();
            // Read until there is a blank line to cut after (or the end).
            let cut = loop {
                if at_eof {
                    break Some(self.carry.len());
                }
                if self.carry.len() >= PIECE {
                    let from = self.scanned.saturating_sub(2);
                    if let Some(i) = last_blank_line_end(&self.carry[from..]) {
                        break Some(from + i);
                    }
                    self.scanned = self.carry.len();
                }
                if self.carry.len() >= MAX_CARRY {
                    break None;
                }
                at_eof = self.read_more(PIECE)?;
                if at_eof {
                    self.reader = None;
                }
            };
            let Some(cut) = cut else {
                // No blank line for MAX_CARRY bytes: the rest goes sequential, once the pieces
                // before it are out.
                self.jobs = None;
                return Ok(());
            };
            if cut == 0 || has_separator(&self.carry[..cut]) {
                // Nothing to cut, or GOTRACEBACK=crash thread sections: sequential from here.
                self.jobs = None;
                return Ok(());
            }
            self.scanned = 0;
            let mut rest = self.spare.pop().unwrap_or_default();
            rest.clear();
            rest.extend_from_slice(&self.carry[cut..]);
            self.carry.truncate(cut);
            let data = std::mem::replace(&mut self.carry, rest);
            let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
            let job = Job {
                seq: self.next_seq,
                base: self.base,
                data,
            };
            self.base.offset += cut as u64;
            self.base.line += lines;
            self.next_seq += 1;
            let sent = self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
            if !sent {
                return Err(worker_failed(self.base));
            }
            if at_eof && self.carry.is_empty() {
                self.jobs = None;
            }
        }
        Ok(())
    }

    /// The next piece's output, in input order; `None` once every piece is out (then see
    /// [`Pieces::rest`]). After an error, nothing more is to be asked.
    pub(crate) fn next_piece(&mut self) -> Option<Result<P::Out>> {
        if let Err(e) = self.dispatch() {
            return Some(Err(e));
        }
        if self.want >= self.next_seq {
            return None;
        }
        let Some(rx) = self.results.as_ref() else {
            return Some(Err(worker_failed(self.base)));
        };
        loop {
            if let Some(d) = self.ready.remove(&self.want) {
                self.want += 1;
                return Some(Ok(d));
            }
            match rx.recv() {
                Ok((seq, d, buf)) => {
                    self.ready.insert(seq, d);
                    if self.spare.len() < self.in_flight {
                        self.spare.push(buf);
                    }
                }
                Err(_) => return Some(Err(worker_failed(self.base))),
            }
        }
    }

    /// What is left to parse on the calling thread once [`Pieces::next_piece`] is `None`: the
    /// input that could not be cut (or all of it), with the position it starts at.
    pub(crate) fn rest(&mut self) -> Option<(Box<dyn Read + 'a>, Position)> {
        let carry = std::mem::take(&mut self.carry);
        let rest: Box<dyn Read + 'a> = match self.reader.take() {
            Some(r) => Box::new(Cursor::new(carry).chain(r)),
            None if carry.is_empty() => return None,
            None => Box::new(Cursor::new(carry)),
        };
        Some((rest, self.base))
    }
}

impl<P: PieceParser> Drop for Pieces<'_, P> {
    fn drop(&mut self) {
        // Closing the job channel ends the workers after their current piece.
        self.jobs = None;
        self.results = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker<P: PieceParser>(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: &mpsc::Sender<Parsed<P::Out>>,
    opts: &ParseOptions,
) {
    let mut parser = P::default();
    loop {
        let job = {
            let rx = jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let out =
            std::panic::catch_unwind(AssertUnwindSafe(|| parser.parse(&job.data, job.base, opts)))
                .unwrap_or_else(|_| {
                    parser = P::default();
                    P::failed(job.base)
                });
        if done.send((job.seq, out, job.data)).is_err() {
            return;
        }
    }
}

fn worker_failed(pos: Position) -> ParseError {
    ParseError::Io {
        offset: pos.offset,
        source: std::io::Error::other("a debug=2 parser thread failed"),
    }
}

/// A piece's records (up to its first error) and its first non-blank line.
#[derive(Default)]
struct RecordPieces;

struct Done {
    records: Vec<Result<GoroutineRecord>>,
    first_line: Option<String>,
    first_dump_start: Option<Position>,
}

impl PieceParser for RecordPieces {
    type Out = Done;

    fn parse(&mut self, data: &[u8], base: Position, opts: &ParseOptions) -> Done {
        let lines = SliceLines::new(data, opts.max_line_bytes, base.offset, base.line);
        let mut p = Machine::new(lines, opts, RecordSink::default());
        let mut records = Vec::new();
        while let Some(r) = p.next() {
            let err = r.is_err();
            records.push(r);
            if err {
                break;
            }
        }
        Done {
            records,
            first_line: p.first_line().map(str::to_owned),
            first_dump_start: p.first_dump_start(),
        }
    }

    fn failed(base: Position) -> Done {
        Done {
            records: vec![Err(worker_failed(base))],
            first_line: None,
            first_dump_start: None,
        }
    }
}

/// Iterator over the records of a debug=2 dump, parsed by `threads` workers. Same items, in
/// the same order, as [`Debug2Parser`] over the same input.
pub struct ParallelDebug2<'a> {
    pieces: Pieces<'a, RecordPieces>,
    opts: ParseOptions,
    current: std::vec::IntoIter<Result<GoroutineRecord>>,
    /// Sequential parser for what cannot be cut (or for everything, on one core / one piece).
    tail: Option<Debug2Parser<Box<dyn Read + 'a>>>,
    first_line: Option<String>,
    records: u64,
    done: bool,
}

impl<'a> ParallelDebug2<'a> {
    /// Start parsing `reader`. Reads the first piece; if that is the whole input, or only one
    /// thread is allowed, everything is parsed on the calling thread.
    pub fn new(reader: Box<dyn Read + 'a>, opts: &ParseOptions) -> Result<Self> {
        Self::with_base(reader, opts, Position::default())
    }

    /// [`ParallelDebug2::new`] over input whose first byte is at `base` (after a byte-order
    /// mark): positions are those of the whole.
    pub(crate) fn with_base(
        reader: Box<dyn Read + 'a>,
        opts: &ParseOptions,
        base: Position,
    ) -> Result<Self> {
        Ok(ParallelDebug2 {
            pieces: Pieces::new(reader, opts, base)?,
            opts: opts.clone(),
            current: Vec::new().into_iter(),
            tail: None,
            first_line: None,
            records: 0,
            done: false,
        })
    }

    /// Goroutine records yielded so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.tail
            .as_ref()
            .map_or(self.pieces.base().offset, |t| t.bytes_read())
    }

    /// The first non-blank line of the input, for error messages about text that holds no
    /// dump.
    pub fn first_line(&self) -> Option<&str> {
        self.first_line
            .as_deref()
            .or_else(|| self.tail.as_ref().and_then(|t| t.first_line()))
    }
}

impl Iterator for ParallelDebug2<'_> {
    type Item = Result<GoroutineRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some(item) = self.current.next() {
                match &item {
                    Ok(_) => self.records += 1,
                    Err(_) => self.done = true,
                }
                return Some(item);
            }
            if self.tail.is_none() {
                match self.pieces.next_piece() {
                    Some(Ok(d)) => {
                        if let Some(pos) = d.first_dump_start
                            && self.records > 0
                        {
                            self.done = true;
                            return Some(Err(second_dump(pos)));
                        }
                        if self.first_line.is_none() {
                            self.first_line = d.first_line;
                        }
                        self.current = d.records.into_iter();
                        continue;
                    }
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => match self.pieces.rest() {
                        Some((rest, base)) => {
                            let mut tail = Debug2Parser::with_base(rest, &self.opts, base);
                            tail.set_seen_before(self.records > 0);
                            self.tail = Some(tail);
                        }
                        None => {
                            self.done = true;
                            return None;
                        }
                    },
                }
            }
            let Some(t) = self.tail.as_mut() else {
                self.done = true;
                return None;
            };
            let item = t.next();
            match &item {
                Some(Ok(_)) => self.records += 1,
                Some(Err(_)) | None => self.done = true,
            }
            if self.first_line.is_none() {
                self.first_line = t.first_line().map(str::to_owned);
            }
            return item;
        }
    }
}

/// A worker's aggregating sink, kept (with its caches) across its pieces.
#[derive(Default)]
struct AggPieces {
    sink: Option<AggSink>,
}

impl PieceParser for AggPieces {
    type Out = PieceOut;

    fn parse(&mut self, data: &[u8], base: Position, opts: &ParseOptions) -> PieceOut {
        let sink = self.sink.take().unwrap_or_default();
        let lines = SliceLines::new(data, opts.max_line_bytes, base.offset, base.line);
        let (out, _, sink) = parse_stretch(lines, opts, sink, false);
        self.sink = Some(sink);
        out
    }

    fn failed(base: Position) -> PieceOut {
        PieceOut {
            part: Partial::default(),
            error: Some(worker_failed(base)),
            first_line: None,
            first_dump_start: None,
        }
    }
}

/// A debug=2 dump into a snapshot through the aggregating fast path, on
/// [`ParseOptions::threads`] threads: the same snapshot, or the same error, as
/// [`ParallelDebug2`]'s records folded by `SnapshotBuilder`.
pub(crate) fn snapshot_debug2(
    reader: Box<dyn Read + '_>,
    opts: &ParseOptions,
    base: Position,
) -> Result<Snapshot> {
    let mut pieces = Pieces::<AggPieces>::new(reader, opts, base)?;
    let mut agg = Aggregate::new(opts);
    let mut first_line = None;
    let mut cut = None;
    while let Some(out) = pieces.next_piece() {
        let out = out?;
        if let Some(pos) = out.first_dump_start
            && agg.records() > 0
        {
            return Err(second_dump(pos));
        }
        if let Some(e) = out.error {
            // A cut ends the input: the pieces are cut at blank lines, so only the last
            // can end mid-record.
            cut = Some(e);
            agg.merge(out.part);
            break;
        }
        if first_line.is_none() {
            first_line = out.first_line;
        }
        agg.merge(out.part);
    }
    let mut bytes = pieces.base().offset;
    if cut.is_none()
        && let Some((rest, base)) = pieces.rest()
    {
        let lines = LineReader::with_base(rest, opts.max_line_bytes, base.offset, base.line);
        let (out, read, _) = parse_stretch(lines, opts, AggSink::default(), agg.records() > 0);
        if let Some(pos) = out.first_dump_start
            && agg.records() > 0
        {
            return Err(second_dump(pos));
        }
        if first_line.is_none() {
            first_line = out.first_line;
        }
        cut = out.error;
        agg.merge(out.part);
        bytes = read;
    }
    finish(agg, bytes, first_line, cut, opts)
}

fn second_dump(pos: Position) -> ParseError {
    ParseError::SeveralDumps {
        pos: Some(pos),
        why: "a second dump starts here, after goroutines of a first one".into(),
    }
}

/// Whether `piece` holds a `-----` line (GOTRACEBACK=crash thread sections follow it).
fn has_separator(piece: &[u8]) -> bool {
    piece.starts_with(b"-----") || memchr::memmem::find(piece, b"\n-----").is_some()
}

/// The index just past the last blank line (`\n\n` or `\n\r\n`) in `b`, if any. From the end,
/// line by line: a dump has one every few hundred bytes. (Two reverse substring searches, one
/// of them for `\n\r\n`, went through the whole piece of an LF dump: 18% of the parse.)
fn last_blank_line_end(b: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'\n', b)
        .find(|&i| {
            let line = &b[..i];
            line.ends_with(b"\n") || line.ends_with(b"\n\r")
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_line_ends() {
        assert_eq!(last_blank_line_end(b"a\n\nb\nc\n"), Some(3));
        assert_eq!(last_blank_line_end(b"a\r\n\r\nb\r\n"), Some(5));
        assert_eq!(last_blank_line_end(b"a\nb\n"), None);
        assert_eq!(last_blank_line_end(b"a\n\r\nb\n\nc"), Some(7));
        assert_eq!(last_blank_line_end(b"a\n\nb\n\r\nc\r"), Some(7));
        assert_eq!(last_blank_line_end(b"\nab"), None);
        assert_eq!(last_blank_line_end(b"\n\n"), Some(2));
    }

    proptest::proptest! {
        /// The same cut as two reverse substring searches.
        #[test]
        fn blank_line_end_is_the_last(
            b in proptest::collection::vec(proptest::sample::select(&b"a\r\n"[..]), 0..200),
        ) {
            let lf = memchr::memmem::rfind(&b, b"\n\n").map(|i| i + 2);
            let crlf = memchr::memmem::rfind(&b, b"\n\r\n").map(|i| i + 3);
            proptest::prop_assert_eq!(last_blank_line_end(&b), lf.max(crlf));
        }
    }
}
