//! The debug=2 captures ingest took, and the residence of what grew: the age and alive share of
//! the goroutines of the stacks that grew since the capture before an episode's growth (not of
//! the whole pod, whose long-lived goroutines are old in every service). Levels read it
//! (`levels::level`).
//!
//! ```text
//!  goroutine_samples (profile goroutine, ages tracked) ──captures()──▶ Captures (per pod, in time order)
//!  Captures + scope + t + growth start ──residence_at()──▶ Residence { p99_s, alive_share }
//! ```

use std::collections::HashMap;

use datafusion::prelude::SessionContext;

use super::Scope;
use super::columns::{f64s, i64s, rfc, strs, ts_micros};
use crate::error::Result;

/// Residence figures of one pod at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Residence {
    pub p99_s: Option<f64>,
    pub alive_share: Option<f64>,
}

/// One sample group of a debug=2 capture: goroutines of one stack in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureGroup {
    pub stack_id: i64,
    pub state: String,
    pub goroutines: f64,
    /// Of them, alive 5 minutes earlier.
    pub alive_over_5m: f64,
    pub age_p99_s: f64,
}

impl CaptureGroup {
    fn blocked(&self) -> bool {
        !matches!(self.state.as_str(), "running" | "runnable" | "syscall" | "")
    }
}

/// One pod's debug=2 captures (those that carry ages: goroutine-id tracking), in time order.
#[derive(Debug, Clone, Default)]
pub struct PodCaptures {
    pub workload: Option<String>,
    pub captures: Vec<(i64, Vec<CaptureGroup>)>,
}

/// Per (namespace, pod).
pub type Captures = HashMap<(String, String), PodCaptures>;

/// Put the last capture of each of `before`'s pods that is in the scope (the pod, or the
/// workload's pods) in front of that pod's captures in `caps`, which stay in time order; a
/// capture `caps` already holds is left as it is.
pub(crate) fn add_captures_before(
    caps: &mut Captures,
    before: Captures,
    pod: Option<&str>,
    workload: Option<&str>,
) {
    for (key, pc) in before {
        let in_scope = match pod {
            Some(p) => key.1 == p,
            None => workload.is_some() && pc.workload.as_deref() == workload,
        };
        if !in_scope {
            continue;
        }
        let Some(last) = pc.captures.into_iter().last() else {
            continue;
        };
        let into = caps.entry(key).or_insert_with(|| PodCaptures {
            workload: pc.workload,
            captures: Vec::new(),
        });
        let at = into.captures.partition_point(|(ts, _)| *ts < last.0);
        if into.captures.get(at).is_none_or(|(ts, _)| *ts != last.0) {
            into.captures.insert(at, last);
        }
    }
}

pub async fn captures(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
) -> Result<Captures> {
    let sql = format!(
        "SELECT namespace, pod, workload, ts, stack_id, state, goroutines, alive_over_5m, age_p99_s \
         FROM goroutine_samples \
         WHERE profile = 'goroutine' AND age_p99_s IS NOT NULL \
           AND ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND namespace LIKE '{ns}' \
         ORDER BY namespace, pod, ts",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
        ns = namespace.replace('\'', "''"),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out: Captures = HashMap::new();
    for b in &batches {
        let (ns, pod, workload, ts, stack, state, n, alive, age) = (
            strs(b, "namespace")?,
            strs(b, "pod")?,
            strs(b, "workload")?,
            ts_micros(b, "ts")?,
            i64s(b, "stack_id")?,
            strs(b, "state")?,
            f64s(b, "goroutines")?,
            f64s(b, "alive_over_5m")?,
            f64s(b, "age_p99_s")?,
        );
        for i in 0..b.num_rows() {
            let key = (
                ns[i].clone().unwrap_or_default(),
                pod[i].clone().unwrap_or_default(),
            );
            let ts = ts[i].unwrap_or(0) / 1_000_000;
            let pc = out.entry(key).or_default();
            if pc.workload.is_none() {
                pc.workload = workload[i].clone();
            }
            let v = &mut pc.captures;
            if v.last().is_none_or(|(t, _)| *t != ts) {
                v.push((ts, Vec::new()));
            }
            if let Some((_, groups)) = v.last_mut() {
                groups.push(CaptureGroup {
                    stack_id: stack[i].unwrap_or(0),
                    state: state[i].clone().unwrap_or_default(),
                    goroutines: n[i].unwrap_or(0.0),
                    alive_over_5m: alive[i].unwrap_or(0.0),
                    age_p99_s: age[i].unwrap_or(0.0),
                });
            }
        }
    }
    for pc in out.values_mut() {
        for (_, groups) in &mut pc.captures {
            merge_groups(groups);
        }
    }
    Ok(out)
}

/// One group per (stack, state), sorted by it: sample rows also differ by labels and wait
/// bucket, and `GrownGoroutines::add` compares a stack's goroutines as a whole (the merged P99 age is
/// the largest of the parts', an upper bound).
fn merge_groups(groups: &mut Vec<CaptureGroup>) {
    groups.sort_by(|a, b| (a.stack_id, &a.state).cmp(&(b.stack_id, &b.state)));
    groups.dedup_by(|g, kept| {
        let same = g.stack_id == kept.stack_id && g.state == kept.state;
        if same {
            kept.goroutines += g.goroutines;
            kept.alive_over_5m += g.alive_over_5m;
            kept.age_p99_s = kept.age_p99_s.max(g.age_p99_s);
        }
        same
    });
}

/// P99 over `(age, goroutines)` pairs, each standing for its count at its age.
fn p99_of(mut ages: Vec<(f64, f64)>) -> Option<f64> {
    ages.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n: f64 = ages.iter().map(|a| a.1).sum();
    if n <= 0.0 {
        return None;
    }
    let want = 0.99 * n;
    let mut seen = 0.0;
    for (age, k) in &ages {
        seen += k;
        if seen >= want {
            return Some(*age);
        }
    }
    ages.last().map(|a| a.0)
}

/// The goroutines a growth consists of, summed over captures (one pod's, or a workload's pods).
///
/// Residence is that of what grew: the goroutines of the groups (stack and state) that hold
/// more now than in the capture before the growth. Long-lived goroutines (servers, worker
/// pools, tickers) are old in every healthy service, so the residence of a whole capture says
/// "they stay" about any pod with a few dozen of them; whether the *new* goroutines stay is what
/// tells a leak from a batch or a traffic ramp. A grown group's P99 age stands for its new
/// goroutines (an overestimate when it also held old ones), and its goroutines alive 5 minutes
/// ago beyond the base count are the new ones that stayed. Against an empty base (no capture
/// before the growth) this is the residence of the whole capture.
#[derive(Debug, Default)]
struct GrownGoroutines {
    grown: f64,
    stayed: f64,
    /// (P99 age, goroutines) of the grown blocked groups.
    ages: Vec<(f64, f64)>,
}

impl GrownGoroutines {
    /// `base` and `now`: one group per (stack, state), sorted by it (as `captures` gives them).
    fn add(&mut self, base: &[CaptureGroup], now: &[CaptureGroup]) {
        for g in now {
            let before = base
                .binary_search_by(|b| (b.stack_id, &b.state).cmp(&(g.stack_id, &g.state)))
                .map_or(0.0, |i| base[i].goroutines);
            let d = g.goroutines - before;
            if d <= 0.0 {
                continue;
            }
            self.grown += d;
            self.stayed += (g.alive_over_5m - before).clamp(0.0, d);
            if g.blocked() {
                self.ages.push((g.age_p99_s, d));
            }
        }
    }

    /// None when nothing grew.
    fn residence(self) -> Option<Residence> {
        (self.grown > 0.0).then(|| Residence {
            alive_share: Some(self.stayed / self.grown),
            p99_s: p99_of(self.ages),
        })
    }
}

/// Residence for an episode of `scope` whose growth began after `growth_from_s`, as of `t`: of
/// what grew since the last capture at or before then (each pod's own, for a workload; all of a
/// capture when none precedes the growth), from captures at most 15 minutes old. When the
/// captures show no stack that grew (the count's rise was noise, or came and went between
/// captures), no residence and an alive share of 0; none at all without a recent capture.
pub(crate) fn residence_at(
    caps: &Captures,
    scope: &Scope,
    t: i64,
    growth_from_s: i64,
) -> Residence {
    let pods: Vec<&PodCaptures> = match &scope.pod {
        Some(p) => caps
            .get(&(scope.namespace.clone(), p.clone()))
            .into_iter()
            .collect(),
        None if scope.workload.is_some() => caps
            .iter()
            .filter(|((ns, _), pc)| *ns == scope.namespace && pc.workload == scope.workload)
            .map(|(_, pc)| pc)
            .collect(),
        None => Vec::new(),
    };
    let mut growth = GrownGoroutines::default();
    let mut captured = false;
    for pc in pods {
        let v = &pc.captures;
        let at = |t: i64| v.partition_point(|(ts, _)| *ts <= t).checked_sub(1);
        let Some(i) = at(t) else {
            continue;
        };
        let (ts, now) = &v[i];
        // A capture older than 15 minutes says nothing about now.
        if t - ts > 900 {
            continue;
        }
        let base: &[CaptureGroup] = match at(growth_from_s) {
            Some(b) if b < i => &v[b].1,
            _ => &[],
        };
        growth.add(base, now);
        captured = true;
    }
    match growth.residence() {
        Some(r) => r,
        // The captures show no stack that grew: whatever the count did, none of it stayed.
        None if captured => Residence {
            p99_s: None,
            alive_share: Some(0.0),
        },
        None => Residence::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(stack_id: i64, state: &str, n: f64, alive: f64, age: f64) -> CaptureGroup {
        CaptureGroup {
            stack_id,
            state: state.into(),
            goroutines: n,
            alive_over_5m: alive,
            age_p99_s: age,
        }
    }

    fn pod_scope() -> Scope {
        Scope {
            cluster: None,
            namespace: "shop".into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("cart".into()),
            pod: Some("cart-1".into()),
        }
    }

    fn growth(base: &[CaptureGroup], now: &[CaptureGroup]) -> Option<Residence> {
        let mut g = GrownGoroutines::default();
        g.add(base, now);
        g.residence()
    }

    /// 40 long-lived workers (hours old) beside requests that come and go.
    fn before() -> Vec<CaptureGroup> {
        vec![
            g(1, "select", 40.0, 40.0, 7_200.0),
            g(2, "IO wait", 1_000.0, 0.0, 0.0),
        ]
    }

    /// 10 minutes later, a batch has doubled the requests.
    fn batch() -> Vec<CaptureGroup> {
        vec![
            g(1, "select", 40.0, 40.0, 7_800.0),
            g(2, "IO wait", 2_000.0, 0.0, 0.0),
        ]
    }

    /// 10 minutes later, a new blocked stack whose goroutines stay.
    fn leak() -> Vec<CaptureGroup> {
        vec![
            g(1, "select", 40.0, 40.0, 7_800.0),
            g(2, "IO wait", 1_000.0, 0.0, 0.0),
            g(3, "chan send", 600.0, 300.0, 594.0),
        ]
    }

    #[test]
    fn residence_is_that_of_what_grew() {
        let (before, batch, leak) = (before(), batch(), leak());
        // The batch: the whole capture's P99 says "old" (the workers are 2 % of its blocked
        // goroutines), the growth says "young".
        let whole = growth(&[], &batch).unwrap();
        assert_eq!(whole.p99_s, Some(7_800.0));
        assert_eq!(whole.alive_share, Some(40.0 / 2_040.0));
        let r = growth(&before, &batch).unwrap();
        assert_eq!(r.p99_s, Some(0.0));
        assert_eq!(r.alive_share, Some(0.0));
        // The leak: old, half of it alive 5 minutes ago.
        let r = growth(&before, &leak).unwrap();
        assert_eq!(r.p99_s, Some(594.0));
        assert_eq!(r.alive_share, Some(0.5));
        // A stack that held goroutines before: only those beyond the old count are new.
        let grew = vec![g(1, "select", 50.0, 45.0, 7_800.0)];
        assert_eq!(growth(&before, &grew).unwrap().alive_share, Some(0.5));
        // Nothing grew: no figure of the growth.
        assert!(growth(&before, &before).is_none());
        // Rows of one stack and state (other labels, wait buckets) count as one group: 600
        // requests under two labels are not 600 new ones each.
        let mut split = vec![
            g(2, "IO wait", 600.0, 0.0, 3.0),
            g(1, "select", 40.0, 40.0, 7_800.0),
            g(2, "IO wait", 600.0, 0.0, 1.0),
        ];
        merge_groups(&mut split);
        assert_eq!(
            split,
            vec![
                g(1, "select", 40.0, 40.0, 7_800.0),
                g(2, "IO wait", 1_200.0, 0.0, 3.0)
            ]
        );
        assert_eq!(growth(&before, &split).unwrap().alive_share, Some(0.0));
    }

    /// A pod of the `cart` workload with these captures.
    fn pod(captures: Vec<(i64, Vec<CaptureGroup>)>) -> PodCaptures {
        PodCaptures {
            workload: Some("cart".into()),
            captures,
        }
    }

    #[test]
    fn residence_at_uses_the_capture_before_the_growth_or_the_whole_capture() {
        let (before, batch, leak) = (before(), batch(), leak());
        let mut caps: Captures = HashMap::new();
        caps.insert(
            ("shop".into(), "cart-1".into()),
            pod(vec![(1_000, before.clone()), (1_600, batch.clone())]),
        );
        let scope = pod_scope();
        // Growth after 1,000: of the growth.
        assert_eq!(residence_at(&caps, &scope, 1_800, 1_200).p99_s, Some(0.0));
        // No capture before the growth: the whole latest capture.
        assert_eq!(residence_at(&caps, &scope, 1_800, 900).p99_s, Some(7_800.0));
        // The latest capture is more than 15 minutes old: nothing.
        assert_eq!(residence_at(&caps, &scope, 2_600, 1_200).p99_s, None);
        assert_eq!(residence_at(&caps, &scope, 2_600, 1_200).alive_share, None);
        // The captures show nothing that grew: none of the rise stayed.
        caps.insert(
            ("shop".into(), "cart-0".into()),
            pod(vec![(1_000, before.clone()), (1_600, before.clone())]),
        );
        let quiet = Scope {
            pod: Some("cart-0".into()),
            ..pod_scope()
        };
        let r = residence_at(&caps, &quiet, 1_800, 1_200);
        assert_eq!((r.p99_s, r.alive_share), (None, Some(0.0)));
        // A workload: the growth of each of its pods since its own capture before, summed. One
        // pod's batch (1,000 young) and another's leak (600 staying half): 300 of 1,600 stayed.
        caps.insert(
            ("shop".into(), "cart-2".into()),
            pod(vec![(1_100, before.clone()), (1_700, leak)]),
        );
        caps.insert(
            ("other".into(), "cart-3".into()),
            pod(vec![(1_100, before.clone()), (1_700, batch)]),
        );
        let workload = Scope {
            pod: None,
            ..pod_scope()
        };
        let r = residence_at(&caps, &workload, 1_800, 1_200);
        assert_eq!(r.alive_share, Some(300.0 / 1_600.0));
        assert_eq!(r.p99_s, Some(594.0));
        let elsewhere = Scope {
            workload: Some("payments".into()),
            ..workload
        };
        assert_eq!(residence_at(&caps, &elsewhere, 1_800, 1_200).p99_s, None);
    }

    #[test]
    fn captures_before_an_old_onset_are_put_in_front() {
        let (before, batch) = (before(), batch());
        let mut caps: Captures = HashMap::new();
        caps.insert(
            ("shop".into(), "cart-1".into()),
            pod(vec![(1_600, batch.clone())]),
        );
        let scope = pod_scope();
        // The window holds no capture before the growth (at 900): the whole capture.
        assert_eq!(residence_at(&caps, &scope, 1_800, 900).p99_s, Some(7_800.0));
        // The hour before the stored onset, loaded on its own: its last capture goes in front,
        // for the event's pod only.
        let mut older: Captures = HashMap::new();
        older.insert(
            ("shop".into(), "cart-1".into()),
            pod(vec![(300, batch.clone()), (850, before.clone())]),
        );
        older.insert(
            ("shop".into(), "cart-9".into()),
            pod(vec![(850, before.clone())]),
        );
        add_captures_before(&mut caps, older.clone(), Some("cart-1"), None);
        let v = &caps[&("shop".to_string(), "cart-1".to_string())].captures;
        assert_eq!(v.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [850, 1_600]);
        assert!(!caps.contains_key(&("shop".to_string(), "cart-9".to_string())));
        // Now residence is that of what grew since: the young batch.
        assert_eq!(residence_at(&caps, &scope, 1_800, 900).p99_s, Some(0.0));
        // Twice: nothing doubles. A workload-wide event takes every pod of the workload.
        add_captures_before(&mut caps, older.clone(), Some("cart-1"), None);
        add_captures_before(&mut caps, older, None, Some("cart"));
        assert_eq!(
            caps[&("shop".to_string(), "cart-1".to_string())]
                .captures
                .len(),
            2
        );
        assert_eq!(
            caps[&("shop".to_string(), "cart-9".to_string())]
                .captures
                .len(),
            1
        );
    }
}
