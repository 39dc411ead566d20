//! The ingest run: passes over static and discovered targets, one after another, and the rule
//! that decides whether the run failed. `leakhound ingest` parses its flags into a [`RunOptions`]
//! and prints the [`PassReport`]s this hands back; everything between is here.
//!
//! Under `--shard I/N` a pass scrapes only the targets that fall to shard `I` ([`shard`]), with
//! the shard's own state file.
//!
//! Exit rule: a pass fails when discovery failed, or when at least `fail_when_down` percent of
//! its targets were down (and at least one was). A fleet always has some pods down, and they
//! are in `scrape_status` either way, so the default (100) fails only a pass where every target
//! was down. A failed commit ends the run with an error (the chunks before it stay).

use std::time::Duration;

use super::discovery::{self, DiscoveryOptions};
use super::http::Clients;
use super::shard;
use super::targets::TargetSpec;
use super::{IngestState, PassOptions, PassSummary, run_pass};
use crate::error::Result;
use crate::store::Store;
use crate::writer::Writer;

/// What a run does; see the module header.
#[derive(Clone)]
pub struct RunOptions {
    /// Targets given on the command line or in a file.
    pub static_targets: Vec<TargetSpec>,
    /// Discover annotated pods through this client before each pass.
    pub discovery: Option<(kube::Client, DiscoveryOptions)>,
    pub pass: PassOptions,
    /// Loop: one pass every this long. `None`: one pass.
    pub every: Option<Duration>,
    /// With `every`: stop after this many passes.
    pub passes: Option<u64>,
    /// Percentage of down targets at which a pass fails (0..=100).
    pub fail_when_down: f64,
}

/// One pass as the command reports it.
#[derive(Debug)]
pub struct PassReport {
    /// 1-based.
    pub number: u64,
    pub summary: PassSummary,
    /// Discovery's error, when it failed (the static targets were scraped all the same).
    pub discovery_error: Option<String>,
    /// Targets whose spec could not become a target (bad URL, bad name), with why.
    pub skipped_targets: Vec<String>,
    /// Whether this pass fails the run (see the module header).
    pub failed: bool,
}

/// Whether a pass with `down` of `targets` down fails the run under `--fail-when-down PCT`.
pub fn pass_failed(targets: usize, down: usize, pct: f64) -> bool {
    down > 0 && down as f64 * 100.0 >= pct * targets as f64
}

/// Runs the passes; `on_pass` sees each as it ends. Returns how many passes failed.
pub async fn run(
    store: &Store,
    opts: &RunOptions,
    mut on_pass: impl FnMut(&PassReport),
) -> Result<u64> {
    let clients = Clients::new();
    let mut writer = Writer::new(store.clone());
    let mut state = IngestState::load_for(store, opts.pass.shard).await?;
    let mut n = 0u64;
    let mut failed_passes = 0u64;
    loop {
        let pass_start = tokio::time::Instant::now();
        let mut specs = opts.static_targets.clone();
        let mut discovery_error = None;
        if let Some((client, dopts)) = &opts.discovery {
            match discovery::discover(client, dopts).await {
                Ok((found, skipped)) => {
                    for (pod, why) in skipped {
                        tracing::info!(pod = %pod, reason = %why, "Skipped an annotated pod.");
                    }
                    specs.extend(found);
                }
                // A failed discovery keeps the static targets going; the pass reports it.
                Err(e) => {
                    tracing::warn!(error = %e, "Failed to discover pods.");
                    discovery_error = Some(e.to_string());
                }
            }
        }
        // Under --shard, this process's share of them only (`shard`).
        if let Some(sh) = opts.pass.shard {
            specs.retain(|s| sh.owns(&shard::key(s)));
        }
        let mut list = Vec::new();
        let mut skipped_targets = Vec::new();
        for s in specs {
            match s.into_target() {
                Ok(t) => list.push(t),
                Err(e) => skipped_targets.push(e),
            }
        }
        if opts.pass.shard.is_some() {
            let keys: Vec<String> = list.iter().map(|t| t.key()).collect();
            let adopted = state.adopt(store, &keys).await?;
            if adopted > 0 {
                tracing::info!(
                    adopted,
                    "Took the state of targets new to this shard from the other shards' state."
                );
            }
        }
        let now_us = chrono::Utc::now().timestamp_micros();
        let summary =
            run_pass(&mut writer, &clients, &list, &mut state, &opts.pass, now_us).await?;
        n += 1;
        let failed = discovery_error.is_some()
            || pass_failed(summary.targets, summary.down(), opts.fail_when_down);
        if failed {
            failed_passes += 1;
        }
        on_pass(&PassReport {
            number: n,
            summary,
            discovery_error,
            skipped_targets,
            failed,
        });
        match opts.every {
            Some(d) if opts.passes.is_none_or(|p| n < p) => {
                tokio::time::sleep_until(pass_start + d).await;
            }
            _ => break,
        }
    }
    Ok(failed_passes)
}

#[cfg(test)]
mod tests {
    use super::pass_failed;

    #[test]
    fn fail_when_down() {
        // Default 100: only a pass where every target was down fails.
        assert!(!pass_failed(10, 9, 100.0));
        assert!(pass_failed(10, 10, 100.0));
        assert!(!pass_failed(0, 0, 100.0), "no targets: nothing failed");
        assert!(
            !pass_failed(10, 0, 0.0),
            "0: fails on any down target, not on none"
        );
        assert!(pass_failed(10, 1, 0.0));
        assert!(pass_failed(4, 2, 50.0));
        assert!(!pass_failed(4, 1, 50.0));
    }
}
