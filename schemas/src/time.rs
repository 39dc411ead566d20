//! The one parser of durations and times, for every flag, policy field and query parameter.
//!
//! A duration is what Prometheus and kubectl users write, read by `humantime`: `500ms`, `90s`,
//! `1m30s`, `12h`, `30d`, `1w` (units ns, us, ms, s, m, h, d, w, and their long spellings;
//! parts add up). A bare number is seconds, as it always was here (`--step 60`).
//!
//! A time is RFC 3339 (`2026-11-28T04:00:00Z`), Unix seconds (`1795839000`), `now`, or `now`
//! plus or minus a duration (`now-2h`, `now-1w`, `now-1m30s`). [`TimeSpec`] keeps a relative
//! time unresolved, so a flag can be validated when it is parsed and resolved against `--now`
//! later.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A duration or time that does not parse; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a {what}: {reason}")]
pub struct ParseError {
    pub input: String,
    pub what: &'static str,
    pub reason: String,
}

const DURATION_HELP: &str = "want a duration like 500ms, 90s, 1m30s, 12h, 30d or 1w";
const TIME_HELP: &str = "want RFC 3339, Unix seconds, now, or now-DURATION (now-2h, now-1w)";

/// `500ms`, `1m30s`, `30d`, `1w`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let t = s.trim();
    let err = |reason: String| ParseError {
        input: s.to_string(),
        what: "duration",
        reason,
    };
    if t.is_empty() {
        return Err(err(DURATION_HELP.to_string()));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| err(format!("{e}; {DURATION_HELP}")));
    }
    humantime::parse_duration(t).map_err(|e| err(format!("{e}; {DURATION_HELP}")))
}

/// A time as written: absolute, or relative to a "now" given later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    At(DateTime<Utc>),
    /// `now` plus this many (signed) microseconds.
    Now(i64),
}

impl TimeSpec {
    pub fn parse(s: &str) -> Result<TimeSpec, ParseError> {
        let t = s.trim();
        let err = |reason: &str| ParseError {
            input: s.to_string(),
            what: "time",
            reason: reason.to_string(),
        };
        if let Some(rel) = t.strip_prefix("now") {
            if rel.is_empty() {
                return Ok(TimeSpec::Now(0));
            }
            let (sign, amount) = match rel.split_at(1) {
                ("-", a) => (-1i64, a),
                ("+", a) => (1i64, a),
                _ => return Err(err(TIME_HELP)),
            };
            let d =
                parse_duration(amount).map_err(|e| err(&format!("{}; {TIME_HELP}", e.reason)))?;
            let us = i64::try_from(d.as_micros()).map_err(|_| err("too far from now"))?;
            return Ok(TimeSpec::Now(sign * us));
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(t) {
            return Ok(TimeSpec::At(at.with_timezone(&Utc)));
        }
        if let Ok(n) = t.parse::<i64>()
            && let Some(at) = DateTime::from_timestamp(n, 0)
        {
            return Ok(TimeSpec::At(at));
        }
        Err(err(TIME_HELP))
    }

    /// The instant, `now` filling in a relative time; `None` past chrono's range.
    pub fn resolve(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            TimeSpec::At(t) => Some(t),
            TimeSpec::Now(us) => now.checked_add_signed(chrono::Duration::microseconds(us)),
        }
    }
}

impl std::str::FromStr for TimeSpec {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeSpec::parse(s)
    }
}

/// [`TimeSpec::parse`] then [`TimeSpec::resolve`].
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ParseError> {
    TimeSpec::parse(s)?.resolve(now).ok_or_else(|| ParseError {
        input: s.to_string(),
        what: "time",
        reason: "out of range".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_prometheus_and_kubectl_write_them() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1w"), Duration::from_secs(7 * 86_400));
        assert_eq!(ok("30d"), Duration::from_secs(30 * 86_400));
        assert_eq!(ok("90m"), Duration::from_secs(5_400));
        assert_eq!(ok("600s"), Duration::from_secs(600));
        assert_eq!(
            ok("60"),
            Duration::from_secs(60),
            "a bare number is seconds"
        );
        assert_eq!(ok(" 10s "), Duration::from_secs(10));
        for bad in [
            "",
            "d",
            "ten minutes",
            "-5s",
            "5 parsecs",
            "99999999999999999999999",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("1m30s"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn times() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(at("now"), "2026-11-28T04:00:00+00:00");
        assert_eq!(at("now-2h"), "2026-11-28T02:00:00+00:00");
        assert_eq!(at("now-1w"), "2026-11-21T04:00:00+00:00");
        assert_eq!(at("now-1m30s"), "2026-11-28T03:58:30+00:00");
        assert_eq!(at("now+500ms"), "2026-11-28T04:00:00.500+00:00");
        assert_eq!(at("2026-11-27T00:00:00+01:00"), "2026-11-26T23:00:00+00:00");
        assert_eq!(at("1795839000"), "2026-11-28T04:10:00+00:00");
        for bad in ["yesterday", "now-", "now*2h", "now-2x", "", "12:00"] {
            assert!(parse_time(bad, now).is_err(), "{bad:?}");
        }
        // Relative times stay relative until resolved.
        assert_eq!(
            TimeSpec::parse("now-1s").unwrap(),
            TimeSpec::Now(-1_000_000)
        );
    }
}
