//! Fault injection for tests and the fault bench: `LEAKHOUND_FAULT=<point>[:<n>]` aborts the
//! process (SIGABRT: no destructor, no flush, no cleanup — what `kill -9` leaves) the `n`-th
//! time (default the first) the code passes `<point>`.
//!
//! This is a fake crash at a chosen point, named as such: a real `kill -9` cannot be aimed
//! between two writes of one commit, which is where a commit protocol has to be proven. The
//! points: `data-file` (after each data file of a batch), `after-data-files` (all data files
//! of a batch written, its commit record not), `after-commit` (commit record written),
//! `compact-after-output` (merged file written, not committed), `compact-after-commit`,
//! `compact-mid-gc` (after a garbage-collection delete), `compact-after-checkpoint`
//! (checkpoint written, the records it covers not yet deleted), `results-data-file` (after each
//! result file of an analyze or actuate run, before their commit record) and
//! `results-after-commit`.
//!
//! Without the variable set this costs one environment lookup per process.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const ENV: &str = "LEAKHOUND_FAULT";

struct Plan {
    point: String,
    at: u64,
    seen: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let v = std::env::var(ENV).ok()?;
        let (point, at) = match v.split_once(':') {
            Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some(Plan {
            point,
            at: at.max(1),
            seen: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Abort here if `LEAKHOUND_FAULT` names this point and this is its chosen occurrence.
pub fn point(name: &str) {
    let Some(p) = plan() else { return };
    if p.point != name {
        return;
    }
    let n = p.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if n == p.at {
        eprintln!("{ENV}: injected crash at {name} (occurrence {n})");
        std::process::abort();
    }
}
