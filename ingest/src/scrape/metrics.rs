//! The Go runtime's metrics from a Prometheus endpoint (text 0.0.4 or OpenMetrics): what
//! client_golang's default Go and process collectors expose, read as a stream.
//!
//! Hand-written rather than `prometheus-parse` (used before): that crate skips every line it
//! cannot parse, so a broken exposition passed as a good one, and it needs the whole body in
//! memory and builds every sample of it, where a scrape needs five values. [`MetricsReader`]
//! checks every line against the exposition grammar (as Prometheus' own parser does, one bad
//! line fails the whole scrape, naming the line), keeps one line at a time (at most
//! [`MAX_LINE`] bytes) and the five values, so an endless body costs nothing but time.

/// Longest line accepted.
pub const MAX_LINE: usize = 64 << 10;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoMetrics {
    pub goroutines: Option<i64>,
    pub threads: Option<i64>,
    pub heap_alloc_bytes: Option<i64>,
    pub gc_count: Option<i64>,
    pub process_start_time_s: Option<f64>,
}

/// Parse a whole exposition body.
pub fn parse_go_metrics(body: &[u8]) -> Result<GoMetrics, String> {
    let mut r = MetricsReader::default();
    r.feed(body)?;
    r.finish()
}

/// A streaming, strict reader of an exposition: [`MetricsReader::feed`] the body's chunks, then
/// [`MetricsReader::finish`].
#[derive(Debug, Default)]
pub struct MetricsReader {
    partial: Vec<u8>,
    line_no: u64,
    samples: u64,
    eof_seen: bool,
    first_content: bool,
    m: GoMetrics,
    gc_from: Option<&'static str>,
}

impl MetricsReader {
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = chunk.split_at(nl);
            chunk = &rest[1..];
            if self.partial.is_empty() {
                self.line(line)?;
            } else {
                self.check_len(line.len())?;
                let mut l = std::mem::take(&mut self.partial);
                l.extend_from_slice(line);
                let r = self.line(&l);
                l.clear();
                self.partial = l;
                r?;
            }
        }
        self.check_len(chunk.len())?;
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    fn check_len(&self, more: usize) -> Result<(), String> {
        if self.partial.len() + more > MAX_LINE {
            return Err(format!(
                "line {} is longer than {MAX_LINE} bytes",
                self.line_no + 1
            ));
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<GoMetrics, String> {
        if !self.partial.is_empty() {
            let l = std::mem::take(&mut self.partial);
            self.line(&l)?;
        }
        if self.samples == 0 {
            return Err("no metrics in the response".into());
        }
        Ok(self.m)
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), String> {
        self.line_no += 1;
        let n = self.line_no;
        let bad = |why: &str| format!("line {n}: {why}: {}", excerpt(raw));
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(bad("not UTF-8"));
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            return Ok(());
        }
        if !self.first_content {
            self.first_content = true;
            if text.trim_start().starts_with('<') {
                return Err("an HTML page, not Prometheus metrics".into());
            }
        }
        if self.eof_seen {
            return Err(bad("content after # EOF"));
        }
        if let Some(c) = text.strip_prefix('#') {
            return self.comment(c).map_err(|w| bad(&w));
        }
        let (name, value) = sample(text).map_err(|w| bad(&w))?;
        self.samples += 1;
        self.take(name, value).map_err(|w| bad(&w))
    }

    fn comment(&mut self, c: &str) -> Result<(), String> {
        let mut words = c.split_ascii_whitespace();
        match words.next() {
            Some("EOF") if c.trim() == "EOF" => {
                self.eof_seen = true;
                Ok(())
            }
            Some(kw @ ("HELP" | "TYPE" | "UNIT")) if c.starts_with(' ') => {
                let name = words
                    .next()
                    .ok_or_else(|| format!("# {kw} without a metric name"))?;
                if !is_metric_name(name) {
                    return Err(format!("# {kw}: {name:?} is not a metric name"));
                }
                if kw == "TYPE" {
                    let t = words.next().unwrap_or_default();
                    if !matches!(
                        t,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "summary"
                            | "untyped"
                            | "unknown"
                            | "gaugehistogram"
                            | "stateset"
                            | "info"
                    ) || words.next().is_some()
                    {
                        return Err(format!("# TYPE {name}: unknown type {t:?}"));
                    }
                }
                Ok(())
            }
            // Any other comment is allowed by the text format.
            _ => Ok(()),
        }
    }

    fn take(&mut self, name: &str, v: f64) -> Result<(), String> {
        let count = |v: f64| -> Result<i64, String> {
            if (0.0..9.0e18).contains(&v) && v.fract() == 0.0 {
                Ok(v as i64)
            } else {
                Err(format!("{name} is not a count: {v}"))
            }
        };
        let slot = match name {
            "go_goroutines" => &mut self.m.goroutines,
            "go_threads" => &mut self.m.threads,
            "go_memstats_heap_alloc_bytes" => &mut self.m.heap_alloc_bytes,
            "go_gc_duration_seconds_count"
            | "go_gc_cycles_total_gc_cycles_total"
            | "go_gc_cycles_total_gc_cycles" => {
                // The first of these the body has wins; the same one twice is ambiguous.
                match self.gc_from {
                    Some(first) if first == name => {
                        return Err(format!("{name} appears more than once"));
                    }
                    Some(_) => return Ok(()),
                    None => self.gc_from = Some(gc_name(name)),
                }
                &mut self.m.gc_count
            }
            "process_start_time_seconds" => {
                if self.m.process_start_time_s.is_some() {
                    return Err(format!("{name} appears more than once"));
                }
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("{name} is not a time: {v}"));
                }
                self.m.process_start_time_s = Some(v);
                return Ok(());
            }
            _ => return Ok(()),
        };
        if slot.is_some() {
            // Two series of one of these (labels apart) leave no one value to store.
            return Err(format!("{name} appears more than once"));
        }
        *slot = Some(count(v)?);
        Ok(())
    }
}

fn gc_name(name: &str) -> &'static str {
    match name {
        "go_gc_duration_seconds_count" => "go_gc_duration_seconds_count",
        "go_gc_cycles_total_gc_cycles_total" => "go_gc_cycles_total_gc_cycles_total",
        _ => "go_gc_cycles_total_gc_cycles",
    }
}

/// A line quoted for an error message: at most 80 characters, escaped.
fn excerpt(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(&raw[..raw.len().min(80)]);
    let mut e = format!("{s:?}");
    if raw.len() > 80 {
        e.push('…');
    }
    e
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        // Rust's parser also takes "inf", "infinity" and "nan" in any case; the format does not.
        _ if s
            .bytes()
            .any(|c| c.is_ascii_alphabetic() && !matches!(c, b'e' | b'E')) =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

/// One sample line: `name[{labels}] value [timestamp] [# exemplar]`.
fn sample(line: &str) -> Result<(&str, f64), String> {
    let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..end];
    if !is_metric_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[end..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = labels(r)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("no value after the metric".into());
    }
    let mut parts = rest.trim_start_matches([' ', '\t']).splitn(2, [' ', '\t']);
    let v = parts.next().unwrap_or_default();
    let value = number(v).ok_or_else(|| format!("{v:?} is not a number"))?;
    let rest = parts.next().unwrap_or_default().trim_matches([' ', '\t']);
    if rest.is_empty() {
        return Ok((name, value));
    }
    let (ts, exemplar) = match rest.find('#') {
        Some(i) => (rest[..i].trim_matches([' ', '\t']), Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if !ts.is_empty() && number(ts).is_none_or(|t| !t.is_finite()) {
        return Err(format!("{ts:?} is not a timestamp"));
    }
    if let Some(ex) = exemplar {
        // OpenMetrics exemplar: ` # {labels} value [timestamp]`.
        let ex = ex.trim_start_matches([' ', '\t']);
        let after = ex
            .strip_prefix('{')
            .ok_or("an exemplar must start with '{'")
            .and_then(|r| labels(r).map_err(|_| "bad exemplar labels"))?;
        let mut p = after.split_ascii_whitespace();
        let ok = p.next().and_then(number).is_some()
            && p.next().is_none_or(|t| number(t).is_some())
            && p.next().is_none();
        if !ok {
            return Err("bad exemplar".into());
        }
    }
    Ok((name, value))
}

/// Labels after `{`: `name="value",…}`; returns what follows the `}`.
fn labels(mut s: &str) -> Result<&str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let name = s[..eq].trim_end_matches([' ', '\t']);
        if !is_label_name(name) {
            return Err(format!("{name:?} is not a label name"));
        }
        s = s[eq + 1..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label {name} is not quoted"))?;
        // The quoted value: escapes are \\, \" and \n.
        let mut it = s.char_indices();
        let close = loop {
            match it.next() {
                None => return Err(format!("the value of label {name} is not closed")),
                Some((_, '\\')) => match it.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err(format!("bad escape in the value of label {name}")),
                },
                Some((i, '"')) => break i,
                Some(_) => {}
            }
        };
        s = s[close + 1..].trim_start_matches([' ', '\t']);
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_openmetrics() {
        let t = b"# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n# TYPE go_threads gauge\ngo_threads 9\ngo_memstats_heap_alloc_bytes 1.5e+06\nprocess_start_time_seconds 1.79584e+09\n";
        let m = parse_go_metrics(t).unwrap();
        assert_eq!(m.goroutines, Some(42));
        assert_eq!(m.threads, Some(9));
        assert_eq!(m.heap_alloc_bytes, Some(1_500_000));
        let om = b"# TYPE go_goroutines gauge\ngo_goroutines 7\n# EOF\n";
        assert_eq!(parse_go_metrics(om).unwrap().goroutines, Some(7));
        assert!(parse_go_metrics(b"<html>502</html>").is_err());
        assert!(parse_go_metrics(b"").is_err());
    }

    #[test]
    fn what_client_golang_writes_passes() {
        let t = "# HELP go_gc_duration_seconds A summary.\n# TYPE go_gc_duration_seconds summary\n\
go_gc_duration_seconds{quantile=\"0\"} 2.1e-05\ngo_gc_duration_seconds{quantile=\"1\"} NaN\n\
go_gc_duration_seconds_sum 0.001\ngo_gc_duration_seconds_count 12\n\
go_info{version=\"go1.26.0\"} 1\nhttp_requests_total{code=\"200\",path=\"/a \\\"b\\\"\\\\c\\n\",} 3 1700000000000\n\
rpc_seconds_bucket{le=\"+Inf\"} 4 # {trace_id=\"abc\"} 0.5 1700000000.1\n\
go_goroutines 10\n";
        let m = parse_go_metrics(t.as_bytes()).unwrap();
        assert_eq!((m.goroutines, m.gc_count), (Some(10), Some(12)));
        // In pieces of every size, the same.
        for size in [1, 2, 3, 7, 64] {
            let mut r = MetricsReader::default();
            for c in t.as_bytes().chunks(size) {
                r.feed(c).unwrap();
            }
            assert_eq!(r.finish().unwrap(), m, "pieces of {size}");
        }
    }

    /// Each of these passed as good metrics before (prometheus-parse skipped what it could not
    /// read); each is an error naming its line now.
    #[test]
    fn malformed_expositions_are_errors_naming_the_line() {
        let good = "# TYPE go_goroutines gauge\ngo_goroutines 12\n";
        for (bad, want) in [
            ("this is not a metric\n", "line 3"),
            ("go_threads\n", "no value"),
            ("go_threads abc\n", "not a number"),
            ("go_threads 1 2 3\n", "timestamp"),
            ("go_threads{a=\"1\" 4\n", "expected ','"),
            ("go_threads{a=1} 4\n", "not quoted"),
            ("go_threads{a=\"1} 4\n", "not closed"),
            ("go_threads{a=\"\\q\"} 4\n", "bad escape"),
            ("go_threads{1a=\"x\"} 4\n", "not a label name"),
            ("9go 1\n", "not a metric name"),
            ("go_goroutines 13\n", "more than once"),
            ("go_threads -1\n", "not a count"),
            ("go_threads 1.5\n", "not a count"),
            ("go_threads inf\n", "not a number"),
            ("# TYPE go_threads sideways\n", "unknown type"),
            ("# EOF\ngo_threads 1\n", "after # EOF"),
            ("go_threads 1 # nolabels 2\n", "exemplar"),
            ("process_start_time_seconds NaN\n", "not a time"),
        ] {
            let body = format!("{good}{bad}");
            let err = parse_go_metrics(body.as_bytes()).expect_err(&format!("accepted {bad:?}"));
            assert!(err.contains(want), "{bad:?}: {err}");
            assert!(err.starts_with("line "), "{bad:?}: {err}");
        }
        let mut invalid = good.as_bytes().to_vec();
        invalid.extend_from_slice(b"go_threads\xff 1\n");
        assert!(
            parse_go_metrics(&invalid)
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn an_endless_line_stops_at_the_cap() {
        let mut r = MetricsReader::default();
        r.feed(b"go_goroutines 1\n").unwrap();
        let zeros = vec![0u8; 8192];
        let mut fed = 0;
        let err = loop {
            match r.feed(&zeros) {
                Ok(()) => fed += zeros.len(),
                Err(e) => break e,
            }
            assert!(fed <= MAX_LINE, "buffered past the cap");
        };
        assert!(err.contains("line 2 is longer than"), "{err}");
    }
}
