//! A dump or profile summarised the way panicparse does it, for a person debugging a leak
//! (`leakhound inspect`): totals by state, then stacks grouped with counts, wait ranges and
//! labels, largest first.
//!
//! Grouping decision: a stack is its frames and state; `created by` is *not* part of it (the
//! stack id is the same in debug=0/1, which have no creation sites), so a stack whose goroutines
//! were started at several places lists every site with its count (`created_by_sites`).
//! `leaked` counts the goroutines the runtime marked `(leaked)` (`leaked_count`), not the stack.
//! A dump cut short keeps its complete records and says where it was cut (`partial`).

use std::collections::BTreeMap;

use leakhound_schemas::model::{Cut, Frame, Snapshot, StackId};
use serde::Serialize;

use crate::parse::ParseOptions;

/// Stacks grouped by (stack id, state) — wait buckets and label sets folded together.
#[derive(Debug, Serialize)]
pub struct StackReport {
    /// The stack id as spelled everywhere (`StackId`'s `Display`: the signed decimal of the
    /// store's Int64 column), a JSON string.
    pub stack_id: String,
    pub count: u64,
    pub state: String,
    pub wait_minutes: Option<WaitRange>,
    pub labels: Vec<BTreeMap<String, String>>,
    /// Some goroutine of the stack is marked `(leaked)` (`leaked_count > 0`).
    pub leaked: bool,
    /// Goroutines of the stack the runtime marked `(leaked)` (all of them in a goroutineleak
    /// profile).
    pub leaked_count: u64,
    pub frames: Vec<Frame>,
    /// The `created by` site of the stack's most frequent creator.
    pub created_by: Option<Frame>,
    /// Every `created by` site of the stack's goroutines with their count, most first.
    pub created_by_sites: Vec<CreatorSite>,
    pub elided: bool,
    /// Every goroutine id of the stack if it has at most [`ParseOptions::SUMMARY_IDS`]
    /// goroutines, else the lowest that many (the oldest goroutines, usually), ascending.
    pub goroutine_ids: Vec<u64>,
}

#[derive(Debug, Serialize, Clone)]
pub struct CreatorSite {
    pub frame: Frame,
    pub count: u64,
}

#[derive(Debug, Serialize, Clone, Copy)]
pub struct WaitRange {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub source: String,
    pub format: Option<&'static str>,
    pub profile: &'static str,
    pub total: u64,
    pub declared_total: Option<u64>,
    /// Where the dump was cut, if it was: the report holds its complete records only.
    pub partial: Option<Cut>,
    pub by_state: BTreeMap<String, u64>,
    pub stacks: Vec<StackReport>,
}

pub fn report(source: &str, snap: &Snapshot) -> Report {
    let mut groups: BTreeMap<(StackId, String), StackReport> = BTreeMap::new();
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for g in &snap.groups {
        let state = if g.state.is_empty() {
            "(unknown)".to_string()
        } else {
            g.state.clone()
        };
        *by_state.entry(state.clone()).or_default() += g.count;
        let e = groups
            .entry((g.stack_id, g.state.clone()))
            .or_insert_with(|| StackReport {
                stack_id: g.stack_id.to_string(),
                count: 0,
                state: g.state.clone(),
                wait_minutes: None,
                labels: Vec::new(),
                leaked: false,
                leaked_count: 0,
                frames: g.stack.frames.clone(),
                created_by: None,
                created_by_sites: Vec::new(),
                elided: g.stack.elided,
                goroutine_ids: Vec::new(),
            });
        e.count += g.count;
        if g.leaked {
            e.leaked = true;
            e.leaked_count += g.count;
        }
        if !g.labels.is_empty() && !e.labels.contains(&g.labels) {
            e.labels.push(g.labels.clone());
        }
        e.goroutine_ids.extend(&g.goroutine_ids);
        if let (Some(lo), Some(hi)) = (g.wait_minutes_min, g.wait_minutes_max) {
            e.wait_minutes = Some(match e.wait_minutes {
                Some(w) => WaitRange {
                    min: w.min.min(lo),
                    max: w.max.max(hi),
                },
                None => WaitRange { min: lo, max: hi },
            });
        }
    }
    let mut stacks: Vec<StackReport> = groups.into_values().collect();
    for s in &mut stacks {
        // Sites of the stack id (all its states: the same goroutines' entry points).
        let id = s.stack_id.parse::<StackId>();
        if let Some(sites) = id.ok().and_then(|id| snap.creators.get(&id)) {
            s.created_by_sites = sites
                .iter()
                .map(|(frame, count)| CreatorSite {
                    frame: frame.clone(),
                    count: *count,
                })
                .collect();
            s.created_by = sites.first().map(|(f, _)| f.clone());
        }
        s.goroutine_ids.sort_unstable();
        // Each group kept at most its lowest `SUMMARY_IDS`; so does the stack.
        s.goroutine_ids.truncate(ParseOptions::SUMMARY_IDS);
        s.labels.sort();
    }
    stacks.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.stack_id.cmp(&b.stack_id))
            .then_with(|| a.state.cmp(&b.state))
    });
    Report {
        source: source.to_string(),
        format: snap.format.map(|f| f.as_str()),
        profile: snap.kind.as_str(),
        total: snap.total(),
        declared_total: snap.declared_total,
        partial: snap.partial.clone(),
        by_state,
        stacks,
    }
}
