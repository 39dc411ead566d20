//! Flamegraphs of goroutine stacks with the `inferno` crate: stacks folded (`root;…;leaf N`,
//! outermost frame first, one sample per goroutine) and drawn as SVG, plain or differential
//! (two counts per stack: before, after; inferno colours what grew red, what shrank blue).
//!
//! Frame names come from the store: the folded format's separators (`;`, whitespace) and
//! control characters in them are replaced so a name cannot add frames or counts; inferno
//! escapes the rest for XML.

use crate::rootcause::{StackGrowth, StackInfo};

/// A function name as one folded frame.
fn frame_name(function: &str) -> String {
    let s: String = function
        .chars()
        .map(|c| {
            if c == ';' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() { "?".into() } else { s }
}

/// `root;…;leaf` of a stack (frames are stored innermost first).
pub fn folded(stack: &StackInfo) -> String {
    let mut parts: Vec<String> = stack
        .frames
        .iter()
        .rev()
        .map(|f| frame_name(&f.function))
        .collect();
    if parts.is_empty() {
        parts.push("(no frames)".into());
    }
    parts.join(";")
}

fn options(title: &str, count_name: &str) -> inferno::flamegraph::Options<'static> {
    let mut o = inferno::flamegraph::Options::default();
    o.title = title.chars().filter(|c| !c.is_control()).collect();
    o.count_name = count_name.into();
    o.name_type = "Function:".into();
    // Same colours for the same function on every run (no random hues).
    o.hash = true;
    o.deterministic = true;
    o.min_width = 0.0;
    o
}

/// The stacks with their goroutine counts as a flamegraph; None when nothing is to be drawn.
pub fn flamegraph(stacks: &[(StackInfo, i64)], title: &str) -> Option<String> {
    let mut lines: Vec<String> = stacks
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{} {n}", folded(s)))
        .collect();
    if lines.is_empty() {
        return None;
    }
    lines.sort();
    let mut out = Vec::new();
    let mut o = options(title, "goroutines");
    inferno::flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// Every stack before (`baseline`) and at detection (`now`): what grew is red. Widths are the
/// counts at detection.
pub fn differential(stacks: &[(&StackInfo, &StackGrowth)], title: &str) -> Option<String> {
    let mut lines: Vec<String> = stacks
        .iter()
        .filter(|(_, g)| g.baseline > 0 || g.now > 0)
        .map(|(s, g)| format!("{} {} {}", folded(s), g.baseline.max(0), g.now.max(0)))
        .collect();
    if lines.is_empty() {
        return None;
    }
    lines.sort();
    let mut out = Vec::new();
    let mut o = options(title, "goroutines");
    inferno::flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// The `height` of an SVG's root element (to size the frame it is shown in).
pub fn svg_height(svg: &str) -> Option<u32> {
    let start = svg.find("<svg")?;
    let rest = &svg[start..];
    let end = rest.find('>')?;
    let tag = &rest[..end];
    let h = tag.split("height=\"").nth(1)?;
    h.split('"').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakhound_schemas::model::Frame;

    fn st(funcs: &[&str]) -> StackInfo {
        StackInfo {
            frames: funcs
                .iter()
                .map(|f| Frame {
                    function: f.to_string(),
                    file: "x.go".into(),
                    line: 1,
                })
                .collect(),
            created_by: None,
        }
    }

    #[test]
    fn a_name_cannot_add_frames_or_counts_and_markup_is_escaped() {
        let s = st(&[
            "main.leak;evil 99",
            "<script>alert(1)</script>",
            "main.main",
        ]);
        assert_eq!(
            folded(&s),
            "main.main;<script>alert(1)</script>;main.leak_evil_99"
        );
        let svg = flamegraph(&[(s, 7)], "t").unwrap();
        assert!(!svg.contains("<script>alert"), "markup must be escaped");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("main.leak_evil_99"));
        assert_eq!(svg_height(&svg).map(|h| h > 0), Some(true));
    }

    #[test]
    fn differential_draws_what_grew() {
        let a = st(&["main.leak", "main.main"]);
        let b = st(&["main.idle", "main.main"]);
        let ga = StackGrowth {
            baseline: 1,
            now: 50,
            ..Default::default()
        };
        let gb = StackGrowth {
            baseline: 5,
            now: 5,
            ..Default::default()
        };
        let svg = differential(&[(&a, &ga), (&b, &gb)], "d").unwrap();
        assert!(svg.contains("main.leak"));
        // inferno's differential titles carry the change in percent.
        assert!(svg.contains('%'), "{}", &svg[..200.min(svg.len())]);
        assert!(differential(&[], "d").is_none());
    }
}
