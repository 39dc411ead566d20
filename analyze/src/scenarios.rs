//! The labelled scenario suite: synthetic `go_goroutines` histories with known leak onsets, for
//! backtesting every detector (`benches/detection.rs`, [`crate::backtest`]) and for tests. Behind
//! the `testkit` feature: not in the shipped binary.
//!
//! Each scenario is generated from a seed, so the same suite can be re-drawn with other seeds
//! (other bases, amplitudes, rates, noise) to check that the detectors are not tuned to one
//! draw: the bench runs seeds it was never tuned on when `LEAKHOUND_SCENARIO_SEEDS` says so.
//!
//! | kind | leak? | what |
//! |---|---|---|
//! | `diurnal` | no | daily traffic wave, 4 pods |
//! | `bursts` | no | short traffic spikes of 1–3x |
//! | `deploy_step` | no | a deploy raises the level for good (new pods) |
//! | `nightly_batch` | no | +1–2x for three hours every night |
//! | `first_seen_batch` | no | a daily batch job whose first run falls inside the replayed range: +0.5–2x for 1–4 hours, ramping up over 1–30 minutes |
//! | `high_noise` | no | 20–30 % noise and outliers |
//! | `oom_sawtooth` | yes | steady growth until the pod restarts, again and again |
//! | `one_pod_of_many` | yes (one pod) | 6 pods with diurnal traffic, one leaks slowly |
//! | `slow_leak` | yes | +0.5–3 goroutines per minute under diurnal traffic |
//! | `fast_leak` | yes | +1–10 goroutines per second |
//! | `leak_fixed_by_deploy` | yes, until the deploy | a leak, then new pods without it |
//! | `recorded_leak` | yes | a real recording of `tests/goprogs` leaky: traffic bursts, then unclosed bodies and blocked senders (`tests/goprogs/record.sh`) |
//! | `recorded_bursts` | no | the same program and bursts, no leak |
//! | `frequent_deploy` | no | a new version every 2–8 h (2–4 replicas, pods named as a Deployment's, each version's level 0.8–1.25x), daily traffic |
//! | `frequent_deploy_leak` | yes, from a deploy on | the same, and from the first deploy after 20 h on every pod life leaks 0.01–0.05/s |
//! | `canary_leak` | yes (the canary) | 5 pods of one version; a canary of a new version starts on day 1 and leaks 0.015–0.06/s from its start |
//! | `very_slow_leak` | yes | 2–6 goroutines an hour under mild daily traffic (±5–15 %), from day 2, 5 days |
//! | `heavy_tail_bursts` | no | rare spikes (every 2–12 h) of Pareto height (1–15x) lasting 2–15 minutes, 4 days |
//!
//! **Deadlines** ([`Scenario::deadline_s`], [`deadline_s`]): the longest delay from a leak's onset
//! to its first L2+ that a senior SRE would accept for its kind; the bench counts every leak
//! found later as late. `fast_leak` 30 min (1–10 goroutines/s exhausts a pod within hours);
//! `recorded_leak` 3 h; `one_pod_of_many` and `canary_leak` 4 h (a canary is rolled back within
//! the working day); `slow_leak`, `oom_sawtooth` 6 h; `leak_fixed_by_deploy` before the fixing
//! deploy plus the 30 minutes the scoring allows; `frequent_deploy_leak` before the end of the
//! third leaking life (each life is short, and a deploy does not clear a leak in the code);
//! `very_slow_leak` 24 h (2–6 goroutines an hour takes weeks to hurt).
//!
//! Recordings are replayed one sample per minute on a seed-drawn base, scale and noise.
//!
//! **Dumps.** Each scenario also says what the debug=2 captures `leakhound ingest` would have
//! taken held ([`DumpPoint`]), on ingest's own schedule (every 10 passes, and whenever the count
//! grew by 20 % and 20 goroutines): long-lived goroutines from the process start (servers,
//! workers), short-lived ones new in each capture (requests, batch tasks, bursts), and the leaked
//! ones, which stay until the process ends. The backtest can land them as real debug=2 samples
//! (goroutine ids and all, through ingest's id tracker) or leave them out (counts only, what a
//! Prometheus history gives). How many goroutines are long-lived is drawn from a generator of
//! its own, so the counts are the same draw with or without dumps.

use leakhound_ingest::rows::{CountRow, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where a scenario's time starts: 2026-10-01T00:00:00Z.
pub const EPOCH_S: i64 = 1_790_812_800;
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// What a scenario holds as truth.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakLabel {
    /// The leaking pods (all of them when the whole workload leaks).
    pub pods: Vec<String>,
    pub onset_s: i64,
    /// When the leak stopped (a fixing deploy); None = until the end.
    pub end_s: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub kind: &'static str,
    pub namespace: String,
    pub workload: String,
    pub start_s: i64,
    pub end_s: i64,
    pub rows: Vec<CountRow>,
    pub leak: Option<LeakLabel>,
    /// What was drawn, where the kind alone does not say (e.g. a batch's ramp); may be empty.
    pub detail: String,
    /// The debug=2 captures ingest would have taken, per pod in time order.
    pub dumps: Vec<DumpPoint>,
    /// The longest acceptable delay from the leak's onset to its first L2+ ([`deadline_s`], or
    /// the scenario's own where it depends on the draw); None without a leak.
    pub deadline_s: Option<i64>,
}

/// The deadline of a leaking kind whose deadline does not depend on the draw (see the header).
pub fn deadline_s(kind: &str) -> Option<i64> {
    Some(match kind {
        "fast_leak" => 30 * 60,
        "recorded_leak" => 3 * HOUR,
        "one_pod_of_many" | "canary_leak" => 4 * HOUR,
        "slow_leak" | "oom_sawtooth" => 6 * HOUR,
        "very_slow_leak" => 24 * HOUR,
        _ => return None,
    })
}

/// What one debug=2 capture of a pod held.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpPoint {
    pub pod: String,
    /// The process's start: goroutine ids begin again at 1 in a new process.
    pub process_start_s: i64,
    pub ts_s: i64,
    /// Long-lived goroutines (servers, workers, tickers), there since the process started.
    pub stable: u64,
    /// Short-lived goroutines (requests, batch tasks, bursts): new ones in every capture.
    pub churn: u64,
    /// Leaked goroutines: they stay until the process ends.
    pub leaked: u64,
}

pub const KINDS: &[&str] = &[
    "diurnal",
    "bursts",
    "deploy_step",
    "nightly_batch",
    "first_seen_batch",
    "high_noise",
    "oom_sawtooth",
    "one_pod_of_many",
    "slow_leak",
    "fast_leak",
    "leak_fixed_by_deploy",
    "recorded_leak",
    "recorded_bursts",
    "frequent_deploy",
    "frequent_deploy_leak",
    "canary_leak",
    "very_slow_leak",
    "heavy_tail_bursts",
];

/// Kubernetes' alphabet for generated names (no vowels, no look-alikes).
const K8S_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A Deployment pod's name: `{workload}-{pod-template-hash}-{5 random}`.
fn k8s_pod_name(rng: &mut StdRng, workload: &str, hash: &str) -> String {
    let suffix: String = (0..5)
        .map(|_| K8S_ALPHABET[rng.random_range(0..K8S_ALPHABET.len())] as char)
        .collect();
    format!("{workload}-{hash}-{suffix}")
}

/// A pod-template hash (10 characters).
fn k8s_hash(rng: &mut StdRng) -> String {
    (0..10)
        .map(|_| K8S_ALPHABET[rng.random_range(0..K8S_ALPHABET.len())] as char)
        .collect()
}

const RECORDED_LEAK: &str = include_str!("../../tests/data/recordings/leaky-leak-with-bursts.csv");
const RECORDED_BURSTS: &str = include_str!("../../tests/data/recordings/leaky-bursts-only.csv");

/// (samples, leak onset sample) of a recording.
fn recording(text: &str) -> (Vec<f64>, Option<usize>) {
    let mut onset = None;
    let mut values = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# leak_onset_sample ") {
            onset = rest.trim().parse().ok();
            continue;
        }
        let Some((_, v)) = line.split_once(',') else {
            continue;
        };
        if let Ok(v) = v.trim().parse::<f64>() {
            values.push(v);
        }
    }
    (values, onset)
}

/// One pod's life in a scenario: name, process start, first and last minute.
struct PodLife {
    name: String,
    start_s: i64,
    end_s: i64,
}

struct Gen {
    rng: StdRng,
    namespace: String,
    workload: String,
    rows: Vec<CountRow>,
    /// Long-lived goroutines per process (drawn apart from `rng`).
    stable: u64,
    dumps: Vec<DumpPoint>,
    /// Per pod: (time, count, process start) of its last capture.
    last_dump: std::collections::HashMap<String, (i64, i64, i64)>,
}

impl Gen {
    fn gauss(&mut self) -> f64 {
        // Box-Muller: two uniforms to one standard normal.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// One minute of a pod: its count row, and a capture when ingest's schedule takes one
    /// (`leaked` of the `v` goroutines are leaked ones).
    fn push(&mut self, life: &PodLife, restarts: i64, ts_s: i64, v: f64, leaked: f64) {
        let n = v.round().max(1.0) as i64;
        let opts = leakhound_ingest::scrape::PassOptions::default();
        let due = match self.last_dump.get(&life.name) {
            None => true,
            Some(&(t, before, start)) => {
                start != life.start_s
                    || ts_s - t >= opts.debug2_every as i64 * 60
                    || (n - before >= opts.debug2_growth_min
                        && n as f64 >= before as f64 * opts.debug2_growth_ratio)
            }
        };
        if due {
            self.last_dump
                .insert(life.name.clone(), (ts_s, n, life.start_s));
            let n = n as u64;
            let stable = self.stable.min(n);
            let leaked = (leaked.round().max(0.0) as u64).min(n - stable);
            self.dumps.push(DumpPoint {
                pod: life.name.clone(),
                process_start_s: life.start_s,
                ts_s,
                stable,
                churn: n - stable - leaked,
                leaked,
            });
        }
        self.rows.push(CountRow {
            target: Target {
                cluster: None,
                namespace: self.namespace.clone(),
                workload_kind: Some("Deployment".into()),
                workload: Some(self.workload.clone()),
                pod: life.name.clone(),
                ..Default::default()
            },
            ts_us: ts_s * 1_000_000,
            goroutines: n,
            process_start_time_us: Some(life.start_s * 1_000_000),
            container_restarts: Some(restarts),
            source: "scenario".into(),
            format: "metrics".into(),
            ..Default::default()
        });
    }

    /// Emit one pod's minutes with `f(t)` as the noiseless value; none of it leaks.
    fn pod(&mut self, life: &PodLife, noise: f64, f: &mut dyn FnMut(i64) -> f64) {
        self.leaking_pod(life, noise, &mut |t| (f(t), 0.0));
    }

    /// Emit one pod's minutes with `f(t)` as (the noiseless value, the leaked part of it).
    fn leaking_pod(&mut self, life: &PodLife, noise: f64, f: &mut dyn FnMut(i64) -> (f64, f64)) {
        let mut t = life.start_s;
        while t < life.end_s {
            let (x, leaked) = f(t);
            let v = x * (1.0 + noise * self.gauss());
            self.push(life, 0, t, v, leaked);
            t += 60;
        }
    }
}

fn diurnal(t: i64, amp: f64, phase: f64) -> f64 {
    1.0 + amp * ((t - EPOCH_S) as f64 / DAY as f64 * std::f64::consts::TAU + phase).sin()
}

/// Generate scenario `kind` from `seed`.
pub fn generate(kind: &str, seed: u64) -> Option<Scenario> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15 ^ (kind.len() as u64) << 32),
        namespace: format!("sc-{kind}-{seed}").replace('_', "-"),
        workload: kind.replace('_', "-"),
        rows: Vec::new(),
        stable: StdRng::seed_from_u64(seed ^ 0x5eed_d0c5 ^ (kind.len() as u64) << 40)
            .random_range(10..60),
        dumps: Vec::new(),
        last_dump: Default::default(),
    };
    let mut detail = String::new();
    let mut deadline: Option<i64> = None;
    let base: f64 = g.rng.random_range(150.0..2000.0);
    let noise: f64 = g.rng.random_range(0.01..0.04);
    let amp: f64 = g.rng.random_range(0.25..0.6);
    let phase: f64 = g.rng.random_range(0.0..std::f64::consts::TAU);
    let start = EPOCH_S;
    let pod = |w: &str, i: usize, s: i64, e: i64| PodLife {
        name: format!("{w}-{i}"),
        start_s: s,
        end_s: e,
    };
    let wl = g.workload.clone();
    let pod_named = |name: String, s: i64, e: i64| PodLife {
        name,
        start_s: s,
        end_s: e,
    };
    let (end, leak) = match kind {
        "diurnal" => {
            let end = start + 3 * DAY;
            for i in 0..4 {
                let b = base * g.rng.random_range(0.9..1.1);
                g.pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    b * diurnal(t, amp, phase)
                });
            }
            (end, None)
        }
        "bursts" => {
            let end = start + 2 * DAY;
            let mut bursts = Vec::new();
            let mut t = start + HOUR;
            while t < end {
                let len = g.rng.random_range(2..12) * 60;
                let height = g.rng.random_range(1.0..3.0);
                bursts.push((t, t + len, height));
                t += g.rng.random_range(HOUR..4 * HOUR);
            }
            for i in 0..2 {
                g.pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    let h: f64 = bursts
                        .iter()
                        .filter(|(s, e, _)| t >= *s && t < *e)
                        .map(|b| b.2)
                        .sum();
                    base * (1.0 + h)
                });
            }
            (end, None)
        }
        "deploy_step" => {
            let end = start + 3 * DAY;
            let deploy = start + DAY + 12 * HOUR + g.rng.random_range(0..6 * HOUR) / 60 * 60;
            let raised = g.rng.random_range(1.5..2.5);
            for i in 0..3 {
                g.pod(&pod(&wl, i, start, deploy), noise, &mut |t| {
                    base * diurnal(t, amp * 0.5, phase)
                });
                g.pod(&pod(&format!("{wl}-v2"), i, deploy, end), noise, &mut |t| {
                    base * raised * diurnal(t, amp * 0.5, phase)
                });
            }
            (end, None)
        }
        "nightly_batch" => {
            let end = start + 3 * DAY;
            let lift = g.rng.random_range(1.0..2.0);
            for i in 0..2 {
                g.pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    let h = (t - start) % DAY;
                    let batch = if (HOUR..4 * HOUR).contains(&h) {
                        // Ramps up over 10 minutes, down over 10.
                        let up = ((h - HOUR) as f64 / 600.0).min(1.0);
                        let down = ((4 * HOUR - h) as f64 / 600.0).min(1.0);
                        lift * up.min(down)
                    } else {
                        0.0
                    };
                    base * (1.0 + batch)
                });
            }
            (end, None)
        }
        "first_seen_batch" => {
            // `nightly_batch` starts before the replay does, so its every replayed night has a
            // yesterday to compare with. This one's first run is replayed: nothing but the
            // counts tells its ramp from a leak's start until the ramp levels off.
            let end = start + 3 * DAY;
            let first = start + g.rng.random_range(3 * 60..20 * 60) * 60;
            let len = g.rng.random_range(1..5) * HOUR;
            let ramp = g.rng.random_range(1..=30) * 60;
            let lift = g.rng.random_range(0.5..2.0);
            detail = format!(
                "first run day 0 {:02}:{:02}, {} h, +{:.0}% over {} min (~{:.1}/s)",
                (first - start) / HOUR,
                (first - start) % HOUR / 60,
                len / HOUR,
                lift * 100.0,
                ramp / 60,
                base * lift / ramp as f64
            );
            for i in 0..2 {
                g.pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    let h = (t - first).rem_euclid(DAY);
                    let batch = if t >= first && h < len {
                        let up = ((h + 60) as f64 / ramp as f64).min(1.0);
                        let down = ((len - h) as f64 / ramp as f64).min(1.0);
                        lift * up.min(down)
                    } else {
                        0.0
                    };
                    base * diurnal(t, amp * 0.5, phase) * (1.0 + batch)
                });
            }
            (end, None)
        }
        "high_noise" => {
            let end = start + 2 * DAY;
            let n = g.rng.random_range(0.2..0.3);
            for i in 0..3 {
                let life = pod(&wl, i, start, end);
                let mut t = life.start_s;
                while t < life.end_s {
                    let outlier = if g.rng.random_bool(0.01) {
                        g.rng.random_range(1.0..3.0)
                    } else {
                        1.0
                    };
                    let v = base * diurnal(t, amp * 0.5, phase) * (1.0 + n * g.gauss()) * outlier;
                    g.push(&life, 0, t, v.max(1.0), 0.0);
                    t += 60;
                }
            }
            (end, None)
        }
        "oom_sawtooth" => {
            let end = start + 3 * DAY;
            let onset = start + DAY;
            let rate = g.rng.random_range(0.05..0.5); // goroutines per second
            let cap = base + rate * g.rng.random_range(2.0..6.0) * HOUR as f64;
            let mut pods = Vec::new();
            for i in 0..2 {
                let name = format!("{wl}-{i}");
                pods.push(name.clone());
                let mut life_start = start;
                let mut restarts = 0;
                let mut t = start;
                let mut grow_from = onset;
                while t < end {
                    let grown = if t >= onset {
                        rate * (t - grow_from.max(life_start)) as f64
                    } else {
                        0.0
                    };
                    let v = (base + grown) * (1.0 + noise * g.gauss());
                    if v > cap {
                        // OOM kill: the container restarts with a fresh process.
                        restarts += 1;
                        life_start = t;
                        grow_from = t;
                        continue;
                    }
                    let life = PodLife {
                        name: name.clone(),
                        start_s: life_start,
                        end_s: end,
                    };
                    g.push(&life, restarts, t, v, grown);
                    t += 60;
                }
            }
            (
                end,
                Some(LeakLabel {
                    pods,
                    onset_s: onset,
                    end_s: None,
                }),
            )
        }
        "one_pod_of_many" => {
            let end = start + 3 * DAY;
            let onset = start + 2 * DAY + 8 * HOUR;
            let rate = g.rng.random_range(0.05..0.3);
            let leaker = g.rng.random_range(0..6);
            for i in 0..6 {
                let b = base * g.rng.random_range(0.9..1.1);
                g.leaking_pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    let l = if i == leaker && t >= onset {
                        rate * (t - onset) as f64
                    } else {
                        0.0
                    };
                    (b * diurnal(t, amp, phase) + l, l)
                });
            }
            (
                end,
                Some(LeakLabel {
                    pods: vec![format!("{wl}-{leaker}")],
                    onset_s: onset,
                    end_s: None,
                }),
            )
        }
        "slow_leak" => {
            let end = start + 4 * DAY;
            let onset = start + 2 * DAY + g.rng.random_range(0..12) * HOUR;
            let per_min = g.rng.random_range(0.5..3.0);
            let b = base.min(600.0);
            g.leaking_pod(&pod(&wl, 0, start, end), noise, &mut |t| {
                let l = if t >= onset {
                    per_min * (t - onset) as f64 / 60.0
                } else {
                    0.0
                };
                (b * diurnal(t, amp * 0.5, phase) + l, l)
            });
            (
                end,
                Some(LeakLabel {
                    pods: vec![format!("{wl}-0")],
                    onset_s: onset,
                    end_s: None,
                }),
            )
        }
        "fast_leak" => {
            let end = start + 2 * DAY;
            let onset = start + DAY + 14 * HOUR + g.rng.random_range(0..60) * 60;
            let rate = g.rng.random_range(1.0..10.0);
            let mut pods = Vec::new();
            for i in 0..2 {
                pods.push(format!("{wl}-{i}"));
                g.leaking_pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    let l = if t >= onset {
                        rate * (t - onset) as f64
                    } else {
                        0.0
                    };
                    (base * diurnal(t, amp * 0.5, phase) + l, l)
                });
            }
            (
                end,
                Some(LeakLabel {
                    pods,
                    onset_s: onset,
                    end_s: None,
                }),
            )
        }
        "leak_fixed_by_deploy" => {
            let end = start + 3 * DAY;
            let onset = start + DAY + 10 * HOUR;
            let fix = onset + g.rng.random_range(4..10) * HOUR;
            let rate = g.rng.random_range(0.1..1.0);
            let mut pods = Vec::new();
            for i in 0..2 {
                pods.push(format!("{wl}-{i}"));
                g.leaking_pod(&pod(&wl, i, start, fix), noise, &mut |t| {
                    let l = if t >= onset {
                        rate * (t - onset) as f64
                    } else {
                        0.0
                    };
                    (base * diurnal(t, amp * 0.5, phase) + l, l)
                });
                g.pod(&pod(&format!("{wl}-fixed"), i, fix, end), noise, &mut |t| {
                    base * diurnal(t, amp * 0.5, phase)
                });
            }
            (
                end,
                Some(LeakLabel {
                    pods,
                    onset_s: onset,
                    end_s: Some(fix),
                }),
            )
        }
        "frequent_deploy" | "frequent_deploy_leak" => {
            let end = start + 3 * DAY;
            let leaks = kind == "frequent_deploy_leak";
            let replicas = g.rng.random_range(2..=4);
            let amp = g.rng.random_range(0.1..0.4);
            let rate = g.rng.random_range(0.01..0.05);
            // Deploy times: every 2-8 hours, on the minute.
            let mut deploys = vec![start];
            while let Some(&last) = deploys.last() {
                let next = last + g.rng.random_range(120..=480) * 60;
                if next >= end {
                    break;
                }
                deploys.push(next);
            }
            let onset = leaks
                .then(|| deploys.iter().copied().find(|d| *d >= start + 20 * HOUR))
                .flatten();
            let mut pods = Vec::new();
            for (k, &from) in deploys.iter().enumerate() {
                let hash = k8s_hash(&mut g.rng);
                let level = base * g.rng.random_range(0.8..1.25);
                // The old pods go two minutes after the new ones start (a rolling update).
                let to = deploys.get(k + 1).map_or(end, |n| (n + 120).min(end));
                let leaking = onset.is_some_and(|o| from >= o);
                for _ in 0..replicas {
                    let name = k8s_pod_name(&mut g.rng, &wl, &hash);
                    if leaking {
                        pods.push(name.clone());
                    }
                    let b = level * g.rng.random_range(0.95..1.05);
                    let life = PodLife {
                        name,
                        start_s: from,
                        end_s: to,
                    };
                    g.leaking_pod(&life, noise, &mut |t| {
                        let l = if leaking {
                            rate * (t - from) as f64
                        } else {
                            0.0
                        };
                        (b * diurnal(t, amp, phase) + l, l)
                    });
                }
            }
            detail = format!(
                "{} deploys, {replicas} replicas, lives {}-{} h{}",
                deploys.len(),
                deploys
                    .windows(2)
                    .map(|w| (w[1] - w[0]) / 60)
                    .min()
                    .unwrap_or(0)
                    / 60,
                deploys
                    .windows(2)
                    .map(|w| (w[1] - w[0]) / 60)
                    .max()
                    .unwrap_or(0)
                    / 60,
                if leaks {
                    format!(", leak {rate:.3}/s per life")
                } else {
                    String::new()
                }
            );
            let leak = onset.map(|o| {
                // The end of the third leaking life.
                let third = deploys
                    .iter()
                    .copied()
                    .filter(|d| *d > o)
                    .nth(2)
                    .unwrap_or(end);
                deadline = Some(third - o);
                LeakLabel {
                    pods,
                    onset_s: o,
                    end_s: None,
                }
            });
            (end, leak)
        }
        "canary_leak" => {
            let end = start + 2 * DAY + 12 * HOUR;
            let onset = start + DAY + g.rng.random_range(0..12 * 60) * 60;
            let rate = g.rng.random_range(0.015..0.06);
            let (old, new) = (k8s_hash(&mut g.rng), k8s_hash(&mut g.rng));
            for _ in 0..5 {
                let b = base * g.rng.random_range(0.9..1.1);
                let name = k8s_pod_name(&mut g.rng, &wl, &old);
                g.pod(&pod_named(name, start, end), noise, &mut |t| {
                    b * diurnal(t, amp, phase)
                });
            }
            let canary = k8s_pod_name(&mut g.rng, &wl, &new);
            let b = base * g.rng.random_range(0.9..1.1);
            g.leaking_pod(&pod_named(canary.clone(), onset, end), noise, &mut |t| {
                let l = rate * (t - onset) as f64;
                (b * diurnal(t, amp, phase) + l, l)
            });
            detail = format!("canary {rate:.3}/s");
            (
                end,
                Some(LeakLabel {
                    pods: vec![canary],
                    onset_s: onset,
                    end_s: None,
                }),
            )
        }
        "very_slow_leak" => {
            let end = start + 5 * DAY;
            let onset = start + 2 * DAY + g.rng.random_range(0..12 * 60) * 60;
            let per_hour = g.rng.random_range(2.0..6.0);
            let amp = g.rng.random_range(0.05..0.15);
            g.leaking_pod(&pod(&wl, 0, start, end), noise, &mut |t| {
                let l = if t >= onset {
                    per_hour * (t - onset) as f64 / 3_600.0
                } else {
                    0.0
                };
                (base * diurnal(t, amp, phase) + l, l)
            });
            detail = format!("{per_hour:.1}/h on {base:.0}");
            (
                end,
                Some(LeakLabel {
                    pods: vec![format!("{wl}-0")],
                    onset_s: onset,
                    end_s: None,
                }),
            )
        }
        "heavy_tail_bursts" => {
            let end = start + 4 * DAY;
            let amp = g.rng.random_range(0.05..0.3);
            let mut bursts = Vec::new();
            let mut t = start + g.rng.random_range(1..6) * HOUR;
            while t < end {
                let len = g.rng.random_range(2..=15) * 60;
                // Pareto (alpha 1.2) from 1x, capped at 15x.
                let u: f64 = g.rng.random_range(f64::EPSILON..1.0);
                let height = u.powf(-1.0 / 1.2).min(15.0);
                bursts.push((t, t + len, height));
                t += g.rng.random_range(2 * 60..12 * 60) * 60;
            }
            detail = format!(
                "{} bursts, highest {:.1}x",
                bursts.len(),
                bursts.iter().map(|b| b.2).fold(0.0, f64::max)
            );
            for i in 0..3 {
                let b = base * g.rng.random_range(0.9..1.1);
                g.pod(&pod(&wl, i, start, end), noise, &mut |t| {
                    let h: f64 = bursts
                        .iter()
                        .filter(|(s, e, _)| t >= *s && t < *e)
                        .map(|b| b.2)
                        .sum();
                    b * diurnal(t, amp, phase) * (1.0 + h)
                });
            }
            (end, None)
        }
        "recorded_leak" | "recorded_bursts" => {
            let (values, onset) = recording(if kind == "recorded_leak" {
                RECORDED_LEAK
            } else {
                RECORDED_BURSTS
            });
            // Two hours of the program's idle level first, so the rules have history.
            let lead = 120usize;
            let offset = g.rng.random_range(0.0..500.0);
            let scale = g.rng.random_range(0.5..2.0);
            let end = start + ((values.len() + lead) as i64) * 60;
            let life = pod(&wl, 0, start, end);
            let idle = values.first().copied().unwrap_or(0.0);
            // The leaked part: the floor that bursts ride on, from the onset on (a leak only
            // grows, so it is the lowest count still to come above the count at the onset).
            let mut leaked = vec![0.0; values.len()];
            if let Some(o) = onset.filter(|o| *o < values.len()) {
                let mut floor = f64::INFINITY;
                for i in (o..values.len()).rev() {
                    floor = floor.min(values[i]);
                    leaked[i] = scale * (floor - values[o]).max(0.0);
                }
            }
            for i in 0..values.len() + lead {
                let (v, l) = if i < lead {
                    (idle, 0.0)
                } else {
                    (values[i - lead], leaked[i - lead])
                };
                let x = (offset + scale * v) * (1.0 + noise * g.gauss());
                g.push(&life, 0, start + i as i64 * 60, x.max(1.0), l);
            }
            let leak = onset.map(|o| LeakLabel {
                pods: vec![life.name.clone()],
                onset_s: start + ((o + lead) as i64) * 60,
                end_s: None,
            });
            (end, leak)
        }
        _ => return None,
    };
    Some(Scenario {
        name: format!("{kind}#{seed}"),
        kind: KINDS.iter().find(|k| **k == kind)?,
        namespace: g.namespace,
        workload: g.workload,
        start_s: start,
        end_s: end,
        rows: g.rows,
        detail,
        dumps: g.dumps,
        deadline_s: leak
            .as_ref()
            .and(deadline.or_else(|| deadline_s(kind)).or_else(|| {
                leak.as_ref()
                    .and_then(|l| l.end_s.map(|e| e - l.onset_s + 1_800))
            })),
        leak,
    })
}

/// The whole suite for the given seeds.
pub fn suite(seeds: &[u64]) -> Vec<Scenario> {
    seeds
        .iter()
        .flat_map(|s| KINDS.iter().filter_map(move |k| generate(k, *s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_generates_sorted_minutes_with_labels_that_match_its_pods() {
        for kind in KINDS {
            let s = generate(kind, 7).expect(kind);
            assert!(!s.rows.is_empty(), "{kind}");
            assert!(s.rows.iter().all(|r| r.goroutines >= 1), "{kind}");
            if let Some(l) = &s.leak {
                assert!(l.onset_s > s.start_s && l.onset_s < s.end_s, "{kind}");
                for p in &l.pods {
                    assert!(s.rows.iter().any(|r| &r.target.pod == p), "{kind}: {p}");
                }
            }
            // A capture holds what the count row of its minute says, and leaked goroutines
            // only where and after the label says a leak is.
            assert!(!s.dumps.is_empty(), "{kind}");
            for d in &s.dumps {
                let row = s
                    .rows
                    .iter()
                    .find(|r| r.target.pod == d.pod && r.ts_us == d.ts_s * 1_000_000)
                    .unwrap_or_else(|| panic!("{kind}: capture without a count: {d:?}"));
                assert_eq!(
                    (d.stable + d.churn + d.leaked) as i64,
                    row.goroutines,
                    "{kind}"
                );
                if d.leaked > 0 {
                    let l = s.leak.as_ref().unwrap_or_else(|| panic!("{kind}: {d:?}"));
                    assert!(
                        l.pods.contains(&d.pod) && d.ts_s > l.onset_s,
                        "{kind}: {d:?}"
                    );
                }
            }
            if let Some(l) = &s.leak {
                assert!(
                    s.dumps.iter().any(|d| d.leaked > 0 && d.ts_s > l.onset_s),
                    "{kind}: no capture shows the leak"
                );
            }
            let again = generate(kind, 7).unwrap();
            assert_eq!(again.rows, s.rows, "{kind} is not deterministic");
            assert_eq!(again.dumps, s.dumps, "{kind} is not deterministic");
            let other = generate(kind, 8).unwrap();
            assert_ne!(other.rows, s.rows, "{kind} ignores its seed");
        }
    }
}
