//! Named queries: the `.sql` files of `queries/`, embedded in the binary so that an in-cluster
//! CronJob has them too (a `--queries-dir` may add or override).
//!
//! A query file opens with comment lines: the first says what it answers; `-- param: NAME TYPE
//! DEFAULT` lines declare parameters, referenced in the body as `${NAME}`. Types: `timestamp`
//! (RFC 3339, Unix seconds, or relative to now: `now`, `now-2h`, `now-30m`, `now-7d`), `string`,
//! `int`, `float`. A value is checked against its type and rendered as a SQL literal, so a
//! parameter can never inject SQL. Each timestamp parameter `X` also defines `${X_date}`, its
//! date as `'YYYY-MM-DD'`, and `${X_hour}`, its hour as `'HH'`, to prune the `date` and `hour`
//! partition columns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// The queries shipped in `queries/`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "goroutines_by_state",
        include_str!("../../queries/goroutines_by_state.sql"),
    ),
    (
        "goroutines_over_time",
        include_str!("../../queries/goroutines_over_time.sql"),
    ),
    (
        "stack_growth",
        include_str!("../../queries/stack_growth.sql"),
    ),
    (
        "oldest_blocked",
        include_str!("../../queries/oldest_blocked.sql"),
    ),
    (
        "leak_profile_stacks",
        include_str!("../../queries/leak_profile_stacks.sql"),
    ),
    (
        "rule_baseline",
        include_str!("../../queries/rule_baseline.sql"),
    ),
    ("rule_growth", include_str!("../../queries/rule_growth.sql")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Timestamp,
    String,
    Int,
    Float,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDecl {
    pub name: String,
    pub ty: ParamType,
    pub default: String,
}

#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: String,
    /// The first comment line: what the query answers.
    pub summary: String,
    /// Every comment line before the first `param:` line, joined with newlines: the whole
    /// description (`leakhound query --list`).
    pub description: String,
    pub params: Vec<ParamDecl>,
    pub body: String,
}

impl NamedQuery {
    pub fn parse(name: &str, text: &str) -> Result<NamedQuery> {
        let mut summary = String::new();
        let mut description: Vec<&str> = Vec::new();
        let mut params = Vec::new();
        for line in text.lines() {
            let Some(c) = line.trim().strip_prefix("--") else {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            };
            let c = c.trim();
            if let Some(p) = c.strip_prefix("param:") {
                let mut it = p.split_whitespace();
                let (Some(pname), Some(ty)) = (it.next(), it.next()) else {
                    return Err(Error::QueryFile {
                        file: format!("{name}.sql"),
                        message: format!(
                            "bad param line {line:?}: want `-- param: NAME TYPE DEFAULT`"
                        ),
                    });
                };
                let ty = match ty {
                    "timestamp" => ParamType::Timestamp,
                    "string" => ParamType::String,
                    "int" => ParamType::Int,
                    "float" => ParamType::Float,
                    other => {
                        return Err(Error::QueryFile {
                            file: format!("{name}.sql"),
                            message: format!("unknown param type {other:?}"),
                        });
                    }
                };
                let default = it.collect::<Vec<_>>().join(" ");
                params.push(ParamDecl {
                    name: pname.to_string(),
                    ty,
                    default,
                });
            } else {
                if summary.is_empty() {
                    summary = c.to_string();
                }
                if params.is_empty() {
                    description.push(c);
                }
            }
        }
        Ok(NamedQuery {
            name: name.to_string(),
            summary,
            description: description.join("\n"),
            params,
            body: text.to_string(),
        })
    }

    /// The SQL with every `${param}` replaced by its literal.
    pub fn render(&self, given: &BTreeMap<String, String>, now: DateTime<Utc>) -> Result<String> {
        for k in given.keys() {
            if !self.params.iter().any(|p| &p.name == k) {
                return Err(self.perr(
                    k,
                    format!(
                        "not a parameter of this query; it takes: {}",
                        self.params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for p in &self.params {
            let raw = given.get(&p.name).unwrap_or(&p.default);
            match p.ty {
                ParamType::Timestamp => {
                    let t = parse_time(raw, now).ok_or_else(|| {
                        self.perr(
                            &p.name,
                            format!("{raw:?} is not a time (RFC 3339, Unix seconds, now-2h)"),
                        )
                    })?;
                    values.insert(
                        p.name.clone(),
                        format!(
                            "TIMESTAMP '{}'",
                            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                        ),
                    );
                    values.insert(
                        format!("{}_date", p.name),
                        format!("'{}'", t.format("%Y-%m-%d")),
                    );
                    values.insert(format!("{}_hour", p.name), format!("'{}'", t.format("%H")));
                }
                ParamType::String => {
                    values.insert(p.name.clone(), format!("'{}'", raw.replace('\'', "''")));
                }
                ParamType::Int => {
                    let v: i64 = raw
                        .parse()
                        .map_err(|_| self.perr(&p.name, format!("{raw:?} is not an integer")))?;
                    values.insert(p.name.clone(), v.to_string());
                }
                ParamType::Float => {
                    let v: f64 = raw
                        .parse()
                        .ok()
                        .filter(|v: &f64| v.is_finite())
                        .ok_or_else(|| self.perr(&p.name, format!("{raw:?} is not a number")))?;
                    values.insert(p.name.clone(), format!("{v:?}"));
                }
            }
        }
        let mut out = String::with_capacity(self.body.len());
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(j) = after.find('}') else {
                return Err(Error::QueryFile {
                    file: format!("{}.sql", self.name),
                    message: "unclosed ${".into(),
                });
            };
            let key = &after[..j];
            let v = values.get(key).ok_or_else(|| Error::QueryFile {
                file: format!("{}.sql", self.name),
                message: format!("${{{key}}} is used but not declared with `-- param:`"),
            })?;
            out.push_str(v);
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn perr(&self, param: &str, message: String) -> Error {
        Error::Param {
            query: self.name.clone(),
            param: param.to_string(),
            message,
        }
    }
}

/// RFC 3339, Unix seconds, `now`, or `now-DURATION` (`now-2h`, `now-1w`, `now-1m30s`): the one
/// parser, [`leakhound_schemas::time::parse_time`].
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    leakhound_schemas::time::parse_time(s, now).ok()
}

/// Look a query up: `dir/NAME.sql` first (when given), then the built-in ones.
pub fn find(name: &str, dir: Option<&std::path::Path>) -> Result<NamedQuery> {
    if let Some(d) = dir {
        let p = d.join(format!("{name}.sql"));
        if p.exists() {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::QueryFile {
                file: p.display().to_string(),
                message: e.to_string(),
            })?;
            return NamedQuery::parse(name, &text);
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => NamedQuery::parse(n, text),
        None => Err(Error::UnknownQuery {
            name: name.to_string(),
            known: BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Every built-in query, parsed.
pub fn builtin() -> Result<Vec<NamedQuery>> {
    BUILTIN
        .iter()
        .map(|(n, t)| NamedQuery::parse(n, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn builtin_queries_parse_and_render_with_defaults() {
        for q in builtin().unwrap() {
            assert!(!q.summary.is_empty(), "{} has no summary line", q.name);
            let sql = q.render(&BTreeMap::new(), now()).unwrap();
            assert!(!sql.contains("${"), "{}", q.name);
        }
    }

    #[test]
    fn params_are_typed_and_quoted() {
        let q = NamedQuery::parse(
            "t",
            "-- t\n-- param: ns string %\n-- param: n int 5\n-- param: from timestamp now-2h\nSELECT ${ns}, ${n}, ${from}, ${from_date}, ${from_hour}",
        )
        .unwrap();
        let mut given = BTreeMap::new();
        given.insert("ns".to_string(), "a'b".to_string());
        let sql = q.render(&given, now()).unwrap();
        assert_eq!(
            sql.lines().last().unwrap(),
            "SELECT 'a''b', 5, TIMESTAMP '2026-11-28T10:00:00.000000Z', '2026-11-28', '10'"
        );
        given.insert("n".to_string(), "5; DROP".to_string());
        assert!(q.render(&given, now()).is_err());
        given.clear();
        given.insert("nope".to_string(), "1".to_string());
        assert!(q.render(&given, now()).is_err());
    }
}
