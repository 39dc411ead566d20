//! A line reader with a fixed memory bound, for the text formats.
//!
//! `BufRead::read_until` would grow its buffer to the longest line, so one 10 GB line (a
//! corrupted file, a binary blob) would take 10 GB. Here a line longer than the limit is
//! returned cut at the limit with `overlong = true` and its remainder is skipped, so memory
//! stays at `limit + chunk` whatever the input. Lines are borrowed from an internal buffer:
//! no allocation per line.

use std::io::Read;

use super::error::{Position, Result, from_io};

/// Bytes read from the input per `read` call. Large enough that the per-call overhead
/// vanishes, small enough to stay in L2 cache.
const CHUNK: usize = 256 * 1024;

/// One line, without its `\n` (and without a `\r` before it).
#[derive(Debug)]
pub(crate) struct Line<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: Position,
    /// `false` for a last line that ends at EOF without `\n`.
    pub(crate) terminated: bool,
    /// The line was longer than the limit: `bytes` holds only its first `limit` bytes.
    pub(crate) overlong: bool,
}

pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    start: usize,
    /// End of valid data in `buf`.
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// Lines returned so far.
    line_no: u64,
    max_line: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub(crate) fn new(inner: R, max_line: usize) -> Self {
        let max_line = max_line.max(1);
        LineReader {
            inner,
            buf: vec![0; CHUNK.min(max_line.saturating_add(1)).max(4096)],
            start: 0,
            end: 0,
            offset: 0,
            line_no: 0,
            max_line,
            eof: false,
        }
    }

    /// A reader whose first byte is at stream offset `offset`, after `line_no` lines: for a
    /// piece of a larger input, so that positions are those of the whole.
    pub(crate) fn with_base(inner: R, max_line: usize, offset: u64, line_no: u64) -> Self {
        let mut r = Self::new(inner, max_line);
        r.offset = offset;
        r.line_no = line_no;
        r
    }

    /// Bytes consumed so far (the offset of the next line).
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The position just past the last line returned: where the next line would start.
    pub(crate) fn here(&self) -> Position {
        Position {
            offset: self.offset,
            line: self.line_no + 1,
        }
    }

    /// Read more bytes into `buf[end..]`, compacting or growing first if needed. Returns the
    /// number of bytes read (0 at EOF).
    fn fill(&mut self) -> Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // A line longer than the buffer: grow, but never past the line limit plus one
                // chunk (the caller stops at `max_line` and skips the rest).
                let cap = self.max_line.saturating_add(CHUNK);
                let new_len = (self.buf.len().saturating_mul(2))
                    .min(cap)
                    .max(self.end + 1);
                self.buf.resize(new_len, 0);
            }
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(from_io(e, self.offset + (self.end - self.start) as u64)),
            }
        }
    }

    /// The next line, or `None` at EOF.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        let mut scanned = 0usize; // bytes of the current line already searched for '\n'
        loop {
            let avail = &self.buf[self.start + scanned..self.end];
            if let Some(i) = memchr::memchr(b'\n', avail) {
                let line_start = self.start;
                let nl = self.start + scanned + i;
                let pos = Position {
                    offset: self.offset,
                    line: self.line_no + 1,
                };
                self.line_no += 1;
                self.offset += (nl + 1 - line_start) as u64;
                self.start = nl + 1;
                let len = nl - line_start;
                let (len, overlong) = if len > self.max_line {
                    (self.max_line, true)
                } else {
                    (len, false)
                };
                return Ok(Some(Line {
                    bytes: strip_cr(&self.buf[line_start..line_start + len]),
                    pos,
                    terminated: true,
                    overlong,
                }));
            }
            scanned = self.end - self.start;
            if self.eof {
                if scanned == 0 {
                    return Ok(None);
                }
                let line_start = self.start;
                let pos = Position {
                    offset: self.offset,
                    line: self.line_no + 1,
                };
                self.line_no += 1;
                self.offset += scanned as u64;
                self.start = self.end;
                let (len, overlong) = if scanned > self.max_line {
                    (self.max_line, true)
                } else {
                    (scanned, false)
                };
                return Ok(Some(Line {
                    bytes: strip_cr(&self.buf[line_start..line_start + len]),
                    pos,
                    terminated: false,
                    overlong,
                }));
            }
            if scanned > self.max_line {
                return self.skip_overlong();
            }
            self.fill()?;
            // `fill` may have moved the data to the front of the buffer; `scanned` is
            // relative to `start`, so it stays valid.
        }
    }

    /// The current line (from `start`) is longer than the limit: keep its first `max_line`
    /// bytes at the front of the buffer, discard input up to the next `\n`, and return the kept
    /// prefix.
    fn skip_overlong(&mut self) -> Result<Option<Line<'_>>> {
        let pos = Position {
            offset: self.offset,
            line: self.line_no + 1,
        };
        let keep = self.max_line;
        self.buf.copy_within(self.start..self.start + keep, 0);
        let mut skipped = (self.end - self.start - keep) as u64;
        // Everything after the kept prefix has been searched and holds no '\n'.
        self.start = 0;
        self.end = keep;
        if self.buf.len() < keep + 4096 {
            self.buf.resize(keep + 4096, 0);
        }
        let mut terminated = false;
        loop {
            let n = loop {
                match self.inner.read(&mut self.buf[keep..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(from_io(e, self.offset + keep as u64 + skipped)),
                }
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &self.buf[keep..keep + n]) {
                skipped += (i + 1) as u64;
                let rest = keep + i + 1..keep + n;
                let rest_len = rest.len();
                self.buf.copy_within(rest, keep);
                self.end = keep + rest_len;
                terminated = true;
                break;
            }
            skipped += n as u64;
        }
        self.line_no += 1;
        self.offset += keep as u64 + skipped;
        // The next line starts after the kept prefix.
        self.start = keep;
        if !terminated {
            self.end = keep;
        }
        Ok(Some(Line {
            bytes: strip_cr(&self.buf[..keep]),
            pos,
            terminated,
            overlong: true,
        }))
    }
}

/// Where the debug=2 state machine gets its lines: a [`LineReader`] over a stream, or
/// [`SliceLines`] over a piece already in memory. Both give the same lines, positions and flags
/// for the same bytes.
pub(crate) trait LineSource {
    /// The next line, or `None` at the end.
    fn next_line(&mut self) -> Result<Option<Line<'_>>>;
    /// Bytes consumed so far (the offset of the next line).
    fn offset(&self) -> u64;
    /// The input from the next line on that is already in memory (possibly none of it, and
    /// possibly ending mid-line): for the debug=2 record fast lane, which takes whole records
    /// from it and then [`LineSource::consume`]s them.
    fn buffered(&self) -> &[u8];
    /// Where the next line starts.
    fn here(&self) -> Position;
    /// Skip `bytes` bytes of [`LineSource::buffered`] holding `lines` whole lines (each with its
    /// `\n`, none longer than the line limit): as if `next_line` had returned them.
    fn consume(&mut self, bytes: usize, lines: u64);
}

impl<R: Read> LineSource for LineReader<R> {
    #[inline]
    fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        LineReader::next_line(self)
    }
    fn offset(&self) -> u64 {
        LineReader::offset(self)
    }
    #[inline]
    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    #[inline]
    fn here(&self) -> Position {
        LineReader::here(self)
    }
    #[inline]
    fn consume(&mut self, bytes: usize, lines: u64) {
        debug_assert!(bytes <= self.end - self.start);
        self.start += bytes;
        self.offset += bytes as u64;
        self.line_no += lines;
    }
}

/// The lines of bytes already in memory, borrowed (no copy), with [`LineReader`]'s semantics:
/// a line longer than the limit is returned cut at the limit with `overlong = true`.
pub(crate) struct SliceLines<'a> {
    data: &'a [u8],
    /// Start of the next line in `data`.
    at: usize,
    /// Stream offset of `data[0]`.
    base: u64,
    /// Lines returned so far (counting those before `data`).
    line_no: u64,
    max_line: usize,
}

impl<'a> SliceLines<'a> {
    /// The lines of `data`, whose first byte is at stream offset `offset`, after `line_no`
    /// lines.
    pub(crate) fn new(data: &'a [u8], max_line: usize, offset: u64, line_no: u64) -> Self {
        SliceLines {
            data,
            at: 0,
            base: offset,
            line_no,
            max_line: max_line.max(1),
        }
    }
}

impl LineSource for SliceLines<'_> {
    #[inline]
    fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        let Some(rest) = self.data.get(self.at..).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let pos = Position {
            offset: self.base + self.at as u64,
            line: self.line_no + 1,
        };
        self.line_no += 1;
        let (len, terminated) = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                self.at += i + 1;
                (i, true)
            }
            None => {
                self.at += rest.len();
                (rest.len(), false)
            }
        };
        let (len, overlong) = if len > self.max_line {
            (self.max_line, true)
        } else {
            (len, false)
        };
        Ok(Some(Line {
            bytes: strip_cr(&rest[..len]),
            pos,
            terminated,
            overlong,
        }))
    }

    fn offset(&self) -> u64 {
        self.base + self.at as u64
    }

    #[inline]
    fn buffered(&self) -> &[u8] {
        self.data.get(self.at..).unwrap_or_default()
    }

    #[inline]
    fn here(&self) -> Position {
        Position {
            offset: self.base + self.at as u64,
            line: self.line_no + 1,
        }
    }

    #[inline]
    fn consume(&mut self, bytes: usize, lines: u64) {
        self.at += bytes;
        self.line_no += lines;
    }
}

#[inline]
pub(crate) fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<(Vec<u8>, u64, u64, bool, bool)> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push((
                l.bytes.to_vec(),
                l.pos.offset,
                l.pos.line,
                l.terminated,
                l.overlong,
            ));
        }
        out
    }

    /// Both sources: same lines, positions and flags.
    fn same_as_slice_lines(input: &[u8], max: usize) {
        let mut a = LineReader::with_base(input, max, 7, 3);
        let mut b = SliceLines::new(input, max, 7, 3);
        loop {
            let (x, y) = (
                a.next_line().unwrap(),
                LineSource::next_line(&mut b).unwrap(),
            );
            let x = x.map(|l| (l.bytes.to_vec(), l.pos, l.terminated, l.overlong));
            let y = y.map(|l| (l.bytes.to_vec(), l.pos, l.terminated, l.overlong));
            assert_eq!(x, y);
            assert_eq!(a.offset(), LineSource::offset(&b));
            if x.is_none() {
                break;
            }
        }
    }

    #[test]
    fn slice_lines_match_the_reader() {
        let mut long = vec![b'x'; 3 * CHUNK + 17];
        long.extend_from_slice(b"\r\nnext\n\n\r\nlast\r");
        for input in [
            &b""[..],
            b"\n",
            b"a",
            b"ab\r\n\ncd\nef",
            b"abcdef\r\nxyz",
            &long,
        ] {
            for max in [1, 2, 3, 5, 6, 100, 1 << 20] {
                same_as_slice_lines(input, max);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn slice_lines_match_the_reader_on_anything(
            input in proptest::collection::vec(proptest::sample::select(&b"ab\r\n"[..]), 0..300),
            max in 1usize..40,
        ) {
            same_as_slice_lines(&input, max);
        }
    }

    #[test]
    fn splits_lines_with_offsets() {
        let got = collect(b"ab\r\n\ncd\nef", 100);
        assert_eq!(
            got,
            vec![
                (b"ab".to_vec(), 0, 1, true, false),
                (b"".to_vec(), 4, 2, true, false),
                (b"cd".to_vec(), 5, 3, true, false),
                (b"ef".to_vec(), 8, 4, false, false),
            ]
        );
    }

    #[test]
    fn overlong_line_is_cut_and_skipped_with_bounded_buffer() {
        let mut input = vec![b'x'; 3 * CHUNK + 17];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let mut r = LineReader::new(&input[..], 1000);
        let l = r.next_line().unwrap().unwrap();
        assert!(l.overlong && l.terminated);
        assert_eq!(l.bytes.len(), 1000);
        assert_eq!(l.pos.offset, 0);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!(l.bytes, b"next");
        assert_eq!(l.pos.offset, (3 * CHUNK + 18) as u64);
        assert_eq!(l.pos.line, 2);
        assert!(r.next_line().unwrap().is_none());
        assert!(r.buf.len() <= 1000 + CHUNK + 4096);
    }

    #[test]
    fn overlong_last_line_without_newline() {
        let input = vec![b'y'; 5000];
        let got = collect(&input, 100);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), 100);
        assert!(!got[0].3 && got[0].4);
    }

    #[test]
    fn byte_at_a_time_reader() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let data = b"hello\nworld\n\nlast";
        let mut r = LineReader::new(OneByte(data), 3);
        let mut lines = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            lines.push((l.bytes.to_vec(), l.overlong, l.pos.offset));
        }
        assert_eq!(
            lines,
            vec![
                (b"hel".to_vec(), true, 0),
                (b"wor".to_vec(), true, 6),
                (b"".to_vec(), false, 12),
                (b"las".to_vec(), true, 13),
            ]
        );
    }
}
