//! The closed sets of names that events carry: which detector fired ([`DetectorKind`]) and the
//! leak pattern of a root-cause cluster ([`LeakPattern`]). Each spells itself exactly as the
//! `detector` and `clusters[].pattern` fields of an event do (`docs/leak-events.md`); the
//! event's fields stay strings on the wire, so that a reader of events written by a later
//! version with a new name still reads them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A detector of the analyze crate. Adding one: a variant here, a module under
/// `analyze/src/detect/`, and one line in that module's `REGISTRY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// The seed's rule: P95 of the previous 2 h x 1.8 for 3 periods (`queries/rule_baseline.sql`).
    BaselineRule,
    /// Least-squares slope over the last hour of each pod's life (`queries/rule_growth.sql`).
    GrowthRule,
    /// Robust STL + Isolation Forest (`analyze/src/anomaly/`).
    StlIforest,
    /// A workload judged across its pod lives: slope per life at the same age, pooled over lives
    /// and replicas (`analyze/src/detect/lives.rs`).
    Lives,
    /// One pod diverging from its siblings at the same time and load, a canary among them
    /// (`analyze/src/detect/siblings.rs`).
    Siblings,
    /// A trend over whole daily cycles, the daily pattern cancelled (`analyze/src/detect/daily_trend.rs`).
    DailyTrend,
}

impl DetectorKind {
    /// Every detector, in the order they run and are listed.
    pub const ALL: [DetectorKind; 6] = [
        DetectorKind::BaselineRule,
        DetectorKind::GrowthRule,
        DetectorKind::StlIforest,
        DetectorKind::Lives,
        DetectorKind::Siblings,
        DetectorKind::DailyTrend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::BaselineRule => "baseline_rule",
            DetectorKind::GrowthRule => "growth_rule",
            DetectorKind::StlIforest => "stl_iforest",
            DetectorKind::Lives => "lives",
            DetectorKind::Siblings => "siblings",
            DetectorKind::DailyTrend => "daily_trend",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of a closed set's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}; known: {known}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub known: String,
}

impl FromStr for DetectorKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        DetectorKind::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "detector",
                name: s.to_string(),
                known: DetectorKind::ALL.map(DetectorKind::as_str).join(", "),
            })
    }
}

impl PartialEq<&str> for DetectorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a cluster of grown goroutines waits (`analyze/src/rootcause.rs` decides it from the wait
/// state and the frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakPattern {
    ChanSend,
    ChanReceive,
    Select,
    /// `select {}` (no cases).
    SelectForever,
    /// An unclosed HTTP response body (the transport's `readLoop`/`writeLoop`).
    HttpBody,
    /// Waits on a context (a frame in package `context`, or a name that says so).
    Context,
    Mutex,
    Rwmutex,
    Waitgroup,
    Cond,
    SleepTimer,
    IoWait,
    Other,
}

impl LeakPattern {
    pub const ALL: [LeakPattern; 13] = [
        LeakPattern::ChanSend,
        LeakPattern::ChanReceive,
        LeakPattern::Select,
        LeakPattern::SelectForever,
        LeakPattern::HttpBody,
        LeakPattern::Context,
        LeakPattern::Mutex,
        LeakPattern::Rwmutex,
        LeakPattern::Waitgroup,
        LeakPattern::Cond,
        LeakPattern::SleepTimer,
        LeakPattern::IoWait,
        LeakPattern::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeakPattern::ChanSend => "chan_send",
            LeakPattern::ChanReceive => "chan_receive",
            LeakPattern::Select => "select",
            LeakPattern::SelectForever => "select_forever",
            LeakPattern::HttpBody => "http_body",
            LeakPattern::Context => "context",
            LeakPattern::Mutex => "mutex",
            LeakPattern::Rwmutex => "rwmutex",
            LeakPattern::Waitgroup => "waitgroup",
            LeakPattern::Cond => "cond",
            LeakPattern::SleepTimer => "sleep_timer",
            LeakPattern::IoWait => "io_wait",
            LeakPattern::Other => "other",
        }
    }
}

impl fmt::Display for LeakPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LeakPattern {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        LeakPattern::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "leak pattern",
                name: s.to_string(),
                known: LeakPattern::ALL.map(LeakPattern::as_str).join(", "),
            })
    }
}

impl PartialEq<&str> for LeakPattern {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for d in DetectorKind::ALL {
            assert_eq!(d.as_str().parse::<DetectorKind>(), Ok(d));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        for p in LeakPattern::ALL {
            assert_eq!(p.as_str().parse::<LeakPattern>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        let e = "foo".parse::<DetectorKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown detector \"foo\"; known: baseline_rule, growth_rule, stl_iforest, lives, siblings, daily_trend"
        );
    }
}
