//! Detection quality on the labelled scenario suite (`analyze/src/scenarios.rs`): precision,
//! recall, F1, false alarms and detection delay per detector, the seed's rules included.
//!
//! `cargo bench -p leakhound-analyze --bench detection` (or `--profile dev` for a quick run).
//! `LEAKHOUND_SCENARIO_SEEDS=1,2,3` (or ranges: `113-128`) picks the draws (default 1,2,3); seeds never used while
//! tuning (e.g. 101..110) are the honest test. `LEAKHOUND_SCENARIO_KINDS=fast_leak,diurnal`
//! narrows the kinds, `LEAKHOUND_DETECTORS=growth_rule` the detectors (quicker while tuning one;
//! `leakhound` is then the union of those that run). `LEAKHOUND_BENCH_VERBOSE=1` prints every
//! scenario. `LEAKHOUND_SCENARIO_EVIDENCE=counts|dumps|both` (default both): the counts alone (a
//! Prometheus history), or with the debug=2 captures `leakhound ingest` would have taken too.

use std::time::Instant;

use leakhound_analyze::backtest::{self, Evidence, ScenarioResult};
use leakhound_analyze::engine::AnalyzeConfig;
use leakhound_analyze::scenarios;

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    let mut seeds: Vec<u64> = Vec::new();
    for item in env_list("LEAKHOUND_SCENARIO_SEEDS", "1,2,3") {
        let range = match item.split_once('-') {
            Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
            None => item.parse().ok().map(|n| (n, n)),
        };
        let Some((from, to)) = range.filter(|(a, b): &(u64, u64)| a <= b) else {
            eprintln!(
                "LEAKHOUND_SCENARIO_SEEDS: {item:?} is neither a seed nor a range like 113-128"
            );
            std::process::exit(2);
        };
        seeds.extend(from..=to);
    }
    let kinds = env_list("LEAKHOUND_SCENARIO_KINDS", &scenarios::KINDS.join(","));
    let verbose = std::env::var_os("LEAKHOUND_BENCH_VERBOSE").is_some();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = AnalyzeConfig::default();
    if std::env::var_os("LEAKHOUND_DETECTORS").is_some() {
        cfg.detectors = env_list("LEAKHOUND_DETECTORS", "")
            .iter()
            .map(|d| {
                d.parse()
                    .unwrap_or_else(|e| panic!("LEAKHOUND_DETECTORS: {e}"))
            })
            .collect();
    }
    let evidence = match std::env::var("LEAKHOUND_SCENARIO_EVIDENCE").as_deref() {
        Ok("counts") => vec![Evidence::Counts],
        Ok("dumps") => vec![Evidence::CountsAndDumps],
        Ok("both") | Err(_) => vec![Evidence::Counts, Evidence::CountsAndDumps],
        Ok(other) => {
            eprintln!("LEAKHOUND_SCENARIO_EVIDENCE: {other:?} is not counts, dumps or both");
            std::process::exit(2);
        }
    };
    for ev in evidence {
        run(&rt, dir.path(), &cfg, &seeds, &kinds, verbose, ev);
    }
}

fn run(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    cfg: &AnalyzeConfig,
    seeds: &[u64],
    kinds: &[String],
    verbose: bool,
    evidence: Evidence,
) {
    let started = Instant::now();
    let mut results: Vec<ScenarioResult> = Vec::new();
    for seed in seeds {
        for kind in kinds {
            let Some(s) = scenarios::generate(kind, *seed) else {
                eprintln!("unknown scenario kind {kind}");
                std::process::exit(2);
            };
            let t = Instant::now();
            let r = rt
                .block_on(backtest::run_scenario(dir, &s, cfg, evidence))
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            if verbose {
                if !s.detail.is_empty() {
                    println!("{:<28} {}", s.name, s.detail);
                }
                println!(
                    "{:<28} leak={:<5} {:>6.1}s  {}",
                    r.scenario,
                    r.leak,
                    t.elapsed().as_secs_f64(),
                    r.per_detector
                        .iter()
                        .map(|(d, o)| format!(
                            "{d}: {}{} fa={}{}",
                            if o.detected { "hit" } else { "-" },
                            o.delay_s
                                .map(|d| format!(" +{}m", d / 60))
                                .unwrap_or_default(),
                            o.false_alarms,
                            o.false_alarm_examples
                                .iter()
                                .map(|x| format!("\n    [{x}]"))
                                .collect::<String>()
                        ))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            results.push(r);
        }
    }
    println!(
        "detection ({}): {} scenarios ({} leaking), seeds {:?}, {:.0}s",
        match evidence {
            Evidence::Counts => "counts only",
            Evidence::CountsAndDumps => "counts and debug=2 dumps",
        },
        results.len(),
        results.iter().filter(|r| r.leak).count(),
        seeds,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<14} {:>9} {:>7} {:>6} {:>6} {:>12} {:>12}",
        "detector", "precision", "recall", "F1", "false", "median delay", "max delay"
    );
    for (d, s) in backtest::totals(&results) {
        let m = |x: Option<i64>| x.map(|s| format!("{}m", s / 60)).unwrap_or("-".into());
        println!(
            "{:<14} {:>9.3} {:>7.3} {:>6.3} {:>6} {:>12} {:>12}",
            d,
            s.precision(),
            s.recall(),
            s.f1(),
            s.false_alarms,
            m(s.median_delay_s()),
            m(s.max_delay_s())
        );
    }
    // Per kind, for the product: what misses and what false-alarms.
    let late: Vec<&str> = results
        .iter()
        .filter(|r| r.late(backtest::PRODUCT))
        .map(|r| r.scenario.as_str())
        .collect();
    println!(
        "deadlines (leakhound): {} of {} leaks found before their kind's deadline{}",
        results.iter().filter(|r| r.leak).count() - late.len(),
        results.iter().filter(|r| r.leak).count(),
        if late.is_empty() {
            String::new()
        } else {
            format!("; late or missed: {}", late.join(", "))
        }
    );
    println!("per kind (leakhound): detected/leaks, false alarms, max delay, late/deadline");
    for kind in kinds {
        let rs: Vec<&ScenarioResult> = results.iter().filter(|r| &r.kind == kind).collect();
        let o: Vec<_> = rs
            .iter()
            .filter_map(|r| r.per_detector.get(backtest::PRODUCT))
            .collect();
        let leaks = rs.iter().filter(|r| r.leak).count();
        let deadline = rs
            .iter()
            .filter_map(|r| r.deadline_s)
            .max()
            .map(|d| format!(" (deadline up to {}m)", d / 60))
            .unwrap_or_default();
        println!(
            "  {:<22} {}/{} fa={} max delay {} late={}{}",
            kind,
            o.iter().filter(|x| x.detected).count(),
            leaks,
            o.iter().map(|x| x.false_alarms).sum::<usize>(),
            o.iter()
                .filter_map(|x| x.delay_s)
                .max()
                .map(|d| format!("{}m", d / 60))
                .unwrap_or("-".into()),
            rs.iter().filter(|r| r.late(backtest::PRODUCT)).count(),
            deadline
        );
    }
}
