//! STL + Isolation Forest over many series × days at one-minute resolution, ours next to
//! statsmodels' STL + scikit-learn's IsolationForest doing the same work in the same run.
//!
//! **The product's path first** (the README's figure): `anomaly::evaluate_many_with_resets` on
//! each series at every 5-minute step (what `leakhound analyze` runs per pod and workload,
//! `detect::stl_iforest`), one series after another on one thread as the engine does, against
//! Python fitting the same anchors (`anomaly::replay_anchors`: per 3-hour anchor, STL on the
//! anchor's 5-minute series, a forest on its training rows, the gate's quantile, one row scored
//! per evaluation — batched per anchor, which favours Python). Python is handed our inputs and
//! runs none of the growth rules or features, so ours does more. Sizes:
//! `LEAKHOUND_BENCH_PRODUCT_SERIES` (100) series, `LEAKHOUND_BENCH_PY_ANCHORS` (200): Python
//! fits an evenly spread sample of that many anchors and its time is scaled to all of them.
//!
//! **Then the batch** (`anomaly::score_batch`, feature `testkit`: STL per series and one forest
//! over every point, over all cores — a throughput figure, not what the product runs; skip it
//! with `LEAKHOUND_BENCH_SKIP_BATCH`).
//!
//! `cargo bench -p leakhound-analyze --bench stl_iforest`. Sizes from the environment:
//! - `LEAKHOUND_BENCH_SERIES` (10000), `LEAKHOUND_BENCH_DAYS` (7);
//! - `LEAKHOUND_BENCH_PY_SERIES` (200): statsmodels' STL costs ~0.08 s a series here (13 min for
//!   10,000), so by default it runs on that many series and its time is scaled linearly to all
//!   of them (STL is per series, independent); set it to the series count for a full run.
//!   scikit-learn's forest always runs on every feature row;
//! - `LEAKHOUND_BENCH_REPLAY_SERIES` (20): also times `evaluate_many` every 5 minutes over the
//!   span on that many series (the engine's replay path);
//! - `LEAKHOUND_PYREF_PYTHON` (`/var/tmp/leakhound-pyref/bin/python`); no Python, no comparison.
//!
//! Python gets the exact inputs of our two stages (the 5-minute series STL runs on, the feature
//! matrix the forest runs on) and the same STL settings and forest size. Neither side's time
//! includes generating the data. Ours end to end (`score_batch`) also includes the 1-minute grid,
//! the 5-minute binning and the feature extraction, which Python does not do (it is handed our
//! features), so the bench also times each stage on its own and prints two ratios: end to end
//! (ours does more), and like for like (STL + forest on both sides). Ours uses every core
//! (series split over threads, rows of the forest too); statsmodels and scikit-learn's
//! `IsolationForest` (default `n_jobs`) use one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use leakhound_analyze::anomaly::iforest::IsolationForest;
use leakhound_analyze::anomaly::stl::{StlParams, StlSettings, decompose};
use leakhound_analyze::anomaly::{
    AnchorParts, N_FEATURES, SeriesRef, StlIfConfig, Verdict, batch_parts, evaluate_many,
    evaluate_many_with_resets, replay_anchors, score_batch,
};
use leakhound_analyze::rng::SplitMix64;

const T0: i64 = 1_767_571_200;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak and current resident set of this process, kB (Linux /proc).
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Deterministic series: daily pattern, noise, bursts; one in 20 leaks from a random onset.
fn generate(seed: u64, minutes: usize) -> Vec<f64> {
    let mut r = SplitMix64::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
    let base = 50.0 + 950.0 * r.next_f64();
    let amp = base * 0.4 * r.next_f64();
    let noise = base * (0.01 + 0.05 * r.next_f64());
    let leak = if seed.is_multiple_of(20) {
        0.5 + 5.0 * r.next_f64()
    } else {
        0.0
    };
    let onset = (r.next_f64() * minutes as f64) as usize;
    (0..minutes)
        .map(|m| {
            let phase = 2.0 * std::f64::consts::PI * m as f64 / 1440.0;
            let mut v = base + amp * phase.sin() + noise * r.normal();
            if m > onset {
                v += leak * (m - onset) as f64;
            }
            if r.next_f64() < 0.002 {
                // Bursts below +60% (a drop of half would read as a restart).
                v += 0.6 * base * r.next_f64();
            }
            v.round().max(0.0)
        })
        .collect()
}

fn write_f64(path: &Path, data: impl Iterator<Item = f64>) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for x in data {
        w.write_all(&x.to_le_bytes())?;
    }
    w.flush()
}

fn main() {
    let n_series = env_usize("LEAKHOUND_BENCH_SERIES", 10_000);
    let days = env_usize("LEAKHOUND_BENCH_DAYS", 7);
    let py_series = env_usize("LEAKHOUND_BENCH_PY_SERIES", 200).min(n_series);
    let minutes = days * 1440;
    let profile = if cfg!(debug_assertions) {
        "dev (debug assertions on)"
    } else {
        "optimised (debug assertions off: release, or dev with the analyze crate at opt-level 3)"
    };
    println!(
        "stl_iforest bench: {n_series} series x {days} days x 1-min = {} points, profile {profile}, {} cores",
        n_series * minutes,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let t = Instant::now();
    let ts: Vec<i64> = (0..minutes as i64).map(|m| T0 + m * 60).collect();
    let values: Vec<Vec<f64>> = (0..n_series as u64).map(|s| generate(s, minutes)).collect();
    let refs: Vec<SeriesRef<'_>> = values
        .iter()
        .map(|v| SeriesRef {
            ts_s: &ts,
            values: v,
        })
        .collect();
    let (_, rss_data) = rss_kb();
    println!(
        "generated in {:.1} s; RSS with the input held: {} MB",
        t.elapsed().as_secs_f64(),
        rss_data / 1024
    );

    let cfg = StlIfConfig::default();
    product_path(&values, &ts, minutes, &cfg);
    if std::env::var_os("LEAKHOUND_BENCH_SKIP_BATCH").is_some() {
        return;
    }
    let t = Instant::now();
    let scores = score_batch(&refs, &cfg);
    let ours_s = t.elapsed().as_secs_f64();
    let (peak, _) = rss_kb();
    let rows: usize = scores.iter().map(Vec::len).sum();
    let mean = scores.iter().flatten().sum::<f64>() / rows.max(1) as f64;
    println!(
        "ours  (STL per series + one seeded forest, {} trees x {} samples, {rows} feature rows): \
         wall {ours_s:.2} s, peak RSS {} MB (of which input {} MB), mean score {mean:.4}",
        cfg.forest.n_trees,
        cfg.forest.max_samples,
        peak / 1024,
        rss_data / 1024
    );

    // The replay path the engine uses: evaluate_many every 5 minutes over the whole span.
    let replay = env_usize("LEAKHOUND_BENCH_REPLAY_SERIES", 20).min(n_series);
    if replay > 0 {
        let at: Vec<i64> = (1..=(minutes as i64 / 5)).map(|k| T0 + k * 300).collect();
        let t = Instant::now();
        let mut fired = 0usize;
        for r in &refs[..replay] {
            let v = evaluate_many(*r, &at, &cfg);
            let f: Vec<(usize, &Verdict)> = v.iter().enumerate().filter(|(_, v)| v.fired).collect();
            if std::env::var("LEAKHOUND_BENCH_DEBUG").is_ok() && !f.is_empty() {
                println!(
                    "  {} firings, first at +{} min: {}",
                    f.len(),
                    (f[0].0 + 1) * 5,
                    f[0].1.reason
                );
            }
            fired += f.len();
        }
        let el = t.elapsed().as_secs_f64();
        println!(
            "replay: evaluate_many at {} times (every 5 min) on {replay} series: {el:.2} s, \
             {:.1} ms per series-replay, {:.1} us per evaluation (single thread); {fired} firings",
            at.len(),
            1e3 * el / replay as f64,
            1e6 * el / (replay * at.len()) as f64
        );
    }

    if std::env::var("LEAKHOUND_BENCH_SKIP_PY").is_ok() {
        return;
    }
    let Some(py) = python() else {
        return;
    };
    // Stage by stage. Grid + STL + features (and the exact inputs of our two stages for Python):
    drop(scores);
    let period = (cfg.period_s / cfg.stl_step_s) as usize;
    let t = Instant::now();
    let parts = batch_parts(&refs, &cfg, true);
    let prep_s = t.elapsed().as_secs_f64();
    // STL alone on the same inputs, over the cores as `batch_parts` hands out the series.
    let t = Instant::now();
    let decomposed = decompose_all(&parts.stl_inputs, period, &cfg.stl);
    let stl_s = t.elapsed().as_secs_f64();
    let features_s = (prep_s - stl_s).max(0.0);
    // The forest alone: fit + score every row.
    let t = Instant::now();
    let forest_rows = IsolationForest::fit(&parts.features, N_FEATURES, &cfg.forest)
        .map_or(0, |f| f.score_many(&parts.features).len());
    let forest_s = t.elapsed().as_secs_f64();
    println!(
        "ours, stage by stage: STL {stl_s:.2} s ({decomposed} lives), grid + binning + features \
         {features_s:.2} s (Python has no such stage: it is handed our features), forest fit + \
         score {forest_s:.2} s ({forest_rows} rows); sum {:.2} s vs {ours_s:.2} s end to end",
        stl_s + features_s + forest_s
    );
    // Series that are one life over the whole span (bursts can read as restarts and split one).
    let stl_len = parts
        .stl_inputs
        .iter()
        .filter_map(|lives| lives.first().map(Vec::len))
        .max()
        .unwrap_or(0);
    let whole = |lives: &Vec<Vec<f64>>| lives.len() == 1 && lives[0].len() == stl_len;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            println!("python reference skipped: no temp dir: {e}");
            return;
        }
    };
    let stl_path = dir.path().join("stl.bin");
    let feat_path = dir.path().join("features.bin");
    let settings_path = dir.path().join("settings.json");
    let s = StlSettings::resolve(period, &cfg.stl);
    let settings = serde_json::json!({
        "period": s.period, "seasonal": s.seasonal, "trend": s.trend, "low_pass": s.low_pass,
        "seasonal_deg": s.seasonal_deg, "seasonal_jump": s.seasonal_jump,
        "trend_jump": s.trend_jump, "low_pass_jump": s.low_pass_jump,
        "inner_iter": s.inner_iter, "outer_iter": s.outer_iter, "robust": cfg.stl.robust,
        "n_trees": cfg.forest.n_trees, "max_samples": cfg.forest.max_samples,
    });
    let written = write_f64(
        &stl_path,
        parts
            .stl_inputs
            .iter()
            .filter(|l| whole(l))
            .flat_map(|lives| lives[0].iter().copied()),
    )
    .and_then(|_| write_f64(&feat_path, parts.features.iter().copied()))
    .and_then(|_| std::fs::write(&settings_path, settings.to_string()));
    if let Err(e) = written {
        println!("python reference skipped: cannot write its inputs: {e}");
        return;
    }
    let n_stl = parts.stl_inputs.iter().filter(|l| whole(l)).count();
    // Python's STL time is scaled to every life we decomposed.
    let n_lives: usize = parts.stl_inputs.iter().map(Vec::len).sum();
    drop(parts);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pyref/reference.py");
    let t = Instant::now();
    let out = Command::new(&py)
        .arg(&script)
        .arg("bench")
        .arg(&stl_path)
        .arg(n_stl.to_string())
        .arg(stl_len.to_string())
        .arg(py_series.to_string())
        .arg(&feat_path)
        .arg(N_FEATURES.to_string())
        .arg(&settings_path)
        .output();
    let py_wall = t.elapsed().as_secs_f64();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "python reference failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
        Err(e) => {
            println!("python reference could not start: {e}");
            return;
        }
    };
    let line = String::from_utf8_lossy(&out.stdout);
    let Ok(r) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
        println!("python reference: unreadable output {line}");
        return;
    };
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let stl_series = f("stl_series").max(1.0);
    let stl_all = f("stl_s") * n_lives as f64 / stl_series;
    let py_total = stl_all + f("iforest_s");
    println!(
        "python (statsmodels STL, same settings: period {} seasonal {} deg {} trend {} jumps {}/{}, robust {}x{}; \
         sklearn IsolationForest, same size): STL {:.2} s for {} series -> {:.1} s for {} lives ({n_stl} whole series) \
         (linear), IsolationForest fit+score {:.2} s on {} rows; total {:.1} s{}; peak RSS {} MB \
         (subprocess wall {:.1} s)",
        s.period,
        s.seasonal,
        s.seasonal_deg,
        s.trend,
        s.trend_jump,
        s.low_pass_jump,
        s.outer_iter,
        s.inner_iter,
        f("stl_s"),
        stl_series,
        stl_all,
        n_lives,
        f("iforest_s"),
        f("rows"),
        py_total,
        if (stl_series as usize) < n_lives {
            " (STL extrapolated)"
        } else {
            ""
        },
        r["peak_rss_kb"].as_u64().unwrap_or(0) / 1024,
        py_wall
    );
    let py_stl = stl_all;
    let py_if = f("iforest_s");
    println!(
        "ratio, end to end: python (STL + forest) {py_total:.1} s / ours (score_batch: grid + STL + \
         features + forest) {ours_s:.2} s = {:.1}x (goal >= 20x)",
        py_total / ours_s
    );
    println!(
        "ratio, like for like (the stages both sides run): python STL + forest {py_total:.1} s / \
         ours STL + forest {:.2} s = {:.1}x; per stage: STL {:.1}x, forest {:.1}x",
        stl_s + forest_s,
        py_total / (stl_s + forest_s),
        py_stl / stl_s,
        py_if / forest_s
    );
}

/// The product's path: `evaluate_many_with_resets` on each series at every 5-minute step of the
/// span (what `leakhound analyze --replay` runs per pod, `detect::stl_iforest`), one series
/// after another on one thread as the engine does; then statsmodels + scikit-learn doing the
/// same fits on the same inputs (`anomaly::replay_anchors`): per anchor (every 3 h) STL on the
/// anchor's 5-minute series, an Isolation Forest fitted on its training rows, the gate's
/// quantile scored on at most 256 of them, and one row scored per evaluation. Returns
/// (ours s, python s) when Python ran.
fn product_path(
    values: &[Vec<f64>],
    ts: &[i64],
    minutes: usize,
    cfg: &StlIfConfig,
) -> Option<(f64, f64)> {
    let n = env_usize("LEAKHOUND_BENCH_PRODUCT_SERIES", 100).min(values.len());
    if n == 0 {
        return None;
    }
    // Every 5 minutes from the second day on (a day of history first, as a replay from two
    // hours into a scenario sees at least the STL context).
    let at: Vec<i64> = (1..=(minutes as i64 / 5))
        .map(|k| T0 + k * 300)
        .filter(|t| *t >= T0 + 86_400)
        .collect();
    let t = Instant::now();
    let mut fired = 0usize;
    for v in &values[..n] {
        let r = SeriesRef {
            ts_s: ts,
            values: v,
        };
        fired += evaluate_many_with_resets(r, &[], &at, cfg)
            .iter()
            .filter(|v| v.fired)
            .count();
    }
    let ours = t.elapsed().as_secs_f64();
    let evals = n * at.len();
    println!(
        "PRODUCT PATH ours: evaluate_many_with_resets on {n} series x {} evaluations (every 5 min \
         over {} days), one thread: {ours:.2} s, {:.1} ms per series-replay, {:.1} us per \
         evaluation; {fired} firings",
        at.len(),
        (minutes / 1440).saturating_sub(1),
        1e3 * ours / n as f64,
        1e6 * ours / evals as f64
    );
    if std::env::var("LEAKHOUND_BENCH_SKIP_PY").is_ok() {
        return None;
    }
    let py = python()?;
    // The same work's inputs (not timed).
    let anchors: Vec<AnchorParts> = values[..n]
        .iter()
        .flat_map(|v| {
            replay_anchors(
                SeriesRef {
                    ts_s: ts,
                    values: v,
                },
                &[],
                &at,
                cfg,
            )
        })
        .collect();
    let py_anchors = env_usize("LEAKHOUND_BENCH_PY_ANCHORS", 200).min(anchors.len());
    // Python runs an evenly spread sample of the anchors; its time is scaled to all of them
    // (each anchor's work is independent and about the same size).
    let stride = anchors.len().div_ceil(py_anchors.max(1)).max(1);
    let sample: Vec<&AnchorParts> = anchors.iter().step_by(stride).collect();
    let dir = tempfile::tempdir().ok()?;
    let data = dir.path().join("anchors.bin");
    let meta = dir.path().join("anchors.json");
    let period = (cfg.period_s / cfg.stl_step_s) as usize;
    let s = StlSettings::resolve(period, &cfg.stl);
    let list: Vec<[usize; 4]> = sample
        .iter()
        .map(|a| {
            [
                a.stl_input.len(),
                a.train_rows.len() / N_FEATURES,
                usize::from(a.forest),
                a.evals,
            ]
        })
        .collect();
    let m = serde_json::json!({
        "anchors": list, "n_features": N_FEATURES,
        "settings": {
            "period": s.period, "seasonal": s.seasonal, "trend": s.trend, "low_pass": s.low_pass,
            "seasonal_deg": s.seasonal_deg, "seasonal_jump": s.seasonal_jump,
            "trend_jump": s.trend_jump, "low_pass_jump": s.low_pass_jump,
            "inner_iter": s.inner_iter, "outer_iter": s.outer_iter, "robust": cfg.stl.robust,
            "n_trees": cfg.forest.n_trees, "max_samples": cfg.forest.max_samples,
        },
    });
    let written = write_f64(
        &data,
        sample
            .iter()
            .flat_map(|a| a.stl_input.iter().chain(&a.train_rows).copied()),
    )
    .and_then(|_| std::fs::write(&meta, m.to_string()));
    if let Err(e) = written {
        println!("python reference skipped: cannot write its inputs: {e}");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pyref/reference.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg("replay")
        .arg(&data)
        .arg(&meta)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "python reference failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            println!("python reference could not start: {e}");
            return None;
        }
    };
    let line = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let scale = anchors.len() as f64 / sample.len().max(1) as f64;
    let py_all = f("total_s") * scale;
    println!(
        "PRODUCT PATH python (statsmodels STL + sklearn IsolationForest, same settings and sizes, \
         one thread): {} of {} anchors in {:.1} s (STL {:.1} s on {} of them with two full days, \
         forest fit {:.1} s, gate + evaluation scoring {:.1} s) -> {py_all:.1} s for all (linear); \
         it is handed our STL inputs and features and runs none of the growth rules",
        sample.len(),
        anchors.len(),
        f("total_s"),
        f("stl_s"),
        r["stl_fits"].as_u64().unwrap_or(0),
        f("fit_s"),
        f("score_s"),
    );
    println!(
        "PRODUCT PATH ratio: python {py_all:.1} s / ours {ours:.2} s = {:.1}x (ours also runs the \
         growth rules, the deseasonalizing and the features at every evaluation)",
        py_all / ours
    );
    Some((ours, py_all))
}

fn python() -> Option<PathBuf> {
    let py = std::env::var("LEAKHOUND_PYREF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/leakhound-pyref/bin/python"));
    if py.exists() {
        Some(py)
    } else {
        println!("python reference skipped: {} does not exist", py.display());
        None
    }
}

/// Decomposes every life, the series handed to the cores 16 at a time as `batch_parts` hands
/// them out; returns how many were decomposed.
fn decompose_all(lives: &[Vec<Vec<f64>>], period: usize, p: &StlParams) -> usize {
    const PER: usize = 16;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(lives.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = lives.chunks(PER).nth(i) else {
                            break;
                        };
                        done += chunk
                            .iter()
                            .flatten()
                            .filter(|y| decompose(y, period, p).is_some())
                            .count();
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}
