//! SQL as the `sql`, `query` and `status` commands run it: scripts split into statements by
//! DataFusion's own SQL tokenizer (`sqlparser`), so a `;` inside a string, a quoted name or a
//! comment (`select 1 /* ; */`) does not end a statement; statements run to Arrow batches; and
//! the status report over every table of the store.

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use leakhound_schemas::Table;

use crate::error::{Error, Result};

/// The statements of a script, each without its `;`, empty ones (and comment-only ones)
/// dropped. A script the tokenizer cannot read (an unterminated string or comment) is an
/// error naming where.
pub fn split_statements(script: &str) -> Result<Vec<String>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, script)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| Error::Sql(e.to_string()))?;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has_code = false;
    for t in tokens {
        match t {
            Token::SemiColon => {
                if has_code {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                has_code = false;
            }
            Token::Whitespace(w) => cur.push_str(&w.to_string()),
            Token::EOF => {}
            other => {
                has_code = true;
                cur.push_str(&other.to_string());
            }
        }
    }
    if has_code {
        out.push(cur.trim().to_string());
    }
    Ok(out)
}

/// Whether `buf` holds at least one complete statement and nothing after the last `;` but
/// whitespace and comments: where an interactive prompt stops reading lines and runs them.
pub fn ends_statement(buf: &str) -> bool {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, buf)
        .with_unescape(false)
        .tokenize()
    else {
        // An open string or comment: keep reading.
        return false;
    };
    let mut complete = false;
    for t in tokens {
        match t {
            Token::SemiColon => complete = true,
            Token::Whitespace(_) | Token::EOF => {}
            _ => complete = false,
        }
    }
    complete
}

/// Runs one statement and collects its result.
pub async fn run(ctx: &SessionContext, statement: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(statement).await?.collect().await?)
}

/// The `status` report's statements, in order: every table with its rows and time range
/// (the first timestamp column of its schema), the targets, and the ingest log's tally.
pub fn status_statements() -> Vec<String> {
    let per_table: Vec<String> = Table::ALL
        .iter()
        .enumerate()
        .map(|(ord, t)| {
            let schema = t.schema();
            let time = schema
                .fields()
                .iter()
                .find(|f| matches!(f.data_type(), DataType::Timestamp(..)))
                .map(|f| f.name().clone());
            match time {
                Some(c) => format!(
                    "SELECT {ord} AS ord, '{}' AS table_name, COUNT(*) AS row_count, MIN({c}) AS first, MAX({c}) AS last FROM {}",
                    t.name(),
                    t.name()
                ),
                None => format!(
                    "SELECT {ord} AS ord, '{}' AS table_name, COUNT(*) AS row_count, CAST(NULL AS TIMESTAMP) AS first, CAST(NULL AS TIMESTAMP) AS last FROM {}",
                    t.name(),
                    t.name()
                ),
            }
        })
        .collect();
    vec![
        // In the order of `Table::ALL` (the branches of a UNION ALL run in parallel).
        format!(
            "SELECT table_name, row_count, first, last FROM ({}) ORDER BY ord",
            per_table.join(" UNION ALL ")
        ),
        "SELECT namespace, pod, COUNT(*) AS snapshots, MIN(ts) AS first, MAX(ts) AS last, \
         MIN(goroutines) AS min_goroutines, MAX(goroutines) AS max_goroutines, \
         array_agg(DISTINCT source) AS sources \
         FROM goroutine_counts GROUP BY namespace, pod ORDER BY namespace, pod"
            .to_string(),
        "SELECT status, COUNT(*) AS files, SUM(goroutines) AS goroutines FROM ingest_log \
         GROUP BY status ORDER BY status"
            .to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_strings_and_comments() {
        let s = |sql: &str| split_statements(sql).unwrap();
        assert_eq!(s("select 1 /* ; */"), vec!["select 1 /* ; */"]);
        assert_eq!(s("select 1; select 2;"), vec!["select 1", "select 2"]);
        assert_eq!(
            s("select 'a;b'; select 'it''s;'"),
            vec!["select 'a;b'", "select 'it''s;'"]
        );
        assert_eq!(s("select \"x;y\" from t"), vec!["select \"x;y\" from t"]);
        assert_eq!(
            s("-- a comment; still\nselect 1;\n-- trailing ;"),
            vec!["-- a comment; still\nselect 1"]
        );
        assert_eq!(s(" ;; \n"), Vec::<String>::new());
        assert!(split_statements("select 'open").is_err());
    }

    #[test]
    fn a_prompt_runs_when_a_statement_ends() {
        assert!(ends_statement("select 1;"));
        assert!(ends_statement("select 1; -- done\n"));
        assert!(!ends_statement("select 1"));
        assert!(!ends_statement("select ';"));
        assert!(!ends_statement("select 1 /* ; "));
        assert!(!ends_statement("select 1; select"));
    }

    #[test]
    fn status_covers_every_table() {
        let first = &status_statements()[0];
        for t in Table::ALL {
            assert!(
                first.contains(&format!("FROM {}", t.name())),
                "{}",
                t.name()
            );
        }
    }
}
