//! Scenario tests: several generated series per case (seeds, bases, amplitudes), each asserting
//! fired / not fired and the onset / delay bounds.

use super::*;

const DAY: i64 = 86_400;
/// A Monday 00:00 UTC, so that "02:00" is a real 02:00.
const T0: i64 = 1_767_571_200;

/// `n` seeds, from `LEAKHOUND_SCENARIO_SEED` (default 0): run the suite on series it was never
/// looked at with, e.g. `LEAKHOUND_SCENARIO_SEED=1000 cargo test -p leakhound-analyze anomaly`.
fn seeds(n: u64) -> std::ops::Range<u64> {
    let from = std::env::var("LEAKHOUND_SCENARIO_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    from..from + n
}

use super::batch::SERIES_PER_PIECE;
use super::iforest::IsolationForest;
use crate::rng::SplitMix64 as Rng;

struct Series {
    ts: Vec<i64>,
    vs: Vec<f64>,
}

impl Series {
    fn as_ref(&self) -> SeriesRef<'_> {
        SeriesRef {
            ts_s: &self.ts,
            values: &self.vs,
        }
    }
}

/// One sample a minute (with a little jitter) over `minutes`, value = f(t) + noise, rounded and
/// clamped at 0 (goroutine counts).
fn generate(minutes: i64, noise_sd: f64, seed: u64, f: impl Fn(i64) -> f64) -> Series {
    let mut rng = Rng(seed);
    let mut ts = Vec::new();
    let mut vs = Vec::new();
    for m in 0..minutes {
        let t = T0 + m * 60 + (rng.next_f64() * 5.0) as i64;
        let v = f(t) + noise_sd * rng.normal();
        ts.push(t);
        vs.push(v.round().max(0.0));
    }
    Series { ts, vs }
}

/// Daily pattern of amplitude `amp`; its trough hour is drawn per amplitude (so per series),
/// from 00:00 to 23:00.
fn diurnal(t: i64, amp: f64) -> f64 {
    let trough_h = (amp.to_bits() >> 20) % 24;
    let phase = ((t - T0 - trough_h as i64 * 3600).rem_euclid(DAY)) as f64 / DAY as f64;
    -amp * (2.0 * std::f64::consts::PI * phase).cos()
}

fn eval_times(s: &Series, from: i64, step: i64) -> Vec<i64> {
    let last = *s.ts.last().expect("non-empty");
    let mut out = Vec::new();
    let mut t = from;
    while t <= last {
        out.push(t);
        t += step;
    }
    out
}

/// Evaluates every 5 minutes from `from`; returns (time, verdict) of the firing ones.
fn fired_at(s: &Series, from: i64) -> Vec<(i64, Verdict)> {
    let at = eval_times(s, from, 300);
    let cfg = StlIfConfig::default();
    evaluate_many(s.as_ref(), &at, &cfg)
        .into_iter()
        .zip(at)
        .filter(|(v, _)| v.fired)
        .map(|(v, t)| (t, v))
        .collect()
}

fn assert_quiet(name: &str, s: &Series, from: i64) {
    let f = fired_at(s, from);
    assert!(
        f.is_empty(),
        "{name}: fired {} times, first at +{} min: {}",
        f.len(),
        (f[0].0 - T0) / 60,
        f[0].1.reason
    );
}

/// Asserts no run of 3 consecutive firings (what the engine needs for an L2/L3 event from this
/// detector, `LevelThresholds::sustain_evals`): a single firing is recorded as L1 only.
fn assert_no_sustained(name: &str, s: &Series, from: i64) {
    let f = fired_at(s, from);
    let run = f
        .windows(3)
        .find(|w| w[1].0 - w[0].0 == 300 && w[2].0 - w[1].0 == 300);
    assert!(
        run.is_none(),
        "{name}: fired 3 evaluations in a row from +{} min: {}",
        run.map_or(0, |w| (w[0].0 - T0) / 60),
        run.map_or("", |w| w[0].1.reason.as_str())
    );
}

/// Asserts no firing before `onset`, a firing within `max_delay_s` after it, and (when given) an
/// onset estimate within `onset_tol_s`.
fn assert_detects(
    name: &str,
    s: &Series,
    from: i64,
    onset: i64,
    max_delay_s: i64,
    onset_tol_s: Option<i64>,
) {
    let f = fired_at(s, from);
    if let Some((t, v)) = f.iter().find(|(t, _)| *t < onset) {
        panic!(
            "{name}: fired before the onset, at +{} min: {}",
            (t - T0) / 60,
            v.reason
        );
    }
    let Some((t, v)) = f.first() else {
        panic!("{name}: never fired");
    };
    let delay = t - onset;
    // The leak goes on to the end of the series: once fired, the detector keeps firing (no
    // flapping that would split one leak into many events).
    let after = (s.ts[s.ts.len() - 1] - t) / 300 + 1;
    let share = f.len() as f64 / after as f64;
    assert!(
        share >= 0.9,
        "{name}: fired at only {:.0}% of the {after} evaluations after the first",
        100.0 * share
    );
    assert!(
        delay <= max_delay_s,
        "{name}: first fired {} min after the onset (max {}): {}",
        delay / 60,
        max_delay_s / 60,
        v.reason
    );
    assert!(v.growth_per_s > 0.0, "{name}: growth {}", v.growth_per_s);
    assert!(v.score > 0.5 && v.score <= 1.0, "{name}: score {}", v.score);
    if let Some(tol) = onset_tol_s {
        let est = v.onset_s.expect("onset estimate");
        assert!(
            (est - onset).abs() <= tol,
            "{name}: onset estimated {} min off (tolerance {} min)",
            (est - onset) / 60,
            tol / 60
        );
    }
}

#[test]
fn anomaly_quiet_on_diurnal_traffic() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 100);
        let base = r.range(200.0, 800.0);
        // Moderate amplitude: quiet from the first hour on.
        let amp = base * r.range(0.1, 0.25);
        let s = generate(5 * 1440, base * 0.03, seed, |t| base + diurnal(t, amp));
        assert_quiet(
            &format!("diurnal seed {seed} base {base:.0} amp {amp:.0}"),
            &s,
            T0 + 3600,
        );
        // Large amplitude: quiet once a day of history exists (the same time yesterday, then
        // the STL seasonal component, tell the ramp from a leak).
        let amp = base * r.range(0.4, 0.7);
        let s = generate(5 * 1440, base * 0.03, seed + 50, |t| base + diurnal(t, amp));
        assert_quiet(
            &format!("diurnal seed {seed} base {base:.0} amp {amp:.0}"),
            &s,
            T0 + DAY + 3600,
        );
    }
}

#[test]
fn anomaly_quiet_on_traffic_bursts() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 200);
        let base = r.range(150.0, 600.0);
        let mut bursts = Vec::new();
        for _ in 0..12 {
            let start = T0 + (r.range(0.05, 2.9) * DAY as f64) as i64;
            let len = (r.range(2.0, 12.0) * 60.0) as i64;
            let height = base * r.range(0.5, 3.0);
            bursts.push((start, len, height));
        }
        let s = generate(3 * 1440, base * 0.04, seed, |t| {
            let mut v = base + diurnal(t, base * 0.15);
            for (st, len, h) in &bursts {
                if t >= *st && t < st + len {
                    v += h;
                }
            }
            v
        });
        // Overlapping bursts can stack into a 10-minute staircase that the fast rule takes for
        // growth at one evaluation; never for three in a row.
        assert_no_sustained(&format!("bursts seed {seed} base {base:.0}"), &s, T0 + 3600);
    }
}

#[test]
fn anomaly_quiet_on_a_deploy_that_raises_the_baseline() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 300);
        let base = r.range(150.0, 600.0);
        let step = base * r.range(0.5, 3.0);
        let at = T0 + (r.range(0.3, 2.0) * DAY as f64) as i64;
        let ramp = r.range(60.0, 300.0);
        let s = generate(3 * 1440, base * 0.03, seed, |t| {
            let up = ((t - at) as f64 / ramp).clamp(0.0, 1.0);
            base + diurnal(t, base * 0.1) + step * up
        });
        assert_quiet(
            &format!("deploy seed {seed} base {base:.0} step {step:.0}"),
            &s,
            T0 + 3600,
        );
    }
}

#[test]
fn anomaly_quiet_on_a_nightly_batch() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 400);
        let base = r.range(150.0, 500.0);
        let height = base * r.range(0.8, 3.0);
        let hours = r.range(2.0, 4.0);
        let s = generate(4 * 1440, base * 0.03, seed, |t| {
            let in_day = (t - T0).rem_euclid(DAY) as f64 / 3600.0;
            let up = if in_day >= 2.0 && in_day < 2.0 + hours {
                ((in_day - 2.0) * 60.0 / 3.0).min(1.0)
            } else {
                0.0
            };
            base + height * up
        });
        assert_quiet(
            &format!("batch seed {seed} base {base:.0} height {height:.0}"),
            &s,
            T0 + 3600,
        );
    }
}

#[test]
fn anomaly_quiet_on_high_noise() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 500);
        let base = r.range(200.0, 1000.0);
        let sd = base * r.range(0.1, 0.25);
        let s = generate(3 * 1440, sd, seed, |t| base + diurnal(t, base * 0.1));
        assert_quiet(
            &format!("noise seed {seed} base {base:.0} sd {sd:.0}"),
            &s,
            T0 + 3600,
        );
    }
}

#[test]
fn anomaly_quiet_on_restarts_without_growth() {
    for seed in seeds(3) {
        let mut r = Rng(seed + 600);
        let base = r.range(100.0, 400.0);
        let period = r.range(2.0, 6.0) * 3600.0;
        // Restarted regularly: a short warm-up to the base, then flat.
        let s = generate(2 * 1440, base * 0.03, seed, |t| {
            let age = (t - T0) as f64 % period;
            if age < 120.0 { base * 0.2 } else { base }
        });
        assert_quiet(
            &format!("restarts seed {seed} base {base:.0}"),
            &s,
            T0 + 3600,
        );
    }
}

#[test]
fn anomaly_detects_fast_leaks_within_15_minutes() {
    for seed in seeds(6) {
        let mut r = Rng(seed + 700);
        let base = r.range(150.0, 600.0);
        let rate = r.range(1.0, 10.0);
        // Onsets on a young pod and on an old one.
        let onset = T0 + (r.range(0.1, 2.5) * DAY as f64) as i64;
        let s = generate(3 * 1440, base * 0.04, seed, |t| {
            base + diurnal(t, base * 0.2) + rate * (t - onset).max(0) as f64
        });
        let s = truncate(s, onset + 3 * 3600);
        assert_detects(
            &format!("fast seed {seed} base {base:.0} rate {rate:.1}/s"),
            &s,
            T0 + 3600,
            onset,
            15 * 60,
            Some(10 * 60),
        );
    }
}

#[test]
fn anomaly_detects_slow_leaks_within_hours() {
    for seed in seeds(6) {
        let mut r = Rng(seed + 800);
        let base = r.range(200.0, 500.0);
        let per_min = r.range(0.5, 5.0);
        // Half start with the pod, half on a pod that has run for a day or two.
        let onset = if seed % 2 == 0 {
            T0
        } else {
            T0 + (r.range(1.0, 2.2) * DAY as f64) as i64
        };
        let s = generate(4 * 1440, base * 0.03, seed, |t| {
            base + diurnal(t, base * 0.15) + per_min / 60.0 * (t - onset).max(0) as f64
        });
        // A leak that starts with a brand-new series (no history at all) looks like a morning
        // ramp until it has risen for longer than a daily ramp can (18 h; module doc).
        let max_delay = if onset == T0 { 19 * 3600 } else { 8 * 3600 };
        assert_detects(
            &format!("slow seed {seed} base {base:.0} rate {per_min:.1}/min"),
            &s,
            T0 + 3600,
            onset,
            max_delay,
            Some(3 * 3600),
        );
    }
}

#[test]
fn anomaly_detects_a_leak_during_diurnal_traffic() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 900);
        let base = r.range(200.0, 600.0);
        let amp = base * r.range(0.3, 0.6);
        let per_min = r.range(1.0, 4.0);
        let onset = T0 + (r.range(2.2, 3.0) * DAY as f64) as i64;
        let s = generate(4 * 1440, base * 0.03, seed, |t| {
            base + diurnal(t, amp) + per_min / 60.0 * (t - onset).max(0) as f64
        });
        assert_detects(
            &format!("diurnal+leak seed {seed} base {base:.0} amp {amp:.0} {per_min:.1}/min"),
            &s,
            // Large daily swings on a pod younger than a day look like a leak (module doc): the
            // pod has run for a day when the evaluation starts.
            T0 + DAY,
            onset,
            8 * 3600,
            Some(3 * 3600),
        );
    }
}

#[test]
fn anomaly_detects_an_oom_sawtooth_reached_by_steady_growth() {
    for seed in seeds(4) {
        let mut r = Rng(seed + 1000);
        let base = r.range(50.0, 200.0);
        let per_min = r.range(1.5, 6.0);
        // A restart drops the count to a small number: the peak is a few times the base.
        let limit = base * r.range(2.5, 5.0);
        // Each life grows from base until it reaches the limit, then the pod is OOM-killed.
        let life_s = ((limit - base) / per_min * 60.0) as i64;
        let s = generate(2 * 1440, base * 0.03, seed, |t| {
            let age = (t - T0).rem_euclid(life_s + 60);
            base + per_min / 60.0 * age as f64
        });
        let f = fired_at(&s, T0 + 3600);
        assert!(
            !f.is_empty(),
            "sawtooth seed {seed}: never fired (life {} min)",
            life_s / 60
        );
        // At the latest during the third life.
        assert!(
            f[0].0 <= T0 + 3 * (life_s + 60) + 3600,
            "sawtooth seed {seed}: first fired at +{} min, lives of {} min",
            (f[0].0 - T0) / 60,
            life_s / 60
        );
    }
}

fn truncate(s: Series, until: i64) -> Series {
    let n = s.ts.partition_point(|t| *t <= until);
    Series {
        ts: s.ts[..n].to_vec(),
        vs: s.vs[..n].to_vec(),
    }
}

#[test]
fn anomaly_evaluate_many_equals_evaluate() {
    let base = 300.0;
    let onset = T0 + 2 * DAY + 5 * 3600;
    let s = generate(3 * 1440, 10.0, 1, |t| {
        base + diurnal(t, 80.0) + 0.03 * (t - onset).max(0) as f64
    });
    let at: Vec<i64> = eval_times(&s, T0 + 3600, 3 * 3600 + 300);
    let cfg = StlIfConfig::default();
    let many = evaluate_many(s.as_ref(), &at, &cfg);
    assert_eq!(many.len(), at.len());
    for (t, v) in at.iter().zip(&many) {
        assert_eq!(
            &evaluate(s.as_ref(), *t, &cfg),
            v,
            "at +{} min",
            (t - T0) / 60
        );
    }
    assert!(
        many.iter().any(|v| v.fired),
        "the leak was never seen: {:#?}",
        many.iter().map(|v| &v.reason).collect::<Vec<_>>()
    );
}

#[test]
fn anomaly_bad_inputs_do_not_panic_and_do_not_fire() {
    let cfg = StlIfConfig::default();
    let empty = SeriesRef {
        ts_s: &[],
        values: &[],
    };
    let v = evaluate(empty, T0, &cfg);
    assert!(!v.fired && !v.reason.is_empty());
    let ts: Vec<i64> = (0..100).map(|i| T0 + i * 60).collect();
    let nan = vec![f64::NAN; 100];
    let v = evaluate(
        SeriesRef {
            ts_s: &ts,
            values: &nan,
        },
        T0 + 6000,
        &cfg,
    );
    assert!(!v.fired && v.reason.contains("finite"), "{}", v.reason);
    let mut unsorted = ts.clone();
    unsorted.swap(3, 50);
    let vals: Vec<f64> = (0..100).map(|i| i as f64 * 100.0).collect();
    let v = evaluate(
        SeriesRef {
            ts_s: &unsorted,
            values: &vals,
        },
        T0 + 6000,
        &cfg,
    );
    assert!(!v.fired && v.reason.contains("sorted"), "{}", v.reason);
    // Mismatched lengths, infinities, a far-future now (stale).
    let v = evaluate(
        SeriesRef {
            ts_s: &ts,
            values: &vals[..10],
        },
        T0 + 6000,
        &cfg,
    );
    assert!(!v.fired);
    let v = evaluate(
        SeriesRef {
            ts_s: &ts,
            values: &vals,
        },
        T0 + 9_000,
        &cfg,
    );
    assert!(!v.fired && v.reason.contains("no sample"), "{}", v.reason);
    let many = evaluate_many(empty, &[T0, T0 + 60], &cfg);
    assert_eq!(many.len(), 2);
    let batch = score_batch(
        &[
            empty,
            SeriesRef {
                ts_s: &ts,
                values: &nan,
            },
        ],
        &cfg,
    );
    assert_eq!(batch.len(), 2);
}

#[test]
fn anomaly_score_batch_ranks_leaking_series_higher() {
    let cfg = StlIfConfig::default();
    let mut all = Vec::new();
    for seed in 0..12u64 {
        let leak = seed % 4 == 0;
        let base = 200.0 + 30.0 * seed as f64;
        all.push((
            leak,
            generate(3 * 1440, base * 0.03, seed, |t| {
                base + diurnal(t, base * 0.2)
                    + if leak {
                        0.05 * (t - T0 - 2 * DAY).max(0) as f64
                    } else {
                        0.0
                    }
            }),
        ));
    }
    let refs: Vec<SeriesRef<'_>> = all.iter().map(|(_, s)| s.as_ref()).collect();
    let scores = score_batch(&refs, &cfg);
    assert_eq!(scores.len(), all.len());
    // The last 6 hours of each series: leaking ones score higher than any quiet one's median.
    let tail_mean = |v: &[f64]| v[v.len() - 72..].iter().sum::<f64>() / 72.0;
    let quiet_max = all
        .iter()
        .zip(&scores)
        .filter(|((l, _), _)| !l)
        .map(|(_, s)| tail_mean(s))
        .fold(0.0, f64::max);
    for ((leak, _), s) in all.iter().zip(&scores) {
        assert_eq!(s.len(), 3 * 288, "one score per 5-minute point");
        if *leak {
            assert!(
                tail_mean(s) > quiet_max,
                "leak {} vs quiet {}",
                tail_mean(s),
                quiet_max
            );
        }
    }
}

#[test]
fn anomaly_score_batch_equals_one_forest_on_the_whole_matrix() {
    // More series than one piece of `batch_chunks` holds: the pieces are fitted and scored as
    // one matrix, to the bit.
    let cfg = StlIfConfig::default();
    let all: Vec<Series> = (0..2 * SERIES_PER_PIECE as u64 + 3)
        .map(|seed| {
            let base = 100.0 + 20.0 * seed as f64;
            generate(2 * 1440 + 7 * seed as i64, base * 0.03, seed, |t| {
                base + diurnal(t, base * 0.2)
            })
        })
        .collect();
    let refs: Vec<SeriesRef<'_>> = all.iter().map(Series::as_ref).collect();
    let batch = score_batch(&refs, &cfg);
    let parts = batch_parts(&refs, &cfg, false);
    assert_eq!(
        batch.iter().map(Vec::len).collect::<Vec<_>>(),
        parts.rows,
        "rows per series"
    );
    let forest = IsolationForest::fit(&parts.features, N_FEATURES, &cfg.forest).expect("forest");
    let whole = forest.score_many(&parts.features);
    let flat: Vec<u64> = batch.iter().flatten().map(|s| s.to_bits()).collect();
    let whole: Vec<u64> = whole.iter().map(|s| s.to_bits()).collect();
    assert!(
        flat == whole,
        "score_batch differs from one forest on the whole matrix"
    );
}
