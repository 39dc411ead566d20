//! Bytes on disk per goroutine observation: a day of one-minute debug=2 snapshots of a leaking
//! service, stored by leakhound, next to the same dumps gzip'd (what people keep today).
//!
//! The dumps are made from a REAL capture (`tests/data/captures/go1.26/goroutine.debug2.txt`
//! of `tests/goprogs` leaky): its records are kept as they are, and the records of the leaking
//! stacks (`main.leakChanSend`, `main.leakHTTPBody`'s body-reader goroutines) are repeated with
//! fresh goroutine ids at a steady rate, with the `, N minutes` annotation a real runtime would
//! print, so the content per minute is what a real leaking pod dumps.
//!
//! Run: `cargo bench -p leakhound-ingest --bench store_size` (env: LEAKHOUND_BENCH_MINUTES=1440,
//! LEAKHOUND_BENCH_RATE=5 goroutines per leaking stack per minute: a slow leak, 1,440 x 5 = 7,200
//! goroutines per stack after a day).

use std::io::Write;
use std::time::Instant;

use leakhound_ingest::compact::{CompactOptions, compact};
use leakhound_ingest::residence::IdTracker;
use leakhound_ingest::rows::Target;
use leakhound_ingest::writer::{Batch, Writer};
use leakhound_ingest::{Store, parse};

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += dir_bytes(&p);
            } else if let Ok(m) = p.metadata() {
                n += m.len();
            }
        }
    }
    n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minutes = env_u64("LEAKHOUND_BENCH_MINUTES", 1440);
    let rate = env_u64("LEAKHOUND_BENCH_RATE", 5);
    let capture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/captures/go1.26/goroutine.debug2.txt"),
    )?;
    // Split into records (a record starts at "goroutine N [").
    let mut records: Vec<String> = Vec::new();
    for block in capture.split("\n\n") {
        if block.starts_with("goroutine ") {
            records.push(block.trim_end().to_string());
        }
    }
    // The goroutines a blocked send and an unclosed response body pin: the sender, and the
    // client's readLoop/writeLoop plus the server side of each body never closed.
    let is_leak = |r: &str| {
        r.contains("main.leakChanSend(")
            || r.contains("persistConn).readLoop(")
            || r.contains("persistConn).writeLoop(")
            || r.contains("main.waitForStreamEnd(")
    };
    let templates: Vec<String> = {
        let mut seen = std::collections::HashSet::new();
        records
            .iter()
            .filter(|r| is_leak(r))
            .filter(|r| {
                seen.insert(
                    r.split_once('\n')
                        .map(|x| x.1)
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .cloned()
            .collect()
    };
    let base: Vec<&String> = records.iter().filter(|r| !is_leak(r)).collect();
    if templates.is_empty() {
        return Err("no leak records in the capture".into());
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("store").to_str().unwrap_or_default())?;
    let mut writer = Writer::new(store.clone());
    let mut tracker = IdTracker::default();
    let target = Target {
        namespace: "shop".into(),
        pod: "orders-7d9f8b6c5-m4zt9".into(),
        ..Default::default()
    };
    let start_us: i64 = 1_795_824_000_000_000; // 2026-11-28T00:00:00Z
    let (mut raw_bytes, mut gz_bytes, mut observations) = (0u64, 0u64, 0u64);
    let mut batch = Batch::default();
    let t0 = Instant::now();
    for m in 0..minutes {
        let mut dump = String::new();
        for r in &base {
            dump.push_str(r);
            dump.push_str("\n\n");
        }
        for (k, t) in templates.iter().enumerate() {
            let body = t.split_once('\n').map(|x| x.1).unwrap_or_default();
            let state = t
                .split_once('[')
                .and_then(|(_, s)| s.split_once(']'))
                .map(|(s, _)| s.split(',').next().unwrap_or(s))
                .unwrap_or("chan send");
            for i in 0..(m * rate) {
                let id = 1_000 + (i * templates.len() as u64 + k as u64);
                let age = m - i / rate;
                let ann = if age >= 1 {
                    format!(", {age} minutes")
                } else {
                    String::new()
                };
                dump.push_str(&format!("goroutine {id} [{state}{ann}]:\n{body}\n\n"));
            }
        }
        raw_bytes += dump.len() as u64;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(dump.as_bytes())?;
        gz_bytes += gz.finish()?.len() as u64;
        let snap = parse::parse_snapshot(dump.as_bytes(), "bench")?;
        observations += snap.total();
        let ts = start_us + m as i64 * 60_000_000;
        batch.add_snapshot(&mut tracker, &target, ts, "scrape", &format!("m{m}"), &snap);
        // The live ingester writes one batch per pass; backfill batches many files.
        if (m + 1) % 60 == 0 {
            rt.block_on(writer.commit(std::mem::take(&mut batch)))?;
        }
    }
    if !batch.is_empty() {
        rt.block_on(writer.commit(batch))?;
    }
    let store_before = dir_bytes(&dir.path().join("store"));
    let s = rt.block_on(compact(
        &store,
        &CompactOptions {
            now: chrono::Utc::now() + chrono::Duration::hours(1),
            ..Default::default()
        },
    ))?;
    // A second pass past the grace period deletes what the first replaced.
    rt.block_on(compact(
        &store,
        &CompactOptions {
            now: chrono::Utc::now() + chrono::Duration::hours(2),
            ..Default::default()
        },
    ))?;
    let store_after = dir_bytes(&dir.path().join("store"));
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "store_size: {minutes} one-minute debug=2 snapshots, {} leaking stacks x {rate}/min, {} base goroutines",
        templates.len(),
        base.len()
    );
    println!("  goroutine observations      {observations}");
    println!(
        "  raw dumps                   {raw_bytes} bytes ({:.1} B/observation)",
        raw_bytes as f64 / observations as f64
    );
    println!(
        "  gzip'd dumps (reference)    {gz_bytes} bytes ({:.2} B/observation)",
        gz_bytes as f64 / observations as f64
    );
    println!(
        "  store, as written           {store_before} bytes ({:.3} B/observation)",
        store_before as f64 / observations as f64
    );
    println!(
        "  store, compacted            {store_after} bytes ({:.3} B/observation; {} partitions compacted)",
        store_after as f64 / observations as f64,
        s.partitions_compacted
    );
    println!(
        "  ratio gzip'd dumps / store  {:.1}x as written, {:.1}x compacted (goal >= 100x)",
        gz_bytes as f64 / store_before as f64,
        gz_bytes as f64 / store_after as f64
    );
    println!("  wall time                   {secs:.1} s");
    Ok(())
}
