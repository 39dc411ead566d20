//! The Go runtime's metrics from a Prometheus endpoint (text 0.0.4 or OpenMetrics), parsed with
//! the `prometheus-parse` crate: what client_golang's default Go and process collectors expose.

use prometheus_parse::{Scrape, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoMetrics {
    pub goroutines: Option<i64>,
    pub threads: Option<i64>,
    pub heap_alloc_bytes: Option<i64>,
    pub gc_count: Option<i64>,
    pub process_start_time_s: Option<f64>,
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Gauge(x) | Value::Counter(x) | Value::Untyped(x) => Some(*x),
        _ => None,
    }
}

/// Parse an exposition body. Errors only when nothing of it parses.
pub fn parse_go_metrics(body: &[u8]) -> Result<GoMetrics, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8 text: {e}"))?;
    if text.trim_start().starts_with('<') {
        return Err("an HTML page, not Prometheus metrics".into());
    }
    // OpenMetrics ends with `# EOF`; the 0.0.4 parser wants plain lines.
    let lines = text
        .lines()
        .filter(|l| *l != "# EOF")
        .map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).map_err(|e| format!("cannot parse metrics: {e}"))?;
    let mut m = GoMetrics::default();
    let as_i64 = |x: f64| (0.0..9.0e18).contains(&x).then_some(x.round() as i64);
    for s in &scrape.samples {
        let Some(v) = num(&s.value) else {
            continue;
        };
        match s.metric.as_str() {
            "go_goroutines" => m.goroutines = as_i64(v),
            "go_threads" => m.threads = as_i64(v),
            "go_memstats_heap_alloc_bytes" => m.heap_alloc_bytes = as_i64(v),
            "go_gc_duration_seconds_count"
            | "go_gc_cycles_total_gc_cycles_total"
            | "go_gc_cycles_total_gc_cycles"
                if m.gc_count.is_none() =>
            {
                m.gc_count = as_i64(v);
            }
            "process_start_time_seconds" => m.process_start_time_s = Some(v),
            _ => {}
        }
    }
    if m == GoMetrics::default() && scrape.samples.is_empty() {
        return Err("no metrics in the response".into());
    }
    Ok(m)
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
}
