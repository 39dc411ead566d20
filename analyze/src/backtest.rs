//! Backtesting detectors on the labelled scenario suite: each scenario is written to a store of
//! its own, analyzed by replay (every 5 minutes, as if live), and its L2/L3 episodes are scored
//! against the labels. Behind the `testkit` feature (the detection bench, tests, the `it` tests).
//!
//! Scoring, per detector (and for `leakhound`, the union of the detectors that say they count
//! into the product score, `Detector::in_product_score`: every detector but the seed's baseline
//! rule, what the product alerts on):
//! - an episode (one `event_id`) that reaches L2 or L3 is a **true detection** when the scenario
//!   leaks, the episode is about a leaking pod (or the leaking workload as a whole), and it
//!   reaches L2+ between the onset and 30 minutes after the leak's end; otherwise it is a **false
//!   alarm**;
//! - a leak is **detected** when it has a true detection; the **delay** is from onset to the first;
//! - precision = detected / (detected + false alarms), recall = detected / leaks;
//! - a leak is **late** when it was missed or found after its scenario's deadline
//!   (`Scenario::deadline_s`, per kind in `scenarios`).

use std::collections::{BTreeMap, HashMap};

use leakhound_ingest::Store;
use leakhound_ingest::writer::{Batch, Writer};
use leakhound_schemas::events::{LeakEvent, Level};

use crate::detect::{self, DetectorKind};
use crate::engine::{AnalyzeConfig, Emit, analyze};
use crate::error::Result;
use crate::scenarios::{DumpPoint, Scenario};
use leakhound_ingest::residence::IdTracker;
use leakhound_schemas::model::{SampleGroup, Snapshot};

pub const PRODUCT: &str = "leakhound";

#[derive(Debug, Clone, Default)]
pub struct ScenarioResult {
    pub scenario: String,
    pub kind: String,
    pub leak: bool,
    /// The scenario's deadline for its leak (`Scenario::deadline_s`).
    pub deadline_s: Option<i64>,
    /// Per detector: detected?, delay (s), false alarms, L2+ episodes.
    pub per_detector: BTreeMap<String, DetectorOutcome>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorOutcome {
    pub detected: bool,
    pub delay_s: Option<i64>,
    pub false_alarms: usize,
    pub false_alarm_examples: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Score {
    pub leaks: usize,
    pub detected: usize,
    pub false_alarms: usize,
    pub delays_s: Vec<i64>,
}

impl Score {
    pub fn precision(&self) -> f64 {
        let d = self.detected + self.false_alarms;
        if d == 0 {
            1.0
        } else {
            self.detected as f64 / d as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.leaks == 0 {
            1.0
        } else {
            self.detected as f64 / self.leaks as f64
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    pub fn median_delay_s(&self) -> Option<i64> {
        let mut d = self.delays_s.clone();
        d.sort();
        d.get(d.len() / 2).copied()
    }
    pub fn max_delay_s(&self) -> Option<i64> {
        self.delays_s.iter().max().copied()
    }
}

/// Counts only (what a Prometheus history gives), or the debug=2 captures ingest would have
/// taken as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Counts,
    CountsAndDumps,
}

/// Write a scenario's rows into `store`: its counts, and with [`Evidence::CountsAndDumps`] its
/// captures as debug=2 samples (ids through ingest's tracker, so ages are measured the way
/// ingest measures them).
pub async fn load(store: &Store, s: &Scenario, evidence: Evidence) -> Result<()> {
    let mut w = Writer::new(store.clone());
    // One batch per day keeps batches small; the name hashes the scenario and day.
    const DAY_US: i64 = 86_400_000_000;
    let mut by_day: BTreeMap<i64, Batch> = BTreeMap::new();
    let mut counts: BTreeMap<i64, Vec<_>> = BTreeMap::new();
    for r in &s.rows {
        counts.entry(r.ts_us / DAY_US).or_default().push(r.clone());
    }
    for (day, rows) in counts {
        by_day
            .entry(day)
            .or_default()
            .add_counts(rows, &format!("{}@{day}", s.name));
    }
    if evidence == Evidence::CountsAndDumps {
        let mut targets: HashMap<&str, _> = HashMap::new();
        for r in &s.rows {
            targets
                .entry(r.target.pod.as_str())
                .or_insert_with(|| r.target.clone());
        }
        let mut dumps = Dumps::new();
        // One tracker per process, as `ingest` starts afresh when a pod's process restarted.
        let mut trackers: HashMap<(&str, i64), IdTracker> = HashMap::new();
        for d in &s.dumps {
            let Some(target) = targets.get(d.pod.as_str()) else {
                continue;
            };
            let snap = dumps.capture(d);
            let ts_us = d.ts_s * 1_000_000;
            by_day.entry(ts_us / DAY_US).or_default().add_samples(
                trackers
                    .entry((d.pod.as_str(), d.process_start_s))
                    .or_default(),
                target,
                ts_us,
                &format!("{}@{}@{}", s.name, d.pod, d.ts_s),
                &snap,
            );
        }
    }
    for (_, b) in by_day {
        w.commit(b).await?;
    }
    Ok(())
}

/// Builds a scenario's captures as a Go process would print them: goroutine ids count up from 1
/// in each process, long-lived goroutines keep theirs, short-lived ones are new in every
/// capture, and leaked ones stay.
struct Dumps {
    /// A parsed debug=2 dump with one goroutine of each kind: (long-lived, short-lived, leaked).
    template: [SampleGroup; 3],
    /// Per pod: (process start, next goroutine id, ids of its leaked goroutines).
    procs: HashMap<String, (i64, u64, Vec<u64>)>,
}

const TEMPLATE: &str = "goroutine 1 [select]:
main.(*worker).run(0xc000120000)
\t/app/worker.go:48 +0x1c5
created by main.main in goroutine 1
\t/app/main.go:31 +0x2a5

goroutine 2 [IO wait]:
internal/poll.runtime_pollWait(0x7f0c, 0x72)
\t/usr/local/go/src/runtime/netpoll.go:351 +0x85
net/http.(*conn).serve(0xc0001a4000, {0x9d3c10, 0xc000112000})
\t/usr/local/go/src/net/http/server.go:2102 +0x625
created by net/http.(*Server).Serve in goroutine 1
\t/usr/local/go/src/net/http/server.go:3454 +0x485

goroutine 3 [chan send]:
main.publish(0xc0000b0000)
\t/app/events.go:77 +0x4e
created by main.handleOrder in goroutine 2
\t/app/orders.go:112 +0x1b6
";

impl Dumps {
    fn new() -> Self {
        let snap =
            leakhound_ingest::parse::parse_snapshot(TEMPLATE.as_bytes(), "scenario template")
                .expect("the scenario template parses");
        let group = |state: &str| {
            snap.groups
                .iter()
                .find(|g| g.state == state)
                .cloned()
                .expect("template group")
        };
        Dumps {
            template: [group("select"), group("IO wait"), group("chan send")],
            procs: HashMap::new(),
        }
    }

    fn capture(&mut self, d: &DumpPoint) -> Snapshot {
        let proc = self
            .procs
            .entry(d.pod.clone())
            .or_insert((d.process_start_s, 1, Vec::new()));
        if proc.0 != d.process_start_s {
            *proc = (d.process_start_s, 1, Vec::new());
        }
        let (_, next, leaked) = proc;
        // The long-lived goroutines started first.
        *next = (*next).max(d.stable + 1);
        let stable: Vec<u64> = (1..=d.stable).collect();
        // Leaked goroutines stay; the ones leaked since the last capture are newer than it.
        leaked.truncate(d.leaked as usize);
        while (leaked.len() as u64) < d.leaked {
            leaked.push(*next);
            *next += 1;
        }
        let churn: Vec<u64> = (*next..*next + d.churn).collect();
        *next += d.churn;
        let mut snap = Snapshot {
            kind: leakhound_schemas::ProfileKind::Goroutine,
            format: Some(leakhound_schemas::model::DumpFormat::Debug2),
            ..Default::default()
        };
        for (t, ids) in self.template.iter().zip([stable, churn, leaked.clone()]) {
            if ids.is_empty() {
                continue;
            }
            let mut g = t.clone();
            g.count = ids.len() as u64;
            g.goroutine_ids = ids;
            snap.groups.push(g);
        }
        snap
    }
}

/// Whether events of the detector named `name` count into [`PRODUCT`]: a registered detector
/// that says so; never an unknown name.
fn in_product_score(name: &str) -> bool {
    name.parse::<DetectorKind>()
        .ok()
        .and_then(detect::get)
        .is_some_and(|d| d.in_product_score())
}

/// Score the events of one scenario.
pub fn score(s: &Scenario, events: &[LeakEvent]) -> ScenarioResult {
    let mut by_detector: HashMap<String, Vec<&LeakEvent>> = HashMap::new();
    for e in events.iter().filter(|e| e.level >= Level::L2) {
        by_detector.entry(e.detector.clone()).or_default().push(e);
        if in_product_score(&e.detector) {
            by_detector.entry(PRODUCT.into()).or_default().push(e);
        }
    }
    let mut out = ScenarioResult {
        scenario: s.name.clone(),
        kind: s.kind.to_string(),
        leak: s.leak.is_some(),
        deadline_s: s.deadline_s,
        per_detector: BTreeMap::new(),
    };
    let mut names: Vec<String> = detect::all().iter().map(|d| d.to_string()).collect();
    names.push(PRODUCT.into());
    for d in names {
        let evs = by_detector.get(&d).cloned().unwrap_or_default();
        // First L2+ time per episode.
        let mut episodes: BTreeMap<(String, String), &LeakEvent> = BTreeMap::new();
        for e in evs {
            let k = (e.detector.clone(), e.event_id.clone());
            let keep = episodes
                .get(&k)
                .is_none_or(|prev| e.detected_at < prev.detected_at);
            if keep {
                episodes.insert(k, e);
            }
        }
        let mut o = DetectorOutcome::default();
        for e in episodes.values() {
            let t = e.detected_at.timestamp();
            let true_hit = s.leak.as_ref().is_some_and(|l| {
                let end = l.end_s.unwrap_or(s.end_s) + 1_800;
                let pod_ok = match &e.pod {
                    Some(p) => l.pods.contains(p),
                    None => true,
                };
                pod_ok && t >= l.onset_s && t <= end
            });
            if true_hit {
                let delay = t - s.leak.as_ref().map(|l| l.onset_s).unwrap_or(t);
                o.detected = true;
                o.delay_s = Some(o.delay_s.map_or(delay, |d| d.min(delay)));
            } else {
                o.false_alarms += 1;
                if o.false_alarm_examples.len() < 3 {
                    o.false_alarm_examples.push(format!(
                        "{} {} {} {}",
                        e.detected_at.to_rfc3339(),
                        e.pod.as_deref().unwrap_or("(workload)"),
                        e.level.as_str(),
                        e.reason
                    ));
                }
            }
        }
        out.per_detector.insert(d, o);
    }
    out
}

/// Run one scenario end to end in a fresh local store under `dir`.
pub async fn run_scenario(
    dir: &std::path::Path,
    s: &Scenario,
    cfg: &AnalyzeConfig,
    evidence: Evidence,
) -> Result<ScenarioResult> {
    let path = dir.join(format!("{}-{evidence:?}", s.name.replace('#', "-")));
    let store = Store::open(path.to_str().unwrap_or("."))?;
    load(&store, s, evidence).await?;
    // Replay from two hours in (the rules need their history) to the end.
    let analysis = analyze(&store, s.start_s + 7_200, s.end_s, Emit::Changes, cfg).await?;
    Ok(score(s, &analysis.events))
}

impl ScenarioResult {
    /// Whether `detector` missed the leak or found it after the deadline (false without a leak).
    pub fn late(&self, detector: &str) -> bool {
        self.leak
            && self.per_detector.get(detector).is_none_or(|o| {
                o.delay_s
                    .is_none_or(|d| self.deadline_s.is_some_and(|dl| d > dl))
            })
    }
}

/// Sum per detector over scenario results.
pub fn totals(results: &[ScenarioResult]) -> BTreeMap<String, Score> {
    let mut t: BTreeMap<String, Score> = BTreeMap::new();
    for r in results {
        for (d, o) in &r.per_detector {
            let s = t.entry(d.clone()).or_default();
            if r.leak {
                s.leaks += 1;
                if o.detected {
                    s.detected += 1;
                }
            }
            s.false_alarms += o.false_alarms;
            if let Some(d) = o.delay_s {
                s.delays_s.push(d);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::generate;

    fn product(s: &Scenario, evidence: Evidence) -> DetectorOutcome {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let r = rt
            .block_on(run_scenario(
                dir.path(),
                s,
                &AnalyzeConfig::default(),
                evidence,
            ))
            .unwrap();
        r.per_detector[PRODUCT].clone()
    }

    /// A batch's first run ramps for 17 minutes: from the counts alone it is a leak's start
    /// (the known limit); the captures ingest takes on the way up show that the new goroutines
    /// come and go, and no L2/L3 is raised. A fast leak with captures is still caught in time.
    #[test]
    fn dumps_tell_a_first_batch_from_a_leak() {
        let batch = generate("first_seen_batch", 200).unwrap();
        assert!(batch.detail.contains("over 17 min"), "{}", batch.detail);
        assert!(product(&batch, Evidence::Counts).false_alarms > 0);
        assert_eq!(product(&batch, Evidence::CountsAndDumps).false_alarms, 0);
        let leak = generate("fast_leak", 200).unwrap();
        let o = product(&leak, Evidence::CountsAndDumps);
        assert!(o.detected && o.false_alarms == 0, "{o:?}");
        assert!(o.delay_s.unwrap() <= 15 * 60, "{o:?}");
    }
}
