//! `leakhound status`: the report of `leakhound_analyze::sql::status_statements` (every table's
//! rows and time range, the targets, the ingest log's tally) over a store that must exist.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use leakhound_analyze::output::Format;
use leakhound_analyze::{session, sql};

use crate::cli::StoreArgs;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(a: StatusArgs) -> Result<ExitCode> {
    let store = a.store.open_existing()?;
    if let Some(code) = crate::check::reached("status") {
        return Ok(code);
    }
    a.store.ensure_exists(&store).await?;
    let ctx = session::session(&store).await?;
    {
        use std::io::Write;
        writeln!(std::io::stdout().lock(), "store {}", store.url())?;
    }
    for s in sql::status_statements() {
        crate::sql_cmd::print(&sql::run(&ctx, &s).await?, Format::Table)?;
    }
    Ok(ExitCode::SUCCESS)
}
