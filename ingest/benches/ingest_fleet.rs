//! One ingest pass over 1,000 Go targets on loopback: wall time per pass and peak RSS, next to
//! a reference client (Go net/http, same requests, same concurrency) measured in the same run.
//!
//! The targets are `tests/goprogs/cmd/fleet`: one Go process listening on 1,000 addresses
//! (127.1.x.y), each serving its real client_golang `/metrics` and its real goroutine profile
//! (rendered once). Pass 1 takes a debug=2 dump of every target (nothing known yet); later
//! passes take debug=1 and metrics only, as a steady-state CronJob minute does.
//!
//! Run: `cargo bench -p leakhound-ingest --bench ingest_fleet` (env LEAKHOUND_BENCH_TARGETS).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use leakhound_ingest::Store;
use leakhound_ingest::scrape::{self, IngestState, PassOptions, http::Clients, targets};
use leakhound_ingest::writer::Writer;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::var("LEAKHOUND_BENCH_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let fleet = dir.path().join("fleet");
    let goprogs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/goprogs");
    let st = Command::new("go")
        .args([
            "build",
            "-o",
            fleet.to_str().unwrap_or_default(),
            "./cmd/fleet",
        ])
        .current_dir(&goprogs)
        .env("GOCACHE", "/var/tmp/leakhound-gocache")
        .env("GOMODCACHE", "/var/tmp/leakhound-gomodcache")
        .status()?;
    if !st.success() {
        return Err("go build of the fleet failed".into());
    }
    let targets_file = dir.path().join("targets.json");
    let mut child = Command::new(&fleet)
        .args([
            "-n",
            &n.to_string(),
            "-targets",
            targets_file.to_str().unwrap_or_default(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    println!("fleet: {}", line.trim());

    let reference = Command::new(&fleet)
        .args([
            "-fetch",
            targets_file.to_str().unwrap_or_default(),
            "-concurrency",
            "64",
        ])
        .output()?;
    let reference_out = String::from_utf8_lossy(&reference.stdout).to_string();
    let reference_ms: f64 = reference_out
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    println!("{}", reference_out.trim());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = Store::open(dir.path().join("store").to_str().unwrap_or_default())?;
    let list: Vec<_> = targets::read_targets_file(&targets_file)?
        .into_iter()
        .map(|s| s.into_target())
        .collect::<Result<_, _>>()?;
    let clients = Clients::new();
    let mut writer = Writer::new(store.clone());
    let mut state = IngestState::default();
    let opts = PassOptions::default();
    let rss_before = vm_hwm_kib();
    let mut steady_ms = Vec::new();
    for pass in 1..=4 {
        let t0 = Instant::now();
        let now = chrono::Utc::now().timestamp_micros();
        let s = rt.block_on(scrape::run_pass(
            &mut writer,
            &clients,
            &list,
            &mut state,
            &opts,
            now,
        ))?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        println!(
            "pass {pass}: {} targets, {} up, {} debug=2, {} failed, {} rows, {ms:.0} ms, peak RSS {} MiB",
            s.targets,
            s.up,
            s.debug2_taken,
            s.failed.len(),
            s.commit.rows,
            vm_hwm_kib() / 1024
        );
        if pass > 1 {
            steady_ms.push(ms);
        }
    }
    let _ = child.kill();
    let steady = steady_ms.iter().sum::<f64>() / steady_ms.len().max(1) as f64;
    println!("ingest_fleet: {n} targets");
    println!(
        "  steady pass (metrics + debug=1, parse, store)  {steady:.0} ms  ({:.1} passes/minute)",
        60_000.0 / steady
    );
    println!("  reference fetch only (Go net/http)             {reference_ms:.0} ms");
    println!(
        "  ratio pass / reference                          {:.2}x",
        steady / reference_ms
    );
    println!(
        "  peak RSS                                        {} MiB (before passes {} MiB; goal <= 200)",
        vm_hwm_kib() / 1024,
        rss_before / 1024
    );
    Ok(())
}
