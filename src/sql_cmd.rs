//! `leakhound sql`: one statement, a script (`-f`), or a prompt with history (`rustyline`;
//! `~/.leakhound_history`) on a terminal, else statements read from stdin. Statements are split
//! by `leakhound_analyze::sql` (the SQL tokenizer) and run on a session over the store.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use datafusion::prelude::SessionContext;
use leakhound_analyze::output::{self, Format};
use leakhound_analyze::{session, sql};
use leakhound_schemas::Table;

use crate::cli::StoreArgs;

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub engine: crate::cli::EngineArgs,
    /// The statement(s) to run; without it and without -f, statements are read from stdin
    /// (a prompt with history on a terminal).
    pub statement: Option<String>,
    /// Read statements from a file (separated by `;`).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    /// table, csv or json.
    #[arg(long, env = "LEAKHOUND_OUTPUT_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `--format` of `sql` and `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Format {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Json => Format::Json,
        }
    }
}

/// Runs every statement of `script`, printing each result; stops at the first error.
pub async fn run_script(ctx: &SessionContext, script: &str, format: Format) -> Result<()> {
    for s in sql::split_statements(script)? {
        print(&sql::run(ctx, &s).await?, format)?;
    }
    Ok(())
}

pub fn print(batches: &[arrow::array::RecordBatch], format: Format) -> Result<()> {
    let mut out = Tracked {
        inner: std::io::stdout().lock(),
        failed: None,
    };
    let written = output::write(&mut out, batches, format)
        .map_err(anyhow::Error::from)
        .and_then(|()| out.flush().map_err(anyhow::Error::from));
    match (written, out.failed) {
        (Ok(()), _) => Ok(()),
        // Some writers (Arrow's CSV) keep only the text of an IO error: the kind is kept here,
        // so a closed stdout is recognised as one (and ends the command quietly).
        (Err(_), Some(std::io::ErrorKind::BrokenPipe)) => {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into())
        }
        (Err(e), _) => Err(e),
    }
}

/// A writer that remembers the kind of its last error.
struct Tracked<W> {
    inner: W,
    failed: Option<std::io::ErrorKind>,
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write(buf)
            .inspect_err(|e| self.failed = Some(e.kind()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|e| self.failed = Some(e.kind()))
    }
}

pub async fn run(a: SqlArgs) -> Result<ExitCode> {
    let store = a.store.open_existing()?;
    if let Some(code) = crate::check::reached("sql") {
        return Ok(code);
    }
    a.store.ensure_exists(&store).await?;
    let ctx = session::session_on(&store, &a.engine.engine).await?;
    let format = Format::from(a.format);
    if let Some(stmt) = &a.statement {
        run_script(&ctx, stmt, format).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &a.file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        run_script(&ctx, &text, format).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if std::io::stdin().is_terminal() {
        return prompt(&ctx, store.url(), format).await;
    }
    // From a pipe: statements end with `;`; each is run as soon as it is complete, a failed
    // one is reported and the rest run; any failure makes the run exit 1.
    let mut failed = false;
    let mut buf = String::new();
    let stdin = std::io::stdin();
    loop {
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        buf.push_str(&line);
        if sql::ends_statement(&buf) {
            failed |= !run_reporting(&ctx, &buf, format).await?;
            buf.clear();
        }
    }
    if !buf.trim().is_empty() {
        failed |= !run_reporting(&ctx, &buf, format).await?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the statements of `buf`, printing a failed one's error and going on; whether all
/// succeeded. A closed stdout is not reported but returned (the run ends quietly).
async fn run_reporting(ctx: &SessionContext, buf: &str, format: Format) -> Result<bool> {
    let statements = match sql::split_statements(buf) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    let mut ok = true;
    for s in statements {
        let r = match sql::run(ctx, &s).await {
            Ok(batches) => print(&batches, format),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = r {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return Err(e);
            }
            eprintln!("error: {}", crate::cli::chain(&e));
            ok = false;
        }
    }
    Ok(ok)
}

/// The interactive prompt: line editing and history; errors are printed and the prompt goes
/// on; Ctrl-C drops the statement being typed, Ctrl-D quits.
async fn prompt(ctx: &SessionContext, url: &str, format: Format) -> Result<ExitCode> {
    use rustyline::error::ReadlineError;
    let tables: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    eprintln!(
        "leakhound sql on {url}: tables {}. End statements with ';', Ctrl-D quits.",
        tables.join(", ")
    );
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the prompt")?;
    let history = std::env::home_dir().map(|h| h.join(".leakhound_history"));
    if let Some(h) = &history {
        // No history yet is fine.
        let _ = editor.load_history(h);
    }
    let mut buf = String::new();
    loop {
        let p = if buf.is_empty() {
            "leakhound> "
        } else {
            "        -> "
        };
        match editor.readline(p) {
            Ok(line) => {
                buf.push_str(&line);
                buf.push('\n');
                if sql::ends_statement(&buf) {
                    let _ = editor.add_history_entry(buf.trim());
                    run_reporting(ctx, &buf, format).await?;
                    buf.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading the prompt"),
        }
    }
    if !buf.trim().is_empty() {
        run_reporting(ctx, &buf, format).await?;
    }
    if let Some(h) = &history
        && let Err(e) = editor.save_history(h)
    {
        tracing::warn!(error = %e, file = %h.display(), "Failed to save the SQL history.");
    }
    Ok(ExitCode::SUCCESS)
}
