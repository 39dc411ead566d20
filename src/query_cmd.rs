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
    crate::sql_cmd::run_script(&ctx, &sql, a.format.into()).await?;
    Ok(ExitCode::SUCCESS)
}
