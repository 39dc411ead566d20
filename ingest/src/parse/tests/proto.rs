//! profile.proto: hand-built profiles for the edge cases, real ones in `captures`.

use prost::Message;

use super::fns;
use crate::parse::proto::{Function, Label, Line, Location, Profile, Sample, ValueType};
use crate::parse::{ParseError, ParseOptions, ProtoParser};
use leakhound_schemas::model::{GoroutineRecord, ProfileKind};

struct P {
    strings: Vec<String>,
    p: Profile,
}

impl P {
    fn new(kind: &str) -> Self {
        let mut p = P {
            strings: vec![String::new()],
            p: Profile::default(),
        };
        let t = p.s(kind);
        let u = p.s("count");
        p.p.sample_type.push(ValueType { r#type: t, unit: u });
        p.p.period_type = Some(ValueType { r#type: t, unit: u });
        p.p.time_nanos = 1_795_839_000_000_000_000;
        p
    }
    fn s(&mut self, v: &str) -> i64 {
        if let Some(i) = self.strings.iter().position(|x| x == v) {
            return i as i64;
        }
        self.strings.push(v.into());
        (self.strings.len() - 1) as i64
    }
    fn func(&mut self, name: &str, file: &str) -> u64 {
        let id = self.p.function.len() as u64 + 1;
        let (n, f) = (self.s(name), self.s(file));
        self.p.function.push(Function {
            id,
            name: n,
            system_name: n,
            filename: f,
        });
        id
    }
    /// A location with (function id, line) entries, innermost first.
    fn loc(&mut self, lines: &[(u64, i64)]) -> u64 {
        let id = self.p.location.len() as u64 + 1;
        self.p.location.push(Location {
            id,
            address: 0x1000 + id,
            line: lines
                .iter()
                .map(|&(function_id, line)| Line { function_id, line })
                .collect(),
        });
        id
    }
    fn bytes(mut self) -> Vec<u8> {
        self.p.string_table = self.strings.iter().map(|s| s.as_bytes().to_vec()).collect();
        self.p.encode_to_vec()
    }
}

fn parse(bytes: &[u8]) -> Result<Vec<GoroutineRecord>, ParseError> {
    ProtoParser::from_bytes(bytes, &ParseOptions::default())?.collect()
}

#[test]
fn samples_with_inlining_labels_and_generics() {
    let mut p = P::new("goroutine");
    let gopark = p.func("runtime.gopark", "/go/src/runtime/proc.go");
    let send = p.func("runtime.chansend1", "/go/src/runtime/chan.go");
    let inner = p.func("main.send[go.shape.int]", "/src/main.go");
    let outer = p.func("main.handler", "/src/main.go");
    let rmain = p.func("runtime.goexit", "/go/src/runtime/asm_amd64.s");
    let l1 = p.loc(&[(gopark, 462)]);
    let l2 = p.loc(&[(send, 161)]);
    // main.send inlined into main.handler: innermost first.
    let l3 = p.loc(&[(inner, 12), (outer, 40)]);
    let l4 = p.loc(&[(rmain, 1771)]);
    let (k, v) = (p.s("handler"), p.s("/api/orders"));
    p.p.sample.push(Sample {
        location_id: vec![l1, l2, l3, l4],
        value: vec![7],
        label: vec![Label {
            key: k,
            str: v,
            num: 0,
        }],
    });
    let bytes = p.bytes();
    let parser = ProtoParser::from_bytes(&bytes, &ParseOptions::default()).unwrap();
    assert_eq!(parser.kind(), ProfileKind::Goroutine);
    assert_eq!(parser.time_nanos(), Some(1_795_839_000_000_000_000));
    let recs: Vec<_> = parser.collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].count, 7);
    assert_eq!(fns(&recs[0]), vec!["main.send[...]", "main.handler"]);
    assert_eq!(recs[0].stack.frames[1].line, 40);
    assert_eq!(recs[0].labels["handler"], "/api/orders");
    assert!(!recs[0].leaked);
}

#[test]
fn leak_profile() {
    let mut p = P::new("goroutineleak");
    let f = p.func("main.f", "/x.go");
    let l = p.loc(&[(f, 3)]);
    p.p.sample.push(Sample {
        location_id: vec![l],
        value: vec![2],
        label: vec![],
    });
    let bytes = p.bytes();
    let parser = ProtoParser::from_bytes(&bytes, &ParseOptions::default()).unwrap();
    assert_eq!(parser.kind(), ProfileKind::GoroutineLeak);
    let recs: Vec<_> = parser.collect::<Result<_, _>>().unwrap();
    assert!(recs[0].leaked);
}

#[test]
fn broken_profiles_are_errors() {
    // Another profile type.
    let mut p = P::new("alloc_objects");
    let _ = p.s("x");
    let e = ProtoParser::from_bytes(&p.bytes(), &ParseOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(e, ParseError::OtherProfile { ref profile } if profile == "alloc_objects"),
        "{e}"
    );

    // Unknown location, bad string index, absurd count, negative line.
    let mut p = P::new("goroutine");
    p.p.sample.push(Sample {
        location_id: vec![42],
        value: vec![1],
        label: vec![],
    });
    assert!(matches!(parse(&p.bytes()), Err(ParseError::Proto { .. })));

    let mut p = P::new("goroutine");
    p.p.function.push(Function {
        id: 1,
        name: 999,
        system_name: 0,
        filename: -5,
    });
    let l = p.loc(&[(1, 3)]);
    p.p.sample.push(Sample {
        location_id: vec![l],
        value: vec![1],
        label: vec![],
    });
    assert!(matches!(parse(&p.bytes()), Err(ParseError::Proto { .. })));

    let mut p = P::new("goroutine");
    let f = p.func("main.f", "/x.go");
    let l = p.loc(&[(f, -3)]);
    p.p.sample.push(Sample {
        location_id: vec![l],
        value: vec![1],
        label: vec![],
    });
    assert!(matches!(parse(&p.bytes()), Err(ParseError::Proto { .. })));

    for v in [-1i64, 2_000_000_000, i64::MAX] {
        let mut p = P::new("goroutine");
        p.p.sample.push(Sample {
            location_id: vec![],
            value: vec![v],
            label: vec![],
        });
        let e = parse(&p.bytes()).unwrap_err();
        assert!(e.to_string().contains("absurd goroutine count"), "{e}");
    }

    // Garbage bytes.
    assert!(matches!(
        parse(&[0x0a, 0xff, 0xff, 0xff]),
        Err(ParseError::Proto { .. })
    ));
    assert!(matches!(parse(&[]), Err(ParseError::Empty)));
}
