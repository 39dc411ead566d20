//! debug=1 text, on excerpts of real Go 1.26 output.

use leakhound_schemas::model::ProfileKind;

use super::{d1, fns};
use crate::parse::{Debug1Parser, ParseError, ParseOptions};

const REAL: &str = "goroutine profile: total 5
3 @ 0x48482e 0x41715c 0x416d57 0x51aec5 0x48b341
#\t0x51aec4\tmain.Generic[...]+0x24\t/tmp/gs/main.go:22

1 @ 0x48482e 0x417e59 0x417c72 0x51b0a5 0x48b341
# labels: {\"handler\":\"/api/orders\", \"k\\\"x\":\"v\\n\\x01é\"}
#\t0x51b0a4\tmain.main.func5+0x144\t/tmp/gs/main.go:50

1 @ 0x4463b1 0x48369d 0x506bd1 0x506865 0x5036e9 0x51ab09 0x451035 0x48b341
#\t0x506bd0\truntime/pprof.writeRuntimeProfile+0xb0\t/usr/local/go/src/runtime/pprof/pprof.go:851
#\t0x51ab08\tmain.main+0x748\t\t\t\t/tmp/gs/main.go:76
#\t0x451034\truntime.main+0x2d4\t\t\t/usr/local/go/src/runtime/proc.go:290

";

#[test]
fn real_records() {
    let recs = d1(REAL).unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].count, 3);
    assert_eq!(fns(&recs[0]), vec!["main.Generic[...]"]);
    assert_eq!(recs[0].stack.frames[0].line, 22);
    assert_eq!(recs[1].labels["handler"], "/api/orders");
    assert_eq!(recs[1].labels["k\"x"], "v\n\x01é");
    // tabwriter padding (runs of tabs) and runtime.main at the bottom (hidden, as in debug=2).
    assert_eq!(
        fns(&recs[2]),
        vec!["runtime/pprof.writeRuntimeProfile", "main.main"]
    );
    assert_eq!(recs[2].stack.frames[1].file, "/tmp/gs/main.go");
    assert!(
        recs.iter()
            .all(|r| r.state.is_empty() && r.goroutine_ids.is_empty())
    );
    let p = Debug1Parser::new(REAL.as_bytes(), &ParseOptions::default()).unwrap();
    assert_eq!(p.declared_total(), 5);
    assert_eq!(p.kind(), ProfileKind::Goroutine);
}

#[test]
fn leak_profile_marks_records_leaked() {
    let text = "goroutineleak profile: total 2\n2 @ 0x1 0x2\n#\t0x1\tmain.f+0x1\t/x.go:3\n\n";
    let p = Debug1Parser::new(text.as_bytes(), &ParseOptions::default()).unwrap();
    assert_eq!(p.kind(), ProfileKind::GoroutineLeak);
    let recs: Vec<_> = p.collect::<Result<_, _>>().unwrap();
    assert!(recs[0].leaked);
    assert_eq!(recs[0].count, 2);
    // And an empty leak profile is valid.
    assert!(d1("goroutineleak profile: total 0\n").unwrap().is_empty());
}

#[test]
fn unsymbolised_pc() {
    let recs =
        d1("goroutine profile: total 1\n1 @ 0x1 0x2\n#\t0x4a1b2c\n#\t0x1\tmain.f+0x1\t/x.go:3\n\n")
            .unwrap();
    assert_eq!(fns(&recs[0]), vec!["?", "main.f"]);
}

#[test]
fn truncated_and_malformed() {
    // Cut at a line boundary: total disagrees.
    let cut = &REAL[..REAL.find("1 @ 0x4463b1").unwrap()];
    let mut p = Debug1Parser::new(cut.as_bytes(), &ParseOptions::default()).unwrap();
    assert!(p.next().unwrap().is_ok());
    assert!(p.next().unwrap().is_ok());
    let e = p.next().unwrap().unwrap_err();
    assert!(matches!(e, ParseError::Truncated { .. }), "{e}");
    assert!(p.next().is_none());
    // Cut mid-line.
    let cut = &REAL[..REAL.find("main.main+0x748").unwrap() + 4];
    let e = d1(cut).unwrap_err();
    assert!(
        matches!(e, ParseError::Truncated { pos, .. } if pos.line == 11),
        "{e}"
    );
    // Bad lines.
    for bad in [
        "goroutine profile: total x\n",
        "goroutine profile: total 1\n1 @ 0x1\nnot a frame\n",
        "goroutine profile: total 1\n# labels: {}\n",
        "goroutine profile: total 1\n1 @ 0x1\n#\tmain.f\n",
        "goroutine profile: total 1\n1 @ 0x1\n#\t0x1\tmain.f+0x1\t/x.go:zz\n",
        "goroutine profile: total 1\n1 @ 0x1\n# labels: {\"a\":}\n",
        "heap profile: 1: 2\n",
    ] {
        let e = d1(bad).unwrap_err();
        assert!(matches!(e, ParseError::Malformed { .. }), "{bad:?}: {e}");
    }
}

#[test]
fn absurd_counts() {
    let e = d1("goroutine profile: total 1\n2000000000 @ 0x1\n").unwrap_err();
    assert!(matches!(e, ParseError::AbsurdNumber { .. }), "{e}");
    let e = d1("goroutine profile: total 99999999999999999999999999\n").unwrap_err();
    assert!(matches!(e, ParseError::AbsurdNumber { .. }), "{e}");
    let opts = ParseOptions {
        max_goroutines: u64::MAX,
        ..Default::default()
    };
    let text = format!(
        "goroutine profile: total 1\n{m} @ 0x1\n#\t0x1\tmain.f+0x1\t/x.go:3\n\n{m} @ 0x1\n#\t0x1\tmain.f+0x1\t/x.go:3\n\n",
        m = u64::MAX
    );
    let e = Debug1Parser::new(text.as_bytes(), &opts)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert!(matches!(e, ParseError::CountOverflow { .. }), "{e}");
}
