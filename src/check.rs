//! `--check-config`: every command parses its flags and environment, validates them exactly as
//! a real run does (durations, times, the policy file, target specs, the store URL, the receiver's
//! bearer-token or password file; not its TLS pair, read when it binds), and stops with exit 0
//! at the point where its work would begin: before
//! the first call to Kubernetes, the first read or write of the store's data, the first scrape or
//! listening socket. A flag or value the command line refuses (an unknown flag, a duration that
//! does not parse) exits 2, an invalid or missing file (policy, credentials) 1, with the reason. The Helm chart's install test (`tests/it/helm.rs`) runs every container's `args:` and
//! environment through it, so a renamed flag breaks a test, not a cluster.
//!
//! Opening the store checks its URL (and, for S3, the `AWS_*` settings); for a local path that
//! creates the directory, as any run would, except for the commands that only read, which
//! refuse a local store that is not there.
//!
//! A process-wide switch rather than an argument threaded through every command: it is set once,
//! from the parsed flags, before any command runs.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Where a command's validation ends and its work begins: with `--check-config`, says so and
/// returns the exit code the command returns at once.
pub fn reached(command: &str) -> Option<ExitCode> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    println!("leakhound {command}: configuration ok (--check-config: stopping before any work)");
    Some(ExitCode::SUCCESS)
}
