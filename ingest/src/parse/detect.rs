//! What an input is, from its first bytes (never from its file name: archived dumps come as
//! `dump.txt`, `goroutine`, `profile.pb.gz`, `crash.log`, or no name at all).

use leakhound_schemas::model::ProfileKind;

use super::error::{ParseError, Result};

/// How many leading bytes [`detect`] wants to see (it works with fewer).
pub const DETECT_PREFIX: usize = 8 * 1024;

/// What [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// gzip data: decompress, then detect again on the decompressed bytes.
    Gzip,
    /// An uncompressed profile.proto (debug=0 as served is gzip'd; this is one that was
    /// gunzipped by hand).
    Proto,
    /// `goroutine profile: total N` / `goroutineleak profile: total N`.
    Debug1(ProfileKind),
    /// Text that is, or may contain, a traceback: `goroutine N [...]:` records, possibly after
    /// a panic message, `fatal error:`, `SIGQUIT: quit`, or other log output. The debug=2
    /// parser scans all of it and reports [`ParseError::NoGoroutines`] if no record turns up.
    Debug2,
    /// Prometheus `query_range` JSON (`{"status":"success","data":{"resultType":...`).
    PrometheusQueryRange,
}

/// Classify an input from its first bytes (ideally [`DETECT_PREFIX`] of them, or all of a
/// shorter input). Errors say what the input is when it is not a dump: empty, HTML (an error
/// page served instead of the profile), another pprof profile, or binary data.
pub fn detect(prefix: &[u8]) -> Result<Detected> {
    if prefix.is_empty() {
        return Err(ParseError::Empty);
    }
    if prefix.starts_with(&[0x1f, 0x8b]) {
        return Ok(Detected::Gzip);
    }
    if looks_like_proto(prefix) {
        return Ok(Detected::Proto);
    }
    let text = trim_start(prefix);
    if text.is_empty() {
        return Err(ParseError::NotAGoroutineDump {
            reason: format!("{} bytes of whitespace only", prefix.len()),
        });
    }
    if let Some(kind) = debug1_header(text) {
        return Ok(Detected::Debug1(kind));
    }
    if let Some(profile) = other_pprof_text(text) {
        return Err(ParseError::OtherProfile { profile });
    }
    if text[0] == b'<' {
        let head = &text[..text.len().min(64)];
        let lower: Vec<u8> = head.to_ascii_lowercase();
        if [
            &b"<!doctype"[..],
            b"<html",
            b"<head",
            b"<body",
            b"<?xml",
            b"<!--",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
        {
            return Err(ParseError::Html);
        }
    }
    if text[0] == b'{' || text[0] == b'[' {
        if memchr::memmem::find(text, b"\"resultType\"").is_some() {
            return Ok(Detected::PrometheusQueryRange);
        }
        if !contains_header(text) {
            return Err(ParseError::NotAGoroutineDump {
                reason: "a JSON document".into(),
            });
        }
    }
    if let Some(reason) = binary_reason(prefix) {
        return Err(ParseError::NotAGoroutineDump { reason });
    }
    Ok(Detected::Debug2)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn debug1_header(text: &[u8]) -> Option<ProfileKind> {
    if text.starts_with(b"goroutine profile: total ") {
        Some(ProfileKind::Goroutine)
    } else if text.starts_with(b"goroutineleak profile: total ") {
        Some(ProfileKind::GoroutineLeak)
    } else {
        None
    }
}

/// The debug=1 text of another runtime/pprof profile: `heap profile: ...` (heap and allocs),
/// `threadcreate profile: total N`, `--- mutex:` / `--- contention:` (mutex and block). Only
/// these exact names: `--- FAIL: TestX` from `go test` is a test log around a traceback.
fn other_pprof_text(text: &[u8]) -> Option<String> {
    for (prefix, name) in [
        (&b"heap profile: "[..], "heap"),
        (b"threadcreate profile: ", "threadcreate"),
        (b"--- mutex:", "mutex"),
        (b"--- contention:", "block"),
    ] {
        if text.starts_with(prefix) {
            return Some(name.to_owned());
        }
    }
    None
}

/// A line starting `goroutine N ` in the prefix.
fn contains_header(text: &[u8]) -> bool {
    memchr::memmem::find_iter(text, b"goroutine ").any(|i| {
        (i == 0 || text[i - 1] == b'\n')
            && text[i + b"goroutine ".len()..]
                .first()
                .is_some_and(u8::is_ascii_digit)
    })
}

/// An uncompressed profile.proto: the prefix walks as a sequence of `Profile` fields (numbers
/// 1..=15, varint or length-delimited; Go writes `period_type` (11) first, other writers
/// `sample_type` (1)), and it is not plain text (protobuf is full of bytes below 0x20). Both
/// together: either alone is met by some text or some binary.
fn looks_like_proto(b: &[u8]) -> bool {
    fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let c = *b.get(*i)?;
            *i += 1;
            v |= u64::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut i = 0;
    let mut fields = 0;
    while i < b.len() && fields < 64 {
        let Some(tag) = varint(b, &mut i) else {
            break; // cut by the end of the prefix
        };
        let (field, wire) = (tag >> 3, tag & 7);
        if !(1..=15).contains(&field) {
            return false;
        }
        match wire {
            0 => {
                if varint(b, &mut i).is_none() {
                    break;
                }
            }
            2 => {
                let Some(len) = varint(b, &mut i) else {
                    break;
                };
                i = i.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            }
            _ => return false,
        }
        fields += 1;
    }
    let head = &b[..b.len().min(64)];
    fields > 0
        && head
            .iter()
            .any(|&c| c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r'))
}

/// Why `b` is binary rather than text, if it is: any NUL byte, or more than 5% of control
/// bytes and invalid UTF-8. (ANSI escapes, form feeds and tabs are text; a UTF-8 sequence cut
/// at the end of the prefix is not counted.)
fn binary_reason(b: &[u8]) -> Option<String> {
    if let Some(i) = memchr::memchr(0, b) {
        return Some(format!("binary data (NUL byte at offset {i})"));
    }
    let mut bad = 0usize;
    let checked = b.len().saturating_sub(3).max(1.min(b.len()));
    for chunk in b[..checked].utf8_chunks() {
        bad += chunk.invalid().len();
        bad += chunk
            .valid()
            .bytes()
            .filter(|&c| {
                (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)) || c == 0x7f
            })
            .count();
    }
    if bad * 20 > checked {
        return Some(format!(
            "binary data ({bad} of the first {checked} bytes are neither text nor UTF-8)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(detect(b"\x1f\x8b\x08\x00").unwrap(), Detected::Gzip);
        assert_eq!(
            detect(b"goroutine profile: total 3\n").unwrap(),
            Detected::Debug1(ProfileKind::Goroutine)
        );
        assert_eq!(
            detect(b"\xef\xbb\xbf\n goroutineleak profile: total 0\n").unwrap(),
            Detected::Debug1(ProfileKind::GoroutineLeak)
        );
        assert_eq!(
            detect(b"goroutine 1 [running]:\nmain.main()\n").unwrap(),
            Detected::Debug2
        );
        assert_eq!(
            detect(b"panic: boom\n\ngoroutine 1 [running]:\n").unwrap(),
            Detected::Debug2
        );
        assert_eq!(
            detect(b"SIGQUIT: quit\nPC=0x4 m=0 sigcode=0\n").unwrap(),
            Detected::Debug2
        );
        assert_eq!(
            detect(b"fatal error: all goroutines are asleep - deadlock!\n").unwrap(),
            Detected::Debug2
        );
        assert_eq!(
            detect(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap(),
            Detected::PrometheusQueryRange
        );
        // A raw profile.proto: sample_type { type: 1 unit: 2 }.
        assert_eq!(
            detect(&[0x0a, 0x04, 0x08, 0x01, 0x10, 0x02]).unwrap(),
            Detected::Proto
        );
        // As Go writes it: period_type first.
        assert_eq!(
            detect(&[
                0x5a, 0x04, 0x08, 0x01, 0x10, 0x02, 0x60, 0x01, 0x0a, 0x04, 0x08, 0x01
            ])
            .unwrap(),
            Detected::Proto
        );
        // Text that happens to walk as fields is still text.
        assert_eq!(detect(b"Zebra crossing\n").unwrap(), Detected::Debug2);
        // ... but a text starting with a blank line is text.
        assert_eq!(
            detect(b"\ngoroutine 1 [running]:\n").unwrap(),
            Detected::Debug2
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(detect(b""), Err(ParseError::Empty)));
        assert!(matches!(
            detect(b"  <!DOCTYPE html><html>"),
            Err(ParseError::Html)
        ));
        assert!(matches!(
            detect(b"<HTML><body>502 Bad Gateway"),
            Err(ParseError::Html)
        ));
        assert!(matches!(
            detect(b"heap profile: 1: 2 [3: 4] @ heap/1048576\n"),
            Err(ParseError::OtherProfile { profile }) if profile == "heap"
        ));
        assert!(matches!(
            detect(b"--- mutex:\ncycles/second=1\n"),
            Err(ParseError::OtherProfile { profile }) if profile == "mutex"
        ));
        // `go test` output around a traceback is a crash log.
        assert_eq!(
            detect(b"--- FAIL: TestBubbleDeadlock (0.00s)\npanic: deadlock\n").unwrap(),
            Detected::Debug2
        );
        assert!(matches!(
            detect(b"\x7fELF\x02\x01\x01\x00\x00"),
            Err(ParseError::NotAGoroutineDump { .. })
        ));
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8 | 0x80)
            .collect();
        assert!(matches!(
            detect(&garbage),
            Err(ParseError::NotAGoroutineDump { .. })
        ));
        assert!(matches!(
            detect(br#"{"error": "nope"}"#),
            Err(ParseError::NotAGoroutineDump { .. })
        ));
        assert!(matches!(
            detect(b"   \n\t "),
            Err(ParseError::NotAGoroutineDump { .. })
        ));
    }
}
