//! `leakhound query`: a named query of `queries/` (`leakhound_analyze::queries`) rendered with
//! its parameters and run; `--list` prints each query's whole description and parameters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use leakhound_analyze::{queries, session};
use leakhound_schemas::time::TimeSpec;

use crate::cli::{StoreArgs, usage};
use crate::sql_cmd::OutputFormat;

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub engine: crate::cli::EngineArgs,
    /// The query's name (queries/NAME.sql).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// A parameter as NAME=VALUE (repeatable); times as RFC 3339, Unix seconds or now-2h.
    #[arg(short = 'p', long = "param", value_parser = crate::cli::key_value)]
    pub params: Vec<(String, String)>,
    /// table, csv or json.
    #[arg(long, env = "LEAKHOUND_OUTPUT_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// A folder of extra or overriding .sql files.
    #[arg(long, env = "LEAKHOUND_QUERIES_DIR")]
    pub queries_dir: Option<PathBuf>,
    /// List the named queries with what each answers and its parameters.
    #[arg(long)]
    pub list: bool,
    /// Print the SQL instead of running it.
    #[arg(long)]
    pub show_sql: bool,
    /// "Now" for relative times (now-2h); defaults to the clock.
    #[arg(long, env = "LEAKHOUND_NOW", value_parser = crate::cli::time)]
    pub now: Option<TimeSpec>,
}

fn list(dir: Option<&std::path::Path>) -> Result<()> {
    use std::io::Write;
    let mut all = queries::builtin()?;
    if let Some(dir) = dir {
        for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "sql") {
                let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                all.retain(|q| q.name != name);
                all.push(queries::find(name, Some(dir))?);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for q in all {
        // `name: first line`, then the rest of the description indented.
        let mut lines = q.description.lines();
        writeln!(out, "{}: {}", q.name, lines.next().unwrap_or_default())?;
        for line in lines {
            writeln!(out, "    {line}")?;
        }
        for p in &q.params {
            writeln!(
                out,
                "    -p {}=…   ({:?}, default {})",
                p.name, p.ty, p.default
            )?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

pub async fn run(a: QueryArgs) -> Result<ExitCode> {
    if a.list {
        list(a.queries_dir.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = &a.name else {
        return Err(usage("name a query, or pass --list"));
    };
    let q = queries::find(name, a.queries_dir.as_deref())?;
    let now = match a.now {
        Some(n) => crate::cli::resolve("now", n, chrono::Utc::now())?,
        None => chrono::Utc::now(),
    };
    let params: BTreeMap<String, String> = a.params.into_iter().collect();
    // A parameter the query does not take, or a value of the wrong type: a usage error.
    let sql = q.render(&params, now).map_err(|e| match e {
        e @ leakhound_analyze::Error::Param { .. } => usage(format!("-p: {e}")),
        e => e.into(),
    })?;
    if let Some(code) = crate::check::reached("query") {
        return Ok(code);
    }
    if a.show_sql {
        println!("{sql}");
        return Ok(ExitCode::SUCCESS);
    }
    let store = a.store.open_existing()?;
    a.store.ensure_exists(&store).await?;
    let ctx = session::session_on(&store, &a.engine.engine).await?;
    let format = a.format.into();
    let mut rows = 0;
    let mut results = Vec::new();
    for s in leakhound_analyze::sql::split_statements(&sql)? {
        let batches = leakhound_analyze::sql::run(&ctx, &s).await?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
        results.push(batches);
    }
    // No rows in a window the user did not choose: say so, and what range the store holds,
    // rather than an empty table.
    let defaulted: Vec<&queries::ParamDecl> = q
        .params
        .iter()
        .filter(|p| p.ty == queries::ParamType::Timestamp && !params.contains_key(&p.name))
        .collect();
    if rows == 0 && !defaulted.is_empty() {
        let note = empty_window_note(&ctx, name, &q, &params, now).await?;
        if matches!(a.format, OutputFormat::Table) {
            println!("{note}");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{note}");
    }
    for batches in results {
        crate::sql_cmd::print(&batches, format)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// "No rows between A and B (the default window); the store holds counts from X to Y", with a
/// command line over that range.
async fn empty_window_note(
    ctx: &datafusion::prelude::SessionContext,
    name: &str,
    q: &queries::NamedQuery,
    given: &BTreeMap<String, String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    use std::fmt::Write as _;
    let show =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let window: Vec<String> = q
        .params
        .iter()
        .filter(|p| p.ty == queries::ParamType::Timestamp)
        .map(|p| {
            let raw = given.get(&p.name).unwrap_or(&p.default);
            let at = crate::cli::time(raw)
                .ok()
                .and_then(|t| t.resolve(now))
                .map(show)
                .unwrap_or_else(|| raw.clone());
            let how = if given.contains_key(&p.name) {
                ""
            } else {
                ", default"
            };
            format!("{}={at} ({raw}{how})", p.name)
        })
        .collect();
    let mut note = format!("(no rows) in the window {}", window.join(" "));
    let mut range: Option<(i64, i64)> = None;
    for table in ["goroutine_counts", "goroutine_samples"] {
        let sql = format!(
            "SELECT CAST(to_unixtime(MIN(ts)) AS BIGINT) AS lo, \
                    CAST(to_unixtime(MAX(ts)) AS BIGINT) AS hi FROM {table}"
        );
        for b in leakhound_analyze::sql::run(ctx, &sql).await? {
            use arrow::array::AsArray;
            if b.num_rows() == 0 {
                continue;
            }
            let (lo, hi) = (
                b.column(0).as_primitive::<arrow::datatypes::Int64Type>(),
                b.column(1).as_primitive::<arrow::datatypes::Int64Type>(),
            );
            if arrow::array::Array::is_null(lo, 0) || arrow::array::Array::is_null(hi, 0) {
                continue;
            }
            let (l, h) = (lo.value(0), hi.value(0));
            range = Some(match range {
                Some((a, b)) => (a.min(l), b.max(h)),
                None => (l, h),
            });
        }
    }
    match range {
        None => note.push_str("\nthe store holds no goroutine counts or samples"),
        Some((lo, hi)) => {
            let at = |t: i64| show(chrono::DateTime::from_timestamp(t, 0).unwrap_or_default());
            let _ = write!(
                note,
                "\nthe store holds goroutines from {} to {}; over that range:\n  \
                 leakhound query {name} -p from={} -p to={}",
                at(lo),
                at(hi),
                at(lo),
                at(hi + 1)
            );
        }
    }
    Ok(note)
}
