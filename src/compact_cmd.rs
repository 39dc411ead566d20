//! `leakhound compact`: flags into `leakhound_ingest::compact`'s options and its summary.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use leakhound_ingest::compact::{self, CompactOptions};

use crate::cli::StoreArgs;

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Drop date partitions older than this (e.g. 30d, 4w).
    #[arg(long, env = "LEAKHOUND_RETAIN", value_parser = crate::cli::duration)]
    pub retain: Option<Duration>,
    /// How long replaced files stay readable for queries already running.
    #[arg(long, env = "LEAKHOUND_COMPACT_GRACE", default_value = "10m", value_parser = crate::cli::duration)]
    pub grace: Duration,
    /// Compact a partition once it holds at least this many files.
    #[arg(long, default_value_t = 2)]
    pub min_files: usize,
}

pub async fn run(a: CompactArgs) -> Result<ExitCode> {
    let store = a.store.open()?;
    let opts = CompactOptions {
        grace: a.grace,
        min_files: a.min_files.max(2),
        retain: a.retain,
        now: chrono::Utc::now(),
    };
    if let Some(code) = crate::check::reached("compact") {
        return Ok(code);
    }
    let bar = crate::cli::spinner(true);
    if let Some(bar) = &bar {
        bar.set_message(format!("compacting {}", store.url()));
    }
    let s = compact::compact(&store, &opts).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let s = s?;
    println!(
        "compact {}: {} partitions compacted ({} files merged, {} rows), {} replaced files deleted, {} orphans deleted, {} staging files deleted, {} partitions dropped by retention, {} partitions left to a concurrent compaction",
        store.url(),
        s.partitions_compacted,
        s.files_merged,
        s.rows_written,
        s.replaced_files_deleted,
        s.orphans_deleted,
        s.staging_deleted,
        s.partitions_dropped,
        s.conflicts
    );
    Ok(ExitCode::SUCCESS)
}
