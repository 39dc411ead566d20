//! Residence time that can be trusted: goroutine ids are stable for a goroutine's life, so a
//! goroutine's age is "now minus the first snapshot that showed its id". The runtime's
//! `, N minutes` annotation is stamped at GC time and lies both ways, so it is used only for
//! goroutines this tracker has no history of (the first snapshot of a target).
//!
//! Storing every id of every snapshot would cost one value per goroutine observation — the
//! bulk of a store for a leaking service. Instead each sample row carries the ids first seen in
//! that snapshot (`new_goroutine_ids`, enough to rebuild first-seen times), and the ages are
//! summarised when the row is written: oldest first-seen, how many are older than five minutes,
//! and the P99 age.

use std::collections::{HashMap, HashSet};

use leakhound_schemas::model::SampleGroup;

use crate::rows::Target;

const FIVE_MINUTES_US: i64 = 5 * 60 * 1_000_000;

/// Ages of one sample group's goroutines at the snapshot time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupAges {
    pub new_ids: Vec<u64>,
    pub min_id: Option<u64>,
    pub oldest_first_seen_us: Option<i64>,
    pub alive_over_5m: Option<i64>,
    pub age_p99_s: Option<f64>,
}

/// What is known of one live goroutine id.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first_us: i64,
    /// Its entry function (hashed), once a whole traceback showed it.
    entry: Option<u64>,
}

#[derive(Debug, Default)]
struct TargetState {
    seen: HashMap<u64, Seen>,
    latest_ts: i64,
}

/// The function a group's goroutines were started with (`go f()`): the bottom frame of a
/// traceback the runtime did not cut. It is fixed for a goroutine's whole life.
fn entry_function(g: &SampleGroup) -> Option<u64> {
    if g.stack.elided {
        return None;
    }
    g.stack
        .frames
        .last()
        .map(|f| xxhash_rust::xxh3::xxh3_64(f.function.as_bytes()))
}

impl TargetState {
    /// Whether `groups` cannot come from the process this state tracked: Go never reuses a
    /// goroutine id within a process, and a goroutine keeps its entry function for life, so an
    /// id now running a different entry function than before belongs to a new process (a
    /// restart). Live ingest also learns restarts from `/metrics` (process start time) and the
    /// pod's restart count; saved dumps carry neither, so this is what backfill has.
    fn is_another_process(&self, groups: &[SampleGroup]) -> bool {
        groups.iter().any(|g| {
            entry_function(g).is_some_and(|e| {
                g.goroutine_ids.iter().any(|id| {
                    self.seen
                        .get(id)
                        .and_then(|s| s.entry)
                        .is_some_and(|old| old != e)
                })
            })
        })
    }
}

/// Tracks first-seen times per target across snapshots processed in time order.
#[derive(Debug, Default)]
pub struct IdTracker {
    targets: HashMap<Target, TargetState>,
}

/// What a tracker knows of one target, to carry it from one ingest run to the next.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrackedIds {
    /// goroutine id → first seen (µs).
    pub first_seen: std::collections::BTreeMap<u64, i64>,
    pub latest_ts_us: i64,
    /// goroutine id → entry function (hashed); absent in state saved before it was kept.
    #[serde(default)]
    pub entry: std::collections::BTreeMap<u64, u64>,
}

impl IdTracker {
    pub fn export(&self, target: &Target) -> Option<TrackedIds> {
        self.targets.get(target).map(|s| TrackedIds {
            first_seen: s.seen.iter().map(|(id, v)| (*id, v.first_us)).collect(),
            latest_ts_us: s.latest_ts,
            entry: s
                .seen
                .iter()
                .filter_map(|(id, v)| Some((*id, v.entry?)))
                .collect(),
        })
    }

    pub fn import(&mut self, target: &Target, ids: TrackedIds) {
        self.targets.insert(
            target.clone(),
            TargetState {
                seen: ids
                    .first_seen
                    .into_iter()
                    .map(|(id, first_us)| {
                        let entry = ids.entry.get(&id).copied();
                        (id, Seen { first_us, entry })
                    })
                    .collect(),
                latest_ts: ids.latest_ts_us,
            },
        );
    }

    /// Fold in one snapshot's groups of `target` at `ts_us`; returns each group's ages, in
    /// the order of `groups`. Groups without ids (debug=0/1) get empty ages.
    pub fn observe(
        &mut self,
        target: &Target,
        ts_us: i64,
        groups: &[SampleGroup],
    ) -> Vec<GroupAges> {
        let state = self.targets.entry(target.clone()).or_default();
        if state.is_another_process(groups) {
            // A restart: the new process's goroutines start their ages afresh, as in a
            // target's first snapshot.
            *state = TargetState::default();
        }
        let had_history = !state.seen.is_empty();
        let mut out = Vec::with_capacity(groups.len());
        let mut alive: HashSet<u64> = HashSet::new();
        let any_ids = groups.iter().any(|g| !g.goroutine_ids.is_empty());
        for g in groups {
            if g.goroutine_ids.is_empty() {
                out.push(GroupAges::default());
                continue;
            }
            let mut ages_us: Vec<i64> = Vec::with_capacity(g.goroutine_ids.len());
            let mut new_ids = Vec::new();
            let mut oldest = i64::MAX;
            let entry = entry_function(g);
            for &id in &g.goroutine_ids {
                alive.insert(id);
                // One lookup per id; an id not seen before starts at `i64::MAX`.
                let seen = state.seen.entry(id).or_insert(Seen {
                    first_us: i64::MAX,
                    entry: None,
                });
                seen.entry = seen.entry.or(entry);
                if seen.first_us > ts_us {
                    new_ids.push(id);
                    // No history: trust the annotation (a lower bound at best).
                    let fallback = if had_history {
                        ts_us
                    } else {
                        ts_us - i64::from(g.wait_minutes_max.unwrap_or(0)) * 60_000_000
                    };
                    seen.first_us = seen.first_us.min(fallback);
                }
                let first = seen.first_us;
                oldest = oldest.min(first);
                ages_us.push(ts_us - first);
            }
            ages_us.sort_unstable();
            let p99 = ages_us
                .get(((ages_us.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0);
            new_ids.sort_unstable();
            out.push(GroupAges {
                new_ids,
                min_id: g.goroutine_ids.iter().min().copied(),
                oldest_first_seen_us: Some(oldest),
                alive_over_5m: Some(
                    ages_us.iter().filter(|a| **a >= FIVE_MINUTES_US).count() as i64
                ),
                age_p99_s: Some(p99 as f64 / 1e6),
            });
        }
        // Goroutines gone from the newest snapshot are gone for good (ids are not reused).
        if any_ids && ts_us >= state.latest_ts {
            state.seen.retain(|id, _| alive.contains(id));
            state.latest_ts = ts_us;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakhound_schemas::model::Stack;
    use std::collections::BTreeMap;

    fn group(ids: &[u64], minutes: Option<u32>) -> SampleGroup {
        SampleGroup {
            stack_id: Stack::default().id(),
            stack: Stack::default(),
            state: "chan send".into(),
            wait_bucket: "<1m",
            wait_minutes_min: minutes,
            wait_minutes_max: minutes,
            labels: BTreeMap::new(),
            count: ids.len() as u64,
            goroutine_ids: ids.to_vec(),
            leaked: false,
        }
    }

    #[test]
    fn ages_follow_ids_not_annotations() {
        let t = Target::default();
        let mut tr = IdTracker::default();
        let m = 60_000_000;
        // First snapshot: no history, the annotation says 2 minutes.
        let a = tr.observe(&t, 10 * m, &[group(&[5, 6], Some(2))]);
        assert_eq!(a[0].oldest_first_seen_us, Some(8 * m));
        assert_eq!(a[0].new_ids, vec![5, 6]);
        // Later: 5 and 6 still there, 7 new; annotations are ignored once there is history.
        let a = tr.observe(&t, 16 * m, &[group(&[5, 6, 7], None)]);
        assert_eq!(a[0].new_ids, vec![7]);
        assert_eq!(a[0].alive_over_5m, Some(2));
        assert_eq!(a[0].age_p99_s, Some(480.0));
        assert_eq!(a[0].min_id, Some(5));
        // 5 and 6 finished; 7 stays and keeps its first-seen time.
        let a = tr.observe(&t, 17 * m, &[group(&[7], Some(40))]);
        assert_eq!(a[0].oldest_first_seen_us, Some(16 * m));
        assert!(a[0].new_ids.is_empty());
        // A debug=1 group has no ids and no ages.
        let a = tr.observe(&t, 18 * m, &[group(&[], None)]);
        assert_eq!(a[0], GroupAges::default());
    }

    fn running(ids: &[u64], frames: &[&str], minutes: Option<u32>) -> SampleGroup {
        let stack = Stack {
            frames: frames
                .iter()
                .map(|f| leakhound_schemas::model::Frame {
                    function: f.to_string(),
                    file: "main.go".into(),
                    line: 1,
                })
                .collect(),
            ..Stack::default()
        };
        SampleGroup {
            stack_id: stack.id(),
            stack,
            ..group(ids, minutes)
        }
    }

    #[test]
    fn an_id_running_another_entry_function_means_a_new_process() {
        let t = Target::default();
        let mut tr = IdTracker::default();
        let m = 60_000_000;
        tr.observe(
            &t,
            10 * m,
            &[
                running(&[1], &["main.main", "runtime.main"], None),
                running(&[20, 21], &["main.leakChanSend"], None),
            ],
        );
        // Same process: 20 blocks elsewhere now, but was started with the same function.
        let a = tr.observe(
            &t,
            20 * m,
            &[
                running(&[1], &["main.main", "runtime.main"], None),
                running(&[20, 21], &["time.Sleep", "main.leakChanSend"], None),
            ],
        );
        assert_eq!(a[1].oldest_first_seen_us, Some(10 * m));
        assert!(a[1].new_ids.is_empty());
        // Restarted: id 1 is main again (same entry), but 21 now runs another function, which
        // no goroutine of the old process could: every age starts afresh (annotation only).
        let a = tr.observe(
            &t,
            30 * m,
            &[
                running(&[1], &["main.main", "runtime.main"], Some(1)),
                running(&[21, 22], &["main.leakSelect"], None),
            ],
        );
        assert_eq!(a[0].oldest_first_seen_us, Some(29 * m));
        assert_eq!(a[0].new_ids, vec![1]);
        assert_eq!(a[1].oldest_first_seen_us, Some(30 * m));
        assert_eq!(a[1].new_ids, vec![21, 22]);
        // The carried state keeps entry functions, so the next run of ingest checks them too.
        let saved = tr.export(&t).unwrap();
        assert_eq!(saved.entry.len(), 3);
        let mut again = IdTracker::default();
        again.import(&t, saved);
        let a = again.observe(&t, 40 * m, &[running(&[22], &["main.leakChanSend"], None)]);
        assert_eq!(
            a[0].oldest_first_seen_us,
            Some(40 * m),
            "22 changed function: restart"
        );
    }

    #[test]
    fn a_cut_traceback_proves_nothing() {
        let t = Target::default();
        let mut tr = IdTracker::default();
        let m = 60_000_000;
        tr.observe(&t, 10 * m, &[running(&[7], &["main.worker"], None)]);
        // Deep recursion: the runtime cut the traceback, its last frame is not the entry.
        let mut g = running(&[7], &["main.recurse", "main.recurse"], None);
        g.stack.elided = true;
        let a = tr.observe(&t, 20 * m, &[g]);
        assert_eq!(a[0].oldest_first_seen_us, Some(10 * m));
    }
}
