//! debug=2 / crash text, on excerpts of real Go 1.26 and 1.27 output.

use leakhound_schemas::model::Frame;

use super::{d2, d2_partial, fns};
use crate::parse::{Debug2Parser, ParseError, ParseOptions};

#[test]
fn pprof_debug2_records() {
    let text = "\
goroutine 1 [running]:
runtime/pprof.writeGoroutineStacks({0x5701a8, 0x2749def8c0c0})
\t/usr/local/go/src/runtime/pprof/pprof.go:819 +0x6b
main.main()
\t/tmp/gs/main.go:76 +0x749

goroutine 28 [sync.Mutex.Lock, 3 minutes]:
internal/sync.runtime_SemacquireMutex(0x2749defbef90?, 0xa9?, 0x0?)
\t/usr/local/go/src/runtime/sema.go:95 +0x25
internal/sync.(*Mutex).lockSlow(0x2749def9a0c0)
\t/usr/local/go/src/internal/sync/mutex.go:149 +0x15d
internal/sync.(*Mutex).Lock(...)
\t/usr/local/go/src/internal/sync/mutex.go:70
sync.(*Mutex).Lock(...)
\t/usr/local/go/src/sync/mutex.go:46
main.(*T).lockForever(0x2749def9a0c0, 0x0?)
\t/tmp/gs/main.go:16 +0x45
created by main.main in goroutine 1
\t/tmp/gs/main.go:55 +0x24b

goroutine 29 [chan receive]:
main.(*G[...]).wait(...)
\t/tmp/gs/main.go:20
created by main.main in goroutine 1
\t/tmp/gs/main.go:57 +0x2c5

goroutine 32 [sleep, locked to thread]:
time.Sleep(0x34630b8a000)
\t/usr/local/go/src/runtime/time.go:363 +0x165
main.main.func6()
\t/tmp/gs/main.go:60 +0x25
created by main.main in goroutine 1
\t/tmp/gs/main.go:60 +0x376
";
    let recs = d2(text).unwrap();
    assert_eq!(recs.len(), 4);
    let r = &recs[0];
    assert_eq!(r.goroutine_ids, vec![1]);
    assert_eq!(r.state, "running");
    assert_eq!(r.count, 1);
    assert_eq!(
        fns(r),
        vec!["runtime/pprof.writeGoroutineStacks", "main.main"]
    );
    assert_eq!(r.stack.created_by, None);
    assert_eq!(r.stack.frames[1].file, "/tmp/gs/main.go");
    assert_eq!(r.stack.frames[1].line, 76);

    let r = &recs[1];
    assert_eq!(r.state, "sync.Mutex.Lock");
    assert_eq!(r.wait_minutes, Some(3));
    // Leading internal/runtime-ish frames stay (they are not `runtime.`), as in debug=1.
    assert_eq!(fns(r)[0], "internal/sync.runtime_SemacquireMutex");
    assert_eq!(fns(r).last(), Some(&"main.(*T).lockForever"));
    assert_eq!(
        r.stack.created_by,
        Some(Frame {
            function: "main.main".into(),
            file: "/tmp/gs/main.go".into(),
            line: 55
        })
    );
    assert_eq!(r.creator_goroutine, Some(1));

    assert_eq!(fns(&recs[2]), vec!["main.(*G[...]).wait"]);
    assert_eq!(recs[2].stack.frames[0].line, 20);
    assert!(recs[3].locked_to_thread);
    assert_eq!(recs[3].state, "sleep");
}

#[test]
fn states_with_parentheses_and_annotations() {
    let cases: &[(&str, &str, bool, bool)] = &[
        (
            "chan receive (nil chan)",
            "chan receive (nil chan)",
            false,
            false,
        ),
        ("select (no cases)", "select (no cases)", false, false),
        ("force gc (idle)", "force gc (idle)", false, false),
        ("GC worker (idle)", "GC worker (idle)", false, false),
        (
            "select (no cases) (leaked)",
            "select (no cases)",
            true,
            false,
        ),
        (
            "chan send (nil chan) (leaked)",
            "chan send (nil chan)",
            true,
            false,
        ),
        ("chan receive (durable)", "chan receive", false, true),
        (
            "sync.WaitGroup.Wait (durable)",
            "sync.WaitGroup.Wait",
            false,
            true,
        ),
        ("select (scan)", "select", false, false),
        ("chan receive (leaked) (scan)", "chan receive", true, false),
        ("sleep (durable)", "sleep", false, true),
    ];
    for &(header, state, leaked, durable) in cases {
        let text = format!("goroutine 9 [{header}]:\nmain.f()\n\t/x.go:1 +0x1\n");
        let r = &d2(&text).unwrap()[0];
        assert_eq!(r.state, state, "{header}");
        assert_eq!(r.leaked, leaked, "{header}");
        assert_eq!(r.durable, durable, "{header}");
    }
}

#[test]
fn synctest_bubbles() {
    let text = "\
goroutine 8 [chan receive (durable), synctest bubble 1]:
testing/synctest.testingSynctestTest(0x3619ddc20248, 0x5957a0)
\t/usr/local/go/src/testing/testing.go:2151 +0x292

goroutine 10 [select, 5 minutes, locked to thread, synctest group 12]:
main.g()
\t/x.go:3
";
    let recs = d2(text).unwrap();
    assert_eq!(recs[0].state, "chan receive");
    assert!(recs[0].durable);
    assert_eq!(recs[0].synctest_bubble, Some(1));
    assert_eq!(recs[1].synctest_bubble, Some(12));
    assert_eq!(recs[1].wait_minutes, Some(5));
    assert!(recs[1].locked_to_thread);
}

#[test]
fn go126_tracebacklabels_header() {
    // GODEBUG=tracebacklabels=1 on Go 1.26 (runtime/traceback.go goroutineheader).
    let text = r#"goroutine 27 [chan receive (nil chan), 2 minutes labels:{"handler": "/api/orders", "k\"x": "v\n\x01\u00e9", "odd]:": "}]:"}]:
main.main.func5()
	/tmp/gs/main.go:50 +0x145
"#;
    let r = &d2(text).unwrap()[0];
    assert_eq!(r.state, "chan receive (nil chan)");
    assert_eq!(r.wait_minutes, Some(2));
    assert_eq!(r.labels.len(), 3);
    assert_eq!(r.labels["handler"], "/api/orders");
    assert_eq!(r.labels["k\"x"], "v\n\x01é");
    assert_eq!(r.labels["odd]:"], "}]:");
}

#[test]
fn go127_label_header() {
    // Go 1.27.3: labels after the bracket, quoted only when needed.
    let text = r#"goroutine 25 [chan send, 2 minutes] {handler: /api/orders, pattern: chansend, route: "POST /api/orders/{id}"}:
main.leakChanSend(...)
	/work/main/tests/goprogs/cmd/leaky/patterns.go:40

goroutine 26 [select (no cases) (leaked)] {"a b": "]:", k: }:
main.g()
	/x.go:3
"#;
    let recs = d2(text).unwrap();
    let r = &recs[0];
    assert_eq!(r.state, "chan send");
    assert_eq!(r.wait_minutes, Some(2));
    assert_eq!(r.labels["handler"], "/api/orders");
    assert_eq!(r.labels["route"], "POST /api/orders/{id}");
    assert_eq!(recs[1].state, "select (no cases)");
    assert!(recs[1].leaked);
    assert_eq!(recs[1].labels["a b"], "]:");
    assert_eq!(recs[1].labels["k"], "");
}

#[test]
fn panic_preamble_and_text_between_records() {
    let text = "\
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x519929]

goroutine 1 [running]:
panic({0x536620?, 0x67b510?})
\t/usr/local/go/src/runtime/panic.go:879 +0x16f
main.main()
\t/tmp/gs/main.go:94 +0x649

goroutine 6 [chan send]:
main.main.func1()
\t/tmp/gsd/main.go:9 +0x1b
created by main.main in goroutine 1
\t/tmp/gsd/main.go:9 +0x51
exit status 2
";
    let recs = d2(text).unwrap();
    assert_eq!(recs.len(), 2);
    // `panic` is runtime.gopanic; as the first frame the traceback would hide it, and so does
    // every other format, so it is dropped.
    assert_eq!(fns(&recs[0]), vec!["main.main"]);
    assert_eq!(fns(&recs[1]), vec!["main.main.func1"]);
}

#[test]
fn deadlock_and_sigquit_preambles() {
    let text = "\
fatal error: all goroutines are asleep - deadlock!

goroutine 1 [sync.WaitGroup.Wait]:
sync.runtime_SemacquireWaitGroup(0x10?, 0x80?)
\t/usr/local/go/src/runtime/sema.go:114 +0x2e
main.main()
\t/tmp/gsd/main.go:15 +0x12f
";
    assert_eq!(d2(text).unwrap().len(), 1);
    let text = "\
SIGQUIT: quit
PC=0x40954e m=0 sigcode=0

goroutine 0 gp=0x682700 m=0 mp=0x6834c0 [idle]:
internal/runtime/syscall/linux.Syscall6()
\t/usr/local/go/src/internal/runtime/syscall/linux/asm_linux_amd64.s:36 +0xe fp=0x7fff94d9f9a0 sp=0x7fff94d9f998 pc=0x40954e
runtime.mstart()
\t/usr/local/go/src/runtime/asm_amd64.s:426 +0xc fp=0x7f322d71ae88 sp=0x7f322d71ae80 pc=0x48966c
rax    0xca
rbx    0x0
rip    0x48ce81
rflags 0x286

goroutine 1 gp=0x189fbcc2a1e0 m=nil [select (no cases)]:
runtime.gopark(0x0?, 0x189fbcc70e18?, 0x85?, 0x7c?, 0x25a5d133ee4?)
\t/usr/local/go/src/runtime/proc.go:462 +0xce fp=0x189fbcc70db8 sp=0x189fbcc70d98 pc=0x48482e
runtime.block()
\t/usr/local/go/src/runtime/select.go:104 +0x26 fp=0x189fbcc70de8 sp=0x189fbcc70db8 pc=0x463a86
main.syscallKill()
\t/tmp/gs/kill.go:5 +0x4b fp=0x189fbcc70e28 sp=0x189fbcc70de8 pc=0x5191cb
main.main()
\t/tmp/gs/main.go:100 +0x611 fp=0x189fbcc70f48 sp=0x189fbcc70e28 pc=0x5198f1
runtime.main()
\t/usr/local/go/src/runtime/proc.go:290 +0x2d5 fp=0x189fbcc70fe0 sp=0x189fbcc70f48 pc=0x451035
runtime.goexit({})
\t/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1 fp=0x189fbcc70fe8 sp=0x189fbcc70fe0 pc=0x48b341

goroutine 2 gp=0x189fbcc2ad20 m=nil [force gc (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\t/usr/local/go/src/runtime/proc.go:462 +0xce fp=0x189fbcc62fa8 sp=0x189fbcc62f88 pc=0x48482e
runtime.goparkunlock(...)
\t/usr/local/go/src/runtime/proc.go:468
runtime.forcegchelper()
\t/usr/local/go/src/runtime/proc.go:375 +0xb3 fp=0x189fbcc62fe0 sp=0x189fbcc62fa8 pc=0x451353
runtime.goexit({})
\t/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1 fp=0x189fbcc62fe8 sp=0x189fbcc62fe0 pc=0x48b341
created by runtime.init.7 in goroutine 1
\t/usr/local/go/src/runtime/proc.go:363 +0x1a

-----

SIGQUIT: quit
PC=0x48ce83 m=2 sigcode=0
";
    let recs = d2(text).unwrap();
    // goroutine 0 (an M's g0) is not a goroutine.
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].goroutine_ids, vec![1]);
    // GOTRACEBACK=system shows runtime frames; canonical frames match the default view.
    assert_eq!(fns(&recs[0]), vec!["main.syscallKill", "main.main"]);
    assert_eq!(recs[0].stack.frames[1].line, 100);
    assert_eq!(recs[1].state, "force gc (idle)");
    // An all-runtime goroutine keeps its runtime frames (minus goexit).
    assert_eq!(
        fns(&recs[1]),
        vec![
            "runtime.gopark",
            "runtime.goparkunlock",
            "runtime.forcegchelper"
        ]
    );
    assert_eq!(
        recs[1].stack.created_by.as_ref().unwrap().function,
        "runtime.init.7"
    );
}

#[test]
fn ancestors_are_not_goroutines() {
    let text = "\
goroutine 25 [chan receive]:
main.main.func9.1.1()
\t/tmp/gs/main.go:67 +0x19
created by main.main.func9.1 in goroutine 24
\t/tmp/gs/main.go:67 +0x56
[originating from goroutine 24]:
runtime.newproc(...)
\t/usr/local/go/src/runtime/proc.go:5298 +0x3f
main.main.func9.1(...)
\t/tmp/gs/main.go:67 +0x56
...additional frames elided...
created by main.main.func9
\t/tmp/gs/main.go:67 +0x56
[originating from goroutine 23]:
main.main.func9(...)
\t/tmp/gs/main.go:68 +0x56
created by main.main
\t/tmp/gs/main.go:66 +0x493

goroutine 26 [chan receive]:
main.g()
\t/x.go:1
";
    let recs = d2(text).unwrap();
    assert_eq!(recs.len(), 2);
    let r = &recs[0];
    assert_eq!(fns(r), vec!["main.main.func9.1.1"]);
    assert_eq!(
        r.stack.created_by.as_ref().unwrap().function,
        "main.main.func9.1"
    );
    assert_eq!(r.creator_goroutine, Some(24));
    assert!(
        !r.stack.elided,
        "the ancestor's elision is not this stack's"
    );
}

#[test]
fn elided_frames_and_old_created_by() {
    let text = "\
goroutine 31 [chan receive]:
main.recurse(...)
\t/tmp/gs/main.go:26
main.recurse(0x0?, 0x0?)
\t/tmp/gs/main.go:29 +0x25
...21 frames elided...
main.recurse(0x0?, 0x0?)
\t/tmp/gs/main.go:29 +0x32
created by main.main
\t/tmp/gs/main.go:59 +0x36a
";
    let r = &d2(text).unwrap()[0];
    assert!(r.stack.elided);
    assert_eq!(r.stack.frames.len(), 3);
    assert_eq!(r.creator_goroutine, None);
    assert_eq!(r.stack.created_by.as_ref().unwrap().line, 59);
}

#[test]
fn windows_paths_crlf_and_odd_frames() {
    let text = "goroutine 5 [running]:\r\n\
main.f(...)\r\n\
\tC:/Program Files/src/main.go:12 +0x1d\r\n\
\tgoroutine running on other thread; stack unavailable\r\n\
non-Go function at pc=0x7fff1234\r\n\
main.g()\r\n\
\t<autogenerated>:1\r\n\
\r\n";
    let r = &d2(text).unwrap()[0];
    assert_eq!(r.stack.frames[0].file, "C:/Program Files/src/main.go");
    assert_eq!(r.stack.frames[0].line, 12);
    // `main.g` in `<autogenerated>` is a compiler wrapper: the traceback hides it at the
    // default level, and so does the canonical stack whatever level printed it.
    assert_eq!(r.stack.frames.len(), 1);
}

#[test]
fn header_without_blank_line_starts_a_new_record() {
    let text =
        "goroutine 1 [running]:\nmain.a()\n\t/a.go:1\ngoroutine 2 [select]:\nmain.b()\n\t/b.go:2\n";
    let recs = d2(text).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(fns(&recs[1]), vec!["main.b"]);
}

#[test]
fn truncation_yields_records_then_error() {
    let full = "goroutine 1 [running]:\nmain.a()\n\t/a.go:1 +0x1\n\ngoroutine 2 [select]:\nmain.b()\n\t/b.go:22 +0x1\n";
    // Cut inside the last file line (inside its ` +0x1` suffix: a cut right before the suffix
    // leaves a whole-looking `FILE:LINE`, which a missing final newline must not reject):
    // records before it, then Truncated at its line.
    let cut = &full.as_bytes()[..full.len() - 4];
    let (ok, err) = d2_partial(cut);
    assert_eq!(ok.len(), 1);
    match err {
        Some(ParseError::Truncated { pos, .. }) => {
            assert_eq!(pos.line, 7);
            assert_eq!(pos.offset, full.find("\t/b.go").unwrap() as u64);
        }
        other => panic!("{other:?}"),
    }
    // Cut right after a function line: its file line is missing.
    let cut = &full.as_bytes()[..full.find("\t/b.go").unwrap()];
    let (ok, err) = d2_partial(cut);
    assert_eq!(ok.len(), 1);
    assert!(matches!(err, Some(ParseError::Truncated { .. })), "{err:?}");
    // Cut inside a header.
    let cut = &full.as_bytes()[..full.find("[select").unwrap() + 3];
    let (ok, err) = d2_partial(cut);
    assert_eq!(ok.len(), 1);
    assert!(matches!(err, Some(ParseError::Truncated { .. })), "{err:?}");
    // A clean end without trailing newline after `exit status 2` is fine.
    let text = format!("{full}exit status 2");
    assert_eq!(d2(&text).unwrap().len(), 2);
}

#[test]
fn absurd_numbers_are_errors() {
    let e = d2("goroutine 99999999999999999999999 [running]:\nmain.a()\n\t/a.go:1\n").unwrap_err();
    assert!(matches!(e, ParseError::AbsurdNumber { .. }), "{e}");
    let e = d2("goroutine 1 [running]:\nmain.a()\n\t/a.go:99999999999\n").unwrap_err();
    assert!(matches!(e, ParseError::AbsurdNumber { .. }), "{e}");
    let e = d2("goroutine 1 [select, 99999999999 minutes]:\nmain.a()\n\t/a.go:1\n").unwrap_err();
    assert!(matches!(e, ParseError::AbsurdNumber { .. }), "{e}");
    let e = d2("goroutine 1 [running]:\nmain.a()\n\t/a.go\n").unwrap_err();
    assert!(matches!(e, ParseError::Malformed { .. }), "{e}");
}

#[test]
fn long_lines_are_bounded() {
    let opts = ParseOptions {
        max_line_bytes: 1024,
        ..Default::default()
    };
    // A 10 MB line of noise outside records is skipped...
    let mut text = vec![b'x'; 10 << 20];
    text.extend_from_slice(b"\ngoroutine 1 [running]:\nmain.a()\n\t/a.go:1\n");
    let recs: Result<Vec<_>, _> = Debug2Parser::new(&text[..], &opts).collect();
    assert_eq!(recs.unwrap().len(), 1);
    // ... and one inside a record is an error at its offset.
    let mut text = b"goroutine 1 [running]:\nmain.a(".to_vec();
    text.extend(std::iter::repeat_n(b'0', 10 << 20));
    text.extend_from_slice(b")\n\t/a.go:1\n");
    let e = Debug2Parser::new(&text[..], &opts)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    match e {
        ParseError::LineTooLong { pos, limit } => {
            assert_eq!(pos.line, 2);
            assert_eq!(pos.offset, 23);
            assert_eq!(limit, 1024);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn record_limits() {
    let opts = ParseOptions {
        max_frames: 3,
        ..Default::default()
    };
    let text = "goroutine 1 [running]:\na.a()\n\t/a.go:1\na.b()\n\t/a.go:1\na.c()\n\t/a.go:1\na.d()\n\t/a.go:1\n";
    let e = Debug2Parser::new(text.as_bytes(), &opts)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert!(
        matches!(e, ParseError::RecordTooLarge { what: "frames", .. }),
        "{e}"
    );
    let opts = ParseOptions {
        max_record_bytes: 40,
        ..Default::default()
    };
    let e = Debug2Parser::new(text.as_bytes(), &opts)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert!(
        matches!(e, ParseError::RecordTooLarge { what: "bytes", .. }),
        "{e}"
    );
}

#[test]
fn text_without_goroutines_yields_nothing() {
    assert!(d2("hello\nworld\n").unwrap().is_empty());
    assert!(
        d2("goroutine leak detected in handler (see logs)\n")
            .unwrap()
            .is_empty()
    );
}
