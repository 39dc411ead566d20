//! One canonical frame list per stack, whatever format it came in.
//!
//! The three formats do not show the same frames of the same stack:
//! - debug=2 (the runtime's traceback, `GOTRACEBACK` at its default) hides every unexported
//!   `runtime.*` function anywhere in the stack (`runtime.gopark` at the top, `runtime.main` at
//!   the bottom, `runtime.gopanic` only as the first frame), and functions without a package
//!   dot (`runtime/traceback.go` `showfuncinfo`); with `GOTRACEBACK=system|crash` it hides
//!   nothing;
//! - debug=1 (`runtime/pprof` `printStackRecord`) hides only `runtime.goexit` and the *leading*
//!   `runtime.` / `internal/runtime/` frames;
//! - debug=0 (profile.proto) hides nothing, and keeps generic shape names (`F[go.shape.int]`)
//!   that the other two print as `F[...]`.
//!
//! [`canonical_frames`] applies the strictest of these rules to every format — the traceback's
//! visibility rule, then [`Stack::normalise`] — so that one capture at debug=0, 1 and 2 gives the
//! same frames and therefore the same [`StackId`](leakhound_schemas::model::StackId). As in the
//! runtime, a stack that would lose every frame keeps all of them.
//!
//! Known residual differences (documented, not fixable from the text): stacks deeper than the
//! traceback limit (debug=2 prints the innermost 50 and outermost 50 frames around
//! `...N frames elided...`, debug=0/1 the innermost `profstackdepth` = 128 PCs), and
//! compiler-generated wrappers that the traceback hides only when they call into a panic.

use leakhound_schemas::model::{Frame, Stack};

use super::quote::func_name_for_print;

/// Whether the runtime's traceback at the default `GOTRACEBACK` level shows a frame of
/// function `name` (Go `showfuncinfo` with level <= 1). `first` is true when no frame has been
/// shown yet.
pub fn shown_in_traceback(name: &str, first: bool) -> bool {
    let Some(rest) = name.strip_prefix("runtime.") else {
        // `?`: a PC that debug=0/1 could not symbolise. Kept: it is all we know of that frame.
        return memchr::memchr(b'.', name.as_bytes()).is_some() || name == "?";
    };
    match rest {
        "runFinalizers" | "runCleanups" => true,
        "gopanic" => !first,
        _ => is_exported_runtime(rest),
    }
}

/// Go `isExportedRuntime` on the part after `runtime.`: exported functions and exported methods
/// of exported types (`runtime.Gosched`, `runtime.(*Func).Name`).
fn is_exported_runtime(rest: &str) -> bool {
    let (rcvr, name) = match rest.rfind('.') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => ("", rest),
    };
    let rcvr = rcvr
        .strip_prefix("(*")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(rcvr);
    let upper = |s: &str| s.as_bytes().first().is_some_and(u8::is_ascii_uppercase);
    upper(name) && (rcvr.is_empty() || upper(rcvr))
}

/// The canonical frame list of a stack (innermost first): generic shapes printed as `[...]`,
/// frames the traceback hides dropped (unless that drops them all), then
/// [`Stack::normalise`].
pub fn canonical_frames(mut frames: Vec<Frame>) -> Vec<Frame> {
    let (mut shown, mut first) = (0, true);
    for f in &mut frames {
        if memchr::memchr(b'[', f.function.as_bytes()).is_some()
            && let Some(n) = func_name_for_print(&f.function)
        {
            f.function = n;
        }
        if shown_in_traceback(&f.function, first) {
            shown += 1;
            first = false;
        }
    }
    // Usual cases first: debug=2 already hid what it hides (all shown), or nothing would be
    // left (all kept).
    if shown > 0 && shown < frames.len() {
        let mut first = true;
        frames.retain(|f| {
            let s = shown_in_traceback(&f.function, first);
            if s {
                first = false;
            }
            s
        });
    }
    Stack::normalise(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(f: &str) -> Frame {
        Frame {
            function: f.into(),
            file: "/x.go".into(),
            line: 1,
        }
    }

    fn names(v: Vec<Frame>) -> Vec<String> {
        v.into_iter().map(|f| f.function).collect()
    }

    #[test]
    fn visibility_rule() {
        assert!(!shown_in_traceback("runtime.gopark", true));
        assert!(!shown_in_traceback("runtime.main", false));
        assert!(!shown_in_traceback("runtime.goexit", false));
        assert!(shown_in_traceback("runtime.Gosched", true));
        assert!(shown_in_traceback("runtime.(*Func).Name", false));
        assert!(!shown_in_traceback("runtime.(*pageAlloc).grow", false));
        assert!(shown_in_traceback("runtime.gopanic", false));
        assert!(!shown_in_traceback("runtime.gopanic", true));
        assert!(shown_in_traceback("runtime.runFinalizers", true));
        assert!(shown_in_traceback(
            "internal/runtime/syscall.Syscall6",
            true
        ));
        assert!(shown_in_traceback("main.main", true));
        assert!(!shown_in_traceback("nodot", false));
    }

    #[test]
    fn debug1_and_debug2_views_agree() {
        // debug=1 view of the main goroutine: runtime.main at the bottom.
        let d1 = vec![fr("main.f"), fr("main.main"), fr("runtime.main")];
        // debug=2 at GOTRACEBACK=system: everything.
        let d2sys = vec![
            fr("runtime.gopark"),
            fr("runtime.chanrecv1"),
            fr("main.f"),
            fr("main.main"),
            fr("runtime.main"),
            fr("runtime.goexit"),
        ];
        let want = vec!["main.f".to_string(), "main.main".to_string()];
        assert_eq!(names(canonical_frames(d1)), want);
        assert_eq!(names(canonical_frames(d2sys)), want);
    }

    #[test]
    fn all_runtime_stack_is_kept() {
        let d = vec![
            fr("runtime.gopark"),
            fr("runtime.goparkunlock"),
            fr("runtime.forcegchelper"),
            fr("runtime.goexit"),
        ];
        assert_eq!(
            names(canonical_frames(d)),
            vec![
                "runtime.gopark",
                "runtime.goparkunlock",
                "runtime.forcegchelper"
            ]
        );
        let fin = vec![
            fr("runtime.gopark"),
            fr("runtime.runFinalizers"),
            fr("runtime.goexit"),
        ];
        // The finalizer goroutine: the traceback shows runFinalizers only, and normalise keeps
        // it as the one frame left.
        assert_eq!(names(canonical_frames(fin)), vec!["runtime.runFinalizers"]);
    }

    #[test]
    fn generic_shapes_collapse() {
        let d = vec![fr("main.Generic[go.shape.string]")];
        assert_eq!(names(canonical_frames(d)), vec!["main.Generic[...]"]);
    }
}
