//! Go-quoted strings and pprof label sets.
//!
//! Labels are printed quoted by two writers with slightly different rules:
//! - `runtime/pprof` (debug=1 `# labels:` lines) uses `%q`, i.e. `strconv.Quote`: printable
//!   Unicode passes through raw, other runes become `\a \b \f \n \r \t \v \xNN \uNNNN
//!   \UNNNNNNNN`, and invalid UTF-8 bytes `\xNN`; pairs print as `"k":"v"`.
//! - the runtime's traceback header (`GODEBUG=tracebacklabels=1`) uses its own `printquoted`:
//!   only printable ASCII passes, everything else is `\xNN` / `\uNNNN` / `\UNNNNNNNN`. Go 1.26
//!   prints `[state labels:{"k": "v"}]:` (every string quoted); Go 1.27 prints
//!   `[state] {k: v, k2: "v 2"}:`, quoting only strings with characters outside
//!   `[A-Za-z0-9./_]`.
//!
//! One unquoter that accepts every escape of the Go spec reads all of them.

use std::collections::BTreeMap;

/// Why a quoted string or label set did not parse (the caller adds the position).
pub(crate) type QuoteError = &'static str;

/// Parse a Go double-quoted string at the start of `s`. Returns the unquoted value (invalid
/// UTF-8 from `\xNN` escapes replaced by U+FFFD) and the number of bytes consumed.
pub(crate) fn unquote_prefix(s: &[u8]) -> Result<(String, usize), QuoteError> {
    if s.first() != Some(&b'"') {
        return Err("expected a quoted string");
    }
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    loop {
        // Copy the run up to the next quote or backslash in one go.
        let rest = s.get(i..).unwrap_or_default();
        let Some(j) = memchr::memchr2(b'"', b'\\', rest) else {
            return Err("unterminated quoted string");
        };
        out.extend_from_slice(&rest[..j]);
        i += j;
        if s[i] == b'"' {
            let value = match String::from_utf8(out) {
                Ok(v) => v,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            return Ok((value, i + 1));
        }
        // Backslash escape.
        let Some(&c) = s.get(i + 1) else {
            return Err("unterminated escape");
        };
        i += 2;
        match c {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'\'' => out.push(b'\''),
            b'x' => {
                let v = hex_digits(s, i, 2)?;
                out.push(v as u8);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let v = hex_digits(s, i, n)?;
                i += n;
                let ch = char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            b'0'..=b'7' => {
                // Octal: exactly three digits, value <= 255.
                let digits = s.get(i - 1..i + 2).ok_or("short octal escape")?;
                let mut v: u32 = 0;
                for &d in digits {
                    if !(b'0'..=b'7').contains(&d) {
                        return Err("bad octal escape");
                    }
                    v = v * 8 + u32::from(d - b'0');
                }
                if v > 255 {
                    return Err("octal escape out of range");
                }
                out.push(v as u8);
                i += 2;
            }
            _ => return Err("unknown escape"),
        }
    }
}

fn hex_digits(s: &[u8], at: usize, n: usize) -> Result<u32, QuoteError> {
    let digits = s.get(at..at + n).ok_or("short hex escape")?;
    let mut v: u32 = 0;
    for &d in digits {
        let x = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err("bad hex escape"),
        };
        v = (v << 4) | u32::from(x);
    }
    Ok(v)
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Parse a label set `{"k": "v", "k2":"v2"}` at the start of `s`. Returns the labels and the
/// bytes consumed (through the closing `}`). A key that repeats keeps its last value.
pub(crate) fn parse_label_set(s: &[u8]) -> Result<(BTreeMap<String, String>, usize), QuoteError> {
    let mut labels = BTreeMap::new();
    if s.first() != Some(&b'{') {
        return Err("expected `{` to open the label set");
    }
    let mut i = skip_ws(s, 1);
    if s.get(i) == Some(&b'}') {
        return Ok((labels, i + 1));
    }
    loop {
        let (k, n) = unquote_prefix(s.get(i..).unwrap_or_default())?;
        i = skip_ws(s, i + n);
        if s.get(i) != Some(&b':') {
            return Err("expected `:` after a label key");
        }
        i = skip_ws(s, i + 1);
        let (v, n) = unquote_prefix(s.get(i..).unwrap_or_default())?;
        i = skip_ws(s, i + n);
        labels.insert(k, v);
        match s.get(i) {
            Some(b',') => i = skip_ws(s, i + 1),
            Some(b'}') => return Ok((labels, i + 1)),
            _ => return Err("expected `,` or `}` in the label set"),
        }
    }
}

/// Go's `funcNameForPrint` (Go 1.27 version, a superset of 1.26's): the shape arguments of a
/// generic function (`F[go.shape.int]`) become `[...]`, and for a generic method of a generic
/// type (`T[go.shape.int].M[go.shape.string]`) both lists do. The runtime prints names this
/// way in tracebacks and `runtime.CallersFrames` (hence debug=1) reports them so; profile.proto
/// keeps the raw symbol, so without this one function would have two names. Returns `None`
/// when the name is already in print form.
pub(crate) fn func_name_for_print(name: &str) -> Option<String> {
    let i = name.find('[')?;
    let j = name.rfind(']')?;
    if j <= i {
        return None;
    }
    let interior = &name[i + 1..j];
    let out = if !interior.contains('[') {
        format!("{}[...]{}", &name[..i], &name[j + 1..])
    } else {
        // Look for "...]between[..." at bracket depth 0 inside the interior.
        let mut depth: i32 = 1;
        let (mut rbr, mut lbr) = (None, None);
        for (k, c) in interior.bytes().enumerate() {
            if c == b'[' {
                depth += 1;
                if depth != 1 {
                    continue;
                }
                lbr = Some(k);
                break;
            }
            if c == b']' {
                depth -= 1;
                if depth < 0 {
                    break;
                }
                if depth == 0 {
                    rbr = Some(k);
                }
            }
        }
        match (depth, rbr, lbr) {
            (1, Some(r), Some(l)) if l > r => format!(
                "{}[...]{}[...]{}",
                &name[..i],
                &interior[r + 1..l],
                &name[j + 1..]
            ),
            (1, None, None) => format!("{}[...]{}", &name[..i], &name[j + 1..]),
            _ => return None,
        }
    };
    (out != name).then_some(out)
}

/// Parse Go 1.27's traceback label set `{k: v, k2: "v 2"}` at the start of `s`: keys and
/// values are printed bare when they consist of `[A-Za-z0-9./_]` only (possibly empty), and
/// quoted otherwise (runtime `tracebackStringNeedsQuoting`).
pub(crate) fn parse_bare_label_set(
    s: &[u8],
) -> Result<(BTreeMap<String, String>, usize), QuoteError> {
    fn item(s: &[u8], i: usize) -> Result<(String, usize), QuoteError> {
        let rest = s.get(i..).unwrap_or_default();
        if rest.first() == Some(&b'"') {
            let (v, n) = unquote_prefix(rest)?;
            return Ok((v, i + n));
        }
        let n = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/' | b'_'))
            .count();
        // Only ASCII was taken, so this cannot fail.
        let v = String::from_utf8_lossy(&rest[..n]).into_owned();
        Ok((v, i + n))
    }
    let mut labels = BTreeMap::new();
    if s.first() != Some(&b'{') {
        return Err("expected `{` to open the label set");
    }
    if s.get(1) == Some(&b'}') {
        return Ok((labels, 2));
    }
    let mut i = 1;
    loop {
        let (k, n) = item(s, i)?;
        if s.get(n..n + 2) != Some(b": ") {
            return Err("expected `: ` after a label key");
        }
        let (v, n) = item(s, n + 2)?;
        labels.insert(k, v);
        match s.get(n) {
            Some(b',') if s.get(n + 1) == Some(&b' ') => i = n + 2,
            Some(b'}') => return Ok((labels, n + 1)),
            _ => return Err("expected `, ` or `}` in the label set"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_every_escape() {
        let input = br#""a\"b\\c\n\t\x01\u00e9\U0001F600\101\a" tail"#;
        let (s, n) = unquote_prefix(input).unwrap();
        assert_eq!(s, "a\"b\\c\n\t\x01é😀A\x07");
        assert_eq!(n, input.len() - " tail".len());
        // Raw UTF-8 passes through (strconv.Quote keeps printable runes).
        assert_eq!(unquote_prefix("\"é\"".as_bytes()).unwrap().0, "é");
        // A lone invalid byte from \xff is replaced, not an error.
        assert_eq!(unquote_prefix(br#""\xff""#).unwrap().0, "\u{fffd}");
    }

    #[test]
    fn rejects_broken_strings() {
        for bad in [
            &br#""abc"#[..],
            br#""\"#,
            br#""\x4""#,
            br#""\q""#,
            b"abc",
            br#""\777""#,
        ] {
            assert!(
                unquote_prefix(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn label_sets_from_both_writers() {
        // runtime/pprof debug=1
        let input = r#"{"handler":"/api/orders", "k\"x":"v\n\x01é"}"#;
        let (l, n) = parse_label_set(input.as_bytes()).unwrap();
        assert_eq!(l["handler"], "/api/orders");
        assert_eq!(l["k\"x"], "v\n\x01é");
        assert_eq!(n, input.len());
        // runtime traceback header
        let (l, _) =
            parse_label_set(br#"{"handler": "/api/orders", "k\"x": "v\n\x01\u00e9"}]:"#).unwrap();
        assert_eq!(l["k\"x"], "v\n\x01é");
        assert_eq!(parse_label_set(b"{}").unwrap().0.len(), 0);
        assert!(parse_label_set(br#"{"a" "b"}"#).is_err());
        assert!(parse_label_set(br#"{"a": "b""#).is_err());
    }

    #[test]
    fn go127_bare_label_sets() {
        let input =
            br#"{handler: /api/orders, pattern: chansend, route: "POST /api/orders/{id}"}:"#;
        let (l, n) = parse_bare_label_set(input).unwrap();
        assert_eq!(n, input.len() - 1);
        assert_eq!(l["handler"], "/api/orders");
        assert_eq!(l["route"], "POST /api/orders/{id}");
        let (l, _) = parse_bare_label_set(br#"{k: , "a b": "\u00e9"}"#).unwrap();
        assert_eq!(l["k"], "");
        assert_eq!(l["a b"], "é");
        assert!(parse_bare_label_set(b"{k v}").is_err());
        assert!(parse_bare_label_set(b"{k: v").is_err());
    }

    #[test]
    fn generic_names() {
        assert_eq!(
            func_name_for_print("main.(*G[go.shape.string,go.shape.int]).wait").as_deref(),
            Some("main.(*G[...]).wait")
        );
        assert_eq!(func_name_for_print("main.F[...]"), None);
        // Go 1.27: generic method of a generic type.
        assert_eq!(
            func_name_for_print("main.(*G[go.shape.string]).M[go.shape.int]").as_deref(),
            Some("main.(*G[...]).M[...]")
        );
        assert_eq!(func_name_for_print("main.(*G[...]).M[...]"), None);
        assert_eq!(
            func_name_for_print("main.F[map[string]int]").as_deref(),
            Some("main.F[...]")
        );
        assert_eq!(func_name_for_print("main.f"), None);
    }
}
