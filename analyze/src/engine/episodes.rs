//! Episodes: the state machine that turns each detector's findings on one scope into
//! episodes with levels, and the events a run emits.
//!
//! Per (scope, detector), in time order: a firing opens an episode (or continues the open one);
//! a miss counts against it, and more than `episode_gap_evals` misses in a row close it. Every
//! firing of an episode is levelled (`levels::level`) from the evidence: consecutive firings,
//! growth since the onset, the residence of what grew (`captures::residence_at`), and how many
//! sustained episodes of the scope ended in the last day (the OOM sawtooth), and, for a
//! detector known to misfire, whether another fired on the scope within the hour, and the
//! scope's memory towards its limit over the episode's window (`context::trend`, from the Go
//! agent's context; the event carries it: `memory_bytes`, `memory_limit_bytes`,
//! `time_to_limit_s`). An episode's
//! `event_id` hashes the scope, the detector and its onset; a live run whose first evaluation
//! fires continues the stored episode of the same scope and detector if it was seen within the
//! gap (`prior_events`), adopting its id, onset and level.
//!
//! `episodes` is pure (no IO): the engine hands it the findings, the captures and the stored
//! events, which is what the unit tests below do too.

use std::collections::{BTreeMap, HashMap};

use datafusion::prelude::SessionContext;
use leakhound_schemas::events::{EVENT_SCHEMA, LeakEvent, Level};

use super::captures::{Captures, residence_at};
use super::columns::{at, rfc};
use super::context::{Memory, trend};
use super::{AnalyzeConfig, Emit, Scope};
use crate::detect::{DetectorKind, Finding};
use crate::error::Result;
use crate::levels::{Evidence, level, sla_penalty};

/// Stored events by (scope key, detector name): the latest of each.
pub(crate) type Priors = HashMap<(String, String), LeakEvent>;

/// Earlier events of the store, for episode continuity of live runs: the latest per
/// (scope, detector) in `[since_s, before_s)`.
pub(crate) async fn prior_events(
    ctx: &SessionContext,
    since_s: i64,
    before_s: i64,
) -> Result<Priors> {
    let sql = format!(
        "SELECT * FROM leak_events WHERE detected_at >= TIMESTAMP '{}' AND detected_at < TIMESTAMP '{}' \
         ORDER BY detected_at",
        rfc(since_s),
        rfc(before_s)
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out = HashMap::new();
    for b in &batches {
        for e in leakhound_schemas::events::events_from_batch(b)
            .into_iter()
            .flatten()
        {
            let scope = Scope {
                cluster: e.cluster.clone(),
                namespace: e.namespace.clone(),
                workload_kind: e.workload_kind.clone(),
                workload: e.workload.clone(),
                pod: e.pod.clone(),
            };
            out.insert((scope.key(), e.detector.clone()), e);
        }
    }
    Ok(out)
}

/// What the state machine needs besides the findings.
pub(crate) struct EpisodeInputs<'a> {
    /// Every evaluation time of the run, ascending (a live run emits the last one's events).
    pub eval_times: &'a [i64],
    pub emit: Emit,
    pub cfg: &'a AnalyzeConfig,
    /// Stored events (live runs; empty for a replay).
    pub priors: &'a Priors,
    pub caps: &'a Captures,
    /// Growth of a scope at an evaluation, for detectors that measure none (`Detector::measures_growth`).
    pub growth_of: &'a HashMap<(Scope, i64), f64>,
    /// Detectors whose findings carry no growth of their own.
    pub borrows_growth: &'a [DetectorKind],
    /// Detectors known to misfire: alone, L1 (`Detector::needs_corroboration`).
    pub needs_corroboration: &'a [DetectorKind],
    /// Memory per pod from the agent's context (empty without it).
    pub memory: &'a Memory,
}

/// Episodes and events from `findings`; returns the events in (detected_at, event_id) order and
/// the number of (scope, detector) series looked at.
pub(crate) fn episodes(
    findings: Vec<Finding>,
    input: &EpisodeInputs<'_>,
) -> (Vec<LeakEvent>, usize) {
    let EpisodeInputs {
        eval_times,
        emit,
        cfg,
        priors,
        caps,
        growth_of,
        borrows_growth,
        needs_corroboration,
        memory,
    } = *input;
    let Some(&first) = eval_times.first() else {
        return (Vec::new(), 0);
    };
    let step = cfg.step_s.max(60);
    let mut by_key: BTreeMap<(Scope, DetectorKind), Vec<Finding>> = BTreeMap::new();
    for f in findings {
        by_key
            .entry((f.scope.clone(), f.detector))
            .or_default()
            .push(f);
    }
    let scopes = by_key.len();
    // When detectors that need no corroboration fired, per scope key and per workload key.
    let workload_key = |s: &Scope| {
        Scope {
            pod: None,
            ..s.clone()
        }
        .key()
    };
    let mut backed: HashMap<String, Vec<i64>> = HashMap::new();
    if !needs_corroboration.is_empty() {
        for ((scope, detector), fs) in &by_key {
            if needs_corroboration.contains(detector) {
                continue;
            }
            for f in fs.iter().filter(|f| f.fired) {
                backed.entry(scope.key()).or_default().push(f.eval_s);
                if scope.pod.is_some() {
                    backed
                        .entry(workload_key(scope))
                        .or_default()
                        .push(f.eval_s);
                }
            }
        }
    }
    let backed_at = |scope: &Scope, t: i64| {
        let mut keys = vec![scope.key()];
        if scope.pod.is_some() {
            keys.push(workload_key(scope));
        }
        keys.iter().any(|k| {
            backed
                .get(k)
                .is_some_and(|ts| ts.iter().any(|x| *x <= t && *x > t - 3_600))
        })
    };
    let mut events = Vec::new();
    for ((scope, detector), mut fs) in by_key {
        fs.sort_by_key(|f| f.eval_s);
        let mut episode: Option<Episode> = None;
        let mut sustained_ends: Vec<i64> = Vec::new();
        for f in fs {
            if !f.fired {
                if let Some(ep) = &mut episode {
                    ep.misses += 1;
                    ep.consecutive = 0;
                    if ep.misses > cfg.episode_gap_evals {
                        if ep.sustained {
                            sustained_ends.push(f.eval_s);
                        }
                        episode = None;
                    }
                }
                continue;
            }
            let ep = episode.get_or_insert_with(|| {
                let onset = f.onset_s.unwrap_or(f.eval_s).min(f.eval_s);
                let mut ep = Episode {
                    onset_s: onset,
                    // The growth lies within what the first firing looked at.
                    growth_from_s: onset.min(f.eval_s - f.window_s),
                    // Rules fire on the value's excess over their baseline (the 2 h P95, the
                    // hour's low): that excess is the growth the episode starts from.
                    value_at_onset: f.baseline.unwrap_or(f.value),
                    event_id: event_id(&scope, detector.as_str(), onset),
                    consecutive: 0,
                    misses: 0,
                    sustained: false,
                    level: None,
                };
                // Live: an episode already going at the window start continues a stored one.
                if f.eval_s == first
                    && let Some(p) = priors.get(&(scope.key(), detector.as_str().to_string()))
                    && p.detected_at.timestamp()
                        >= first - step * (cfg.episode_gap_evals as i64 + 1)
                {
                    ep.onset_s = p.onset.timestamp();
                    ep.growth_from_s = ep.growth_from_s.min(ep.onset_s);
                    ep.event_id = p.event_id.clone();
                    ep.consecutive = cfg.levels.sustain_evals;
                    ep.level = Some(p.level);
                }
                ep
            });
            ep.misses = 0;
            ep.consecutive += 1;
            let r = residence_at(caps, &scope, f.eval_s, ep.growth_from_s);
            let growth = if borrows_growth.contains(&detector) {
                growth_of
                    .get(&(scope.clone(), f.eval_s))
                    .copied()
                    .unwrap_or(0.0)
            } else {
                f.growth_per_s
            };
            let day_ago = f.eval_s - 86_400;
            let mem = trend(memory, &scope, ep.growth_from_s, f.eval_s, &cfg.levels);
            let evidence = Evidence {
                consecutive: ep.consecutive,
                value_now: f.value,
                value_at_onset: ep.value_at_onset,
                growth_per_s: growth,
                residence_p99_s: r.p99_s,
                alive_over_5m_share: r.alive_share,
                recurrences: sustained_ends.iter().filter(|t| **t >= day_ago).count() as u32,
                detector_sustains: f.sustained,
                uncorroborated: needs_corroboration.contains(&detector)
                    && !backed_at(&scope, f.eval_s),
                max_age_s: f.max_age_s.map(|a| a as f64),
                memory: mem,
            };
            let lvl = level(&evidence, &cfg.levels);
            if lvl >= Level::L2 {
                ep.sustained = true;
            }
            let changed = ep.level != Some(lvl);
            let emit_now = match emit {
                Emit::All => f.eval_s == *eval_times.last().unwrap_or(&f.eval_s),
                Emit::Changes => changed,
            };
            ep.level = Some(lvl);
            if !emit_now {
                continue;
            }
            let minutes = (f.eval_s - ep.onset_s) as f64 / 60.0;
            events.push(LeakEvent {
                schema: EVENT_SCHEMA.into(),
                event_id: ep.event_id.clone(),
                cluster: scope.cluster.clone(),
                namespace: scope.namespace.clone(),
                workload_kind: scope.workload_kind.clone(),
                workload: scope.workload.clone(),
                pod: scope.pod.clone(),
                level: lvl,
                detector: detector.as_str().to_string(),
                detected_at: at(f.eval_s),
                onset: at(ep.onset_s),
                window_start: at(f.eval_s - 3_600),
                window_end: at(f.eval_s),
                score: f.score,
                growth_per_s: growth,
                residence_p99_s: r.p99_s,
                alive_over_5m_share: r.alive_share,
                goroutines: f.value.round() as i64,
                baseline_goroutines: f.baseline,
                sla_penalty: sla_penalty(lvl, minutes, &cfg.levels),
                reason: match mem.and_then(|m| m.time_to_limit_s(&cfg.levels)) {
                    Some(ttl) => format!(
                        "{}; memory {} of {} MiB, the limit in {:.0} min at this slope",
                        f.reason,
                        mem.map_or(0, |m| m.memory_bytes) >> 20,
                        mem.and_then(|m| m.limit_bytes).unwrap_or(0) >> 20,
                        ttl / 60.0
                    ),
                    None => f.reason.clone(),
                },
                clusters: Vec::new(),
                memory_bytes: mem.map(|m| m.memory_bytes),
                memory_limit_bytes: mem.and_then(|m| m.limit_bytes),
                time_to_limit_s: mem.and_then(|m| m.time_to_limit_s(&cfg.levels)),
            });
        }
    }
    events.sort_by(|a, b| (a.detected_at, &a.event_id).cmp(&(b.detected_at, &b.event_id)));
    (events, scopes)
}

struct Episode {
    onset_s: i64,
    /// When the growth had not begun yet: the residence of an event is that of what grew since.
    growth_from_s: i64,
    value_at_onset: f64,
    event_id: String,
    consecutive: u32,
    misses: u32,
    sustained: bool,
    level: Option<Level>,
}

/// An episode's id: the scope, the detector and the onset, hashed.
pub(crate) fn event_id(scope: &Scope, detector: &str, onset_s: i64) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{}|{detector}|{onset_s}", scope.key()).as_bytes());
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 300;
    /// A multiple of the step.
    const T: i64 = 1_796_083_200;

    fn scope() -> Scope {
        Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("cart".into()),
            pod: Some("cart-1".into()),
        }
    }

    /// The growth rule's finding at step `k`: fired or not, at 200 + 10 k goroutines.
    fn finding(k: i64, fired: bool) -> Finding {
        Finding {
            scope: scope(),
            detector: DetectorKind::GrowthRule,
            eval_s: T + k * STEP,
            fired,
            value: 200.0 + 10.0 * k as f64,
            baseline: Some(100.0),
            growth_per_s: 1.0,
            score: 0.9,
            reason: format!("step {k}"),
            onset_s: None,
            sustained: false,
            window_s: 600,
            max_age_s: None,
        }
    }

    fn run(
        fired: &[bool],
        emit: Emit,
        priors: &Priors,
        growth_of: &HashMap<(Scope, i64), f64>,
        borrows: &[DetectorKind],
    ) -> Vec<LeakEvent> {
        let cfg = AnalyzeConfig::default();
        let eval_times: Vec<i64> = (0..fired.len() as i64).map(|k| T + k * STEP).collect();
        let findings = fired
            .iter()
            .enumerate()
            .map(|(k, f)| finding(k as i64, *f))
            .collect();
        let caps = Captures::new();
        let (events, scopes) = episodes(
            findings,
            &EpisodeInputs {
                eval_times: &eval_times,
                emit,
                cfg: &cfg,
                priors,
                caps: &caps,
                growth_of,
                borrows_growth: borrows,
                needs_corroboration: &[],
                memory: &Memory::new(),
            },
        );
        assert_eq!(scopes, 1);
        events
    }

    fn summary(events: &[LeakEvent]) -> Vec<(i64, Level, String)> {
        events
            .iter()
            .map(|e| {
                (
                    (e.detected_at.timestamp() - T) / STEP,
                    e.level,
                    e.event_id.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn an_episode_opens_levels_up_survives_short_gaps_and_closes_after_long_ones() {
        let (x, o) = (true, false);
        // Fires 0-4, misses 5-6 (within the gap of 2), fires 7, misses 8-10 (closes), fires 11.
        let fired = [x, x, x, x, x, o, o, x, o, o, o, x];
        let events = run(&fired, Emit::Changes, &Priors::new(), &HashMap::new(), &[]);
        let first = event_id(&scope(), "growth_rule", T);
        let again = event_id(&scope(), "growth_rule", T + 11 * STEP);
        assert_ne!(first, again);
        // Replay emits the first firing and every change of level: L1 until sustained (3 in a
        // row), L3 (growing, no captures to say otherwise), back to L1 after a miss resets
        // the run, and a new episode after more than 2 misses.
        assert_eq!(
            summary(&events),
            [
                (0, Level::L1, first.clone()),
                (2, Level::L3, first.clone()),
                (7, Level::L1, first),
                (11, Level::L1, again),
            ]
        );
        let e = &events[1];
        assert_eq!(e.detector, "growth_rule");
        assert_eq!(e.onset.timestamp(), T);
        assert_eq!(e.goroutines, 220);
        assert_eq!(e.growth_per_s, 1.0);
        assert_eq!(e.reason, "step 2");
        // Ten minutes of L3: the penalty is 1.0 a minute.
        assert!((e.sla_penalty - 10.0).abs() < 1e-9, "{}", e.sla_penalty);
        // Without captures, no residence.
        assert_eq!((e.residence_p99_s, e.alive_over_5m_share), (None, None));
    }

    #[test]
    fn a_live_run_emits_its_last_step_and_continues_a_stored_episode() {
        let fired = [true, true];
        // Nothing stored: a new episode, reported at the last step only, not yet sustained.
        let events = run(&fired, Emit::All, &Priors::new(), &HashMap::new(), &[]);
        assert_eq!(
            summary(&events),
            [(1, Level::L1, event_id(&scope(), "growth_rule", T))]
        );
        // Stored one step before the window: the episode goes on with its id, onset and level.
        let mut stored = events[0].clone();
        stored.event_id = "stored".into();
        stored.onset = at(T - 3_600);
        stored.detected_at = at(T - STEP);
        stored.level = Level::L3;
        let key = (scope().key(), "growth_rule".to_string());
        let priors = Priors::from([(key.clone(), stored.clone())]);
        let events = run(&fired, Emit::All, &priors, &HashMap::new(), &[]);
        assert_eq!(summary(&events), [(1, Level::L3, "stored".to_string())]);
        assert_eq!(events[0].onset.timestamp(), T - 3_600);
        // Stored longer ago than the gap allows: a new episode.
        stored.detected_at = at(T - 4 * STEP);
        let priors = Priors::from([(key, stored)]);
        let events = run(&fired, Emit::All, &priors, &HashMap::new(), &[]);
        assert_eq!(events[0].event_id, event_id(&scope(), "growth_rule", T));
    }

    #[test]
    fn detectors_without_a_growth_of_their_own_carry_the_reference_growth() {
        let growth_of = HashMap::from([((scope(), T), 2.5)]);
        let events = run(&[true], Emit::Changes, &Priors::new(), &growth_of, &[]);
        assert_eq!(events[0].growth_per_s, 1.0);
        let events = run(
            &[true],
            Emit::Changes,
            &Priors::new(),
            &growth_of,
            &[DetectorKind::GrowthRule],
        );
        assert_eq!(events[0].growth_per_s, 2.5);
    }

    /// The seed's baseline rule alone stays L1 (a heavy-tailed burst); with the growth rule
    /// firing on the same pod within the hour it levels as before.
    #[test]
    fn a_detector_known_to_misfire_stays_l1_alone() {
        let cfg = AnalyzeConfig::default();
        let eval_times: Vec<i64> = (0..5).map(|k| T + k * STEP).collect();
        let baseline = |k: i64| Finding {
            detector: DetectorKind::BaselineRule,
            sustained: true,
            ..finding(k, true)
        };
        let caps = Captures::new();
        let levels = |findings: Vec<Finding>| {
            let (events, _) = episodes(
                findings,
                &EpisodeInputs {
                    eval_times: &eval_times,
                    emit: Emit::Changes,
                    cfg: &cfg,
                    priors: &Priors::new(),
                    caps: &caps,
                    growth_of: &HashMap::new(),
                    borrows_growth: &[],
                    needs_corroboration: &[DetectorKind::BaselineRule],
                    memory: &Memory::new(),
                },
            );
            events
                .iter()
                .filter(|e| e.detector == "baseline_rule")
                .map(|e| e.level)
                .max()
        };
        let alone: Vec<Finding> = (0..5).map(baseline).collect();
        assert_eq!(levels(alone.clone()), Some(Level::L1));
        let mut backed = alone;
        backed.push(finding(1, true));
        assert_eq!(levels(backed), Some(Level::L3));
    }
}
