//! Leak levels from the seed's thresholds, and the SLA penalty of an event.
//!
//! Three measures, each safe / warning / danger (thresholds configurable):
//!
//! | measure | safe | warning | danger |
//! |---|---|---|---|
//! | growth, goroutines/s | ≤ 10 | 10–50 | > 50 |
//! | P99 residence of blocked goroutines | < 30 s | 30–120 s | > 120 s |
//! | share of goroutines alive over 5 min | < 0.1 % | 0.1–1 % | > 1 % |
//!
//! The residence measures are taken over the goroutines the episode's growth consists of (the
//! stacks that grew since the debug=2 capture before it; `engine::captures::residence_at`), not over the
//! whole pod: every healthy service keeps a few dozen goroutines for its whole life (servers,
//! worker pools, tickers), which would put any pod's P99 and alive share at danger.
//!
//! A detector's firing becomes a level with the episode it belongs to:
//! - **L1, transient jitter**: the detector fired, but not for `sustain_evals` consecutive
//!   evaluations, or the goroutines it saw are young (residence and alive share both safe, when
//!   known). Recorded only.
//! - **L2, periodic / recurring**: sustained, but the growth has stalled or the residence
//!   measures only reach warning; or a scope whose sustained episodes keep coming back after
//!   resets (the OOM sawtooth).
//! - **L3, sustained leak**: sustained, still growing, and the goroutines stay (residence or
//!   alive share at danger, any measure at danger, or no residence data to say otherwise).
//!
//! - Residence and alive share are left out when the goroutines the firing is about cannot
//!   reach their danger thresholds (`Evidence::max_age_s`: `lives` on pod lives of a few
//!   minutes, where every goroutine is young and the detector's growth across lives is the
//!   evidence that what grew stays until the pod goes).
//! - A firing of a detector known to misfire (the seed's baseline rule) that no other detector
//!   backs (none fired on the scope, its workload or one of its pods within the hour) stays L1
//!   unless the captures show that what grew stays (residence or alive share at danger).
//!
//! Growth in goroutines per second is rarely above 10/s even in bad leaks, so growth alone
//! seldom leaves "safe"; what makes a leak a leak is that it goes on and the goroutines stay.
//! SLA penalty per event: L1 0, L2 0.3 x minutes, L3 1.0 x minutes, minutes being the episode's
//! length so far.

use leakhound_schemas::events::Level;

#[derive(Debug, Clone, PartialEq)]
pub struct LevelThresholds {
    pub growth_warn_per_s: f64,
    pub growth_danger_per_s: f64,
    pub residence_warn_s: f64,
    pub residence_danger_s: f64,
    pub alive_warn_share: f64,
    pub alive_danger_share: f64,
    /// Consecutive evaluations a detector must fire before an episode counts as sustained.
    pub sustain_evals: u32,
    pub l2_penalty_per_min: f64,
    pub l3_penalty_per_min: f64,
}

impl Default for LevelThresholds {
    fn default() -> Self {
        LevelThresholds {
            growth_warn_per_s: 10.0,
            growth_danger_per_s: 50.0,
            residence_warn_s: 30.0,
            residence_danger_s: 120.0,
            alive_warn_share: 0.001,
            alive_danger_share: 0.01,
            sustain_evals: 3,
            l2_penalty_per_min: 0.3,
            l3_penalty_per_min: 1.0,
        }
    }
}

/// The span of the alive share (goroutines alive 5 minutes earlier).
const ALIVE_SPAN_S: f64 = 300.0;

/// 0 safe, 1 warning, 2 danger.
fn severity(x: f64, warn: f64, danger: f64) -> u8 {
    if x > danger {
        2
    } else if x > warn {
        1
    } else {
        0
    }
}

/// What the level decision looks at for one firing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Consecutive evaluations this episode has fired, this one included.
    pub consecutive: u32,
    /// The scope's value now and when the episode began.
    pub value_now: f64,
    pub value_at_onset: f64,
    pub growth_per_s: f64,
    pub residence_p99_s: Option<f64>,
    pub alive_over_5m_share: Option<f64>,
    /// Earlier sustained episodes of this scope within the last day that ended in a reset.
    pub recurrences: u32,
    /// The detector's own rule already demands persistence (the baseline rule's 3 periods).
    pub detector_sustains: bool,
    /// The detector is known to misfire (`Detector::needs_corroboration`) and no other detector
    /// fired on the scope within the hour: it stays L1 unless the captures show what grew stays.
    pub uncorroborated: bool,
    /// The goroutines of the growth are at most this old (`Finding::max_age_s`: pod lives of
    /// minutes): a residence measure whose danger threshold it does not reach is left out.
    pub max_age_s: Option<f64>,
}

pub fn level(e: &Evidence, t: &LevelThresholds) -> Level {
    let sustained = e.detector_sustains || e.consecutive >= t.sustain_evals;
    if !sustained {
        return Level::L1;
    }
    let growth = severity(e.growth_per_s, t.growth_warn_per_s, t.growth_danger_per_s);
    // Goroutines that cannot grow old enough to reach a measure's danger say nothing by it.
    let can_reach = |age_s: f64| e.max_age_s.is_none_or(|m| m >= age_s);
    let residence = e
        .residence_p99_s
        .filter(|_| can_reach(t.residence_danger_s))
        .map(|r| severity(r, t.residence_warn_s, t.residence_danger_s));
    let alive = e
        .alive_over_5m_share
        .filter(|_| can_reach(ALIVE_SPAN_S))
        .map(|a| severity(a, t.alive_warn_share, t.alive_danger_share));
    let stay = match (residence, alive) {
        (None, None) => None,
        (r, a) => Some(r.unwrap_or(0).max(a.unwrap_or(0))),
    };
    // Young goroutines only: churn, not a leak.
    if stay == Some(0) && growth == 0 {
        return Level::L1;
    }
    // A detector known to misfire, alone: only the captures can raise it.
    if e.uncorroborated && stay != Some(2) {
        return Level::L1;
    }
    let still_growing = e.value_now > e.value_at_onset;
    if still_growing && (growth == 2 || stay.is_none_or(|s| s == 2)) {
        return Level::L3;
    }
    if e.recurrences > 0 || still_growing || stay.is_some_and(|s| s >= 1) {
        return Level::L2;
    }
    Level::L1
}

/// The SLA penalty of an event of `level` whose episode has lasted `minutes`.
pub fn sla_penalty(level: Level, minutes: f64, t: &LevelThresholds) -> f64 {
    match level {
        Level::L1 => 0.0,
        Level::L2 => t.l2_penalty_per_min * minutes,
        Level::L3 => t.l3_penalty_per_min * minutes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Evidence {
        Evidence {
            consecutive: 3,
            value_now: 500.0,
            value_at_onset: 300.0,
            growth_per_s: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn levels_follow_persistence_growth_and_residence() {
        let t = LevelThresholds::default();
        // Series only, sustained and growing: a leak.
        assert_eq!(level(&ev(), &t), Level::L3);
        // Not sustained yet: jitter.
        assert_eq!(
            level(
                &Evidence {
                    consecutive: 1,
                    ..ev()
                },
                &t
            ),
            Level::L1
        );
        // Sustained, goroutines stay over 5 minutes: L3; young ones only: L1.
        let stay = Evidence {
            residence_p99_s: Some(600.0),
            alive_over_5m_share: Some(0.2),
            ..ev()
        };
        assert_eq!(level(&stay, &t), Level::L3);
        let young = Evidence {
            residence_p99_s: Some(2.0),
            alive_over_5m_share: Some(0.0),
            ..ev()
        };
        assert_eq!(level(&young, &t), Level::L1);
        // ... unless the goroutines could not be older: lives of 45 s (`lives`) say nothing
        // by residence (danger 120 s) or the 5-minute alive share; lives of hours do.
        let short_lives = Evidence {
            max_age_s: Some(45.0),
            ..young.clone()
        };
        assert_eq!(level(&short_lives, &t), Level::L3);
        let long_lives = Evidence {
            max_age_s: Some(5.0 * 3_600.0),
            ..young.clone()
        };
        assert_eq!(level(&long_lives, &t), Level::L1);
        // Lives of 3 minutes reach the residence's danger, not the alive share's span.
        let three_minutes = Evidence {
            max_age_s: Some(180.0),
            ..young.clone()
        };
        assert_eq!(level(&three_minutes, &t), Level::L1);
        // Residence at warning only: recurring, L2.
        let warn = Evidence {
            residence_p99_s: Some(60.0),
            alive_over_5m_share: Some(0.0005),
            ..ev()
        };
        assert_eq!(level(&warn, &t), Level::L2);
        // Stalled growth after a sustained episode that keeps recurring: L2.
        let stalled = Evidence {
            value_now: 300.0,
            recurrences: 2,
            ..ev()
        };
        assert_eq!(level(&stalled, &t), Level::L2);
        // Danger growth overrides young residence.
        let fast = Evidence {
            growth_per_s: 80.0,
            ..young
        };
        assert_eq!(level(&fast, &t), Level::L3);
        // A detector known to misfire, alone: L1 from the counts, L3 when the captures show
        // that what grew stays.
        let alone = Evidence {
            uncorroborated: true,
            ..ev()
        };
        assert_eq!(level(&alone, &t), Level::L1);
        assert_eq!(
            level(
                &Evidence {
                    uncorroborated: true,
                    ..stay
                },
                &t
            ),
            Level::L3
        );
    }

    #[test]
    fn penalty_per_level() {
        let t = LevelThresholds::default();
        assert_eq!(sla_penalty(Level::L1, 30.0, &t), 0.0);
        assert!((sla_penalty(Level::L2, 30.0, &t) - 9.0).abs() < 1e-9);
        assert!((sla_penalty(Level::L3, 30.0, &t) - 30.0).abs() < 1e-9);
    }
}
