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
//! **Memory towards the limit raises the level by one** (L1 → L2, L2 → L3), from the Go agent's
//! container context on the count rows (`engine::context`): when the goroutines still grow
//! (above the episode's onset value) and the scope's memory (cgroup `memory.current`, else the
//! process's RSS) grows towards its limit (cgroup `memory.max`):
//! - the least-squares slope of memory over the episode's window (from the growth's start, at
//!   least the last 15 minutes, at most the hour; the current process only; 3 samples over 2
//!   minutes at least) rose by at least `memory_min_rise_share` (1 %) of the limit over the
//!   window — flat or noisy memory is no growth — and
//! - at that slope the limit is reached within `memory_horizon_s` (24 h, `analyze
//!   --memory-horizon`): `time_to_limit_s`,
//!   which events carry (null without a limit, or without such growth).
//!
//! So a firing not yet sustained, L1 from the goroutines alone, is L2 when memory has been
//! heading for the limit over the last 15 minutes or more: the limit is what makes waiting for
//! `sustain_evals` costly. Not raised: young goroutines only (churn: what grows in memory is
//! not them), and a detector known to misfire left L1 by the rule above (a burst grows memory
//! too). For a workload-wide event the pod nearest its limit counts.
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
    /// Memory grows when its fitted rise over the window is at least this share of the limit.
    pub memory_min_rise_share: f64,
    /// Memory growing towards its limit raises the level when the limit is this near (s).
    pub memory_horizon_s: f64,
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
            memory_min_rise_share: 0.01,
            memory_horizon_s: 86_400.0,
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
    /// The scope's memory over the episode's window, where the agent's context gives it.
    pub memory: Option<MemoryTrend>,
}

/// Memory of a scope over an episode's window (`engine::context::trend`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryTrend {
    /// The last sample's memory, bytes.
    pub memory_bytes: i64,
    /// The last sample's limit; `None` when unknown or unlimited.
    pub limit_bytes: Option<i64>,
    /// Least-squares slope over the window, bytes per second.
    pub slope_per_s: f64,
    /// Seconds between the window's first and last samples.
    pub span_s: f64,
}

impl MemoryTrend {
    /// Seconds until the limit at the slope (0 at or over it); `None` without a limit or when
    /// the fitted rise over the window is under `memory_min_rise_share` of the limit.
    pub fn time_to_limit_s(&self, t: &LevelThresholds) -> Option<f64> {
        let limit = self.limit_bytes.filter(|l| *l > 0)? as f64;
        let rise = self.slope_per_s * self.span_s;
        if !(self.slope_per_s > 0.0 && rise >= t.memory_min_rise_share * limit) {
            return None;
        }
        Some(((limit - self.memory_bytes as f64) / self.slope_per_s).max(0.0))
    }

    /// Growing towards the limit, which it reaches within `memory_horizon_s`.
    pub fn towards_limit(&self, t: &LevelThresholds) -> bool {
        self.time_to_limit_s(t)
            .is_some_and(|s| s <= t.memory_horizon_s)
    }
}

pub fn level(e: &Evidence, t: &LevelThresholds) -> Level {
    let (lvl, raisable) = counts_level(e, t);
    let memory = e.memory.is_some_and(|m| m.towards_limit(t));
    if raisable && memory && e.value_now > e.value_at_onset {
        match lvl {
            Level::L1 => Level::L2,
            _ => Level::L3,
        }
    } else {
        lvl
    }
}

/// The level from the goroutines alone, and whether memory towards the limit may raise it.
fn counts_level(e: &Evidence, t: &LevelThresholds) -> (Level, bool) {
    let sustained = e.detector_sustains || e.consecutive >= t.sustain_evals;
    if !sustained {
        return (Level::L1, true);
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
        return (Level::L1, false);
    }
    // A detector known to misfire, alone: only the captures can raise it.
    if e.uncorroborated && stay != Some(2) {
        return (Level::L1, false);
    }
    let still_growing = e.value_now > e.value_at_onset;
    if still_growing && (growth == 2 || stay.is_none_or(|s| s == 2)) {
        return (Level::L3, true);
    }
    if e.recurrences > 0 || still_growing || stay.is_some_and(|s| s >= 1) {
        return (Level::L2, true);
    }
    (Level::L1, true)
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

    /// 200 MiB of a 256 MiB limit at `slope` bytes/s over 30 minutes.
    fn memory(slope: f64, limit: Option<i64>) -> MemoryTrend {
        MemoryTrend {
            memory_bytes: 200 << 20,
            limit_bytes: limit,
            slope_per_s: slope,
            span_s: 1_800.0,
        }
    }

    #[test]
    fn time_to_limit_at_the_slope_and_null_without_limit_or_growth() {
        let t = LevelThresholds::default();
        // 56 MiB left at 16 KiB/s: 3,584 s. (Rise over 30 min: 28 MiB, 11 % of the limit.)
        let m = memory(16_384.0, Some(256 << 20));
        assert_eq!(m.time_to_limit_s(&t), Some(3_584.0));
        assert!(m.towards_limit(&t));
        // No limit: null.
        assert_eq!(memory(16_384.0, None).time_to_limit_s(&t), None);
        // Flat, falling, or a rise under 1 % of the limit over the window (noise): null.
        assert_eq!(memory(0.0, Some(256 << 20)).time_to_limit_s(&t), None);
        assert_eq!(memory(-500.0, Some(256 << 20)).time_to_limit_s(&t), None);
        assert_eq!(memory(1_000.0, Some(256 << 20)).time_to_limit_s(&t), None);
        // Over the limit already (RSS may exceed memory.max's page-cache-free share): 0.
        let over = MemoryTrend {
            memory_bytes: 300 << 20,
            ..m
        };
        assert_eq!(over.time_to_limit_s(&t), Some(0.0));
        // Growing, but the limit is more than a day away: no raise.
        let slow = MemoryTrend {
            limit_bytes: Some(64 << 30),
            slope_per_s: 400_000.0,
            ..m
        };
        let ttl = slow.time_to_limit_s(&t).unwrap();
        assert!(ttl > 86_400.0, "{ttl}");
        assert!(!slow.towards_limit(&t));
    }

    #[test]
    fn memory_towards_the_limit_raises_the_level_by_one() {
        let t = LevelThresholds::default();
        let towards = Some(memory(16_384.0, Some(256 << 20)));
        // L2 (residence at warning) → L3.
        let warn = Evidence {
            residence_p99_s: Some(60.0),
            alive_over_5m_share: Some(0.0005),
            ..ev()
        };
        assert_eq!(level(&warn, &t), Level::L2);
        let raised = Evidence {
            memory: towards,
            ..warn.clone()
        };
        assert_eq!(level(&raised, &t), Level::L3);
        // L1 because not yet sustained (one firing), goroutines growing: L2.
        let first = Evidence {
            consecutive: 1,
            ..ev()
        };
        assert_eq!(level(&first, &t), Level::L1);
        assert_eq!(
            level(
                &Evidence {
                    memory: towards,
                    ..first.clone()
                },
                &t
            ),
            Level::L2
        );
        // An L1 whose goroutines stalled at the onset's value is not raised.
        let stalled = Evidence {
            value_now: 300.0,
            memory: towards,
            ..ev()
        };
        assert_eq!(level(&stalled, &t), Level::L1);
        // L3 stays L3.
        assert_eq!(
            level(
                &Evidence {
                    memory: towards,
                    ..ev()
                },
                &t
            ),
            Level::L3
        );
        // Memory flat: no raise. No limit: no raise. Either way, the first firing stays L1.
        for m in [memory(0.0, Some(256 << 20)), memory(16_384.0, None)] {
            assert_eq!(
                level(
                    &Evidence {
                        memory: Some(m),
                        ..first.clone()
                    },
                    &t
                ),
                Level::L1
            );
            assert_eq!(
                level(
                    &Evidence {
                        memory: Some(m),
                        ..warn.clone()
                    },
                    &t
                ),
                Level::L2
            );
        }
        // Young goroutines only, or a misfiring detector alone: L1 whatever memory does.
        for e in [
            Evidence {
                residence_p99_s: Some(2.0),
                alive_over_5m_share: Some(0.0),
                ..ev()
            },
            Evidence {
                uncorroborated: true,
                ..ev()
            },
        ] {
            let with = Evidence {
                memory: towards,
                ..e
            };
            assert_eq!(level(&with, &t), Level::L1, "{with:?}");
        }
    }

    #[test]
    fn penalty_per_level() {
        let t = LevelThresholds::default();
        assert_eq!(sla_penalty(Level::L1, 30.0, &t), 0.0);
        assert!((sla_penalty(Level::L2, 30.0, &t) - 9.0).abs() < 1e-9);
        assert!((sla_penalty(Level::L3, 30.0, &t) - 30.0).abs() < 1e-9);
    }
}
