//! A synthetic fleet store for the benches (`queries_vs_duckdb`, the cluster bench
//! `benches/fleet.rs`): `pods` pods over `days` days, a count a minute each (a daily wave,
//! every tenth pod leaking), and every `sample_min` minutes a debug=2 capture (the bundled
//! example capture, its channel waits growing on the leaking pods). Behind `testkit`.

use std::collections::BTreeMap;
use std::path::Path;

use leakhound_ingest::Store;
use leakhound_ingest::residence::IdTracker;
use leakhound_ingest::rows::{CountRow, Target};
use leakhound_ingest::writer::{Batch, Writer};

/// The five named queries the benches time.
pub const QUERIES: &[&str] = &[
    "goroutines_by_state",
    "goroutines_over_time",
    "stack_growth",
    "oldest_blocked",
    "leak_profile_stacks",
];

/// `name` from the environment as a number, else `default`.
pub fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the fleet's history starts.
pub const START_S: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z

/// Pods per commit, as `ingest` writes them (a chunk of 250 targets per commit): a day of
/// 5,000 pods in one batch held ~20 GB before its commit.
const CHUNK: i64 = 250;

/// Writes the fleet into a store at `dir` (one commit per day and chunk of [`CHUNK`] pods).
pub async fn build(dir: &Path, pods: i64, days: i64, sample_min: i64) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let capture = repo.join(
        "tests/data/examples/payments/checkout-6b5f4d8c7-q9w2e/2026-11-28T04:36:45Z.debug2.txt",
    );
    let bytes = std::fs::read(&capture).expect("example capture");
    let snap = leakhound_ingest::parse::parse_snapshot(&bytes[..], "example").expect("parse");
    let store = Store::open(dir.to_str().expect("utf-8 path")).expect("store");
    let mut w = Writer::new(store);
    let mut tracker = IdTracker::default();
    for day in 0..days {
        for lo in (0..pods).step_by(CHUNK as usize) {
            let mut b = Batch::default();
            for p in lo..(lo + CHUNK).min(pods) {
                let target = Target {
                    cluster: Some("bench".into()),
                    namespace: format!("ns-{}", p % 20),
                    workload_kind: Some("Deployment".into()),
                    workload: Some(format!("svc-{}", p % 50)),
                    pod: format!("svc-{}-{p:04}", p % 50),
                    container: Some("app".into()),
                    node: Some(format!("node-{}", p % 30)),
                    instance: Some(format!("10.0.{}.{}:6060", p / 250, p % 250)),
                };
                let leaking = p % 10 == 0;
                let mut rows = Vec::with_capacity(1440);
                for m in 0..1440 {
                    let t = START_S + day * 86_400 + m * 60;
                    let base = 200.0 + 50.0 * ((m as f64) / 1440.0 * std::f64::consts::TAU).sin();
                    let leak = if leaking {
                        ((day * 1440 + m) / 10) as f64
                    } else {
                        0.0
                    };
                    rows.push(CountRow {
                        target: target.clone(),
                        ts_us: t * 1_000_000,
                        goroutines: (base + leak) as i64,
                        threads: Some(12),
                        heap_bytes: Some(64 << 20),
                        source: "scrape".into(),
                        format: "metrics".into(),
                        ..Default::default()
                    });
                    if m % sample_min == 0 {
                        let mut s = snap.clone();
                        if leaking {
                            for g in s.groups.iter_mut().filter(|g| g.state.contains("chan")) {
                                g.count += ((day * 1440 + m) / 60) as u64;
                            }
                        }
                        b.add_samples(
                            &mut tracker,
                            &target,
                            t * 1_000_000,
                            &format!("bench-{p}-{t}"),
                            &s,
                        );
                    }
                }
                b.add_counts(rows, &format!("bench-counts-{p}-{day}"));
            }
            w.commit(b).await.expect("commit");
        }
        eprintln!("  day {}/{days} written", day + 1);
    }
}

/// The parameters the benches give named query `name` over `[from, to]`.
pub fn params(name: &str, from: &str, to: &str) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    match name {
        "stack_growth" => {
            p.insert("base_from".into(), from.into());
            p.insert("base_to".into(), "2026-10-02T00:00:00Z".into());
            p.insert("from".into(), "2026-10-29T00:00:00Z".into());
            p.insert("to".into(), to.into());
            p.insert("limit".into(), "100".into());
        }
        "oldest_blocked" => {
            p.insert("from".into(), from.into());
            p.insert("to".into(), to.into());
            p.insert("limit".into(), "100".into());
        }
        _ => {
            p.insert("from".into(), from.into());
            p.insert("to".into(), to.into());
        }
    }
    p
}
