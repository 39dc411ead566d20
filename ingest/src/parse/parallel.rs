//! debug=2 on several cores.
//!
//! A blank line always leaves the debug=2 state machine between records (it ends the record in
//! progress, and outside a record it means nothing). So the input can be cut right after any
//! blank line into pieces that parse independently, to the same records and the same errors at
//! the same positions as one sequential pass: each piece is parsed with the byte offset and line
//! number of its first byte. The calling thread reads and cuts (the reader need not be `Send`),
//! worker threads parse, and records come back in input order.
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

use leakhound_schemas::model::GoroutineRecord;

use super::ParseOptions;
use super::debug2::Debug2Parser;
use super::error::{ParseError, Position, Result, from_io};

/// Target size of one piece (smaller in tests, to get many pieces from small inputs).
pub const PIECE: usize = if cfg!(test) { 16 << 10 } else { 1 << 20 };
/// Bytes without a blank line after which the input is no longer cut.
pub const MAX_CARRY: usize = if cfg!(test) { 256 << 10 } else { 32 << 20 };

struct Job {
    seq: u64,
    base: Position,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    records: Vec<Result<GoroutineRecord>>,
    first_line: Option<String>,
}

/// Iterator over the records of a debug=2 dump, parsed by `threads` workers. Same items, in
/// the same order, as [`Debug2Parser`] over the same input.
pub struct ParallelDebug2<'a> {
    reader: Option<Box<dyn Read + 'a>>,
    opts: ParseOptions,
    /// Read, not yet dispatched; starts right after a blank line (or at the start).
    carry: Vec<u8>,
    /// Position of `carry[0]`.
    base: Position,
    jobs: Option<mpsc::SyncSender<Job>>,
    results: Option<mpsc::Receiver<Done>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    next_seq: u64,
    want: u64,
    ready: BTreeMap<u64, Done>,
    current: std::vec::IntoIter<Result<GoroutineRecord>>,
    /// Sequential parser for what cannot be cut (or for everything, on one core / one piece).
    tail: Option<Debug2Parser<Box<dyn Read + 'a>>>,
    /// The input stopped being cuttable: parse the rest sequentially once nothing is in flight.
    go_sequential_later: bool,
    /// `carry[..scanned]` holds no blank line (spares rescanning it).
    scanned: usize,
    first_line: Option<String>,
    records: u64,
    done: bool,
}

impl<'a> ParallelDebug2<'a> {
    /// Start parsing `reader`. Reads the first piece; if that is the whole input, or only one
    /// thread is allowed, everything is parsed on the calling thread.
    pub fn new(reader: Box<dyn Read + 'a>, opts: &ParseOptions) -> Result<Self> {
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        };
        let mut me = ParallelDebug2 {
            reader: Some(reader),
            opts: opts.clone(),
            carry: Vec::new(),
            base: Position::default(),
            jobs: None,
            results: None,
            workers: Vec::new(),
            in_flight: threads * 2,
            next_seq: 0,
            want: 0,
            ready: BTreeMap::new(),
            current: Vec::new().into_iter(),
            tail: None,
            go_sequential_later: false,
            scanned: 0,
            first_line: None,
            records: 0,
            done: false,
        };
        let at_eof = if threads > 1 {
            me.read_more(PIECE)?
        } else {
            true
        };
        if threads <= 1 || at_eof {
            me.go_sequential();
            return Ok(me);
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(me.in_flight);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let (rx, tx, opts) = (Arc::clone(&job_rx), done_tx.clone(), opts.clone());
            me.workers
                .push(std::thread::spawn(move || worker(&rx, &tx, &opts)));
        }
        me.jobs = Some(job_tx);
        me.results = Some(done_rx);
        Ok(me)
    }

    /// Goroutine records yielded so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.tail
            .as_ref()
            .map_or(self.base.offset, |t| t.bytes_read())
    }

    /// The first non-blank line of the input, for error messages about text that holds no
    /// dump.
    pub fn first_line(&self) -> Option<&str> {
        self.first_line
            .as_deref()
            .or_else(|| self.tail.as_ref().and_then(|t| t.first_line()))
    }

    /// Append up to `n` more bytes to `carry`. Returns whether the input is exhausted.
    fn read_more(&mut self, n: usize) -> Result<bool> {
        let Some(r) = self.reader.as_mut() else {
            return Ok(true);
        };
        let start = self.carry.len();
        self.carry.resize(start + n, 0);
        let mut got = 0;
        let res = loop {
            match r.read(&mut self.carry[start + got..]) {
                Ok(0) => break Ok(true),
                Ok(k) => {
                    got += k;
                    if got == n {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    break Err(from_io(e, self.base.offset + (start + got) as u64));
                }
            }
        };
        self.carry.truncate(start + got);
        res
    }

    /// Parse the rest (`carry`, then the reader) on this thread.
    fn go_sequential(&mut self) {
        let carry = std::mem::take(&mut self.carry);
        let rest: Box<dyn Read + 'a> = match self.reader.take() {
            Some(r) => Box::new(Cursor::new(carry).chain(r)),
            None => Box::new(Cursor::new(carry)),
        };
        self.tail = Some(Debug2Parser::with_base(rest, &self.opts, self.base));
    }

    /// Cut and dispatch pieces until enough are in flight or the input is all dispatched.
    fn dispatch(&mut self) -> Result<()> {
        while self.tail.is_none()
            && self.jobs.is_some()
            && ((self.next_seq - self.want) as usize) < self.in_flight
        {
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
                // before it are out (`next` only consults `tail` with nothing in flight).
                self.jobs = None;
                self.go_sequential_later = true;
                return Ok(());
            };
            if cut == 0 {
                self.jobs = None;
                return Ok(());
            }
            self.scanned = 0;
            let rest = self.carry.split_off(cut);
            let data = std::mem::replace(&mut self.carry, rest);
            let lines = data.iter().filter(|&&c| c == b'\n').count() as u64;
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
            if let Err(e) = self.dispatch() {
                self.done = true;
                return Some(Err(e));
            }
            if self.want < self.next_seq {
                let Some(rx) = self.results.as_ref() else {
                    self.done = true;
                    return Some(Err(worker_failed(self.base)));
                };
                while !self.ready.contains_key(&self.want) {
                    match rx.recv() {
                        Ok(d) => {
                            self.ready.insert(d.seq, d);
                        }
                        Err(_) => {
                            self.done = true;
                            return Some(Err(worker_failed(self.base)));
                        }
                    }
                }
                if let Some(d) = self.ready.remove(&self.want) {
                    if self.first_line.is_none() {
                        self.first_line = d.first_line;
                    }
                    self.current = d.records.into_iter();
                }
                self.want += 1;
                continue;
            }
            if self.go_sequential_later {
                self.go_sequential_later = false;
                self.go_sequential();
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

impl Drop for ParallelDebug2<'_> {
    fn drop(&mut self) {
        // Closing the job channel ends the workers after their current piece.
        self.jobs = None;
        self.results = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A debug=2 dump into a snapshot through the aggregating fast path.
pub(crate) fn snapshot_debug2(
    reader: Box<dyn Read + '_>,
    opts: &ParseOptions,
) -> Result<leakhound_schemas::model::Snapshot> {
    super::aggregate::snapshot_sequential(reader, opts)
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>, done: &mpsc::Sender<Done>, opts: &ParseOptions) {
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
        let seq = job.seq;
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| parse_piece(&job, opts)))
            .unwrap_or_else(|_| Done {
                seq,
                records: vec![Err(worker_failed(job.base))],
                first_line: None,
            });
        if done.send(out).is_err() {
            return;
        }
    }
}

fn parse_piece(job: &Job, opts: &ParseOptions) -> Done {
    let mut p = Debug2Parser::with_base(&job.data[..], opts, job.base);
    let mut records = Vec::new();
    for r in p.by_ref() {
        let err = r.is_err();
        records.push(r);
        if err {
            break;
        }
    }
    Done {
        seq: job.seq,
        records,
        first_line: p.first_line().map(str::to_owned),
    }
}

fn worker_failed(pos: Position) -> ParseError {
    ParseError::Io {
        offset: pos.offset,
        source: std::io::Error::other("a debug=2 parser thread failed"),
    }
}

/// The index just past the last blank line (`\n\n` or `\n\r\n`) in `b`, if any.
fn last_blank_line_end(b: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::rfind(b, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::rfind(b, b"\n\r\n").map(|i| i + 3);
    lf.max(crlf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_line_ends() {
        assert_eq!(last_blank_line_end(b"a\n\nb\nc\n"), Some(3));
        assert_eq!(last_blank_line_end(b"a\r\n\r\nb\r\n"), Some(5));
        assert_eq!(last_blank_line_end(b"a\nb\n"), None);
    }
}
