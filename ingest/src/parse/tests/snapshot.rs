//! `parse_snapshot` / `open`: detection, gunzip, limits, refusals.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use leakhound_schemas::model::{DumpFormat, ProfileKind};

use crate::parse::{Opened, ParseError, ParseOptions, open, parse_snapshot, parse_snapshot_with};

const D2: &str = "panic: boom

goroutine 1 [running]:
main.main()
\t/x/main.go:10 +0x1d

goroutine 7 [chan send, 3 minutes]:
main.leak(...)
\t/x/main.go:20
created by main.main in goroutine 1
\t/x/main.go:9 +0x45

goroutine 8 [chan send, 4 minutes]:
main.leak(...)
\t/x/main.go:20
created by main.main in goroutine 1
\t/x/main.go:9 +0x45
";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn debug2_aggregates() {
    let s = parse_snapshot(D2.as_bytes(), "t").unwrap();
    assert_eq!(s.format, Some(DumpFormat::Debug2));
    assert_eq!(s.kind, ProfileKind::Goroutine);
    assert_eq!(s.total(), 3);
    assert_eq!(s.groups.len(), 2);
    let g = &s.groups[0];
    assert_eq!(g.count, 2);
    assert_eq!(g.state, "chan send");
    assert_eq!(g.goroutine_ids, vec![7, 8]);
    assert_eq!(g.wait_minutes_min, Some(3));
    assert_eq!(g.wait_minutes_max, Some(4));
    assert_eq!(g.stack.created_by.as_ref().unwrap().function, "main.main");
}

#[test]
fn gzip_is_transparent_and_capped() {
    let s = parse_snapshot(&gz(D2.as_bytes())[..], "t.gz").unwrap();
    assert_eq!(s.total(), 3);
    let d1 = "goroutine profile: total 2\n2 @ 0x1\n#\t0x1\tmain.f+0x1\t/x.go:3\n\n";
    let s = parse_snapshot(&gz(d1.as_bytes())[..], "t").unwrap();
    assert_eq!(s.format, Some(DumpFormat::Debug1));
    assert_eq!(s.declared_total, Some(2));

    // A bomb: 64 MiB of one byte compress to ~64 KiB.
    let bomb = gz(&vec![b'a'; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let opts = ParseOptions {
        max_decompressed_bytes: 8 << 20,
        ..Default::default()
    };
    let e = parse_snapshot_with(&bomb[..], "bomb", &opts).unwrap_err();
    assert!(
        matches!(e, ParseError::DecompressedTooLarge { limit } if limit == 8 << 20),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("decompressed size exceeds 8388608 bytes")
    );

    // Nested gzip is refused, corrupt gzip reported as such.
    let e = parse_snapshot(&gz(&gz(D2.as_bytes()))[..], "t").unwrap_err();
    assert!(matches!(e, ParseError::NotAGoroutineDump { .. }), "{e}");
    let mut corrupt = gz(D2.as_bytes());
    let n = corrupt.len();
    corrupt[n / 2] ^= 0xff;
    corrupt[n / 2 + 1] ^= 0xff;
    let e = parse_snapshot(&corrupt[..], "t").unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Gzip { .. } | ParseError::Malformed { .. } | ParseError::Truncated { .. }
        ),
        "{e}"
    );
    // Truncated gzip.
    let whole = gz(D2.as_bytes());
    let e = parse_snapshot(&whole[..whole.len() / 2], "t").unwrap_err();
    assert!(
        matches!(e, ParseError::Gzip { .. } | ParseError::Truncated { .. }),
        "{e}"
    );
    let e = parse_snapshot(&gz(b"")[..], "t").unwrap_err();
    assert!(matches!(e, ParseError::Empty), "{e}");
}

#[test]
fn refusals_name_the_problem() {
    let e = parse_snapshot(&b""[..], "t").unwrap_err();
    assert!(matches!(e, ParseError::Empty));
    let e =
        parse_snapshot(&b"<!DOCTYPE html>\n<html><body>502</body></html>"[..], "t").unwrap_err();
    assert!(
        e.to_string()
            .contains("looks like an HTML page (HTTP error page?)"),
        "{e}"
    );
    let e = parse_snapshot(&b"\x00\x01\x02garbage"[..], "t").unwrap_err();
    assert!(e.to_string().starts_with("not a goroutine dump"), "{e}");
    let e = parse_snapshot(&b"404 page not found\n"[..], "t").unwrap_err();
    match e {
        ParseError::NoGoroutines { first_line, bytes } => {
            assert_eq!(first_line, "404 page not found");
            assert_eq!(bytes, 19);
        }
        other => panic!("{other}"),
    }
    let json = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    let e = parse_snapshot(&json[..], "t").unwrap_err();
    assert!(matches!(e, ParseError::PrometheusQueryRange));
    match open(&gz(json)[..], &ParseOptions::default()).ok().unwrap() {
        Opened::PrometheusQueryRange(mut r) => {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            assert_eq!(s.as_bytes(), json);
        }
        Opened::Dump { .. } => panic!("expected Prometheus JSON"),
    }
}

#[test]
fn huge_single_line_is_bounded() {
    // 10 MB on one line with the default 16 MiB limit: no header, no dump.
    let line = vec![b'a'; 10 << 20];
    let e = parse_snapshot(&line[..], "t").unwrap_err();
    assert!(matches!(e, ParseError::NoGoroutines { .. }), "{e}");
    // A 10 MB debug=1 line with a 1 MiB limit: an error at its position.
    let mut d1 = b"goroutine profile: total 1\n1 @".to_vec();
    d1.extend(std::iter::repeat_n(b' ', 10 << 20));
    let opts = ParseOptions {
        max_line_bytes: 1 << 20,
        ..Default::default()
    };
    let e = parse_snapshot_with(&d1[..], "t", &opts).unwrap_err();
    assert!(
        matches!(e, ParseError::LineTooLong { pos, .. } if pos.line == 2 && pos.offset == 27),
        "{e}"
    );
}

#[test]
fn truncated_dump_keeps_its_complete_records_flagged_partial() {
    let cut = &D2.as_bytes()[..D2.len() - 5];
    let s = parse_snapshot(cut, "t").unwrap();
    assert_eq!(s.total(), 2);
    let c = s.partial.expect("partial");
    assert_eq!(c.line, 17);
    assert!(c.to_string().contains("line 17"), "{c}");
    // Cut before any record is whole: nothing to keep, an error.
    let e = parse_snapshot(&D2.as_bytes()[..30], "t").unwrap_err();
    assert!(matches!(e, ParseError::Truncated { .. }), "{e}");
}

use std::io::Read as _;
