//! `leakhound report --cluster ID --pprof FILE`: `leakhound_analyze::report::cluster_profile`
//! written to a file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::StoreArgs;

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The cluster's id (leak_clusters.cluster_id, `clusters[].id` of an event).
    #[arg(long)]
    pub cluster: String,
    /// Write the cluster as a goroutine profile (gzip'd profile.proto) for `go tool pprof`.
    #[arg(long)]
    pub pprof: PathBuf,
}

pub async fn run(a: ReportArgs) -> Result<ExitCode> {
    let store = a.store.open_existing()?;
    if let Some(code) = crate::check::reached("report") {
        return Ok(code);
    }
    a.store.ensure_exists(&store).await?;
    let p = leakhound_analyze::report::cluster_profile(&store, &a.cluster).await?;
    std::fs::write(&a.pprof, &p.bytes).with_context(|| format!("writing {}", a.pprof.display()))?;
    println!(
        "cluster {} ({} stacks, {} goroutines) written to {} — open with `go tool pprof -traces {}`",
        a.cluster,
        p.stacks,
        p.goroutines,
        a.pprof.display(),
        a.pprof.display()
    );
    Ok(ExitCode::SUCCESS)
}
