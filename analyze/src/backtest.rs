//! Backtesting detectors on the labelled scenario suite: each scenario is written to a store of
//! its own, analyzed by replay (every 5 minutes, as if live), and its L2/L3 episodes are scored
//! against the labels.
//!
//! Scoring, per detector (and for `leakhound`, the union of the growth rule and STL + IF, which
//! is what the product alerts on):
//! - an episode (one `event_id`) that reaches L2 or L3 is a **true detection** when the scenario
//!   leaks, the episode is about a leaking pod (or the leaking workload as a whole), and it
//!   reaches L2+ between the onset and 30 minutes after the leak's end; otherwise it is a **false
//!   alarm**;
//! - a leak is **detected** when it has a true detection; the **delay** is from onset to the first;
//! - precision = detected / (detected + false alarms), recall = detected / leaks.

use std::collections::{BTreeMap, HashMap};

use leakhound_ingest::Store;
use leakhound_ingest::writer::{Batch, Writer};
use leakhound_schemas::events::{LeakEvent, Level};

use crate::engine::{AnalyzeConfig, Emit, analyze};
use crate::error::Result;
use crate::scenarios::Scenario;

pub const PRODUCT: &str = "leakhound";

#[derive(Debug, Clone, Default)]
pub struct ScenarioResult {
    pub scenario: String,
    pub kind: String,
    pub leak: bool,
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

/// Write a scenario's rows into `store`.
pub async fn load(store: &Store, s: &Scenario) -> Result<()> {
    let mut w = Writer::new(store.clone());
    // One batch per day keeps batches small; the name hashes the scenario and day.
    let mut by_day: BTreeMap<i64, Vec<_>> = BTreeMap::new();
    for r in &s.rows {
        by_day
            .entry(r.ts_us / 86_400_000_000)
            .or_default()
            .push(r.clone());
    }
    for (day, rows) in by_day {
        let mut b = Batch::default();
        b.add_counts(rows, &format!("{}@{day}", s.name));
        w.commit(b).await?;
    }
    Ok(())
}

/// Score the events of one scenario.
pub fn score(s: &Scenario, events: &[LeakEvent]) -> ScenarioResult {
    let mut by_detector: HashMap<String, Vec<&LeakEvent>> = HashMap::new();
    for e in events.iter().filter(|e| e.level >= Level::L2) {
        by_detector.entry(e.detector.clone()).or_default().push(e);
        if e.detector != crate::engine::BASELINE_RULE {
            by_detector.entry(PRODUCT.into()).or_default().push(e);
        }
    }
    let mut out = ScenarioResult {
        scenario: s.name.clone(),
        kind: s.kind.to_string(),
        leak: s.leak.is_some(),
        per_detector: BTreeMap::new(),
    };
    let mut names: Vec<String> = crate::engine::DETECTORS
        .iter()
        .map(|d| d.to_string())
        .collect();
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
) -> Result<ScenarioResult> {
    let path = dir.join(s.name.replace('#', "-"));
    let store = Store::open(path.to_str().unwrap_or("."))?;
    load(&store, s).await?;
    // Replay from two hours in (the rules need their history) to the end.
    let analysis = analyze(&store, s.start_s + 7_200, s.end_s, Emit::Changes, cfg).await?;
    Ok(score(s, &analysis.events))
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
