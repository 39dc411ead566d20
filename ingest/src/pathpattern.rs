//! Target identity and timestamp from an archived file's path.
//!
//! A pattern is a `/`-separated list of components matched against the LAST components of a
//! file's path (so `/archive/2026/prod/api-7f9c/1764300000.txt` matches
//! `{namespace}/{pod}/{timestamp}`). A component is a placeholder (`{namespace}`, `{pod}`,
//! `{workload}`, `{container}`, `{cluster}`, `{node}`, `{timestamp}`), `*` (anything), or literal
//! text. The timestamp is RFC 3339 (also with `-` instead of `:` in the time, for file systems
//! that forbid colons) or Unix seconds (with an optional fraction) or milliseconds; extensions
//! such as `.debug2.txt.gz` are ignored.

use std::collections::BTreeMap;

pub const DEFAULT_PATTERN: &str = "{namespace}/{pod}/{timestamp}";

const PLACEHOLDERS: [&str; 7] = [
    "namespace",
    "pod",
    "workload",
    "container",
    "cluster",
    "node",
    "timestamp",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    Field(&'static str),
    Any,
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
    components: Vec<Component>,
}

/// What a path told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFields {
    pub fields: BTreeMap<&'static str, String>,
    pub timestamp_us: Option<i64>,
}

impl Default for PathPattern {
    /// `{namespace}/{pod}/{timestamp}`.
    fn default() -> Self {
        PathPattern {
            raw: DEFAULT_PATTERN.to_string(),
            components: vec![
                Component::Field("namespace"),
                Component::Field("pod"),
                Component::Field("timestamp"),
            ],
        }
    }
}

impl PathPattern {
    pub fn parse(raw: &str) -> Result<PathPattern, String> {
        let mut components = Vec::new();
        for c in raw.trim_matches('/').split('/') {
            if c.is_empty() {
                return Err(format!("empty component in path pattern {raw:?}"));
            }
            if let Some(name) = c.strip_prefix('{').and_then(|c| c.strip_suffix('}')) {
                let Some(p) = PLACEHOLDERS.iter().find(|p| **p == name) else {
                    return Err(format!(
                        "unknown placeholder {{{name}}} in path pattern {raw:?}; known: {}",
                        PLACEHOLDERS.join(", ")
                    ));
                };
                components.push(Component::Field(p));
            } else if c == "*" {
                components.push(Component::Any);
            } else if c.contains('{') || c.contains('}') {
                return Err(format!(
                    "component {c:?} of path pattern {raw:?} mixes text and a placeholder; \
                     use one placeholder per path component"
                ));
            } else {
                components.push(Component::Literal(c.to_string()));
            }
        }
        Ok(PathPattern {
            raw: raw.to_string(),
            components,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Match the last components of `path`. `None` if the path is too short, a literal
    /// differs, or the `{timestamp}` component does not parse.
    pub fn matches(&self, path: &str) -> Option<PathFields> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() < self.components.len() {
            return None;
        }
        let tail = &parts[parts.len() - self.components.len()..];
        let mut out = PathFields::default();
        for (c, part) in self.components.iter().zip(tail) {
            match c {
                Component::Any => {}
                Component::Literal(l) => {
                    if strip_extensions(part) != l && part != l {
                        return None;
                    }
                }
                Component::Field("timestamp") => {
                    out.timestamp_us = Some(parse_timestamp(part)?);
                }
                Component::Field(name) => {
                    out.fields.insert(name, strip_extensions(part).to_string());
                }
            }
        }
        Some(out)
    }
}

const EXTENSIONS: [&str; 18] = [
    "gz",
    "tgz",
    "tar",
    "txt",
    "log",
    "pb",
    "pprof",
    "prof",
    "json",
    "debug0",
    "debug1",
    "debug2",
    "stderr",
    "stdout",
    "out",
    "dump",
    "goroutine",
    "goroutineleak",
];

/// `2026-11-28T04:10:00Z.debug2.txt.gz` → `2026-11-28T04:10:00Z`.
pub fn strip_extensions(name: &str) -> &str {
    let mut s = name;
    while let Some((stem, ext)) = s.rsplit_once('.') {
        if EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            s = stem;
        } else {
            break;
        }
    }
    s
}

/// RFC 3339 or Unix seconds/milliseconds, after dropping known extensions.
pub fn parse_timestamp(raw: &str) -> Option<i64> {
    let s = strip_extensions(raw);
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    // 2026-11-28T04-10-00Z (colons replaced for file systems that forbid them).
    if let Some((date, time)) = s.split_once('T') {
        let fixed = format!("{date}T{}", time.replacen('-', ":", 2));
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&fixed) {
            return Some(dt.timestamp_micros());
        }
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let v: i64 = int.parse().ok()?;
    let frac_us: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().ok()?
    };
    match int.len() {
        // Seconds: plausible from 2001 to 2286.
        9..=10 => v.checked_mul(1_000_000)?.checked_add(frac_us),
        // Milliseconds.
        12..=13 if frac.is_empty() => v.checked_mul(1_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern() {
        let p = PathPattern::parse(DEFAULT_PATTERN).unwrap();
        assert_eq!(p, PathPattern::default());
        let m = p
            .matches("/x/prod/api-7f9c/2026-11-28T04:10:00Z.debug2.txt")
            .unwrap();
        assert_eq!(m.fields["namespace"], "prod");
        assert_eq!(m.fields["pod"], "api-7f9c");
        assert_eq!(m.timestamp_us, Some(1_795_839_000_000_000));
        let m = p.matches("prod/api/1795839000.pb.gz").unwrap();
        assert_eq!(m.timestamp_us, Some(1_795_839_000_000_000));
        assert!(p.matches("api/notatime.txt").is_none());
        assert!(p.matches("x.txt").is_none());
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("2026-11-28T04-10-00Z"),
            Some(1_795_839_000_000_000)
        );
        assert_eq!(
            parse_timestamp("1795839000123"),
            Some(1_795_839_000_123_000)
        );
        assert_eq!(
            parse_timestamp("1795839000.5.txt"),
            Some(1_795_839_000_500_000)
        );
        assert_eq!(parse_timestamp("12"), None);
        assert_eq!(parse_timestamp("99999999999999999999999"), None);
    }

    #[test]
    fn bad_patterns() {
        assert!(PathPattern::parse("{nope}/{pod}").is_err());
        assert!(PathPattern::parse("x{pod}").is_err());
        assert!(PathPattern::parse("a//b").is_err());
    }
}
