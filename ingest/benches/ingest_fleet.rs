//! One ingest pass over 1,000 Go targets on loopback: wall time per pass and peak RSS, next to
//! a reference client (Go net/http, same requests, same concurrency) measured in the same run;
//! then the same fleet with 50 hostile targets (endless bodies, a byte a second, gzip bombs):
//! peak RSS against the ingest CronJob's memory limit, and against the clean fleet's.
//!
//! The targets are `tests/goprogs/cmd/fleet`: one Go process listening on 1,000 addresses
//! (127.1.x.y), each serving its real client_golang `/metrics` and its real goroutine profile
//! (rendered once); with `-hostile`, some of them misbehave (`cmd/fleet/hostile.go`). Pass 1
//! takes a debug=2 dump of every target (nothing known yet); later passes take debug=1 and
//! metrics only, as a steady-state CronJob minute does.
//!
//! Run: `cargo bench -p leakhound-ingest --bench ingest_fleet` (env LEAKHOUND_BENCH_TARGETS,
//! LEAKHOUND_BENCH_HOSTILE = hostile targets, default 50, split evenly over the three kinds).
//! Each fleet's passes, and the parser's worst case, run in a process of their own (this bench
//! started again with LEAKHOUND_BENCH_PHASE), so that each peak RSS (VmHWM) is its own: memory
//! an allocator keeps after one phase does not count in the next.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use leakhound_ingest::Store;
use leakhound_ingest::scrape::{self, IngestState, PassOptions, http::Clients, targets};
use leakhound_ingest::writer::Writer;

// The allocator of the `leakhound` binary: peak RSS depends on it (glibc's per-thread arenas
// kept 2x more after the hostile passes' parser threads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Start the peak-RSS count afresh (Linux: "5" resets VmHWM to the current RSS).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The ingest CronJob's memory limit in MiB, read from the manifest.
fn cronjob_limit_mib() -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/leakhound.yaml");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            // The ingest CronJob's document of the rendered chart.
            let doc = t
                .split("\n---")
                .find(|d| d.contains("kind: CronJob") && d.contains("-ingest\n"))?;
            let limits = doc.split("limits:").nth(1)?.to_string();
            let mem = limits.split("memory:").nth(1)?.split_whitespace().next()?;
            mem.trim_matches('"').strip_suffix("Mi")?.parse().ok()
        })
        .unwrap_or(0)
}

struct Fleet(Child);

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_fleet(
    bin: &Path,
    n: usize,
    hostile: &str,
    targets: &Path,
) -> Result<Fleet, Box<dyn std::error::Error>> {
    let mut child = Command::new(bin)
        .args([
            "-n",
            &n.to_string(),
            "-port",
            "0",
            "-hostile",
            hostile,
            "-targets",
            targets.to_str().unwrap_or_default(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    println!(
        "fleet ({}): {}",
        if hostile.is_empty() { "clean" } else { hostile },
        line.trim()
    );
    Ok(Fleet(child))
}

struct Run {
    pass_ms: Vec<f64>,
    peak_mib: u64,
}

fn run_passes(
    rt: &tokio::runtime::Runtime,
    store_dir: &Path,
    targets_file: &Path,
    passes: usize,
) -> Result<Run, Box<dyn std::error::Error>> {
    let store = Store::open(store_dir.to_str().unwrap_or_default())?;
    let list: Vec<_> = targets::read_targets_file(targets_file)?
        .into_iter()
        .map(|s| s.into_target())
        .collect::<Result<_, _>>()?;
    let clients = Clients::new();
    let mut writer = Writer::new(store.clone());
    let mut state = IngestState::default();
    let opts = PassOptions::default();
    reset_hwm();
    let mut pass_ms = Vec::new();
    for pass in 1..=passes {
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
            "  pass {pass}: {} targets, {} up, {} debug=2, {} failed, {} rows in {} chunks, {ms:.0} ms, budget peak {} MiB, peak RSS {} MiB",
            s.targets,
            s.up,
            s.debug2_taken,
            s.failed.len(),
            s.commit.rows,
            s.chunks,
            s.budget_peak >> 20,
            vm_hwm_kib() / 1024
        );
        pass_ms.push(ms);
    }
    Ok(Run {
        pass_ms,
        peak_mib: vm_hwm_kib() / 1024,
    })
}

/// Peak heap of parsing `mib` MiB of the parser's worst case (ever-new stacks in the smallest
/// records the parsers accept, what the hostile fleet's endless bodies send), over the input's
/// size: what `stream::PARSE_CHARGE` must cover.
fn parse_amplification(mib: usize) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    for (name, header, record) in [
        (
            "debug=1",
            "goroutine profile: total {n}\n",
            "1 @ 0x1\n#\t0x1\tf{i}\t/a:1\n\n",
        ),
        ("debug=2", "", "goroutine {i} [a]:\nf{i}()\n\t/a:1\n\n"),
    ] {
        let mut records = String::new();
        let mut i = 1;
        while records.len() < mib << 20 {
            records.push_str(&record.replace("{i}", &i.to_string()));
            i += 1;
        }
        let body = header.replace("{n}", &(i - 1).to_string()) + &records;
        drop(records);
        reset_hwm();
        let before = vm_hwm_kib();
        let opts = leakhound_ingest::parse::ParseOptions::default();
        let snap = leakhound_ingest::parse::parse_snapshot_with(body.as_bytes(), name, &opts);
        let peak = vm_hwm_kib().saturating_sub(before) as f64 / 1024.0;
        let groups = snap.map(|s| s.groups.len()).unwrap_or(0);
        println!(
            "parser worst case, {name}: {mib} MiB of {groups} distinct stacks: peak +{peak:.0} MiB"
        );
        out.push((name, peak / mib as f64));
    }
    out
}

/// Run this bench again as `phase` (its own process) and return what it printed.
fn phase(phase: &str, env: &[(&str, &str)]) -> Result<String, Box<dyn std::error::Error>> {
    let mut c = Command::new(std::env::current_exe()?);
    c.env("LEAKHOUND_BENCH_PHASE", phase)
        .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    if !out.status.success() {
        return Err(format!("phase {phase} failed: {:?}", out.status).into());
    }
    Ok(text)
}

/// `key=value` from a phase's `result` line.
fn result(text: &str, key: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("result "))
        .flat_map(|l| l.split_whitespace())
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("LEAKHOUND_BENCH_PHASE").as_deref() {
        Ok("parse") => {
            for (name, x) in parse_amplification(16) {
                println!("result {name}={x:.1}");
            }
            return Ok(());
        }
        Ok("fleet") => {
            let targets = std::env::var("LEAKHOUND_BENCH_TARGETS_FILE")?;
            let passes: usize = std::env::var("LEAKHOUND_BENCH_PASSES")?.parse()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let dir = tempfile::tempdir()?;
            let run = run_passes(&rt, &dir.path().join("store"), Path::new(&targets), passes)?;
            let steady =
                run.pass_ms[1..].iter().sum::<f64>() / (run.pass_ms.len() - 1).max(1) as f64;
            println!(
                "result peak_mib={} first_ms={:.0} steady_ms={steady:.0}",
                run.peak_mib, run.pass_ms[0]
            );
            return Ok(());
        }
        _ => {}
    }
    let n: usize = std::env::var("LEAKHOUND_BENCH_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let hostile: usize = std::env::var("LEAKHOUND_BENCH_HOSTILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir()?;
    let fleet = dir.path().join("fleet");
    let goprogs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/goprogs");
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

    // The clean fleet: the reference client, then the passes.
    let clean_targets = dir.path().join("clean.json");
    let clean_fleet = start_fleet(&fleet, n, "", &clean_targets)?;
    let reference = Command::new(&fleet)
        .args([
            "-fetch",
            clean_targets.to_str().unwrap_or_default(),
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
    let clean = phase(
        "fleet",
        &[
            (
                "LEAKHOUND_BENCH_TARGETS_FILE",
                clean_targets.to_str().unwrap_or_default(),
            ),
            ("LEAKHOUND_BENCH_PASSES", "4"),
        ],
    )?;
    drop(clean_fleet);

    // The same fleet with hostile targets.
    // A third endless (half of them behind a /metrics that fails at once, so that a slow build
    // reaches the endless dumps too), a third drip, a third gzip bombs.
    let (endless, drip) = (hostile.div_ceil(3), hostile.div_ceil(3));
    let bomb = hostile.saturating_sub(endless + drip);
    let dumps = endless / 2;
    let spec = format!(
        "endless={},endlessdump={dumps},drip={drip},gzipbomb={bomb}",
        endless - dumps
    );
    let hostile_targets = dir.path().join("hostile.json");
    let hostile_fleet = start_fleet(&fleet, n, &spec, &hostile_targets)?;
    let bad = phase(
        "fleet",
        &[
            (
                "LEAKHOUND_BENCH_TARGETS_FILE",
                hostile_targets.to_str().unwrap_or_default(),
            ),
            ("LEAKHOUND_BENCH_PASSES", "2"),
        ],
    )?;
    drop(hostile_fleet);
    let parse = phase("parse", &[])?;

    let steady = result(&clean, "steady_ms");
    let (clean_peak, bad_peak) = (result(&clean, "peak_mib"), result(&bad, "peak_mib"));
    let limit = cronjob_limit_mib() as f64;
    println!(
        "ingest_fleet: {n} targets ({} profile)",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    );
    println!(
        "  steady pass (metrics + debug=1, parse, store)  {steady:.0} ms  ({:.1} passes/minute)",
        60_000.0 / steady
    );
    println!("  reference fetch only (Go net/http)             {reference_ms:.0} ms");
    println!(
        "  ratio pass / reference                          {:.2}x",
        steady / reference_ms
    );
    println!("  peak RSS, 0 hostile (reference)                 {clean_peak:.0} MiB");
    println!(
        "  peak RSS, {hostile} hostile ({spec})  {bad_peak:.0} MiB = {:.2}x the reference; limit {limit:.0} MiB (deploy/leakhound.yaml): {}",
        bad_peak / clean_peak,
        if bad_peak < limit { "under" } else { "OVER" }
    );
    println!(
        "  hostile passes                                  {:.0} ms, {:.0} ms (each drip target holds a slot for the 10 s timeout)",
        result(&bad, "first_ms"),
        result(&bad, "steady_ms")
    );
    for (name, charge) in [
        ("debug=1", scrape::stream::PARSE_CHARGE),
        ("debug=2", scrape::stream::DEBUG2_CHARGE),
    ] {
        println!(
            "  parser worst case {name}: {:.1}x its input (charged {charge}x while parsing)",
            result(&parse, name),
        );
    }
    Ok(())
}
